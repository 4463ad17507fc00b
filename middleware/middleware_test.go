package middleware

// Tests of the server core through its API, over real loopback HTTP with the
// real client SDK where a client is involved. They are in package
// middleware (not middleware_test) to check the documented defaults and the
// stored key ring record; example_test.go is the black-box view.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/auth"
	"github.com/dynkey/dynkey/client"
	"github.com/dynkey/dynkey/crypto"
	"github.com/dynkey/dynkey/policy"
	"github.com/dynkey/dynkey/store"
	"github.com/dynkey/dynkey/store/memory"
	"github.com/dynkey/dynkey/store/sqlite"
	"github.com/dynkey/dynkey/wire"
)

var mtQuiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// mtClock is a fake clock, safe for concurrent use.
type mtClock struct {
	mu sync.Mutex
	t  time.Time
}

func newMTClock() *mtClock { return &mtClock{t: time.Now().Round(0)} }

func (c *mtClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *mtClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func mtUsers(t *testing.T) *auth.Argon2id {
	t.Helper()
	users := auth.NewArgon2id(auth.Params{Time: 1, MemoryKiB: 1024, Threads: 1, SaltLen: 16, KeyLen: 32})
	require.NoError(t, users.AddUser("alice", "pw"))
	return users
}

// mtNoUsers is an Authenticator that knows no user, for tests that do not
// log in.
var mtNoUsers = auth.AuthenticatorFunc(func(context.Context, string, string) error { return auth.ErrBadCredentials })

func mtKEK(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

// mtServer serves whatever middleware is current at one loopback address,
// so a client keeps its BaseURL across a server restart.
type mtServer struct {
	cur      atomic.Pointer[http.Handler]
	srv      *httptest.Server
	identity ed25519.PublicKey // of the middleware served last, for clients to pin
}

func newMTServer(t *testing.T) *mtServer {
	t.Helper()
	s := &mtServer{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := s.cur.Load()
		if h == nil {
			http.Error(w, "no server", http.StatusServiceUnavailable)
			return
		}
		(*h).ServeHTTP(w, r)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// serve routes the endpoints and /api/echo (who am I, with which key) to m.
func (s *mtServer) serve(m *Middleware) {
	s.identity = m.IdentityPublicKey()
	mux := http.NewServeMux()
	mux.Handle("/dynkey/", m.Endpoints())
	mux.Handle("/.well-known/dynkey/", m.Endpoints())
	mux.Handle("/api/echo", m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, _ := FromContext(r.Context())
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, sess.Username+" "+sess.ClientKeyID.String()+" "+string(b))
	})))
	var h http.Handler = mux
	s.cur.Store(&h)
}

func mtClient(t *testing.T, s *mtServer, now func() time.Time) (*client.Client, *http.Client) {
	t.Helper()
	c, err := client.New(client.Config{BaseURL: s.srv.URL, Username: "alice", Password: "pw",
		HeartbeatInterval: -1, Policy: policy.Manual(), Now: now, Logger: mtQuiet, IdentityKey: s.identity})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	hc := c.HTTPClient()
	hc.Timeout = 10 * time.Second
	return c, hc
}

// mtEcho calls /api/echo and returns the body, failing on any other status.
func mtEcho(t *testing.T, s *mtServer, hc *http.Client, body string) string {
	t.Helper()
	// PUT: idempotent, so the client may carry a key rotation on it.
	req, err := http.NewRequest(http.MethodPut, s.srv.URL+"/api/echo", strings.NewReader(body))
	require.NoError(t, err)
	resp, err := hc.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
	return string(b)
}

func TestNewRejectsBadKeyEncryptionKey(t *testing.T) {
	for _, n := range []int{0, 1, 16, 31, 33, 64} {
		_, err := New(Options{Authenticator: mtNoUsers, KeyEncryptionKey: make([]byte, n), MaintainInterval: -1, Logger: mtQuiet})
		require.Error(t, err, "%d bytes", n)
		require.ErrorContains(t, err, "KeyEncryptionKey must be 32 bytes")
	}
}

func TestNewRejectsUnknownSuite(t *testing.T) {
	_, err := New(Options{Authenticator: mtNoUsers, Suite: "rot13", KeyEncryptionKey: mtKEK(1), MaintainInterval: -1, Logger: mtQuiet})
	require.ErrorIs(t, err, crypto.ErrUnknownSuite)
	require.ErrorContains(t, err, `"rot13"`)
	names := crypto.Names()
	require.Contains(t, names, "ecies-x25519")
	require.Contains(t, names, "ecies-p256")
	for _, n := range names {
		require.ErrorContains(t, err, n, "the error lists the known suites")
	}
}

