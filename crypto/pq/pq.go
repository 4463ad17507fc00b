// Package pq implements the post-quantum dynkey suite "pq-xwing": HPKE
// (RFC 9180) in base mode with the X-Wing hybrid KEM (ML-KEM-768 and
// X25519), and an ML-DSA-65 (FIPS 204) signature by the sender.
//
//	pq-xwing: KEM MLKEM768-X25519 (X-Wing) 0x647a, KDF HKDF-SHA256 0x0001, AEAD ChaCha20-Poly1305 0x0003
//	          signature ML-DSA-65 (pure, hedged, empty context string)
//
// HPKE comes from the standard library's crypto/hpke, ML-DSA-65 from
// github.com/cloudflare/circl/sign/mldsa/mldsa65. Importing the package
// registers the suite with [crypto.Register].
//
// Confidentiality holds as long as either ML-KEM-768 or X25519 does, so
// against a future quantum computer too. Sender authentication rests on
// ML-DSA-65 alone: it is post-quantum, but not hybrid.
//
// # Wire format
//
// lp(x) below is the 8-byte big-endian length of x followed by x, and
// lp16(x) the 2-byte big-endian length followed by x.
//
// A key pair is an X-Wing key pair and an ML-DSA-65 key pair.
//
//	public key  = lp16(X-Wing public key) || ML-DSA-65 public key
//	            = 0x04 0xc0 || 1,216 bytes || 1,952 bytes        3,170 bytes
//	private key = X-Wing seed || ML-DSA-65 seed                  64 bytes
//
// The X-Wing public key is ML-KEM-768's encapsulation key followed by the
// X25519 public key (draft-connolly-cfrg-xwing-kem, as serialized by
// draft-ietf-hpke-pq); its length prefix is always 1,216. The X-Wing seed
// is the 32-byte X-Wing private key (expanded with SHAKE256 into the
// ML-KEM-768 and X25519 keys) and the ML-DSA-65 seed is FIPS 204's 32-byte
// ξ. Private keys travel as seeds: every 64-byte string is a valid private
// key. ParsePublicKey accepts only a length prefix of 1,216, an ML-KEM-768
// encapsulation key that passes FIPS 203's modulus check, and a canonical
// X25519 u-coordinate (below 2^255-19) that is not of low order (those
// would make every encapsulation fail); every ML-DSA-65 public key encoding
// is valid.
//
// Seal(rand, to, from, info, aad, plaintext), with pkS and pkR the encodings
// of the sender's and the recipient's public keys and fp(pk) = SHA-256(pk):
//
//	hpke_info     = lp("dynkey/v1 pq-xwing") || lp(info) || lp(fp(pkS))
//	enc, ctx      = SetupBaseS(pkR's X-Wing key, hpke_info)     enc: 1,120 bytes
//	ct            = ctx.Seal(aad, plaintext)                    sequence number 0; len(plaintext) + 16 bytes
//	secret        = ctx.Export("dynkey/v1 message secret", 32)
//	signed        = lp("dynkey/v1 pq-xwing") || lp(info) || lp(aad) || lp(fp(pkS)) || lp(fp(pkR)) || lp(enc) || lp(ct)
//	sig           = ML-DSA-65.Sign(skS, signed, ctx = "")      3,309 bytes
//
//	ciphertext = enc || ct || sig
//
// The ciphertext is therefore 4,445 bytes longer than the plaintext
// (1,120 + 16 + 3,309). Open(to, from, info, aad, ciphertext) checks the
// length (at least 4,445 bytes), verifies the signature with pkS's
// ML-DSA-65 key, and only then runs SetupBaseR(enc, skR, hpke_info) and
// opens ct at sequence number 0. Verification first is also the cheaper
// order: ML-DSA-65 verification costs less than half an X-Wing
// decapsulation, and a forgery never reaches the recipient's private key.
// Every Open failure returns [crypto.ErrOpen] itself.
//
// # Design notes
//
// HPKE's base mode does not authenticate the sender (X-Wing has no auth
// mode); the ML-DSA-65 signature does. It covers enc, so a recipient cannot
// re-encrypt a message to someone else under the sender's name, and both
// public keys. The sender's public key is also bound into hpke_info, so
// nobody can strip the sender's signature, sign enc and ct with their own
// key and pass off as theirs a message they cannot read: the HPKE key
// schedule would differ and the AEAD would fail.
//
// The per-message secret is the HPKE exporter's, known to the sender and to
// the holder of the recipient's X-Wing key only.
//
// # Randomness
//
// GenerateKey reads exactly 64 bytes from rand: the X-Wing seed, then the
// ML-DSA-65 seed. A reader yielding fixed bytes gives a fixed key pair,
// whose private key encoding is those 64 bytes.
//
// Seal cannot use a caller's reader: Go's crypto/hpke takes none and draws
// the ephemeral X25519 key and the ML-KEM encapsulation randomness from the
// system's random source, and circl's hedged ML-DSA signing reads
// crypto/rand. Seal therefore accepts only nil or [crypto/rand.Reader] and
// returns an error for any other reader, rather than silently ignore it.
// Seal's output is not reproducible; the package's test vector is built
// with circl's HPKE (which takes X-Wing's 64-byte encapsulation seed) and
// deterministic ML-DSA-65 signing instead, and checked against Open.
//
// # Secret hygiene
//
// The package zeroes the seeds it reads in GenerateKey and copies in
// ParsePrivateKey. The keys themselves live inside crypto/hpke and circl,
// which keep the seeds, and the package cannot erase those, the HPKE key
// schedule, or copies the Go runtime makes. Callers who serialize private
// keys with Bytes own the copy and should clear it when done.
package pq

