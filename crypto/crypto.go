// Package crypto defines the interface every dynkey algorithm suite
// implements, and a registry of suites by name.
//
// A [Suite] is one algorithm family behind one small interface: it generates,
// parses and marshals key pairs, and seals a message from a sender's private
// key to a recipient's public key with sender authentication. Sealing also
// yields a per-message secret that only the sender and the recipient know;
// dynkey derives the response key from it, so a response is readable only by
// the client that sent the request and is bound to that request (as Oblivious
// HTTP, RFC 9458, does with the HPKE exporter).
//
// # Choosing a suite
//
// Suites are looked up by the name used in configuration, with [Lookup]:
//
//	s, err := crypto.Lookup("ecies-x25519")
//
// Packages that implement a suite register it from their init function;
// importing github.com/dynkey/dynkey/crypto/ecies makes "ecies-x25519"
// available. Users add their own with [Register].
package crypto

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
)

// SecretSize is the length in bytes of the per-message secret returned by
// [Suite.Seal] and [Suite.Open].
const SecretSize = 32

var (
	// ErrOpen is returned by Open when a ciphertext cannot be authenticated:
	// wrong recipient key, wrong sender key, tampered ciphertext, info or
	// associated data, or truncated input. It deliberately says no more.
	ErrOpen = errors.New("dynkey/crypto: message authentication failed")

	// ErrMalformedKey is returned when key bytes cannot be parsed.
	ErrMalformedKey = errors.New("dynkey/crypto: malformed key")

	// ErrWrongSuite is returned when a key of one suite is given to another.
	ErrWrongSuite = errors.New("dynkey/crypto: key belongs to another suite")

	// ErrUnknownSuite is returned by Lookup for a name nobody registered.
	ErrUnknownSuite = errors.New("dynkey/crypto: unknown suite")
)

// KeyID names a public key: the first 8 bytes of a hash of the suite name
// and the key (wire.ComputeKeyID; docs/PROTOCOL.md §1).
type KeyID [8]byte

// String returns the id in lower-case hex, the form used in JSON documents.
func (id KeyID) String() string { return hex.EncodeToString(id[:]) }

// PublicKey is a suite's public key.
type PublicKey interface {
	// Bytes returns the key's wire encoding, which the suite's
	// ParsePublicKey accepts. The caller must not modify the result.
	Bytes() []byte
}

// PrivateKey is a suite's private key.
type PrivateKey interface {
	// Public returns the matching public key.
	Public() PublicKey
	// Bytes returns the key's encoding, which the suite's ParsePrivateKey
	// accepts. It is secret: store it only encrypted.
	Bytes() []byte
}

// Suite is one algorithm family. All methods are safe for concurrent use.
type Suite interface {
	// Name is the suite's stable configuration and wire name, such as
	// "ecies-x25519". It is bound into every message.
	Name() string

	// GenerateKey returns a fresh key pair, reading randomness from rand
	// (crypto/rand.Reader when nil).
	GenerateKey(rand io.Reader) (PrivateKey, error)

	// ParsePublicKey parses a public key from its wire encoding. Garbage
	// yields an error wrapping ErrMalformedKey, never a panic.
	ParsePublicKey(b []byte) (PublicKey, error)

	// ParsePrivateKey parses a private key produced by PrivateKey.Bytes.
	ParsePrivateKey(b []byte) (PrivateKey, error)

	// Seal encrypts plaintext to the recipient key and authenticates it as
	// coming from the sender key. info binds the purpose of the message and
	// aad the context it travels in; both must be given again to Open.
	// secret is a SecretSize-byte value known only to the sender and to a
	// holder of the recipient's private key, unique to this message.
	// Randomness comes from rand (crypto/rand.Reader when nil).
	Seal(rand io.Reader, to PublicKey, from PrivateKey, info, aad, plaintext []byte) (ciphertext, secret []byte, err error)

	// Open authenticates and decrypts a ciphertext made by Seal, returning
	// the same secret Seal returned. Any authentication failure returns an
	// error wrapping ErrOpen; keys of another suite return ErrWrongSuite.
	Open(to PrivateKey, from PublicKey, info, aad, ciphertext []byte) (plaintext, secret []byte, err error)
}

