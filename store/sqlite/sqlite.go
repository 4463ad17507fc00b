// Package sqlite is a [store.Store] in an SQLite database file, using the
// pure-Go driver modernc.org/sqlite (no cgo).
//
// The state survives restarts and can be shared by several server processes
// on one machine: every CompareAndSwap is a single conditional SQL
// statement, and MarkSeen decides and records its ids inside a write
// transaction, holding SQLite's write lock, so both are atomic even across
// processes opening the same file. Replay ids are kept as a log of 16-byte
// hashes in the file and indexed in memory by every Store (about 75 bytes
// per live id), which each write transaction first brings up to date with
// what other processes appended. The database runs in WAL mode, which
// needs a local file system (not NFS or other network shares).
//
// # Performance
//
// Within one process, open the file once and share the [*Store]. A Store
// writes through a single connection (so that writes from one process never
// contend for SQLite's write lock among themselves) and reads through a pool
// of read-only connections, which WAL lets run beside the writer. MarkSeen
// calls arriving while the writer is busy are committed together in one
// transaction (group commit), and the write-ahead log is fsync'ed by a
// second goroutine while the writer already commits the next group: one
// fsync serves every group committed before it started. Each caller
// learns its own answer only once the log holding its id is on disk, and
// CompareAndSwap and Delete return only after the same fsync: nothing is
// acknowledged before it is on disk, so a power cut loses no session, key
// ring or message id that a caller was told was stored
// (docs/PERFORMANCE.md).
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/dynkey/dynkey/store"
)

// sweepEvery is the number of writes between two deletions of expired rows.
const sweepEvery = 1000

// Expiries are stored as Unix nanoseconds, 0 meaning never.
//
// Replay ids are a log (table replay_log) in the order they were recorded,
// each as the first 16 bytes of its SHA-256 (replayHash), and every Store
// keeps an index of the live ones in memory (see seenSet). Appending to a
// log writes one or two pages per group commit, where inserting random
// keys into a B-tree would write a page per id.
const schema = `
CREATE TABLE IF NOT EXISTS kv (
	key     TEXT PRIMARY KEY,
	value   BLOB NOT NULL,
	version INTEGER NOT NULL,
	expires INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS kv_expires ON kv(expires) WHERE expires != 0;
CREATE TABLE IF NOT EXISTS replay_log (
	seq     INTEGER PRIMARY KEY AUTOINCREMENT,
	h       BLOB NOT NULL,
	expires INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS replay_log_expires ON replay_log(expires) WHERE expires != 0;
`

// Store is a [store.Store] backed by an SQLite database file.
type Store struct {
	db     *sql.DB // the writer: one connection
	rdb    *sql.DB // readers: a pool of query-only connections
	path   string  // absolute, named in every error
	writes atomic.Uint64
	// seenGroups and seenIDs count the MarkSeen groups committed and the
	// calls they answered (Stats).
	seenGroups atomic.Uint64
	seenIDs    atomic.Uint64

	getStmt  *sql.Stmt // on rdb
	seenStmt *sql.Stmt // on db

	// seen is the in-memory index of the live replay ids, owned by
	// seenLoop (and by Open before the loop starts).
	seen *seenSet

	// MarkSeen requests go to the group-commit loop (seenLoop), committed
	// groups to the fsync loop (syncLoop).
	seenCh    chan *seenReq
	syncCh    chan seenGroup
	unsynced  atomic.Int64  // groups committed and not yet fsync'ed
	synced1   chan struct{} // poked (capacity 1) after each fsync of groups
	closing   chan struct{}
	loopDone  chan struct{}
	syncDone  chan struct{}
	closeOnce sync.Once

	// wal is the write-ahead log file, opened to fsync it (syncWAL).
	walMu sync.Mutex
	wal   *os.File
	syncs atomic.Uint64
	// committed counts the commits of this Store's writer, incremented
	// once each has returned; synced (under walMu) is the count the last
	// successful fsync covered.
	committed atomic.Uint64
	synced    uint64
	// syncHook, if set (tests only), runs in syncWAL before the fsync.
	syncHook func()
}

