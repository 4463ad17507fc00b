// Package store defines where dynkey keeps its state: sessions (with the
// client's current and previous public key), the server key ring (private
// keys sealed under a key-encryption key before they reach the store), login
// throttling counters and the ids of messages already seen.
//
// A [Store] is deliberately small: a versioned key-value map with
// compare-and-swap, and an insert-if-absent set for replay ids. The
// middleware serializes its records itself, so every store holds the same
// bytes and a store implementation has no dynkey logic of its own. Stores
// shared by several server instances (SQLite on one box, Redis, PostgreSQL)
// make the instances agree: a key rotation or a client key replacement is a
// CompareAndSwap, so two instances racing end with exactly one winner.
//
// Every implementation passes the conformance suite in
// github.com/dynkey/dynkey/store/storetest.
package store

import (
	"context"
	"errors"
	"time"
)

var (
	// ErrNotFound is returned by Get when the key is absent or expired.
	ErrNotFound = errors.New("dynkey/store: not found")

	// ErrConflict is returned by CompareAndSwap when the stored version is
	// not the expected one (another writer won the race).
	ErrConflict = errors.New("dynkey/store: version conflict")
)

// Entry is a stored value with its version.
type Entry struct {
	Value   []byte
	Version uint64    // 1 for a new key, incremented by each successful swap
	Expires time.Time // zero: never
}

// Store is the state shared by all instances of a dynkey server. All methods
// are safe for concurrent use, and a value returned by Get is the caller's to
// keep (stores never retain or modify it).
type Store interface {
	// Get returns the entry under key, or ErrNotFound if it is absent or its
	// expiry has passed.
	Get(ctx context.Context, key string) (Entry, error)

	// CompareAndSwap stores value under key if the current version is
	// oldVersion, where 0 means "absent or expired". It returns the new
	// version (oldVersion+1), or ErrConflict if another writer got there
	// first; on ErrConflict nothing is written. A zero expires keeps the
	// entry until it is swapped or deleted.
	CompareAndSwap(ctx context.Context, key string, oldVersion uint64, value []byte, expires time.Time) (newVersion uint64, err error)

	// Delete removes key. Deleting an absent key is not an error.
	Delete(ctx context.Context, key string) error

	// MarkSeen records id until expires and reports whether it was new. It
	// is atomic across all users of the store: of many concurrent calls with
	// the same unexpired id, exactly one returns true.
	MarkSeen(ctx context.Context, id string, expires time.Time) (first bool, err error)

	// Close releases the store's resources.
	Close() error
}

// Scrubber is an optional interface of a Store whose storage may keep
// copies of values that were overwritten or deleted (a database's journal,
// free pages). The middleware calls Scrub after it destroyed a server
// private key, and after re-sealing the store under a new key-encryption
// key, so that forward secrecy holds on disk: once Scrub returns nil, no
// value the store no longer holds can be read back from its files.
type Scrubber interface {
	Scrub(ctx context.Context) error
}

// Lister is an optional interface of a Store that can list its keys. The
// middleware needs it to re-seal every session under a new key-encryption
// key (middleware.RotateKEK).
type Lister interface {
	// ListKeys returns, in ascending byte order, at most limit keys that
	// start with prefix, are greater than after and have not expired.
	ListKeys(ctx context.Context, prefix, after string, limit int) ([]string, error)
}

// Watcher is an optional interface of a Store that can tell its users when
// another user changed a key, so that every server instance learns a new
// primary server key at once instead of at its next poll. The middleware
// watches its key ring; it still polls, so a Watcher is an optimisation,
// never a condition of correctness.
type Watcher interface {
	// Watch returns a channel that receives a value soon after a successful
	// CompareAndSwap on key through any handle of the store that is itself
	// watching key (every instance of a dynkey cluster watches the ring),
	// and also whenever the watch (re)connects, since a change may have been
	// missed meanwhile. Values are coalesced: one receive may stand for many
	// changes. The channel is closed once ctx is done and the watch has
	// released its resources.
	Watch(ctx context.Context, key string) <-chan struct{}
}
