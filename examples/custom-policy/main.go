// Command custom-policy shows how to write your own key rotation policy and
// runs one end to end over loopback HTTP:
//
//	go run ./examples/custom-policy
//
// The policy (policy.go, under 40 lines) rotates the client key when the
// client's network address changes, as when a phone moves from Wi-Fi to
// cellular: a key is then never used from two networks. The demo simulates
// the address (Wi-Fi 10.0.0.5, then cellular 192.168.1.7, then Wi-Fi again),
// makes encrypted calls throughout, prints each client key rotation, and ends
// with one line:
//
//	summary: requests=<n> failed=<n> client_rotations=<n> server_rotations=<n>
//
// The exit status is 0 only if no request failed and the client rotated at
// least twice (once per address change).
//
// # Writing a policy
//
// A policy is any type with the two methods of [policy.Policy]:
//
//	Decide(f policy.Facts) policy.Decision // Keep, Rotate or Reject
//	String() string                        // a name for logs
//
// Built-ins print themselves in the syntax [policy.Parse] reads; yours can
// only be combined in code, with [policy.AnyOf] (rotate when any says so)
// and [policy.AllOf] (only when all do):
//
//	policy.AnyOf(rotateOnAddressChange(addr), policy.MustParse("offset_growth>=1h"))
//
// Concurrency: Decide is called from many goroutines at once (the client's
// heartbeat and every request; on the server, every request of every
// session), so guard any state with a mutex. It must also be fast and must
// not block or call back into the client or middleware: the client calls it
// with its own lock held, before heartbeats and idempotent requests.
//
// Statelessness helps: Decide is asked again and again, and a rotation may
// be delayed (rotations ride only on heartbeats and idempotent requests:
// GET, HEAD, OPTIONS, PUT, DELETE, never POST or PATCH) or fail. Keep
// answering Rotate until Facts.KeyID changes, as addrChange does, rather
// than answering Rotate once. A policy that keeps state should key it by
// Facts.KeyID: that is how it tells a new key from the old one.
//
// Facts available on each side (a fact a side does not know is zero):
//
//   - client.Config.Policy, about the client's own key: Now (the local
//     clock), Age and OffsetGrowth (both how far the server clock advanced
//     since the key was installed, immune to a wrong local clock), Messages
//     and Bytes (sent under the key), KeyID.
//   - middleware.Options.ClientPolicy, the server's view of each client key:
//     Now, Age and OffsetGrowth (since the key was installed, server clock),
//     KeyID. One policy serves every session, so per-key state must be a map.
//     Rotate asks the client to rotate in a heartbeat response; Reject
//     refuses the key until it rotates.
//   - middleware.Options.ServerPolicy, about the server's key pair: Now, Age
//     (time since it became primary, its uptime), KeyID.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dynkey/dynkey/auth"
	"github.com/dynkey/dynkey/client"
	"github.com/dynkey/dynkey/middleware"
	"github.com/dynkey/dynkey/policy"
	"github.com/dynkey/dynkey/wire"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "custom-policy:", err)
		os.Exit(1)
	}
}

// The simulated network addresses of the client.
const (
	wifi     = "10.0.0.5"
	cellular = "192.168.1.7"
)

const (
	heartbeatInterval = 100 * time.Millisecond
	// stay is how long the demo stays on each network (longer, up to
	// 4*stay, if the client has not rotated yet on a busy machine).
	stay = 850 * time.Millisecond
	pace = 40 * time.Millisecond // between two calls
)

// lockedWriter writes whole lines from several goroutines (the client's
// heartbeat, the server's maintenance loop and the demo).
type lockedWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := io.WriteString(l.w, l.prefix); err != nil {
		return 0, err
	}
	return l.w.Write(b)
}

// logTo returns a logger that prints "prefix level=… msg=…" lines, without
// the time, through out.
func logTo(out io.Writer, prefix string, level slog.Level) *slog.Logger {
	w := &lockedWriter{w: out, prefix: prefix}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{}
			}
			return a
		}}))
}

