package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/internal/testservers"
	"github.com/dynkey/dynkey/store"
	"github.com/dynkey/dynkey/store/postgres"
	"github.com/dynkey/dynkey/store/storetest"
)

// freshSchema returns a schema name no other test uses, so that every
// subtest starts from empty tables on a shared server.
func freshSchema() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "test_" + hex.EncodeToString(b)
}

// open opens the store at url in schema, closed when t ends; the schema
// is dropped then, for servers the tests do not own ($DYNKEY_POSTGRES_URL).
func open(t *testing.T, url, schema string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(t.Context(), withParam(url, "schema="+schema))
	require.NoError(t, err)
	t.Cleanup(func() {
		_, err := postgres.Pool(s).Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
		if err != nil {
			t.Logf("dropping the test's schema: %v", err)
		}
		require.NoError(t, s.Close())
	})
	return s
}

// withParam adds a query parameter to url.
func withParam(url, param string) string {
	if strings.Contains(url, "?") {
		return url + "&" + param
	}
	return url + "?" + param
}

// TestConformance runs the suite against a PostgreSQL server, and checks
// the expiry mechanism.
func TestConformance(t *testing.T) {
	url := testservers.PostgresURL(t)
	t.Run("Run", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store { return open(t, url, freshSchema()) })
	})
	t.Run("RunShared", func(t *testing.T) {
		storetest.RunShared(t, func(t *testing.T) (store.Store, store.Store) {
			schema := freshSchema()
			return open(t, url, schema), open(t, url, schema)
		})
	})
	// As behind PgBouncer in transaction mode: no prepared statements.
	t.Run("RunSimpleProtocol", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store {
			return open(t, withParam(url, "default_query_exec_mode=simple_protocol"), freshSchema())
		})
	})
	t.Run("Sweep", func(t *testing.T) { testSweep(t, url) })
	t.Run("IndexedStatements", func(t *testing.T) { testIndexedStatements(t, url) })
	t.Run("ConcurrentOpen", func(t *testing.T) { testConcurrentOpen(t, url) })
	t.Run("CancelWhileBlocked", func(t *testing.T) { testCancelWhileBlocked(t, url) })
}

// testCancelWhileBlocked checks that cancelling the context of a call that
// waits for a row lock ends the call with an error wrapping
// context.Canceled, without waiting for the lock, and that the server
// cancelled the statement: it is not applied once the lock is released
// (pgx's default, closing the connection only, fails this).
func testCancelWhileBlocked(t *testing.T, url string) {
	schema := freshSchema()
	s := open(t, url, schema)
	_, err := s.CompareAndSwap(t.Context(), "k", 0, []byte("v"), time.Time{})
	require.NoError(t, err)

	tx, err := postgres.Pool(s).Begin(t.Context())
	require.NoError(t, err)
	defer tx.Rollback(context.Background())
	var n int
	require.NoError(t, tx.QueryRow(t.Context(), `SELECT count(*) FROM (SELECT 1 FROM `+pgx.Identifier{schema, "dynkey_kv"}.Sanitize()+` FOR UPDATE) AS locked`).Scan(&n))
	require.Equal(t, 1, n)

	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	_, err = s.CompareAndSwap(ctx, "k", 1, []byte("w"), time.Time{})
	require.ErrorIs(t, err, context.Canceled)
	require.Less(t, time.Since(start), 5*time.Second)
	require.NoError(t, tx.Rollback(t.Context()))

	e, err := s.Get(t.Context(), "k")
	require.NoError(t, err)
	require.Equal(t, uint64(1), e.Version)
	require.Equal(t, "v", string(e.Value))
}

