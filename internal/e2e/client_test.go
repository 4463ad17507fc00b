package e2e

// End-to-end tests of the Go client SDK over real loopback HTTP: what a
// demanding user of client.Client relies on (recovery without surfacing an
// error, concurrent use across key rotations, background heartbeats, lost
// responses, refusals, authentication of responses, limits).
//
// Every helper of this file is prefixed "sdk" so that it cannot collide with
// the helpers of the other test files of the package.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
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
	"github.com/dynkey/dynkey/wire"
)

var sdkQuiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// sdkClock is a fake clock, safe for concurrent use (the client, the server
// and the test read it from different goroutines).
type sdkClock struct {
	mu sync.Mutex
	t  time.Time
}

func newSDKClock() *sdkClock { return &sdkClock{t: time.Now().Round(0)} }

func (c *sdkClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *sdkClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// sdkStore wraps the server's store to observe and disturb client key
// rotations, which are the only compare-and-swaps on an existing session
// record.
type sdkStore struct {
	store.Store
	mu        sync.Mutex
	failNext  error        // returned once by the next rotation, which then does not land
	attempts  atomic.Int64 // rotation compare-and-swaps attempted
	committed atomic.Int64 // rotations that landed
}

func (s *sdkStore) failNextRotation(err error) {
	s.mu.Lock()
	s.failNext = err
	s.mu.Unlock()
}

func (s *sdkStore) CompareAndSwap(ctx context.Context, key string, old uint64, v []byte, exp time.Time) (uint64, error) {
	if !strings.HasPrefix(key, "dynkey/session/") || old == 0 {
		return s.Store.CompareAndSwap(ctx, key, old, v, exp)
	}
	s.attempts.Add(1)
	s.mu.Lock()
	err := s.failNext
	s.failNext = nil
	s.mu.Unlock()
	if err != nil {
		return 0, err
	}
	n, err := s.Store.CompareAndSwap(ctx, key, old, v, exp)
	if err == nil {
		s.committed.Add(1)
	}
	return n, err
}

var errSDKLost = errors.New("sdk test: connection reset (response lost)")

// sdkTransport is the client's transport: it counts requests by path and
// can lose a response after the server processed the request.
type sdkTransport struct {
	next *http.Transport
	st   *sdkStore

	mu    sync.Mutex
	paths map[string]int

	// dropRotation loses the response of the next request during which a
	// client key rotation landed on the server.
	dropRotation atomic.Bool
	// unavailableAsError turns the next 503 into a network error (the
	// request reached the server, which did not apply it).
	unavailableAsError atomic.Bool
	dropped            atomic.Int64
}

func (t *sdkTransport) count(path string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.paths[path]
}

func (t *sdkTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.mu.Lock()
	t.paths[req.URL.Path]++
	t.mu.Unlock()
	before := t.st.committed.Load()
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	lose := t.dropRotation.Load() && t.st.committed.Load() > before && t.dropRotation.CompareAndSwap(true, false)
	if !lose && resp.StatusCode == http.StatusServiceUnavailable {
		lose = t.unavailableAsError.CompareAndSwap(true, false)
	}
	if lose {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		t.dropped.Add(1)
		return nil, errSDKLost
	}
	return resp, nil
}

// sdkEnv is a dynkey server on loopback with an echo route.
type sdkEnv struct {
	m     *middleware.Middleware
	st    *sdkStore
	srv   *httptest.Server
	tr    *sdkTransport
	clock *sdkClock // the server's clock; nil when it runs on the real clock
	runs  atomic.Int64

	// hbHook, if set, runs before the middleware serves a heartbeat.
	hbHook atomic.Pointer[func(*http.Request)]
}

// sdkEcho is what /api/echo answers: the server's view of the request.
type sdkEcho struct {
	User      string `json:"user"`
	Session   string `json:"session"`
	ClientKey string `json:"client_key"`
	Rotated   bool   `json:"rotated"`
	Body      string `json:"body"`
}

// newSDKEnv starts a server. o.Now nil means a fake clock (e.clock), which
// clients made by e.newClient share unless they set their own Now.
func newSDKEnv(t *testing.T, o middleware.Options) *sdkEnv {
	t.Helper()
	users := auth.NewArgon2id(auth.Params{Time: 1, MemoryKiB: 1024, Threads: 1, SaltLen: 16, KeyLen: 32})
	require.NoError(t, users.AddUser("alice", "pw"))
	e := &sdkEnv{st: &sdkStore{Store: memory.New()}}
	if o.Store != nil {
		e.st.Store = o.Store
	}
	o.Store = e.st
	o.Authenticator = users
	if o.KeyEncryptionKey == nil {
		o.KeyEncryptionKey = bytes.Repeat([]byte{0x5d}, 32) // sdkStore is not *memory.Store
	}
	if o.MaintainInterval == 0 {
		o.MaintainInterval = -1
	}
	if o.Logger == nil {
		o.Logger = sdkQuiet
	}
	if o.Now == nil {
		e.clock = newSDKClock()
		o.Now = e.clock.Now
	}
	m, err := middleware.New(o)
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	e.m = m

	mux := http.NewServeMux()
	ep := m.Endpoints()
	mux.Handle(wire.PathKeys, ep)
	mux.Handle(wire.PathLogin, ep)
	mux.HandleFunc(wire.PathHeartbeat, func(w http.ResponseWriter, r *http.Request) {
		if h := e.hbHook.Load(); h != nil {
			(*h)(r)
		}
		ep.ServeHTTP(w, r)
	})
	mux.Handle("/api/echo", m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.runs.Add(1)
		s, ok := middleware.FromContext(r.Context())
		if !ok {
			http.Error(w, "no session", http.StatusInternalServerError)
			return
		}
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(sdkEcho{User: s.Username, Session: s.ID, ClientKey: s.ClientKeyID.String(),
			Rotated: s.Rotated, Body: string(b)})
	})))
	// A route a misconfigured server left unprotected.
	mux.HandleFunc("/api/plain", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "top secret in the clear")
	})
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)

	base := http.DefaultTransport.(*http.Transport).Clone()
	base.MaxIdleConnsPerHost = 64
	t.Cleanup(base.CloseIdleConnections)
	e.tr = &sdkTransport{next: base, st: e.st, paths: map[string]int{}}
	return e
}