// errClosed is the cause of errors from a closed Store.
var errClosed = errors.New("store closed")

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
	// Pragmas applied to every connection of the writer:
	//   - busy_timeout: wait up to 5s for another process's write lock
	//     instead of failing with SQLITE_BUSY.
	//   - journal_mode=WAL: readers do not block the writer and vice versa.
	//   - synchronous=NORMAL: SQLite syncs the log only around checkpoints,
	//     which keeps the database consistent after a power cut but could
	//     lose the last commits; so every write method fsyncs the log itself
	//     after its commit and before it returns (syncWAL), outside
	//     SQLite's write lock, so that the next commit need not wait for
	//     the disk. What a caller is told is stored is on disk, as with
	//     synchronous=FULL.
	//   - secure_delete=ON: deleted and overwritten content is zeroed in
	//     the database pages, so that a destroyed server key leaves no copy
	//     in free space (Scrub then clears the WAL).
	//   - cache_size=64 MiB (the default is 2 MiB): the replay table's
	//     pages stay in memory, so a write rarely reads a page back.
	//   - wal_autocheckpoint=8000 pages (32 MiB of WAL; the default is
	//     1000): a page written many times between two checkpoints is
	//     copied into the database once.
	// _txlock=immediate: a transaction takes the write lock when it
	// begins, so that waiting for another process's lock goes through
	// busy_timeout rather than failing on a stale snapshot.
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("dynkey/store/sqlite: open %s: %w", path, err)
	}
	db, err := sql.Open("sqlite", dsn(abs, url.Values{
		"_pragma": {"busy_timeout(5000)", "journal_mode(WAL)", "synchronous(NORMAL)", "cache_size(-65536)", "wal_autocheckpoint(8000)", "secure_delete(ON)"},
		"_txlock": {"immediate"},
	}))
	if err != nil {
		return nil, fmt.Errorf("dynkey/store/sqlite: open %s: %w", path, err)
	}
	// One writer connection: writes from this process never contend with
	// each other for SQLite's write lock (no SQLITE_BUSY), and busy_timeout
	// only has to cover other processes.
	db.SetMaxOpenConns(1)
	s := &Store{db: db, path: abs, seenCh: make(chan *seenReq), syncCh: make(chan seenGroup, 64), synced1: make(chan struct{}, 1),
		closing: make(chan struct{}), loopDone: make(chan struct{}), syncDone: make(chan struct{})}
	if err := s.init(); err != nil {
		db.Close()
		return nil, s.fail("open", err)
	}
	// The log exists once the writer's connection is open in WAL mode;
	// its directory entry is synced once, so that the file itself
	// survives a power cut.
	if err := s.openWAL(); err != nil {
		db.Close()
		return nil, s.fail("open", err)
	}
	// Readers: query_only, so that no read can write; WAL (persistent in
	// the file, set above by the writer) lets them read the last committed
	// state while the writer commits.
	rdb, err := sql.Open("sqlite", dsn(abs, url.Values{"_pragma": {"busy_timeout(5000)", "query_only(1)"}}))
	if err != nil {
		db.Close()
		return nil, s.fail("open", err)
	}
	readers := max(4, runtime.GOMAXPROCS(0))
	rdb.SetMaxOpenConns(readers)
	rdb.SetMaxIdleConns(readers)
	s.rdb = rdb
	if err := s.prepare(); err != nil {
		rdb.Close()
		db.Close()
		s.wal.Close()
		return nil, s.fail("open", err)
	}
	go s.seenLoop()
	go s.syncLoop()
	return s, nil
}

// dsn is an SQLite URI for the file at abs, so that any byte of the path
// is escaped and cannot be read as a parameter: file:///dir/file.db or
// file:///C:/dir/file.db.
func dsn(abs string, q url.Values) string {
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(abs), RawQuery: q.Encode()}
	if !strings.HasPrefix(u.Path, "/") {
		u.Path = "/" + u.Path
	}
	return u.String()
}

