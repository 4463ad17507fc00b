package middleware

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/dynkey/dynkey/crypto"
	"github.com/dynkey/dynkey/policy"
	"github.com/dynkey/dynkey/store"
	"github.com/dynkey/dynkey/store/memory"
	"github.com/dynkey/dynkey/wire"
)

// initRing loads the ring, creating it (identity and first key) if absent
// — loudly, and only if Options.RequireKeyRing allows — and starts keeping
// it in sync with the store (propagate.go).
func (m *Middleware) initRing(ctx context.Context) error {
	if err := m.loadOrCreateRing(ctx); err != nil {
		return err
	}
	m.startSync()
	return nil
}

func (m *Middleware) loadOrCreateRing(ctx context.Context) error {
	for range 5 {
		err := m.reload(ctx)
		if err == nil {
			r := m.ring.Load()
			if id := m.o.IdentityKey; id != nil && !bytes.Equal(id.Public().(ed25519.PublicKey), r.rec.IdentityPublic) {
				return fmt.Errorf("%w (stored identity %x…): configure the stored one, or move the store aside to start over", ErrIdentityMismatch, r.rec.IdentityPublic[:8])
			}
			if r.tokenPrimary == nil {
				// A ring from before token keys had their own ring.
				if err := m.updateRing(ctx, m.upkeepTokenKeys); err != nil {
					return err
				}
			}
			if p := r.primary; p == nil || !p.legacySince.IsZero() {
				return m.adoptSuite(ctx)
			}
			return nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if m.o.RequireKeyRing {
			return fmt.Errorf("%w (Options.RequireKeyRing is set): is this the right store, and did it lose its state?", ErrNoKeyRing)
		}
		ks := m.keks.Load()
		rec := ringRecord{}
		id, generated := m.o.IdentityKey, false
		if id == nil {
			if _, id, err = ed25519.GenerateKey(m.o.Rand); err != nil {
				return err
			}
			generated = true
		}
		rec.IdentityPublic = id.Public().(ed25519.PublicKey)
		if rec.SealedIdentity, err = ks.seal(m.o.Rand, "identity", "", id.Seed()); err != nil {
			return err
		}
		kr, err := m.newKeyRecord(m.suite)
		if err != nil {
			return err
		}
		rec.Keys = []keyRecord{kr}
		tk, err := m.newTokenKeyRecord(ks)
		if err != nil {
			return err
		}
		rec.TokenKeys = []tokenKeyRecord{tk}
		rec.Epoch = firstEpoch(m.now())
		b, err := ks.marshalRecord(ringKey, &rec)
		if err != nil {
			return err
		}
		if _, err := m.o.Store.CompareAndSwap(ctx, ringKey, 0, b, time.Time{}); err != nil && !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("dynkey/middleware: creating the key ring: %w", err)
		} else if err == nil {
			// State created, not loaded: right on a first start, wrong
			// if a durable store lost its state. Say so loudly (an
			// in-process store starts empty by design: Info).
			level := slog.LevelWarn
			if _, inProcess := unwrapStore(m.o.Store).(*memory.Store); inProcess {
				level = slog.LevelInfo
			}
			m.log.Log(ctx, level, "dynkey: the store held no key ring; created a new one (first start, or the store lost its state: every session is gone and clients log in again; set Options.RequireKeyRing to refuse this)",
				"epoch", rec.Epoch, "identity_generated", generated, "suite", m.suite.Name())
		}
		// On conflict another instance created it first: load theirs.
	}
	return errors.New("dynkey/middleware: could not create the key ring")
}

// reload reads the ring from the store if it changed. A ring that fails
// verification is refused: it is logged, and until a valid ring is read
// this instance answers requests "unavailable" (ringErr) rather than serve
// with keys it can no longer vouch for.
func (m *Middleware) reload(ctx context.Context) error {
	at := m.now()
	e, err := m.o.Store.Get(ctx, ringKey)
	if err != nil {
		return err
	}
	if cur := m.ring.Load(); cur != nil && cur.version == e.Version && m.ringErr.Load() == nil {
		m.syncedAt.Store(at.UnixNano())
		return nil
	}
	r, err := m.verifyRing(e)
	if err != nil {
		if errors.Is(err, ErrRecordRefused) {
			m.log.Error("dynkey: refusing the stored key ring; requests are answered unavailable until a valid one is stored", "record", ringKey, "err", err)
			m.ringErr.Store(&err)
		}
		return err
	}
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()
	if cur := m.ring.Load(); cur == nil || cur.version < r.version {
		// Suites with their own key ring learn new keys before requests
		// can name them, and lose old ones only after requests no longer
		// can.
		m.mirrorKeyRings(r, true)
		r.keyRings = m.keyRings
		m.ring.Store(r)
		m.mirrorKeyRings(r, false)
	}
	m.ringErr.Store(nil)
	m.syncedAt.Store(at.UnixNano())
	return nil
}

