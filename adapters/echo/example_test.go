package dynkeyecho_test

import (
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/labstack/echo/v4"

	dynkeyecho "github.com/dynkey/dynkey/adapters/echo"
	"github.com/dynkey/dynkey/auth"
	"github.com/dynkey/dynkey/client"
	"github.com/dynkey/dynkey/middleware"
)

// An Echo app with dynkey: the endpoints mounted, a protected group, a
// public route; a Go client calls it over loopback.
func Example() {
	users := auth.NewArgon2id(auth.Params{Time: 1, MemoryKiB: 1024, Threads: 1, SaltLen: 16, KeyLen: 32})
	if err := users.AddUser("alice", "pw"); err != nil {
		log.Fatal(err)
	}
	m, err := middleware.New(middleware.Options{Authenticator: users, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	e := echo.New()
	dynkeyecho.Mount(e, m)
	e.GET("/health", func(c echo.Context) error { return c.String(http.StatusOK, "ok") })
	api := e.Group("/api", dynkeyecho.Middleware(m))
	api.POST("/greet", func(c echo.Context) error {
		s, _ := middleware.FromContext(c.Request().Context())
		name, _ := io.ReadAll(c.Request().Body) // decrypted
		return c.String(http.StatusOK, "hello "+string(name)+" from "+s.Username)
	})
	api.GET("/items/:id", func(c echo.Context) error {
		return echo.NewHTTPError(http.StatusNotFound, "no item "+c.Param("id")) // sealed too
	})
	srv := httptest.NewServer(e)
	defer srv.Close()

	c, err := client.New(client.Config{BaseURL: srv.URL, Username: "alice", Password: "pw", IdentityKey: m.IdentityPublicKey()})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	hc := c.HTTPClient()
	resp, err := hc.Post(srv.URL+"/api/greet", "text/plain", strings.NewReader("Bob"))
	if err != nil {
		log.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, string(b))
	resp, err = hc.Get(srv.URL + "/api/items/7") // envelope in the Dynkey-Envelope header
	if err != nil {
		log.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, strings.TrimSpace(string(b)))
	// Output:
	// 200 hello Bob from alice
	// 404 {"message":"no item 7"}
}

// Skipping routes the Echo way, and optional mode for migrating clients.
func ExampleMiddlewareWithConfig() {
	var m *middleware.Middleware // from middleware.New
	e := echo.New()
	e.Use(dynkeyecho.MiddlewareWithConfig(m, dynkeyecho.Config{
		Skipper: func(c echo.Context) bool { return strings.HasPrefix(c.Path(), "/public/") },
	}))
	legacy := e.Group("/v1", dynkeyecho.MiddlewareWithConfig(m, dynkeyecho.Config{Optional: true}))
	legacy.POST("/orders", func(c echo.Context) error {
		if _, encrypted := middleware.FromContext(c.Request().Context()); !encrypted {
			c.Response().Header().Set("Warning", `299 - "send this request encrypted"`)
		}
		return c.NoContent(http.StatusAccepted)
	})
}