import (
	"bytes"
	"crypto/hpke"
	cryptorand "crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"reflect"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/dynkey/dynkey/crypto"
	"github.com/dynkey/dynkey/crypto/internal/x25519"
)

// Name is the registered suite name.
const Name = "pq-xwing"

const (
	// label starts hpke_info and the signed transcript.
	label = "dynkey/v1 pq-xwing"
	// exportContext is the HPKE exporter context from which the
	// per-message secret is derived; Export(exportContext, 32).
	exportContext = "dynkey/v1 message secret"

	// HPKE algorithm identifiers.
	kemID  = 0x647a // MLKEM768-X25519 (X-Wing)
	kdfID  = 0x0001 // HKDF-SHA256
	aeadID = 0x0003 // ChaCha20-Poly1305

	xwingSeedSize   = 32
	xwingPublicSize = 1216 // ML-KEM-768 encapsulation key (1,184) || X25519 (32)
	x25519Offset    = 1184 // offset of the X25519 key in the X-Wing public key
	encSize         = 1120 // ML-KEM-768 ciphertext (1,088) || X25519 ephemeral (32)
	tagSize         = 16

	publicKeySize  = 2 + xwingPublicSize + mldsa65.PublicKeySize // 3,170
	privateKeySize = xwingSeedSize + mldsa65.SeedSize            // 64
	overhead       = encSize + tagSize + mldsa65.SignatureSize   // 4,445
)

// suite is the pq-xwing suite.
type suite struct {
	kem  hpke.KEM
	kdf  hpke.KDF
	aead hpke.AEAD
}

var xwingSuite = newSuite()

var (
	_ crypto.Suite      = (*suite)(nil)
	_ crypto.PublicKey  = (*publicKey)(nil)
	_ crypto.PrivateKey = (*privateKey)(nil)
)

func init() {
	crypto.Register(xwingSuite)
}

// XWing returns the "pq-xwing" suite.
func XWing() crypto.Suite { return xwingSuite }

func newSuite() *suite {
	s := &suite{kem: hpke.MLKEM768X25519(), kdf: hpke.HKDFSHA256(), aead: hpke.ChaCha20Poly1305()}
	if s.kem.ID() != kemID || s.kdf.ID() != kdfID || s.aead.ID() != aeadID || mldsa65.SeedSize != 32 {
		panic("pq: unexpected algorithm identifiers")
	}
	return s
}

// Name implements crypto.Suite.
func (s *suite) Name() string { return Name }

// String returns the suite name.
func (s *suite) String() string { return Name }

// GenerateKey implements crypto.Suite. It reads exactly 64 bytes from rand
// (crypto/rand.Reader when nil) and returns the key pair with that private
// key encoding.
func (s *suite) GenerateKey(rand io.Reader) (crypto.PrivateKey, error) {
	if rand == nil {
		rand = cryptorand.Reader
	}
	var seed [privateKeySize]byte
	defer clear(seed[:])
	if _, err := io.ReadFull(rand, seed[:]); err != nil {
		return nil, fmt.Errorf("%s: reading randomness: %w", Name, err)
	}
	return s.newPrivateKey(seed[:])
}

