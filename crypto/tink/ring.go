package tink

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/dynkey/dynkey/crypto"
	"github.com/dynkey/dynkey/wire"
	"github.com/tink-crypto/tink-go/v2/hybrid"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/signature"
	tinkapi "github.com/tink-crypto/tink-go/v2/tink"
)

// Ring errors.
var (
	// ErrUnknownKey is returned for a key id the ring does not hold.
	ErrUnknownKey = errors.New("dynkey/crypto/tink: no such key in the ring")
	// ErrDuplicateKey is returned by Add for a key the ring already holds.
	ErrDuplicateKey = errors.New("dynkey/crypto/tink: key already in the ring")
	// ErrNoPrimary is returned by Seal before SetPrimary was called.
	ErrNoPrimary = errors.New("dynkey/crypto/tink: ring has no primary key")
	// ErrPrimaryKey is returned by Disable and Delete for the primary key.
	ErrPrimaryKey = errors.New("dynkey/crypto/tink: operation not allowed on the primary key")
	// ErrKeyDisabled is returned by SetPrimary for a disabled key.
	ErrKeyDisabled = errors.New("dynkey/crypto/tink: key is disabled")
)

// Ring is a key ring: the key pairs of one suite held in one tink hybrid
// keyset and one tink signature keyset, which two keyset.Managers change in
// lockstep. It maps tink's key life cycle onto dynkey key ids
// (wire.ComputeKeyID of the public key):
//
//   - [Ring.Add] adds a key pair, enabled but not primary;
//   - [Ring.SetPrimary] makes one the primary, which [Ring.Seal] signs with;
//   - [Ring.Disable] keeps a key but stops it decrypting, and [Ring.Enable]
//     undoes that;
//   - [Ring.Delete] removes it from both keysets.
//
// As in tink, the primary key cannot be disabled or deleted, and a disabled
// key cannot become primary. [Ring.Open] decrypts with the one enabled key
// the caller names (the envelope header's key id), never by trying every
// key; as in tink, nothing opens before a primary is set. This is the seam through which the middleware may keep
// its server keys in tink keysets; it does not store anything itself.
//
// A Ring is safe for concurrent use: changes take effect for the Seal and
// Open calls that start after they return.
type Ring struct {
	s *suite

	mu      sync.RWMutex
	hybrid  *keyset.Manager
	sig     *keyset.Manager
	entries map[wire.KeyID]*ringEntry
	order   []wire.KeyID // insertion order

	// Rebuilt from the managers after every change; nil without a primary.
	dec     tinkapi.HybridDecrypt
	signer  tinkapi.Signer
	primary *ringEntry
}

// ringEntry is one key pair of a ring.
type ringEntry struct {
	id       wire.KeyID
	key      *privateKey
	hybridID uint32 // tink key id in Ring.hybrid
	sigID    uint32 // tink key id in Ring.sig
	status   keyset.KeyStatus
}

// NewRing returns an empty ring for s, which must be one of this package's
// suites (else crypto.ErrWrongSuite).
// NewKeyRing implements crypto.KeyRingSuite: the middleware keeps the
// server keys of this package's suites in a Ring too, driving tink's
// keyset-manager lifecycle, and opens requests through it.
func (s *suite) NewKeyRing() (crypto.KeyRing, error) { return NewRing(s) }

var (
	_ crypto.KeyRingSuite = (*suite)(nil)
	_ crypto.KeyRing      = (*Ring)(nil)
)

func NewRing(s crypto.Suite) (*Ring, error) {
	ts, ok := s.(*suite)
	if !ok || ts == nil {
		return nil, fmt.Errorf("dynkey/crypto/tink: ring: %w", crypto.ErrWrongSuite)
	}
	return &Ring{
		s:       ts,
		hybrid:  keyset.NewManager(),
		sig:     keyset.NewManager(),
		entries: map[wire.KeyID]*ringEntry{},
	}, nil
}

