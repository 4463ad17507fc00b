package middleware

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/dynkey/dynkey/crypto"
	"github.com/dynkey/dynkey/store"
	"github.com/dynkey/dynkey/wire"
)

// The key ring record, its verification and its secrets (docs/PROTOCOL.md
// §10). The lifecycle that changes it is in ring.go.

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
	// memory. Only a record from before token keys had their own ring
	// (one with a sealed_token_key) stays in this state, for its token key,
	// until the last token it sealed expires; any other record is deleted
	// as its private key is destroyed.
	StateDestroyed KeyState = "destroyed"
)

// keyRecord is one server key as stored (JSON). Secrets are sealed with the
// key-encryption key.
type keyRecord struct {
	ID            string `json:"id"`
	Suite         string `json:"suite"`
	Public        []byte `json:"public"`
	SealedPrivate []byte `json:"sealed_private,omitempty"`
	// SealedTokenKey is only in records written before token keys had
	// their own ring (TokenKeys): kept so that tokens sealed under it stay
	// valid until they expire; new keys have none.
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

// ringRecord is the key ring as stored under ringKey, authenticated as a
// whole (recordAuth) and bound to that key.
type ringRecord struct {
	// Epoch never moves backwards, not even across a lost store: a new
	// ring starts at the time in ms (firstEpoch), each change adds one.
	Epoch          uint64      `json:"epoch"`
	IdentityPublic []byte      `json:"identity_public"`
	SealedIdentity []byte      `json:"sealed_identity"`
	Keys           []keyRecord `json:"keys"`
	// TokenKeys seal login tokens (tokenkeys.go): exactly one primary
	// (Until 0), the retired ones until their last token expired.
	TokenKeys []tokenKeyRecord `json:"token_keys,omitempty"`
	recordAuth
}

// serverKey is one key of the ring in memory.
type serverKey struct {
	id           wire.KeyID
	state        KeyState
	suite        crypto.Suite
	public       crypto.PublicKey
	private      crypto.PrivateKey // nil once destroyed
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
	// tokenPrimary seals new tokens; tokenKeys open them, by the id in
	// the token's header: the token keys, and the token keys of server
	// key records from before token keys had their own ring.
	tokenPrimary *tokenKey
	tokenKeys    map[wire.KeyID]*tokenKey
	// keyRings are the suites' own key rings (crypto.KeyRingSuite),
	// already holding every key of this snapshot; never modified.
	keyRings map[string]crypto.KeyRing
}

// firstEpoch is the epoch of a ring created at now: the time in ms (at
// least 1). Every later change adds one. So epochs never move backwards, not
// even across a store that lost its state: the lost ring's epoch was its
// creation time in ms plus the number of changes since, and a ring created
// later starts above it unless the lost one changed more than once per
// millisecond on average — clients, which refuse lower epochs, accept the
// new ring.
func firstEpoch(now time.Time) uint64 {
	if ms := now.UnixMilli(); ms > 1 {
		return uint64(ms)
	}
	return 1
}

// loadRingRecord reads the ring record and verifies its MAC.
func (m *Middleware) loadRingRecord(ctx context.Context) (ringRecord, store.Entry, error) {
	e, err := m.o.Store.Get(ctx, ringKey)
	if err != nil {
		return ringRecord{}, e, err
	}
	var rec ringRecord
	if _, err := m.keks.Load().unmarshalRecord(ringKey, e.Value, &rec); err != nil {
		return ringRecord{}, e, err
	}
	return rec, e, nil
}

// openPrivate unseals and parses a stored private key.
func (m *Middleware) openPrivate(ks *kekSet, s crypto.Suite, kr keyRecord) (crypto.PrivateKey, error) {
	if kr.SealedBySuite {
		pe, ok := s.(crypto.PrivateKeyEncrypter)
		if !ok {
			return nil, fmt.Errorf("dynkey/middleware: key %s was sealed by suite %s, which no longer encrypts keys", kr.ID, kr.Suite)
		}
		k, err := pe.ParsePrivateKeyEncrypted(kr.SealedPrivate, ks.kekAEAD(m.o.Rand, kr.ID))
		if err != nil {
			return nil, fmt.Errorf("dynkey/middleware: cannot unseal private key %s (wrong KeyEncryptionKey?): %w", kr.ID, err)
		}
		return k, nil
	}
	pb, err := ks.open("private key", kr.ID, kr.SealedPrivate)
	if err != nil {
		return nil, err
	}
	defer clear(pb)
	return s.ParsePrivateKey(pb)
}

// sealPrivate seals a private key for the record kr (its ID and suite set)
// under the current KEK.
func (m *Middleware) sealPrivate(ks *kekSet, s crypto.Suite, kr *keyRecord, priv crypto.PrivateKey) error {
	var err error
	if pe, ok := s.(crypto.PrivateKeyEncrypter); ok {
		kr.SealedPrivate, err = pe.MarshalPrivateKeyEncrypted(priv, ks.kekAEAD(m.o.Rand, kr.ID))
		kr.SealedBySuite = true
		return err
	}
	pb := priv.Bytes()
	defer clear(pb)
	kr.SealedPrivate, err = ks.seal(m.o.Rand, "private key", kr.ID, pb)
	kr.SealedBySuite = false
	return err
}

// newKeyRecord generates a key pair. Key generation happens
// here, in the maintenance path, never on a request's path.
func (m *Middleware) newKeyRecord(suite crypto.Suite) (keyRecord, error) {
	ks := m.keks.Load()
	priv, err := suite.GenerateKey(m.o.Rand)
	if err != nil {
		return keyRecord{}, fmt.Errorf("dynkey/middleware: generating a %s key: %w", suite.Name(), err)
	}
	pub := priv.Public().Bytes()
	id := wire.ComputeKeyID(suite.Name(), pub).String()
	r := keyRecord{ID: id, Suite: suite.Name(), Public: pub, State: StatePrimary, PrimarySince: m.now().UnixMilli()}
	if err := m.sealPrivate(ks, suite, &r, priv); err != nil {
		return keyRecord{}, err
	}
	return r, nil
}

// refused wraps a consistency failure of the ring in ErrRecordRefused.
func refusedRing(format string, a ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrRecordRefused, ringKey, fmt.Sprintf(format, a...))
}

