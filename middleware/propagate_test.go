package middleware

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/store"
	"github.com/dynkey/dynkey/store/memory"
	"github.com/dynkey/dynkey/wire"
)

// TestUnknownKeyReload: instance B learns keys instance A rotated in when a
// request names them, even when rotations follow each other closely (no
// time passes on the fake clock), and every one of many concurrent requests
// naming the new key finds it. A made-up key id reloads once, then not again
// within 100ms.
//
// Verified: with the previous rule (one reload per second, requests during a
// reload not waiting) the second rotation's key and most concurrent
// requests were refused.
func TestUnknownKeyReload(t *testing.T) {
	ctx := context.Background()
	clk := newMTClock()
	st := &mtCountingStore{Store: memory.New()}
	open := func() *Middleware {
		m, err := New(Options{Authenticator: mtUsers(t), Store: st, KeyEncryptionKey: mtKEK(8), MaintainInterval: -1, RingPollInterval: -1, Now: clk.Now, Logger: mtQuiet})
		require.NoError(t, err)
		t.Cleanup(func() { m.Close() })
		return m
	}
	a, b := open(), open()
	for round := range 3 {
		require.NoError(t, a.Rotate(ctx))
		id := a.ring.Load().primary.id
		var wg sync.WaitGroup
		found := make([]bool, 16)
		for i := range found {
			wg.Go(func() {
				k, err := b.keyFor(ctx, id)
				found[i] = err == nil && k != nil
			})
		}
		wg.Wait()
		for i, f := range found {
			require.True(t, f, "round %d: request %d did not find the new key", round, i)
		}
	}
	// A made-up id: one reload, then none within 100ms.
	var bogus wire.KeyID
	bogus[0] = 0xAA
	before := st.gets.Load()
	for range 10 {
		k, err := b.keyFor(ctx, bogus)
		require.NoError(t, err)
		require.Nil(t, k)
	}
	require.Equal(t, int64(1), st.gets.Load()-before, "made-up ids reloaded the ring more than once")
}

// mtCountingStore counts Get calls.
type mtCountingStore struct {
	store.Store
	gets atomic.Int64
}

func (s *mtCountingStore) Get(ctx context.Context, key string) (store.Entry, error) {
	s.gets.Add(1)
	return s.Store.Get(ctx, key)
}