// Add adds a key pair of the ring's suite, enabled and not primary, and
// returns its dynkey key id.
func (r *Ring) Add(k crypto.PrivateKey) (wire.KeyID, error) {
	sk, err := r.s.privateKey(k, "ring")
	if err != nil {
		return wire.KeyID{}, err
	}
	id := wire.ComputeKeyID(r.s.name, sk.pub.bytes)
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.entries[id]; dup {
		return wire.KeyID{}, fmt.Errorf("%w: %s", ErrDuplicateKey, id)
	}
	hid, err := r.hybrid.AddKey(sk.hybridKey)
	if err != nil {
		return wire.KeyID{}, fmt.Errorf("dynkey/crypto/tink: ring: adding hybrid key: %w", err)
	}
	sid, err := r.sig.AddKey(sk.sigKey)
	if err != nil {
		// The hybrid key is not primary, so tink lets it go again.
		_ = r.hybrid.Delete(hid)
		return wire.KeyID{}, fmt.Errorf("dynkey/crypto/tink: ring: adding signature key: %w", err)
	}
	r.entries[id] = &ringEntry{id: id, key: sk, hybridID: hid, sigID: sid, status: keyset.Enabled}
	r.order = append(r.order, id)
	return id, r.rebuild()
}

// SetPrimary makes the key the primary: Seal signs with it from now on.
// The key must be enabled.
func (r *Ring) SetPrimary(id wire.KeyID) error {
	return r.change(id, func(e *ringEntry) error {
		if e.status != keyset.Enabled {
			return fmt.Errorf("%w: %s", ErrKeyDisabled, id)
		}
		return both(r.hybrid.SetPrimary(e.hybridID), r.sig.SetPrimary(e.sigID))
	})
}

// Enable lets a disabled key decrypt again.
func (r *Ring) Enable(id wire.KeyID) error {
	return r.change(id, func(e *ringEntry) error {
		if err := both(r.hybrid.Enable(e.hybridID), r.sig.Enable(e.sigID)); err != nil {
			return err
		}
		e.status = keyset.Enabled
		return nil
	})
}

// Disable keeps the key in the ring but stops it decrypting. The primary
// key cannot be disabled.
func (r *Ring) Disable(id wire.KeyID) error {
	return r.change(id, func(e *ringEntry) error {
		if e == r.primary {
			return fmt.Errorf("%w: %s", ErrPrimaryKey, id)
		}
		if err := both(r.hybrid.Disable(e.hybridID), r.sig.Disable(e.sigID)); err != nil {
			return err
		}
		e.status = keyset.Disabled
		return nil
	})
}

// Delete removes the key from both keysets. The primary key cannot be
// deleted. The ring drops its reference to the key; the caller destroys
// any other copy.
func (r *Ring) Delete(id wire.KeyID) error {
	return r.change(id, func(e *ringEntry) error {
		if e == r.primary {
			return fmt.Errorf("%w: %s", ErrPrimaryKey, id)
		}
		if err := both(r.hybrid.Delete(e.hybridID), r.sig.Delete(e.sigID)); err != nil {
			return err
		}
		delete(r.entries, id)
		r.order = slices.DeleteFunc(r.order, func(x wire.KeyID) bool { return x == id })
		return nil
	})
}

// change runs fn on the entry for id under the lock and rebuilds the
// primitives. The checks in fn and in the callers above are tink's own
// preconditions, so that tink never refuses a change to one keyset after
// having made it to the other.
func (r *Ring) change(id wire.KeyID, fn func(*ringEntry) error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.entries[id]
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownKey, id)
	}
	if err := fn(e); err != nil {
		return err
	}
	return r.rebuild()
}

// both returns the first non-nil error.
func both(a, b error) error {
	if a != nil {
		return fmt.Errorf("dynkey/crypto/tink: ring: hybrid keyset: %w", a)
	}
	if b != nil {
		return fmt.Errorf("dynkey/crypto/tink: ring: signature keyset: %w", b)
	}
	return nil
}