func TestNewRejectsBadIdentityKey(t *testing.T) {
	_, err := New(Options{Authenticator: mtNoUsers, IdentityKey: make(ed25519.PrivateKey, 10), KeyEncryptionKey: mtKEK(1), MaintainInterval: -1, Logger: mtQuiet})
	require.ErrorContains(t, err, "IdentityKey")
}

// The defaults documented on Options hold, and explicit values are kept.
func TestNewDefaults(t *testing.T) {
	m, err := New(Options{Authenticator: mtNoUsers, MaintainInterval: -1, Logger: mtQuiet, KeyEncryptionKey: mtKEK(1)})
	require.NoError(t, err)
	defer m.Close()
	o := m.o
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"Suite", o.Suite, "ecies-x25519"},
		{"ServerPolicy", o.ServerPolicy.String(), policy.Uptime(24 * time.Hour).String()},
		{"ServerKeyGrace", o.ServerKeyGrace, 10 * time.Minute},
		{"ClientKeyGrace", o.ClientKeyGrace, 2 * time.Minute},
		{"TokenTTL", o.TokenTTL, 12 * time.Hour},
		{"FreshnessWindow", o.FreshnessWindow, 2 * time.Minute},
		{"RotationOffsetThreshold", o.RotationOffsetThreshold, 30 * time.Second},
		{"RotateClientAfter", o.RotateClientAfter, time.Duration(0)},
		{"MaxBodySize", o.MaxBodySize, int64(1 << 20)},
		{"MaxFailedLogins", o.MaxFailedLogins, 10},
		{"LoginThrottleWindow", o.LoginThrottleWindow, 15 * time.Minute},
		{"MaxConcurrentLogins", o.MaxConcurrentLogins, runtime.NumCPU()},
		{"LoginQueueWait", o.LoginQueueWait, 100 * time.Millisecond},
		{"ReadTimeout", o.ReadTimeout, 10 * time.Second},
		{"TrustedProxies", len(o.TrustedProxies), 0},
		{"LoginLimiter", o.LoginLimiter.(*storeLimiter).o, LimiterOptions{PerAddressUser: 10, PerUser: 100, PerAddress: 100, Window: 15 * time.Minute}},
	} {
		require.Equal(t, tc.want, tc.got, tc.name)
	}
	require.Equal(t, "ecies-x25519", m.Suite())
	_, isMemory := unwrapStore(o.Store).(*memory.Store)
	require.True(t, isMemory, "default store: in memory")
	require.NotNil(t, o.Now)
	require.NotNil(t, o.Rand)
	require.NotNil(t, o.Logger)

	// MaintainInterval: 10s unless disabled.
	m2, err := New(Options{Authenticator: mtNoUsers, Logger: mtQuiet, KeyEncryptionKey: mtKEK(1)})
	require.NoError(t, err)
	require.Equal(t, 10*time.Second, m2.o.MaintainInterval)
	start := time.Now()
	require.NoError(t, m2.Close())
	require.Less(t, time.Since(start), time.Second, "Close stops the loop promptly")

	// No KeyEncryptionKey: a random one, different for each middleware.
	var warned bytes.Buffer
	m3, err := New(Options{Authenticator: mtNoUsers, MaintainInterval: -1, Logger: slog.New(slog.NewTextHandler(&warned, nil))})
	require.NoError(t, err)
	m4, err := New(Options{Authenticator: mtNoUsers, MaintainInterval: -1, Logger: mtQuiet})
	require.NoError(t, err)
	defer m3.Close()
	defer m4.Close()
	require.Len(t, m3.o.KeyEncryptionKey, 32)
	require.NotEqual(t, m3.o.KeyEncryptionKey, m4.o.KeyEncryptionKey)
	require.Contains(t, warned.String(), "no KeyEncryptionKey configured")
	require.NotEqual(t, m3.IdentityPublicKey(), m4.IdentityPublicKey())

	// Explicit values are kept.
	st := memory.New()
	explicit := Options{Authenticator: mtNoUsers, Suite: "ecies-p256", Store: st, KeyEncryptionKey: mtKEK(2), ServerPolicy: policy.MaxAge(time.Hour),
		ServerKeyGrace: time.Minute, ClientKeyGrace: 3 * time.Second, TokenTTL: time.Hour, FreshnessWindow: 5 * time.Second,
		RotationOffsetThreshold: time.Second, RotateClientAfter: time.Minute, MaxBodySize: 10, MaxFailedLogins: 2,
		LoginThrottleWindow: time.Minute, MaintainInterval: -1, Logger: mtQuiet}
	m5, err := New(explicit)
	require.NoError(t, err)
	defer m5.Close()
	got := m5.o
	require.Equal(t, "ecies-p256", got.Suite)
	require.Same(t, st, unwrapStore(got.Store).(*memory.Store))
	require.Equal(t, policy.MaxAge(time.Hour).String(), got.ServerPolicy.String())
	require.Equal(t, []any{time.Minute, 3 * time.Second, time.Hour, 5 * time.Second, time.Second, time.Minute, int64(10), 2, time.Minute, time.Duration(-1)},
		[]any{got.ServerKeyGrace, got.ClientKeyGrace, got.TokenTTL, got.FreshnessWindow, got.RotationOffsetThreshold,
			got.RotateClientAfter, got.MaxBodySize, got.MaxFailedLogins, got.LoginThrottleWindow, got.MaintainInterval})
}

