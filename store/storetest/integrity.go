package storetest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/auth"
	"github.com/dynkey/dynkey/client"
	"github.com/dynkey/dynkey/crypto"
	"github.com/dynkey/dynkey/middleware"
	"github.com/dynkey/dynkey/policy"
	"github.com/dynkey/dynkey/store"
	"github.com/dynkey/dynkey/wire"
)

// RunIntegrity runs the tamper tests of the dynkey middleware against a
// store: someone who can write the store but does not hold the
// key-encryption key rewrites its raw records — the key ring (the primary
// server key replaced by one of their own without a private key, a byte
// flipped, the MAC stripped as in a record from before records were
// authenticated) and sessions (a client key of their own installed, two
// sessions swapped, a byte flipped, the MAC stripped). Every time the
// servers refuse the record with a logged error naming it and answer
// "unavailable"; they never serve the tampered data, and a new server on
// that store refuses to start. If the store implements [store.Lister], it
// also checks the listing and a key-encryption key rotation through the
// store (middleware.RotateKEK).
//
// newStore returns a new, empty store. [Run] calls RunIntegrity, so every
// store that passes the conformance suite runs these tests too.
func RunIntegrity(t *testing.T, newStore func(t *testing.T) store.Store) {
	t.Run("RingPrimaryReplaced", func(t *testing.T) {
		e := newIntegrityEnv(t, newStore(t))
		attacker, err := e.suite.GenerateKey(nil)
		require.NoError(t, err)
		pub := attacker.Public().Bytes()
		e.tamper(t, "dynkey/ring", func(v []byte) []byte {
			var rec map[string]any
			require.NoError(t, json.Unmarshal(v, &rec))
			for _, k := range rec["keys"].([]any) {
				k := k.(map[string]any)
				if k["state"] == "primary" {
					k["public"] = base64.StdEncoding.EncodeToString(pub)
					k["id"] = wire.ComputeKeyID(e.suite.Name(), pub).String()
					delete(k, "sealed_private")
				}
			}
			b, err := json.Marshal(rec)
			require.NoError(t, err)
			return b
		})
		e.requireRingRefused(t)
		// The directory never carries the attacker's key.
		resp, err := http.Get(e.srv.URL + wire.PathKeys)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NotContains(t, string(body), base64.StdEncoding.EncodeToString(pub))
	})
	t.Run("RingByteFlipped", func(t *testing.T) {
		e := newIntegrityEnv(t, newStore(t))
		e.tamper(t, "dynkey/ring", func(v []byte) []byte {
			// The epoch's last digit: still valid JSON, another value.
			i := bytes.Index(v, []byte(`"epoch":`)) + len(`"epoch":`)
			for v[i+1] >= '0' && v[i+1] <= '9' {
				i++
			}
			v[i] = '0' + (v[i]-'0'+1)%10
			return v
		})
		e.requireRingRefused(t)
	})
	t.Run("RingWithoutMAC", func(t *testing.T) {
		e := newIntegrityEnv(t, newStore(t))
		e.tamper(t, "dynkey/ring", withoutMAC(t))
		e.requireRingRefused(t)
	})
	t.Run("SessionClientKeyRewritten", func(t *testing.T) {
		e := newIntegrityEnv(t, newStore(t))
		c, hc := e.newClient(t)
		sid := e.call(t, hc).session
		attacker, err := e.suite.GenerateKey(nil)
		require.NoError(t, err)
		e.tamper(t, "dynkey/session/"+sid, func(v []byte) []byte {
			var rec map[string]any
			require.NoError(t, json.Unmarshal(v, &rec))
			rec["client_key"] = base64.StdEncoding.EncodeToString(attacker.Public().Bytes())
			delete(rec, "prev_key")
			b, err := json.Marshal(rec)
			require.NoError(t, err)
			return b
		})
		e.requireSessionRefused(t, hc, "dynkey/session/"+sid)
		require.Equal(t, uint64(1), c.Stats().Logins)
	})
	t.Run("SessionsSwapped", func(t *testing.T) {
		e := newIntegrityEnv(t, newStore(t))
		_, hc1 := e.newClient(t)
		_, hc2 := e.newClient(t)
		s1, s2 := e.call(t, hc1).session, e.call(t, hc2).session
		require.NotEqual(t, s1, s2)
		ctx := context.Background()
		e1, err := e.st.Get(ctx, "dynkey/session/"+s1)
		require.NoError(t, err)
		// Session 1's genuine record under session 2's id: client 1's
		// key would now open session 2.
		e.tamper(t, "dynkey/session/"+s2, func([]byte) []byte { return e1.Value })
		e.requireSessionRefused(t, hc2, "dynkey/session/"+s2)
		require.Equal(t, s1, e.call(t, hc1).session, "the untouched session still works")
	})
	t.Run("SessionByteFlipped", func(t *testing.T) {
		e := newIntegrityEnv(t, newStore(t))
		_, hc := e.newClient(t)
		sid := e.call(t, hc).session
		e.tamper(t, "dynkey/session/"+sid, func(v []byte) []byte {
			i := bytes.Index(v, []byte(`"expires":`)) + len(`"expires":`) + 3
			v[i] = '0' + (v[i]-'0'+1)%10
			return v
		})
		e.requireSessionRefused(t, hc, "dynkey/session/"+sid)
	})
	t.Run("SessionWithoutMAC", func(t *testing.T) {
		e := newIntegrityEnv(t, newStore(t))
		_, hc := e.newClient(t)
		sid := e.call(t, hc).session
		e.tamper(t, "dynkey/session/"+sid, withoutMAC(t))
		e.requireSessionRefused(t, hc, "dynkey/session/"+sid)
	})
	t.Run("ListKeys", func(t *testing.T) {
		st := newStore(t)
		l, ok := st.(store.Lister)
		if !ok {
			t.Skip("the store does not implement store.Lister")
		}
		ctx := context.Background()
		for _, k := range []string{"p/b", "p/a", "p/c", "q/a", "p"} {
			_, err := st.CompareAndSwap(ctx, k, 0, []byte("v"), time.Time{})
			require.NoError(t, err)
		}
		_, err := st.CompareAndSwap(ctx, "p/expired", 0, []byte("v"), time.Now().Add(-time.Second))
		require.NoError(t, err)
		got, err := l.ListKeys(ctx, "p/", "", 10)
		require.NoError(t, err)
		require.Equal(t, []string{"p/a", "p/b", "p/c"}, got)
		got, err = l.ListKeys(ctx, "p/", "p/a", 1)
		require.NoError(t, err)
		require.Equal(t, []string{"p/b"}, got)
		got, err = l.ListKeys(ctx, "p/", "p/c", 10)
		require.NoError(t, err)
		require.Empty(t, got)
	})
	t.Run("RotateKEK", func(t *testing.T) {
		st := newStore(t)
		e := newIntegrityEnv(t, st)
		c, hc := e.newClient(t)
		sid := e.call(t, hc).session
		err := e.m.RotateKEK(context.Background(), bytes.Repeat([]byte{0xB2}, 32))
		if _, ok := st.(store.Lister); !ok {
			require.ErrorIs(t, err, middleware.ErrStoreCannotList)
			return
		}
		require.NoError(t, err)
		require.Equal(t, sid, e.call(t, hc).session, "the session survives the rotation")
		// The old KEK alone opens nothing.
		_, err = middleware.New(middleware.Options{Store: st, KeyEncryptionKey: e.kek, Authenticator: e.users, MaintainInterval: -1, Logger: e.log.logger()})
		require.ErrorIs(t, err, middleware.ErrRecordRefused)
		// The new one alone opens everything: a restarted server serves
		// the same session.
		m2, err := middleware.New(middleware.Options{Store: st, KeyEncryptionKey: bytes.Repeat([]byte{0xB2}, 32),
			Authenticator: e.users, MaintainInterval: -1, Logger: e.log.logger()})
		require.NoError(t, err)
		t.Cleanup(func() { m2.Close() })
		e.serve(m2)
		require.Equal(t, sid, e.call(t, hc).session)
		require.Equal(t, uint64(1), c.Stats().Logins)
	})
}