func (e *sdkEnv) url(path string) string { return e.srv.URL + path }

// newClient makes a client of e for alice, without background heartbeat
// unless cfg asks for one, on e's fake clock unless cfg sets Now.
func (e *sdkEnv) newClient(t *testing.T, cfg client.Config) (*client.Client, *http.Client) {
	t.Helper()
	cfg.BaseURL = e.srv.URL
	if cfg.Username == "" {
		cfg.Username = "alice"
	}
	if cfg.Password == "" {
		cfg.Password = "pw"
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = -1
	}
	if cfg.Now == nil && e.clock != nil {
		cfg.Now = e.clock.Now
	}
	if cfg.Transport == nil {
		cfg.Transport = e.tr
	}
	if cfg.Logger == nil {
		cfg.Logger = sdkQuiet
	}
	if cfg.IdentityKey == nil && !cfg.InsecureTrustOnFirstUseWithoutTLS {
		cfg.IdentityKey = e.m.IdentityPublicKey() // plain http: pin, no trust on first use
	}
	c, err := client.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	hc := c.HTTPClient()
	hc.Timeout = 20 * time.Second
	return c, hc
}

// directory fetches the key directory and verifies it with the identity key.
func (e *sdkEnv) directory(t *testing.T) *wire.Directory {
	t.Helper()
	// Through the env's own connection pool (not http.DefaultTransport),
	// so that no idle connection outlives the test.
	resp, err := (&http.Client{Transport: e.tr.next}).Get(e.url(wire.PathKeys))
	require.NoError(t, err)
	defer resp.Body.Close()
	var sd wire.SignedDirectory
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&sd))
	d, err := sd.Verify(e.m.IdentityPublicKey())
	require.NoError(t, err)
	return d
}

func (e *sdkEnv) primaryID(t *testing.T) string {
	t.Helper()
	k, ok := e.directory(t).Primary()
	require.True(t, ok)
	return k.ID
}

// sdkTry PUTs body to url and decodes the echo; it does not fail the test,
// so goroutines can use it. PUT is idempotent, so these calls may carry a
// client key rotation (the SDK never rotates on a POST).
func sdkTry(hc *http.Client, url, body string) (sdkEcho, error) {
	var out sdkEcho
	req, err := http.NewRequest(http.MethodPut, url, strings.NewReader(body))
	if err != nil {
		return out, err
	}
	req.Header.Set("Content-Type", "text/plain")
	resp, err := hc.Do(req)
	if err != nil {
		return out, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return out, err
	}
	if resp.StatusCode != http.StatusOK {
		return out, fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return out, fmt.Errorf("decoding %q: %w", b, err)
	}
	return out, nil
}