// ParsePublicKey implements crypto.Suite; see the package documentation
// for what it accepts.
func (s *suite) ParsePublicKey(b []byte) (crypto.PublicKey, error) {
	if len(b) != publicKeySize {
		return nil, fmt.Errorf("%s: public key is %d bytes, want %d: %w", Name, len(b), publicKeySize, crypto.ErrMalformedKey)
	}
	if n := binary.BigEndian.Uint16(b); n != xwingPublicSize {
		return nil, fmt.Errorf("%s: X-Wing public key length %d, want %d: %w", Name, n, xwingPublicSize, crypto.ErrMalformedKey)
	}
	xw, sigKey := b[2:2+xwingPublicSize], b[2+xwingPublicSize:]
	if err := checkX25519(xw[x25519Offset:]); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", Name, err, crypto.ErrMalformedKey)
	}
	kemKey, err := s.kem.NewPublicKey(xw)
	if err != nil {
		return nil, fmt.Errorf("%s: invalid X-Wing public key: %w", Name, crypto.ErrMalformedKey)
	}
	var sk mldsa65.PublicKey
	err = sk.UnmarshalBinary(sigKey)
	clearUpperAVX()
	if err != nil {
		return nil, fmt.Errorf("%s: invalid ML-DSA-65 public key: %w", Name, crypto.ErrMalformedKey)
	}
	pk, err := s.newPublicKey(kemKey, &sk)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(pk.bytes, b) {
		return nil, fmt.Errorf("%s: public key is not in canonical form: %w", Name, crypto.ErrMalformedKey)
	}
	return pk, nil
}

// ParsePrivateKey implements crypto.Suite. Every 64-byte string is a
// private key.
//
// The input is copied; the caller may clear it afterwards.
func (s *suite) ParsePrivateKey(b []byte) (crypto.PrivateKey, error) {
	if len(b) != privateKeySize {
		return nil, fmt.Errorf("%s: private key is %d bytes, want %d: %w", Name, len(b), privateKeySize, crypto.ErrMalformedKey)
	}
	return s.newPrivateKey(b)
}

// Seal implements crypto.Suite; see the package documentation for the exact
// construction. rand must be nil or crypto/rand.Reader.
func (s *suite) Seal(rand io.Reader, to crypto.PublicKey, from crypto.PrivateKey, info, aad, plaintext []byte) (ciphertext, secret []byte, err error) {
	pkR, err := s.publicKey(to, "recipient")
	if err != nil {
		return nil, nil, err
	}
	skS, err := s.privateKey(from, "sender")
	if err != nil {
		return nil, nil, err
	}
	if !isDefaultReader(rand) {
		return nil, nil, fmt.Errorf("%s: Seal supports only crypto/rand.Reader: Go's crypto/hpke takes no random source", Name)
	}

	enc, sender, err := hpke.NewSender(pkR.kem, s.kdf, s.aead, hpkeInfo(info, skS.pub))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: seal: %w", Name, err)
	}
	if len(enc) != encSize {
		return nil, nil, fmt.Errorf("%s: seal: encapsulated key is %d bytes, want %d", Name, len(enc), encSize)
	}
	ct, err := sender.Seal(aad, plaintext)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: seal: %w", Name, err)
	}
	secret, err = sender.Export(exportContext, crypto.SecretSize)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: seal: %w", Name, err)
	}

	ciphertext = make([]byte, len(enc)+len(ct)+mldsa65.SignatureSize)
	copy(ciphertext, enc)
	copy(ciphertext[len(enc):], ct)
	sig := ciphertext[len(enc)+len(ct):]
	err = mldsa65.SignTo(skS.sig, signedMessage(info, aad, skS.pub, pkR, enc, ct), nil, true, sig)
	clearUpperAVX()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: seal: signing: %w", Name, err)
	}
	return ciphertext, secret, nil
}

