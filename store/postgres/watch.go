package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dynkey/dynkey/store"
)

var _ store.Watcher = (*Store)(nil)

// watchers are the keys this handle watches, so that its CompareAndSwap
// notifies their changes.
type watchers struct {
	mu   sync.Mutex
	keys map[string]int
}

func (w *watchers) add(key string, n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.keys == nil {
		w.keys = map[string]int{}
	}
	w.keys[key] += n
	if w.keys[key] <= 0 {
		delete(w.keys, key)
	}
}

func (w *watchers) has(key string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.keys[key] > 0
}

// notifyChannel is the LISTEN/NOTIFY channel of the store's schema.
func notifyChannel(schema string) string {
	if schema == "" {
		return "dynkey_changed"
	}
	h := sha256.Sum256([]byte(schema))
	return "dynkey_changed_" + hex.EncodeToString(h[:8])
}

// Watch implements [store.Watcher] with LISTEN/NOTIFY on its own
// connection (outside the pool). A CompareAndSwap through a handle watching
// key calls pg_notify in the same statement as its write, so the
// notification is sent if and only if the swap commits. The connection is
// re-established after an error (the channel then receives once, since a
// change may have been missed) until ctx is done.
func (s *Store) Watch(ctx context.Context, key string) <-chan struct{} {
	out := make(chan struct{}, 1)
	s.watch.add(key, 1)
	want := hex.EncodeToString([]byte(key))
	signal := func() {
		select {
		case out <- struct{}{}:
		default:
		}
	}
	go func() {
		defer close(out)
		defer s.watch.add(key, -1)
		for ctx.Err() == nil {
			s.listen(ctx, want, signal)
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return out
}

// listen runs one LISTEN session until it fails or ctx is done.
func (s *Store) listen(ctx context.Context, want string, signal func()) {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.channel}.Sanitize()); err != nil {
		return
	}
	signal()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return
		}
		if n.Payload == want {
			signal()
		}
	}
}
