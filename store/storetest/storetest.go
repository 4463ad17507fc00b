// Package storetest is the conformance suite for [store.Store]
// implementations. Every store calls [Run] from its own tests:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store {
//			s := mystore.New()
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// The suite pins down the semantics the dynkey middleware relies on and
// that [store.Store] only states in prose:
//
//   - An entry whose expiry has passed is absent: Get reports
//     [store.ErrNotFound], a swap expecting any version > 0 conflicts, and a
//     swap expecting version 0 succeeds and returns version 1. The same holds
//     after Delete, so a key's versions restart at 1 once it is gone.
//   - An expiry equal to or before the current time means expired; a zero
//     expiry never expires.
//   - Values are copied in and out: neither the slice passed to
//     CompareAndSwap nor the one returned by Get aliases the store's copy.
//     A nil value is stored as an empty one.
//   - CompareAndSwap and MarkSeen are atomic: of concurrent callers racing
//     on the same key or id, exactly one wins.
//   - A call with an already cancelled context fails with an error wrapping
//     [context.Canceled] (or [context.DeadlineExceeded] for a passed
//     deadline) and has no effect.
//
// [RunShared] adds what only shows with two handles on one backend (two
// processes, or two instances of a server): a swap or a seen id written
// through one is seen through the other, and races between handles still
// have exactly one winner.
//
// [Bench] measures a store's operations (latency, and round trips to its
// server when the store can count them).
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/store"
)

// Run runs the conformance suite against the stores returned by newStore.
// newStore is called once per subtest with that subtest's t and must return
// a fresh, empty store; it must also register the store's Close with
// t.Cleanup, since the suite does not close stores itself.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"GetAbsent", testGetAbsent},
		{"CreateAndGet", testCreateAndGet},
		{"CreateNilAndEmptyValue", testEmptyValue},
		{"LargeValue", testLargeValue},
		{"Update", testUpdate},
		{"Conflict", testConflict},
		{"ExpiresReplaced", testExpiresReplaced},
		{"ExpiredIsAbsent", testExpiredIsAbsent},
		{"ExpiresLater", testExpiresLater},
		{"ZeroExpiresNeverExpires", testZeroExpires},
		{"Delete", testDelete},
		{"ValueCopiedIn", testValueCopiedIn},
		{"ValueCopiedOut", testValueCopiedOut},
		{"Keys", testKeys},
		{"MarkSeen", testMarkSeen},
		{"MarkSeenExpired", testMarkSeenExpired},
		{"MarkSeenExpiresLater", testMarkSeenExpiresLater},
		{"SeenSeparateFromKeys", testSeenSeparateFromKeys},
		{"ConcurrentCAS", testConcurrentCAS},
		{"CASRaceRounds", testCASRaceRounds},
		{"ConcurrentIncrement", testConcurrentIncrement},
		{"ConcurrentMarkSeen", testConcurrentMarkSeen},
		{"CancelledContext", testCancelledContext},
		{"DeadlineExceeded", testDeadlineExceeded},
		{"ValueCopiedBetweenGets", testValueCopiedBetweenGets},
		{"ManyExpired", testManyExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			require.NotNil(t, s, "newStore returned nil")
			tt.fn(t, s)
		})
	}
	t.Run("Integrity", func(t *testing.T) { RunIntegrity(t, newStore) }) // integrity.go
}

func past() time.Time   { return time.Now().Add(-time.Second) }
func future() time.Time { return time.Now().Add(time.Hour) }

// Polling limits for the few tests that must watch an entry expire.
const (
	shortExpiry = 50 * time.Millisecond
	pollFor     = 2 * time.Second
	pollEvery   = 10 * time.Millisecond
)

func requireEntry(t *testing.T, s store.Store, key string, value []byte, version uint64) store.Entry {
	t.Helper()
	e, err := s.Get(t.Context(), key)
	require.NoError(t, err)
	require.Equal(t, version, e.Version, "version of %q", key)
	require.True(t, bytes.Equal(value, e.Value), "value of %q: got %q, want %q", key, e.Value, value)
	return e
}

func requireAbsent(t *testing.T, s store.Store, key string) {
	t.Helper()
	_, err := s.Get(t.Context(), key)
	require.ErrorIs(t, err, store.ErrNotFound, "key %q", key)
}

