package e2e

// A bounded load test on loopback: real HTTP, the real middleware over the
// memory store and over SQLite, the real Go client SDK, with the server key
// pair rotating by policy (and by hand, so that every run sees rotations
// however fast it goes) and every client rotating its own key by policy,
// while requests are in flight. Zero requests may fail.
//
// Its size is reduced by default, so that it runs in `go test -race ./...`
// on a loaded 2-core machine; DYNKEY_LOAD_FULL=1 selects the full size
// (1,000 sessions × 50 requests) and logs the numbers:
//
//	DYNKEY_LOAD_FULL=1 go test ./internal/e2e -run TestLoad -v -timeout 30m
//
// DYNKEY_LOAD_CLUSTER=1 also runs two instances sharing one SQLite file
// behind a round-robin balancer, which fails today (see the skip below).

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/auth"
	"github.com/dynkey/dynkey/client"
	"github.com/dynkey/dynkey/middleware"
	"github.com/dynkey/dynkey/policy"
	"github.com/dynkey/dynkey/store"
	"github.com/dynkey/dynkey/store/memory"
	"github.com/dynkey/dynkey/store/sqlite"
	"github.com/dynkey/dynkey/wire"
)

// loadSize is the shape of one load run.
type loadSize struct {
	sessions    int           // client sessions, each its own login and key
	requests    int           // requests per session
	parallel    int           // sessions alive at once
	perSession  int           // concurrent requests within a session
	deadline    time.Duration // the whole run, after which it fails
	manualRotas int           // server rotations forced by hand, evenly spread
}

var (
	loadReduced = loadSize{sessions: 50, requests: 20, parallel: 16, perSession: 2, deadline: 50 * time.Second, manualRotas: 3}
	loadFull    = loadSize{sessions: 1000, requests: 50, parallel: 64, perSession: 2, deadline: 15 * time.Minute, manualRotas: 9}
)

func TestLoad(t *testing.T) {
	size := loadReduced
	if os.Getenv("DYNKEY_LOAD_FULL") == "1" {
		size = loadFull
	}
	sqliteFile := func(t *testing.T) string { return filepath.Join(t.TempDir(), "dynkey.db") }
	openSQLite := func(t *testing.T, path string) store.Store {
		st, err := sqlite.Open(path)
		require.NoError(t, err)
		t.Cleanup(func() { _ = st.Close() })
		return st
	}
	tests := []struct {
		name string
		// stores returns one store per server instance; instances given
		// the same store (or the same database file) form one cluster.
		stores func(t *testing.T) []store.Store
	}{
		{"memory", func(t *testing.T) []store.Store { return []store.Store{memory.New()} }},
		{"sqlite", func(t *testing.T) []store.Store { return []store.Store{openSQLite(t, sqliteFile(t))} }},
		// Two instances sharing one database file, requests alternating
		// between them: rotations race as compare-and-swaps, and an
		// instance meets keys the other one made.
		{"sqlite-two-instances", func(t *testing.T) []store.Store {
			path := sqliteFile(t)
			return []store.Store{openSQLite(t, path), openSQLite(t, path)}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if strings.HasSuffix(tt.name, "-two-instances") && os.Getenv("DYNKEY_LOAD_CLUSTER") != "1" {
				// Known failure (reported to the middleware and client
				// owners): an instance whose ring lags the store refuses a
				// key another instance just made with server-key-unknown,
				// carrying its own older directory, which the client
				// rightly ignores (no rollback); it will not refetch within
				// 10 s, so the request or login fails; and the lagging
				// instance reloads at most once a second (never in its
				// first second). 2-8 % of requests fail at the reduced
				// size.
				t.Skip("known cluster failure after a rotation on another instance; DYNKEY_LOAD_CLUSTER=1 runs it")
			}
			runLoad(t, tt.stores(t), size)
		})
	}
}

// loadResult is what one run measured.
type loadResult struct {
	requests, failures atomic.Int64
	loginRetries       atomic.Int64
	clientRotations    atomic.Uint64
	serverKeyChanges   atomic.Uint64 // as the clients saw them
	recoveries         atomic.Uint64

	mu       sync.Mutex
	firstErr []string
	byCause  map[string]int // failures by problem code, or "other"
}

