// Package ecies implements the dynkey suites "ecies-x25519" and "ecies-p256":
// HPKE (RFC 9180) in auth mode (mode_auth, 0x02), one message per
// encapsulation, with the HPKE exporter providing the per-message secret.
//
//	ecies-x25519: DHKEM(X25519, HKDF-SHA256) 0x0020, HKDF-SHA256 0x0001, ChaCha20-Poly1305 0x0003
//	ecies-p256:   DHKEM(P-256, HKDF-SHA256)  0x0010, HKDF-SHA256 0x0001, AES-128-GCM       0x0001
//
// Importing the package registers both suites with [crypto.Register].
//
// # Wire format
//
// Keys are the KEM's SerializePublicKey / SerializePrivateKey encodings
// (RFC 9180 section 7.1.1): for X25519 32 bytes each; for P-256 the 65-byte
// uncompressed point and the 32-byte big-endian scalar.
//
// Seal(rand, to, from, info, aad, pt) runs SetupAuthS(pkR=to, info, skS=from)
// and returns
//
//	ciphertext = enc || AEAD.Seal(key, base_nonce, aad, pt)   (sequence number 0)
//	secret     = Context.Export("dynkey/v1 message secret", 32)
//
// where enc is the KEM encapsulation (32 bytes for X25519, 65 for P-256) and
// the AEAD part is len(pt)+16 bytes. Open(to, from, info, aad, ciphertext)
// splits enc off, runs SetupAuthR(enc, skR=to, info, pkS=from) and opens the
// rest at sequence number 0.
//
// # Randomness
//
// The ephemeral key comes from circl's hpke.Sender.SetupAuth, which reads
// exactly Nsk = 32 bytes from rand with io.ReadFull (the KEM's
// EncapsulationSeedSize, 32 for both suites) and runs the RFC 9180
// DeriveKeyPair(ikmE) on them. A reader yielding an RFC 9180 test vector's
// ikmE therefore reproduces that vector's enc and ciphertext byte for byte,
// which the tests rely on.
//
// GenerateKey likewise reads exactly Nsk = 32 bytes from rand and returns
// DeriveKeyPair(ikm) (RFC 9180 section 7.1.3), so GenerateKey(r) for a
// reader yielding a vector's ikmR returns that vector's skRm/pkRm.
//
// # Secret hygiene
//
// The package zeroes the key-generation seed it allocates itself, and keeps
// no serialized copy of a private key (Bytes serializes on demand). It
// cannot erase what circl and the standard library hold: the private scalar
// inside their key types, and the ephemeral seed, DH outputs and HPKE key
// schedule that circl allocates during Seal and Open. Nor can it erase
// copies the Go runtime makes (garbage collector moves, stack growth,
// swapped pages): Go gives no guarantee that a secret is ever erased from
// memory. Callers who serialize private keys with Bytes own the returned
// copy and should clear it when done.
package ecies

import (
	"bytes"
	cryptorand "crypto/rand"
	"fmt"
	"io"

	"github.com/cloudflare/circl/hpke"
	"github.com/cloudflare/circl/kem"
	"github.com/dynkey/dynkey/crypto"
	"github.com/dynkey/dynkey/crypto/internal/x25519"
)

// exportContext is the HPKE exporter context from which the per-message
// secret is derived; Export(exportContext, crypto.SecretSize).
const exportContext = "dynkey/v1 message secret"

// The registered suite names.
const (
	NameX25519 = "ecies-x25519"
	NameP256   = "ecies-p256"
)

// suite is one HPKE cipher suite in auth mode.
type suite struct {
	name   string
	hpke   hpke.Suite
	kem    kem.AuthScheme
	encLen int // Nenc: length of the encapsulated key at the front of a ciphertext
	tagLen int // Nt: AEAD tag length

	// checkPublic performs validation beyond what circl's
	// UnmarshalBinaryPublicKey does; nil when circl's is complete.
	checkPublic func(b []byte) error
}

var (
	x25519Suite = newSuite(NameX25519, hpke.KEM_X25519_HKDF_SHA256, hpke.KDF_HKDF_SHA256, hpke.AEAD_ChaCha20Poly1305, checkX25519Public)
	p256Suite   = newSuite(NameP256, hpke.KEM_P256_HKDF_SHA256, hpke.KDF_HKDF_SHA256, hpke.AEAD_AES128GCM, nil)
)

var (
	_ crypto.Suite      = (*suite)(nil)
	_ crypto.PublicKey  = (*publicKey)(nil)
	_ crypto.PrivateKey = (*privateKey)(nil)
)

func init() {
	crypto.Register(x25519Suite)
	crypto.Register(p256Suite)
}

// X25519 returns the "ecies-x25519" suite: HPKE auth mode with
// DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and ChaCha20-Poly1305.
func X25519() crypto.Suite { return x25519Suite }

// P256 returns the "ecies-p256" suite: HPKE auth mode with
// DHKEM(P-256, HKDF-SHA256), HKDF-SHA256 and AES-128-GCM.
func P256() crypto.Suite { return p256Suite }

