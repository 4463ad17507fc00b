// Package memory is a [store.Store] kept in the memory of one process.
//
// It suits tests and single-instance deployments: the state is lost on
// restart (every session and server key with it) and is not shared with
// other processes, so several server instances must use a shared store such
// as [github.com/dynkey/dynkey/store/sqlite] instead.
package memory

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dynkey/dynkey/store"
)

// sweepMin is the least number of writes between two sweeps of expired
// entries. A sweep also waits for at least as many writes as there are
// entries, so its cost is amortized to O(1) per write and expired entries
// never outnumber the entries written since the last sweep.
const sweepMin = 1024

// Store is an in-process [store.Store]. The zero value is not usable; call
// [New].
type Store struct {
	mu     sync.Mutex
	kv     map[string]entry
	seen   map[string]time.Time // id -> expiry (zero: never)
	writes int                  // writes since the last sweep
}

type entry struct {
	value   []byte
	version uint64
	expires time.Time
}

var (
	_ store.Store  = (*Store)(nil)
	_ store.Lister = (*Store)(nil)
)

// New returns an empty store.
func New() *Store {
	return &Store{kv: make(map[string]entry), seen: make(map[string]time.Time)}
}

// expired reports whether an expiry has passed at now; zero never expires.
func expired(expires, now time.Time) bool {
	return !expires.IsZero() && !now.Before(expires)
}

// Get implements [store.Store].
func (s *Store) Get(ctx context.Context, key string) (store.Entry, error) {
	if err := ctx.Err(); err != nil {
		return store.Entry{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.kv[key]
	if !ok || expired(e.expires, time.Now()) {
		return store.Entry{}, store.ErrNotFound
	}
	return store.Entry{Value: bytes.Clone(e.value), Version: e.version, Expires: e.expires}, nil
}

// CompareAndSwap implements [store.Store].
func (s *Store) CompareAndSwap(ctx context.Context, key string, oldVersion uint64, value []byte, expires time.Time) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var current uint64
	if e, ok := s.kv[key]; ok && !expired(e.expires, now) {
		current = e.version
	}
	if current != oldVersion {
		return 0, store.ErrConflict
	}
	if old, ok := s.kv[key]; ok {
		clear(old.value) // no copy of a destroyed secret lingers in memory
	}
	s.kv[key] = entry{value: bytes.Clone(value), version: oldVersion + 1, expires: expires.Round(0)}
	s.wrote(now)
	return oldVersion + 1, nil
}

// Delete implements [store.Store].
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.kv[key]; ok {
		clear(old.value)
	}
	delete(s.kv, key)
	return nil
}

// ListKeys implements [store.Lister].
func (s *Store) ListKeys(ctx context.Context, prefix, after string, limit int) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := time.Now()
	s.mu.Lock()
	var keys []string
	for k, e := range s.kv {
		if strings.HasPrefix(k, prefix) && k > after && !expired(e.expires, now) {
			keys = append(keys, k)
		}
	}
	s.mu.Unlock()
	slices.Sort(keys)
	if len(keys) > limit {
		keys = keys[:max(limit, 0)]
	}
	return keys, nil
}

// MarkSeen implements [store.Store].
func (s *Store) MarkSeen(ctx context.Context, id string, expires time.Time) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if exp, ok := s.seen[id]; ok && !expired(exp, now) {
		return false, nil
	}
	s.seen[id] = expires.Round(0)
	s.wrote(now)
	return true, nil
}

// Close implements [store.Store]. It does nothing: the store stays usable
// and its memory is reclaimed by the garbage collector once unreferenced.
func (s *Store) Close() error { return nil }

// wrote counts a write and, when enough writes have accumulated, removes
// expired entries. s.mu must be held.
func (s *Store) wrote(now time.Time) {
	s.writes++
	if s.writes < sweepMin || s.writes < len(s.kv)+len(s.seen) {
		return
	}
	s.writes = 0
	for k, e := range s.kv {
		if expired(e.expires, now) {
			delete(s.kv, k)
		}
	}
	for id, exp := range s.seen {
		if expired(exp, now) {
			delete(s.seen, id)
		}
	}
}
