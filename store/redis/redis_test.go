package redis_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/internal/testservers"
	"github.com/dynkey/dynkey/store"
	"github.com/dynkey/dynkey/store/redis"
	"github.com/dynkey/dynkey/store/storetest"
)

// freshPrefix returns a key prefix no other test uses, so that every
// subtest starts from an empty store on a shared server.
func freshPrefix() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "test-" + hex.EncodeToString(b) + ":"
}

// open opens the store at url under prefix, closed when t ends; the keys
// under prefix are deleted then, for servers the tests do not own
// ($DYNKEY_REDIS_URL).
func open(t *testing.T, url, prefix string) *redis.Store {
	t.Helper()
	c, _, err := redis.ParseURL(url)
	require.NoError(t, err)
	require.NoError(t, c.Ping(t.Context()).Err())
	s := redis.New(c, redis.Options{Prefix: prefix, CloseClient: true})
	t.Cleanup(func() {
		deletePrefix(t, c, prefix)
		require.NoError(t, s.Close())
	})
	return s
}

// deletePrefix deletes the keys under prefix, on every master of a cluster.
func deletePrefix(t *testing.T, c goredis.UniversalClient, prefix string) {
	ctx := context.Background()
	del := func(ctx context.Context, c *goredis.Client) error {
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			if err := c.Del(ctx, iter.Val()).Err(); err != nil {
				return err
			}
		}
		return iter.Err()
	}
	var err error
	switch c := c.(type) {
	case *goredis.ClusterClient:
		err = c.ForEachMaster(ctx, del)
	case *goredis.Client:
		err = del(ctx, c)
	}
	if err != nil {
		t.Logf("deleting the test's keys: %v", err)
	}
}

func conformance(t *testing.T, url string) {
	t.Run("Run", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store { return open(t, url, freshPrefix()) })
	})
	t.Run("RunShared", func(t *testing.T) {
		storetest.RunShared(t, func(t *testing.T) (store.Store, store.Store) {
			p := freshPrefix()
			return open(t, url, p), open(t, url, p)
		})
	})
	t.Run("ExpiryByTTL", func(t *testing.T) { testExpiryByTTL(t, url) })
	t.Run("Watch", func(t *testing.T) {
		storetest.RunWatch(t, func(t *testing.T) (store.Store, store.Store) {
			p := freshPrefix()
			return open(t, url, p), open(t, url, p)
		})
	})
}

// TestConformance runs the suite against a standalone redis-server.
func TestConformance(t *testing.T) {
	conformance(t, testservers.RedisURL(t))
}

// TestConformanceCluster runs the suite against a Redis Cluster of three
// masters: every operation must touch one key, or the cluster refuses it
// with CROSSSLOT.
func TestConformanceCluster(t *testing.T) {
	conformance(t, testservers.RedisClusterURL(t))
}

// testExpiryByTTL checks the mechanism of expiry: every key the store
// writes with an expiry carries a Redis TTL (so Redis removes it and the
// store never scans), rounded up to the millisecond; a key without expiry
// has none; and nothing expired stays in Redis.
func testExpiryByTTL(t *testing.T, url string) {
	ctx := t.Context()
	prefix := freshPrefix()
	s := open(t, url, prefix)
	c, _, err := redis.ParseURL(url)
	require.NoError(t, err)
	defer c.Close()

	exp := time.Now().Add(time.Hour)
	_, err = s.CompareAndSwap(ctx, "k", 0, []byte("v"), exp)
	require.NoError(t, err)
	_, err = s.CompareAndSwap(ctx, "forever", 0, []byte("v"), time.Time{})
	require.NoError(t, err)
	_, err = s.MarkSeen(ctx, "id", exp)
	require.NoError(t, err)
	_, err = s.MarkSeen(ctx, "id-forever", time.Time{})
	require.NoError(t, err)

	for _, tc := range []struct {
		name string
		key  string
		ttl  bool
	}{
		{"entry", prefix + "kv:k", true},
		{"seen id", prefix + "seen:id", true},
		{"entry without expiry", prefix + "kv:forever", false},
		{"seen id without expiry", prefix + "seen:id-forever", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ttl, err := c.PTTL(ctx, tc.key).Result()
			require.NoError(t, err)
			if !tc.ttl {
				require.Equal(t, time.Duration(-1), ttl, "key without expiry has a TTL")
				return
			}
			require.Greater(t, ttl, 59*time.Minute)
			require.LessOrEqual(t, ttl, time.Hour+time.Millisecond)
		})
	}

	// Swapping in an expired entry deletes the key; recording an id that
	// has already expired writes nothing.
	_, err = s.CompareAndSwap(ctx, "k", 1, []byte("v"), time.Now().Add(-time.Second))
	require.NoError(t, err)
	_, err = s.MarkSeen(ctx, "gone", time.Now().Add(-time.Second))
	require.NoError(t, err)
	n, err := c.Exists(ctx, prefix+"kv:k", prefix+"seen:gone").Result()
	if err == nil {
		require.Zero(t, n)
	} else { // a cluster refuses EXISTS across slots: ask one key at a time
		for _, k := range []string{prefix + "kv:k", prefix + "seen:gone"} {
			n, err := c.Exists(ctx, k).Result()
			require.NoError(t, err)
			require.Zero(t, n, "key %q", k)
		}
	}

	// A short expiry is enforced by Redis: the key itself disappears.
	_, err = s.MarkSeen(ctx, "short", time.Now().Add(20*time.Millisecond))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		n, err := c.Exists(ctx, prefix+"seen:short").Result()
		return err == nil && n == 0
	}, 2*time.Second, 10*time.Millisecond, "Redis did not expire the key")
}

