// Package postgres is a [store.Store] on PostgreSQL, through pgx v5's
// connection pool ([pgxpool.Pool]).
//
// # Tables
//
// The store keeps two tables, created on Open if absent (in
// [Options.Schema], or the connection's default schema):
//
//	dynkey_kv   (key bytea PRIMARY KEY, value bytea, version bigint, expires bigint)
//	dynkey_seen (id bytea PRIMARY KEY, expires bigint)
//
// Expiries are Unix nanoseconds, 0 meaning never; each table has a partial
// index on expires. Every operation is one statement on one row, found by
// its primary key:
//
//   - Get is a SELECT that ignores an expired row;
//   - CompareAndSwap is one conditional INSERT … ON CONFLICT DO UPDATE
//     (version 0: create, or take over an expired row) or one conditional
//     UPDATE (version n: the row must be live and at version n);
//   - MarkSeen is one INSERT … ON CONFLICT DO UPDATE that takes over an
//     expired row only, and reports whether it wrote.
//
// Row locks make each of them atomic across every connection and every
// server instance: of concurrent writers, exactly one changes the row.
//
// # Expiry
//
// Expired rows are invisible at once (every statement compares expires with
// the caller's clock) and deleted by a background sweep every
// [Options.SweepInterval], in batches found through the expires index —
// never a full scan, and never on a request's path.
//
// # Cancellation
//
// A call whose context is already done fails at once and sends nothing. A
// call whose context ends while the server runs its statement returns an
// error wrapping the context's error; a store from [Open] also asks the
// server to cancel the statement (pgx's CancelRequestContextWatcherHandler),
// so one still waiting for a row lock is not applied — but as with any
// request to a server, a statement may have committed just before the
// cancellation arrived: the outcome of such a call is unknown.
//
// # Durability
//
// A write is acknowledged once PostgreSQL committed it: with the default
// synchronous_commit=on it is on disk (and on a synchronous standby if one is
// configured). docs/DEPLOYMENT.md says what dynkey loses otherwise.
package postgres

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dynkey/dynkey/store"
)

// DefaultSweepInterval is how often expired rows are deleted when
// [Options.SweepInterval] is zero.
const DefaultSweepInterval = time.Minute

// sweepBatch is the most rows one sweep statement deletes.
const sweepBatch = 1000

// Options configure a [Store]. The zero value is usable.
type Options struct {
	// Schema is the schema of the store's tables, created if absent.
	// Default "": the connection's default schema (search_path, usually
	// public).
	Schema string

	// SweepInterval is how often expired rows are deleted. Default
	// [DefaultSweepInterval]; negative: never (call [Store.Sweep] yourself).
	SweepInterval time.Duration

	// ClosePool makes [Store.Close] close the pool. Default false: the
	// caller who made the pool closes it. [Open] sets it.
	ClosePool bool
}

// Store is a [store.Store] on PostgreSQL. It is safe for concurrent use.
type Store struct {
	pool  *pgxpool.Pool
	addr  string // for error messages: host:port/database, no credentials
	close bool
	q     queries
	// channel is the NOTIFY channel of this schema; watch the keys
	// watched through this handle (watch.go).
	channel string
	watch   watchers

	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

var _ store.Store = (*Store)(nil)

// queries are the store's statements, with its table names.
type queries struct {
	schema, get, create, update, del, markSeen, sweepKV, sweepSeen, list string
	// createNotify and updateNotify are create and update that also
	// pg_notify($n, $n+1) when they write, in the same statement.
	createNotify, updateNotify string
}

func newQueries(schema string) queries {
	kv, seen := pgx.Identifier{"dynkey_kv"}, pgx.Identifier{"dynkey_seen"}
	kvIndex, seenIndex := "dynkey_kv_expires", "dynkey_seen_expires"
	create := ""
	if schema != "" {
		kv = pgx.Identifier{schema, "dynkey_kv"}
		seen = pgx.Identifier{schema, "dynkey_seen"}
		create = "CREATE SCHEMA IF NOT EXISTS " + pgx.Identifier{schema}.Sanitize() + ";\n"
	}
	k, s := kv.Sanitize(), seen.Sanitize()
	return queries{
		schema: create + `
CREATE TABLE IF NOT EXISTS ` + k + ` (
	key     bytea PRIMARY KEY,
	value   bytea NOT NULL,
	version bigint NOT NULL,
	expires bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS ` + kvIndex + ` ON ` + k + ` (expires) WHERE expires <> 0;
CREATE TABLE IF NOT EXISTS ` + s + ` (
	id      bytea PRIMARY KEY,
	expires bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS ` + seenIndex + ` ON ` + s + ` (expires) WHERE expires <> 0;`,
		get: `SELECT value, version, expires FROM ` + k + ` WHERE key = $1 AND (expires = 0 OR expires > $2)`,
		create: `INSERT INTO ` + k + ` AS t (key, value, version, expires) VALUES ($1, $2, 1, $3)
ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = 1, expires = excluded.expires
WHERE t.expires <> 0 AND t.expires <= $4`,
		update: `UPDATE ` + k + ` SET value = $1, version = version + 1, expires = $2
WHERE key = $3 AND version = $4 AND (expires = 0 OR expires > $5)`,
		createNotify: `WITH t AS (INSERT INTO ` + k + ` AS t (key, value, version, expires) VALUES ($1, $2, 1, $3)
ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = 1, expires = excluded.expires
WHERE t.expires <> 0 AND t.expires <= $4 RETURNING 1) SELECT pg_notify($5, $6)::text FROM t`,
		updateNotify: `WITH t AS (UPDATE ` + k + ` SET value = $1, version = version + 1, expires = $2
WHERE key = $3 AND version = $4 AND (expires = 0 OR expires > $5) RETURNING 1) SELECT pg_notify($6, $7)::text FROM t`,
		del: `DELETE FROM ` + k + ` WHERE key = $1`,
		list: `SELECT key FROM ` + k + ` WHERE key >= $1 AND key > $2 AND ($3::bytea IS NULL OR key < $3)
AND (expires = 0 OR expires > $4) ORDER BY key LIMIT $5`,
		markSeen: `INSERT INTO ` + s + ` AS t (id, expires) VALUES ($1, $2)
ON CONFLICT (id) DO UPDATE SET expires = excluded.expires
WHERE t.expires <> 0 AND t.expires <= $3`,
		// The outer condition is checked again on a row that a concurrent
		// swap or MarkSeen has just made live: that row is kept.
		sweepKV: `DELETE FROM ` + k + ` WHERE key IN (
	SELECT key FROM ` + k + ` WHERE expires <> 0 AND expires <= $1 LIMIT ` + strconv.Itoa(sweepBatch) + `
) AND expires <> 0 AND expires <= $1`,
		sweepSeen: `DELETE FROM ` + s + ` WHERE id IN (
	SELECT id FROM ` + s + ` WHERE expires <> 0 AND expires <= $1 LIMIT ` + strconv.Itoa(sweepBatch) + `
) AND expires <> 0 AND expires <= $1`,
	}
}

// schemaLock is the advisory lock taken while creating the tables, so that
// instances starting together do not race on CREATE TABLE IF NOT EXISTS.
const schemaLock = 0x64796e6b6579 // "dynkey"

// New returns a store on pool, creating its tables if absent, and starts
// its background sweep.
func New(ctx context.Context, pool *pgxpool.Pool, o Options) (*Store, error) {
	s := &Store{pool: pool, addr: addrOf(pool.Config()), close: o.ClosePool,
		q: newQueries(o.Schema), channel: notifyChannel(o.Schema), stop: make(chan struct{})}
	if err := s.createSchema(ctx); err != nil {
		return nil, s.fail("create tables", err)
	}
	interval := o.SweepInterval
	if interval == 0 {
		interval = DefaultSweepInterval
	}
	if interval > 0 {
		s.wg.Go(func() { s.sweepEvery(interval) })
	}
	return s, nil
}

func (s *Store) createSchema(ctx context.Context) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(schemaLock)); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, s.q.schema); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// schemes are the URL schemes [Open] accepts.
var schemes = []string{"postgres", "postgresql"}

// Open connects to the PostgreSQL database named by rawURL, creates the
// store's tables if absent, and returns a store that closes its pool on
// Close:
//
//	postgres://[user[:password]@]host[:port][/database][?options]
//	postgresql://…
//
// Options are pgx's and libpq's (sslmode, pool_max_conns, …; see
// [pgxpool.ParseConfig]) plus schema, which sets [Options.Schema].
func Open(ctx context.Context, rawURL string) (*Store, error) {
	cfg, schema, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("dynkey/store/postgres: connect to %s: %w", addrOf(cfg), err)
	}
	s, err := New(ctx, pool, Options{Schema: schema, ClosePool: true})
	if err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// ParseURL parses a URL of one of the forms [Open] accepts and returns the
// pool's configuration and the schema it names (empty if none). Its errors
// never contain the URL's password.
func ParseURL(rawURL string) (*pgxpool.Config, string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the URL, password included
		}
		return nil, "", fmt.Errorf("dynkey/store/postgres: malformed URL: %v", err)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("dynkey/store/postgres: URL %s: %s", u.Redacted(), fmt.Sprintf(format, args...))
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return nil, "", bad("unknown scheme %q, want one of %s", u.Scheme, strings.Join(schemes, ", "))
	}
	if u.Opaque != "" || u.Host == "" {
		return nil, "", bad("want %s://host[:port]/database", u.Scheme)
	}
	q := u.Query()
	schema := q.Get("schema")
	q.Del("schema")
	u.RawQuery = q.Encode()
	cfg, err := pgxpool.ParseConfig(u.String())
	if err != nil {
		// pgx's parse errors redact the password themselves; make sure.
		msg := err.Error()
		if p, ok := u.User.Password(); ok && p != "" {
			msg = strings.ReplaceAll(msg, p, "xxxxx")
		}
		return nil, "", bad("%s", msg)
	}
	// On a cancelled or expired context, ask the server to cancel the
	// statement (a statement waiting for a row lock is then not applied),
	// and close the connection if the server has not answered a second
	// later. pgx's default only closes the connection, and the server may
	// still run the statement to its end.
	cfg.ConnConfig.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: time.Second}
	}
	return cfg, schema, nil
}

// addrOf names the server of cfg, for error messages.
func addrOf(cfg *pgxpool.Config) string {
	c := cfg.ConnConfig
	return net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port))) + "/" + c.Database
}

func (s *Store) fail(op string, err error) error {
	return fmt.Errorf("dynkey/store/postgres: %s on %s: %w", op, s.addr, err)
}

// failCtx is fail for an operation under ctx: when ctx has ended, the error
// also wraps ctx.Err() (the server's "canceling statement" error does not).
func (s *Store) failCtx(ctx context.Context, op string, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		err = fmt.Errorf("%w: %w", cerr, err)
	}
	return s.fail(op, err)
}

// Get implements [store.Store]: one SELECT by primary key.
func (s *Store) Get(ctx context.Context, key string) (store.Entry, error) {
	if err := ctx.Err(); err != nil {
		return store.Entry{}, s.fail("get", err)
	}
	var (
		e                store.Entry
		version, expires int64
	)
	err := s.pool.QueryRow(ctx, s.q.get, []byte(key), nanos(time.Now())).Scan(&e.Value, &version, &expires)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Entry{}, store.ErrNotFound
	}
	if err != nil {
		return store.Entry{}, s.failCtx(ctx, "get", err)
	}
	if e.Value == nil {
		e.Value = []byte{}
	}
	e.Version = uint64(version)
	if expires != 0 {
		e.Expires = time.Unix(0, expires)
	}
	return e, nil
}