// rebuild makes the primitives from the managers' keysets. r.mu is held.
func (r *Ring) rebuild() error {
	r.dec, r.signer, r.primary = nil, nil, nil
	hh, err := r.hybrid.Handle()
	if err != nil {
		// tink builds no keyset without a primary key.
		return nil
	}
	sh, err := r.sig.Handle()
	if err != nil {
		return fmt.Errorf("dynkey/crypto/tink: ring: signature keyset: %w", err)
	}
	hp, err := hh.Primary()
	if err != nil {
		return fmt.Errorf("dynkey/crypto/tink: ring: hybrid keyset: %w", err)
	}
	sp, err := sh.Primary()
	if err != nil {
		return fmt.Errorf("dynkey/crypto/tink: ring: signature keyset: %w", err)
	}
	var primary *ringEntry
	for _, e := range r.entries {
		if e.hybridID == hp.KeyID() && e.sigID == sp.KeyID() {
			primary = e
		}
	}
	if primary == nil {
		return errors.New("dynkey/crypto/tink: ring: the keysets' primary keys are not one key pair")
	}
	dec, err := hybrid.NewHybridDecrypt(hh)
	if err != nil {
		return fmt.Errorf("dynkey/crypto/tink: ring: hybrid decryption primitive: %w", err)
	}
	signer, err := signature.NewSigner(sh)
	if err != nil {
		return fmt.Errorf("dynkey/crypto/tink: ring: signer primitive: %w", err)
	}
	r.dec, r.signer, r.primary = dec, signer, primary
	return nil
}

// Primary returns the id of the primary key, and false before SetPrimary.
func (r *Ring) Primary() (wire.KeyID, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.primary == nil {
		return wire.KeyID{}, false
	}
	return r.primary.id, true
}

// Status returns the status of a key: keyset.Enabled or keyset.Disabled,
// or ErrUnknownKey (for instance after Delete).
func (r *Ring) Status(id wire.KeyID) (keyset.KeyStatus, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.entries[id]
	if !ok {
		return keyset.Unknown, fmt.Errorf("%w: %s", ErrUnknownKey, id)
	}
	return e.status, nil
}

// IDs returns the ids of the ring's keys in the order they were added.
func (r *Ring) IDs() []wire.KeyID {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Clone(r.order)
}

// Seal is the suite's Seal from the ring's primary key pair: it signs with
// the signature keyset's primary key. It returns ErrNoPrimary before
// SetPrimary.
func (r *Ring) Seal(rand io.Reader, to crypto.PublicKey, info, aad, plaintext []byte) (ciphertext, secret []byte, err error) {
	pkR, err := r.s.publicKey(to, "recipient")
	if err != nil {
		return nil, nil, err
	}
	r.mu.RLock()
	primary, signer := r.primary, r.signer
	r.mu.RUnlock()
	if primary == nil {
		return nil, nil, ErrNoPrimary
	}
	return r.s.seal(rand, pkR, primary.key.pub, signer, info, aad, plaintext)
}

// Open is the suite's Open with the one key of the ring named by id — the
// key id the envelope's header names — if that key is enabled: a
// ciphertext is never tried against the ring's other keys. An unknown,
// disabled or deleted key, like any other failure, returns crypto.ErrOpen,
// and so does every Open before SetPrimary (as in tink, a ring without a
// primary opens nothing).
func (r *Ring) Open(id wire.KeyID, from crypto.PublicKey, info, aad, ciphertext []byte) (plaintext, secret []byte, err error) {
	pkS, err := r.s.publicKey(from, "sender")
	if err != nil {
		return nil, nil, err
	}
	r.mu.RLock()
	e, ok := r.entries[id]
	usable := ok && r.dec != nil && e.status == keyset.Enabled
	r.mu.RUnlock()
	if !usable {
		return nil, nil, crypto.ErrOpen
	}
	return r.s.open(e.key.dec, pkS, info, aad, ciphertext)
}
