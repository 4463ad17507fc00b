package e2e

// Tests of a cluster of instances on the shared stores (issue 9): how fast
// a rotation reaches every instance, and what a protected request costs in
// store round trips.

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/internal/testservers"
	"github.com/dynkey/dynkey/middleware"
	"github.com/dynkey/dynkey/store"
	"github.com/dynkey/dynkey/store/memory"
	"github.com/dynkey/dynkey/store/postgres"
	"github.com/dynkey/dynkey/store/redis"
	"github.com/dynkey/dynkey/store/sqlite"
)

func randomName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// sharedStores are the stores several instances share, each as a function
// returning two handles (two instances' connections) on the same data.
var sharedStores = []struct {
	name string
	open func(t *testing.T) (a, b store.Store)
}{
	{"redis", func(t *testing.T) (store.Store, store.Store) {
		return openRedisPair(t, testservers.RedisURL(t))
	}},
	{"redis-cluster", func(t *testing.T) (store.Store, store.Store) {
		return openRedisPair(t, testservers.RedisClusterURL(t))
	}},
	{"postgres", func(t *testing.T) (store.Store, store.Store) {
		url := withParam(testservers.PostgresURL(t), "schema="+randomName("e2e_"))
		open := func() store.Store {
			s, err := postgres.Open(t.Context(), url)
			require.NoError(t, err)
			t.Cleanup(func() { s.Close() })
			return s
		}
		return open(), open()
	}},
}

func openRedisPair(t *testing.T, url string) (store.Store, store.Store) {
	prefix := randomName("e2e-") + ":"
	open := func() store.Store {
		s, err := redis.Open(t.Context(), withParam(url, "prefix="+prefix))
		require.NoError(t, err)
		t.Cleanup(func() { s.Close() })
		return s
	}
	return open(), open()
}

// withParam adds a query parameter to url.
func withParam(url, param string) string {
	if strings.Contains(url, "?") {
		return url + "&" + param
	}
	return url + "?" + param
}

// plainStore hides a store's optional interfaces (store.Watcher): only
// polling propagates the ring.
type plainStore struct{ store.Store }

// primaryOf returns the primary key id of the directory served at base.
func primaryOf(t *testing.T, base string) string {
	t.Helper()
	sd := fetchDirectory(t, base)
	id, _ := identities.Load(base)
	d, err := sd.Verify(id.(ed25519.PublicKey))
	require.NoError(t, err)
	p, ok := d.Primary()
	require.True(t, ok)
	return p.ID
}

// TestPropagation rotates the server key on instance A and measures how
// long instance B takes to serve the new primary in its directory: through
// the store's notification (Redis pub/sub, PostgreSQL LISTEN/NOTIFY) with
// polling off, and through polling alone with notifications hidden. Both
// must be within one client heartbeat interval by far; the notification
// path within 2s, the polling path within its interval plus 2s.
func TestPropagation(t *testing.T) {
	for _, s := range sharedStores {
		for _, mode := range []struct {
			name  string
			watch bool
			poll  time.Duration
			bound time.Duration
		}{
			{"notify", true, time.Hour, 2 * time.Second},
			{"poll", false, 300 * time.Millisecond, 2300 * time.Millisecond},
		} {
			t.Run(s.name+"/"+mode.name, func(t *testing.T) {
				sa, sb := s.open(t)
				if !mode.watch {
					sa, sb = plainStore{sa}, plainStore{sb}
				}
				clk := newClock()
				oa := baseOptions(t, clk, sa)
				oa.RingPollInterval = mode.poll
				a := startServer(t, oa)
				ob := baseOptions(t, clk, sb)
				ob.RingPollInterval = mode.poll
				b := startServer(t, ob)
				require.Equal(t, primaryOf(t, a.URL), primaryOf(t, b.URL))
				if mode.watch {
					// B's watch is established (it signals once then):
					// give the subscription a moment before rotating.
					time.Sleep(200 * time.Millisecond)
				}

				require.NoError(t, a.m.Rotate(context.Background()))
				want := primaryOf(t, a.URL)
				start := time.Now()
				for primaryOf(t, b.URL) != want {
					require.Less(t, time.Since(start), mode.bound, "B still serves the old primary")
					time.Sleep(20 * time.Millisecond)
				}
				t.Logf("%s/%s: B served the new primary after %v", s.name, mode.name, time.Since(start).Round(time.Millisecond))
			})
		}
	}
}

// opCounter counts every store operation.
type opCounter struct {
	store.Store
	gets, cases, dels, seen atomic.Int64
}

