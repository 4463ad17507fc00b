package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func openInternal(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "dynkey.db"))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

func req(id string) *seenReq {
	return &seenReq{id: id, expires: nanos(time.Now().Add(time.Hour)), res: make(chan seenRes, 1)}
}

// The same id twice in one group: only the first is new.
func TestGroupWithDuplicates(t *testing.T) {
	s := openInternal(t)
	batch := []*seenReq{req("a"), req("b"), req("a"), req("c"), req("b")}
	s.commitSeen(batch)
	var firsts []bool
	for _, r := range batch {
		res := <-r.res
		require.NoError(t, res.err)
		firsts = append(firsts, res.first)
	}
	require.Equal(t, []bool{true, true, false, true, false}, firsts)
	st := s.Stats()
	require.Equal(t, uint64(1), st.SeenGroups)
	require.Equal(t, uint64(5), st.SeenIDs)
	require.Positive(t, st.Syncs, "the group was fsync'ed before its answers")
	first, err := s.MarkSeen(t.Context(), "c", time.Now().Add(time.Hour))
	require.NoError(t, err)
	require.False(t, first, "an id committed in a group is seen afterwards")
}

// A group that fails records none of its ids and tells every caller, so
// that no caller is told "new" for an id that is not durably recorded, and
// a retry of any of them is new.
func TestFailedGroupRecordsNothing(t *testing.T) {
	s := openInternal(t)
	_, err := s.db.Exec(fmt.Sprintf(`CREATE TEMP TRIGGER poison BEFORE INSERT ON main.replay_log WHEN NEW.h = X'%x' BEGIN SELECT RAISE(ABORT, 'poisoned'); END`, replayHash("poison")))
	require.NoError(t, err)
	batch := []*seenReq{req("a"), req("poison"), req("b")}
	s.commitSeen(batch)
	for _, r := range batch {
		res := <-r.res
		require.Error(t, res.err, r.id)
		require.False(t, res.first)
	}
	for _, id := range []string{"a", "b"} {
		first, err := s.MarkSeen(t.Context(), id, time.Now().Add(time.Hour))
		require.NoError(t, err)
		require.True(t, first, "%s was recorded by a failed group", id)
	}
	// The error names the file.
	_, err = s.MarkSeen(t.Context(), "poison", time.Now().Add(time.Hour))
	require.ErrorContains(t, err, s.path)
}

// MarkSeen after Close fails instead of waiting forever.
func TestMarkSeenAfterClose(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "dynkey.db"))
	require.NoError(t, err)
	require.NoError(t, s.Close())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = s.MarkSeen(ctx, "x", time.Now().Add(time.Hour))
	require.ErrorIs(t, err, errClosed)
	require.NoError(t, s.Close(), "a second Close is harmless")
}

// A database written by the previous version (replay ids in clear in table
// seen) keeps its live ids across the upgrade: they are still seen.
func TestMigrateSeen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dynkey.db")
	old, err := sql.Open("sqlite", dsn(path, nil))
	require.NoError(t, err)
	_, err = old.Exec(`PRAGMA journal_mode=WAL;
		CREATE TABLE seen (id TEXT PRIMARY KEY, expires INTEGER NOT NULL);
		CREATE INDEX seen_expires ON seen(expires) WHERE expires != 0;`)
	require.NoError(t, err)
	live, expired := nanos(time.Now().Add(time.Hour)), nanos(time.Now().Add(-time.Second))
	_, err = old.Exec(`INSERT INTO seen VALUES ('live', ?), ('forever', 0), ('expired', ?)`, live, expired)
	require.NoError(t, err)
	require.NoError(t, old.Close())

	s, err := Open(path)
	require.NoError(t, err)
	defer s.Close()
	exp := time.Now().Add(time.Hour)
	for id, want := range map[string]bool{"live": false, "forever": false, "expired": true} {
		first, err := s.MarkSeen(t.Context(), id, exp)
		require.NoError(t, err)
		require.Equal(t, want, first, id)
	}
	var n int
	require.NoError(t, s.db.QueryRow(`SELECT count(*) FROM sqlite_master WHERE name = 'seen'`).Scan(&n))
	require.Zero(t, n, "the old table is dropped")
}

// A MarkSeen answer waits for an fsync of the log that started after its
// group was committed; CompareAndSwap and Delete fsync before returning.
func TestAnswersWaitForTheFsync(t *testing.T) {
	s := openInternal(t)
	entered, release := make(chan struct{}), make(chan struct{})
	s.walMu.Lock()
	s.syncHook = func() { entered <- struct{}{}; <-release }
	s.walMu.Unlock()

	r := req("a")
	go s.commitSeen([]*seenReq{r})
	<-entered
	// Committed (readers see it), not yet answered.
	var n int
	require.NoError(t, s.rdb.QueryRow(`SELECT count(*) FROM replay_log`).Scan(&n))
	require.Equal(t, 1, n)
	require.Empty(t, r.res, "answered before the fsync")
	release <- struct{}{}
	res := <-r.res
	require.NoError(t, res.err)
	require.True(t, res.first)

	done := make(chan error, 1)
	go func() {
		_, err := s.CompareAndSwap(context.Background(), "k", 0, []byte("v"), time.Time{})
		done <- err
	}()
	<-entered
	require.Empty(t, done, "CompareAndSwap returned before the fsync")
	release <- struct{}{}
	require.NoError(t, <-done)

	go func() { done <- s.Delete(context.Background(), "k") }()
	<-entered
	require.Empty(t, done, "Delete returned before the fsync")
	release <- struct{}{}
	require.NoError(t, <-done)

	// Deleting an absent key changes nothing: no fsync to wait for (the
	// hook would block forever).
	require.NoError(t, s.Delete(context.Background(), "k"))

	s.walMu.Lock()
	s.syncHook = nil
	s.walMu.Unlock()
}
