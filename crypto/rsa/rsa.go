// Package rsa implements the dynkey suites "rsa-2048", "rsa-3072" and
// "rsa-4096", for deployments that must use RSA keys: RSA-OAEP-SHA256
// wraps a fresh AES-256-GCM key per message, and an RSA-PSS-SHA256
// signature by the sender authenticates everything.
//
// Importing the package registers the three suites with [crypto.Register].
// The standard library's crypto/rsa is imported as stdrsa throughout.
//
// RSA is slow next to the other suites: a Seal costs one PSS signature and
// an Open one RSA-OAEP decryption, each a private-key operation (about 1 ms
// at 2048 bits and 3 ms at 3072 bits on a 2-core x86 server, 10 to 40 times
// an ecies-x25519 Open), and key generation takes from 50 ms (2048 bits) to
// seconds (4096 bits). Prefer an elliptic-curve or post-quantum suite unless
// RSA is required, and generate keys ahead of time.
//
// # Keys
//
// Every party has one RSA key pair, with public exponent 65537 and a modulus
// of exactly the suite's size (2048, 3072 or 4096 bits). The same key pair
// decrypts RSA-OAEP when the party receives and signs RSA-PSS when it sends.
//
// This is a deliberate choice. A [crypto.Suite] party has one key pair, and
// a second RSA key per party would double the slowest part of RSA (key
// generation), the key sizes and the rotation work. RFC 8017 (section 6)
// recommends, as good practice, using an RSA key pair in a single scheme,
// to rule out interactions between schemes and keep security proofs simple;
// but no attack is known on sharing a key between RSA-OAEP and RSA-PSS
// (their combined use is studied by Haber and Pinkas, "Securely combining
// public-key cryptosystems", CCS 2001), and the package gives an attacker
// nothing to play one scheme against the other: it never returns the
// result of an OAEP decryption (only a GCM plaintext under a key that was
// in it), never signs anything but a SHA-256 digest of a transcript that
// starts with the label "dynkey/v1 rsa", and never exposes a raw RSA
// operation. Deployments whose policy requires separate encryption and
// signing keys (NIST SP 800-57 part 1, section 5.2) should use another
// suite.
//
// # Wire format
//
// lp(x) below is the 8-byte big-endian length of x followed by x, and k is
// the modulus size in bytes: 256, 384 or 512.
//
// A public key is the PKIX (SubjectPublicKeyInfo, RFC 5280) DER encoding of
// the RSA key ([x509.MarshalPKIXPublicKey]): 294 bytes for rsa-2048, 422
// for rsa-3072, 550 for rsa-4096. With e = 65537 and an exact modulus
// size, the encoding has exactly this length.
//
// A private key is the PKCS #8 DER encoding ([x509.MarshalPKCS8PrivateKey])
// of the two-prime RSA key with its CRT values; about 1,218, 1,792 and
// 2,375 bytes, varying by a few bytes with the key's leading zeros.
//
// Parsing accepts only what Marshal produces: the DER must re-encode to the
// same bytes, the modulus must be exactly the suite's size (an rsa-2048
// suite refuses a 3072-bit key), e must be 65537 and, for a private key,
// there must be two primes and the key must pass [stdrsa.PrivateKey.Validate].
// Anything else is [crypto.ErrMalformedKey].
//
// Seal(rand, to, from, info, aad, plaintext), with pkS and pkR the PKIX
// encodings of the sender's and the recipient's public keys:
//
//	header  = lp("dynkey/v1 rsa") || lp(suite name) || lp(info) || lp(aad) || lp(pkS) || lp(pkR)
//	context = SHA-256(header)                                   32 bytes
//	K       = 32 bytes from rand                                AES-256 key, used once
//	N       = 12 bytes from rand                                GCM nonce
//	wrapped = RSAES-OAEP-ENCRYPT(pkR, K, label = context)       k bytes; SHA-256, MGF1-SHA-256 (RFC 8017)
//	ct      = AES-256-GCM(K).Seal(nonce = N, plaintext, additional data = context)
//	                                                            len(plaintext) + 16 bytes
//	digest  = SHA-256(header || lp(wrapped) || lp(N) || lp(ct))
//	sig     = RSASSA-PSS-SIGN(skS, digest)                      k bytes; SHA-256, MGF1-SHA-256, salt 32 bytes
//
//	ciphertext = wrapped || N || ct || sig
//	secret     = HKDF-SHA256(ikm = K, salt = none, info = "dynkey/v1 message secret", L = 32)
//
// The ciphertext is therefore 2k + 28 bytes longer than the plaintext: 540
// bytes for rsa-2048, 796 for rsa-3072, 1,052 for rsa-4096. Every field has
// a fixed length given the suite (both keys have the suite's modulus size),
// so the ciphertext carries no length fields; the signed transcript
// length-prefixes every part so that it parses one way only.
//
// Open(to, from, info, aad, ciphertext) checks that the ciphertext is at
// least 2k + 28 bytes, splits it as above, verifies the signature with
// pkS (salt length exactly 32), then decrypts the wrapped key with OAEP and
// the label recomputed from its own inputs, then opens the GCM ciphertext.
// The signature is checked first: it is a public-key operation, about 30
// times cheaper than the private-key OAEP decryption at 2048 bits, and it
// rejects every ciphertext not made by the holder of the sender's key
// before the recipient's private key is used.
//
// # Design notes
//
// The signature covers the wrapped key, so a recipient cannot re-wrap a
// message to someone else under the sender's name. The OAEP label and the
// GCM additional data bind the sender's public key, so nobody can strip the
// sender's signature, sign the same wrapped key and ciphertext with their
// own key and pass off as theirs a message they cannot read. Both public
// keys are in the signed transcript, which rules out duplicate-signature
// key selection, and the suite name binds the modulus size.
//
// The per-message secret is derived from K, which only the sender and the
// holder of the recipient's private key know. K is used for exactly one
// GCM encryption, so the random nonce is not needed for uniqueness; it is
// there so that the construction does not rely on it.
//
// # Randomness
//
// Seal reads exactly 108 bytes from rand, in this order: 32 for K, 12 for
// N, 32 for the OAEP seed (read by [stdrsa.EncryptOAEP]) and 32 for the PSS
// salt (read by [stdrsa.SignPSS]). Go 1.26's crypto/rsa reads the OAEP seed
// and the PSS salt from a caller's reader with io.ReadFull and uses them as
// RFC 8017 specifies, so a reader yielding fixed bytes reproduces a
// ciphertext byte for byte; the test vectors rely on this.
//
// GenerateKey is different: since Go 1.26 [stdrsa.GenerateKey] ignores its
// reader and always uses the system's random source (unless
// GODEBUG=cryptocustomrand=1). Rather than silently ignore a reader the
// caller chose, GenerateKey accepts only nil or [crypto/rand.Reader] and
// returns an error for any other reader. Tests that need fixed keys should
// store them, as the package's test vectors do, or use
// [testing/cryptotest.SetGlobalRandom].
//
// # Side channels
//
// The private-key operations are the standard library's, which since Go
// 1.20 uses constant-time modular arithmetic (crypto/internal/fips140/bigmod)
// instead of blinding, checks the CRT result against the public key to
// defend against fault attacks, and decodes OAEP padding in constant time.
// Keys are precomputed (CRT values) when they are generated or parsed.
// Every Open failure returns [crypto.ErrOpen] itself. An Open that fails at
// the OAEP step returns sooner than one that fails at GCM; that tells an
// attacker only whether a wrapped key of their own making is a valid OAEP
// ciphertext, which RSA-OAEP's chosen-ciphertext security already allows
// for (the decoding itself does not leak which check failed).
//
// # Secret hygiene
//
// The package zeroes the AES key K and the private-key encodings it
// compares. It keeps no serialized copy of a private key (Bytes marshals on
// demand) and cannot erase what the standard library holds or copies the Go
// runtime makes; callers who serialize private keys with Bytes own the copy
// and should clear it when done.
package rsa

