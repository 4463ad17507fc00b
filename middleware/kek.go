package middleware

import (
	"bytes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/dynkey/dynkey/crypto"
)

// The key-encryption key (KEK) protects what the store holds
// (docs/PROTOCOL.md §10): three keys are derived from it with HKDF-SHA256,
// each under its own label, so that no key serves two purposes:
//
//	seal key  HKDF(KEK, "dynkey/v2 kek seal")    XChaCha20-Poly1305 for secrets
//	MAC key   HKDF(KEK, "dynkey/v2 kek mac")     HMAC-SHA256 over whole records
//	KEK id    HKDF(KEK, "dynkey/v2 kek id")[:8]  names the KEK in what it protects
//
// The id lets an instance that holds several KEKs (during a KEK rotation)
// pick the right one; it reveals nothing about the KEK.

var (
	// ErrRecordRefused is wrapped by every error about a stored record that
	// failed verification: a record without a MAC (written before records
	// were authenticated), a MAC that does not verify (tampered, or moved
	// to another store key), a record protected by a key-encryption key
	// this instance does not hold, or a key ring that is not consistent
	// (a key id that is not the hash of its public key, a private key that
	// does not match its public key, a primary key without its private
	// key). The instance logs it and refuses to use the record: requests
	// that need it are answered "unavailable".
	ErrRecordRefused = errors.New("dynkey/middleware: stored record refused")

	// ErrNoKeyRing is returned by New when Options.RequireKeyRing is set
	// and the store holds no key ring.
	ErrNoKeyRing = errors.New("dynkey/middleware: the store holds no key ring")

	// ErrIdentityMismatch is returned by New when Options.IdentityKey is
	// set and the store's key ring holds another identity key.
	ErrIdentityMismatch = errors.New("dynkey/middleware: Options.IdentityKey is not the identity key of the stored key ring")
)

const kekIDSize = 8

// kek is one key-encryption key, as the three keys derived from it.
type kek struct {
	id   [kekIDSize]byte
	aead cipher.AEAD
	mac  []byte
}

func newKEK(key []byte) (*kek, error) {
	if len(key) != chacha20poly1305.KeySize {
		return nil, fmt.Errorf("dynkey/middleware: a KeyEncryptionKey must be %d bytes, got %d", chacha20poly1305.KeySize, len(key))
	}
	derive := func(label string, n int) ([]byte, error) {
		return hkdf.Key(sha256.New, key, nil, "dynkey/v2 kek "+label, n)
	}
	sk, err := derive("seal", chacha20poly1305.KeySize)
	if err != nil {
		return nil, err
	}
	defer clear(sk)
	k := &kek{}
	if k.aead, err = chacha20poly1305.NewX(sk); err != nil {
		return nil, err
	}
	if k.mac, err = derive("mac", sha256.Size); err != nil {
		return nil, err
	}
	id, err := derive("id", kekIDSize)
	if err != nil {
		return nil, err
	}
	copy(k.id[:], id)
	return k, nil
}

// kekSet is the KEKs an instance holds: current protects everything
// written; every key of accepted (current first) is accepted when reading.
// Immutable.
type kekSet struct {
	current  *kek
	accepted []*kek
}

func newKEKSet(current []byte, previous [][]byte) (*kekSet, error) {
	k, err := newKEK(current)
	if err != nil {
		return nil, err
	}
	s := &kekSet{current: k, accepted: []*kek{k}}
	for i, p := range previous {
		pk, err := newKEK(p)
		if err != nil {
			return nil, fmt.Errorf("PreviousKeyEncryptionKeys[%d]: %w", i, err)
		}
		s.add(pk)
	}
	return s, nil
}

func (s *kekSet) add(k *kek) {
	for _, o := range s.accepted {
		if o.id == k.id {
			return
		}
	}
	s.accepted = append(s.accepted, k)
}

func (s *kekSet) byID(id []byte) *kek {
	for _, k := range s.accepted {
		if bytes.Equal(k.id[:], id) {
			return k
		}
	}
	return nil
}

func kekAAD(purpose, id string) []byte { return []byte("dynkey/v2 sealed " + purpose + "\x00" + id) }

// seal encrypts a secret under the current KEK:
// KEK id (8) | nonce (24) | XChaCha20-Poly1305(secret), the associated data
// naming the purpose and the key id.
func (s *kekSet) seal(rnd io.Reader, purpose, id string, secret []byte) ([]byte, error) {
	k := s.current
	n := k.aead.NonceSize()
	out := make([]byte, kekIDSize+n, kekIDSize+n+len(secret)+k.aead.Overhead())
	copy(out, k.id[:])
	if _, err := io.ReadFull(rnd, out[kekIDSize:]); err != nil {
		return nil, err
	}
	return k.aead.Seal(out, out[kekIDSize:], secret, kekAAD(purpose, id)), nil
}