// mtRing reads the key ring record as stored.
func mtRing(t *testing.T, st store.Store) ringRecord {
	t.Helper()
	e, err := st.Get(context.Background(), ringKey)
	require.NoError(t, err)
	var rec ringRecord
	require.NoError(t, json.Unmarshal(e.Value, &rec))
	return rec
}

func mtPrimaries(rec ringRecord) int {
	n := 0
	for _, k := range rec.Keys {
		if k.State == StatePrimary {
			n++
		}
	}
	return n
}

func mtFind(rec ringRecord, id string) (keyRecord, bool) {
	for _, k := range rec.Keys {
		if k.ID == id {
			return k, true
		}
	}
	return keyRecord{}, false
}

// mtDirectory fetches the key directory over HTTP and verifies it with the
// identity key the middleware reports.
func mtDirectory(t *testing.T, s *mtServer, m *Middleware) *wire.Directory {
	t.Helper()
	resp, err := http.Get(s.srv.URL + wire.PathKeys)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var sd wire.SignedDirectory
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&sd))
	d, err := sd.Verify(m.IdentityPublicKey())
	require.NoError(t, err, "the directory verifies with IdentityPublicKey")
	return d
}

// A restart with a durable store keeps the server keys, the identity key and
// the sessions: a logged-in client goes on without logging in again. A wrong
// KeyEncryptionKey is refused clearly and destroys nothing.
func TestDurableRestartWithSQLite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dynkey.db")
	users := mtUsers(t)
	s := newMTServer(t)
	open := func(kek []byte) (*Middleware, *sqlite.Store, error) {
		st, err := sqlite.Open(path)
		require.NoError(t, err)
		m, err := New(Options{Store: st, Authenticator: users, KeyEncryptionKey: kek, MaintainInterval: -1, Logger: mtQuiet})
		if err != nil {
			require.NoError(t, st.Close())
			return nil, nil, err
		}
		return m, st, nil
	}
	shut := func(m *Middleware, st *sqlite.Store) {
		require.NoError(t, m.Close())
		require.NoError(t, st.Close())
	}

	m, st, err := open(mtKEK(7))
	require.NoError(t, err)
	s.serve(m)
	identity := m.IdentityPublicKey()
	primary := m.ring.Load().primary.id
	c, hc := mtClient(t, s, nil)
	first := mtEcho(t, s, hc, "before")
	require.True(t, strings.HasPrefix(first, "alice "))
	c.RotateNow() // a rotated session key must survive too
	for i := 0; i < 100 && c.Stats().ClientRotations == 0; i++ {
		mtEcho(t, s, hc, "rotating")
	}
	require.Equal(t, uint64(1), c.Stats().ClientRotations)
	ck, _ := c.ClientKeyID()
	shut(m, st)

	m, st, err = open(mtKEK(7))
	require.NoError(t, err)
	s.serve(m)
	require.Equal(t, identity, m.IdentityPublicKey())
	require.Equal(t, primary, m.ring.Load().primary.id)
	require.Equal(t, "alice "+ck.String()+" after", mtEcho(t, s, hc, "after"))
	st1 := c.Stats()
	require.Equal(t, uint64(1), st1.Logins, "no second login")
	require.Zero(t, st1.Recoveries)
	shut(m, st)
	s.cur.Store(nil)

	_, _, err = open(mtKEK(8))
	require.Error(t, err)
	require.ErrorContains(t, err, "wrong KeyEncryptionKey")

	m, st, err = open(mtKEK(7))
	require.NoError(t, err, "the wrong key destroyed nothing")
	defer shut(m, st)
	s.serve(m)
	require.Equal(t, identity, m.IdentityPublicKey())
	require.Equal(t, primary, m.ring.Load().primary.id)
	require.Equal(t, "alice "+ck.String()+" again", mtEcho(t, s, hc, "again"))
	require.Equal(t, uint64(1), c.Stats().Logins)
}