// withoutMAC strips a record's authentication, as in a record written
// before records were authenticated.
func withoutMAC(t *testing.T) func([]byte) []byte {
	return func(v []byte) []byte {
		var rec map[string]any
		require.NoError(t, json.Unmarshal(v, &rec))
		require.Contains(t, rec, "mac")
		delete(rec, "mac")
		delete(rec, "kek")
		b, err := json.Marshal(rec)
		require.NoError(t, err)
		return b
	}
}

type integrityEnv struct {
	st      store.Store
	kek     []byte
	users   *auth.Argon2id
	suite   crypto.Suite
	m       *middleware.Middleware
	cur     atomic.Pointer[http.Handler]
	srv     *httptest.Server
	log     *logRecorder
	handled atomic.Int64
	pre     *http.Client // a client logged in before any tampering
}

func newIntegrityEnv(t *testing.T, st store.Store) *integrityEnv {
	t.Helper()
	e := &integrityEnv{st: st, kek: bytes.Repeat([]byte{0xA1}, 32), log: &logRecorder{}}
	e.users = auth.NewArgon2id(auth.Params{Time: 1, MemoryKiB: 1024, Threads: 1, SaltLen: 16, KeyLen: 32})
	require.NoError(t, e.users.AddUser("alice", "pw"))
	m, err := middleware.New(middleware.Options{Store: st, KeyEncryptionKey: e.kek, Authenticator: e.users,
		MaintainInterval: -1, Logger: e.log.logger()})
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	e.m = m
	e.suite, err = crypto.Lookup(m.Suite())
	require.NoError(t, err)
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		(*e.cur.Load()).ServeHTTP(w, r)
	}))
	t.Cleanup(e.srv.Close)
	e.serve(m)
	_, e.pre = e.newClient(t)
	e.call(t, e.pre)
	return e
}