// Open implements crypto.Suite. Every failure to authenticate (short input,
// bad signature, invalid encapsulated key, AEAD failure) returns
// crypto.ErrOpen itself, so that no caller can tell which step failed.
func (s *suite) Open(to crypto.PrivateKey, from crypto.PublicKey, info, aad, ciphertext []byte) (plaintext, secret []byte, err error) {
	skR, err := s.privateKey(to, "recipient")
	if err != nil {
		return nil, nil, err
	}
	pkS, err := s.publicKey(from, "sender")
	if err != nil {
		return nil, nil, err
	}
	if len(ciphertext) < overhead {
		return nil, nil, crypto.ErrOpen
	}
	sigStart := len(ciphertext) - mldsa65.SignatureSize
	enc := ciphertext[:encSize:encSize]
	ct := ciphertext[encSize:sigStart:sigStart]
	sig := ciphertext[sigStart:]

	// 1. The sender's signature.
	ok := mldsa65.Verify(pkS.sig, signedMessage(info, aad, pkS, skR.pub, enc, ct), nil, sig)
	clearUpperAVX()
	if !ok {
		return nil, nil, crypto.ErrOpen
	}

	// 2. HPKE with the recipient's key.
	recipient, err := hpke.NewRecipient(enc, skR.kem, s.kdf, s.aead, hpkeInfo(info, pkS))
	if err != nil {
		return nil, nil, crypto.ErrOpen
	}
	plaintext, err = recipient.Open(aad, ct)
	if err != nil {
		return nil, nil, crypto.ErrOpen
	}
	if plaintext == nil {
		plaintext = []byte{}
	}
	secret, err = recipient.Export(exportContext, crypto.SecretSize)
	if err != nil {
		return nil, nil, crypto.ErrOpen
	}
	return plaintext, secret, nil
}

// hpkeInfo returns lp(label) || lp(info) || lp(fp(pkS)).
func hpkeInfo(info []byte, pkS *publicKey) []byte {
	b := make([]byte, 0, 3*8+len(label)+len(info)+sha256.Size)
	b = appendLP(b, []byte(label))
	b = appendLP(b, info)
	b = appendLP(b, pkS.fp[:])
	return b
}

// signedMessage returns
// lp(label) || lp(info) || lp(aad) || lp(fp(pkS)) || lp(fp(pkR)) || lp(enc) || lp(ct).
func signedMessage(info, aad []byte, pkS, pkR *publicKey, enc, ct []byte) []byte {
	b := make([]byte, 0, 7*8+len(label)+len(info)+len(aad)+2*sha256.Size+len(enc)+len(ct))
	b = appendLP(b, []byte(label))
	b = appendLP(b, info)
	b = appendLP(b, aad)
	b = appendLP(b, pkS.fp[:])
	b = appendLP(b, pkR.fp[:])
	b = appendLP(b, enc)
	b = appendLP(b, ct)
	return b
}

// appendLP appends the 8-byte big-endian length of x, then x.
func appendLP(b, x []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(len(x)))
	return append(b, x...)
}

// avxScratch are two distinct, equal 64-byte buffers for clearUpperAVX.
var avxScratch [2][64]byte

