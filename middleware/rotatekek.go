package middleware

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/dynkey/dynkey/store"
)

// ErrStoreCannotList is returned by RotateKEK for a store that does not
// implement store.Lister: without listing its sessions they cannot all be
// re-sealed.
var ErrStoreCannotList = errors.New("dynkey/middleware: the store cannot list its keys (store.Lister), so RotateKEK cannot re-seal every session")

// sessionPrefix is the store key prefix of every session record.
const sessionPrefix = "dynkey/session/"

// RotateKEK re-seals everything this middleware keeps in the store under
// next (32 bytes): the key ring's secrets (identity key, server private
// keys, token keys) and the MACs of the ring and of every session. From the
// call on, this instance writes under next; until it returns it also
// reads records under its previous key-encryption keys, and afterwards it
// reads only next's, so a stolen old KEK opens and forges nothing that
// this store holds. Finally it asks the store to wipe overwritten values
// from its files (store.Scrubber).
//
// next may be the configured KeyEncryptionKey itself: that re-seals
// under it what the store still holds under PreviousKeyEncryptionKeys.
//
// In a cluster, first restart every instance with KeyEncryptionKey set to
// the new key and the old one in PreviousKeyEncryptionKeys, then call
// RotateKEK(ctx, next) on one instance, then drop
// PreviousKeyEncryptionKeys from the configuration. An instance still
// holding only the old key refuses the re-sealed ring (logged, requests
// answered "unavailable") until it is restarted with the new one. The store
// must implement store.Lister (ErrStoreCannotList otherwise, before
// anything changes). RotateKEK is safe to call while serving and safe to
// call again after a failure; concurrent calls on one instance run one at a
// time.
func (m *Middleware) RotateKEK(ctx context.Context, next []byte) error {
	lister, ok := m.o.Store.(store.Lister)
	if !ok {
		return ErrStoreCannotList
	}
	nk, err := newKEK(next)
	if err != nil {
		return err
	}
	m.kekMu.Lock()
	defer m.kekMu.Unlock()
	old := m.keks.Load()
	during := &kekSet{current: nk, accepted: []*kek{nk}}
	for _, k := range old.accepted {
		during.add(k)
	}
	m.keks.Store(during)

	if err := m.updateRing(ctx, func(rec *ringRecord) (bool, error) {
		return true, m.resealRing(rec)
	}); err != nil {
		return fmt.Errorf("dynkey/middleware: re-sealing the key ring: %w", err)
	}
	n, err := m.resealSessions(ctx, lister)
	if err != nil {
		return fmt.Errorf("dynkey/middleware: re-sealing sessions (%d done): %w", n, err)
	}
	m.keks.Store(&kekSet{current: nk, accepted: []*kek{nk}})
	m.scrubPending.Store(true)
	if err := m.scrub(ctx); err != nil {
		return err
	}
	m.log.Info("dynkey: key-encryption key rotated; the store is re-sealed", "sessions", n)
	return nil
}

// resealSessions rewrites every session not yet authenticated under the
// current KEK, with compare-and-swap (a concurrent client key rotation
// wins, and is then re-read). It returns how many it rewrote.
func (m *Middleware) resealSessions(ctx context.Context, lister store.Lister) (int, error) {
	n, after := 0, ""
	for {
		keys, err := lister.ListKeys(ctx, sessionPrefix, after, 256)
		if err != nil {
			return n, err
		}
		if len(keys) == 0 {
			return n, nil
		}
		for _, key := range keys {
			done, err := m.resealSession(ctx, key)
			if err != nil {
				return n, err
			}
			if done {
				n++
			}
		}
		after = keys[len(keys)-1]
	}
}

func (m *Middleware) resealSession(ctx context.Context, key string) (bool, error) {
	if !strings.HasPrefix(key, sessionPrefix) {
		return false, nil
	}
	for range 8 {
		e, err := m.o.Store.Get(ctx, key)
		if errors.Is(err, store.ErrNotFound) {
			return false, nil // ended meanwhile
		}
		if err != nil {
			return false, err
		}
		ks := m.keks.Load()
		var sr sessionRecord
		k, err := ks.unmarshalRecord(key, e.Value, &sr)
		if err != nil {
			// A refused record stays refused; it is not re-sealed (that
			// would launder it). It can never be used: delete it.
			m.log.Error("dynkey: deleting a session record that fails verification while re-sealing", "record", key, "err", err)
			return false, m.o.Store.Delete(ctx, key)
		}
		if k == ks.current {
			return false, nil
		}
		b, err := ks.marshalRecord(key, &sr)
		if err != nil {
			return false, err
		}
		if _, err := m.o.Store.CompareAndSwap(ctx, key, e.Version, b, e.Expires); errors.Is(err, store.ErrConflict) {
			continue
		} else if err != nil {
			return false, err
		}
		return true, nil
	}
	return false, fmt.Errorf("dynkey/middleware: session %s kept changing", key)
}