func (r *loadResult) fail(format string, args ...any) {
	r.failures.Add(1)
	msg := fmt.Sprintf(format, args...)
	cause := "other"
	if _, after, ok := strings.Cut(msg, `"code":"`); ok {
		cause, _, _ = strings.Cut(after, `"`)
	} else if strings.Contains(msg, "login:") {
		cause = "login"
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byCause == nil {
		r.byCause = map[string]int{}
	}
	r.byCause[cause]++
	if len(r.firstErr) < 10 || cause == "login" && len(r.firstErr) < 12 {
		r.firstErr = append(r.firstErr, msg)
	}
}

func runLoad(t *testing.T, stores []store.Store, size loadSize) {
	resetPeakRSS()
	ctx, cancel := context.WithTimeout(context.Background(), size.deadline)
	defer cancel()

	users := auth.NewArgon2id(testParams)
	for i := range size.sessions {
		require.NoError(t, users.AddUser(loadUser(i), loadUser(i)+"-pw"))
	}
	var ms []*middleware.Middleware
	var apps []*app
	var handlers []http.Handler
	for _, st := range stores {
		m, err := middleware.New(middleware.Options{
			Store:            st,
			Authenticator:    users,
			KeyEncryptionKey: testKEK,
			Logger:           quietLog,
			// The server key pair rotates after one second of uptime,
			// checked ten times a second (claim 6). A retired key keeps
			// opening messages for 30 s: longer than any request or
			// heartbeat interval of this run, so no in-flight use
			// outlives it.
			ServerPolicy:     policy.Uptime(time.Second),
			MaintainInterval: 100 * time.Millisecond,
			ServerKeyGrace:   30 * time.Second,
			ClientKeyGrace:   30 * time.Second,
		})
		require.NoError(t, err)
		defer m.Close()
		a := &app{}
		mux := http.NewServeMux()
		mux.Handle("/dynkey/", m.Endpoints())
		mux.Handle("/.well-known/dynkey/", m.Endpoints())
		mux.Handle("/api/", m.Handler(a))
		ms, apps, handlers = append(ms, m), append(apps, a), append(handlers, mux)
	}
	m := ms[0]
	// Requests alternate between the instances, as behind a round-robin
	// load balancer.
	var next atomic.Uint64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handlers[(next.Add(1)-1)%uint64(len(handlers))].ServeHTTP(w, r)
	}))
	defer srv.Close()
	handlerCalls := func() int64 {
		var n int64
		for _, a := range apps {
			n += a.calls.Load()
		}
		return n
	}

	// One connection pool for every client, sized for the concurrency, so
	// that loopback ports are reused rather than exhausted.
	tr := &http.Transport{MaxIdleConns: 4 * size.parallel * size.perSession, MaxIdleConnsPerHost: 4 * size.parallel * size.perSession,
		IdleConnTimeout: 30 * time.Second}
	defer tr.CloseIdleConnections()

	epoch0 := directoryEpoch(t, srv.URL, m)
	clientPolicy := policy.MustParse("messages>=10 or age>=1s")

	var res loadResult
	total := int64(size.sessions * size.requests)
	start := time.Now()

	// Forced rotations, evenly spread over the run by progress (not by
	// time), so that even a run faster than the uptime policy rotates.
	rotDone := make(chan struct{})
	go func() {
		defer close(rotDone)
		for k := 1; k <= size.manualRotas; k++ {
			threshold := total * int64(k) / int64(size.manualRotas+1)
			for res.requests.Load()+res.failures.Load() < threshold {
				select {
				case <-ctx.Done():
					return
				case <-time.After(5 * time.Millisecond):
				}
			}
			if err := m.Rotate(ctx); err != nil && ctx.Err() == nil {
				res.fail("manual rotation %d: %v", k, err)
			}
		}
	}()

	sessions := make(chan int)
	var wg sync.WaitGroup
	for range size.parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range sessions {
				runSession(ctx, srv.URL, m.IdentityPublicKey(), tr, clientPolicy, i, size, &res)
			}
		}()
	}
	for i := range size.sessions {
		select {
		case sessions <- i:
		case <-ctx.Done():
		}
	}
	close(sessions)
	wg.Wait()
	// The rotation goroutine ends once its last threshold is passed, or at
	// the deadline.
	if res.requests.Load()+res.failures.Load() < total {
		cancel()
	}
	<-rotDone
	elapsed := time.Since(start)

	epoch1 := directoryEpoch(t, srv.URL, m)
	serverRotations := epoch1 - epoch0
	t.Logf("load %s: instances=%d sessions=%d requests_per_session=%d parallel_sessions=%d requests=%d failures=%d handler_calls=%d "+
		"server_rotations=%d (epoch %d -> %d, %d by hand) client_rotations=%d server_key_changes_seen=%d recoveries=%d login_retries=%d "+
		"duration=%v req_per_s=%.0f peak_rss_mib=%.1f",
		t.Name(), len(ms), size.sessions, size.requests, size.parallel, res.requests.Load(), res.failures.Load(), handlerCalls(),
		serverRotations, epoch0, epoch1, size.manualRotas, res.clientRotations.Load(), res.serverKeyChanges.Load(),
		res.recoveries.Load(), res.loginRetries.Load(), elapsed.Round(time.Millisecond),
		float64(res.requests.Load())/elapsed.Seconds(), float64(peakRSS())/(1<<20))
	if len(res.byCause) > 0 {
		t.Logf("failures by cause: %v", res.byCause)
	}
	for _, e := range res.firstErr {
		t.Log("failure:", e)
	}
	require.NoError(t, ctx.Err(), "the run did not finish within %v", size.deadline)
	require.Zero(t, res.failures.Load(), "failed requests")
	require.Equal(t, total, res.requests.Load(), "requests that succeeded")
	// Every request ran its handler exactly once (heartbeats and logins do
	// not reach the handler).
	require.Equal(t, total, handlerCalls(), "handler calls")
	require.GreaterOrEqual(t, serverRotations, uint64(size.manualRotas), "server key rotations")
	require.NotZero(t, res.clientRotations.Load(), "client key rotations")
}

