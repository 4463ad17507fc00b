package e2e

// Login throttling by client address and canonical username, the bound on
// concurrent password checks, and the cost of junk (issue 7, item 5).

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
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
	"github.com/dynkey/dynkey/middleware"
	"github.com/dynkey/dynkey/store"
	"github.com/dynkey/dynkey/store/memory"
	"github.com/dynkey/dynkey/store/sqlite"
	"github.com/dynkey/dynkey/wire"
)

// clientFrom is an HTTP client whose connections leave from the loopback
// address ip (127.0.0.0/8 is all loopback on Linux), so that the server
// sees a different peer address per client.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}, Timeout: 30 * time.Second}
}

// loginFrom sends a login for user with password from hc, with extra
// headers, and returns the problem code ("" on success).
func loginFrom(t *testing.T, hc *http.Client, rc *rawClient, user, password string, hdr map[string]string) wire.Code {
	t.Helper()
	m := rc.loginMsg(user, password).seal(t)
	req, err := http.NewRequest(http.MethodPost, rc.base+wire.PathLogin, bytes.NewReader(m.env))
	require.NoError(t, err)
	req.Header.Set("Content-Type", wire.MediaType)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := hc.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if resp.StatusCode == http.StatusOK {
		return ""
	}
	p, ok := wire.ParseProblem(b)
	require.True(t, ok, "%d %s", resp.StatusCode, b)
	return p.Code
}

// limiters are the built-in limiters, each as a test server option.
func limiters(o *middleware.Options) map[string]func(lo middleware.LimiterOptions) middleware.LoginLimiter {
	return map[string]func(lo middleware.LimiterOptions) middleware.LoginLimiter{
		"store": func(lo middleware.LimiterOptions) middleware.LoginLimiter {
			return middleware.NewStoreLimiter(o.Store, lo)
		},
		"memory": middleware.NewMemoryLimiter,
	}
}

// TestThrottleStrangerDoesNotLockOutUser: a stranger who exhausts the
// guesses for alice from one address is refused from that address, while
// alice logs in from another; strangers from enough addresses together
// exhaust the per-user budget; the window is fixed, not renewed.
//
// Defense exercised: middleware/limiter.go, budgets keyed by (address,
// user), user and address. Verified: with the (address, user) key
// replaced by the user alone (the old throttle), alice was refused with
// "login-throttled" from her own address and the test failed.
func TestThrottleStrangerDoesNotLockOutUser(t *testing.T) {
	for _, name := range []string{"store", "memory"} {
		t.Run(name, func(t *testing.T) {
			clk := newClock()
			o := baseOptions(t, clk, memory.New())
			o.LoginLimiter = limiters(&o)[name](middleware.LimiterOptions{PerAddressUser: 3, PerUser: 6, PerAddress: 100, Window: 15 * time.Minute})
			s := startServer(t, o)
			rc := newRawClient(t, s.URL, clk.Now)
			stranger, aliceHC := clientFrom("127.0.0.2"), clientFrom("127.0.0.1")

			for range 3 {
				require.Equal(t, wire.CodeLoginFailed, loginFrom(t, stranger, rc, "alice", "guess", nil))
			}
			require.Equal(t, wire.CodeLoginThrottled, loginFrom(t, stranger, rc, "alice", "guess", nil))
			require.Equal(t, wire.CodeLoginThrottled, loginFrom(t, stranger, rc, "alice", testUsers["alice"], nil), "even the right password, from the stranger's address")
			require.Equal(t, wire.Code(""), loginFrom(t, aliceHC, rc, "alice", testUsers["alice"], nil), "alice from her own address")
			require.Equal(t, wire.Code(""), loginFrom(t, stranger, rc, "bob", testUsers["bob"], nil), "other users from the stranger's address")

			// A second address brings the user's failures to 6, the
			// per-user budget: now every address is refused for alice
			// until the window (from the first failure) has passed.
			second := clientFrom("127.0.0.3")
			for range 3 {
				require.Equal(t, wire.CodeLoginFailed, loginFrom(t, second, rc, "alice", "guess", nil))
			}
			require.Equal(t, wire.CodeLoginThrottled, loginFrom(t, aliceHC, rc, "alice", testUsers["alice"], nil), "per-user budget")
			clk.Advance(15*time.Minute - time.Second)
			require.Equal(t, wire.CodeLoginThrottled, loginFrom(t, clientFrom("127.0.0.4"), rc, "alice", testUsers["alice"], nil))
			clk.Advance(time.Second)
			require.Equal(t, wire.Code(""), loginFrom(t, aliceHC, rc, "alice", testUsers["alice"], nil), "the window has passed")
		})
	}
}

