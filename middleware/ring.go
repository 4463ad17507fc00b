package middleware

import (
	"context"
	"crypto/cipher"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/dynkey/dynkey/crypto"
	"github.com/dynkey/dynkey/policy"
	"github.com/dynkey/dynkey/store"
	"github.com/dynkey/dynkey/wire"
)

// ringKey is the store key of the server key ring.
const ringKey = "dynkey/ring"

// KeyState is the lifecycle state of a server key.
type KeyState string

const (
	// StatePrimary: new messages and tokens use this key. Exactly one.
	StatePrimary KeyState = "primary"
	// StateDecryptOnly: retired; still opens messages until its grace
	// window ends, and its token key still opens tokens.
	StateDecryptOnly KeyState = "decrypt-only"
	// StateDestroyed: the private key is erased from the store and from
	// memory; only the token key remains, until the last token it sealed
	// expires, and then the record is deleted.
	StateDestroyed KeyState = "destroyed"
)

// keyRecord is one server key as stored (JSON). Secrets are sealed with the
// key-encryption key.
type keyRecord struct {
	ID             string   `json:"id"`
	Suite          string   `json:"suite"`
	Public         []byte   `json:"public"`
	SealedPrivate  []byte   `json:"sealed_private,omitempty"`
	SealedTokenKey []byte   `json:"sealed_token_key,omitempty"`
	State          KeyState `json:"state"`
	PrimarySince   int64    `json:"primary_since"`           // ms
	DecryptUntil   int64    `json:"decrypt_until,omitempty"` // ms, when retired
	TokenUntil     int64    `json:"token_until,omitempty"`   // ms, when retired
	// LegacySince is set on the primary key of a suite that is no longer
	// the configured one (ms): it keeps serving that suite's existing
	// sessions, rotating by policy, until TokenTTL after this time.
	LegacySince int64 `json:"legacy_since,omitempty"`
	// SealedBySuite: SealedPrivate was written by the suite's own
	// crypto.PrivateKeyEncrypter (tink keysets) under the KEK, not from
	// PrivateKey.Bytes.
	SealedBySuite bool `json:"sealed_by_suite,omitempty"`
}

type ringRecord struct {
	Epoch          uint64      `json:"epoch"`
	IdentityPublic []byte      `json:"identity_public"`
	SealedIdentity []byte      `json:"sealed_identity"`
	Keys           []keyRecord `json:"keys"`
}

// serverKey is one key of the ring in memory.
type serverKey struct {
	id           wire.KeyID
	state        KeyState
	suite        crypto.Suite
	public       crypto.PublicKey
	private      crypto.PrivateKey // nil once destroyed
	token        cipher.AEAD       // nil once the record is gone
	primarySince time.Time
	decryptUntil time.Time
	legacySince  time.Time // zero unless a legacy suite's primary
}

// keyRing is an immutable snapshot of the ring.
type keyRing struct {
	version  uint64
	epoch    uint64
	rec      ringRecord
	identity ed25519.PrivateKey
	// primary is the primary key of the configured suite; primaries holds
	// the primary key of every suite that still has sessions (exactly one
	// per suite).
	primary   *serverKey
	primaries map[string]*serverKey
	keys      map[wire.KeyID]*serverKey
	// keyRings are the suites' own key rings (crypto.KeyRingSuite),
	// already holding every key of this snapshot; never modified.
	keyRings map[string]crypto.KeyRing
}

// kek seals secrets at rest with XChaCha20-Poly1305 (random 24-byte nonces),
// the associated data naming the purpose and the key id.
type kek struct{ aead cipher.AEAD }

func newKEK(key []byte) (*kek, error) {
	if len(key) != chacha20poly1305.KeySize {
		return nil, fmt.Errorf("dynkey/middleware: KeyEncryptionKey must be %d bytes, got %d", chacha20poly1305.KeySize, len(key))
	}
	a, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, err
	}
	return &kek{a}, nil
}

func kekAAD(purpose, id string) []byte { return []byte("dynkey/v1 sealed " + purpose + "\x00" + id) }