// TestErrorsNameAddress checks that a store error names the server's
// address and never its password.
func TestErrorsNameAddress(t *testing.T) {
	r, err := testservers.StartRedis("--requirepass", "s3cret-pw")
	if err != nil {
		testservers.Unavailable(t, "no Redis: %v", err)
	}
	defer r.Close()
	for _, tc := range []struct {
		name string
		url  string
	}{
		{"wrong password", "redis://:wrong-pw@" + r.Addr},
		{"no password", "redis://" + r.Addr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := redis.Open(t.Context(), tc.url)
			require.Error(t, err)
			require.Contains(t, err.Error(), r.Addr)
			require.NotContains(t, err.Error(), "wrong-pw")
			require.NotContains(t, err.Error(), "s3cret-pw")
		})
	}

	s, err := redis.Open(t.Context(), "redis://:s3cret-pw@"+r.Addr)
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, r.Kill())
	_, err = s.Get(t.Context(), "k")
	require.Error(t, err)
	require.NotErrorIs(t, err, store.ErrNotFound)
	require.Contains(t, err.Error(), r.Addr)
	require.NotContains(t, err.Error(), "s3cret-pw")
}

func TestParseURL(t *testing.T) {
	tests := []struct {
		name    string
		url     string
		cluster []string // nil: standalone
		addr    string
		db      int
		prefix  string
		err     string // substring of the error; "" for success
	}{
		{name: "standalone", url: "redis://127.0.0.1:6380/2", addr: "127.0.0.1:6380", db: 2},
		{name: "default port", url: "redis://cache.internal", addr: "cache.internal:6379"},
		{name: "tls", url: "rediss://user:pw@cache:6390", addr: "cache:6390"},
		{name: "prefix", url: "redis://h:1/0?prefix=app1:&dial_timeout=3", addr: "h:1", prefix: "app1:"},
		{name: "cluster", url: "redis+cluster://a:7000,b:7001,c", cluster: []string{"a:7000", "b:7001", "c:6379"}},
		{name: "cluster one seed", url: "rediss+cluster://pw@a:7000?prefix=x", cluster: []string{"a:7000"}, prefix: "x"},
		{name: "cluster ipv6", url: "redis+cluster://[::1]:7000,[::1]:7001", cluster: []string{"[::1]:7000", "[::1]:7001"}},
		{name: "unknown scheme", url: "memcache://h:1", err: "unknown scheme"},
		{name: "several hosts without cluster", url: "redis://a:1,b:2", err: "redis+cluster"},
		{name: "cluster with db", url: "redis+cluster://a:1,b:2/3", err: "no database number"},
		{name: "cluster empty address", url: "redis+cluster://a:1,,b:2", err: "empty host"},
		{name: "cluster bad port", url: "redis+cluster://a:1,b:x", err: "invalid port"},
		{name: "bad db", url: "redis://h:1/x", err: "database number"},
		{name: "unknown option", url: "redis://h:1?colour=blue", err: "colour"},
		{name: "no host", url: "redis:///0", err: "host:port"},
		{name: "opaque", url: "redis:h:1", err: "host:port"},
		{name: "malformed", url: "redis://:pw@h:1:2:x", err: "malformed"},
		{name: "malformed keeps password secret", url: "redis://u:topsecret@h:port", err: "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, prefix, err := redis.ParseURL(tt.url)
			if tt.err != "" {
				require.ErrorContains(t, err, tt.err)
				require.NotContains(t, err.Error(), "topsecret")
				require.NotContains(t, err.Error(), ":pw@")
				return
			}
			require.NoError(t, err)
			defer c.Close()
			require.Equal(t, tt.prefix, prefix)
			if tt.cluster != nil {
				cc, ok := c.(*goredis.ClusterClient)
				require.True(t, ok, "got %T, want a cluster client", c)
				require.Equal(t, tt.cluster, cc.Options().Addrs)
				return
			}
			sc, ok := c.(*goredis.Client)
			require.True(t, ok, "got %T, want a standalone client", c)
			require.Equal(t, tt.addr, sc.Options().Addr)
			require.Equal(t, tt.db, sc.Options().DB)
		})
	}
}

