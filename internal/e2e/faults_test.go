package e2e

// Faults of the shared store under a running middleware (issue 9, item 6):
// the store stops for 3 s, or a Redis Cluster master dies. Requests get a
// fast 503 "unavailable" problem meanwhile, nothing panics or leaks, and
// afterwards every session and client key is still there.

import (
	"context"
	"encoding/json"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/client"
	"github.com/dynkey/dynkey/internal/testservers"
	"github.com/dynkey/dynkey/store"
	"github.com/dynkey/dynkey/store/postgres"
	"github.com/dynkey/dynkey/store/redis"
	"github.com/dynkey/dynkey/wire"
)

// outageClients are logged-in clients whose keys were rotated once, so a
// lost session or client key shows as a new login or a refusal.
type outageClient struct {
	c       *client.Client
	hc      *http.Client
	session string
	keyID   string
}

func startOutageClients(t *testing.T, s *server, clk *fakeClock) []*outageClient {
	var out []*outageClient
	for _, user := range []string{"alice", "bob"} {
		c := newSDK(t, s.URL, clk.Now, user, nil)
		hc := c.HTTPClient()
		hc.Timeout = 20 * time.Second
		mustCall(t, hc, http.MethodPost, s.URL+"/api/warm", "x")
		rotateSDK(t, c, s.URL+"/api/rotate")
		e := mustCall(t, hc, http.MethodPost, s.URL+"/api/warm", "x")
		out = append(out, &outageClient{c: c, hc: hc, session: e.Session, keyID: s.app.lastSession().ClientKeyID.String()})
	}
	return out
}

// duringOutage makes requests for d while the store is down and checks
// that each is answered 503 "unavailable" within bound, without the handler
// running. It returns the slowest answer.
func duringOutage(t *testing.T, s *server, cs []*outageClient, d, bound time.Duration) time.Duration {
	t.Helper()
	calls := s.app.calls.Load()
	slowest := time.Duration(0)
	n := 0
	for end := time.Now().Add(d); time.Now().Before(end); n++ {
		oc := cs[n%len(cs)]
		start := time.Now()
		status, body, err := call(oc.hc, http.MethodPost, s.URL+"/api/during", "x")
		took := time.Since(start)
		slowest = max(slowest, took)
		require.NoError(t, err)
		require.Equal(t, http.StatusServiceUnavailable, status, body)
		var p wire.Problem
		require.NoError(t, json.Unmarshal([]byte(body), &p), body)
		require.Equal(t, wire.CodeUnavailable, p.Code)
		require.Less(t, took, bound, "a refusal took too long")
		time.Sleep(50 * time.Millisecond)
	}
	require.Equal(t, calls, s.app.calls.Load(), "a handler ran while the store was down")
	require.Greater(t, n, 5)
	return slowest
}

// afterOutage checks that every client works again on its own session and
// client key, without logging in again, within 20s.
func afterOutage(t *testing.T, s *server, cs []*outageClient) {
	t.Helper()
	for _, oc := range cs {
		logins := oc.c.Stats().Logins
		// Back: ten successes in a row (a cluster client may meet a dead
		// node once more before its topology is reloaded).
		require.Eventually(t, func() bool {
			for range 10 {
				status, _, err := call(oc.hc, http.MethodPost, s.URL+"/api/after", "x")
				if err != nil || status != http.StatusOK {
					return false
				}
			}
			return true
		}, 20*time.Second, 100*time.Millisecond)
		e := mustCall(t, oc.hc, http.MethodPost, s.URL+"/api/after", "x")
		require.Equal(t, oc.session, e.Session, "the session was lost")
		require.Equal(t, oc.keyID, s.app.lastSession().ClientKeyID.String(), "the rotated client key was lost")
		require.Equal(t, logins, oc.c.Stats().Logins, "the client had to log in again")
	}
}

// requireNoGoroutineLeak waits up to 10s for the goroutine count to come
// back to within slack of base.
func requireNoGoroutineLeak(t *testing.T, base int) {
	t.Helper()
	const slack = 8
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base+slack && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	require.LessOrEqual(t, runtime.NumGoroutine(), base+slack, "goroutines leaked")
}