import (
	"bytes"
	stdcrypto "crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	cryptorand "crypto/rand"
	stdrsa "crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"reflect"

	"github.com/dynkey/dynkey/crypto"
)

// The registered suite names.
const (
	Name2048 = "rsa-2048"
	Name3072 = "rsa-3072"
	Name4096 = "rsa-4096"
)

const (
	// transcriptLabel starts every header; see the package documentation.
	transcriptLabel = "dynkey/v1 rsa"
	// secretInfo is the HKDF info from which the per-message secret is
	// derived.
	secretInfo = "dynkey/v1 message secret"

	// publicExponent is the only public exponent the suites accept, and
	// the one stdrsa.GenerateKey uses.
	publicExponent = 65537

	aesKeySize = 32 // AES-256
	nonceSize  = 12 // GCM standard nonce
	tagSize    = 16 // GCM tag
	saltSize   = sha256.Size

	// seedSize is what Seal reads from rand itself (K and N); stdrsa reads
	// another 2 * sha256.Size.
	seedSize = aesKeySize + nonceSize

	// maxPrivateKeyLen bounds the PKCS #8 input before it reaches the DER
	// parser; the largest suite's keys are about 2,400 bytes.
	maxPrivateKeyLen = 4096
)

// pssOptions are the PSS parameters for signing and verifying: SHA-256 and
// a 32-byte salt, checked exactly on verification.
var pssOptions = &stdrsa.PSSOptions{SaltLength: saltSize, Hash: stdcrypto.SHA256}