// serve routes the endpoints and /api/whoami to m.
func (e *integrityEnv) serve(m *middleware.Middleware) {
	mux := http.NewServeMux()
	mux.Handle("/dynkey/", m.Endpoints())
	mux.Handle("/.well-known/dynkey/", m.Endpoints())
	mux.Handle("/api/whoami", m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.handled.Add(1)
		s, _ := middleware.FromContext(r.Context())
		_, _ = io.WriteString(w, s.ID)
	})))
	var h http.Handler = mux
	e.cur.Store(&h)
}

func (e *integrityEnv) newClient(t *testing.T) (*client.Client, *http.Client) {
	t.Helper()
	c, err := client.New(client.Config{BaseURL: e.srv.URL, Username: "alice", Password: "pw",
		IdentityKey: e.m.IdentityPublicKey(), HeartbeatInterval: -1, Policy: policy.Manual(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	hc := c.HTTPClient()
	hc.Timeout = 10 * time.Second
	return c, hc
}

type callResult struct {
	status  int
	session string
	problem *wire.Problem
}

// try calls /api/whoami (PUT, idempotent) through the client.
func (e *integrityEnv) try(t *testing.T, hc *http.Client) callResult {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, e.srv.URL+"/api/whoami", strings.NewReader("x"))
	require.NoError(t, err)
	resp, err := hc.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	r := callResult{status: resp.StatusCode}
	if resp.StatusCode == http.StatusOK {
		r.session = string(b)
	} else if p, ok := wire.ParseProblem(b); ok {
		r.problem = p
	}
	return r
}

func (e *integrityEnv) call(t *testing.T, hc *http.Client) callResult {
	t.Helper()
	r := e.try(t, hc)
	require.Equal(t, http.StatusOK, r.status, "problem: %+v", r.problem)
	return r
}

// tamper rewrites the raw value under key, as a store writer without the
// KEK can.
func (e *integrityEnv) tamper(t *testing.T, key string, change func([]byte) []byte) {
	t.Helper()
	ctx := context.Background()
	ent, err := e.st.Get(ctx, key)
	require.NoError(t, err)
	v := change(bytes.Clone(ent.Value))
	require.NotEqual(t, ent.Value, v, "the tampering changed nothing")
	_, err = e.st.CompareAndSwap(ctx, key, ent.Version, v, ent.Expires)
	require.NoError(t, err)
}

// requireRingRefused checks that a tampered ring is refused: the running
// server's next reload fails and is logged, its requests and directory are
// "unavailable", and a new server on the store does not start.
func (e *integrityEnv) requireRingRefused(t *testing.T) {
	t.Helper()
	hc := e.pre
	err := e.m.Maintain(context.Background())
	require.ErrorIs(t, err, middleware.ErrRecordRefused)
	require.True(t, e.log.hasError("dynkey/ring"), "no error logged naming the ring; log: %s", e.log)
	resp, err := http.Get(e.srv.URL + wire.PathKeys)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "directory served from a refused ring: %s", b)
	before := e.handled.Load()
	r := e.try(t, hc)
	require.Equal(t, http.StatusServiceUnavailable, r.status, "problem: %+v", r.problem)
	require.NotNil(t, r.problem)
	require.Equal(t, wire.CodeUnavailable, r.problem.Code)
	require.Equal(t, before, e.handled.Load(), "the handler ran")
	_, err = middleware.New(middleware.Options{Store: e.st, KeyEncryptionKey: e.kek, Authenticator: e.users, MaintainInterval: -1, Logger: e.log.logger()})
	require.ErrorIs(t, err, middleware.ErrRecordRefused)
}

// requireSessionRefused checks that a request on a tampered session is
// answered "unavailable" without running the handler, with a logged error
// naming the record.
func (e *integrityEnv) requireSessionRefused(t *testing.T, hc *http.Client, key string) {
	t.Helper()
	before := e.handled.Load()
	r := e.try(t, hc)
	require.Equal(t, http.StatusServiceUnavailable, r.status, "problem: %+v", r.problem)
	require.NotNil(t, r.problem)
	require.Equal(t, wire.CodeUnavailable, r.problem.Code)
	require.Equal(t, before, e.handled.Load(), "the handler ran")
	require.True(t, e.log.hasError(key), "no error logged naming %s; log: %s", key, e.log)
}

// logRecorder keeps the records logged at Error level.
type logRecorder struct {
	mu   sync.Mutex
	errs []string
}

func (l *logRecorder) logger() *slog.Logger { return slog.New(&recordHandler{l}) }

func (l *logRecorder) hasError(record string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.ContainsFunc(l.errs, func(s string) bool {
		return strings.Contains(s, "record="+record+" ") || strings.HasSuffix(s, "record="+record)
	})
}

func (l *logRecorder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.errs, "\n")
}

type recordHandler struct{ l *logRecorder }

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Level < slog.LevelError {
		return nil
	}
	s := r.Message
	r.Attrs(func(a slog.Attr) bool {
		s += fmt.Sprintf(" %s=%s", a.Key, a.Value)
		return true
	})
	h.l.mu.Lock()
	h.l.errs = append(h.l.errs, s)
	h.l.mu.Unlock()
	return nil
}
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }
