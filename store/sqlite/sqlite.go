// Package sqlite is a [store.Store] in an SQLite database file, using the
// pure-Go driver modernc.org/sqlite (no cgo).
//
// The state survives restarts and can be shared by several server processes
// on one machine: every CompareAndSwap and MarkSeen is a single conditional
// SQL statement, so it is atomic even across processes opening the same
// file. The database runs in WAL mode, which needs a local file system (not
// NFS or other network shares).
//
// Within one process, open the file once and share the [*Store]: each Store
// uses a single connection, so its operations run one at a time.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/dynkey/dynkey/store"
)

// sweepEvery is the number of writes between two deletions of expired rows.
const sweepEvery = 1000

// Expiries are stored as Unix nanoseconds, 0 meaning never.
const schema = `
CREATE TABLE IF NOT EXISTS kv (
	key     TEXT PRIMARY KEY,
	value   BLOB NOT NULL,
	version INTEGER NOT NULL,
	expires INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS kv_expires ON kv(expires) WHERE expires != 0;
CREATE TABLE IF NOT EXISTS seen (
	id      TEXT PRIMARY KEY,
	expires INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS seen_expires ON seen(expires) WHERE expires != 0;
`

// Store is a [store.Store] backed by an SQLite database file.
type Store struct {
	db     *sql.DB
	path   string // absolute, named in every error
	writes atomic.Uint64
}

var (
	_ store.Store    = (*Store)(nil)
	_ store.Scrubber = (*Store)(nil)
	_ store.Lister   = (*Store)(nil)
)

// fail wraps an error of operation op with the database file's path, and
// for a write refused as read-only names the directory too (SQLite must
// create the -wal and -shm files next to the database).
func (s *Store) fail(op string, err error) error {
	if strings.Contains(err.Error(), "readonly") || strings.Contains(err.Error(), "read-only") {
		return fmt.Errorf("dynkey/store/sqlite: %s %s: %w (the file and its directory %s must be writable by this process)", op, s.path, err, filepath.Dir(s.path))
	}
	return fmt.Errorf("dynkey/store/sqlite: %s %s: %w", op, s.path, err)
}

// Open opens the database file at path, creating the file and its tables if
// absent, and deletes the rows that have expired. The caller must Close the
// store.
func Open(path string) (*Store, error) {
	// Pragmas applied to every connection the pool opens:
	//   - busy_timeout: wait up to 5s for another process's write lock
	//     instead of failing with SQLITE_BUSY.
	//   - journal_mode=WAL: readers do not block the writer and vice versa.
	//   - synchronous=FULL: a commit is on disk before it returns. NORMAL
	//     would lose the last commits on power failure, which here means
	//     forgetting replay ids already marked seen or rolling back a key
	//     rotation; the extra fsync per write is worth it.
	//   - secure_delete=ON: deleted and overwritten content is zeroed in
	//     the database pages, so that a destroyed server key leaves no copy
	//     in free space (Scrub then clears the WAL).
	q := url.Values{"_pragma": {"busy_timeout(5000)", "journal_mode(WAL)", "synchronous(FULL)", "secure_delete(ON)"}}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("dynkey/store/sqlite: open %s: %w", path, err)
	}
	// An SQLite URI, so that any byte of the path is escaped and cannot be
	// read as a parameter: file:///dir/file.db or file:///C:/dir/file.db.
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(abs), RawQuery: q.Encode()}
	if !strings.HasPrefix(u.Path, "/") {
		u.Path = "/" + u.Path
	}
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		return nil, fmt.Errorf("dynkey/store/sqlite: open %s: %w", path, err)
	}
	// One connection: writes from this process never contend with each
	// other for SQLite's write lock (no SQLITE_BUSY), and busy_timeout only
	// has to cover other processes.
	db.SetMaxOpenConns(1)
	s := &Store{db: db, path: abs}
	if err := s.init(); err != nil {
		db.Close()
		return nil, s.fail("open", err)
	}
	return s, nil
}

func (s *Store) init() error {
	ctx := context.Background()
	var mode string
	if err := s.db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return err
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal mode is %q, not WAL", mode)
	}
	if _, err := s.db.ExecContext(ctx, schema); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	return s.sweep(ctx)
}

// Get implements [store.Store].
func (s *Store) Get(ctx context.Context, key string) (store.Entry, error) {
	var (
		e       store.Entry
		version int64
		expires int64
	)
	err := s.db.QueryRowContext(ctx,
		`SELECT value, version, expires FROM kv WHERE key = ? AND (expires = 0 OR expires > ?)`,
		key, nanos(time.Now()),
	).Scan(&e.Value, &version, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Entry{}, store.ErrNotFound
	}
	if err != nil {
		return store.Entry{}, s.fail("get from", err)
	}
	e.Version = uint64(version)
	if expires != 0 {
		e.Expires = time.Unix(0, expires)
	}
	return e, nil
}