func cas(t *testing.T, s store.Store, key string, old uint64, value string, expires time.Time) uint64 {
	t.Helper()
	v, err := s.CompareAndSwap(t.Context(), key, old, []byte(value), expires)
	require.NoError(t, err)
	require.Equal(t, old+1, v)
	return v
}

func testGetAbsent(t *testing.T, s store.Store) {
	requireAbsent(t, s, "absent")
}

func testCreateAndGet(t *testing.T, s store.Store) {
	exp := future()
	cas(t, s, "k", 0, "v1", exp)
	e := requireEntry(t, s, "k", []byte("v1"), 1)
	require.True(t, e.Expires.Equal(exp), "expires: got %v, want %v", e.Expires, exp)
}

func testEmptyValue(t *testing.T, s store.Store) {
	for _, tc := range []struct {
		key   string
		value []byte
	}{{"nil", nil}, {"empty", []byte{}}} {
		v, err := s.CompareAndSwap(t.Context(), tc.key, 0, tc.value, time.Time{})
		require.NoError(t, err)
		require.Equal(t, uint64(1), v)
		e := requireEntry(t, s, tc.key, nil, 1)
		require.Empty(t, e.Value)
	}
}

func testLargeValue(t *testing.T, s store.Store) {
	value := make([]byte, 1<<20)
	_, _ = rand.Read(value)
	v, err := s.CompareAndSwap(t.Context(), "big", 0, value, time.Time{})
	require.NoError(t, err)
	require.Equal(t, uint64(1), v)
	requireEntry(t, s, "big", value, 1)
}

func testUpdate(t *testing.T, s store.Store) {
	cas(t, s, "k", 0, "v1", future())
	cas(t, s, "k", 1, "v2", future())
	cas(t, s, "k", 2, "v3", future())
	requireEntry(t, s, "k", []byte("v3"), 3)
}

func testConflict(t *testing.T, s store.Store) {
	ctx := t.Context()
	cas(t, s, "k", 0, "v1", future())
	cas(t, s, "k", 1, "v2", future())

	tests := []struct {
		name string
		key  string
		old  uint64
	}{
		{"create over existing", "k", 0},
		{"stale version", "k", 1},
		{"future version", "k", 3},
		{"far version", "k", 1 << 63},
		{"max version", "k", ^uint64(0)},
		{"update absent", "absent", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := s.CompareAndSwap(ctx, tt.key, tt.old, []byte("lost"), time.Time{})
			require.ErrorIs(t, err, store.ErrConflict)
			require.Zero(t, v)
		})
	}
	// Nothing was written by the failed swaps.
	requireEntry(t, s, "k", []byte("v2"), 2)
	requireAbsent(t, s, "absent")
}

func testExpiresReplaced(t *testing.T, s store.Store) {
	cas(t, s, "k", 0, "v1", future())
	cas(t, s, "k", 1, "v2", time.Time{})
	e := requireEntry(t, s, "k", []byte("v2"), 2)
	require.True(t, e.Expires.IsZero(), "expires: got %v, want zero", e.Expires)

	exp := future().Add(time.Minute)
	cas(t, s, "k", 2, "v3", exp)
	e = requireEntry(t, s, "k", []byte("v3"), 3)
	require.True(t, e.Expires.Equal(exp), "expires: got %v, want %v", e.Expires, exp)

	// Swapping in a past expiry removes the entry.
	cas(t, s, "k", 3, "v4", past())
	requireAbsent(t, s, "k")
}

func testExpiredIsAbsent(t *testing.T, s store.Store) {
	ctx := t.Context()
	cas(t, s, "k", 0, "old", past())
	requireAbsent(t, s, "k")

	// An expired entry cannot be updated by its old version...
	_, err := s.CompareAndSwap(ctx, "k", 1, []byte("x"), time.Time{})
	require.ErrorIs(t, err, store.ErrConflict)
	requireAbsent(t, s, "k")

	// ...and is replaced as if absent, restarting at version 1.
	cas(t, s, "k", 0, "new", future())
	requireEntry(t, s, "k", []byte("new"), 1)

	// A live entry that is swapped to expired behaves the same.
	cas(t, s, "k", 1, "gone", past())
	requireAbsent(t, s, "k")
	cas(t, s, "k", 0, "again", time.Time{})
	requireEntry(t, s, "k", []byte("again"), 1)
}