func (k *kek) seal(rnd io.Reader, purpose, id string, secret []byte) ([]byte, error) {
	nonce := make([]byte, k.aead.NonceSize(), k.aead.NonceSize()+len(secret)+k.aead.Overhead())
	if _, err := io.ReadFull(rnd, nonce); err != nil {
		return nil, err
	}
	return k.aead.Seal(nonce, nonce, secret, kekAAD(purpose, id)), nil
}

func (k *kek) open(purpose, id string, sealed []byte) ([]byte, error) {
	n := k.aead.NonceSize()
	if len(sealed) < n+k.aead.Overhead() {
		return nil, errors.New("dynkey/middleware: sealed secret too short")
	}
	pt, err := k.aead.Open(nil, sealed[:n], sealed[n:], kekAAD(purpose, id))
	if err != nil {
		return nil, fmt.Errorf("dynkey/middleware: cannot unseal %s %s (wrong KeyEncryptionKey?)", purpose, id)
	}
	return pt, nil
}

// kekAEAD adapts the key-encryption key to crypto.KeyEncryptionAEAD for a
// suite that encrypts its own private keys; the associated data the suite
// passes is bound after the purpose and the key id.
func (m *Middleware) kekAEAD(id string) crypto.KeyEncryptionAEAD {
	return kekAEAD{m: m, id: id}
}

type kekAEAD struct {
	m  *Middleware
	id string
}

func (a kekAEAD) Encrypt(pt, ad []byte) ([]byte, error) {
	return a.m.kek.seal(a.m.o.Rand, "suite-encrypted private key", a.id+"\x00"+string(ad), pt)
}

func (a kekAEAD) Decrypt(ct, ad []byte) ([]byte, error) {
	return a.m.kek.open("suite-encrypted private key", a.id+"\x00"+string(ad), ct)
}

// openPrivate unseals and parses a stored private key.
func (m *Middleware) openPrivate(s crypto.Suite, kr keyRecord) (crypto.PrivateKey, error) {
	if kr.SealedBySuite {
		pe, ok := s.(crypto.PrivateKeyEncrypter)
		if !ok {
			return nil, fmt.Errorf("dynkey/middleware: key %s was sealed by suite %s, which no longer encrypts keys", kr.ID, kr.Suite)
		}
		k, err := pe.ParsePrivateKeyEncrypted(kr.SealedPrivate, m.kekAEAD(kr.ID))
		if err != nil {
			return nil, fmt.Errorf("dynkey/middleware: cannot unseal private key %s (wrong KeyEncryptionKey?): %w", kr.ID, err)
		}
		return k, nil
	}
	pb, err := m.kek.open("private key", kr.ID, kr.SealedPrivate)
	if err != nil {
		return nil, err
	}
	defer clear(pb)
	return s.ParsePrivateKey(pb)
}

// initRing loads the ring, creating it (identity and first key) if absent.
func (m *Middleware) initRing(ctx context.Context) error {
	for range 5 {
		err := m.reload(ctx)
		if err == nil {
			if p := m.ring.Load().primary; p == nil || !p.legacySince.IsZero() {
				return m.adoptSuite(ctx)
			}
			return nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		rec := ringRecord{}
		id := m.o.IdentityKey
		if id == nil {
			_, id, err = ed25519.GenerateKey(m.o.Rand)
			if err != nil {
				return err
			}
		}
		rec.IdentityPublic = id.Public().(ed25519.PublicKey)
		if rec.SealedIdentity, err = m.kek.seal(m.o.Rand, "identity", "", id.Seed()); err != nil {
			return err
		}
		kr, err := m.newKeyRecord(m.suite)
		if err != nil {
			return err
		}
		rec.Keys = []keyRecord{kr}
		rec.Epoch = 1
		b, _ := json.Marshal(rec)
		if _, err := m.o.Store.CompareAndSwap(ctx, ringKey, 0, b, time.Time{}); err != nil && !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("dynkey/middleware: creating the key ring: %w", err)
		}
		// On conflict another instance created it first: load theirs.
	}
	return errors.New("dynkey/middleware: could not create the key ring")
}

