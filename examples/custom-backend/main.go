// Command custom-backend registers a user-written suite (suite.go, one page)
// and runs dynkey with it end to end over loopback HTTP: login, encrypted
// calls, a client key rotation and a server key rotation.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/dynkey/dynkey/auth"
	"github.com/dynkey/dynkey/client"
	"github.com/dynkey/dynkey/crypto"
	"github.com/dynkey/dynkey/middleware"
)

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "custom-backend:", err)
		os.Exit(1)
	}
}

// Registering makes "example-naclbox" work wherever a suite name does.
func init() { crypto.Register(naclBox{}) }

func run(out io.Writer) error {
	users := auth.NewArgon2id(auth.Params{Time: 1, MemoryKiB: 19 * 1024, Threads: 1, SaltLen: 16, KeyLen: 32})
	if err := users.AddUser("alice", "s3cret"); err != nil {
		return err
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := middleware.New(middleware.Options{Suite: "example-naclbox", Authenticator: users, MaintainInterval: -1, Logger: quiet})
	if err != nil {
		return err
	}
	defer m.Close()
	mux := http.NewServeMux()
	mux.Handle("/dynkey/", m.Endpoints())
	mux.Handle("/.well-known/dynkey/", m.Endpoints())
	mux.Handle("/api/", m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "hello %s, you said %q", must(middleware.FromContext(r.Context())).Username, b)
	})))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	defer srv.Close()
	base := "http://" + ln.Addr().String()

	c, err := client.New(client.Config{BaseURL: base, Username: "alice", Password: "s3cret",
		Suite: "example-naclbox", IdentityKey: m.IdentityPublicKey(), HeartbeatInterval: -1, Logger: quiet, OnEvent: func(e client.Event) { fmt.Fprintln(out, "event:", e.Kind, e.Detail) }})
	if err != nil {
		return err
	}
	defer c.Close()
	requests, failed := 0, 0
	call := func(msg string) {
		resp, err := c.HTTPClient().Post(base+"/api/echo", "text/plain", strings.NewReader(msg))
		if err != nil {
			failed++
			fmt.Fprintln(out, "call failed:", err)
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			failed++
		}
		requests++
		fmt.Fprintf(out, "%d %s\n", resp.StatusCode, b)
	}
	call("first")
	// The client rotates on a heartbeat (or an idempotent request) once its
	// next key, generated in the background, is ready.
	c.RotateNow()
	for i := 0; i < 100 && c.Stats().ClientRotations == 0; i++ {
		if err := c.Heartbeat(context.Background()); err != nil {
			return err
		}
	}
	call("after the client rotated")
	if err := m.Rotate(context.Background()); err != nil {
		return err
	}
	if err := c.Heartbeat(context.Background()); err != nil {
		return err
	}
	call("after the server rotated")
	st := c.Stats()
	fmt.Fprintf(out, "summary: requests=%d failed=%d client_rotations=%d server_rotations=%d\n",
		requests, failed, st.ClientRotations, st.ServerKeyChanges)
	if failed > 0 {
		return fmt.Errorf("%d failed requests", failed)
	}
	return nil
}

func must[T any](v T, _ bool) T { return v }