func newSuite(name string, kemID hpke.KEM, kdfID hpke.KDF, aeadID hpke.AEAD, checkPublic func([]byte) error) *suite {
	scheme, ok := kemID.Scheme().(kem.AuthScheme)
	if !ok {
		panic("ecies: KEM " + kemID.Scheme().Name() + " does not support auth mode")
	}
	s := &suite{
		name:        name,
		hpke:        hpke.NewSuite(kemID, kdfID, aeadID),
		kem:         scheme,
		encLen:      scheme.CiphertextSize(),
		tagLen:      int(aeadID.CipherLen(0)),
		checkPublic: checkPublic,
	}
	// Sanity checks on the assumptions the wire format and GenerateKey
	// rely on; they hold for both suites and fail loudly at init otherwise.
	if scheme.SeedSize() != scheme.PrivateKeySize() || scheme.EncapsulationSeedSize() != scheme.SeedSize() ||
		scheme.CiphertextSize() != scheme.PublicKeySize() {
		panic("ecies: unexpected KEM parameters for " + name)
	}
	return s
}

// Name implements crypto.Suite.
func (s *suite) Name() string { return s.name }

// String returns the suite name.
func (s *suite) String() string { return s.name }

// GenerateKey implements crypto.Suite. It reads exactly Nsk (32) bytes from
// rand (crypto/rand.Reader when nil) and returns the RFC 9180
// DeriveKeyPair of them.
func (s *suite) GenerateKey(rand io.Reader) (crypto.PrivateKey, error) {
	if rand == nil {
		rand = cryptorand.Reader
	}
	seed := make([]byte, s.kem.SeedSize())
	defer clear(seed)
	if _, err := io.ReadFull(rand, seed); err != nil {
		return nil, fmt.Errorf("%s: reading randomness: %w", s.name, err)
	}
	// DeriveKeyPair panics only for a seed of the wrong length (excluded
	// above) or, for P-256, when 256 consecutive HKDF candidates are all
	// out of range, which happens with probability below 2^-8000.
	_, sk := s.kem.DeriveKeyPair(seed)
	return s.newPrivateKey(sk)
}

// ParsePublicKey implements crypto.Suite.
//
// For ecies-x25519 it accepts only canonical encodings (u < 2^255-19, top bit
// clear), which every honestly generated key has, and rejects the
// low-order points, which could never yield a shared secret.
// For ecies-p256 it accepts only uncompressed points on the curve.
func (s *suite) ParsePublicKey(b []byte) (crypto.PublicKey, error) {
	if len(b) != s.kem.PublicKeySize() {
		return nil, fmt.Errorf("%s: public key is %d bytes, want %d: %w", s.name, len(b), s.kem.PublicKeySize(), crypto.ErrMalformedKey)
	}
	if s.checkPublic != nil {
		if err := s.checkPublic(b); err != nil {
			return nil, fmt.Errorf("%s: %w: %w", s.name, err, crypto.ErrMalformedKey)
		}
	}
	pk, err := s.kem.UnmarshalBinaryPublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: invalid public key: %w", s.name, crypto.ErrMalformedKey)
	}
	return s.newPublicKey(pk)
}

// ParsePrivateKey implements crypto.Suite. For ecies-x25519 every 32-byte
// string is a valid private key (it is clamped before use, RFC 7748); for
// ecies-p256 the scalar must be in [1, n-1].
//
// The input is copied; the caller may clear it afterwards.
func (s *suite) ParsePrivateKey(b []byte) (crypto.PrivateKey, error) {
	if len(b) != s.kem.PrivateKeySize() {
		return nil, fmt.Errorf("%s: private key is %d bytes, want %d: %w", s.name, len(b), s.kem.PrivateKeySize(), crypto.ErrMalformedKey)
	}
	sk, err := s.kem.UnmarshalBinaryPrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: invalid private key: %w", s.name, crypto.ErrMalformedKey)
	}
	return s.newPrivateKey(sk)
}

// Seal implements crypto.Suite; see the package documentation for the exact
// construction.
func (s *suite) Seal(rand io.Reader, to crypto.PublicKey, from crypto.PrivateKey, info, aad, plaintext []byte) (ciphertext, secret []byte, err error) {
	pkR, err := s.publicKey(to, "recipient")
	if err != nil {
		return nil, nil, err
	}
	skS, err := s.privateKey(from, "sender")
	if err != nil {
		return nil, nil, err
	}
	if rand == nil {
		rand = cryptorand.Reader
	}
	sender, err := s.hpke.NewSender(pkR.kem, info)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: seal: %w", s.name, err)
	}
	// SetupAuth reads exactly EncapsulationSeedSize (32) bytes from rand as
	// ikmE and runs DeriveKeyPair(ikmE) for the ephemeral key.
	enc, sealer, err := sender.SetupAuth(rand, skS.kem)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: seal: %w", s.name, err)
	}
	if len(enc) != s.encLen {
		return nil, nil, fmt.Errorf("%s: seal: encapsulated key is %d bytes, want %d", s.name, len(enc), s.encLen)
	}
	ct, err := sealer.Seal(plaintext, aad)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: seal: %w", s.name, err)
	}
	ciphertext = make([]byte, 0, len(enc)+len(ct))
	ciphertext = append(append(ciphertext, enc...), ct...)
	secret = sealer.Export([]byte(exportContext), crypto.SecretSize)
	return ciphertext, secret, nil
}