// CompareAndSwap implements [store.Store]: one conditional INSERT or UPDATE.
func (s *Store) CompareAndSwap(ctx context.Context, key string, oldVersion uint64, value []byte, expires time.Time) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, s.fail("compare and swap", err)
	}
	if oldVersion >= math.MaxInt64 {
		return 0, store.ErrConflict // versions are bigint; no entry reaches that one
	}
	if value == nil {
		value = []byte{} // bound as NULL otherwise
	}
	now := nanos(time.Now())
	var err error
	var n int64
	if s.watch.has(key) {
		n, err = s.casNotify(ctx, key, oldVersion, value, expires, now)
	} else if oldVersion == 0 {
		tag, e := s.pool.Exec(ctx, s.q.create, []byte(key), value, nanos(expires), now)
		n, err = tag.RowsAffected(), e
	} else {
		tag, e := s.pool.Exec(ctx, s.q.update, value, nanos(expires), []byte(key), int64(oldVersion), now)
		n, err = tag.RowsAffected(), e
	}
	switch {
	case err != nil:
		return 0, s.failCtx(ctx, "compare and swap", err)
	case n == 0:
		return 0, store.ErrConflict
	case n != 1:
		return 0, s.fail("compare and swap", fmt.Errorf("%d rows changed, want 1", n))
	}
	return oldVersion + 1, nil
}

// casNotify is CompareAndSwap's statement for a watched key: the write and
// its pg_notify in one statement, so watchers hear of it exactly when it
// commits. It returns the rows written (0 or 1).
func (s *Store) casNotify(ctx context.Context, key string, oldVersion uint64, value []byte, expires time.Time, now int64) (int64, error) {
	payload := hex.EncodeToString([]byte(key))
	var rows pgx.Rows
	var err error
	if oldVersion == 0 {
		rows, err = s.pool.Query(ctx, s.q.createNotify, []byte(key), value, nanos(expires), now, s.channel, payload)
	} else {
		rows, err = s.pool.Query(ctx, s.q.updateNotify, value, nanos(expires), []byte(key), int64(oldVersion), now, s.channel, payload)
	}
	if err != nil {
		return 0, err
	}
	var n int64
	for rows.Next() {
		n++
	}
	rows.Close()
	return n, rows.Err()
}

// Delete implements [store.Store]: one DELETE by primary key.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return s.fail("delete", err)
	}
	if _, err := s.pool.Exec(ctx, s.q.del, []byte(key)); err != nil {
		return s.failCtx(ctx, "delete", err)
	}
	return nil
}

// MarkSeen implements [store.Store]: one INSERT … ON CONFLICT that takes over
// an expired row only.
func (s *Store) MarkSeen(ctx context.Context, id string, expires time.Time) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, s.fail("mark seen", err)
	}
	tag, err := s.pool.Exec(ctx, s.q.markSeen, []byte(id), nanos(expires), nanos(time.Now()))
	if err != nil {
		return false, s.failCtx(ctx, "mark seen", err)
	}
	return tag.RowsAffected() == 1, nil
}

// Sweep deletes the rows that have expired, in batches found through the
// expires indexes, and returns how many it deleted. The store calls it every
// [Options.SweepInterval]; it is safe to call at any time.
func (s *Store) Sweep(ctx context.Context) (int64, error) {
	var total int64
	now := nanos(time.Now())
	for _, q := range []string{s.q.sweepKV, s.q.sweepSeen} {
		for {
			tag, err := s.pool.Exec(ctx, q, now)
			if err != nil {
				return total, s.fail("sweep", err)
			}
			total += tag.RowsAffected()
			if tag.RowsAffected() < sweepBatch {
				break
			}
		}
	}
	return total, nil
}

func (s *Store) sweepEvery(interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), interval)
		// Best effort: expired rows are invisible anyway, and a failed
		// sweep is retried at the next tick.
		_, _ = s.Sweep(ctx)
		cancel()
	}
}

// Close implements [store.Store]. It stops the background sweep and closes
// the pool if the store owns it ([Options.ClosePool], or a store from
// [Open]). Calling it again does nothing.
func (s *Store) Close() error {
	s.once.Do(func() {
		close(s.stop)
		s.wg.Wait()
		if s.close {
			s.pool.Close()
		}
	})
	return nil
}

// nanos returns t as Unix nanoseconds for the expires columns: 0 for the
// zero time (never), and otherwise a positive value clamped to int64. Times
// at or before the Unix epoch become 1, in the past like them.
func nanos(t time.Time) int64 {
	switch {
	case t.IsZero():
		return 0
	case t.Before(time.Unix(0, 1)):
		return 1
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	}
	return t.UnixNano()
}