func sdkCall(t *testing.T, hc *http.Client, url, body string) sdkEcho {
	t.Helper()
	got, err := sdkTry(hc, url, body)
	require.NoError(t, err)
	require.Equal(t, body, got.Body)
	return got
}

// sdkEvents records the client's events.
type sdkEvents struct {
	mu    sync.Mutex
	kinds []string
}

func (ev *sdkEvents) record(e client.Event) {
	ev.mu.Lock()
	ev.kinds = append(ev.kinds, e.Kind)
	ev.mu.Unlock()
}

func (ev *sdkEvents) count(kind string) int {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	n := 0
	for _, k := range ev.kinds {
		if k == kind {
			n++
		}
	}
	return n
}

func sdkID(t *testing.T) string {
	t.Helper()
	var b [8]byte
	_, err := rand.Read(b[:])
	require.NoError(t, err)
	return hex.EncodeToString(b[:])
}

// The server rotated twice and destroyed both old keys while the client
// slept: the client's next call is refused with server-key-unknown, and the
// client recovers by itself from the signed directory the refusal carries
// (no refetch), with no error for the caller.
func TestClientRecoversFromDestroyedServerKey(t *testing.T) {
	ctx := context.Background()
	e := newSDKEnv(t, middleware.Options{ServerKeyGrace: 5 * time.Minute})
	var ev sdkEvents
	c, hc := e.newClient(t, client.Config{Policy: policy.Manual(), OnEvent: ev.record})
	sdkCall(t, hc, e.url("/api/echo"), "before")
	first, ok := c.ServerKeyID()
	require.True(t, ok)
	dirFetches := e.tr.count(wire.PathKeys)

	require.NoError(t, e.m.Rotate(ctx))
	e.clock.Advance(time.Minute)
	require.NoError(t, e.m.Rotate(ctx))
	e.clock.Advance(5*time.Minute + time.Second) // past the grace of both old keys
	require.NoError(t, e.m.Maintain(ctx))
	d := e.directory(t)
	require.Len(t, d.Keys, 1, "both old keys are destroyed")
	require.NotEqual(t, first.String(), d.Keys[0].ID)

	got := sdkCall(t, hc, e.url("/api/echo"), "after")
	require.Equal(t, "alice", got.User)
	st := c.Stats()
	require.Equal(t, uint64(1), st.Recoveries)
	require.Equal(t, uint64(1), st.ServerKeyChanges)
	require.Equal(t, uint64(1), st.Logins, "the token outlives the server keys")
	now, _ := c.ServerKeyID()
	require.Equal(t, d.Keys[0].ID, now.String())
	require.Equal(t, dirFetches, e.tr.count(wire.PathKeys), "the directory carried by the refusal was enough")
	require.Equal(t, 1, ev.count(client.EventServerKeyChanged))
	require.Equal(t, 1, ev.count(client.EventRecovered))

	sdkCall(t, hc, e.url("/api/echo"), "again")
	require.Equal(t, uint64(1), c.Stats().Recoveries, "no further recovery needed")
}

// The token expired: the next call logs in again by itself and succeeds.
func TestClientRecoversFromExpiredToken(t *testing.T) {
	e := newSDKEnv(t, middleware.Options{TokenTTL: 30 * time.Minute})
	c, hc := e.newClient(t, client.Config{Policy: policy.Manual()})
	first := sdkCall(t, hc, e.url("/api/echo"), "one")
	require.Equal(t, uint64(1), c.Stats().Logins)

	e.clock.Advance(30*time.Minute + time.Second)
	got := sdkCall(t, hc, e.url("/api/echo"), "two")
	require.NotEqual(t, first.Session, got.Session, "a new session")
	st := c.Stats()
	require.Equal(t, uint64(2), st.Logins)
	require.Equal(t, uint64(1), st.Recoveries)
	require.Equal(t, int64(2), e.runs.Load(), "the refused attempt never reached the handler")
}