// testSweep checks that Sweep deletes expired rows, and only those.
func testSweep(t *testing.T, url string) {
	ctx := t.Context()
	schema := freshSchema()
	s := open(t, url, schema)
	past := time.Now().Add(-time.Second)
	for i := range 1500 {
		_, err := s.MarkSeen(ctx, "id"+string(rune('a'+i%26))+strings.Repeat("x", i/26), past)
		require.NoError(t, err)
	}
	_, err := s.CompareAndSwap(ctx, "expired", 0, []byte("v"), past)
	require.NoError(t, err)
	_, err = s.CompareAndSwap(ctx, "live", 0, []byte("v"), time.Now().Add(time.Hour))
	require.NoError(t, err)
	_, err = s.CompareAndSwap(ctx, "forever", 0, []byte("v"), time.Time{})
	require.NoError(t, err)
	first, err := s.MarkSeen(ctx, "live-id", time.Now().Add(time.Hour))
	require.NoError(t, err)
	require.True(t, first)

	n, err := s.Sweep(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(1501), n, "rows swept (more than one batch)")
	var kv, seen int
	pool := postgres.Pool(s)
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{schema, "dynkey_kv"}.Sanitize()).Scan(&kv))
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{schema, "dynkey_seen"}.Sanitize()).Scan(&seen))
	require.Equal(t, 2, kv)
	require.Equal(t, 1, seen)
	first, err = s.MarkSeen(ctx, "live-id", time.Now().Add(time.Hour))
	require.NoError(t, err)
	require.False(t, first)
}

// testIndexedStatements checks that no statement of the store needs a full
// scan: with sequential scans disabled, PostgreSQL's plan for each uses an
// index (the primary key, or the partial index on expires for the sweep).
func testIndexedStatements(t *testing.T, url string) {
	ctx := t.Context()
	s := open(t, url, freshSchema())
	conn, err := postgres.Pool(s).Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	_, err = conn.Exec(ctx, `SET enable_seqscan = off`)
	require.NoError(t, err)
	defer conn.Exec(ctx, `RESET enable_seqscan`)
	args := map[string][]any{
		"get":       {[]byte("k"), int64(1)},
		"create":    {[]byte("k"), []byte("v"), int64(0), int64(1)},
		"update":    {[]byte("v"), int64(0), []byte("k"), int64(1), int64(1)},
		"delete":    {[]byte("k")},
		"markSeen":  {[]byte("id"), int64(0), int64(1)},
		"sweepKV":   {int64(1)},
		"sweepSeen": {int64(1)},
	}
	for name, q := range postgres.Queries(s) {
		t.Run(name, func(t *testing.T) {
			rows, err := conn.Query(ctx, "EXPLAIN "+q, args[name]...)
			require.NoError(t, err)
			lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
			require.NoError(t, err)
			plan := strings.Join(lines, "\n")
			require.NotContains(t, plan, "Seq Scan", plan)
			if name != "create" && name != "markSeen" { // inserts probe the primary key
				require.Contains(t, plan, "Index", plan)
			}
			if strings.HasPrefix(name, "sweep") {
				require.Contains(t, plan, "_expires", "the sweep must use the expires index:\n"+plan)
			}
		})
	}
}

// testConcurrentOpen opens several stores on one new schema at once: the
// tables are created once, without errors.
func testConcurrentOpen(t *testing.T, url string) {
	schema := freshSchema()
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			s, err := postgres.Open(t.Context(), withParam(url, "schema="+schema))
			if err == nil {
				err = s.Close()
			}
			errs <- err
		}()
	}
	for range 4 {
		require.NoError(t, <-errs)
	}
}

// TestErrorsNameAddress checks that a store error names the server's
// address and never the password.
func TestErrorsNameAddress(t *testing.T) {
	p, err := testservers.StartPostgres(testservers.PostgresOptions{})
	if err != nil {
		testservers.Unavailable(t, "no PostgreSQL: %v", err)
	}
	defer p.Close()
	s, err := postgres.Open(t.Context(), "postgres://postgres:s3cret-pw@"+p.Addr+"/postgres?sslmode=disable")
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, p.Stop())
	_, err = s.Get(t.Context(), "k")
	require.Error(t, err)
	require.NotErrorIs(t, err, store.ErrNotFound)
	require.Contains(t, err.Error(), p.Addr)
	require.NotContains(t, err.Error(), "s3cret-pw")

	_, err = postgres.Open(t.Context(), "postgres://postgres:s3cret-pw@"+p.Addr+"/postgres?sslmode=disable&connect_timeout=2")
	require.Error(t, err)
	require.Contains(t, err.Error(), p.Addr)
	require.NotContains(t, err.Error(), "s3cret-pw")
}