// TestStoreOutage stops Redis (durable: appendonly, fsync always) and
// PostgreSQL for 3 s under a running middleware with logged-in clients.
func TestStoreOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and stops database servers")
	}
	for _, tc := range []struct {
		name  string
		start func(t *testing.T) (url string, stop, restart func() error)
		open  func(t *testing.T, url string) store.Store
	}{
		{"redis", func(t *testing.T) (string, func() error, func() error) {
			r, err := testservers.StartRedis("--appendonly", "yes", "--appendfsync", "always")
			if err != nil {
				testservers.Unavailable(t, "no Redis: %v", err)
			}
			t.Cleanup(func() { r.Close() })
			return r.URL(), r.Stop, r.Start
		}, func(t *testing.T, url string) store.Store {
			s, err := redis.Open(t.Context(), url)
			require.NoError(t, err)
			return s
		}},
		{"postgres", func(t *testing.T) (string, func() error, func() error) {
			p, err := testservers.StartPostgres(testservers.PostgresOptions{})
			if err != nil {
				testservers.Unavailable(t, "no PostgreSQL: %v", err)
			}
			t.Cleanup(func() { p.Close() })
			return p.URL(), p.Stop, p.Start
		}, func(t *testing.T, url string) store.Store {
			s, err := postgres.Open(t.Context(), url)
			require.NoError(t, err)
			return s
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url, stop, restart := tc.start(t)
			st := tc.open(t, url)
			clk := newClock()
			o := baseOptions(t, clk, st)
			o.RingPollInterval = 200 * time.Millisecond
			s := startServer(t, o)
			cs := startOutageClients(t, s, clk)
			http.DefaultTransport.(*http.Transport).CloseIdleConnections()
			base := runtime.NumGoroutine()

			require.NoError(t, stop())
			slowest := duringOutage(t, s, cs, 3*time.Second, 2*time.Second)
			require.NoError(t, restart())
			afterOutage(t, s, cs)
			t.Logf("%s down 3s: every request answered 503 unavailable, slowest in %v; sessions and client keys intact after", tc.name, slowest.Round(time.Millisecond))

			for _, oc := range cs {
				oc.c.Close()
			}
			st.Close()
			s.srv.CloseClientConnections()
			http.DefaultTransport.(*http.Transport).CloseIdleConnections()
			requireNoGoroutineLeak(t, base)
		})
	}
}

// TestRedisClusterFailover kills a master of a Redis Cluster (one replica
// per master) under a running middleware: requests touching its slots are
// answered 503 "unavailable" until the replica takes over, then everything
// works with every session and client key intact.
func TestRedisClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("a failover takes a few seconds")
	}
	c, err := testservers.StartRedisCluster(3, 1)
	if err != nil {
		testservers.Unavailable(t, "no Redis Cluster: %v", err)
	}
	defer c.Close()
	st, err := redis.Open(t.Context(), c.URL())
	require.NoError(t, err)
	defer st.Close()
	clk := newClock()
	o := baseOptions(t, clk, st)
	o.RingPollInterval = 200 * time.Millisecond
	s := startServer(t, o)
	cs := startOutageClients(t, s, clk)
	require.NoError(t, c.WaitReplicated())

	var victim *testservers.Redis
	for _, node := range c.Nodes {
		if role, err := node.Role(); err == nil && role == "master" {
			victim = node
			break
		}
	}
	require.NotNil(t, victim)
	require.NoError(t, victim.Kill())
	// During the failover: every answer is a success or a 503
	// "unavailable", never anything else, and none is slow.
	refused := 0
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		for _, oc := range cs {
			start := time.Now()
			status, body, err := call(oc.hc, http.MethodPost, s.URL+"/api/during", "x")
			require.NoError(t, err)
			require.Less(t, time.Since(start), 6*time.Second)
			if status != http.StatusOK {
				var p wire.Problem
				require.NoError(t, json.Unmarshal([]byte(body), &p), body)
				require.Equal(t, wire.CodeUnavailable, p.Code, body)
				refused++
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	afterOutage(t, s, cs)
	t.Logf("master killed: %d requests refused unavailable during the failover; sessions and client keys intact after", refused)
	_ = context.Background
}