// suite is one RSA modulus size.
type suite struct {
	name   string
	bits   int // modulus size in bits
	k      int // modulus size in bytes
	pubLen int // length of the PKIX encoding of a public key
}

var (
	suite2048 = &suite{name: Name2048, bits: 2048, k: 256, pubLen: 294}
	suite3072 = &suite{name: Name3072, bits: 3072, k: 384, pubLen: 422}
	suite4096 = &suite{name: Name4096, bits: 4096, k: 512, pubLen: 550}
)

var (
	_ crypto.Suite      = (*suite)(nil)
	_ crypto.PublicKey  = (*publicKey)(nil)
	_ crypto.PrivateKey = (*privateKey)(nil)
)

func init() {
	crypto.Register(suite2048)
	crypto.Register(suite3072)
	crypto.Register(suite4096)
}

// RSA2048 returns the "rsa-2048" suite.
func RSA2048() crypto.Suite { return suite2048 }

// RSA3072 returns the "rsa-3072" suite.
func RSA3072() crypto.Suite { return suite3072 }

// RSA4096 returns the "rsa-4096" suite.
func RSA4096() crypto.Suite { return suite4096 }

// Name implements crypto.Suite.
func (s *suite) Name() string { return s.name }

// String returns the suite name.
func (s *suite) String() string { return s.name }

// overhead is how much longer a ciphertext is than its plaintext.
func (s *suite) overhead() int { return 2*s.k + nonceSize + tagSize }

// GenerateKey implements crypto.Suite. rand must be nil or
// crypto/rand.Reader: Go 1.26's crypto/rsa ignores any other reader for key
// generation, so GenerateKey refuses one instead of silently not using it.
// Generating a key takes from about 50 ms (2048 bits) to a second or more
// (4096 bits).
func (s *suite) GenerateKey(rand io.Reader) (crypto.PrivateKey, error) {
	if !isDefaultReader(rand) {
		return nil, fmt.Errorf("%s: GenerateKey supports only crypto/rand.Reader: Go's crypto/rsa ignores other random sources for key generation", s.name)
	}
	key, err := stdrsa.GenerateKey(cryptorand.Reader, s.bits)
	if err != nil {
		return nil, fmt.Errorf("%s: generating key: %w", s.name, err)
	}
	return s.newPrivateKey(key)
}

// ParsePublicKey implements crypto.Suite. It accepts only the PKIX DER
// encoding of an RSA key with e = 65537 and a modulus of exactly the suite's
// size, in the canonical form Bytes produces.
func (s *suite) ParsePublicKey(b []byte) (crypto.PublicKey, error) {
	if len(b) != s.pubLen {
		return nil, fmt.Errorf("%s: public key is %d bytes, want %d: %w", s.name, len(b), s.pubLen, crypto.ErrMalformedKey)
	}
	k, err := x509.ParsePKIXPublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: invalid public key: %w", s.name, crypto.ErrMalformedKey)
	}
	key, ok := k.(*stdrsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%s: public key is a %T, not RSA: %w", s.name, k, crypto.ErrMalformedKey)
	}
	pk, err := s.newPublicKey(key)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(pk.der, b) {
		return nil, fmt.Errorf("%s: public key is not in canonical PKIX form: %w", s.name, crypto.ErrMalformedKey)
	}
	return pk, nil
}

// ParsePrivateKey implements crypto.Suite. It accepts only the PKCS #8 DER
// encoding of a valid two-prime RSA key with e = 65537 and a modulus of
// exactly the suite's size, in the canonical form Bytes produces.
//
// The input is not retained; the caller may clear it afterwards.
func (s *suite) ParsePrivateKey(b []byte) (crypto.PrivateKey, error) {
	if len(b) == 0 || len(b) > maxPrivateKeyLen {
		return nil, fmt.Errorf("%s: private key is %d bytes: %w", s.name, len(b), crypto.ErrMalformedKey)
	}
	k, err := x509.ParsePKCS8PrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: invalid private key: %w", s.name, crypto.ErrMalformedKey)
	}
	key, ok := k.(*stdrsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: private key is a %T, not RSA: %w", s.name, k, crypto.ErrMalformedKey)
	}
	sk, err := s.newPrivateKey(key)
	if err != nil {
		return nil, err
	}
	der := sk.Bytes()
	defer clear(der)
	if subtle.ConstantTimeCompare(der, b) != 1 {
		return nil, fmt.Errorf("%s: private key is not in canonical PKCS #8 form: %w", s.name, crypto.ErrMalformedKey)
	}
	return sk, nil
}