// verifyRing verifies and decodes a stored ring entry.
func (m *Middleware) verifyRing(e store.Entry) (*keyRing, error) {
	var rec ringRecord
	if _, err := m.keks.Load().unmarshalRecord(ringKey, e.Value, &rec); err != nil {
		return nil, err
	}
	return m.decodeRing(rec, e.Version)
}

// ringError is the error of the last refused ring, nil once a valid ring was
// read again.
func (m *Middleware) ringError() error {
	if p := m.ringErr.Load(); p != nil {
		return *p
	}
	return nil
}

// mirrorKeyRings mirrors the server keys of suites that keep their own key
// ring (crypto.KeyRingSuite, tink's keyset manager) onto that ring: adding
// (add → set primary) when adding is true, else removing what the snapshot no
// longer holds a private key for (disable → delete). Caller holds reloadMu.
func (m *Middleware) mirrorKeyRings(r *keyRing, adding bool) {
	for name, suite := range r.suites() {
		krs, ok := suite.(crypto.KeyRingSuite)
		if !ok {
			continue
		}
		kr := m.keyRings[name]
		if kr == nil {
			var err error
			if kr, err = krs.NewKeyRing(); err != nil {
				m.log.Error("dynkey: creating the key ring of a suite", "suite", name, "err", err)
				continue
			}
			// Copy on write: request paths read the map without a lock.
			next := map[string]crypto.KeyRing{name: kr}
			for n, v := range m.keyRings {
				next[n] = v
			}
			m.keyRings = next
		}
		have := map[wire.KeyID]bool{}
		for _, id := range kr.IDs() {
			have[id] = true
		}
		if adding {
			for id, k := range r.keys {
				if k.suite.Name() == name && k.private != nil && !have[id] {
					if _, err := kr.Add(k.private); err != nil {
						m.log.Error("dynkey: adding a key to the suite's key ring", "key_id", id.String(), "err", err)
					}
				}
			}
			if p := r.primaries[name]; p != nil {
				if err := kr.SetPrimary(p.id); err != nil {
					m.log.Error("dynkey: setting the primary of the suite's key ring", "key_id", p.id.String(), "err", err)
				}
			}
			continue
		}
		for id := range have {
			if k := r.keys[id]; k == nil || k.private == nil {
				if err := kr.Disable(id); err != nil {
					m.log.Error("dynkey: disabling a key in the suite's key ring", "key_id", id.String(), "err", err)
				}
				if err := kr.Delete(id); err != nil {
					m.log.Error("dynkey: deleting a key from the suite's key ring", "key_id", id.String(), "err", err)
				}
			}
		}
	}
}

// suites returns the suites of the ring's keys.
func (r *keyRing) suites() map[string]crypto.Suite {
	out := map[string]crypto.Suite{}
	for _, k := range r.keys {
		out[k.suite.Name()] = k.suite
	}
	return out
}

// openMessage opens a message sealed to server key sk: through the suite's
// own key ring if it keeps one (so the ring's lifecycle decides what opens),
// with that one key only, else with the key itself.
func (m *Middleware) openMessage(sk *serverKey, from crypto.PublicKey, info string, aad, ct []byte) ([]byte, []byte, error) {
	if kr := m.ring.Load().keyRings[sk.suite.Name()]; kr != nil {
		return kr.Open(sk.id, from, []byte(info), aad, ct)
	}
	return sk.suite.Open(sk.private, from, []byte(info), aad, ct)
}

// unknownKeyReloadInterval is the least time between two reloads of the
// ring for requests naming a key id this instance does not know, after a
// reload that found nothing new: it bounds the store reads that made-up key
// ids can cause (10 a second per instance) without keeping a key another
// instance just rotated in unknown for long.
const unknownKeyReloadInterval = 100 * time.Millisecond

// forcedReload is a reload in flight for requests naming an unknown key id;
// requests arriving meanwhile wait for it rather than be refused.
type forcedReload struct {
	done chan struct{}
	err  error
}

