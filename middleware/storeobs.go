package middleware

import (
	"context"
	"time"

	"github.com/dynkey/dynkey/store"
)

// observedStore is the store every Middleware uses: Options.Store with each
// operation timed for a [StoreObserver] (when Options.Observer is one) and
// each failure logged (rate-limited per operation, see logging.go). It keeps
// the store's optional interfaces: observeStore returns a type that
// implements store.Lister or store.Scrubber only when the wrapped store
// does.
type observedStore struct {
	s   store.Store
	m   *Middleware
	obs StoreObserver // nil: no timing
}

// observeStore wraps s for m. The result implements exactly the optional
// interfaces s implements (store.Lister, store.Scrubber, store.Watcher):
// the middleware finds them by type assertion. A new optional interface of
// package store must be added here (TestObservedStoreKeepsOptionalInterfaces
// lists them).
func observeStore(s store.Store, observer Observer, m *Middleware) store.Store {
	obs, _ := observer.(StoreObserver)
	o := &observedStore{s: s, m: m, obs: obs}
	l, isLister := s.(store.Lister)
	sc, isScrubber := s.(store.Scrubber)
	w, isWatcher := s.(store.Watcher)
	ol, osc, ow := observedLister{o, l}, observedScrubber{o, sc}, observedWatcher{w}
	type (
		L = observedLister
		S = observedScrubber
		W = observedWatcher
	)
	switch {
	case isLister && isScrubber && isWatcher:
		return &struct {
			*observedStore
			L
			S
			W
		}{o, ol, osc, ow}
	case isLister && isScrubber:
		return &struct {
			*observedStore
			L
			S
		}{o, ol, osc}
	case isLister && isWatcher:
		return &struct {
			*observedStore
			L
			W
		}{o, ol, ow}
	case isScrubber && isWatcher:
		return &struct {
			*observedStore
			S
			W
		}{o, osc, ow}
	case isLister:
		return &struct {
			*observedStore
			L
		}{o, ol}
	case isScrubber:
		return &struct {
			*observedStore
			S
		}{o, osc}
	case isWatcher:
		return &struct {
			*observedStore
			W
		}{o, ow}
	}
	return o
}

func (o *observedStore) start() time.Time {
	if o.obs == nil {
		return time.Time{}
	}
	return time.Now()
}

func (o *observedStore) done(ctx context.Context, op string, start time.Time, err error) {
	if o.obs != nil {
		o.obs.StoreDone(op, time.Since(start), err)
	}
	if StoreFailed(err) {
		o.m.logStoreError(ctx, op, err)
	}
}

func (o *observedStore) Get(ctx context.Context, key string) (store.Entry, error) {
	t := o.start()
	e, err := o.s.Get(ctx, key)
	o.done(ctx, StoreGet, t, err)
	return e, err
}

func (o *observedStore) CompareAndSwap(ctx context.Context, key string, old uint64, value []byte, expires time.Time) (uint64, error) {
	t := o.start()
	v, err := o.s.CompareAndSwap(ctx, key, old, value, expires)
	o.done(ctx, StoreCompareAndSwap, t, err)
	return v, err
}

func (o *observedStore) Delete(ctx context.Context, key string) error {
	t := o.start()
	err := o.s.Delete(ctx, key)
	o.done(ctx, StoreDelete, t, err)
	return err
}

func (o *observedStore) MarkSeen(ctx context.Context, id string, expires time.Time) (bool, error) {
	t := o.start()
	first, err := o.s.MarkSeen(ctx, id, expires)
	o.done(ctx, StoreMarkSeen, t, err)
	return first, err
}

// Close closes the wrapped store.
func (o *observedStore) Close() error { return o.s.Close() }

type observedLister struct {
	o *observedStore
	l store.Lister
}

func (x observedLister) ListKeys(ctx context.Context, prefix, after string, limit int) ([]string, error) {
	t := x.o.start()
	keys, err := x.l.ListKeys(ctx, prefix, after, limit)
	x.o.done(ctx, StoreListKeys, t, err)
	return keys, err
}

type observedScrubber struct {
	o  *observedStore
	sc store.Scrubber
}

func (x observedScrubber) Scrub(ctx context.Context) error {
	t := x.o.start()
	err := x.sc.Scrub(ctx)
	x.o.done(ctx, StoreScrub, t, err)
	return err
}

// observedWatcher passes Watch through: a watch is long-lived, not an
// operation to time.
type observedWatcher struct{ w store.Watcher }

func (x observedWatcher) Watch(ctx context.Context, key string) <-chan struct{} {
	return x.w.Watch(ctx, key)
}

var (
	_ store.Watcher  = observedWatcher{}
	_ store.Store    = (*observedStore)(nil)
	_ store.Lister   = observedLister{}
	_ store.Scrubber = observedScrubber{}
)

// unwrap returns the wrapped store.
func (o *observedStore) unwrap() store.Store { return o.s }

// unwrapStore returns the store observeStore wrapped, or s itself.
func unwrapStore(s store.Store) store.Store {
	if w, ok := s.(interface{ unwrap() store.Store }); ok {
		return w.unwrap()
	}
	return s
}
