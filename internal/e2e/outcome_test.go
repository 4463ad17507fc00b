//go:build unix

package e2e

// At most once, and exactly once where it can be (issue 9 item 7,
// docs/PROTOCOL.md §11): a request whose response was lost is resent by the
// client with the same envelope; the server answers the resend with the
// response it kept, or with "outcome-unknown" when the handler never
// finished. The handler never runs twice. Tested over real connections: a
// hijacking proxy on loopback that hard-closes the client's connection, and
// server processes killed with SIGKILL and restarted on the same SQLite
// file.

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/client"
	"github.com/dynkey/dynkey/middleware"
	"github.com/dynkey/dynkey/store/memory"
	"github.com/dynkey/dynkey/store/sqlite"
	"github.com/dynkey/dynkey/wire"
)

// outcomeApp is a protected application that counts its runs per path;
// /api/block signals started and waits for release.
type outcomeApp struct {
	mu      sync.Mutex
	runs    map[string]int
	started chan struct{}
	release chan struct{}
	bigBody int // response size of /api/big
}

func (a *outcomeApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.runs[r.URL.Path]++
	a.mu.Unlock()
	b, _ := io.ReadAll(r.Body)
	switch r.URL.Path {
	case "/api/block":
		a.started <- struct{}{}
		<-a.release
	case "/api/big":
		b = []byte(strings.Repeat("x", a.bigBody))
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(echo{Method: r.Method, Path: r.URL.Path, Body: string(b)})
}

func (a *outcomeApp) count(path string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.runs[path]
}

// cutProxy is a reverse proxy on loopback that, for the first request to
// its target path, hard-closes the client's connection (RST): mode "after"
// once the server's whole response arrived (the response is lost on the
// wire, the handler finished), mode "during" once the handler started (the
// server's connection stays open, so the handler runs on).
type cutProxy struct {
	srv     *httptest.Server
	next    http.RoundTripper
	target  string
	mode    string
	started chan struct{} // "during": the handler signals it runs
	cut     atomic.Int32
	fwd     atomic.Int32 // requests to target forwarded
}

func newCutProxy(t *testing.T, upstream string) *cutProxy {
	p := &cutProxy{next: &http.Transport{}}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out := r.Clone(r.Context())
		out.RequestURI = ""
		out.URL.Scheme, out.URL.Host = "http", strings.TrimPrefix(upstream, "http://")
		if out.URL.Path == p.target {
			p.fwd.Add(1)
		}
		if out.URL.Path == p.target && p.cut.CompareAndSwap(0, 1) {
			switch p.mode {
			case "after":
				resp, err := p.next.RoundTrip(out.WithContext(context.WithoutCancel(r.Context())))
				if err == nil {
					_, _ = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
			case "during":
				go func() {
					resp, err := p.next.RoundTrip(out.WithContext(context.WithoutCancel(r.Context())))
					if err == nil {
						_, _ = io.ReadAll(resp.Body)
						resp.Body.Close()
					}
				}()
				<-p.started
			}
			hardClose(w)
			return
		}
		resp, err := p.next.RoundTrip(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// hardClose resets the client's connection without a byte of response.
func hardClose(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(err)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // RST, not FIN
	}
	_ = conn.Close()
}

// TestOutcomeLostResponse: through a proxy that cuts the client's
// connection, (a) after the handler finished: the client resends the same
// envelope and the caller gets the original response, the handler ran
// once; (b) while the handler runs: the resend gets "outcome-unknown", the
// caller a client.ErrOutcomeUnknown, the handler ran once; (c) after the
// handler, for a response over StoredResponseLimit: the resend gets
// "replay" (it ran, its response was not kept), never a second run.
//
// Defenses exercised: client roundTrip (resend with the same bytes),
// middleware/outcome.go (recordOutcome in Seal, lookupOutcome in open).
// Verified: with open treating a seen id as new (markSeen's "replay"
// ignored), every case ran the handler twice (the second run of
// /api/block hung until the 10 s timeout) and this test failed; with
// lookupOutcome answering every seen id with a plain "replay", the three
// cases other than the over-the-limit one failed.
func TestOutcomeLostResponse(t *testing.T) {
	for _, tc := range []struct {
		name     string
		method   string
		path     string
		mode     string
		limit    int64
		wantErr  error
		wantCode wire.Code
	}{
		{name: "POST, response lost after the handler", method: http.MethodPost, path: "/api/pay", mode: "after"},
		{name: "GET, response lost after the handler", method: http.MethodGet, path: "/api/pay", mode: "after"},
		{name: "PATCH, connection cut during the handler", method: http.MethodPatch, path: "/api/block", mode: "during", wantErr: client.ErrOutcomeUnknown},
		{name: "POST, response over the limit lost", method: http.MethodPost, path: "/api/big", mode: "after", limit: 1024, wantCode: wire.CodeReplay},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			o := baseOptions(t, clk, memory.New())
			o.StoredResponseLimit = tc.limit
			m, err := middleware.New(o)
			require.NoError(t, err)
			t.Cleanup(func() { _ = m.Close() })
			app := &outcomeApp{runs: map[string]int{}, started: make(chan struct{}, 1), release: make(chan struct{}), bigBody: 4096}
			mux := http.NewServeMux()
			mux.Handle("/dynkey/", m.Endpoints())
			mux.Handle("/.well-known/dynkey/", m.Endpoints())
			mux.Handle("/api/", m.Handler(app))
			srv := httptest.NewServer(mux)
			t.Cleanup(srv.Close)
			t.Cleanup(func() { close(app.release) })
			p := newCutProxy(t, srv.URL)
			p.target, p.mode, p.started = tc.path, tc.mode, app.started
			pinIdentity(t, p.srv.URL, m.IdentityPublicKey())
			c := newSDK(t, p.srv.URL, clk.Now, "alice", &http.Transport{})

			hc := c.HTTPClient()
			hc.Timeout = 10 * time.Second // a second run of /api/block would never return
			status, body, err := call(hc, tc.method, p.srv.URL+tc.path, "pay bob 10")
			require.Equal(t, 1, app.count(tc.path), "the handler ran exactly once")
			require.EqualValues(t, 2, p.fwd.Load(), "the envelope was resent once")
			if tc.method != http.MethodGet {
				// (net/http itself may resend a GET on a reused connection.)
				require.Equal(t, uint64(1), c.Stats().TransportRetries)
			}
			switch {
			case tc.wantErr != nil:
				require.ErrorIs(t, err, tc.wantErr)
			case tc.wantCode != "":
				require.NoError(t, err)
				pr, ok := wire.ParseProblem([]byte(body))
				require.True(t, ok, body)
				require.Equal(t, tc.wantCode, pr.Code)
				require.Equal(t, tc.wantCode.Status(), status)
			default:
				require.NoError(t, err)
				require.Equal(t, http.StatusOK, status, body)
				var e echo
				require.NoError(t, json.Unmarshal([]byte(body), &e), body)
				require.Equal(t, tc.path, e.Path)
				if tc.method != http.MethodGet {
					require.Equal(t, "pay bob 10", e.Body)
				}
			}
			// The client keeps working.
			status, body, err = call(c.HTTPClient(), http.MethodPost, p.srv.URL+"/api/after", "x")
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, status, body)
		})
	}
}