func testExpiresLater(t *testing.T, s store.Store) {
	ctx := t.Context()
	exp := time.Now().Add(shortExpiry)
	cas(t, s, "k", 0, "v", exp)
	if _, err := s.Get(ctx, "k"); err != nil {
		require.ErrorIs(t, err, store.ErrNotFound)
		require.False(t, time.Now().Before(exp), "entry expired early")
	}
	require.Eventually(t, func() bool {
		_, err := s.Get(ctx, "k")
		return errors.Is(err, store.ErrNotFound)
	}, pollFor, pollEvery, "entry did not expire")
	cas(t, s, "k", 0, "v2", time.Time{})
	requireEntry(t, s, "k", []byte("v2"), 1)
}

func testZeroExpires(t *testing.T, s store.Store) {
	cas(t, s, "k", 0, "v", time.Time{})
	e := requireEntry(t, s, "k", []byte("v"), 1)
	require.True(t, e.Expires.IsZero(), "expires: got %v, want zero", e.Expires)
	_, err := s.CompareAndSwap(t.Context(), "k", 0, []byte("x"), time.Time{})
	require.ErrorIs(t, err, store.ErrConflict)
}

func testDelete(t *testing.T, s store.Store) {
	ctx := t.Context()
	require.NoError(t, s.Delete(ctx, "absent"))

	cas(t, s, "k", 0, "v1", time.Time{})
	cas(t, s, "k", 1, "v2", time.Time{})
	cas(t, s, "other", 0, "o", time.Time{})
	require.NoError(t, s.Delete(ctx, "k"))
	requireAbsent(t, s, "k")
	require.NoError(t, s.Delete(ctx, "k"))
	requireEntry(t, s, "other", []byte("o"), 1)

	_, err := s.CompareAndSwap(ctx, "k", 2, []byte("x"), time.Time{})
	require.ErrorIs(t, err, store.ErrConflict)
	cas(t, s, "k", 0, "v", time.Time{})
	requireEntry(t, s, "k", []byte("v"), 1)

	// Deleting an expired entry is not an error either.
	cas(t, s, "e", 0, "v", past())
	require.NoError(t, s.Delete(ctx, "e"))
	requireAbsent(t, s, "e")
}

func testValueCopiedIn(t *testing.T, s store.Store) {
	value := []byte("original")
	v, err := s.CompareAndSwap(t.Context(), "k", 0, value, time.Time{})
	require.NoError(t, err)
	copy(value, "MUTATED!")
	requireEntry(t, s, "k", []byte("original"), v)
}

func testValueCopiedOut(t *testing.T, s store.Store) {
	cas(t, s, "k", 0, "original", time.Time{})
	e := requireEntry(t, s, "k", []byte("original"), 1)
	copy(e.Value, "MUTATED!")
	requireEntry(t, s, "k", []byte("original"), 1)
}

func testKeys(t *testing.T, s store.Store) {
	keys := []string{
		"a/b",
		"a\\b",
		"a b",
		"k",
		"K",
		"k ",
		" k",
		"%",
		"_",
		"*",
		"'; DROP TABLE kv; --",
		"ключ",
		"鍵🔑",
		"e\u0301", // e + combining acute: must not be normalized to é
		"\u00e9",
		strings.Repeat("x", 200),
		strings.Repeat("x", 199) + "y",
	}
	for i, k := range keys {
		cas(t, s, k, 0, "value "+strconv.Itoa(i), time.Time{})
	}
	for i, k := range keys {
		requireEntry(t, s, k, []byte("value "+strconv.Itoa(i)), 1)
	}
	require.NoError(t, s.Delete(t.Context(), "a/b"))
	requireAbsent(t, s, "a/b")
	requireEntry(t, s, "a\\b", []byte("value 1"), 1)
}

func testMarkSeen(t *testing.T, s store.Store) {
	ctx := t.Context()
	exp := future()
	first, err := s.MarkSeen(ctx, "id", exp)
	require.NoError(t, err)
	require.True(t, first)
	for range 3 {
		first, err = s.MarkSeen(ctx, "id", exp)
		require.NoError(t, err)
		require.False(t, first)
	}
	first, err = s.MarkSeen(ctx, "id2", exp)
	require.NoError(t, err)
	require.True(t, first)

	// A zero expiry never expires.
	first, err = s.MarkSeen(ctx, "forever", time.Time{})
	require.NoError(t, err)
	require.True(t, first)
	first, err = s.MarkSeen(ctx, "forever", past())
	require.NoError(t, err)
	require.False(t, first)
}