// The server key lifecycle on a fake clock: primary → decrypt-only (listed
// with its expiry, still opening messages) → destroyed (private part gone
// from the directory, the ring in memory and the store; its tokens still
// valid) → deleted once its last token expired. Exactly one primary at every
// step, and the directory always verifies with the identity key.
func TestServerKeyLifecycle(t *testing.T) {
	ctx := context.Background()
	clk := newMTClock()
	st := memory.New()
	const grace, ttl = 10 * time.Minute, time.Hour
	m, err := New(Options{Store: st, Authenticator: mtUsers(t), KeyEncryptionKey: mtKEK(3), ServerKeyGrace: grace,
		TokenTTL: ttl, ServerPolicy: policy.Manual(), MaintainInterval: -1, Now: clk.Now, Logger: mtQuiet})
	require.NoError(t, err)
	defer m.Close()
	s := newMTServer(t)
	s.serve(m)

	check := func(step string) (ringRecord, *wire.Directory) {
		t.Helper()
		rec := mtRing(t, st)
		require.Equal(t, 1, mtPrimaries(rec), "%s: one primary in the store", step)
		require.NotNil(t, m.ring.Load().primary, step)
		d := mtDirectory(t, s, m)
		p, ok := d.Primary()
		require.True(t, ok, step)
		require.Equal(t, m.ring.Load().primary.id.String(), p.ID, step)
		require.Equal(t, rec.Epoch, d.Epoch, step)
		return rec, d
	}

	rec, d := check("start")
	require.Len(t, rec.Keys, 1)
	require.Len(t, d.Keys, 1)
	a := rec.Keys[0].ID
	c, hc := mtClient(t, s, clk.Now) // logs in under key a; its token is sealed by the token key
	mtEcho(t, s, hc, "hello")

	clk.Advance(time.Minute)
	retired := clk.Now()
	require.NoError(t, m.Rotate(ctx))
	rec, d = check("rotated")
	require.Len(t, rec.Keys, 2)
	ka, ok := mtFind(rec, a)
	require.True(t, ok)
	require.Equal(t, StateDecryptOnly, ka.State)
	require.NotEmpty(t, ka.SealedPrivate)
	require.Equal(t, retired.Add(grace).UnixMilli(), ka.DecryptUntil)
	require.Zero(t, ka.TokenUntil, "no token key of its own: nothing outlives its private key")
	require.Empty(t, ka.SealedTokenKey)
	require.Len(t, d.Keys, 2)
	for _, k := range d.Keys {
		if k.ID == a {
			require.Equal(t, wire.StatusDecryptOnly, k.Status)
			require.Equal(t, ka.DecryptUntil, k.Expires, "the directory gives the expiry")
		} else {
			require.Equal(t, wire.StatusPrimary, k.Status)
			require.Zero(t, k.Expires)
		}
	}
	b := d.Keys[0].ID
	if b == a {
		b = d.Keys[1].ID
	}

	// Within the grace window the old key still opens messages: the client,
	// which has not heard of the rotation, gets through without recovering.
	clk.Advance(grace - time.Second) // one second before the end of a's window
	require.NoError(t, m.Maintain(ctx))
	rec, _ = check("in grace")
	ka, _ = mtFind(rec, a)
	require.Equal(t, StateDecryptOnly, ka.State)
	mtEcho(t, s, hc, "in grace")
	sk, _ := c.ServerKeyID()
	require.Equal(t, a, sk.String(), "the client still seals to the old key")
	require.Zero(t, c.Stats().Recoveries)

	// Past the grace window: destroyed.
	clk.Advance(2 * time.Second)
	require.NoError(t, m.Maintain(ctx))
	rec, d = check("destroyed")
	_, ok = mtFind(rec, a)
	require.False(t, ok, "the record is deleted with its private key")
	raw, err := st.Get(ctx, ringKey)
	require.NoError(t, err)
	require.Equal(t, 1, strings.Count(string(raw.Value), `"sealed_private"`), "only the primary's private key is stored")
	require.Len(t, d.Keys, 1)
	require.Equal(t, b, d.Keys[0].ID)
	ida, err := wire.ParseKeyID(a)
	require.NoError(t, err)
	require.Nil(t, m.ring.Load().keys[ida], "no private part in memory")
	k, err := m.keyFor(ctx, ida)
	require.NoError(t, err)
	require.Nil(t, k)
	// The client recovers (server-key-unknown carries the directory) and
	// its token, sealed under the token key, is still good.
	mtEcho(t, s, hc, "after destroy")
	require.Equal(t, uint64(1), c.Stats().Recoveries)
	require.Equal(t, uint64(1), c.Stats().Logins)
	sk, _ = c.ServerKeyID()
	require.Equal(t, b, sk.String())

	// Maintain is idempotent.
	require.NoError(t, m.Maintain(ctx))
	rec2, _ := check("idempotent")
	require.Equal(t, rec, rec2)
	require.Len(t, rec.Keys, 1)
	require.Len(t, d.Keys, 1)
}

