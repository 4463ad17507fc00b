package memory_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/store"
	"github.com/dynkey/dynkey/store/memory"
	"github.com/dynkey/dynkey/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s := memory.New()
		t.Cleanup(func() { require.NoError(t, s.Close()) })
		return s
	})
}

// TestConformanceShared runs the cross-handle tests on one store used as
// both handles: a memory store is shared within its process only.
func TestConformanceShared(t *testing.T) {
	storetest.RunShared(t, func(t *testing.T) (store.Store, store.Store) {
		s := memory.New()
		t.Cleanup(func() { require.NoError(t, s.Close()) })
		return s, s
	})
}

// TestSweep checks that expired entries do not accumulate: the store keeps
// no more than the live entries plus the writes since the last sweep.
func TestSweep(t *testing.T) {
	ctx := t.Context()
	s := memory.New()
	past := time.Now().Add(-time.Second)
	for i := range 100_000 {
		id := strconv.Itoa(i)
		_, err := s.MarkSeen(ctx, id, past)
		require.NoError(t, err)
		_, err = s.CompareAndSwap(ctx, id, 0, []byte("v"), past)
		require.NoError(t, err)
	}
	require.LessOrEqual(t, memory.Len(s), 2*1024)
}

func Example() {
	ctx := context.Background()
	s := memory.New()
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