// foldAuth matches usernames case-insensitively and says so through
// auth.Canonicalizer.
type foldAuth struct{ *auth.Argon2id }

func (f foldAuth) Authenticate(ctx context.Context, user, password string) error {
	return f.Argon2id.Authenticate(ctx, strings.ToLower(user), password)
}
func (f foldAuth) Canonical(user string) string { return strings.ToLower(user) }

// TestThrottleCanonicalUsername: spellings of one account share its
// budget when the authenticator canonicalizes names.
//
// Defense exercised: middleware/endpoints.go, the attempt's User is
// auth.CanonicalUsername. Verified: with the raw username instead, the
// fourth spelling logged in and the test failed.
func TestThrottleCanonicalUsername(t *testing.T) {
	clk := newClock()
	o := baseOptions(t, clk, memory.New())
	o.Authenticator = foldAuth{newUsers(t)}
	o.MaxFailedLogins = 3
	s := startServer(t, o)
	rc := newRawClient(t, s.URL, clk.Now)
	hc := clientFrom("127.0.0.1")
	require.Equal(t, wire.Code(""), loginFrom(t, hc, rc, "ALICE", testUsers["alice"], nil), "the authenticator folds case")
	for _, spelling := range []string{"Alice", "aLICE", "alicE"} {
		require.Equal(t, wire.CodeLoginFailed, loginFrom(t, hc, rc, spelling, "guess", nil))
	}
	require.Equal(t, wire.CodeLoginThrottled, loginFrom(t, hc, rc, "AlIcE", testUsers["alice"], nil))
	require.Equal(t, wire.CodeLoginThrottled, loginFrom(t, hc, rc, "alice", testUsers["alice"], nil))
}

// TestThrottleClientAddressBehindProxies: X-Forwarded-For and Forwarded
// are ignored from a peer that is not a trusted proxy (a stranger cannot
// escape the throttle by inventing addresses), and believed — from the
// right, skipping trusted hops — from one that is.
//
// Defense exercised: middleware/clientaddr.go. Verified: reading
// X-Forwarded-For from any peer let the stranger log in ten more times
// with invented addresses, and the test failed.
func TestThrottleClientAddressBehindProxies(t *testing.T) {
	t.Run("untrusted peer", func(t *testing.T) {
		clk := newClock()
		o := baseOptions(t, clk, memory.New())
		o.MaxFailedLogins = 3
		s := startServer(t, o)
		rc := newRawClient(t, s.URL, clk.Now)
		hc := clientFrom("127.0.0.2")
		for i := range 3 {
			require.Equal(t, wire.CodeLoginFailed, loginFrom(t, hc, rc, "alice", "guess", map[string]string{"X-Forwarded-For": "198.51.100." + strconv.Itoa(i)}))
		}
		for i := range 10 {
			hdr := map[string]string{"X-Forwarded-For": "203.0.113." + strconv.Itoa(i), "Forwarded": "for=192.0.2." + strconv.Itoa(i)}
			require.Equal(t, wire.CodeLoginThrottled, loginFrom(t, hc, rc, "alice", "guess", hdr), "spoofed headers ignored")
		}
		require.Equal(t, wire.Code(""), loginFrom(t, clientFrom("127.0.0.1"), rc, "alice", testUsers["alice"], nil))
	})
	t.Run("trusted proxy", func(t *testing.T) {
		clk := newClock()
		o := baseOptions(t, clk, memory.New())
		o.MaxFailedLogins = 3
		o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8")}
		s := startServer(t, o)
		rc := newRawClient(t, s.URL, clk.Now)
		proxy := clientFrom("127.0.0.1")
		for i := range 3 {
			// The client wrote a different spoofed address each time; the
			// proxies appended the real one and themselves.
			hdr := map[string]string{"X-Forwarded-For": "198.51.100." + strconv.Itoa(i) + ", 203.0.113.7, 10.1.2.3"}
			require.Equal(t, wire.CodeLoginFailed, loginFrom(t, proxy, rc, "alice", "guess", hdr))
		}
		require.Equal(t, wire.CodeLoginThrottled, loginFrom(t, proxy, rc, "alice", testUsers["alice"], map[string]string{"X-Forwarded-For": "203.0.113.7"}))
		require.Equal(t, wire.CodeLoginThrottled, loginFrom(t, proxy, rc, "alice", testUsers["alice"], map[string]string{"Forwarded": `for="203.0.113.7:4711";proto=https`}))
		require.Equal(t, wire.Code(""), loginFrom(t, proxy, rc, "alice", testUsers["alice"], map[string]string{"X-Forwarded-For": "203.0.113.8"}), "alice behind the same proxy")
		require.Equal(t, wire.Code(""), loginFrom(t, proxy, rc, "alice", testUsers["alice"], map[string]string{"Forwarded": `for="[2001:db8::1]"`}))
		// The proxy itself, with no header, is one more address.
		require.Equal(t, wire.Code(""), loginFrom(t, proxy, rc, "alice", testUsers["alice"], nil))
	})
}