// The server forgot the session (deleted, or evicted from the store): the
// client logs in again by itself.
func TestClientRecoversFromDeletedSession(t *testing.T) {
	e := newSDKEnv(t, middleware.Options{})
	c, hc := e.newClient(t, client.Config{Policy: policy.Manual()})
	first := sdkCall(t, hc, e.url("/api/echo"), "one")
	require.NoError(t, e.st.Delete(context.Background(), "dynkey/session/"+first.Session))

	got := sdkCall(t, hc, e.url("/api/echo"), "two")
	require.NotEqual(t, first.Session, got.Session)
	require.Equal(t, uint64(2), c.Stats().Logins)
	require.Equal(t, uint64(1), c.Stats().Recoveries)
}

// The server no longer knows the client's current key (its session record
// was restored from a backup taken before a rotation): retrying with the
// same key cannot help, so the client logs in again by itself. (The backup
// is a genuine earlier record: a record rewritten without the KEK is
// refused instead, see store/storetest.RunIntegrity.)
func TestClientRecoversFromLostClientKey(t *testing.T) {
	ctx := context.Background()
	e := newSDKEnv(t, middleware.Options{})
	c, hc := e.newClient(t, client.Config{Policy: policy.Manual()})
	first := sdkCall(t, hc, e.url("/api/echo"), "one")
	key := "dynkey/session/" + first.Session
	backup, err := e.st.Store.Get(ctx, key)
	require.NoError(t, err)

	c.RotateNow()
	require.NoError(t, c.Heartbeat(ctx))
	rotated, err := e.st.Store.Get(ctx, key)
	require.NoError(t, err)
	require.NotEqual(t, backup.Value, rotated.Value, "the client rotated its key")
	_, err = e.st.Store.CompareAndSwap(ctx, key, rotated.Version, backup.Value, backup.Expires)
	require.NoError(t, err)

	got := sdkCall(t, hc, e.url("/api/echo"), "two")
	require.NotEqual(t, first.Session, got.Session)
	require.Equal(t, uint64(2), c.Stats().Logins)
	require.Equal(t, uint64(1), c.Stats().Recoveries)
}

// The promise: 16 goroutines share one client while the client rotates its
// key every 10 messages and the server rotates its key pair (announced by
// heartbeats) — and no request fails, every response is its own request's.
func TestClientConcurrentUseAcrossRotations(t *testing.T) {
	ctx := context.Background()
	e := newSDKEnv(t, middleware.Options{Now: time.Now})
	c, hc := e.newClient(t, client.Config{Now: time.Now, Policy: policy.MaxMessages(10)})
	require.NoError(t, c.Login(ctx))

	const workers, perWorker, serverRotations = 16, 30, 4
	var (
		done       atomic.Int64
		milestones = make(chan struct{}, serverRotations)
		errs       = make(chan error, workers*perWorker+serverRotations)
		wg         sync.WaitGroup
	)
	rotatorDone := make(chan struct{})
	go func() {
		defer close(rotatorDone)
		for range serverRotations {
			<-milestones
			if err := e.m.Rotate(ctx); err != nil {
				errs <- fmt.Errorf("server rotation: %w", err)
				return
			}
			if err := c.Heartbeat(ctx); err != nil {
				errs <- fmt.Errorf("heartbeat: %w", err)
			}
		}
	}()
	run := sdkID(t)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range perWorker {
				id := fmt.Sprintf("%s/w%02d/r%02d", run, w, r)
				got, err := sdkTry(hc, e.url("/api/echo"), id)
				switch {
				case err != nil:
					errs <- fmt.Errorf("%s: %w", id, err)
				case got.Body != id || got.User != "alice":
					errs <- fmt.Errorf("%s: got the response %+v", id, got)
				}
				if n := done.Add(1); n%100 == 0 && n/100 <= serverRotations {
					milestones <- struct{}{}
				}
			}
		}()
	}
	wg.Wait()
	select {
	case <-rotatorDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the server rotations did not finish")
	}
	close(errs)
	var failed []string
	for err := range errs {
		failed = append(failed, err.Error())
	}
	st := c.Stats()
	t.Logf("client stats: %+v", st)
	require.Empty(t, failed, "failed requests")
	require.Equal(t, int64(workers*perWorker), e.runs.Load(), "each request ran its handler exactly once")
	require.GreaterOrEqual(t, st.ClientRotations, uint64(10))
	require.Equal(t, uint64(serverRotations), st.ServerKeyChanges)
	require.Equal(t, uint64(1), st.Logins)
	id, _ := c.ServerKeyID()
	require.Equal(t, e.primaryID(t), id.String())
	// The server's view of the client key is the client's.
	got := sdkCall(t, hc, e.url("/api/echo"), "last")
	ck, _ := c.ClientKeyID()
	require.Equal(t, ck.String(), got.ClientKey)
}

