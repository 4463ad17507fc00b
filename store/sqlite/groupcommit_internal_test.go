package sqlite

import (
	"context"
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
	require.Equal(t, Stats{SeenGroups: 1, SeenIDs: 5}, s.Stats())
	first, err := s.MarkSeen(t.Context(), "c", time.Now().Add(time.Hour))
	require.NoError(t, err)
	require.False(t, first, "an id committed in a group is seen afterwards")
}

// A group that fails records none of its ids and tells every caller, so
// that no caller is told "new" for an id that is not durably recorded, and
// a retry of any of them is new.
func TestFailedGroupRecordsNothing(t *testing.T) {
	s := openInternal(t)
	_, err := s.db.Exec(`CREATE TEMP TRIGGER poison BEFORE INSERT ON main.seen WHEN NEW.id = 'poison' BEGIN SELECT RAISE(ABORT, 'poisoned'); END`)
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