// TestOutcomeAnsweredOnlyInItsScope: the stored response of alice's
// message is not what another user gets by reusing its message id: ids are
// scoped per user, and the lookup happens only after the envelope
// authenticated. Mallory's message with alice's id is a new message of
// hers.
func TestOutcomeAnsweredOnlyInItsScope(t *testing.T) {
	clk := newClock()
	s := startServer(t, baseOptions(t, clk, memory.New()))
	alice := newRawClient(t, s.URL, clk.Now).mustLogin("alice")
	mallory := newRawClient(t, s.URL, clk.Now).mustLogin("mallory")
	am := alice.newMsg(http.MethodPost, "/api/echo", []byte("alice's")).seal(t)
	r := am.send(t, s.URL)
	require.Equal(t, http.StatusOK, r.Status)
	mm := mallory.newMsg(http.MethodPost, "/api/echo", []byte("mallory's"))
	mm.Header.MessageID = am.Header.MessageID
	r2 := mm.seal(t).send(t, s.URL)
	require.Equal(t, http.StatusOK, r2.Status)
	require.NotEqual(t, r.Body, r2.Body)
	require.Equal(t, "mallory's", r2.echo(t).Body)
	require.Equal(t, int64(2), s.app.calls.Load())
}

// ---------------------------------------------------------------------------
// Separate server processes, killed with SIGKILL.