// decodeRing unseals a ring record whose MAC verified and checks that it is
// consistent: the identity seed matches the identity public key; every key
// id is wire.ComputeKeyID of its suite and public key, and unique; every
// private key matches its public key; a primary or decrypt-only key has its
// private key and a destroyed one has none; every key has its token key.
// The MAC already stops a writer without the KEK; these checks also catch a
// record that an older or buggy writer holding the KEK got wrong.
func (m *Middleware) decodeRing(rec ringRecord, version uint64) (*keyRing, error) {
	ks := m.keks.Load()
	r := &keyRing{version: version, epoch: rec.Epoch, rec: rec, keys: map[wire.KeyID]*serverKey{}, primaries: map[string]*serverKey{},
		tokenKeys: map[wire.KeyID]*tokenKey{}}
	seed, err := ks.open("identity", "", rec.SealedIdentity)
	if err != nil {
		return nil, refusedRing("%v", err)
	}
	if len(seed) != ed25519.SeedSize {
		clear(seed)
		return nil, refusedRing("the identity key is malformed")
	}
	r.identity = ed25519.NewKeyFromSeed(seed)
	clear(seed)
	if !bytes.Equal(r.identity.Public().(ed25519.PublicKey), rec.IdentityPublic) {
		return nil, refusedRing("the identity private key does not match identity_public")
	}
	for _, kr := range rec.Keys {
		s, err := crypto.Lookup(kr.Suite)
		if err != nil {
			return nil, err
		}
		id, err := wire.ParseKeyID(kr.ID)
		if err != nil {
			return nil, refusedRing("key id %q: %v", kr.ID, err)
		}
		if id != wire.ComputeKeyID(kr.Suite, kr.Public) {
			return nil, refusedRing("key %s: the id is not the hash of its public key", kr.ID)
		}
		if r.keys[id] != nil {
			return nil, refusedRing("key %s appears twice", kr.ID)
		}
		switch kr.State {
		case StatePrimary, StateDecryptOnly:
			if len(kr.SealedPrivate) == 0 {
				return nil, refusedRing("%s key %s has no private key", kr.State, kr.ID)
			}
		case StateDestroyed:
			if len(kr.SealedPrivate) != 0 {
				return nil, refusedRing("destroyed key %s still has a private key", kr.ID)
			}
		default:
			return nil, refusedRing("key %s has unknown state %q", kr.ID, kr.State)
		}
		k := &serverKey{id: id, state: kr.State, suite: s, primarySince: time.UnixMilli(kr.PrimarySince)}
		if kr.DecryptUntil != 0 {
			k.decryptUntil = time.UnixMilli(kr.DecryptUntil)
		}
		if kr.LegacySince != 0 {
			k.legacySince = time.UnixMilli(kr.LegacySince)
		}
		if k.public, err = s.ParsePublicKey(kr.Public); err != nil {
			return nil, refusedRing("key %s: %v", kr.ID, err)
		}
		if kr.SealedPrivate != nil {
			if k.private, err = m.openPrivate(ks, s, kr); err != nil {
				return nil, refusedRing("key %s: %v", kr.ID, err)
			}
			if !bytes.Equal(k.private.Public().Bytes(), kr.Public) {
				return nil, refusedRing("key %s: the private key does not match the public key", kr.ID)
			}
		}
		if len(kr.SealedTokenKey) != 0 {
			tk, err := openTokenKey(ks, kr.ID, kr.SealedTokenKey)
			if err != nil {
				return nil, err
			}
			r.tokenKeys[id] = &tokenKey{id: id, token: tk}
		}
		if kr.State == StatePrimary {
			if r.primaries[kr.Suite] != nil {
				return nil, refusedRing("two primary %s keys", kr.Suite)
			}
			r.primaries[kr.Suite] = k
			if kr.Suite == m.suite.Name() {
				r.primary = k
			}
		}
		r.keys[id] = k
	}
	if err := decodeTokenKeys(ks, rec.TokenKeys, r); err != nil {
		return nil, err
	}
	return r, nil
}