// The server policy rotates the key pair in Maintain (claim 6), once.
func TestMaintainRotatesByPolicy(t *testing.T) {
	ctx := context.Background()
	clk := newMTClock()
	st := memory.New()
	m, err := New(Options{Authenticator: mtNoUsers, Store: st, KeyEncryptionKey: mtKEK(4), ServerPolicy: policy.Uptime(time.Hour),
		MaintainInterval: -1, Now: clk.Now, Logger: mtQuiet})
	require.NoError(t, err)
	defer m.Close()
	first := m.ring.Load().primary.id
	epoch0 := mtRing(t, st).Epoch
	require.Equal(t, uint64(clk.Now().UnixMilli()), epoch0, "a new ring's epoch is the time in ms")

	clk.Advance(59 * time.Minute)
	require.NoError(t, m.Maintain(ctx))
	require.Equal(t, first, m.ring.Load().primary.id)

	clk.Advance(time.Minute)
	require.NoError(t, m.Maintain(ctx))
	second := m.ring.Load().primary.id
	require.NotEqual(t, first, second)
	require.NoError(t, m.Maintain(ctx))
	require.Equal(t, second, m.ring.Load().primary.id, "the new key's uptime starts at zero")
	rec := mtRing(t, st)
	require.Len(t, rec.Keys, 2)
	require.Equal(t, 1, mtPrimaries(rec))
	require.Equal(t, epoch0+1, rec.Epoch)
}

// Two instances sharing a store rotate at once: every rotation adds one key,
// and the ring keeps exactly one primary, which both instances agree on.
func TestConcurrentRotationAcrossInstances(t *testing.T) {
	ctx := context.Background()
	st := memory.New()
	var ms []*Middleware
	for range 2 {
		m, err := New(Options{Authenticator: mtNoUsers, Store: st, KeyEncryptionKey: mtKEK(5), MaintainInterval: -1, Logger: mtQuiet})
		require.NoError(t, err)
		defer m.Close()
		ms = append(ms, m)
	}
	require.Equal(t, ms[0].IdentityPublicKey(), ms[1].IdentityPublicKey())
	epoch0 := mtRing(t, st).Epoch
	const each = 5
	var wg sync.WaitGroup
	errs := make(chan error, 2*each)
	for _, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if err := m.Rotate(ctx); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	rec := mtRing(t, st)
	require.Len(t, rec.Keys, 1+2*each)
	require.Equal(t, 1, mtPrimaries(rec))
	require.Equal(t, epoch0+2*each, rec.Epoch, "every rotation raises the epoch by one")
	for _, m := range ms {
		require.NoError(t, m.Maintain(ctx))
	}
	require.Equal(t, ms[0].ring.Load().primary.id, ms[1].ring.Load().primary.id)
}

// A store that fails makes New fail with the store's error, not a panic.
func TestNewStoreFailure(t *testing.T) {
	boom := errors.New("store down")
	_, err := New(Options{Authenticator: mtNoUsers, Store: mtFailingStore{boom}, KeyEncryptionKey: mtKEK(6), MaintainInterval: -1, Logger: mtQuiet})
	require.ErrorIs(t, err, boom)
}

type mtFailingStore struct{ err error }

func (s mtFailingStore) Get(context.Context, string) (store.Entry, error) {
	return store.Entry{}, s.err
}
func (s mtFailingStore) CompareAndSwap(context.Context, string, uint64, []byte, time.Time) (uint64, error) {
	return 0, s.err
}
func (s mtFailingStore) Delete(context.Context, string) error { return s.err }
func (s mtFailingStore) MarkSeen(context.Context, string, time.Time) (bool, error) {
	return false, s.err
}
func (s mtFailingStore) Close() error { return nil }