// CompareAndSwap implements [store.Store].
func (s *Store) CompareAndSwap(ctx context.Context, key string, oldVersion uint64, value []byte, expires time.Time) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, s.fail("compare and swap in", err)
	}
	if oldVersion > math.MaxInt64 {
		return 0, store.ErrConflict // versions are stored as int64; no such version
	}
	if value == nil {
		value = []byte{} // the driver binds nil as NULL
	}
	now := nanos(time.Now())
	var (
		res sql.Result
		err error
	)
	if oldVersion == 0 {
		// Insert, or replace an expired row; a live row is left alone.
		res, err = s.db.ExecContext(ctx,
			`INSERT INTO kv (key, value, version, expires) VALUES (?1, ?2, 1, ?3)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = 1, expires = excluded.expires
			WHERE kv.expires != 0 AND kv.expires <= ?4`,
			key, value, nanos(expires), now)
	} else {
		res, err = s.db.ExecContext(ctx,
			`UPDATE kv SET value = ?1, version = version + 1, expires = ?2
			WHERE key = ?3 AND version = ?4 AND (expires = 0 OR expires > ?5)`,
			value, nanos(expires), key, int64(oldVersion), now)
	}
	if err == nil {
		err = s.wrote(ctx, res)
	}
	switch {
	case errors.Is(err, store.ErrConflict):
		return 0, store.ErrConflict
	case err != nil:
		return 0, s.fail("compare and swap in", err)
	}
	return oldVersion + 1, nil
}

// Delete implements [store.Store].
func (s *Store) Delete(ctx context.Context, key string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM kv WHERE key = ?`, key); err != nil {
		return s.fail("delete from", err)
	}
	return nil
}

// MarkSeen implements [store.Store].
func (s *Store) MarkSeen(ctx context.Context, id string, expires time.Time) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, s.fail("mark seen in", err)
	}
	// Insert, or replace an expired row; a live row is left alone.
	res, err := s.db.ExecContext(ctx,
		`INSERT INTO seen (id, expires) VALUES (?1, ?2)
		ON CONFLICT (id) DO UPDATE SET expires = excluded.expires
		WHERE seen.expires != 0 AND seen.expires <= ?3`,
		id, nanos(expires), nanos(time.Now()))
	if err == nil {
		err = s.wrote(ctx, res)
	}
	switch {
	case errors.Is(err, store.ErrConflict):
		return false, nil
	case err != nil:
		return false, s.fail("mark seen in", err)
	}
	return true, nil
}

// Close implements [store.Store]. It closes the database.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return s.fail("close", err)
	}
	return nil
}

// Scrub implements [store.Scrubber]: with secure_delete on, overwritten and
// deleted values are zeroed in the database pages, and Scrub checkpoints the
// write-ahead log into the database and truncates it to zero bytes, so no
// earlier version of a page survives in the -wal file (the -shm file holds
// only an index, never values). It fails if another connection's read
// transaction keeps the checkpoint from completing; call it again later.
func (s *Store) Scrub(ctx context.Context) error {
	var busy, logFrames, checkpointed int
	if err := s.db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logFrames, &checkpointed); err != nil {
		return s.fail("scrub", err)
	}
	if busy != 0 {
		return s.fail("scrub", errors.New("checkpoint blocked by another connection; the WAL still holds old pages"))
	}
	return nil
}

// ListKeys implements [store.Lister].
func (s *Store) ListKeys(ctx context.Context, prefix, after string, limit int) ([]string, error) {
	rows, err := s.db.QueryContext(ctx,
		`SELECT key FROM kv WHERE substr(key, 1, ?1) = ?2 AND key > ?3 AND (expires = 0 OR expires > ?4) ORDER BY key LIMIT ?5`,
		len(prefix), prefix, after, nanos(time.Now()), limit)
	if err != nil {
		return nil, s.fail("list keys in", err)
	}
	defer rows.Close()
	var keys []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, s.fail("list keys in", err)
		}
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail("list keys in", err)
	}
	return keys, nil
}

// wrote checks that a conditional write changed exactly one row, returning
// store.ErrConflict if it changed none, and sweeps expired rows every
// sweepEvery successful writes.
func (s *Store) wrote(ctx context.Context, res sql.Result) error {
	n, err := res.RowsAffected()
	switch {
	case err != nil:
		return err
	case n == 0:
		return store.ErrConflict
	case n != 1:
		return fmt.Errorf("%d rows changed, want 1", n)
	}
	if s.writes.Add(1)%sweepEvery == 0 {
		// Best effort: the write succeeded, and expired rows are invisible
		// anyway; a failed sweep is retried sweepEvery writes later.
		_ = s.sweep(ctx)
	}
	return nil
}

// sweep deletes expired rows.
func (s *Store) sweep(ctx context.Context) error {
	now := nanos(time.Now())
	for _, q := range []string{
		`DELETE FROM kv WHERE expires != 0 AND expires <= ?`,
		`DELETE FROM seen WHERE expires != 0 AND expires <= ?`,
	} {
		if _, err := s.db.ExecContext(ctx, q, now); err != nil {
			return fmt.Errorf("delete expired rows: %w", err)
		}
	}
	return nil
}

// nanos returns t as Unix nanoseconds for the expires columns: 0 for the
// zero time (never), and otherwise a positive value, clamped to what int64
// can hold. Times at or before the Unix epoch become 1, which is in the past
// like them: they must not turn into 0 and never expire.
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