// newKeyRecord generates a key pair and token key. Key generation happens
// here, in the maintenance path, never on a request's path.
func (m *Middleware) newKeyRecord(suite crypto.Suite) (keyRecord, error) {
	priv, err := suite.GenerateKey(m.o.Rand)
	if err != nil {
		return keyRecord{}, fmt.Errorf("dynkey/middleware: generating a %s key: %w", suite.Name(), err)
	}
	pub := priv.Public().Bytes()
	id := wire.ComputeKeyID(suite.Name(), pub).String()
	tk := make([]byte, chacha20poly1305.KeySize)
	if _, err := io.ReadFull(m.o.Rand, tk); err != nil {
		return keyRecord{}, err
	}
	r := keyRecord{ID: id, Suite: suite.Name(), Public: pub, State: StatePrimary, PrimarySince: m.now().UnixMilli()}
	if pe, ok := suite.(crypto.PrivateKeyEncrypter); ok {
		r.SealedPrivate, err = pe.MarshalPrivateKeyEncrypted(priv, m.kekAEAD(id))
		r.SealedBySuite = true
	} else {
		pb := priv.Bytes()
		r.SealedPrivate, err = m.kek.seal(m.o.Rand, "private key", id, pb)
		clear(pb)
	}
	if err != nil {
		return keyRecord{}, err
	}
	r.SealedTokenKey, err = m.kek.seal(m.o.Rand, "token key", id, tk)
	clear(tk)
	return r, err
}

