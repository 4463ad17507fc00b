package postgres_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dynkey/dynkey/internal/testservers"
	"github.com/dynkey/dynkey/store/postgres"
	"github.com/dynkey/dynkey/store/storetest"
)

// counter is a pgx tracer counting round trips: each statement sent, and
// each statement prepared (pgx prepares a statement on its first use on a
// connection, then reuses it).
type counter struct{ n atomic.Int64 }

func (c *counter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (c *counter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (c *counter) TracePrepareStart(ctx context.Context, _ *pgx.Conn, _ pgx.TracePrepareStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (c *counter) TracePrepareEnd(context.Context, *pgx.Conn, pgx.TracePrepareEndData) {}

func openCounted(b *testing.B, url string, n *counter) *postgres.Store {
	cfg, _, err := postgres.ParseURL(url)
	if err != nil {
		b.Fatal(err)
	}
	cfg.ConnConfig.Tracer = n
	pool, err := pgxpool.NewWithConfig(b.Context(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	s, err := postgres.New(b.Context(), pool, postgres.Options{Schema: freshSchema(), ClosePool: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkStore measures each operation's latency and round trips on
// PostgreSQL on loopback: "fast" with fsync and synchronous_commit off (as
// the tests run it), "durable" with PostgreSQL's defaults (a commit waits
// for its WAL flush).
func BenchmarkStore(b *testing.B) {
	for _, tc := range []struct {
		name string
		opts testservers.PostgresOptions
	}{
		{"fast", testservers.PostgresOptions{}},
		{"durable", testservers.PostgresOptions{Durable: true}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			p, err := testservers.StartPostgres(tc.opts)
			if err != nil {
				testservers.Unavailable(b, "no PostgreSQL: %v", err)
			}
			defer p.Close()
			var n counter
			storetest.Bench(b, openCounted(b, p.URL(), &n), n.n.Load)
		})
	}
}

// BenchmarkSizing measures the disk PostgreSQL uses per session (a record
// of storetest.SessionValue's size) and per message id: the growth of
// pg_total_relation_size (table, indexes and TOAST) divided by the entries
// written. Run it with a fixed count, e.g. -benchtime=20000x.
func BenchmarkSizing(b *testing.B) {
	url := testservers.PostgresURL(b)
	value := storetest.SessionValue()
	exp := time.Now().Add(time.Hour)
	for _, tc := range []struct {
		name, table string
		write       func(s *postgres.Store, i int) error
	}{
		{"session", "dynkey_kv", func(s *postgres.Store, i int) error {
			_, err := s.CompareAndSwap(b.Context(), storetest.SessionKey(i), 0, value, exp)
			return err
		}},
		{"msgid", "dynkey_seen", func(s *postgres.Store, i int) error {
			_, err := s.MarkSeen(b.Context(), storetest.MessageID(i), exp)
			return err
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			schema := freshSchema()
			s, err := postgres.Open(b.Context(), withParam(url, "schema="+schema))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			size := func() int64 {
				var n int64
				err := postgres.Pool(s).QueryRow(b.Context(), `SELECT pg_total_relation_size($1::regclass)`,
					pgx.Identifier{schema, tc.table}.Sanitize()).Scan(&n)
				if err != nil {
					b.Fatal(err)
				}
				return n
			}
			before := size()
			for i := 0; b.Loop(); i++ {
				if err := tc.write(s, i); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(size()-before)/float64(b.N), "bytes/entry")
		})
	}
}