const outcomeChildEnv = "DYNKEY_OUTCOME_CHILD"

// TestOutcomeChildProcess is not a test: it is the server process that
// TestOutcomeKill9 runs (this test binary, re-executed with
// DYNKEY_OUTCOME_CHILD set to "db-path|listen-address|runs-file"). Its
// handler appends every run to the runs file (synced) before answering;
// /api/block never answers; on /api/die-after the process kills itself
// with SIGKILL once the response is sealed (and recorded), before a byte of
// it is written.
func TestOutcomeChildProcess(t *testing.T) {
	env := os.Getenv(outcomeChildEnv)
	if env == "" {
		t.Skip("the server process of TestOutcomeKill9")
	}
	parts := strings.Split(env, "|")
	require.Len(t, parts, 3)
	st, err := sqlite.Open(parts[0])
	require.NoError(t, err)
	o := baseOptions(t, newClock(), st)
	o.Now = time.Now
	m, err := middleware.New(o)
	require.NoError(t, err)
	runs, err := os.OpenFile(parts[2], os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	require.NoError(t, err)
	var ranHere atomic.Bool // this process ran /api/die-after's handler
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/api/die-after" {
			ranHere.Store(true)
		}
		_, _ = fmt.Fprintf(runs, "%s %s\n", r.URL.Path, b)
		_ = runs.Sync()
		if r.URL.Path == "/api/block" {
			select {}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(echo{Method: r.Method, Path: r.URL.Path, Body: string(b)})
	})
	mux := http.NewServeMux()
	mux.Handle("/dynkey/", m.Endpoints())
	mux.Handle("/.well-known/dynkey/", m.Endpoints())
	mux.Handle("/api/", m.Handler(app))
	root := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/die-after" {
			w = &dieOnWrite{ResponseWriter: w, armed: &ranHere}
		}
		mux.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", parts[1])
	require.NoError(t, err)
	fmt.Printf("ready %s\n", hex.EncodeToString(m.IdentityPublicKey()))
	_ = http.Serve(ln, root)
}

// dieOnWrite kills its process when the response starts, if armed (the
// handler ran in this process: a restarted process answering the resend
// from the store lives).
type dieOnWrite struct {
	http.ResponseWriter
	armed *atomic.Bool
}

func (d *dieOnWrite) die() {
	if d.armed.Load() {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
}

func (d *dieOnWrite) WriteHeader(code int) { d.die(); d.ResponseWriter.WriteHeader(code) }
func (d *dieOnWrite) Write(b []byte) (int, error) {
	d.die()
	return d.ResponseWriter.Write(b)
}

// outcomeChild is a running server process.
type outcomeChild struct {
	cmd    *exec.Cmd
	exited chan struct{}
	id     string
}

func startOutcomeChild(t *testing.T, db, addr, runs string) *outcomeChild {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestOutcomeChildProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), outcomeChildEnv+"="+db+"|"+addr+"|"+runs)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	ch := &outcomeChild{cmd: cmd, exited: make(chan struct{})}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if id, ok := strings.CutPrefix(sc.Text(), "ready "); ok {
				ready <- id
			}
		}
		_ = cmd.Wait()
		close(ch.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-ch.exited
	})
	select {
	case ch.id = <-ready:
	case <-ch.exited:
		t.Fatal("the server process exited before it was ready")
	case <-time.After(30 * time.Second):
		t.Fatal("the server process did not start within 30s")
	}
	return ch
}