// run is the whole demo. It prints the summary line last, after everything
// it started has stopped.
func run(ctx context.Context, stdout io.Writer) error {
	out := &lockedWriter{w: stdout}
	printf := func(format string, a ...any) { fmt.Fprintf(out, format+"\n", a...) }

	// Everything started is stopped, in reverse order, before the summary
	// (or on an early error).
	var closers []func()
	cleanup := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
		closers = nil
	}
	defer cleanup()

	// --- Server: net/http with the dynkey middleware --------------------

	// Cheap argon2id parameters for the demo only; production servers use
	// auth.DefaultParams.
	users := auth.NewArgon2id(auth.Params{Time: 1, MemoryKiB: 1024, Threads: 1, SaltLen: 16, KeyLen: 32})
	if err := users.AddUser("alice", "s3cret"); err != nil {
		return err
	}
	kek := make([]byte, 32) // a real deployment loads it from its secret manager
	rand.Read(kek)
	serverPolicy := policy.MustParse("uptime>=1s") // so the server rotates too
	m, err := middleware.New(middleware.Options{
		Authenticator:    users,
		KeyEncryptionKey: kek,
		ServerPolicy:     serverPolicy,
		MaintainInterval: 200 * time.Millisecond,
		Logger:           logTo(out, "[server] ", slog.LevelInfo), // logs its rotations
	})
	if err != nil {
		return err
	}
	closers = append(closers, func() { m.Close() })

	api := http.NewServeMux()
	api.HandleFunc("POST /api/echo", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "echo: %s", b)
	})
	api.HandleFunc("GET /api/whoami", func(w http.ResponseWriter, r *http.Request) {
		s, _ := middleware.FromContext(r.Context())
		fmt.Fprintf(w, "%s, your client key is %s", s.Username, s.ClientKeyID)
		if s.Rotated {
			fmt.Fprint(w, " (this request rotated it)")
		}
	})
	mux := http.NewServeMux()
	mux.Handle("/dynkey/", m.Endpoints())
	mux.Handle("/.well-known/dynkey/", m.Endpoints())
	mux.Handle("/api/", m.Handler(api))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln)
	}()
	closers = append(closers, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-served
	})
	base := "http://" + ln.Addr().String()
	printf("[server] listening on %s; server policy %q", base, serverPolicy)

	// --- Client with the custom policy ----------------------------------

	var addr atomic.Value // the simulated network address
	addr.Store(wifi)
	pol := policy.AnyOf(
		rotateOnAddressChange(func() string { return addr.Load().(string) }),
		policy.MustParse("offset_growth>=1h"),
	)
	transport := &http.Transport{}
	closers = append(closers, transport.CloseIdleConnections)
	c, err := client.New(client.Config{
		BaseURL:           base,
		Username:          "alice",
		Password:          "s3cret",
		IdentityKey:       m.IdentityPublicKey(),
		Policy:            pol,
		HeartbeatInterval: heartbeatInterval,
		Transport:         transport,
		Logger:            logTo(out, "[client] ", slog.LevelWarn),
		OnEvent: func(e client.Event) {
			switch e.Kind {
			case client.EventHeartbeat:
			case client.EventLogin:
				printf("[client] %s", e.Detail)
			case client.EventClientKeyRotated:
				printf("[client] rotated its key (address now %s): %s", addr.Load(), e.Detail)
			default:
				printf("[client] %s: %s", e.Kind, e.Detail)
			}
		},
	})
	if err != nil {
		return err
	}
	closers = append(closers, func() { c.Close() })
	printf("[client] policy %q, heartbeat every %v", pol, heartbeatInterval)

	// --- Calls while the network changes --------------------------------

	var requests, failed int
	var shownKey string // the client key the server reported last
	call := func(n int) {
		var req *http.Request
		want := "alice, your client key is "
		if n%2 == 0 {
			// GET may carry a rotation; a POST never does.
			req, _ = http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/whoami", nil)
		} else {
			msg := fmt.Sprintf("call %d", n)
			req, _ = http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/echo", strings.NewReader(msg))
			want = "echo: " + msg
		}
		resp, err := c.HTTPClient().Do(req)
		if err != nil {
			if ctx.Err() == nil {
				failed++
				printf("[client] FAILED: %s %s: %v", req.Method, req.URL.Path, err)
			}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(b), want) {
			failed++
			printf("[client] FAILED: %s %s -> %d %s", req.Method, req.URL.Path, resp.StatusCode, b)
			return
		}
		requests++
		// Print the first POST, and each GET that shows the server saw a
		// new client key.
		if req.Method == http.MethodGet {
			_, key, _ := strings.Cut(string(b), "client key is ")
			key, _, _ = strings.Cut(key, " ")
			if key == shownKey {
				return
			}
			shownKey = key
		} else if n > 1 {
			return
		}
		printf("[client] %s %s -> %d %s", req.Method, req.URL.Path, resp.StatusCode, b)
	}

	keyID := func() wire.KeyID { id, _ := c.ClientKeyID(); return id }
	networks := []struct{ name, addr string }{{"Wi-Fi", wifi}, {"cellular", cellular}, {"Wi-Fi", wifi}}
	n := 0
	for i, nw := range networks {
		before, beforeKey := c.Stats().ClientRotations, keyID()
		if i == 0 {
			printf("[demo] on %s, address %s", nw.name, nw.addr)
		} else {
			prev := networks[i-1]
			printf("[demo] network change %s -> %s: address %s -> %s", prev.name, nw.name, prev.addr, nw.addr)
			addr.Store(nw.addr)
		}
		start := time.Now()
		for ctx.Err() == nil {
			rotated := c.Stats().ClientRotations > before
			if time.Since(start) >= 4*stay || time.Since(start) >= stay && (i == 0 || rotated) {
				break
			}
			n++
			call(n)
			select {
			case <-ctx.Done():
			case <-time.After(pace):
			}
		}
		if i > 0 {
			if rot := c.Stats().ClientRotations - before; rot > 0 {
				printf("[demo] after the change the client rotated its key %d time(s): %s -> %s", rot, beforeKey, keyID())
			} else {
				printf("[demo] FAILED: the client did not rotate its key after the change")
			}
		}
	}

	// --- Summary --------------------------------------------------------

	// Stop the client and the server first, so the counts are final and
	// nothing prints after the summary line.
	c.Close()
	st := c.Stats()
	cleanup()
	printf("summary: requests=%d failed=%d client_rotations=%d server_rotations=%d",
		requests, failed, st.ClientRotations, st.ServerKeyChanges)
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case failed > 0 || st.ClientRotations < 2:
		return errDemoFailed
	}
	return nil
}

// errDemoFailed is returned after the summary line when a call failed or
// the client rotated fewer than twice.
var errDemoFailed = errors.New("the demo failed; see the summary line")