// sdkGoroutinesIn reports how many goroutines have fn in their stack.
func sdkGoroutinesIn(fn string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	return strings.Count(string(buf), fn)
}

const sdkHeartbeatLoop = "client.(*Client).heartbeatLoop("

// sdkEventually polls cond every few milliseconds for at most d.
func sdkEventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The background heartbeat adopts a new server key with no application
// request; Close stops it promptly and requests after Close fail.
func TestClientBackgroundHeartbeat(t *testing.T) {
	ctx := context.Background()
	e := newSDKEnv(t, middleware.Options{Now: time.Now})
	before := runtime.NumGoroutine()
	var ev sdkEvents
	c, hc := e.newClient(t, client.Config{Now: time.Now, HeartbeatInterval: 50 * time.Millisecond, OnEvent: ev.record})
	// (A goroutine not yet scheduled shows as "gowrap", hence the polling.)
	require.True(t, sdkEventually(2*time.Second, func() bool { return sdkGoroutinesIn(sdkHeartbeatLoop) == 1 }),
		"the heartbeat goroutine runs")
	require.NoError(t, c.Login(ctx))
	first, _ := c.ServerKeyID()

	require.NoError(t, e.m.Rotate(ctx))
	want := e.primaryID(t)
	require.NotEqual(t, first.String(), want)
	require.True(t, sdkEventually(3*time.Second, func() bool {
		id, _ := c.ServerKeyID()
		return id.String() == want
	}), "the heartbeat did not bring the new server key")
	require.Zero(t, e.tr.count("/api/echo"), "no application request was needed")
	require.GreaterOrEqual(t, e.tr.count(wire.PathHeartbeat), 1)
	require.Equal(t, uint64(1), c.Stats().ServerKeyChanges)
	require.GreaterOrEqual(t, ev.count(client.EventHeartbeat), 1)

	start := time.Now()
	require.NoError(t, c.Close())
	require.Less(t, time.Since(start), time.Second, "Close is prompt")
	e.tr.next.CloseIdleConnections()
	require.True(t, sdkEventually(2*time.Second, func() bool { return sdkGoroutinesIn(sdkHeartbeatLoop) == 0 }),
		"the heartbeat goroutine is gone")
	require.True(t, sdkEventually(2*time.Second, func() bool { return runtime.NumGoroutine() <= before }),
		"goroutines: %d before, %d after Close", before, runtime.NumGoroutine())

	beats := e.tr.count(wire.PathHeartbeat)
	_, err := hc.Post(e.url("/api/echo"), "text/plain", strings.NewReader("late"))
	require.ErrorIs(t, err, client.ErrClosed)
	require.ErrorIs(t, c.Heartbeat(ctx), client.ErrClosed)
	require.ErrorIs(t, c.Login(ctx), client.ErrClosed)
	require.NoError(t, c.Close(), "Close twice")
	time.Sleep(120 * time.Millisecond) // more than two heartbeat intervals
	require.Equal(t, beats, e.tr.count(wire.PathHeartbeat), "no heartbeat after Close")
}

// Close returns promptly even when a background heartbeat is stuck on a
// server that does not answer.
func TestClientCloseDuringStuckHeartbeat(t *testing.T) {
	e := newSDKEnv(t, middleware.Options{Now: time.Now})
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // runs before the server's Close
	var hang atomic.Bool
	hook := func(r *http.Request) {
		if !hang.Load() {
			return
		}
		select {
		case entered <- struct{}{}:
		default:
		}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}
	e.hbHook.Store(&hook)
	c, _ := e.newClient(t, client.Config{Now: time.Now, HeartbeatInterval: 20 * time.Millisecond})
	require.NoError(t, c.Login(context.Background()))
	hang.Store(true)
	select {
	case <-entered:
	case <-time.After(3 * time.Second):
		t.Fatal("no heartbeat reached the server")
	}
	closed := make(chan struct{})
	go func() {
		c.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(2 * time.Second):
		t.Fatal("Close is blocked by a stuck heartbeat")
	}
	require.True(t, sdkEventually(2*time.Second, func() bool { return sdkGoroutinesIn(sdkHeartbeatLoop) == 0 }),
		"the heartbeat goroutine is gone")
}