// runsOf counts the lines of the runs file for path.
func runsOf(t *testing.T, runs, path string) int {
	t.Helper()
	b, err := os.ReadFile(runs)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	require.NoError(t, err)
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, path+" ") {
			n++
		}
	}
	return n
}

// TestOutcomeKill9: a server process (SQLite store in a temp dir) is killed
// with SIGKILL (a) while a POST's handler runs: the client's resend reaches
// the restarted process, which answers "outcome-unknown", and the caller
// gets client.ErrOutcomeUnknown; (b) after the POST's handler finished and
// its response was sealed, before the response was written: the restarted
// process answers the resend with the original response and the caller
// gets it. In both, the handler ran exactly once (counted in a file the
// processes append to), and the client keeps working on the restarted
// process without logging in again.
//
// Defenses exercised: client roundTrip (resend after connection refused /
// reset / EOF, same envelope), middleware/outcome.go (the answer recorded
// in the store before the response is written; lookupOutcome). Verified:
// with open treating a seen id as new, (a) ran the handler a second time
// (which hung until the 30 s bound) and the test failed; with lookupOutcome
// answering every seen id with a plain "replay", (a) and (b) failed.
func TestOutcomeKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	dir := t.TempDir()
	db, runs := filepath.Join(dir, "dynkey.db"), filepath.Join(dir, "runs.txt")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	base := "http://" + addr

	child := startOutcomeChild(t, db, addr, runs)
	id, err := hex.DecodeString(child.id)
	require.NoError(t, err)
	c := newSDK(t, base, time.Now, "alice", &http.Transport{}, func(cfg *client.Config) {
		cfg.IdentityKey = id
		cfg.TransportRetries = 6 // 100 ms … 24 s: time for a restart
	})
	hc := c.HTTPClient()
	mustCall(t, hc, http.MethodPost, base+"/api/warm", "warm")

	type result struct {
		status int
		body   string
		err    error
	}
	async := func(path, body string) chan result {
		ch := make(chan result, 1)
		go func() {
			s, b, err := call(hc, http.MethodPost, base+path, body)
			ch <- result{s, b, err}
		}()
		return ch
	}
	wait := func(ch chan result) result {
		t.Helper()
		select {
		case r := <-ch:
			return r
		case <-time.After(30 * time.Second):
			t.Fatal("the call did not return within 30s")
			return result{}
		}
	}

	outer := t
	t.Run("kill -9 during the handler", func(t *testing.T) {
		ch := async("/api/block", "pay bob 10")
		require.Eventually(t, func() bool { return runsOf(t, runs, "/api/block") == 1 }, 20*time.Second, 10*time.Millisecond)
		require.NoError(t, child.cmd.Process.Signal(syscall.SIGKILL))
		<-child.exited
		child = startOutcomeChild(outer, db, addr, runs) // lives on into the next subtest
		r := wait(ch)
		require.ErrorIs(t, r.err, client.ErrOutcomeUnknown)
		require.Equal(t, 1, runsOf(t, runs, "/api/block"), "the handler ran exactly once")
		mustCall(t, hc, http.MethodPost, base+"/api/next", "next")
	})

	t.Run("kill -9 after the handler", func(t *testing.T) {
		ch := async("/api/die-after", "pay carol 20")
		select {
		case <-child.exited:
		case <-time.After(30 * time.Second):
			t.Fatal("the server process did not die")
		}
		child = startOutcomeChild(outer, db, addr, runs) // lives on into the next subtest
		r := wait(ch)
		require.NoError(t, r.err)
		require.Equal(t, http.StatusOK, r.status, r.body)
		var e echo
		require.NoError(t, json.Unmarshal([]byte(r.body), &e), r.body)
		require.Equal(t, "pay carol 20", e.Body)
		require.Equal(t, 1, runsOf(t, runs, "/api/die-after"), "the handler ran exactly once")
		mustCall(t, hc, http.MethodPost, base+"/api/next", "next")
	})
	require.GreaterOrEqual(t, c.Stats().TransportRetries, uint64(2))
	require.Equal(t, uint64(1), c.Stats().Logins, "the session survived the restarts")
}
