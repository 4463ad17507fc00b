package middleware

import (
	"context"
	"time"

	"github.com/dynkey/dynkey/store"
)

// Propagation of the key ring between instances (docs/DEPLOYMENT.md,
// "Propagation"). Each instance keeps the ring in memory and re-reads it
// (one Get, decoded only when its version changed):
//
//   - at once when the store says the ring changed (store.Watcher: Redis
//     pub/sub, PostgreSQL LISTEN/NOTIFY);
//   - every RingPollInterval, whatever the store, so a lost notification
//     costs at most that long;
//   - when a request names a key id or a token key this instance does not
//     know (reloadRateLimited: at once after a reload that found a newer
//     ring, else at most every 100ms; requests meanwhile wait for the reload
//     in flight), and before using a snapshot older than ServerKeyGrace
//     (keyFor).

// defaultRingPollInterval is Options.RingPollInterval's default: well
// inside the client's default heartbeat interval (1m).
const defaultRingPollInterval = 5 * time.Second

// startSync starts the goroutine that keeps the ring in sync with the
// store, until Close.
func (m *Middleware) startSync() {
	interval := m.o.RingPollInterval
	if interval == 0 {
		interval = defaultRingPollInterval
	}
	w, watches := m.o.Store.(store.Watcher)
	if interval < 0 && !watches {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.syncing.Go(func() {
		<-m.stop
		cancel()
	})
	var changed <-chan struct{}
	if watches {
		changed = w.Watch(ctx, ringKey)
	}
	var tick <-chan time.Time
	if interval > 0 {
		t := time.NewTicker(interval)
		tick = t.C
		context.AfterFunc(ctx, func() { t.Stop() })
	}
	m.syncing.Go(func() {
		for {
			select {
			case <-ctx.Done():
				if changed != nil {
					for range changed { // until the watch released its resources
					}
				}
				return
			case _, ok := <-changed:
				if !ok {
					changed = nil
					continue
				}
			case <-tick:
			}
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if err := m.reload(rctx); err != nil && ctx.Err() == nil {
				m.log.Debug("dynkey: syncing the key ring", "err", err)
			}
			cancel()
		}
	})
}