func testMarkSeenExpired(t *testing.T, s store.Store) {
	ctx := t.Context()
	// An id recorded with an expiry already passed is immediately forgotten.
	for range 2 {
		first, err := s.MarkSeen(ctx, "id", past())
		require.NoError(t, err)
		require.True(t, first)
	}
	first, err := s.MarkSeen(ctx, "id", future())
	require.NoError(t, err)
	require.True(t, first)
	first, err = s.MarkSeen(ctx, "id", future())
	require.NoError(t, err)
	require.False(t, first)
}

func testMarkSeenExpiresLater(t *testing.T, s store.Store) {
	ctx := t.Context()
	exp := time.Now().Add(shortExpiry)
	first, err := s.MarkSeen(ctx, "id", exp)
	require.NoError(t, err)
	require.True(t, first)
	first, err = s.MarkSeen(ctx, "id", future())
	require.NoError(t, err)
	if first {
		require.False(t, time.Now().Before(exp), "seen id expired early")
	} else {
		// The repeated call must not have extended the live id's expiry.
		require.Eventually(t, func() bool {
			first, err := s.MarkSeen(ctx, "id", future())
			return err == nil && first
		}, pollFor, pollEvery, "seen id did not expire")
	}
	first, err = s.MarkSeen(ctx, "id", future())
	require.NoError(t, err)
	require.False(t, first)
}

func testSeenSeparateFromKeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	first, err := s.MarkSeen(ctx, "x", future())
	require.NoError(t, err)
	require.True(t, first)
	requireAbsent(t, s, "x")
	cas(t, s, "y", 0, "v", time.Time{})
	first, err = s.MarkSeen(ctx, "y", future())
	require.NoError(t, err)
	require.True(t, first)
	require.NoError(t, s.Delete(ctx, "x"))
	first, err = s.MarkSeen(ctx, "x", future())
	require.NoError(t, err)
	require.False(t, first)
}

// race runs fn in n goroutines released at the same moment and returns
// their results.
func race[T any](n int, fn func(i int) (T, error)) ([]T, []error) {
	results := make([]T, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			results[i], errs[i] = fn(i)
		})
	}
	close(start)
	wg.Wait()
	return results, errs
}

func testConcurrentCAS(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, old := range []uint64{0, 1} {
		t.Run("from version "+strconv.FormatUint(old, 10), func(t *testing.T) {
			key := "k" + strconv.FormatUint(old, 10)
			if old > 0 {
				cas(t, s, key, 0, "base", time.Time{})
			}
			const n = 16
			versions, errs := race(n, func(i int) (uint64, error) {
				return s.CompareAndSwap(ctx, key, old, []byte("writer "+strconv.Itoa(i)), time.Time{})
			})
			winner := -1
			for i, err := range errs {
				if err == nil {
					require.Equal(t, -1, winner, "two winners: %d and %d", winner, i)
					require.Equal(t, old+1, versions[i])
					winner = i
					continue
				}
				require.ErrorIs(t, err, store.ErrConflict, "writer %d", i)
			}
			require.NotEqual(t, -1, winner, "no winner")
			requireEntry(t, s, key, []byte("writer "+strconv.Itoa(winner)), old+1)
		})
	}
}

func testConcurrentIncrement(t *testing.T, s store.Store) {
	ctx := t.Context()
	const workers, increments = 8, 25
	_, errs := race(workers, func(int) (struct{}, error) {
		for range increments {
			for {
				var n int
				e, err := s.Get(ctx, "counter")
				switch {
				case errors.Is(err, store.ErrNotFound):
					e = store.Entry{}
				case err != nil:
					return struct{}{}, err
				default:
					if n, err = strconv.Atoi(string(e.Value)); err != nil {
						return struct{}{}, err
					}
				}
				_, err = s.CompareAndSwap(ctx, "counter", e.Version, []byte(strconv.Itoa(n+1)), time.Time{})
				if err == nil {
					break
				}
				if !errors.Is(err, store.ErrConflict) {
					return struct{}{}, err
				}
			}
		}
		return struct{}{}, nil
	})
	for _, err := range errs {
		require.NoError(t, err)
	}
	requireEntry(t, s, "counter", []byte(strconv.Itoa(workers*increments)), workers*increments)
}