var (
	regMu    sync.RWMutex
	registry = map[string]Suite{}
)

// Register makes a suite available by its name. It panics if the name is
// empty, not printable ASCII of at most 64 bytes, or already registered, as
// a misconfiguration at init.
func Register(s Suite) {
	name := s.Name()
	if !ValidName(name) {
		panic(fmt.Sprintf("dynkey/crypto: invalid suite name %q", name))
	}
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := registry[name]; dup {
		panic(fmt.Sprintf("dynkey/crypto: suite %q registered twice", name))
	}
	registry[name] = s
}

// ValidName reports whether name can be a suite name: 1 to 64 bytes of
// lower-case letters, digits and '-'.
func ValidName(name string) bool {
	if len(name) == 0 || len(name) > 64 {
		return false
	}
	for _, c := range []byte(name) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// Lookup returns the suite registered under name. The error for an unknown
// name wraps ErrUnknownSuite and lists the known names.
func Lookup(name string) (Suite, error) {
	regMu.RLock()
	s, ok := registry[name]
	regMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w %q (known: %s)", ErrUnknownSuite, name, strings.Join(Names(), ", "))
	}
	return s, nil
}

// Names returns the registered suite names, sorted.
func Names() []string {
	regMu.RLock()
	defer regMu.RUnlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// KeyEncryptionAEAD is a key-encryption key (KEK): an AEAD under which
// private keys are stored. Its method set is that of tink-go's tink.AEAD, so
// a tink AEAD (a KMS client's remote AEAD, say) is one. Implementations must
// be safe for concurrent use.
type KeyEncryptionAEAD interface {
	// Encrypt encrypts plaintext, authenticating associatedData.
	Encrypt(plaintext, associatedData []byte) ([]byte, error)
	// Decrypt decrypts and authenticates a ciphertext made by Encrypt with
	// the same associatedData.
	Decrypt(ciphertext, associatedData []byte) ([]byte, error)
}

// PrivateKeyEncrypter is an optional interface of a Suite that writes its
// private keys encrypted under a KeyEncryptionAEAD by its own means (tink
// keysets, for example, are written encrypted by tink itself), so that the
// cleartext encoding of PrivateKey.Bytes is never produced for storage. The
// middleware finds it with a type assertion and uses it instead of Bytes
// when storing server keys.
type PrivateKeyEncrypter interface {
	MarshalPrivateKeyEncrypted(k PrivateKey, kek KeyEncryptionAEAD) ([]byte, error)
	ParsePrivateKeyEncrypted(b []byte, kek KeyEncryptionAEAD) (PrivateKey, error)
}

// KeyRingSuite is an optional interface of a Suite that keeps keys in a key
// ring of its own with an explicit lifecycle — tink's keyset manager: add →
// set primary → disable → delete. The middleware mirrors its server key
// lifecycle onto such a ring (a new primary is added and made primary; a key
// whose grace window ended is disabled, then deleted) and opens requests
// through it, so a key the ring no longer holds enabled opens nothing.
type KeyRingSuite interface {
	NewKeyRing() (KeyRing, error)
}

// KeyRing is a suite's key ring. Implementations are safe for concurrent
// use.
type KeyRing interface {
	// Add adds a key pair, enabled and not primary, and returns its id.
	Add(k PrivateKey) (KeyID, error)
	// SetPrimary makes an enabled key the primary.
	SetPrimary(id KeyID) error
	// Disable stops a key (not the primary) from opening messages.
	Disable(id KeyID) error
	// Delete removes a key (not the primary) from the ring.
	Delete(id KeyID) error
	// IDs lists the keys the ring holds.
	IDs() []KeyID
	// Open is the suite's Open with the ring's key named id (the key id
	// the envelope's header names), and with no other key of the ring. A
	// key the ring does not hold, or holds disabled, opens nothing: the
	// error wraps ErrOpen.
	Open(id KeyID, from PublicKey, info, aad, ciphertext []byte) (plaintext, secret []byte, err error)
}