// holdAuth blocks every password check until release is closed and
// records how many ran at once. Past safety (if set) concurrent checks it
// answers without hashing, so that a test run without the bound cannot
// exhaust the machine's memory (it fails on the recorded peak instead).
type holdAuth struct {
	inner   auth.Authenticator
	release chan struct{}
	safety  int64
	running atomic.Int64
	peak    atomic.Int64
	calls   atomic.Int64
}

func (h *holdAuth) Authenticate(ctx context.Context, user, password string) error {
	h.calls.Add(1)
	n := h.running.Add(1)
	defer h.running.Add(-1)
	for {
		p := h.peak.Load()
		if n <= p || h.peak.CompareAndSwap(p, n) {
			break
		}
	}
	if h.release != nil {
		<-h.release
	}
	if h.safety > 0 && n > h.safety {
		return auth.ErrBadCredentials
	}
	return h.inner.Authenticate(ctx, user, password)
}

// TestLoginBusy: beyond MaxConcurrentLogins password checks, a login is
// refused at once with "login-busy" (503, Retry-After), and its message id
// is left unused: the same envelope is accepted once a slot is free.
//
// Defense exercised: middleware/endpoints.go acquireLoginSlot. Verified:
// without the slot, the second login waited inside the authenticator and
// the test failed (the check count went to 2).
func TestLoginBusy(t *testing.T) {
	clk := newClock()
	o := baseOptions(t, clk, memory.New())
	ha := &holdAuth{inner: o.Authenticator, release: make(chan struct{})}
	o.Authenticator, o.MaxConcurrentLogins, o.LoginQueueWait = ha, 1, -1
	s := startServer(t, o)
	rc := newRawClient(t, s.URL, clk.Now)
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(ha.release) }) }
	t.Cleanup(release) // registered after the server's: runs before it closes

	first := make(chan wire.Code, 1)
	go func() {
		_, p, err := postEnvelope(s.URL+wire.PathLogin, rc.loginMsg("alice", testUsers["alice"]).seal(t).env)
		if err != nil || p != nil {
			first <- "error"
			return
		}
		first <- ""
	}()
	require.Eventually(t, func() bool { return ha.running.Load() == 1 }, 10*time.Second, time.Millisecond)

	env := rc.loginMsg("alice", testUsers["alice"]).seal(t).env
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Post(s.URL+wire.PathLogin, wire.MediaType, bytes.NewReader(env))
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, string(b))
	require.Equal(t, "1", resp.Header.Get("Retry-After"))
	p, ok := wire.ParseProblem(b)
	require.True(t, ok)
	require.Equal(t, wire.CodeLoginBusy, p.Code)
	require.EqualValues(t, 1, ha.calls.Load(), "the busy login cost no password check")

	release()
	require.Equal(t, wire.Code(""), <-first)
	status, p2, err := postEnvelope(s.URL+wire.PathLogin, env)
	require.NoError(t, err)
	require.Nil(t, p2, "the same envelope, once a slot is free: its id was not recorded")
	require.Equal(t, http.StatusOK, status)
}