// open decrypts a secret made by seal under any KEK of the set.
func (s *kekSet) open(purpose, id string, sealed []byte) ([]byte, error) {
	if len(sealed) < kekIDSize {
		return nil, fmt.Errorf("dynkey/middleware: sealed %s %s is too short", purpose, id)
	}
	k := s.byID(sealed[:kekIDSize])
	if k == nil {
		return nil, fmt.Errorf("dynkey/middleware: %s %s is sealed under a KeyEncryptionKey this instance does not hold", purpose, id)
	}
	n := k.aead.NonceSize()
	b := sealed[kekIDSize:]
	if len(b) < n+k.aead.Overhead() {
		return nil, fmt.Errorf("dynkey/middleware: sealed %s %s is too short", purpose, id)
	}
	pt, err := k.aead.Open(nil, b[:n], b[n:], kekAAD(purpose, id))
	if err != nil {
		return nil, fmt.Errorf("dynkey/middleware: cannot unseal %s %s", purpose, id)
	}
	return pt, nil
}

// kekAEAD adapts the key-encryption keys to crypto.KeyEncryptionAEAD for a
// suite that encrypts its own private keys; the associated data the suite
// passes is bound after the purpose and the key id.
func (s *kekSet) kekAEAD(rnd io.Reader, id string) crypto.KeyEncryptionAEAD {
	return kekAEAD{s: s, rnd: rnd, id: id}
}

type kekAEAD struct {
	s   *kekSet
	rnd io.Reader
	id  string
}

func (a kekAEAD) Encrypt(pt, ad []byte) ([]byte, error) {
	return a.s.seal(a.rnd, "suite-encrypted private key", a.id+"\x00"+string(ad), pt)
}

func (a kekAEAD) Decrypt(ct, ad []byte) ([]byte, error) {
	return a.s.open("suite-encrypted private key", a.id+"\x00"+string(ad), ct)
}

// recordAuth authenticates a stored record (docs/PROTOCOL.md §10): MAC is
// HMAC-SHA256 under the MAC key of the KEK named by KEK, over
//
//	"dynkey/v2 record" 0x00 store key 0x00 JSON(record with mac omitted)
//
// so a record cannot be changed, nor moved to another store key, by anyone
// without the KEK. The JSON is the record as this package encodes it
// (encoding/json of the Go struct), recomputed from the decoded record when
// verifying: what is authenticated is exactly what is used.
type recordAuth struct {
	KEK string `json:"kek,omitempty"`
	MAC []byte `json:"mac,omitempty"`
}

func (a *recordAuth) auth() *recordAuth { return a }

type authenticated interface{ auth() *recordAuth }

func recordTag(k *kek, storeKey string, body []byte) []byte {
	h := hmac.New(sha256.New, k.mac)
	h.Write([]byte("dynkey/v2 record\x00"))
	h.Write([]byte(storeKey))
	h.Write([]byte{0})
	h.Write(body)
	return h.Sum(nil)
}

// marshalRecord encodes rec for storeKey, authenticated under the current
// KEK.
func (s *kekSet) marshalRecord(storeKey string, rec authenticated) ([]byte, error) {
	a := rec.auth()
	a.KEK, a.MAC = hex.EncodeToString(s.current.id[:]), nil
	body, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	a.MAC = recordTag(s.current, storeKey, body)
	return json.Marshal(rec)
}

// unmarshalRecord decodes the record stored under storeKey and verifies its
// MAC under any KEK of the set. It returns the KEK that authenticated it.
// Every failure wraps ErrRecordRefused and names the record, never its
// content.
func (s *kekSet) unmarshalRecord(storeKey string, value []byte, rec authenticated) (*kek, error) {
	if err := json.Unmarshal(value, rec); err != nil {
		return nil, fmt.Errorf("%w: %s: not a record: %v", ErrRecordRefused, storeKey, err)
	}
	a := rec.auth()
	if len(a.MAC) == 0 {
		return nil, fmt.Errorf("%w: %s: no MAC (written by a dynkey version that did not authenticate records, or forged)", ErrRecordRefused, storeKey)
	}
	id, err := hex.DecodeString(a.KEK)
	k := s.byID(id)
	if err != nil || k == nil {
		return nil, fmt.Errorf("%w: %s: authenticated under a KeyEncryptionKey this instance does not hold (wrong KeyEncryptionKey? kek id %q)", ErrRecordRefused, storeKey, a.KEK)
	}
	mac := a.MAC
	a.MAC = nil
	body, err := json.Marshal(rec)
	a.MAC = mac
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrRecordRefused, storeKey, err)
	}
	if !hmac.Equal(recordTag(k, storeKey, body), mac) {
		return nil, fmt.Errorf("%w: %s: MAC does not verify (changed, or moved from another store key, without the KeyEncryptionKey)", ErrRecordRefused, storeKey)
	}
	return k, nil
}