func testConcurrentMarkSeen(t *testing.T, s store.Store) {
	ctx := t.Context()
	const n = 32
	exp := future()
	firsts, errs := race(n, func(int) (bool, error) {
		return s.MarkSeen(ctx, "id", exp)
	})
	count := 0
	for i, first := range firsts {
		require.NoError(t, errs[i])
		if first {
			count++
		}
	}
	require.Equal(t, 1, count, "MarkSeen callers that saw the id first")
}

func testCancelledContext(t *testing.T, s store.Store) {
	cas(t, s, "k", 0, "v", time.Time{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()

	_, err := s.Get(ctx, "k")
	require.ErrorIs(t, err, context.Canceled, "Get")
	_, err = s.CompareAndSwap(ctx, "new", 0, []byte("x"), time.Time{})
	require.ErrorIs(t, err, context.Canceled, "CompareAndSwap create")
	_, err = s.CompareAndSwap(ctx, "k", 1, []byte("x"), time.Time{})
	require.ErrorIs(t, err, context.Canceled, "CompareAndSwap update")
	err = s.Delete(ctx, "k")
	require.ErrorIs(t, err, context.Canceled, "Delete")
	_, err = s.MarkSeen(ctx, "id", future())
	require.ErrorIs(t, err, context.Canceled, "MarkSeen")

	// None of the cancelled calls had an effect.
	requireAbsent(t, s, "new")
	requireEntry(t, s, "k", []byte("v"), 1)
	first, err := s.MarkSeen(t.Context(), "id", future())
	require.NoError(t, err)
	require.True(t, first)
}

// testCASRaceRounds races n writers on one key, version after version: in
// every round exactly one writer wins, and the next round starts from its
// version.
func testCASRaceRounds(t *testing.T, s store.Store) {
	casRaceRounds(t, []store.Store{s})
}

func casRaceRounds(t *testing.T, handles []store.Store) {
	ctx := t.Context()
	const n, rounds = 8, 6
	for round := range rounds {
		old := uint64(round)
		versions, errs := race(n, func(i int) (uint64, error) {
			h := handles[i%len(handles)]
			return h.CompareAndSwap(ctx, "race", old, []byte(strconv.Itoa(round)+"/"+strconv.Itoa(i)), time.Time{})
		})
		winner := -1
		for i, err := range errs {
			if err == nil {
				require.Equal(t, -1, winner, "round %d: two winners: %d and %d", round, winner, i)
				require.Equal(t, old+1, versions[i], "round %d", round)
				winner = i
				continue
			}
			require.ErrorIs(t, err, store.ErrConflict, "round %d, writer %d", round, i)
		}
		require.NotEqual(t, -1, winner, "round %d: no winner", round)
		for _, h := range handles {
			requireEntry(t, h, "race", []byte(strconv.Itoa(round)+"/"+strconv.Itoa(winner)), old+1)
		}
	}
}

func testDeadlineExceeded(t *testing.T, s store.Store) {
	cas(t, s, "k", 0, "v", time.Time{})
	ctx, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancel()

	_, err := s.Get(ctx, "k")
	require.ErrorIs(t, err, context.DeadlineExceeded, "Get")
	_, err = s.CompareAndSwap(ctx, "k", 1, []byte("x"), time.Time{})
	require.ErrorIs(t, err, context.DeadlineExceeded, "CompareAndSwap")
	require.ErrorIs(t, s.Delete(ctx, "k"), context.DeadlineExceeded, "Delete")
	_, err = s.MarkSeen(ctx, "id", future())
	require.ErrorIs(t, err, context.DeadlineExceeded, "MarkSeen")

	requireEntry(t, s, "k", []byte("v"), 1)
	first, err := s.MarkSeen(t.Context(), "id", future())
	require.NoError(t, err)
	require.True(t, first)
}

// testValueCopiedBetweenGets checks that two Gets of one entry return
// slices that do not share memory with each other, for a small and a large
// value.
func testValueCopiedBetweenGets(t *testing.T, s store.Store) {
	for _, size := range []int{8, 64 << 10} {
		key := "k" + strconv.Itoa(size)
		want := bytes.Repeat([]byte{'a'}, size)
		cas(t, s, key, 0, string(want), time.Time{})
		e1 := requireEntry(t, s, key, want, 1)
		e2 := requireEntry(t, s, key, want, 1)
		for i := range e1.Value {
			e1.Value[i] = 'X'
		}
		require.True(t, bytes.Equal(want, e2.Value), "size %d: second Get's value changed with the first's", size)
		requireEntry(t, s, key, want, 1)
	}
}

// testManyExpired writes many entries and ids that are expired on arrival:
// none is visible, each key restarts at version 1, each id is new again,
// and a live entry among them is untouched.
func testManyExpired(t *testing.T, s store.Store) {
	ctx := t.Context()
	const n = 100
	cas(t, s, "live", 0, "v", future())
	for i := range n {
		k := "expired" + strconv.Itoa(i)
		cas(t, s, k, 0, "v", past())
		first, err := s.MarkSeen(ctx, k, past())
		require.NoError(t, err)
		require.True(t, first)
	}
	for i := range n {
		k := "expired" + strconv.Itoa(i)
		requireAbsent(t, s, k)
		cas(t, s, k, 0, "again", future())
		first, err := s.MarkSeen(ctx, k, future())
		require.NoError(t, err)
		require.True(t, first, "id %q", k)
	}
	requireEntry(t, s, "live", []byte("v"), 1)
}

// RunShared runs the cross-handle tests: open is called once per subtest
// and returns two stores on the same fresh, empty backend (two connections,
// pools or file handles, as two server instances would have), with their
// Close registered with t.Cleanup. A store that cannot be shared (memory)
// may return the same store twice.
func RunShared(t *testing.T, open func(t *testing.T) (a, b store.Store)) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, a, b store.Store)
	}{
		{"WritesVisibleAcross", testWritesVisibleAcross},
		{"CASRaceAcross", testCASRaceAcross},
		{"MarkSeenFirstWriterWins", testMarkSeenFirstWriterWins},
		{"ExpiryAcross", testExpiryAcross},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := open(t)
			require.NotNil(t, a, "open returned nil")
			require.NotNil(t, b, "open returned nil")
			tt.fn(t, a, b)
		})
	}
}