// Open implements crypto.Suite. Every failure to authenticate (short input,
// invalid encapsulated key, AEAD failure) returns crypto.ErrOpen itself, so
// that no caller can tell which step failed.
func (s *suite) Open(to crypto.PrivateKey, from crypto.PublicKey, info, aad, ciphertext []byte) (plaintext, secret []byte, err error) {
	skR, err := s.privateKey(to, "recipient")
	if err != nil {
		return nil, nil, err
	}
	pkS, err := s.publicKey(from, "sender")
	if err != nil {
		return nil, nil, err
	}
	// circl does not panic on an enc of the right length, and the AEAD
	// rejects short input itself; checking the length first also keeps
	// garbage from reaching the KEM at all.
	if len(ciphertext) < s.encLen+s.tagLen {
		return nil, nil, crypto.ErrOpen
	}
	enc := ciphertext[:s.encLen:s.encLen]
	ct := ciphertext[s.encLen:]
	receiver, err := s.hpke.NewReceiver(skR.kem, info)
	if err != nil {
		return nil, nil, crypto.ErrOpen
	}
	opener, err := receiver.SetupAuth(enc, pkS.kem)
	if err != nil {
		return nil, nil, crypto.ErrOpen
	}
	plaintext, err = opener.Open(ct, aad)
	if err != nil {
		return nil, nil, crypto.ErrOpen
	}
	if plaintext == nil {
		plaintext = []byte{}
	}
	secret = opener.Export([]byte(exportContext), crypto.SecretSize)
	return plaintext, secret, nil
}

// publicKey checks that k is a public key of this suite.
func (s *suite) publicKey(k crypto.PublicKey, role string) (*publicKey, error) {
	pk, ok := k.(*publicKey)
	if !ok || pk == nil || pk.suite != s {
		return nil, fmt.Errorf("%s: %s public key: %w", s.name, role, crypto.ErrWrongSuite)
	}
	return pk, nil
}

// privateKey checks that k is a private key of this suite.
func (s *suite) privateKey(k crypto.PrivateKey, role string) (*privateKey, error) {
	sk, ok := k.(*privateKey)
	if !ok || sk == nil || sk.suite != s {
		return nil, fmt.Errorf("%s: %s private key: %w", s.name, role, crypto.ErrWrongSuite)
	}
	return sk, nil
}

// publicKey is a suite's public key: the circl KEM key and its encoding.
type publicKey struct {
	suite *suite
	kem   kem.PublicKey
	bytes []byte // SerializePublicKey(kem)
}

func (s *suite) newPublicKey(pk kem.PublicKey) (*publicKey, error) {
	b, err := pk.MarshalBinary()
	if err != nil || len(b) != s.kem.PublicKeySize() {
		return nil, fmt.Errorf("%s: serializing public key: %w", s.name, crypto.ErrMalformedKey)
	}
	return &publicKey{suite: s, kem: pk, bytes: b}, nil
}

// Bytes implements crypto.PublicKey. It returns a fresh copy of the
// encoding.
func (k *publicKey) Bytes() []byte { return bytes.Clone(k.bytes) }

// String returns the suite name and the key in hex.
func (k *publicKey) String() string { return fmt.Sprintf("%s public key %x", k.suite.name, k.bytes) }

// privateKey is a suite's private key. The secret scalar lives only inside
// the circl key; Bytes serializes it on demand.
type privateKey struct {
	suite *suite
	kem   kem.PrivateKey
	pub   *publicKey
}

func (s *suite) newPrivateKey(sk kem.PrivateKey) (*privateKey, error) {
	// Compute the public key now, before the key can be shared between
	// goroutines: circl's X25519 private key computes and caches its public
	// key lazily on the first Public call, which Seal and Open make, and
	// that first call is a data race when it happens concurrently.
	pub, err := s.newPublicKey(sk.Public())
	if err != nil {
		return nil, err
	}
	return &privateKey{suite: s, kem: sk, pub: pub}, nil
}

// Public implements crypto.PrivateKey.
func (k *privateKey) Public() crypto.PublicKey { return k.pub }

// Bytes implements crypto.PrivateKey. Each call returns a fresh copy that
// the caller owns and should clear (clear(b)) when done; Go cannot
// guarantee that no other copy of the key remains in memory.
func (k *privateKey) Bytes() []byte {
	b, err := k.kem.MarshalBinary()
	if err != nil {
		// Cannot happen for the circl DHKEM keys used here.
		return nil
	}
	return b
}

// Format prints only the suite name, never the key, for every verb, so that
// a private key accidentally passed to fmt or a logger is not disclosed.
func (k *privateKey) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, "%s private key (redacted)", k.suite.name)
}

// The X25519 checks are shared with the other X25519 suites; these names
// keep the package's tests readable.
var x25519LowOrder = x25519.LowOrder

// checkX25519Public rejects encodings no X25519 key pair produces.
func checkX25519Public(b []byte) error { return x25519.CheckPublic(b) }