// clearUpperAVX clears the upper halves of the AVX registers after a circl
// ML-DSA-65 call, on amd64 CPUs with AVX2, and does nothing useful
// elsewhere.
//
// circl v1.6.5's ML-DSA assembly (sign/internal/dilithium/amd64.s) uses
// 256-bit AVX2 instructions and never executes VZEROUPPER, so it leaves the
// CPU in the "dirty upper" state in which every later SSE instruction
// (SHA-NI SHA-256, AES-NI, the HPKE key schedule, the caller's TLS) pays a
// transition penalty until something clears it: measured on this package's
// Open, 285 µs with the penalty and 165 µs without. Comparing two 64-byte
// buffers runs the standard library's AVX2 memequal
// (internal/bytealg/equal_amd64.s), which ends with VZEROUPPER; it checks
// for AVX2 itself, so it is safe on every CPU. If a later Go or circl
// changes, this costs a 64-byte comparison and nothing breaks.
func clearUpperAVX() {
	if !bytes.Equal(avxScratch[0][:], avxScratch[1][:]) {
		panic("pq: scratch buffers differ")
	}
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

// checkX25519 rejects a 32-byte X25519 public key that is not canonical
// (u >= 2^255-19, which includes a set top bit) or of low order; the check
// is shared with the other X25519 suites.
func checkX25519(u []byte) error { return x25519.CheckPublic(u) }

// publicKey checks that k is a public key of this suite.
func (s *suite) publicKey(k crypto.PublicKey, role string) (*publicKey, error) {
	pk, ok := k.(*publicKey)
	if !ok || pk == nil || pk.suite != s {
		return nil, fmt.Errorf("%s: %s public key: %w", Name, role, crypto.ErrWrongSuite)
	}
	return pk, nil
}

// privateKey checks that k is a private key of this suite.
func (s *suite) privateKey(k crypto.PrivateKey, role string) (*privateKey, error) {
	sk, ok := k.(*privateKey)
	if !ok || sk == nil || sk.suite != s {
		return nil, fmt.Errorf("%s: %s private key: %w", Name, role, crypto.ErrWrongSuite)
	}
	return sk, nil
}

// publicKey is the suite's public key: the X-Wing and ML-DSA-65 keys, their
// encoding and its SHA-256.
type publicKey struct {
	suite *suite
	kem   hpke.PublicKey
	sig   *mldsa65.PublicKey
	bytes []byte
	fp    [sha256.Size]byte
}

func (s *suite) newPublicKey(kemKey hpke.PublicKey, sigKey *mldsa65.PublicKey) (*publicKey, error) {
	xw := kemKey.Bytes()
	if len(xw) != xwingPublicSize {
		return nil, fmt.Errorf("%s: X-Wing public key is %d bytes: %w", Name, len(xw), crypto.ErrMalformedKey)
	}
	b := make([]byte, 0, publicKeySize)
	b = binary.BigEndian.AppendUint16(b, xwingPublicSize)
	b = append(b, xw...)
	b = append(b, sigKey.Bytes()...)
	if len(b) != publicKeySize {
		return nil, fmt.Errorf("%s: public key is %d bytes: %w", Name, len(b), crypto.ErrMalformedKey)
	}
	return &publicKey{suite: s, kem: kemKey, sig: sigKey, bytes: b, fp: sha256.Sum256(b)}, nil
}

// Bytes implements crypto.PublicKey. It returns a fresh copy of the
// encoding.
func (k *publicKey) Bytes() []byte { return bytes.Clone(k.bytes) }

// String returns the suite name and the SHA-256 of the key's encoding.
func (k *publicKey) String() string { return fmt.Sprintf("%s public key SHA256:%x", Name, k.fp) }

// privateKey is the suite's private key: the X-Wing and ML-DSA-65 keys,
// which keep their seeds; Bytes reads them out on demand.
type privateKey struct {
	suite *suite
	kem   hpke.PrivateKey
	sig   *mldsa65.PrivateKey
	pub   *publicKey
}

// newPrivateKey derives the key pair from the 64-byte seed b, which it does
// not retain.
func (s *suite) newPrivateKey(b []byte) (*privateKey, error) {
	kemKey, err := s.kem.NewPrivateKey(b[:xwingSeedSize])
	if err != nil {
		return nil, fmt.Errorf("%s: invalid X-Wing seed: %w", Name, crypto.ErrMalformedKey)
	}
	var seed [mldsa65.SeedSize]byte
	defer clear(seed[:])
	copy(seed[:], b[xwingSeedSize:])
	sigPub, sigKey := mldsa65.NewKeyFromSeed(&seed)
	clearUpperAVX()
	// The public key is computed here, once, before the key can be shared
	// between goroutines: circl recomputes it on every call.
	pub, err := s.newPublicKey(kemKey.PublicKey(), sigPub)
	if err != nil {
		return nil, err
	}
	return &privateKey{suite: s, kem: kemKey, sig: sigKey, pub: pub}, nil
}

// Public implements crypto.PrivateKey.
func (k *privateKey) Public() crypto.PublicKey { return k.pub }

// Bytes implements crypto.PrivateKey: the X-Wing seed followed by the
// ML-DSA-65 seed. Each call returns a fresh copy that the caller owns and
// should clear (clear(b)) when done; Go cannot guarantee that no other copy
// of the key remains in memory.
func (k *privateKey) Bytes() []byte {
	xw, err := k.kem.Bytes() // crypto/hpke's own slice: copy, never modify
	sigSeed := k.sig.Seed()
	defer clear(sigSeed)
	if err != nil || len(xw) != xwingSeedSize || len(sigSeed) != mldsa65.SeedSize {
		// Cannot happen: both keys are always made from seeds here.
		return nil
	}
	b := make([]byte, 0, privateKeySize)
	b = append(b, xw...)
	return append(b, sigSeed...)
}

// Format prints only the suite name, never the key, for every verb, so that
// a private key accidentally passed to fmt or a logger is not disclosed.
func (k *privateKey) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, "%s private key (redacted)", Name)
}