func testWritesVisibleAcross(t *testing.T, a, b store.Store) {
	ctx := t.Context()
	cas(t, a, "k", 0, "from a", future())
	requireEntry(t, b, "k", []byte("from a"), 1)
	cas(t, b, "k", 1, "from b", future())
	requireEntry(t, a, "k", []byte("from b"), 2)
	_, err := a.CompareAndSwap(ctx, "k", 1, []byte("stale"), time.Time{})
	require.ErrorIs(t, err, store.ErrConflict)
	require.NoError(t, b.Delete(ctx, "k"))
	requireAbsent(t, a, "k")
	cas(t, a, "k", 0, "again", time.Time{})
	requireEntry(t, b, "k", []byte("again"), 1)
}

func testCASRaceAcross(t *testing.T, a, b store.Store) {
	casRaceRounds(t, []store.Store{a, b})
}

// testMarkSeenFirstWriterWins races MarkSeen on one id through both
// handles, for several ids: exactly one call in all returns true, and both
// handles see the id afterwards.
func testMarkSeenFirstWriterWins(t *testing.T, a, b store.Store) {
	ctx := t.Context()
	handles := []store.Store{a, b}
	const n = 16
	for round := range 5 {
		id := "id" + strconv.Itoa(round)
		exp := future()
		firsts, errs := race(n, func(i int) (bool, error) {
			return handles[i%2].MarkSeen(ctx, id, exp)
		})
		count := 0
		for i, first := range firsts {
			require.NoError(t, errs[i])
			if first {
				count++
			}
		}
		require.Equal(t, 1, count, "round %d: MarkSeen callers that saw the id first", round)
		for _, h := range handles {
			first, err := h.MarkSeen(ctx, id, exp)
			require.NoError(t, err)
			require.False(t, first)
		}
	}
}

func testExpiryAcross(t *testing.T, a, b store.Store) {
	ctx := t.Context()
	cas(t, a, "k", 0, "v", past())
	requireAbsent(t, b, "k")
	cas(t, b, "k", 0, "v2", future())
	requireEntry(t, a, "k", []byte("v2"), 1)

	first, err := a.MarkSeen(ctx, "id", past())
	require.NoError(t, err)
	require.True(t, first)
	first, err = b.MarkSeen(ctx, "id", future())
	require.NoError(t, err)
	require.True(t, first, "an id recorded already expired through a is new through b")
}