// Seal implements crypto.Suite; see the package documentation for the exact
// construction. It reads exactly 108 bytes from rand.
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

	var seed [seedSize]byte
	defer clear(seed[:])
	if _, err := io.ReadFull(rand, seed[:]); err != nil {
		return nil, nil, fmt.Errorf("%s: seal: reading randomness: %w", s.name, err)
	}
	key, nonce := seed[:aesKeySize], seed[aesKeySize:]

	h := s.header(info, aad, skS.pub, pkR)
	context := h.Sum(nil)

	wrapped, err := stdrsa.EncryptOAEP(sha256.New(), rand, pkR.key, key, context)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: seal: wrapping key: %w", s.name, err)
	}
	if len(wrapped) != s.k {
		return nil, nil, fmt.Errorf("%s: seal: wrapped key is %d bytes, want %d", s.name, len(wrapped), s.k)
	}
	aead, err := newGCM(key)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: seal: %w", s.name, err)
	}

	ciphertext = make([]byte, 0, len(plaintext)+s.overhead())
	ciphertext = append(ciphertext, wrapped...)
	ciphertext = append(ciphertext, nonce...)
	ciphertext = aead.Seal(ciphertext, nonce, plaintext, context)
	ct := ciphertext[s.k+nonceSize:]

	writeLP(h, wrapped)
	writeLP(h, nonce)
	writeLP(h, ct)
	sig, err := stdrsa.SignPSS(rand, skS.key, stdcrypto.SHA256, h.Sum(nil), pssOptions)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: seal: signing: %w", s.name, err)
	}
	if len(sig) != s.k {
		return nil, nil, fmt.Errorf("%s: seal: signature is %d bytes, want %d", s.name, len(sig), s.k)
	}
	ciphertext = append(ciphertext, sig...)

	secret, err = deriveSecret(key)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: seal: %w", s.name, err)
	}
	return ciphertext, secret, nil
}

// Open implements crypto.Suite. Every failure to authenticate (short input,
// bad signature, OAEP or GCM failure) returns crypto.ErrOpen itself, so that
// no caller can tell which step failed.
func (s *suite) Open(to crypto.PrivateKey, from crypto.PublicKey, info, aad, ciphertext []byte) (plaintext, secret []byte, err error) {
	skR, err := s.privateKey(to, "recipient")
	if err != nil {
		return nil, nil, err
	}
	pkS, err := s.publicKey(from, "sender")
	if err != nil {
		return nil, nil, err
	}
	if len(ciphertext) < s.overhead() {
		return nil, nil, crypto.ErrOpen
	}
	wrapped := ciphertext[:s.k:s.k]
	nonce := ciphertext[s.k : s.k+nonceSize : s.k+nonceSize]
	ct := ciphertext[s.k+nonceSize : len(ciphertext)-s.k : len(ciphertext)-s.k]
	sig := ciphertext[len(ciphertext)-s.k:]

	// 1. The sender's signature, a public-key operation.
	h := s.header(info, aad, pkS, skR.pub)
	context := h.Sum(nil)
	writeLP(h, wrapped)
	writeLP(h, nonce)
	writeLP(h, ct)
	if err := stdrsa.VerifyPSS(pkS.key, stdcrypto.SHA256, h.Sum(nil), sig, pssOptions); err != nil {
		return nil, nil, crypto.ErrOpen
	}

	// 2. The wrapped key, with the recipient's private key.
	key, err := stdrsa.DecryptOAEP(sha256.New(), nil, skR.key, wrapped, context)
	if err != nil {
		return nil, nil, crypto.ErrOpen
	}
	defer clear(key)
	if len(key) != aesKeySize {
		return nil, nil, crypto.ErrOpen
	}

	// 3. The payload.
	aead, err := newGCM(key)
	if err != nil {
		return nil, nil, crypto.ErrOpen
	}
	plaintext, err = aead.Open(make([]byte, 0, len(ct)-tagSize), nonce, ct, context)
	if err != nil {
		return nil, nil, crypto.ErrOpen
	}
	secret, err = deriveSecret(key)
	if err != nil {
		return nil, nil, crypto.ErrOpen
	}
	return plaintext, secret, nil
}