// reloadRateLimited reloads the ring for a request naming a key id (server
// key or token key) this instance does not know — another instance may have
// rotated. Requests arriving while such a reload is in flight wait for it.
// After a reload that found a newer ring the next one may run at once (a
// key named by a client was in the store before the client could learn it,
// so a reload from now finds it); after one that found nothing new, the
// next waits unknownKeyReloadInterval. It returns the reload's error (nil
// when it did not try).
func (m *Middleware) reloadRateLimited(ctx context.Context) error {
	m.reloadMu.Lock()
	if f := m.forced; f != nil {
		m.reloadMu.Unlock()
		select {
		case <-f.done:
			return f.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if m.now().Sub(m.lastReload) < unknownKeyReloadInterval {
		m.reloadMu.Unlock()
		return nil
	}
	f := &forcedReload{done: make(chan struct{})}
	m.forced = f
	m.lastReload = m.now()
	var before uint64
	if r := m.ring.Load(); r != nil {
		before = r.version
	}
	m.reloadMu.Unlock()

	f.err = m.reload(ctx)

	m.reloadMu.Lock()
	m.forced = nil
	if f.err == nil && m.ring.Load().version != before {
		m.lastReload = time.Time{} // it found something: no wait for the next
	}
	m.reloadMu.Unlock()
	close(f.done)
	if f.err != nil {
		m.log.Warn("dynkey: reloading the key ring", "err", f.err)
	}
	return f.err
}

// updateRing applies change to the stored ring with compare-and-swap,
// retrying on conflict with the fresh ring. change returns false to make no
// change. The stored ring is verified before change sees it: a tampered
// ring is never re-authenticated by being rewritten.
func (m *Middleware) updateRing(ctx context.Context, change func(rec *ringRecord) (bool, error)) error {
	for range 8 {
		rec, e, err := m.loadRingRecord(ctx)
		if err != nil {
			if errors.Is(err, ErrRecordRefused) {
				m.log.Error("dynkey: refusing the stored key ring", "record", ringKey, "err", err)
				m.ringErr.Store(&err)
			}
			return err
		}
		changed, err := change(&rec)
		if err != nil {
			return err
		}
		if !changed {
			return m.reload(ctx)
		}
		b, err := m.keks.Load().marshalRecord(ringKey, &rec)
		if err != nil {
			return err
		}
		if _, err := m.o.Store.CompareAndSwap(ctx, ringKey, e.Version, b, time.Time{}); errors.Is(err, store.ErrConflict) {
			continue
		} else if err != nil {
			return err
		}
		return m.reload(ctx)
	}
	return errors.New("dynkey/middleware: key ring update kept conflicting")
}

// Rotate makes a new server key pair primary now, whatever the policy says.
// The old primary becomes decrypt-only for ServerKeyGrace. Safe to call
// from several instances at once: each call adds exactly one key, and the
// ring always has exactly one primary.
func (m *Middleware) Rotate(ctx context.Context) error {
	nk, err := m.newKeyRecord(m.suite)
	if err != nil {
		return err
	}
	err = m.updateRing(ctx, func(rec *ringRecord) (bool, error) {
		m.retirePrimary(rec, m.suite.Name())
		nk.PrimarySince = m.now().UnixMilli()
		rec.Keys = append(rec.Keys, nk)
		rec.Epoch++
		return true, nil
	})
	if err == nil {
		m.observeRotation(SideServer, m.suite.Name(), "manual")
	}
	return err
}

// adoptSuite adds a primary key for the configured suite when the ring has
// none: the deployment switched suites. The other suites' primaries stay
// (their sessions keep working) but are marked legacy, to be retired once
// every session they serve has expired.
//
// Switching back to a suite that is still legacy makes it current again (its
// primary is kept) and the other suites legacy.
func (m *Middleware) adoptSuite(ctx context.Context) error {
	nk, err := m.newKeyRecord(m.suite)
	if err != nil {
		return err
	}
	err = m.updateRing(ctx, func(rec *ringRecord) (bool, error) {
		now := m.now().UnixMilli()
		changed, found := false, false
		for i := range rec.Keys {
			k := &rec.Keys[i]
			switch {
			case k.State != StatePrimary:
			case k.Suite == m.suite.Name():
				found = true // another instance adopted it first, or a switch back
				if k.LegacySince != 0 {
					k.LegacySince, changed = 0, true
				}
			case k.LegacySince == 0:
				k.LegacySince, changed = now, true
			}
		}
		if !found {
			nk.PrimarySince = now
			rec.Keys = append(rec.Keys, nk)
			rec.Epoch++
			changed = true
		}
		return changed, nil
	})
	if err == nil {
		m.log.Info("dynkey: suite changed; new logins use it, existing sessions keep theirs", "suite", m.suite.Name())
	}
	return err
}

// retirePrimary makes the primary key of suite decrypt-only.
func (m *Middleware) retirePrimary(rec *ringRecord, suite string) {
	now := m.now()
	for i := range rec.Keys {
		if rec.Keys[i].State == StatePrimary && rec.Keys[i].Suite == suite {
			rec.Keys[i].State = StateDecryptOnly
			rec.Keys[i].DecryptUntil = now.Add(m.o.ServerKeyGrace).UnixMilli()
			if len(rec.Keys[i].SealedTokenKey) != 0 {
				// A record from before token keys had their own ring:
				// its token key outlives its private key.
				rec.Keys[i].TokenUntil = now.Add(m.o.TokenTTL).UnixMilli()
			}
		}
	}
}

// Maintain runs one round of key upkeep, as the background loop does every
// MaintainInterval: it reloads the ring, rotates the server key pair if the
// policy says so, destroys private keys whose grace window ended and deletes
// records whose tokens have all expired.
func (m *Middleware) Maintain(ctx context.Context) error {
	if err := m.reload(ctx); err != nil {
		return err
	}
	r := m.ring.Load()
	now := m.now()
	for suiteName, p := range r.primaries {
		legacyEnd := p.legacySince.Add(m.o.TokenTTL)
		if !p.legacySince.IsZero() && !now.Before(legacyEnd) {
			continue // retired below, not replaced
		}
		if m.o.ServerPolicy.Decide(policy.Facts{Now: now, Age: now.Sub(p.primarySince), KeyID: p.id[:]}) == policy.Keep {
			continue
		}
		primaryID := p.id.String()
		nk, err := m.newKeyRecord(p.suite)
		if err != nil {
			return err
		}
		// rotated is whether the last run of the closure changed the ring:
		// updateRing returns nil only once that change won its
		// compare-and-swap. A run that lost and was retried against a ring
		// another instance had rotated returns false and resets it.
		rotated := false
		if err := m.updateRing(ctx, func(rec *ringRecord) (bool, error) {
			rotated = false
			// Another instance may have rotated meanwhile: rotate only if
			// the primary is still the one the policy judged.
			legacy := int64(0)
			for _, k := range rec.Keys {
				if k.State == StatePrimary && k.Suite == suiteName {
					if k.ID != primaryID {
						return false, nil
					}
					legacy = k.LegacySince
				}
			}
			m.retirePrimary(rec, suiteName)
			nk.PrimarySince = m.now().UnixMilli()
			nk.LegacySince = legacy
			rec.Keys = append(rec.Keys, nk)
			rec.Epoch++
			rotated = true
			return true, nil
		}); err != nil {
			return err
		}
		if rotated {
			m.log.Info("dynkey: server key rotated", "policy", m.o.ServerPolicy.String(), "suite", suiteName, "key_id", nk.ID)
			m.observeRotation(SideServer, suiteName, "policy")
		}
	}
	destroyed := false
	err := m.updateRing(ctx, func(rec *ringRecord) (bool, error) {
		now := m.now().UnixMilli()
		changed := false
		destroyed = false
		for i := range rec.Keys {
			k := &rec.Keys[i]
			if k.State == StatePrimary && k.LegacySince != 0 && k.Suite != m.suite.Name() &&
				now >= k.LegacySince+m.o.TokenTTL.Milliseconds() {
				// Every session of this legacy suite has expired.
				m.retirePrimary(rec, k.Suite)
				changed = true
			}
		}
		kept := rec.Keys[:0]
		for _, k := range rec.Keys {
			if k.State == StateDecryptOnly && now >= k.DecryptUntil {
				k.State, k.SealedPrivate = StateDestroyed, nil
				changed, destroyed = true, true
				if len(k.SealedTokenKey) == 0 {
					continue // nothing else to keep: deleted with its private key
				}
			}
			// An instance whose ring has not caught up with the key's
			// retirement still mints tokens under it, for less than
			// ServerKeyGrace (keyFor reloads an older ring): those expire
			// up to that long after TokenUntil.
			if k.State == StateDestroyed && now >= k.TokenUntil+m.o.ServerKeyGrace.Milliseconds() {
				changed = true
				continue // the last token it sealed has expired
			}
			kept = append(kept, k)
		}
		rec.Keys = kept
		tokensChanged, err := m.upkeepTokenKeys(rec)
		return changed || tokensChanged, err
	})
	if err != nil {
		return err
	}
	if destroyed {
		m.scrubPending.Store(true)
	}
	return m.scrub(ctx)
}

// scrub asks a store that can (store.Scrubber) to wipe the copies its files
// keep of values no longer stored — the sealed private keys just destroyed
// (forward secrecy on disk), or secrets sealed under a retired KEK. A
// failed scrub is retried by the next Maintain.
func (m *Middleware) scrub(ctx context.Context) error {
	sc, ok := m.o.Store.(store.Scrubber)
	if !ok || !m.scrubPending.Load() {
		return nil
	}
	if err := sc.Scrub(ctx); err != nil {
		return fmt.Errorf("dynkey/middleware: scrubbing destroyed keys from the store: %w", err)
	}
	m.scrubPending.Store(false)
	return nil
}

// keyFor returns the ring key with this id that can still open messages,
// nil if there is none. Its error means the ring could not be read or was
// refused: the request is answered "unavailable", never "server key
// unknown" (which would send a client after a directory this instance
// cannot vouch for either).
func (m *Middleware) keyFor(ctx context.Context, id wire.KeyID) (*serverKey, error) {
	// A snapshot not compared with the store for a whole grace window may
	// still hold as primary a key that another instance retired more than
	// ServerKeyGrace ago, and destroyed (maintenance not run here, or
	// failing): read the ring again first. A younger snapshot is safe: a
	// key retired after it was read is still inside its grace window.
	if m.ringError() != nil {
		// The stored ring was refused: retry at most once a second (a
		// refused ring is not decoded again on every request).
		_ = m.reloadRateLimited(ctx)
		if err := m.ringError(); err != nil {
			return nil, err
		}
	}
	if m.now().Sub(time.Unix(0, m.syncedAt.Load())) >= m.o.ServerKeyGrace {
		if err := m.reload(ctx); err != nil {
			m.log.Warn("dynkey: reloading a stale key ring", "err", err)
			return nil, err
		}
	}
	k := m.ring.Load().keys[id]
	if k == nil {
		if err := m.reloadRateLimited(ctx); err != nil {
			return nil, err
		}
		k = m.ring.Load().keys[id]
	}
	if k == nil || k.private == nil {
		return nil, nil
	}
	if k.state == StateDecryptOnly && !m.now().Before(k.decryptUntil) {
		return nil, nil // past its grace window, even if not yet destroyed
	}
	return k, nil
}

// directory returns the signed key directory of a suite that has a primary
// key (ok false otherwise), re-signed at most once a second (its s_time is a
// client's time base for its first message).
func (m *Middleware) directory(suite string) (sd *wire.SignedDirectory, ok bool, err error) {
	if err := m.ringError(); err != nil {
		return nil, false, err
	}
	r := m.ring.Load()
	if p := r.primaries[suite]; p == nil || p.private == nil {
		return nil, false, nil
	}
	now := m.now()
	m.dirMu.Lock()
	defer m.dirMu.Unlock()
	if c, hit := m.dirCache[suite]; hit && c.version == r.version && now.Sub(c.at) < time.Second && !now.Before(c.at) {
		return c.sd, true, nil
	}
	d := &wire.Directory{Version: 1, Epoch: r.epoch, Suite: suite, STime: now.UnixMilli()}
	for _, kr := range r.rec.Keys {
		// Only keys whose private key this ring holds (decodeRing also
		// refuses a primary without one): never publish a key nobody can
		// open.
		k, _ := wire.ParseKeyID(kr.ID)
		switch {
		case kr.Suite != suite || r.keys[k] == nil || r.keys[k].private == nil:
		case kr.State == StatePrimary:
			d.Keys = append(d.Keys, wire.DirectoryKey{ID: kr.ID, Public: kr.Public, Status: wire.StatusPrimary})
		case kr.State == StateDecryptOnly && now.UnixMilli() < kr.DecryptUntil:
			d.Keys = append(d.Keys, wire.DirectoryKey{ID: kr.ID, Public: kr.Public, Status: wire.StatusDecryptOnly, Expires: kr.DecryptUntil})
		}
	}
	sd, err = wire.SignDirectory(r.identity, d)
	if err != nil {
		return nil, false, err
	}
	if m.dirCache == nil {
		m.dirCache = map[string]dirCacheEntry{}
	}
	m.dirCache[suite] = dirCacheEntry{sd: sd, at: now, version: r.version}
	return sd, true, nil
}

type dirCacheEntry struct {
	sd      *wire.SignedDirectory
	at      time.Time
	version uint64
}
