// Command testserver is the Go server the TypeScript client's end-to-end
// tests run against: the dynkey middleware on net/http with a memory store,
// fast policies, a few protected routes, CORS for a page on another origin,
// and loopback-only admin knobs that provoke each recoverable refusal.
//
// It listens on two ephemeral loopback ports (the API and the admin knobs),
// prints one JSON line on stdout
//
//	{"url":"http://127.0.0.1:P","admin":"http://127.0.0.1:Q","identity":"<hex>","suite":"ecies-x25519"}
//
// and serves until it is killed or, with -stdin (the default), its standard
// input is closed, so a test that dies never leaves it running.
//
// Admin knobs (POST, admin port only, bound to 127.0.0.1):
//
//	/admin/rotate          rotate the server key now (epoch + 1)
//	/admin/advance?ms=N    move the server clock N ms forward, then run Maintain
//	                       (retired keys past their grace are destroyed)
//	/admin/stats           GET: handler calls by path, epoch, clock offset
//
// -framework picks how the API is built: "nethttp" (the default: the
// net/http middleware on a ServeMux, CORS by hand), "chi" (chi routes with
// m.Handler on a sub-router, rs/cors in front) or "echo" (Echo v4 with
// adapters/echo, Echo's CORS middleware in front). Every CORS preflight
// the API port sees is counted in /admin/stats ("preflights", by path).
//
// Protected routes (any method):
//
//	/api/echo[?status=N]   echoes the body and its content type with status N (default 200)
//	/api/empty             204 No Content
//	/api/hello             "hello <user>" (text/plain)
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/labstack/echo/v4"
	echomw "github.com/labstack/echo/v4/middleware"
	"github.com/rs/cors"

	dynkeychi "github.com/dynkey/dynkey/adapters/chi"
	dynkeyecho "github.com/dynkey/dynkey/adapters/echo"
	"github.com/dynkey/dynkey/auth"
	"github.com/dynkey/dynkey/middleware"
	"github.com/dynkey/dynkey/policy"
	"github.com/dynkey/dynkey/store/memory"

	_ "github.com/dynkey/dynkey/crypto/ecies"
)

type calls struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *calls) add(path string) {
	c.mu.Lock()
	c.n[path]++
	c.mu.Unlock()
}

func (c *calls) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.n))
	for k, v := range c.n {
		out[k] = v
	}
	return out
}

