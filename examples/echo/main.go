// Command echo is an Echo v4 app protected by dynkey, and a Go client that
// uses it, in one program with nothing to set up:
//
//	go run ./examples/echo
//
// The server keeps notes for logged-in users: POST /api/notes creates one
// (201), GET /api/notes/:id reads it (its envelope travels in the
// Dynkey-Envelope header), DELETE /api/notes/:id deletes it (204), and a
// missing note is Echo's own 404 error, sealed like any answer. GET /health
// stays public. The client rotates its key every 40 requests and the server
// its key pair every second; the client follows through heartbeats. The
// program ends with
//
//	summary: requests=<n> failed=0 client_rotations=<n> server_rotations=<n>
//
// and exits 0 when no request failed and both sides rotated at least twice.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"

	dynkeyecho "github.com/dynkey/dynkey/adapters/echo"
	"github.com/dynkey/dynkey/auth"
	"github.com/dynkey/dynkey/client"
	"github.com/dynkey/dynkey/middleware"
	"github.com/dynkey/dynkey/policy"
)

// newApp is the part to copy: an Echo app with dynkey's endpoints mounted,
// a public route, and a protected group.
func newApp(m *middleware.Middleware) *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	dynkeyecho.Mount(e, m) // key directory, login, heartbeat

	e.GET("/health", func(c echo.Context) error { return c.String(http.StatusOK, "ok") })

	var mu sync.Mutex
	notes := map[string]string{}
	api := e.Group("/api", dynkeyecho.Middleware(m))
	api.POST("/notes", func(c echo.Context) error {
		s, _ := middleware.FromContext(c.Request().Context())
		var in struct {
			Text string `json:"text"`
		}
		if err := c.Bind(&in); err != nil { // the decrypted JSON body
			return err
		}
		mu.Lock()
		id := strconv.Itoa(len(notes) + 1)
		notes[id] = s.Username + ": " + in.Text
		mu.Unlock()
		return c.JSON(http.StatusCreated, map[string]string{"id": id})
	})
	api.GET("/notes/:id", func(c echo.Context) error {
		mu.Lock()
		n, ok := notes[c.Param("id")]
		mu.Unlock()
		if !ok {
			return echo.NewHTTPError(http.StatusNotFound, "no such note") // sealed too
		}
		return c.String(http.StatusOK, n)
	})
	api.DELETE("/notes/:id", func(c echo.Context) error {
		mu.Lock()
		delete(notes, c.Param("id"))
		mu.Unlock()
		return c.NoContent(http.StatusNoContent)
	})
	return e
}

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "echo example:", err)
		os.Exit(1)
	}
}

// serverRotations counts the server's key rotations (an Observer).
type serverRotations struct {
	middleware.NopObserver
	n atomic.Int64
}

func (o *serverRotations) Rotated(r middleware.Rotation) {
	if r.Side == middleware.SideServer {
		o.n.Add(1)
	}
}

// run starts the server on loopback, drives a client against it and prints
// the summary line; it fails if a request failed or a side rotated fewer
// than twice.
func run(ctx context.Context, out io.Writer) error {
	users := auth.NewArgon2id(auth.Params{Time: 1, MemoryKiB: 19 * 1024, Threads: 1, SaltLen: 16, KeyLen: 32})
	if err := users.AddUser("alice", "correct horse battery staple"); err != nil {
		return err
	}
	rot := &serverRotations{}
	m, err := middleware.New(middleware.Options{
		Authenticator:    users,                         // the memory store (the default) and a random key-encryption key: a demo
		ServerPolicy:     policy.Uptime(time.Second),    // rotate the server key pair every second
		MaintainInterval: 100 * time.Millisecond,        // check the policy this often
		Observer:         rot,                           // count rotations
		Logger:           slog.New(slog.DiscardHandler), // keep the output to the demo's lines
	})
	if err != nil {
		return err
	}
	defer m.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: newApp(m), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	base := "http://" + ln.Addr().String()
	fmt.Fprintf(out, "[server] Echo app with dynkey on %s\n", base)

	c, err := client.New(client.Config{
		BaseURL:           base,
		Username:          "alice",
		Password:          "correct horse battery staple",
		IdentityKey:       m.IdentityPublicKey(), // pinned: plain http on loopback is then safe
		Policy:            policy.MustParse("messages>=40"),
		HeartbeatInterval: 200 * time.Millisecond, // follows server rotations
	})
	if err != nil {
		return err
	}
	defer c.Close()
	return drive(ctx, out, base, c, rot)
}

// drive makes requests until both sides rotated twice (and at least 60
// rounds ran), then prints the summary.
func drive(ctx context.Context, out io.Writer, base string, c *client.Client, rot *serverRotations) error {
	hc := c.HTTPClient()
	var requests, failed int
	// call makes one request and checks its status and that its body
	// contains want; it returns the body.
	call := func(method, path, body string, status int, want string) string {
		requests++
		var r io.Reader
		if body != "" {
			r = strings.NewReader(body)
		}
		req, _ := http.NewRequestWithContext(ctx, method, base+path, r)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := hc.Do(req)
		if err != nil {
			failed++
			fmt.Fprintf(out, "[client] %s %s: FAILED: %v\n", method, path, err)
			return ""
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != status || !strings.Contains(string(b), want) {
			failed++
			fmt.Fprintf(out, "[client] %s %s -> %d %q: FAILED (want %d %q)\n", method, path, resp.StatusCode, b, status, want)
		} else if requests <= 4 {
			fmt.Fprintf(out, "[client] %s %s -> %d %s %q\n", method, path, resp.StatusCode, resp.Header.Get("Content-Type"), b)
		}
		return string(b)
	}

	if resp, err := http.Post(base+"/api/notes", "application/json", strings.NewReader(`{"text":"plain"}`)); err == nil {
		fmt.Fprintf(out, "[client] plain POST /api/notes -> %d %s (refused, as it must be)\n", resp.StatusCode, resp.Header.Get("Dynkey-Problem"))
		resp.Body.Close()
	}
	lastClient, lastServer := int64(-1), int64(-1)
	for i := 0; ctx.Err() == nil; i++ {
		st := c.Stats()
		if cr, sr := int64(st.ClientRotations), rot.n.Load(); cr != lastClient || sr != lastServer {
			fmt.Fprintf(out, "[keys] client rotations=%d server rotations=%d (server key changes the client followed: %d)\n", cr, sr, st.ServerKeyChanges)
			lastClient, lastServer = cr, sr
		}
		if i >= 60 && cr(st) >= 2 && rot.n.Load() >= 2 && st.ServerKeyChanges >= 2 {
			break
		}
		var created struct{ ID string }
		_ = json.Unmarshal([]byte(call(http.MethodPost, "/api/notes", `{"text":"note `+strconv.Itoa(i)+`"}`, http.StatusCreated, `"id"`)), &created)
		note := "/api/notes/" + created.ID
		call(http.MethodGet, note, "", http.StatusOK, "alice: note "+strconv.Itoa(i))
		call(http.MethodDelete, note, "", http.StatusNoContent, "")
		call(http.MethodGet, note, "", http.StatusNotFound, "no such note")
		time.Sleep(20 * time.Millisecond) // pace the demo
	}
	st := c.Stats()
	fmt.Fprintf(out, "summary: requests=%d failed=%d client_rotations=%d server_rotations=%d\n",
		requests, failed, st.ClientRotations, rot.n.Load())
	if failed > 0 || st.ClientRotations < 2 || rot.n.Load() < 2 {
		return errors.New("the demo failed; see the summary line")
	}
	return nil
}

func cr(st client.Stats) int64 { return int64(st.ClientRotations) }