// prepare compiles the statements of the hot path once.
func (s *Store) prepare() error {
	var err error
	s.getStmt, err = s.rdb.Prepare(`SELECT value, version, expires FROM kv WHERE key = ? AND (expires = 0 OR expires > ?)`)
	if err != nil {
		return err
	}
	// Insert, or replace an expired row; a live row is left alone.
	s.seenStmt, err = s.db.Prepare(`INSERT INTO replay_log (h, expires) VALUES (?, ?)`)
	return err
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
	if err := s.migrateSeen(ctx); err != nil {
		return fmt.Errorf("migrate replay ids: %w", err)
	}
	if err := s.sweep(ctx); err != nil {
		return err
	}
	s.seen = newSeenSet()
	return s.seen.catchUp(ctx, s.db)
}

// migrateSeen moves the live replay ids of a database written by an
// earlier version (table seen, ids in clear) into the replay log, hashed,
// and drops the old table, in one transaction: no id is forgotten, and
// every process opening the file afterwards finds them where it looks.
func (s *Store) migrateSeen(ctx context.Context) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'seen'`).Scan(&n); err != nil || n == 0 {
		return err
	}
	rows, err := tx.QueryContext(ctx, `SELECT id, expires FROM seen WHERE expires = 0 OR expires > ?`, nanos(time.Now()))
	if err != nil {
		return err
	}
	type row struct {
		id      string
		expires int64
	}
	var live []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.id, &r.expires); err != nil {
			rows.Close()
			return err
		}
		live = append(live, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, r := range live {
		h := replayHash(r.id)
		if _, err := tx.ExecContext(ctx, `INSERT INTO replay_log (h, expires) VALUES (?, ?)`, h[:], r.expires); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, `DROP TABLE seen`); err != nil {
		return err
	}
	return tx.Commit()
}

// Get implements [store.Store].
func (s *Store) Get(ctx context.Context, key string) (store.Entry, error) {
	var (
		e       store.Entry
		version int64
		expires int64
	)
	if err := ctx.Err(); err != nil {
		return store.Entry{}, s.fail("get from", err)
	}
	// Without ctx's cancellation: the driver would start a goroutine per
	// query to watch it, which costs more than the read itself; a read of
	// one row under WAL never waits for a writer.
	err := s.getStmt.QueryRowContext(context.WithoutCancel(ctx), key, nanos(time.Now())).Scan(&e.Value, &version, &expires)
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
	if err == nil {
		err = s.syncWAL(s.commitDone())
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
	res, err := s.db.ExecContext(ctx, `DELETE FROM kv WHERE key = ?`, key)
	if err != nil {
		return s.fail("delete from", err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return nil // nothing changed, nothing to make durable
	}
	if err := s.syncWAL(s.commitDone()); err != nil {
		return s.fail("delete from", err)
	}
	return nil
}

// Stats are counters of a Store since Open.
type Stats struct {
	// SeenGroups is the number of MarkSeen groups committed, and SeenIDs
	// the number of MarkSeen calls they answered: SeenIDs/SeenGroups is the
	// mean group size, the number of ids one commit recorded.
	SeenGroups, SeenIDs uint64
	// Syncs is the number of fsyncs of the write-ahead log (by MarkSeen
	// groups, CompareAndSwap and Delete).
	Syncs uint64
}

// Stats returns the store's counters. It is safe to call at any time.
func (s *Store) Stats() Stats {
	return Stats{SeenGroups: s.seenGroups.Load(), SeenIDs: s.seenIDs.Load(), Syncs: s.syncs.Load()}
}

// Close implements [store.Store]. It waits for the MarkSeen group being
// committed, then closes the database; MarkSeen calls after Close fail.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.closing)
		<-s.loopDone
		<-s.syncDone
		err = errors.Join(s.rdb.Close(), s.db.Close(), s.wal.Close())
	})
	if err != nil {
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
	rows, err := s.rdb.QueryContext(ctx,
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
		`DELETE FROM replay_log WHERE expires != 0 AND expires <= ?`,
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