// header returns a SHA-256 state that has absorbed
// lp(label) || lp(name) || lp(info) || lp(aad) || lp(pkS) || lp(pkR).
func (s *suite) header(info, aad []byte, pkS, pkR *publicKey) hash.Hash {
	h := sha256.New()
	writeLP(h, []byte(transcriptLabel))
	writeLP(h, []byte(s.name))
	writeLP(h, info)
	writeLP(h, aad)
	writeLP(h, pkS.der)
	writeLP(h, pkR.der)
	return h
}

// writeLP writes the 8-byte big-endian length of b, then b.
func writeLP(h hash.Hash, b []byte) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(b)))
	h.Write(n[:])
	h.Write(b)
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// deriveSecret returns HKDF-SHA256(ikm = key, salt = none,
// info = "dynkey/v1 message secret", L = 32).
func deriveSecret(key []byte) ([]byte, error) {
	return hkdf.Key(sha256.New, key, nil, secretInfo, crypto.SecretSize)
}

// isDefaultReader reports whether r is nil or the current
// crypto/rand.Reader. The type checks keep the comparison from panicking on
// an uncomparable reader.
func isDefaultReader(r io.Reader) bool {
	if r == nil {
		return true
	}
	def := cryptorand.Reader
	t := reflect.TypeOf(r)
	return t == reflect.TypeOf(def) && t.Comparable() && r == def
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

// checkKey checks the size and exponent every key of the suite has.
func (s *suite) checkKey(key *stdrsa.PublicKey) error {
	if key.N == nil || key.N.BitLen() != s.bits {
		bits := 0
		if key.N != nil {
			bits = key.N.BitLen()
		}
		return fmt.Errorf("%s: key has a %d-bit modulus, want %d: %w", s.name, bits, s.bits, crypto.ErrMalformedKey)
	}
	if key.E != publicExponent {
		return fmt.Errorf("%s: key has public exponent %d, want %d: %w", s.name, key.E, publicExponent, crypto.ErrMalformedKey)
	}
	return nil
}

// publicKey is a suite's public key: the RSA key and its PKIX encoding.
type publicKey struct {
	suite *suite
	key   *stdrsa.PublicKey
	der   []byte // x509.MarshalPKIXPublicKey(key)
}

func (s *suite) newPublicKey(key *stdrsa.PublicKey) (*publicKey, error) {
	if err := s.checkKey(key); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(key)
	if err != nil || len(der) != s.pubLen {
		return nil, fmt.Errorf("%s: encoding public key: %w", s.name, crypto.ErrMalformedKey)
	}
	return &publicKey{suite: s, key: key, der: der}, nil
}

// Bytes implements crypto.PublicKey. It returns a fresh copy of the PKIX
// encoding.
func (k *publicKey) Bytes() []byte { return bytes.Clone(k.der) }

// String returns the suite name and the SHA-256 of the key's encoding.
func (k *publicKey) String() string {
	return fmt.Sprintf("%s public key SHA256:%x", k.suite.name, sha256.Sum256(k.der))
}

// privateKey is a suite's private key. Bytes marshals it on demand.
type privateKey struct {
	suite *suite
	key   *stdrsa.PrivateKey
	pub   *publicKey
}

var errNotTwoPrime = errors.New("not a two-prime key")

func (s *suite) newPrivateKey(key *stdrsa.PrivateKey) (*privateKey, error) {
	if len(key.Primes) != 2 {
		return nil, fmt.Errorf("%s: %w: %w", s.name, errNotTwoPrime, crypto.ErrMalformedKey)
	}
	// Precompute before the key can be shared between goroutines: it
	// fills in the CRT values and the standard library's internal key,
	// which every operation would otherwise rebuild. GenerateKey and
	// x509.ParsePKCS8PrivateKey have already done it; then this is a
	// cheap consistency check.
	key.Precompute()
	if err := key.Validate(); err != nil {
		return nil, fmt.Errorf("%s: invalid private key: %w", s.name, crypto.ErrMalformedKey)
	}
	pub, err := s.newPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	return &privateKey{suite: s, key: key, pub: pub}, nil
}

// Public implements crypto.PrivateKey.
func (k *privateKey) Public() crypto.PublicKey { return k.pub }

// Bytes implements crypto.PrivateKey: the PKCS #8 DER encoding. Each call
// returns a fresh copy that the caller owns and should clear (clear(b))
// when done; Go cannot guarantee that no other copy of the key remains in
// memory.
func (k *privateKey) Bytes() []byte {
	b, err := x509.MarshalPKCS8PrivateKey(k.key)
	if err != nil {
		// Cannot happen for the validated two-prime keys used here.
		return nil
	}
	return b
}

// Format prints only the suite name, never the key, for every verb, so that
// a private key accidentally passed to fmt or a logger is not disclosed.
func (k *privateKey) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, "%s private key (redacted)", k.suite.name)
}
