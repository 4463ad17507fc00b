package sqlite_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/store"
	"github.com/dynkey/dynkey/store/sqlite"
	"github.com/dynkey/dynkey/store/storetest"
)

func open(t testing.TB, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(path)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, filepath.Join(t.TempDir(), "dynkey.db"))
	})
}

// TestConformanceShared runs the cross-handle tests on two handles on one
// file, as two server processes on one machine would have.
func TestConformanceShared(t *testing.T) {
	storetest.RunShared(t, func(t *testing.T) (store.Store, store.Store) {
		path := filepath.Join(t.TempDir(), "dynkey.db")
		return open(t, path), open(t, path)
	})
}

// TestConformanceSharedFile runs the suite against one of two handles on
// the same file, the other handle writing to unrelated keys meanwhile.
func TestConformanceSharedFile(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		path := filepath.Join(t.TempDir(), "dynkey.db")
		s := open(t, path)
		other := open(t, path)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				_, err := other.CompareAndSwap(ctx, "sqlite_test background", uint64(i), []byte("x"), time.Time{})
				if ctx.Err() == nil && err != nil {
					t.Errorf("other handle: %v", err)
					return
				}
				time.Sleep(time.Millisecond)
			}
		})
		// Registered after the handles' Close, so it runs before them.
		t.Cleanup(func() { cancel(); wg.Wait() })
		return s
	})
}

func TestDurable(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "dynkey.db")
	exp := time.Now().Add(time.Hour)

	s, err := sqlite.Open(path)
	require.NoError(t, err)
	_, err = s.CompareAndSwap(ctx, "k", 0, []byte("v1"), time.Time{})
	require.NoError(t, err)
	_, err = s.CompareAndSwap(ctx, "k", 1, []byte("v2"), exp)
	require.NoError(t, err)
	first, err := s.MarkSeen(ctx, "id", exp)
	require.NoError(t, err)
	require.True(t, first)
	require.NoError(t, s.Close())

	s = open(t, path)
	e, err := s.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, []byte("v2"), e.Value)
	require.Equal(t, uint64(2), e.Version)
	require.True(t, e.Expires.Equal(exp), "expires: got %v, want %v", e.Expires, exp)
	first, err = s.MarkSeen(ctx, "id", exp)
	require.NoError(t, err)
	require.False(t, first, "seen id forgotten across reopen")
	v, err := s.CompareAndSwap(ctx, "k", 2, []byte("v3"), time.Time{})
	require.NoError(t, err)
	require.Equal(t, uint64(3), v)
}

// TestTwoHandles races CompareAndSwap and MarkSeen through two stores opened
// on the same file, as two server processes would.
func TestTwoHandles(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "dynkey.db")
	handles := []*sqlite.Store{open(t, path), open(t, path)}

	for round := range 20 {
		key := "k" + strconv.Itoa(round)
		const n = 8
		var (
			wg     sync.WaitGroup
			start  = make(chan struct{})
			errs   = make([]error, 2*n)
			firsts = make([]bool, 2*n)
		)
		for i := range 2 * n {
			s := handles[i%2]
			wg.Go(func() {
				<-start
				_, errs[i] = s.CompareAndSwap(ctx, key, 0, []byte(strconv.Itoa(i)), time.Time{})
				var err error
				firsts[i], err = s.MarkSeen(ctx, key, time.Now().Add(time.Hour))
				if err != nil {
					t.Errorf("MarkSeen: %v", err)
				}
			})
		}
		close(start)
		wg.Wait()
		wins, seen := 0, 0
		for i, err := range errs {
			if err == nil {
				wins++
				for _, s := range handles {
					e, err := s.Get(ctx, key)
					require.NoError(t, err)
					require.Equal(t, strconv.Itoa(i), string(e.Value))
				}
			} else {
				require.ErrorIs(t, err, store.ErrConflict)
			}
			if firsts[i] {
				seen++
			}
		}
		require.Equal(t, 1, wins, "round %d: CompareAndSwap winners", round)
		require.Equal(t, 1, seen, "round %d: MarkSeen firsts", round)
	}
}

func TestOddPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a b?c#d%20e")
	require.NoError(t, os.Mkdir(dir, 0o700))
	path := filepath.Join(dir, "x?_pragma=journal_mode(DELETE)")
	s := open(t, path)
	_, err := s.CompareAndSwap(t.Context(), "k", 0, []byte("v"), time.Time{})
	require.NoError(t, err)
	_, err = os.Stat(path)
	require.NoError(t, err, "database not at the given path")
}

func TestSweep(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "dynkey.db")
	s := open(t, path)
	past := time.Now().Add(-time.Second)
	for i := range 1000 {
		_, err := s.MarkSeen(ctx, strconv.Itoa(i), past)
		require.NoError(t, err)
	}
	_, err := s.CompareAndSwap(ctx, "expired", 0, []byte("v"), past)
	require.NoError(t, err)
	_, err = s.CompareAndSwap(ctx, "live", 0, []byte("v"), time.Time{})
	require.NoError(t, err)

	// Open sweeps; the 1000th write above swept too.
	s2 := open(t, path)
	_, err = s2.Get(ctx, "live")
	require.NoError(t, err)
	require.Equal(t, 1, sqlite.Rows(t, s2, "kv"))
	require.Equal(t, 0, sqlite.Rows(t, s2, "replay_log"))
}

func ExampleOpen() {
	dir, err := os.MkdirTemp("", "dynkey")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	ctx := context.Background()
	s, err := sqlite.Open(filepath.Join(dir, "dynkey.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	// Create the key: version 0 means "absent".
	v, err := s.CompareAndSwap(ctx, "counter", 0, []byte("1"), time.Time{})
	fmt.Println(v, err)

	// Update it from the version just read.
	e, _ := s.Get(ctx, "counter")
	v, err = s.CompareAndSwap(ctx, "counter", e.Version, []byte("2"), time.Time{})
	fmt.Println(v, err)

	// A writer still holding the old version loses.
	_, err = s.CompareAndSwap(ctx, "counter", e.Version, []byte("2"), time.Time{})
	fmt.Println(errors.Is(err, store.ErrConflict))
	// Output:
	// 1 <nil>
	// 2 <nil>
	// true
}

// Scrub leaves no copy of an overwritten value in the database file, its
// WAL or its -shm file, even while the store stays open.
func TestScrub(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "dynkey.db")
	s := open(t, path)
	secret := []byte("sealed-private-key:" + strings.Repeat("0123456789abcdef", 8))
	_, err := s.CompareAndSwap(ctx, "k", 0, secret, time.Time{})
	require.NoError(t, err)
	_, err = s.CompareAndSwap(ctx, "k", 1, []byte("destroyed"), time.Time{})
	require.NoError(t, err)
	onDisk := func() []string {
		var in []string
		for _, p := range []string{path, path + "-wal", path + "-shm"} {
			b, err := os.ReadFile(p)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			require.NoError(t, err)
			if bytes.Contains(b, secret) {
				in = append(in, filepath.Base(p))
			}
		}
		return in
	}
	require.NotEmpty(t, onDisk(), "control: the overwritten value is still in the files before Scrub")
	require.NoError(t, s.Scrub(ctx))
	require.Empty(t, onDisk())
	e, err := s.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "destroyed", string(e.Value))
}

// Errors name the database file.
func TestErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "dynkey.db")
	require.NoError(t, os.WriteFile(path, bytes.Repeat([]byte("not a database "), 100), 0o600))
	_, err := sqlite.Open(path)
	require.ErrorContains(t, err, path)

	// A database whose pages are damaged after it was opened.
	path = filepath.Join(dir, "damaged.db")
	s, err := sqlite.Open(path)
	require.NoError(t, err)
	for i := range 200 {
		_, err := s.CompareAndSwap(t.Context(), "k"+strconv.Itoa(i), 0, bytes.Repeat([]byte{'v'}, 500), time.Time{})
		require.NoError(t, err)
	}
	require.NoError(t, s.Close())
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	for i := 4096; i < len(b); i++ {
		b[i] = 0xA5
	}
	require.NoError(t, os.WriteFile(path, b, 0o600))
	s, err = sqlite.Open(path)
	if err == nil {
		defer s.Close()
		_, err = s.Get(t.Context(), "k1")
	}
	require.Error(t, err)
	require.ErrorContains(t, err, path)
	t.Log(err)
}
