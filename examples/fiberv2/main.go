// Command fiberv2 is a Fiber v2 app protected by dynkey, with a client that
// calls it, in one program you can copy:
//
//	go run ./examples/fiberv2
//
// The server keeps its state in SQLite in a temporary directory; /health
// stays public, /api/* is encrypted. The client logs in, makes encrypted
// calls (POST with a JSON body, GET with a query: its envelope travels in
// the Dynkey-Envelope header) while it rotates its own key and the server
// rotates its key pair, then shows that a plain request is refused. The last
// line is
//
//	summary: requests=<n> failed=0 client_rotations=<n> server_rotations=<n>
//
// and the exit status is 0 only if no call failed and each side rotated at
// least twice.
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"

	dynkeyfiberv2 "github.com/dynkey/dynkey/adapters/fiberv2"
	"github.com/dynkey/dynkey/auth"
	"github.com/dynkey/dynkey/client"
	"github.com/dynkey/dynkey/middleware"
	"github.com/dynkey/dynkey/policy"
	"github.com/dynkey/dynkey/store/sqlite"
	"github.com/dynkey/dynkey/wire"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "fiberv2 example:", err)
		os.Exit(1)
	}
}

// errFailed is returned after the summary line when the demo failed.
var errFailed = errors.New("a call failed or a side rotated fewer than twice; see the summary")

// rotations counts the server's key rotations (an Observer, as a metrics
// exporter would).
type rotations struct {
	middleware.NopObserver
	server atomic.Uint64
}

func (r *rotations) Rotated(e middleware.Rotation) {
	if e.Side == middleware.SideServer {
		r.server.Add(1)
	}
}

// newApp is the server side: what you would add to your own Fiber app.
func newApp(m *middleware.Middleware) *fiber.App {
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.Get("/health", func(c *fiber.Ctx) error { return c.SendString("ok") }) // stays public
	dynkeyfiberv2.Mount(app, m)                                                // key directory, login, heartbeat

	api := app.Group("/api", dynkeyfiberv2.New(dynkeyfiberv2.Config{Middleware: m})) // encrypted from here on
	api.Post("/echo", func(c *fiber.Ctx) error {
		s, _ := dynkeyfiberv2.FromContext(c)
		var in map[string]any
		if err := json.Unmarshal(c.Body(), &in); err != nil {
			return fiber.NewError(fiber.StatusBadRequest, err.Error()) // sealed too
		}
		return c.JSON(fiber.Map{"user": s.Username, "echo": in})
	})
	api.Get("/time", func(c *fiber.Ctx) error {
		s, _ := dynkeyfiberv2.FromContext(c)
		loc, err := time.LoadLocation(c.Query("tz", "UTC"))
		if err != nil {
			return fiber.NewError(fiber.StatusBadRequest, err.Error())
		}
		return c.JSON(fiber.Map{"user": s.Username, "time": time.Now().In(loc).Format(time.RFC3339)})
	})
	return app
}

func run(ctx context.Context, out io.Writer) error {
	say := func(format string, a ...any) { fmt.Fprintf(out, format+"\n", a...) }

	// --- Server -------------------------------------------------------
	dir, err := os.MkdirTemp("", "dynkey-fiberv2-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	st, err := sqlite.Open(filepath.Join(dir, "dynkey.db"))
	if err != nil {
		return err
	}
	defer st.Close()
	// Moderate argon2id parameters so the demo logs in quickly; use
	// auth.DefaultParams in production.
	users := auth.NewArgon2id(auth.Params{Time: 1, MemoryKiB: 19 * 1024, Threads: 1, SaltLen: 16, KeyLen: 32})
	if err := users.AddUser("alice", "correct horse battery staple"); err != nil {
		return err
	}
	// The key-encryption key seals the server's private keys in the store.
	// In production load the same 32 bytes on every instance from your
	// secret manager (e.g. hex in an environment variable).
	kek := make([]byte, 32)
	if _, err := rand.Read(kek); err != nil {
		return err
	}
	var rot rotations
	m, err := middleware.New(middleware.Options{
		Store:            st,
		Authenticator:    users,
		KeyEncryptionKey: kek,
		ServerPolicy:     policy.Uptime(time.Second), // rotate the key pair every second (demo)
		ServerKeyGrace:   5 * time.Second,
		MaintainInterval: 200 * time.Millisecond,
		Observer:         &rot,
	})
	if err != nil {
		return err
	}
	defer m.Close()

	app := newApp(m)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- app.Listener(ln) }()
	defer func() { _ = app.Shutdown(); <-served }()
	base := "http://" + ln.Addr().String()
	say("[server] Fiber v2 on %s: /api/* encrypted, /health public, state in %s", base, dir)

	// --- Client -------------------------------------------------------
	c, err := client.New(client.Config{
		BaseURL:           base,
		Username:          "alice",
		Password:          "correct horse battery staple",
		IdentityKey:       m.IdentityPublicKey(), // ship the server's identity key with the app
		Policy:            policy.OffsetGrowth(700 * time.Millisecond),
		HeartbeatInterval: 300 * time.Millisecond,
	})
	if err != nil {
		return err
	}
	defer c.Close()
	hc := c.HTTPClient()

	var requests, failed uint64
	call := func(n int) {
		var resp *http.Response
		var err error
		if n%2 == 0 {
			resp, err = hc.Post(base+"/api/echo", "application/json", strings.NewReader(fmt.Sprintf(`{"n":%d}`, n)))
		} else {
			resp, err = hc.Get(base + "/api/time?tz=UTC")
		}
		if err != nil {
			failed++
			say("[client] FAILED: %v", err)
			return
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		var v map[string]any
		if err != nil || resp.StatusCode != http.StatusOK || json.Unmarshal(body, &v) != nil || v["user"] != "alice" {
			failed++
			say("[client] FAILED: %s %s -> %d %s", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, body)
			return
		}
		requests++
		if requests <= 2 {
			say("[client] %s %s -> %d %s", resp.Request.Method, resp.Request.URL.RequestURI(), resp.StatusCode, body)
		}
	}
	start := time.Now()
	for n := 0; ctx.Err() == nil && time.Since(start) < 30*time.Second; n++ {
		if s := c.Stats(); s.ClientRotations >= 2 && rot.server.Load() >= 2 && time.Since(start) > 3*time.Second {
			break
		}
		call(n)
		time.Sleep(20 * time.Millisecond)
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	// --- A plain request is refused before the handler ------------------
	resp, err := http.Post(base+"/api/echo", "application/json", strings.NewReader(`{"n":0}`))
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if p, ok := wire.ParseProblem(body); ok && resp.StatusCode == http.StatusUnsupportedMediaType && p.Code == wire.CodeNotEncrypted {
		say("[demo] a plain POST /api/echo -> %d %s code=%q (refused, as expected)", resp.StatusCode, resp.Header.Get("Content-Type"), p.Code)
	} else {
		failed++
		say("[demo] FAILED: a plain POST /api/echo was not refused: %d %s", resp.StatusCode, body)
	}

	c.Close() // stop heartbeats, then the server's key maintenance
	m.Close()
	s := c.Stats()
	say("summary: requests=%d failed=%d client_rotations=%d server_rotations=%d",
		requests, failed, s.ClientRotations, rot.server.Load())
	if failed > 0 || s.ClientRotations < 2 || rot.server.Load() < 2 {
		return errFailed
	}
	return nil
}