// resealRing rewrites every secret of rec under the current KEK (the MAC
// follows when the record is written).
func (m *Middleware) resealRing(rec *ringRecord) error {
	ks := m.keks.Load()
	seed, err := ks.open("identity", "", rec.SealedIdentity)
	if err != nil {
		return refusedRing("%v", err)
	}
	rec.SealedIdentity, err = ks.seal(m.o.Rand, "identity", "", seed)
	clear(seed)
	if err != nil {
		return err
	}
	for i := range rec.Keys {
		kr := &rec.Keys[i]
		s, err := crypto.Lookup(kr.Suite)
		if err != nil {
			return err
		}
		if len(kr.SealedPrivate) != 0 {
			priv, err := m.openPrivate(ks, s, *kr)
			if err != nil {
				return refusedRing("key %s: %v", kr.ID, err)
			}
			if err := m.sealPrivate(ks, s, kr, priv); err != nil {
				return err
			}
		}
		if len(kr.SealedTokenKey) != 0 {
			if kr.SealedTokenKey, err = m.resealSecret(ks, "token key", kr.ID, kr.SealedTokenKey); err != nil {
				return err
			}
		}
	}
	for i := range rec.TokenKeys {
		tk := &rec.TokenKeys[i]
		if tk.Sealed, err = m.resealSecret(ks, "token key", tk.ID, tk.Sealed); err != nil {
			return err
		}
	}
	return nil
}

// resealSecret opens a secret sealed under any KEK of ks and seals it
// again under the current one.
func (m *Middleware) resealSecret(ks *kekSet, purpose, id string, sealed []byte) ([]byte, error) {
	pt, err := ks.open(purpose, id, sealed)
	if err != nil {
		return nil, refusedRing("%v", err)
	}
	defer clear(pt)
	return ks.seal(m.o.Rand, purpose, id, pt)
}