func TestParseURL(t *testing.T) {
	tests := []struct {
		name     string
		url      string
		host     string
		port     uint16
		database string
		schema   string
		err      string
	}{
		{name: "postgres", url: "postgres://u:pw@db.internal:5433/app?sslmode=disable", host: "db.internal", port: 5433, database: "app"},
		{name: "postgresql", url: "postgresql://u@db/app", host: "db", port: 5432, database: "app"},
		{name: "schema", url: "postgres://u@db/app?schema=dynkey&pool_max_conns=4", host: "db", port: 5432, database: "app", schema: "dynkey"},
		{name: "unknown scheme", url: "mysql://u@db/app", err: "unknown scheme"},
		{name: "no host", url: "postgres:///app", err: "host"},
		{name: "opaque", url: "postgres:app", err: "host"},
		{name: "bad port", url: "postgres://u:topsecret@db:x/app", err: "malformed"},
		{name: "bad option", url: "postgres://u:topsecret@db/app?pool_max_conns=many", err: "pool_max_conns"},
		{name: "bad sslmode", url: "postgres://u:topsecret@db/app?sslmode=sometimes", err: "sslmode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, schema, err := postgres.ParseURL(tt.url)
			if tt.err != "" {
				require.ErrorContains(t, err, tt.err)
				require.NotContains(t, err.Error(), "topsecret")
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.host, cfg.ConnConfig.Host)
			require.Equal(t, tt.port, cfg.ConnConfig.Port)
			require.Equal(t, tt.database, cfg.ConnConfig.Database)
			require.Equal(t, tt.schema, schema)
		})
	}
}

// TestRestart kills a PostgreSQL server with its durable defaults
// (SIGKILL to the postmaster) and starts it again: while it is down the
// store returns errors naming its address, and once it is back the same
// store works with every acknowledged write intact.
func TestRestart(t *testing.T) {
	p, err := testservers.StartPostgres(testservers.PostgresOptions{Durable: true})
	if err != nil {
		testservers.Unavailable(t, "no PostgreSQL: %v", err)
	}
	defer p.Close()
	ctx := t.Context()
	s, err := postgres.Open(ctx, p.URL())
	require.NoError(t, err)
	defer s.Close()
	exp := time.Now().Add(time.Hour)
	const n = 50
	for i := range n {
		k := "k" + strconv.Itoa(i)
		_, err := s.CompareAndSwap(ctx, k, 0, []byte(k), exp)
		require.NoError(t, err)
		_, err = s.MarkSeen(ctx, k, exp)
		require.NoError(t, err)
	}

	require.NoError(t, p.Kill())
	// SIGKILL stops the postmaster; a pooled connection's backend may
	// still answer until it notices its parent is gone (it exits then).
	downBy := time.Now().Add(10 * time.Second)
	for _, err = s.Get(ctx, "k0"); err == nil && time.Now().Before(downBy); _, err = s.Get(ctx, "k0") {
		time.Sleep(50 * time.Millisecond)
	}
	require.Error(t, err)
	require.NotErrorIs(t, err, store.ErrNotFound)
	require.ErrorContains(t, err, p.Addr)

	// The killed postmaster's backends exit once they notice; until then
	// the new server refuses to start on the same data directory.
	deadline := time.Now().Add(20 * time.Second)
	for err = p.Start(); err != nil && time.Now().Before(deadline); err = p.Start() {
		time.Sleep(200 * time.Millisecond)
	}
	require.NoError(t, err)
	for i := range n {
		k := "k" + strconv.Itoa(i)
		var e store.Entry
		// The pool drops its dead connections as it meets them.
		for attempt := 0; attempt < 20; attempt++ {
			if e, err = s.Get(ctx, k); err == nil {
				break
			}
		}
		require.NoError(t, err)
		require.Equal(t, uint64(1), e.Version)
		require.Equal(t, k, string(e.Value))
		first, err := s.MarkSeen(ctx, k, exp)
		require.NoError(t, err)
		require.False(t, first, "seen id %s lost in the restart", k)
	}
}