// TestDeadlineWhileStalled checks that a context deadline is honoured while
// the server does not answer (CLIENT PAUSE for 2 s): the call returns an error
// wrapping context.DeadlineExceeded soon after the deadline, not after the
// pause.
func TestDeadlineWhileStalled(t *testing.T) {
	url := testservers.RedisURL(t)
	s := open(t, url, freshPrefix())
	c, _, err := redis.ParseURL(url)
	require.NoError(t, err)
	defer c.Close()
	_, err = s.CompareAndSwap(t.Context(), "k", 0, []byte("v"), time.Time{})
	require.NoError(t, err)

	require.NoError(t, c.Do(t.Context(), "CLIENT", "PAUSE", "2000", "ALL").Err())

	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = s.Get(ctx, "k")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), 1500*time.Millisecond, "the call waited for the pause to end")
}

// TestClusterFailover kills a master of a Redis Cluster with one replica
// per master, once its writes have reached its replica: the store fails
// while the cluster fails over, then works again with nothing lost —
// every entry keeps its value and version, and every seen id stays seen.
func TestClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("a failover takes a few seconds")
	}
	c, err := testservers.StartRedisCluster(3, 1)
	if err != nil {
		testservers.Unavailable(t, "no Redis Cluster: %v", err)
	}
	defer c.Close()
	ctx := t.Context()
	s := open(t, c.URL(), freshPrefix())
	const n = 60
	exp := time.Now().Add(time.Hour)
	for i := range n {
		k := "k" + strconv.Itoa(i)
		_, err := s.CompareAndSwap(ctx, k, 0, []byte("v1"), exp)
		require.NoError(t, err)
		_, err = s.CompareAndSwap(ctx, k, 1, []byte("v2"), exp)
		require.NoError(t, err)
		first, err := s.MarkSeen(ctx, k, exp)
		require.NoError(t, err)
		require.True(t, first)
	}
	require.NoError(t, c.WaitReplicated())

	var victim *testservers.Redis
	for _, node := range c.Nodes {
		if role, err := node.Role(); err == nil && role == "master" {
			victim = node
			break
		}
	}
	require.NotNil(t, victim, "no master")
	require.NoError(t, victim.Kill())

	// Some keys live on the dead master: wait until they are served again.
	var lastErr error
	ok := assertEventually(20*time.Second, func() bool {
		for i := range n {
			if _, lastErr = s.Get(ctx, "k"+strconv.Itoa(i)); lastErr != nil {
				return false
			}
		}
		return true
	})
	require.True(t, ok, "the cluster did not fail over: %v", lastErr)

	for i := range n {
		k := "k" + strconv.Itoa(i)
		e, err := s.Get(ctx, k)
		require.NoError(t, err)
		require.Equal(t, uint64(2), e.Version, k)
		require.Equal(t, "v2", string(e.Value), k)
		first, err := s.MarkSeen(ctx, k, exp)
		require.NoError(t, err)
		require.False(t, first, "seen id %s forgotten in the failover", k)
		_, err = s.CompareAndSwap(ctx, k, 2, []byte("v3"), exp)
		require.NoError(t, err)
	}
}

// assertEventually polls cond every 100 ms until it holds or timeout
// passes, and reports whether it held.
func assertEventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true
}

// TestRestart kills a standalone Redis running with appendonly yes and
// appendfsync always, and starts it again: while it is down the store
// returns errors naming its address, and once it is back the same store
// works with every acknowledged write intact.
func TestRestart(t *testing.T) {
	r, err := testservers.StartRedis("--appendonly", "yes", "--appendfsync", "always")
	if err != nil {
		testservers.Unavailable(t, "no Redis: %v", err)
	}
	defer r.Close()
	ctx := t.Context()
	s := open(t, r.URL()+"?max_retries=-1", freshPrefix())
	exp := time.Now().Add(time.Hour)
	const n = 50
	for i := range n {
		k := "k" + strconv.Itoa(i)
		_, err := s.CompareAndSwap(ctx, k, 0, []byte(k), exp)
		require.NoError(t, err)
		_, err = s.MarkSeen(ctx, k, exp)
		require.NoError(t, err)
	}

	require.NoError(t, r.Kill())
	_, err = s.Get(ctx, "k0")
	require.Error(t, err)
	require.NotErrorIs(t, err, store.ErrNotFound)
	require.ErrorContains(t, err, r.Addr)
	_, err = s.MarkSeen(ctx, "new", exp)
	require.Error(t, err)

	require.NoError(t, r.Start())
	for i := range n {
		k := "k" + strconv.Itoa(i)
		e, err := s.Get(ctx, k)
		require.NoError(t, err)
		require.Equal(t, uint64(1), e.Version)
		require.Equal(t, k, string(e.Value))
		first, err := s.MarkSeen(ctx, k, exp)
		require.NoError(t, err)
		require.False(t, first, "seen id %s lost in the restart", k)
	}
}
