// Command browser shows dynkey's dynamic keys live in a web page:
//
//	(cd clients/ts && npm ci && npm run build)   # once: builds @dynkey/client
//	go run ./examples/browser
//
// It serves a Gin API protected by dynkey on one loopback port and a small
// page on another (two origins, CORS). The page logs in with the TypeScript
// client (@dynkey/client, loaded as ES modules with an import map), calls
// protected routes a few times a second, and shows the current key ids and
// every rotation of either side as it happens: the server rotates its key
// pair every few seconds (-server-rotate) and announces it in heartbeats; the
// client rotates its own key by policy (-client-rotate).
//
// The first line on stdout is JSON ({"page": URL, "api": URL, "identity":
// hex}); the test in clients/ts/test/e2e/example.test.ts reads it, loads
// the page in headless Chromium and waits for the rotations.
package main

import (
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/gin-gonic/gin"

	dynkeygin "github.com/dynkey/dynkey/adapters/gin"
	"github.com/dynkey/dynkey/auth"
	"github.com/dynkey/dynkey/middleware"
	"github.com/dynkey/dynkey/policy"
	"github.com/dynkey/dynkey/store/memory"
)

//go:embed page.html
var pageHTML string

// pageConfig is what the page needs, written into it as JSON.
type pageConfig struct {
	API            string `json:"api"`
	Identity       string `json:"identity"`
	Suite          string `json:"suite"`
	Username       string `json:"username"`
	Password       string `json:"password"` // a demo user; never put a real password in a page
	HeartbeatMs    int64  `json:"heartbeatMs"`
	ClientRotateMs int64  `json:"clientRotateMs"`
	IntervalMs     int64  `json:"intervalMs"`
}

func main() {
	suite := flag.String("suite", "ecies-x25519", "suite: ecies-x25519 or ecies-p256 (the ones the TypeScript client speaks)")
	jsDir := flag.String("js", filepath.Join("clients", "ts"), "directory of the built TypeScript client (dist/ and node_modules/@hpke/)")
	serverRotate := flag.Duration("server-rotate", 4*time.Second, "server key pair lifetime")
	clientRotate := flag.Duration("client-rotate", 3*time.Second, "client key lifetime (client policy)")
	heartbeat := flag.Duration("heartbeat", time.Second, "client heartbeat interval")
	interval := flag.Duration("interval", 400*time.Millisecond, "time between the page's requests")
	watchStdin := flag.Bool("stdin", false, "exit when standard input is closed (for tests)")
	flag.Parse()

	if _, err := os.Stat(filepath.Join(*jsDir, "dist", "index.js")); err != nil {
		log.Fatalf("browser: %s/dist/index.js not found: run `cd clients/ts && npm ci && npm run build` first (or pass -js)", *jsDir)
	}

	users := auth.NewArgon2id(auth.DefaultParams)
	if err := users.AddUser("alice", "alice-pw"); err != nil {
		log.Fatal(err)
	}
	m, err := middleware.New(middleware.Options{
		Suite:            *suite,
		Store:            memory.New(),
		Authenticator:    users,
		KeyEncryptionKey: randomKEK(),
		ServerPolicy:     policy.Uptime(*serverRotate),
		MaintainInterval: 250 * time.Millisecond,
		Logger:           slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	apiLn := listen()
	pageLn := listen()
	pageOrigin := "http://" + pageLn.Addr().String()
	apiURL := "http://" + apiLn.Addr().String()

	// The API: Gin, dynkey endpoints, protected routes.
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(gin.Recovery(), cors(pageOrigin))
	dynkeygin.Mount(r, m)
	api := r.Group("/api", dynkeygin.Middleware(m))
	api.POST("/echo", func(c *gin.Context) {
		b, _ := io.ReadAll(c.Request.Body) // already decrypted
		s, _ := middleware.FromContext(c.Request.Context())
		c.JSON(http.StatusOK, gin.H{"user": s.Username, "echo": string(b)}) // sealed on the way out
	})
	api.PUT("/note", func(c *gin.Context) {
		b, _ := io.ReadAll(c.Request.Body)
		c.String(http.StatusOK, "stored %q", b)
	})
	api.DELETE("/note", func(c *gin.Context) { c.Status(http.StatusNoContent) })

	// The page and the client's modules.
	tmpl := template.Must(template.New("page").Parse(pageHTML))
	cfg := pageConfig{
		API: apiURL, Identity: hex.EncodeToString(m.IdentityPublicKey()), Suite: m.Suite(),
		Username: "alice", Password: "alice-pw",
		HeartbeatMs: heartbeat.Milliseconds(), ClientRotateMs: clientRotate.Milliseconds(), IntervalMs: interval.Milliseconds(),
	}
	page := http.NewServeMux()
	page.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if err := tmpl.Execute(w, cfg); err != nil {
			log.Print(err)
		}
	})
	files := http.FileServer(http.Dir(*jsDir))
	page.Handle("GET /dist/", files)
	page.Handle("GET /node_modules/@hpke/", files)

	go serve(apiLn, r)
	go serve(pageLn, page)

	line, _ := json.Marshal(map[string]string{"page": pageOrigin + "/", "api": apiURL, "identity": cfg.Identity})
	fmt.Println(string(line))
	fmt.Fprintf(os.Stderr, "open %s/ in a browser (API on %s); Ctrl-C stops\n", pageOrigin, apiURL)

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt)
	eof := make(chan struct{})
	if *watchStdin {
		go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(eof) }()
	}
	select {
	case <-stop:
	case <-eof:
	}
}

// cors lets the page's origin call the API: it answers preflights (the
// envelope's content type, application/dynkey, is not CORS-safelisted) and
// allows the Dynkey-Envelope header (the envelope of a bodiless DELETE or
// GET), and exposes Dynkey-Status (the real status of a 204),
// Dynkey-Response (the sealed answer to HEAD) and Dynkey-Problem.
func cors(origin string) gin.HandlerFunc {
	return func(c *gin.Context) {
		if c.GetHeader("Origin") != origin {
			c.Next()
			return
		}
		h := c.Writer.Header()
		h.Set("Access-Control-Allow-Origin", origin)
		h.Add("Vary", "Origin")
		h.Set("Access-Control-Expose-Headers", "Dynkey-Status, Dynkey-Response, Dynkey-Problem")
		if c.Request.Method == http.MethodOptions && c.GetHeader("Access-Control-Request-Method") != "" {
			h.Set("Access-Control-Allow-Methods", "GET, HEAD, POST, PUT, DELETE, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "Content-Type, Dynkey-Envelope")
			c.AbortWithStatus(http.StatusNoContent)
			return
		}
		c.Next()
	}
}

func listen() net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	return ln
}

func serve(ln net.Listener, h http.Handler) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

func randomKEK() []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		log.Fatal(err)
	}
	return k
}
