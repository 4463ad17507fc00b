package redis

import (
	"context"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/dynkey/dynkey/store"
)

var _ store.Watcher = (*Store)(nil)

// watchers are the keys this handle watches, so that its CompareAndSwap
// publishes their changes.
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

// watchChannel is the pub/sub channel of changes to key.
func (s *Store) watchChannel(key string) string { return s.prefix + "changed:" + key }

// Watch implements [store.Watcher] with Redis pub/sub: it subscribes to the
// channel Prefix+"changed:"+key, on which a CompareAndSwap through a handle
// watching key publishes after it succeeded (one PUBLISH more for the key
// ring's rare writes, none for sessions, which nobody watches). On a Redis
// Cluster an ordinary PUBLISH reaches the subscribers of every node. A lost
// publish (the writer died between its swap and its PUBLISH, or the
// subscription was reconnecting) is caught by the middleware's polling; the
// channel also receives each time the subscription is (re)established.
func (s *Store) Watch(ctx context.Context, key string) <-chan struct{} {
	out := make(chan struct{}, 1)
	s.watch.add(key, 1)
	ps := s.c.Subscribe(ctx, s.watchChannel(key))
	signal := func() {
		select {
		case out <- struct{}{}:
		default:
		}
	}
	// Receive does not return when its context ends: closing the
	// subscription does.
	stop := context.AfterFunc(ctx, func() { ps.Close() })
	go func() {
		defer close(out)
		defer s.watch.add(key, -1)
		defer stop()
		defer ps.Close()
		for ctx.Err() == nil {
			msg, err := ps.Receive(ctx)
			if err != nil {
				// go-redis reconnects on the next Receive; do not spin
				// while the server is down.
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
				continue
			}
			switch msg.(type) {
			case *goredis.Message, *goredis.Subscription:
				signal()
			}
		}
	}()
	return out
}

// publishChange tells the watchers of key that it changed, if this handle
// watches it. Best effort: the swap has succeeded whatever happens here.
func (s *Store) publishChange(ctx context.Context, key string) {
	if !s.watch.has(key) {
		return
	}
	_ = s.c.Publish(ctx, s.watchChannel(key), "").Err()
}
