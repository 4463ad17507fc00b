package dynkeygin_test

import (
	"encoding/hex"
	"log"
	"net/http"
	"os"

	"github.com/gin-gonic/gin"

	"github.com/dynkey/dynkey/auth"
	"github.com/dynkey/dynkey/middleware"
	"github.com/dynkey/dynkey/store/sqlite"

	dynkeygin "github.com/dynkey/dynkey/adapters/gin"
)

// Embedding dynkey in an existing Gin application: mount the endpoints at
// the root, and add the middleware to the routes (or groups) whose bodies
// must be encrypted. Handlers stay ordinary Gin handlers.
func Example() {
	st, err := sqlite.Open("dynkey.db")
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()

	users := auth.NewArgon2id(auth.DefaultParams)
	if err := users.AddUser("alice", "correct horse battery staple"); err != nil {
		log.Fatal(err)
	}

	m, err := middleware.New(middleware.Options{
		Store:            st,
		Authenticator:    users,
		KeyEncryptionKey: loadKEK(), // 32 bytes, the same on every instance
	})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	r := gin.Default()                                              // the existing app
	r.GET("/healthz", func(c *gin.Context) { c.String(200, "ok") }) // stays plain

	dynkeygin.Mount(r, m) // key directory, login, heartbeat

	api := r.Group("/api", dynkeygin.Middleware(m)) // encrypted from here on
	api.POST("/orders", func(c *gin.Context) {
		s, _ := middleware.FromContext(c.Request.Context())
		var order struct{ Item string }
		if err := c.ShouldBindJSON(&order); err != nil {
			c.JSON(http.StatusBadRequest, gin.H{"error": err.Error()})
			return
		}
		c.JSON(http.StatusCreated, gin.H{"user": s.Username, "item": order.Item})
	})

	log.Fatal(r.Run("127.0.0.1:8080"))
}

// loadKEK reads the key-encryption key (64 hex digits) from the
// environment; keep it in your secret manager.
func loadKEK() []byte {
	kek, err := hex.DecodeString(os.Getenv("DYNKEY_KEK"))
	if err != nil || len(kek) != 32 {
		log.Fatal("DYNKEY_KEK must be 32 bytes in hex")
	}
	return kek
}