// vmHWM returns the process's peak resident set size in bytes, from
// /proc/self/status, or 0 where there is none.
func vmHWM() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// TestJunkLoginFloodMemory: 1,000 concurrent junk logins (validly sealed,
// wrong passwords) against the real argon2id authenticator with its
// default parameters (64 MiB per check): at most MaxConcurrentLogins checks
// ever run at once, the rest are refused with "login-busy" or
// "login-throttled", never an error, and the peak RSS of the process
// (server and the test's senders) is reported. Not a timing test: the
// bound asserted is the count of concurrent checks.
//
// Defense exercised: MaxConcurrentLogins (acquireLoginSlot). Verified:
// with the bound removed, the peak concurrency was far above 2 and the
// test failed (RSS went past 1 GiB before the first checks finished).
func TestJunkLoginFloodMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("argon2id with default parameters: not in -short")
	}
	if lim, ok := openFileLimit(); ok && lim < 2200 {
		t.Skipf("1,000 connections need both ends in this process: open-file limit %d < 2200", lim)
	}
	clk := newClock()
	o := baseOptions(t, clk, memory.New())
	users := auth.NewArgon2id(auth.DefaultParams)
	require.NoError(t, users.AddUser("alice", "correct horse"))
	ha := &holdAuth{inner: users, safety: 4}
	o.Authenticator, o.MaxConcurrentLogins = ha, 2
	o.LoginLimiter = middleware.NewMemoryLimiter(middleware.LimiterOptions{PerAddressUser: -1, PerUser: -1, PerAddress: -1})
	s := startServer(t, o)
	rc := newRawClient(t, s.URL, clk.Now)
	const n = 1000
	envs := make([][]byte, n)
	for i := range envs {
		envs[i] = rc.loginMsg("alice", "junk-"+strconv.Itoa(i)).seal(t).env
	}
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) // reset VmHWM where allowed
	before := vmHWM()
	hc := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: n}, Timeout: 60 * time.Second}
	codes := make([]wire.Code, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			resp, err := hc.Post(s.URL+wire.PathLogin, wire.MediaType, bytes.NewReader(envs[i]))
			if err != nil {
				codes[i] = wire.Code("transport: " + err.Error())
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if p, ok := wire.ParseProblem(b); ok {
				codes[i] = p.Code
			} else {
				codes[i] = wire.Code(fmt.Sprintf("status %d", resp.StatusCode))
			}
		}()
	}
	close(start)
	wg.Wait()
	peak := vmHWM()
	counts := map[wire.Code]int{}
	for _, c := range codes {
		counts[c]++
	}
	t.Logf("1000 concurrent junk logins, argon2id %+v, MaxConcurrentLogins 2: answers %v; password checks %d, at most %d at once; peak RSS %.0f MiB (%.0f MiB before the flood)",
		auth.DefaultParams, counts, ha.calls.Load(), ha.peak.Load(), float64(peak)/(1<<20), float64(before)/(1<<20))
	require.LessOrEqual(t, ha.peak.Load(), int64(2), "concurrent password checks")
	require.Equal(t, n, counts[wire.CodeLoginFailed]+counts[wire.CodeLoginBusy], "every answer is login-failed or login-busy: %v", counts)
	require.Positive(t, counts[wire.CodeLoginBusy])
}

// writeCounter wraps a store and counts every write call and the distinct
// keys that writes created.
type writeCounter struct {
	store.Store
	writes atomic.Int64 // CompareAndSwap, Delete and MarkSeen calls
	mu     sync.Mutex
	keys   map[string]bool
}

func (w *writeCounter) created(key string) {
	w.mu.Lock()
	w.keys[key] = true
	w.mu.Unlock()
}

func (w *writeCounter) nKeys() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.keys)
}

func (w *writeCounter) CompareAndSwap(ctx context.Context, key string, old uint64, v []byte, exp time.Time) (uint64, error) {
	w.writes.Add(1)
	nv, err := w.Store.CompareAndSwap(ctx, key, old, v, exp)
	if err == nil {
		w.created(key)
	}
	return nv, err
}

func (w *writeCounter) Delete(ctx context.Context, key string) error {
	w.writes.Add(1)
	return w.Store.Delete(ctx, key)
}

func (w *writeCounter) MarkSeen(ctx context.Context, id string, exp time.Time) (bool, error) {
	w.writes.Add(1)
	first, err := w.Store.MarkSeen(ctx, id, exp)
	if first {
		w.created(id)
	}
	return first, err
}