// rotateUntil sends calls until cond holds (the next client key is
// generated in the background, so the first call after RotateNow may not
// rotate yet). It returns the errors of the calls.
func sdkRotateUntil(t *testing.T, hc *http.Client, url string, cond func() bool) []error {
	t.Helper()
	var errs []error
	for i := 0; i < 200 && !cond(); i++ {
		if _, err := sdkTry(hc, url, "r"); err != nil {
			errs = append(errs, err)
		}
		if !cond() {
			time.Sleep(time.Millisecond)
		}
	}
	require.True(t, cond(), "the rotation never happened")
	return errs
}

// The response to a rotation is lost after the server applied it: the
// caller of that one call sees the network error, and the client confirms
// its new key on the next call — also when many goroutines make that call
// at once.
func TestClientLostRotationResponse(t *testing.T) {
	for _, concurrent := range []int{1, 8} {
		t.Run(fmt.Sprintf("%d next callers", concurrent), func(t *testing.T) {
			e := newSDKEnv(t, middleware.Options{})
			c, hc := e.newClient(t, client.Config{Policy: policy.Manual()})
			url := e.url("/api/echo")
			first := sdkCall(t, hc, url, "before")
			old, _ := c.ClientKeyID()
			require.Equal(t, old.String(), first.ClientKey)

			c.RotateNow()
			e.tr.dropRotation.Store(true)
			errs := sdkRotateUntil(t, hc, url, func() bool { return e.tr.dropped.Load() == 1 })
			require.Len(t, errs, 1)
			require.ErrorIs(t, errs[0], errSDKLost)
			require.Equal(t, int64(1), e.st.committed.Load(), "the server applied the rotation")

			var wg sync.WaitGroup
			start := make(chan struct{})
			results := make([]error, concurrent)
			keys := make([]string, concurrent)
			for i := range concurrent {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					got, err := sdkTry(hc, url, fmt.Sprint(i))
					results[i], keys[i] = err, got.ClientKey
				}()
			}
			close(start)
			wg.Wait()
			now, ok := c.ClientKeyID()
			require.True(t, ok)
			require.NotEqual(t, old, now)
			for i := range concurrent {
				require.NoError(t, results[i])
				require.Equal(t, now.String(), keys[i])
			}
			for range 3 {
				got := sdkCall(t, hc, url, "after")
				require.Equal(t, now.String(), got.ClientKey, "the server's view of the client key")
			}
			st := c.Stats()
			require.Equal(t, uint64(1), st.ClientRotations)
			require.Equal(t, uint64(1), st.Logins)
		})
	}
}

// The rotation request reached the server, which could not apply it, and
// the client got no answer: the client tries the new key, falls back to the
// old one without an error for the caller, and can still rotate later.
func TestClientRotationThatNeverLanded(t *testing.T) {
	e := newSDKEnv(t, middleware.Options{})
	c, hc := e.newClient(t, client.Config{Policy: policy.Manual()})
	url := e.url("/api/echo")
	sdkCall(t, hc, url, "before")
	old, _ := c.ClientKeyID()

	c.RotateNow()
	e.st.failNextRotation(errors.New("simulated store outage"))
	e.tr.unavailableAsError.Store(true)
	errs := sdkRotateUntil(t, hc, url, func() bool { return e.tr.dropped.Load() == 1 })
	require.Len(t, errs, 1)
	require.Zero(t, e.st.committed.Load())

	got := sdkCall(t, hc, url, "next")
	require.Equal(t, old.String(), got.ClientKey)
	now, _ := c.ClientKeyID()
	require.Equal(t, old, now)
	st := c.Stats()
	require.Equal(t, uint64(0), st.ClientRotations)
	require.Equal(t, uint64(1), st.Recoveries)
	require.Equal(t, uint64(1), st.Logins)

	// The client is not stuck on its old key.
	c.RotateNow()
	sdkRotateUntil(t, hc, url, func() bool { return e.st.committed.Load() == 1 })
	now, _ = c.ClientKeyID()
	require.NotEqual(t, old, now)
	require.Equal(t, now.String(), sdkCall(t, hc, url, "rotated").ClientKey)
	require.Equal(t, uint64(1), c.Stats().ClientRotations)
}

