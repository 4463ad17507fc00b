package redis_test

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/dynkey/dynkey/internal/testservers"
	"github.com/dynkey/dynkey/store/redis"
	"github.com/dynkey/dynkey/store/storetest"
)

// counter is a go-redis hook counting the commands sent: one round trip
// each (a pipeline counts once).
type counter struct{ n atomic.Int64 }

func (c *counter) DialHook(next goredis.DialHook) goredis.DialHook { return next }
func (c *counter) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}
func (c *counter) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmds)
	}
}

func benchStore(b *testing.B, url string) {
	c, _, err := redis.ParseURL(url)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	var n counter
	c.AddHook(&n)
	s := redis.New(c, redis.Options{Prefix: freshPrefix()})
	storetest.Bench(b, s, n.n.Load)
}

// BenchmarkStore measures each operation's latency and round trips on a
// standalone Redis and on a 3-master Redis Cluster, on loopback.
func BenchmarkStore(b *testing.B) {
	b.Run("standalone", func(b *testing.B) { benchStore(b, testservers.RedisURL(b)) })
	b.Run("cluster", func(b *testing.B) { benchStore(b, testservers.RedisClusterURL(b)) })
}

// BenchmarkSizing measures the memory Redis uses per session (a session
// record of storetest.SessionValue's size) and per message id, as the
// growth of INFO's used_memory divided by the entries written. Run it with
// a fixed count, e.g. -benchtime=20000x.
func BenchmarkSizing(b *testing.B) {
	r, err := testservers.StartRedis()
	if err != nil {
		testservers.Unavailable(b, "no Redis: %v", err)
	}
	defer r.Close()
	c := goredis.NewClient(&goredis.Options{Addr: r.Addr})
	defer c.Close()
	s := redis.New(c, redis.Options{})
	ctx := b.Context()
	value := storetest.SessionValue()
	exp := time.Now().Add(time.Hour)
	for _, tc := range []struct {
		name  string
		write func(i int) error
	}{
		{"session", func(i int) error {
			_, err := s.CompareAndSwap(ctx, storetest.SessionKey(i), 0, value, exp)
			return err
		}},
		{"msgid", func(i int) error {
			_, err := s.MarkSeen(ctx, storetest.MessageID(i), exp)
			return err
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			if err := c.FlushAll(ctx).Err(); err != nil {
				b.Fatal(err)
			}
			before := usedMemory(b, r.Addr)
			for i := 0; b.Loop(); i++ {
				if err := tc.write(i); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(usedMemory(b, r.Addr)-before)/float64(b.N), "bytes/entry")
		})
	}
}

// usedMemory returns INFO memory's used_memory.
func usedMemory(b *testing.B, addr string) int64 {
	c := goredis.NewClient(&goredis.Options{Addr: addr})
	defer c.Close()
	info, err := c.InfoMap(b.Context(), "memory").Result()
	if err != nil {
		b.Fatal(err)
	}
	v, err := strconv.ParseInt(strings.TrimSpace(info["Memory"]["used_memory"]), 10, 64)
	if err != nil {
		b.Fatal(err)
	}
	return v
}