func (s *opCounter) Get(ctx context.Context, key string) (store.Entry, error) {
	s.gets.Add(1)
	return s.Store.Get(ctx, key)
}

func (s *opCounter) CompareAndSwap(ctx context.Context, key string, old uint64, v []byte, exp time.Time) (uint64, error) {
	s.cases.Add(1)
	return s.Store.CompareAndSwap(ctx, key, old, v, exp)
}

func (s *opCounter) Delete(ctx context.Context, key string) error {
	s.dels.Add(1)
	return s.Store.Delete(ctx, key)
}

func (s *opCounter) MarkSeen(ctx context.Context, id string, exp time.Time) (bool, error) {
	s.seen.Add(1)
	return s.Store.MarkSeen(ctx, id, exp)
}

func (s *opCounter) reset() { s.gets.Store(0); s.cases.Store(0); s.dels.Store(0); s.seen.Store(0) }
func (s *opCounter) total() int64 {
	return s.gets.Load() + s.cases.Load() + s.dels.Load() + s.seen.Load()
}

// TestRoundTripsPerRequest counts the store operations of protected
// requests on a warm session (every operation of store/redis and
// store/postgres is one round trip): at most two — the session read and
// MarkSeen — on every store.
func TestRoundTripsPerRequest(t *testing.T) {
	stores := []struct {
		name string
		open func(t *testing.T) store.Store
	}{
		{"memory", func(t *testing.T) store.Store { return memory.New() }},
		{"sqlite", func(t *testing.T) store.Store {
			s, err := sqlite.Open(filepath.Join(t.TempDir(), "s.db"))
			require.NoError(t, err)
			t.Cleanup(func() { s.Close() })
			return s
		}},
	}
	for _, s := range sharedStores {
		stores = append(stores, struct {
			name string
			open func(t *testing.T) store.Store
		}{s.name, func(t *testing.T) store.Store { a, _ := s.open(t); return a }})
	}
	for _, s := range stores {
		t.Run(s.name, func(t *testing.T) {
			st := &opCounter{Store: s.open(t)}
			clk := newClock()
			o := baseOptions(t, clk, st)
			o.RingPollInterval = -1
			srv := startServer(t, o)
			c := newSDK(t, srv.URL, clk.Now, "alice", nil)
			hc := c.HTTPClient()
			mustCall(t, hc, http.MethodPost, srv.URL+"/api/x", "warm-up") // login
			st.reset()
			const n = 50
			for range n {
				mustCall(t, hc, http.MethodPost, srv.URL+"/api/x", "hello")
			}
			per := float64(st.total()) / n
			t.Logf("%s: %.2f store round trips per protected request (get %d, cas %d, delete %d, markseen %d over %d requests)",
				s.name, per, st.gets.Load(), st.cases.Load(), st.dels.Load(), st.seen.Load(), n)
			require.LessOrEqual(t, per, 2.0)
			require.Equal(t, int64(n), st.seen.Load(), "every request records its message id")
		})
	}
}

// TestCloseStopsSync: Close stops the ring's sync with the store — the
// poll and the watch (a Redis subscription, a PostgreSQL LISTEN
// connection) — and leaves no goroutine behind.
func TestCloseStopsSync(t *testing.T) {
	for _, s := range sharedStores {
		t.Run(s.name, func(t *testing.T) {
			st, _ := s.open(t)
			o := baseOptions(t, newClock(), st)
			o.RingPollInterval = 50 * time.Millisecond
			cycle := func() {
				m, err := middleware.New(o)
				require.NoError(t, err)
				time.Sleep(100 * time.Millisecond) // a poll or two, the watch established
				require.NoError(t, m.Close())
			}
			// A first cycle starts the store's own lazy goroutines (pool
			// connections, health checks); the second must add nothing.
			cycle()
			time.Sleep(200 * time.Millisecond)
			base := runtime.NumGoroutine()
			for range 3 {
				cycle()
			}
			var now int
			ok := assertEventuallyE2E(5*time.Second, func() bool { now = runtime.NumGoroutine(); return now <= base })
			if !ok {
				var b strings.Builder
				_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
				t.Fatalf("goroutines left after Close: %d, before: %d\n%s", now, base, b.String())
			}
			t.Logf("goroutines after three New/Close cycles: %d (before: %d)", now, base)
		})
	}
}

// assertEventuallyE2E polls cond every 20ms until it holds or timeout passes.
func assertEventuallyE2E(timeout time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}