// A refused rotation does not fail the call: the client retries it without
// rotating, and rotates later.
func TestClientRotationRefused(t *testing.T) {
	t.Run("time_offset beyond the threshold", func(t *testing.T) {
		e := newSDKEnv(t, middleware.Options{})
		clientClock := newSDKClock() // the client's own clock, not the server's
		var ev sdkEvents
		c, hc := e.newClient(t, client.Config{Now: clientClock.Now, Policy: policy.Manual(), OnEvent: ev.record})
		url := e.url("/api/echo")
		sdkCall(t, hc, url, "before")
		old, _ := c.ClientKeyID()

		// The server clock runs 60s ahead of the client's estimate: fresh
		// enough (window 2m) but beyond the rotation threshold (30s).
		e.clock.Advance(60 * time.Second)
		c.RotateNow()
		errs := sdkRotateUntil(t, hc, url, func() bool { return ev.count(client.EventRotationAbandoned) == 1 })
		require.Empty(t, errs, "the caller got 200")
		now, _ := c.ClientKeyID()
		require.Equal(t, old, now)
		require.Equal(t, uint64(0), c.Stats().ClientRotations)
		require.Equal(t, uint64(1), c.Stats().Recoveries)
		require.Zero(t, e.st.attempts.Load(), "refused before the store")

		// A heartbeat resynchronizes the time base; the rotation then works.
		require.NoError(t, c.Heartbeat(context.Background()))
		c.RotateNow()
		sdkRotateUntil(t, hc, url, func() bool { return e.st.committed.Load() == 1 })
		now, _ = c.ClientKeyID()
		require.NotEqual(t, old, now)
	})
	t.Run("lost the compare-and-swap", func(t *testing.T) {
		e := newSDKEnv(t, middleware.Options{})
		var ev sdkEvents
		c, hc := e.newClient(t, client.Config{Policy: policy.Manual(), OnEvent: ev.record})
		url := e.url("/api/echo")
		sdkCall(t, hc, url, "before")
		old, _ := c.ClientKeyID()

		e.st.failNextRotation(store.ErrConflict)
		c.RotateNow()
		errs := sdkRotateUntil(t, hc, url, func() bool { return ev.count(client.EventRotationAbandoned) == 1 })
		require.Empty(t, errs)
		now, _ := c.ClientKeyID()
		require.Equal(t, old, now)
		require.Equal(t, uint64(1), c.Stats().Recoveries)

		c.RotateNow()
		sdkRotateUntil(t, hc, url, func() bool { return e.st.committed.Load() == 1 })
		now, _ = c.ClientKeyID()
		require.NotEqual(t, old, now)
		require.Equal(t, now.String(), sdkCall(t, hc, url, "after").ClientKey)
	})
}

// A response that is not sealed for the request is never handed to the
// caller: the call fails with ErrResponseNotAuthentic.
func TestClientRejectsUnsealedResponses(t *testing.T) {
	e := newSDKEnv(t, middleware.Options{})
	c, hc := e.newClient(t, client.Config{Policy: policy.Manual()})
	require.NoError(t, c.Login(context.Background()))

	resp, err := hc.Post(e.url("/api/plain"), "text/plain", strings.NewReader("hi"))
	require.Nil(t, resp)
	require.ErrorIs(t, err, client.ErrResponseNotAuthentic)
	require.NotContains(t, err.Error(), "top secret")

	// Responses an attacker on the path could inject.
	for name, h := range map[string]http.HandlerFunc{
		"plain 200": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, "ok")
		},
		"proxy 502 page": func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "bad gateway", http.StatusBadGateway)
		},
		"problem with status 200": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", wire.ProblemMediaType)
			_, _ = io.WriteString(w, `{"code":"stale","status":400,"s_time":1}`)
		},
		"garbage envelope": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", wire.MediaType)
			_, _ = w.Write(append([]byte{'D', 'K', 1, 3, 0, 32}, bytes.Repeat([]byte{7}, 80)...))
		},
		"no content type": func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte{})
		},
	} {
		t.Run(name, func(t *testing.T) {
			path := "/evil/" + strings.ReplaceAll(name, " ", "-")
			mux := http.NewServeMux()
			mux.Handle(path, h)
			mux.Handle("/", e.srv.Config.Handler)
			evil := httptest.NewServer(mux)
			defer evil.Close()
			req, err := http.NewRequest(http.MethodPost, evil.URL+path, strings.NewReader("hi"))
			require.NoError(t, err)
			resp, err := c.RoundTrip(req)
			require.Nil(t, resp)
			require.ErrorIs(t, err, client.ErrResponseNotAuthentic)
		})
	}
	require.Zero(t, c.Stats().Recoveries)
}

// Login failures are errors the caller can inspect.
func TestClientLoginFailures(t *testing.T) {
	e := newSDKEnv(t, middleware.Options{MaxFailedLogins: 3})
	c, hc := e.newClient(t, client.Config{Password: "wrong"})

	resp, err := hc.Post(e.url("/api/echo"), "text/plain", strings.NewReader("x"))
	require.Nil(t, resp)
	var p *wire.Problem
	require.ErrorAs(t, err, &p)
	require.Equal(t, wire.CodeLoginFailed, p.Code)
	require.Equal(t, http.StatusUnauthorized, p.Status)

	err = c.Login(context.Background())
	require.ErrorAs(t, err, &p)
	require.Equal(t, wire.CodeLoginFailed, p.Code)

	unknown, _ := e.newClient(t, client.Config{Username: "mallory", Password: "pw"})
	require.ErrorAs(t, unknown.Login(context.Background()), &p)
	require.Equal(t, wire.CodeLoginFailed, p.Code, "an unknown user looks like a wrong password")

	require.ErrorAs(t, c.Login(context.Background()), &p)
	require.Equal(t, wire.CodeLoginFailed, p.Code) // third failure
	require.ErrorAs(t, c.Login(context.Background()), &p)
	require.Equal(t, wire.CodeLoginThrottled, p.Code)
	require.Equal(t, http.StatusTooManyRequests, p.Status)

	require.Zero(t, c.Stats().Logins)
	require.Zero(t, e.runs.Load(), "the handler never ran")
	_, ok := c.ClientKeyID()
	require.False(t, ok)
}

// Bodies up to MaxBodySize are sealed and delivered; a larger one fails on
// the client before anything is sent.
func TestClientBodySizeLimit(t *testing.T) {
	e := newSDKEnv(t, middleware.Options{})
	c, hc := e.newClient(t, client.Config{Policy: policy.Manual()})
	url := e.url("/api/echo")
	require.NoError(t, c.Login(context.Background()))

	full := strings.Repeat("a", 1<<20)
	got := sdkCall(t, hc, url, full)
	require.Len(t, got.Body, 1<<20)

	sent := e.tr.count("/api/echo")
	resp, err := hc.Post(url, "text/plain", strings.NewReader(full+"b"))
	require.Nil(t, resp)
	require.ErrorContains(t, err, "body larger than 1048576 bytes")
	require.Equal(t, sent, e.tr.count("/api/echo"), "nothing was sent")
	require.Equal(t, int64(1), e.runs.Load())

	t.Run("client limit above the server's", func(t *testing.T) {
		c2, hc2 := e.newClient(t, client.Config{Policy: policy.Manual(), MaxBodySize: 2 << 20})
		require.NoError(t, c2.Login(context.Background()))
		resp, err := hc2.Post(url, "text/plain", strings.NewReader(full+"b"))
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
		b, _ := io.ReadAll(resp.Body)
		p, ok := wire.ParseProblem(b)
		require.True(t, ok)
		require.Equal(t, wire.CodeTooLarge, p.Code)
		require.Equal(t, int64(1), e.runs.Load(), "the handler never ran")
	})
}

// A laptop slept through the night: its monotonic clock did not advance, so
// its time base is stale, and meanwhile its token expired. The first call
// after waking must still succeed.
func TestClientRecoversAfterSuspend(t *testing.T) {
	e := newSDKEnv(t, middleware.Options{TokenTTL: time.Hour})
	clientClock := newSDKClock() // stands still during the "suspend"
	c, hc := e.newClient(t, client.Config{Now: clientClock.Now, Policy: policy.Manual()})
	first := sdkCall(t, hc, e.url("/api/echo"), "evening")

	e.clock.Advance(10 * time.Hour)
	got := sdkCall(t, hc, e.url("/api/echo"), "morning")
	require.NotEqual(t, first.Session, got.Session)
	require.Equal(t, uint64(2), c.Stats().Logins)
}