func loadUser(i int) string { return "load-user-" + strconv.Itoa(i) }

// runSession logs one client in and sends size.requests requests from
// size.perSession goroutines at once, mixing methods (the SDK rotates only
// on heartbeats and idempotent requests), checking every answer.
func runSession(ctx context.Context, base string, identity ed25519.PublicKey, tr http.RoundTripper, p policy.Policy, i int, size loadSize, res *loadResult) {
	user := loadUser(i)
	c, err := client.New(client.Config{
		BaseURL: base, Username: user, Password: user + "-pw",
		// Plain HTTP on loopback: the identity is pinned, as over any
		// transport without TLS.
		IdentityKey:       identity,
		Policy:            p,
		HeartbeatInterval: time.Second,
		Transport:         tr,
		Logger:            quietLog,
	})
	if err != nil {
		res.fail("%s: client.New: %v", user, err)
		return
	}
	defer func() {
		_ = c.Close()
		st := c.Stats()
		res.clientRotations.Add(st.ClientRotations)
		res.serverKeyChanges.Add(st.ServerKeyChanges)
		res.recoveries.Add(st.Recoveries)
	}()
	if err := loginWithBackoff(ctx, c, res); err != nil {
		res.fail("%s: login: %v", user, err)
		return
	}
	hc := c.HTTPClient()
	methods := []string{http.MethodPut, http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch}
	var wg sync.WaitGroup
	for g := range size.perSession {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := g; r < size.requests; r += size.perSession {
				method := methods[r%len(methods)]
				body := fmt.Sprintf("%s request %d", user, r)
				if err := loadRequest(ctx, hc, base, method, user, body); err != nil {
					res.fail("%s %s #%d: %v", user, method, r, err)
					continue
				}
				res.requests.Add(1)
			}
		}()
	}
	wg.Wait()
}

// loginWithBackoff logs in, waiting and trying again only when the server
// says it is busy (a 429 or 503 problem other than a failed-login lockout):
// what a well-behaved client does when password checks are rationed.
func loginWithBackoff(ctx context.Context, c *client.Client, res *loadResult) error {
	wait := 10 * time.Millisecond
	for {
		err := c.Login(ctx)
		var p *wire.Problem
		if err == nil || !errors.As(err, &p) || p.Code == wire.CodeLoginFailed || p.Code == wire.CodeLoginThrottled ||
			(p.Status != http.StatusTooManyRequests && p.Status != http.StatusServiceUnavailable) {
			return err
		}
		res.loginRetries.Add(1)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

func loadRequest(ctx context.Context, hc *http.Client, base, method, user, body string) error {
	req, err := http.NewRequestWithContext(ctx, method, base+"/api/load?u="+user, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/plain")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	var e echo
	if err := json.Unmarshal(b, &e); err != nil {
		return fmt.Errorf("response %q: %v", b, err)
	}
	if e.User != user || e.Method != method || e.Body != body || e.Path != "/api/load" || e.Query != "u="+user {
		return fmt.Errorf("handler saw %+v", e)
	}
	return nil
}

// directoryEpoch fetches the signed key directory over HTTP, verifies it
// against the server's identity key and returns its epoch, which grows by
// one with every server key rotation.
func directoryEpoch(t *testing.T, base string, m *middleware.Middleware) uint64 {
	t.Helper()
	resp, err := http.Get(base + "/.well-known/dynkey/keys")
	require.NoError(t, err)
	defer resp.Body.Close()
	var sd wire.SignedDirectory
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&sd))
	d, err := sd.Verify(m.IdentityPublicKey())
	require.NoError(t, err)
	return d.Epoch
}

// resetPeakRSS resets the kernel's peak resident set size of this process
// (VmHWM), where Linux allows it, so that each run reports its own peak.
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// peakRSS returns VmHWM from /proc/self/status in bytes, or 0 where there
// is no such file.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("VmHWM:")); ok {
			f := strings.Fields(string(v))
			if len(f) == 2 && f[1] == "kB" {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n << 10
			}
		}
	}
	return 0
}