// sqliteRows counts the rows of every table of the SQLite store at path.
func sqliteRows(t *testing.T, path string) int {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	require.NoError(t, err)
	defer db.Close()
	total := 0
	for _, table := range []string{"kv", "replay_log"} {
		var n int
		require.NoError(t, db.QueryRow("SELECT count(*) FROM "+table).Scan(&n))
		total += n
	}
	return total
}

// TestJunkCostsNoStoreWrite: 1,000 junk requests of each kind — garbage
// bodies, forged tokens, a valid token with the wrong client key (unknown
// id, or the right id with a key that does not authenticate), logins that
// fail the HPKE open, and replays of a request that was accepted — add no
// row to the SQLite store and no key, and (replays aside, which must look
// their id up) make no write call at all.
//
// Defense exercised: message ids recorded only after authentication
// (middleware/open.go markSeen at the end of open; the login's after its
// HPKE open), every refusal before any write. Verified: with markSeen
// moved back before the token check, the forged-token junk added 1,000
// rows and the test failed.
func TestJunkCostsNoStoreWrite(t *testing.T) {
	clk := newClock()
	path := filepath.Join(t.TempDir(), "dynkey.db")
	sq, err := sqlite.Open(path)
	require.NoError(t, err)
	t.Cleanup(func() { sq.Close() })
	wc := &writeCounter{Store: sq, keys: map[string]bool{}}
	s := startServer(t, baseOptions(t, clk, wc))
	rc := newRawClient(t, s.URL, clk.Now).mustLogin("alice")
	accepted := rc.newMsg(http.MethodPost, "/api/echo", []byte("once")).seal(t)
	require.Equal(t, http.StatusOK, accepted.send(t, s.URL).Status)

	const n = 1000
	random := func(size int) []byte {
		b := make([]byte, size)
		_, _ = rand.Read(b)
		b[0], b[1] = 'D', 'K'
		return b
	}
	stranger := rc.genKey()
	kinds := []struct {
		name string
		path string
		env  func(i int) []byte
		want wire.Code
	}{
		{"garbage to a route", "/api/echo", func(i int) []byte { return random(20 + i%300) }, wire.CodeBadFormat},
		{"garbage to login", wire.PathLogin, func(i int) []byte { return random(20 + i%300) }, wire.CodeBadFormat},
		{"forged token", "/api/echo", func(int) []byte {
			m := rc.newMsg(http.MethodPost, "/api/echo", []byte("x"))
			m.Header.Token = random(120)
			return m.seal(t).env
		}, wire.CodeTokenInvalid},
		{"valid token, unknown client key", "/api/echo", func(int) []byte {
			m := rc.newMsg(http.MethodPost, "/api/echo", []byte("x"))
			id := wire.ComputeKeyID(rc.suite.Name(), stranger.Public().Bytes())
			m.Header.ClientKey, m.From = id[:], stranger
			return m.seal(t).env
		}, wire.CodeClientKeyUnknown},
		{"valid token, right key id, wrong key", "/api/echo", func(int) []byte {
			m := rc.newMsg(http.MethodPost, "/api/echo", []byte("x"))
			m.From = stranger
			return m.seal(t).env
		}, wire.CodeDecryptFailed},
		{"login that fails the HPKE open", wire.PathLogin, func(int) []byte {
			m := rc.loginMsg("alice", "x")
			m.From = stranger // the header names another key
			return m.seal(t).env
		}, wire.CodeDecryptFailed},
		{"replay of an accepted request", "/api/echo", func(int) []byte { return accepted.env }, wire.CodeReplay},
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			envs := make([][]byte, n)
			for i := range envs {
				envs[i] = k.env(i)
			}
			rows, keys, writes := sqliteRows(t, path), wc.nKeys(), wc.writes.Load()
			var wg sync.WaitGroup
			var wrong atomic.Int64
			sem := make(chan struct{}, 16)
			for _, env := range envs {
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					if _, p, err := postEnvelope(s.URL+k.path, env); err != nil || p == nil || p.Code != k.want {
						wrong.Add(1)
					}
				}()
			}
			wg.Wait()
			require.Zero(t, wrong.Load(), "answers other than %s", k.want)
			require.Equal(t, rows, sqliteRows(t, path), "rows in the store")
			require.Equal(t, keys, wc.nKeys(), "keys created")
			if k.want != wire.CodeReplay {
				require.Equal(t, writes, wc.writes.Load(), "write calls")
			}
		})
	}
	require.EqualValues(t, 1, s.app.calls.Load())
}