func main() {
	suite := flag.String("suite", "ecies-x25519", "suite of the server keys and sessions")
	user := flag.String("user", "alice", "the one user")
	password := flag.String("password", "alice-pw", "its password")
	corsOrigins := flag.String("cors-origin", "", "comma-separated origins allowed by CORS (empty: no CORS headers)")
	serverPolicy := flag.String("server-policy", "manual", "server key rotation policy (policy.Parse syntax)")
	clientPolicy := flag.String("client-policy", "reject(age>=10m)", "server's client-key policy (policy.Parse syntax; empty: none)")
	tokenTTL := flag.Duration("token-ttl", 30*time.Minute, "token lifetime")
	grace := flag.Duration("server-key-grace", time.Minute, "how long a retired server key still opens messages")
	maintain := flag.Duration("maintain", 200*time.Millisecond, "maintenance loop interval")
	watchStdin := flag.Bool("stdin", true, "exit when standard input is closed")
	framework := flag.String("framework", "nethttp", `how the API is built: "nethttp", "chi" or "echo"`)
	flag.Parse()

	var offset atomic.Int64 // ns added to the real clock
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }

	users := auth.NewArgon2id(auth.Params{Time: 1, MemoryKiB: 1024, Threads: 1, SaltLen: 16, KeyLen: 32})
	if err := users.AddUser(*user, *password); err != nil {
		log.Fatal(err)
	}
	sp, err := policy.Parse(*serverPolicy)
	if err != nil {
		log.Fatal(err)
	}
	var cp policy.Policy
	if *clientPolicy != "" {
		if cp, err = policy.Parse(*clientPolicy); err != nil {
			log.Fatal(err)
		}
	}
	kek := make([]byte, 32)
	if _, err := rand.Read(kek); err != nil {
		log.Fatal(err)
	}
	m, err := middleware.New(middleware.Options{
		Suite:            *suite,
		Store:            memory.New(),
		Authenticator:    users,
		KeyEncryptionKey: kek,
		ServerPolicy:     sp,
		ClientPolicy:     cp,
		TokenTTL:         *tokenTTL,
		ServerKeyGrace:   *grace,
		MaintainInterval: *maintain,
		Logger:           slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Now:              now,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	var c = &calls{n: map[string]int{}}
	preflights := &calls{n: map[string]int{}}
	handlers := map[string]http.HandlerFunc{}
	handlers["/api/echo"] = func(w http.ResponseWriter, r *http.Request) {
		c.add(r.URL.Path)
		b, _ := io.ReadAll(r.Body)
		status := http.StatusOK
		if s := r.URL.Query().Get("status"); s != "" {
			if n, err := strconv.Atoi(s); err == nil && n >= 200 && n <= 599 {
				status = n
			}
		}
		if ct := r.Header.Get("Content-Type"); ct != "" {
			w.Header().Set("Content-Type", ct)
		}
		w.WriteHeader(status)
		_, _ = w.Write(b)
	}
	handlers["/api/empty"] = func(w http.ResponseWriter, r *http.Request) {
		c.add(r.URL.Path)
		w.WriteHeader(http.StatusNoContent)
	}
	handlers["/api/hello"] = func(w http.ResponseWriter, r *http.Request) {
		c.add(r.URL.Path)
		s, _ := middleware.FromContext(r.Context())
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = fmt.Fprintf(w, "hello %s", s.Username)
	}

	var origins []string
	allowed := map[string]bool{}
	for _, o := range strings.Split(*corsOrigins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			allowed[o] = true
			origins = append(origins, o)
		}
	}
	var apiHandler http.Handler
	switch *framework {
	case "nethttp":
		api := http.NewServeMux()
		for p, h := range handlers {
			api.HandleFunc(p, h)
		}
		mux := http.NewServeMux()
		mux.Handle("/dynkey/", m.Endpoints())
		mux.Handle("/.well-known/dynkey/", m.Endpoints())
		mux.Handle("/api/", m.Handler(api))
		apiHandler = withCORS(allowed, mux)
	case "chi":
		r := chi.NewRouter()
		if len(origins) > 0 {
			r.Use(cors.New(dynkeychi.CORSOptions(origins)).Handler)
		}
		dynkeychi.Mount(r, m)
		r.Route("/api", func(r chi.Router) {
			r.Use(m.Handler)
			for p, h := range handlers {
				r.HandleFunc(strings.TrimPrefix(p, "/api"), h)
			}
		})
		apiHandler = r
	case "echo":
		e := echo.New()
		e.HideBanner, e.HidePort = true, true
		if len(origins) > 0 {
			e.Use(echomw.CORSWithConfig(dynkeyecho.CORSConfig(origins)))
		}
		dynkeyecho.Mount(e, m)
		g := e.Group("/api", dynkeyecho.Middleware(m))
		for p, h := range handlers {
			g.Any(strings.TrimPrefix(p, "/api"), echo.WrapHandler(h))
		}
		apiHandler = e
	default:
		log.Fatalf("unknown -framework %q", *framework)
	}

	apiLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	adminLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}

	admin := http.NewServeMux()
	admin.HandleFunc("POST /admin/rotate", func(w http.ResponseWriter, r *http.Request) {
		if err := m.Rotate(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, map[string]any{"ok": true})
	})
	admin.HandleFunc("POST /admin/advance", func(w http.ResponseWriter, r *http.Request) {
		ms, err := strconv.ParseInt(r.URL.Query().Get("ms"), 10, 64)
		if err != nil || ms < 0 {
			http.Error(w, "ms must be a non-negative integer", http.StatusBadRequest)
			return
		}
		offset.Add(int64(time.Duration(ms) * time.Millisecond))
		if err := m.Maintain(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, map[string]any{"offset_ms": time.Duration(offset.Load()).Milliseconds()})
	})
	admin.HandleFunc("GET /admin/stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"calls": c.snapshot(), "preflights": preflights.snapshot(), "offset_ms": time.Duration(offset.Load()).Milliseconds()})
	})

	countPreflights := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			preflights.add(r.URL.Path)
		}
		apiHandler.ServeHTTP(w, r)
	})
	apiSrv := &http.Server{Handler: countPreflights, ReadHeaderTimeout: 10 * time.Second}
	adminSrv := &http.Server{Handler: admin, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = apiSrv.Serve(apiLn) }()
	go func() { _ = adminSrv.Serve(adminLn) }()

	out, _ := json.Marshal(map[string]string{
		"url":      "http://" + apiLn.Addr().String(),
		"admin":    "http://" + adminLn.Addr().String(),
		"identity": hex.EncodeToString(m.IdentityPublicKey()),
		"suite":    m.Suite(),
	})
	fmt.Println(string(out))

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	eof := make(chan struct{})
	if *watchStdin {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			close(eof)
		}()
	}
	select {
	case <-stop:
	case <-eof:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = apiSrv.Shutdown(ctx)
	_ = adminSrv.Shutdown(ctx)
}

// withCORS lets pages on the allowed origins call the API by hand (what
// rs/cors and Echo's CORS do with dynkeychi.CORSOptions and
// dynkeyecho.CORSConfig): preflights are answered here (they never reach
// dynkey) and allow the Dynkey-Envelope request header; responses name the
// origin and expose Dynkey-Status (the real status of 204/304 responses),
// Dynkey-Response (the sealed answer to HEAD) and Dynkey-Problem (the code
// of a refusal, the only one a HEAD refusal has).
func withCORS(allowed map[string]bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" || !allowed[origin] {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", origin)
		h.Add("Vary", "Origin")
		h.Set("Access-Control-Expose-Headers", "Dynkey-Status, Dynkey-Response, Dynkey-Problem, Retry-After, Allow")
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Set("Access-Control-Allow-Methods", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "Content-Type, Dynkey-Envelope")
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
