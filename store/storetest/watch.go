package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/store"
)

// RunWatch checks a store's [store.Watcher] across two handles on the same
// data, as two server instances have: a watch receives once established,
// again after the other handle (itself watching the key) swaps it — a
// creation and an update — and its channel is closed once its context is
// done. open returns the two handles; both must implement store.Watcher.
func RunWatch(t *testing.T, open func(t *testing.T) (a, b store.Store)) {
	a, b := open(t)
	wa, ok := a.(store.Watcher)
	require.True(t, ok, "the store does not implement store.Watcher")
	wb := b.(store.Watcher)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	const key = "dynkey/ring"
	cha := wa.Watch(ctx, key)
	chb := wb.Watch(ctx, key)
	receive := func(ch <-chan struct{}, what string) {
		t.Helper()
		select {
		case _, ok := <-ch:
			require.True(t, ok, "%s: channel closed", what)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no notification within 10s", what)
		}
	}
	receive(cha, "a established")
	receive(chb, "b established")

	v, err := b.CompareAndSwap(ctx, key, 0, []byte("1"), time.Time{})
	require.NoError(t, err)
	receive(cha, "a after b created the key")
	_, err = b.CompareAndSwap(ctx, key, v, []byte("2"), time.Time{})
	require.NoError(t, err)
	receive(cha, "a after b updated the key")

	// Swaps of keys nobody watches are plain swaps and still work.
	_, err = b.CompareAndSwap(ctx, "other", 0, []byte("x"), time.Time{})
	require.NoError(t, err)

	cancel()
	for _, ch := range []<-chan struct{}{cha, chb} {
		deadline := time.After(10 * time.Second)
	drain:
		for {
			select {
			case _, ok := <-ch:
				if !ok {
					break drain
				}
			case <-deadline:
				t.Fatal("the channel was not closed after its context ended")
			}
		}
	}
}