// reload reads the ring from the store if it changed.
func (m *Middleware) reload(ctx context.Context) error {
	at := m.now()
	e, err := m.o.Store.Get(ctx, ringKey)
	if err != nil {
		return err
	}
	if cur := m.ring.Load(); cur != nil && cur.version == e.Version {
		m.syncedAt.Store(at.UnixNano())
		return nil
	}
	var rec ringRecord
	if err := json.Unmarshal(e.Value, &rec); err != nil {
		return fmt.Errorf("dynkey/middleware: decoding the key ring: %w", err)
	}
	r, err := m.decodeRing(rec, e.Version)
	if err != nil {
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
	m.syncedAt.Store(at.UnixNano())
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

func (m *Middleware) decodeRing(rec ringRecord, version uint64) (*keyRing, error) {
	r := &keyRing{version: version, epoch: rec.Epoch, rec: rec, keys: map[wire.KeyID]*serverKey{}, primaries: map[string]*serverKey{}}
	seed, err := m.kek.open("identity", "", rec.SealedIdentity)
	if err != nil {
		return nil, err
	}
	if len(seed) != ed25519.SeedSize {
		return nil, errors.New("dynkey/middleware: stored identity key is malformed")
	}
	r.identity = ed25519.NewKeyFromSeed(seed)
	clear(seed)
	for _, kr := range rec.Keys {
		s, err := crypto.Lookup(kr.Suite)
		if err != nil {
			return nil, err
		}
		id, err := wire.ParseKeyID(kr.ID)
		if err != nil {
			return nil, err
		}
		k := &serverKey{id: id, state: kr.State, suite: s, primarySince: time.UnixMilli(kr.PrimarySince)}
		if kr.DecryptUntil != 0 {
			k.decryptUntil = time.UnixMilli(kr.DecryptUntil)
		}
		if kr.LegacySince != 0 {
			k.legacySince = time.UnixMilli(kr.LegacySince)
		}
		if k.public, err = s.ParsePublicKey(kr.Public); err != nil {
			return nil, err
		}
		if kr.SealedPrivate != nil {
			if k.private, err = m.openPrivate(s, kr); err != nil {
				return nil, err
			}
		}
		if kr.SealedTokenKey != nil {
			tk, err := m.kek.open("token key", kr.ID, kr.SealedTokenKey)
			if err != nil {
				return nil, err
			}
			k.token, err = chacha20poly1305.NewX(tk)
			clear(tk)
			if err != nil {
				return nil, err
			}
		}
		if kr.State == StatePrimary {
			if r.primaries[kr.Suite] != nil {
				return nil, fmt.Errorf("dynkey/middleware: stored key ring has two primary %s keys", kr.Suite)
			}
			r.primaries[kr.Suite] = k
			if kr.Suite == m.suite.Name() {
				r.primary = k
			}
		}
		r.keys[id] = k
	}
	return r, nil
}

// reloadRateLimited reloads the ring at most once per second, for requests
// naming a key id this instance does not know (another instance rotated).
func (m *Middleware) reloadRateLimited(ctx context.Context) {
	m.reloadMu.Lock()
	if m.now().Sub(m.lastReload) < time.Second {
		m.reloadMu.Unlock()
		return
	}
	m.lastReload = m.now()
	m.reloadMu.Unlock()
	if err := m.reload(ctx); err != nil {
		m.log.Warn("dynkey: reloading the key ring", "err", err)
	}
}

// updateRing applies change to the stored ring with compare-and-swap,
// retrying on conflict with the fresh ring. change returns false to make no
// change.
func (m *Middleware) updateRing(ctx context.Context, change func(rec *ringRecord) (bool, error)) error {
	for range 8 {
		e, err := m.o.Store.Get(ctx, ringKey)
		if err != nil {
			return err
		}
		var rec ringRecord
		if err := json.Unmarshal(e.Value, &rec); err != nil {
			return fmt.Errorf("dynkey/middleware: decoding the key ring: %w", err)
		}
		changed, err := change(&rec)
		if err != nil {
			return err
		}
		if !changed {
			return m.reload(ctx)
		}
		b, err := json.Marshal(rec)
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
	return m.updateRing(ctx, func(rec *ringRecord) (bool, error) {
		m.retirePrimary(rec, m.suite.Name())
		nk.PrimarySince = m.now().UnixMilli()
		rec.Keys = append(rec.Keys, nk)
		rec.Epoch++
		return true, nil
	})
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
			rec.Keys[i].TokenUntil = now.Add(m.o.TokenTTL).UnixMilli()
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
		rotated := false
		if err := m.updateRing(ctx, func(rec *ringRecord) (bool, error) {
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
		}
	}
	return m.updateRing(ctx, func(rec *ringRecord) (bool, error) {
		now := m.now().UnixMilli()
		changed := false
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
				changed = true
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
		return changed, nil
	})
}

// keyFor returns the ring key with this id that can still open messages.
func (m *Middleware) keyFor(ctx context.Context, id wire.KeyID) *serverKey {
	// A snapshot not compared with the store for a whole grace window may
	// still hold as primary a key that another instance retired more than
	// ServerKeyGrace ago, and destroyed (maintenance not run here, or
	// failing): read the ring again first. A younger snapshot is safe: a
	// key retired after it was read is still inside its grace window.
	if m.now().Sub(time.Unix(0, m.syncedAt.Load())) >= m.o.ServerKeyGrace {
		if err := m.reload(ctx); err != nil {
			m.log.Warn("dynkey: reloading a stale key ring", "err", err)
			return nil
		}
	}
	k := m.ring.Load().keys[id]
	if k == nil {
		m.reloadRateLimited(ctx)
		k = m.ring.Load().keys[id]
	}
	if k == nil || k.private == nil {
		return nil
	}
	if k.state == StateDecryptOnly && !m.now().Before(k.decryptUntil) {
		return nil // past its grace window, even if not yet destroyed
	}
	return k
}

// directory returns the signed key directory of a suite that has a primary
// key (ok false otherwise), re-signed at most once a second (its s_time is a
// client's time base for its first message).
func (m *Middleware) directory(suite string) (sd *wire.SignedDirectory, ok bool, err error) {
	r := m.ring.Load()
	if r.primaries[suite] == nil {
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
		switch {
		case kr.Suite != suite:
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
