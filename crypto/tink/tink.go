// Package tink implements the dynkey suites "tink-hpke-x25519" and
// "tink-ecies-p256" with tink-go v2 keysets: a tink hybrid encryption keyset
// for confidentiality and a tink signature keyset for sender authentication.
//
//	tink-hpke-x25519: HPKE (RFC 9180, base mode) DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM; Ed25519
//	tink-ecies-p256:  ECIES-AEAD-HKDF, NIST P-256 (uncompressed points), HKDF-SHA256 (empty salt), AES-128-GCM; ECDSA P-256 SHA-256 (IEEE P1363)
//
// The hybrid and signature parameters are those of tink's templates
// hybrid.DHKEM_X25519_HKDF_SHA256_HKDF_SHA256_AES_256_GCM_Raw_Key_Template,
// hybrid.ECIESHKDFAES128GCMKeyTemplate, signature.ED25519KeyWithoutPrefixTemplate
// and signature.ECDSAP256RawKeyTemplate, all with the RAW output prefix (no
// 5-byte tink key-id prefix: dynkey envelopes already name the key by its
// dynkey key id). The tests check the parameters against the templates.
// AES-256-GCM rather than ChaCha20-Poly1305 was chosen for HPKE because
// WebCrypto, which a browser client would use, has AES-GCM and no ChaCha.
//
// Importing the package registers both suites with [crypto.Register]. The
// suites are for deployments that standardize on tink keysets (and a KMS
// behind tink's key-encryption AEADs); "ecies-x25519" in crypto/ecies is
// smaller and faster and remains the default.
//
// # Keys
//
// A key pair is two tink keysets of one key each: a hybrid private keyset and
// a signature private keyset. The public key's wire encoding is
//
//	u16 len(H) || H || u16 len(S) || S
//
// where H and S are the binary (protobuf) serializations of the public
// keysets, as keyset.Handle.Public followed by WriteWithNoSecrets writes
// them. [crypto.PrivateKey.Bytes] uses the same framing around the
// private keysets IN CLEARTEXT (tink's insecurecleartextkeyset), because the
// interface needs a byte encoding and tink has no other without a key;
// the middleware seals that encoding under its own key-encryption key before
// storing it. [MarshalPrivateKeyEncrypted] has tink write the keysets
// encrypted under a key-encryption AEAD (a KMS key, say) instead, and is the
// recommended form to store. Parsing is strict:
// each keyset must hold exactly one enabled primary key with exactly the
// suite's parameters, and must re-serialize to the very bytes given, so every
// key has one encoding and hence one dynkey key id.
//
// # Messages
//
// Tink's hybrid encryption has a contextInfo but no associated data and no
// exporter, and no sender authentication, so Seal(rand, to, from, info, aad,
// pt) builds them from the two keysets:
//
//	binding    = u16 len(label) || label || u32 len(info) || info || SHA-256(aad) || SHA-256(from.Bytes())
//	secret     = 32 bytes read from rand
//	hybrid     = HybridEncrypt(to's hybrid keyset, plaintext = secret || pt, contextInfo = binding)
//	signature  = Sign(from's signature keyset, binding || hybrid)
//	ciphertext = hybrid || signature
//
// with label = "dynkey/v1 " + suite name. Open(to, from, info, aad, ct)
// splits off the fixed-size signature (64 bytes for both suites), verifies it
// with from's key over the recomputed binding and the hybrid ciphertext,
// decrypts the hybrid ciphertext with contextInfo = binding, and returns the
// first 32 bytes of the result as the per-message secret and the rest as the
// plaintext.
//
// For tink-ecies-p256 the ECDSA signature is normalized to s <= n/2 and Open
// refuses a high s, so that nobody can turn a ciphertext into a second valid
// one by replacing s with n-s (Ed25519 in Go is non-malleable already).
//
// The associated data is bound twice: by the signature and, hashed, by the
// hybrid contextInfo, so a hybrid ciphertext does not even decrypt under
// another aad or info. The sender's public key is in the contextInfo too:
// otherwise anyone could strip the signature off a captured ciphertext, sign
// it again with their own key and have the recipient accept the victim's
// message as theirs. The recipient needs no binding of its own: only its
// private key decrypts the hybrid ciphertext.
//
// Hybrid encryption has no exporter, so the per-message secret is not derived
// from the key agreement: the sender draws it at random and sends it inside
// the hybrid ciphertext. Only the sender and the holder of the recipient's
// private key learn it, as the [crypto.Suite] contract requires; unlike an
// HPKE exporter secret it is not tied to the ephemeral key, which makes no
// difference to a reader of the ciphertext.
//
// # Sizes
//
// The public key on the wire is at most 239 bytes for tink-hpke-x25519 and
// 393 bytes for tink-ecies-p256, and the private key encoding at most 317
// and 470 bytes: tink's protobuf keysets carry type URLs, parameters and
// random 32-bit key ids as varints, so about one key in eight encodes a few
// bytes shorter. The ciphertext overhead is fixed: 144 bytes for
// tink-hpke-x25519 (32 enc + 16 tag + 32 secret + 64 signature) and 189 bytes
// for tink-ecies-p256 (65 point + 12 IV + 16 tag + 32 secret + 64 signature),
// against 48 for ecies-x25519.
//
// # Randomness
//
// GenerateKey reads the private keys from rand: for X25519 and Ed25519 32
// bytes each, for P-256 32 bytes per candidate scalar until one lies in
// [1, n-1] (rejection sampling; a second candidate is needed with
// probability about 2^-32). The hybrid key is read first. Seal reads exactly
// the 32-byte secret from rand. Tink itself draws what it cannot be given a
// reader for from crypto/rand: the ephemeral KEM keys, the AES-GCM IVs of
// ECIES, the ECDSA nonces and the keysets' internal key ids.
//
// # Errors
//
// Open reports every failure to authenticate or decrypt as [crypto.ErrOpen]
// itself; keys of another suite give [crypto.ErrWrongSuite] and unparsable
// keys [crypto.ErrMalformedKey]. A panic inside tink while parsing a key or
// opening a message is recovered and reported as the same errors.
//
// # Key life cycle
//
// [Ring] keeps many key pairs of a suite in one hybrid and one signature
// keyset and exposes tink's keyset.Manager life cycle (add, set primary,
// enable, disable, delete) under dynkey key ids.
package tink

import (
	"bytes"
	"crypto/ecdh"
	"crypto/elliptic"
	cryptorand "crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"

	"github.com/dynkey/dynkey/crypto"
	"github.com/dynkey/dynkey/crypto/internal/x25519"
	"github.com/tink-crypto/tink-go/v2/aead/aesgcm"
	"github.com/tink-crypto/tink-go/v2/hybrid"
	tinkecies "github.com/tink-crypto/tink-go/v2/hybrid/ecies"
	"github.com/tink-crypto/tink-go/v2/hybrid/hpke"
	"github.com/tink-crypto/tink-go/v2/insecurecleartextkeyset"
	"github.com/tink-crypto/tink-go/v2/insecuresecretdataaccess"
	"github.com/tink-crypto/tink-go/v2/key"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/secretdata"
	"github.com/tink-crypto/tink-go/v2/signature"
	"github.com/tink-crypto/tink-go/v2/signature/ecdsa"
	"github.com/tink-crypto/tink-go/v2/signature/ed25519"
	tinkapi "github.com/tink-crypto/tink-go/v2/tink"
)

// The registered suite names.
const (
	NameHPKEX25519 = "tink-hpke-x25519"
	NameECIESP256  = "tink-ecies-p256"
)

// labelPrefix starts every message binding; the suite name follows.
const labelPrefix = "dynkey/v1 "

// signatureSize is the length of the signature at the end of a ciphertext:
// Ed25519, and ECDSA P-256 in IEEE P1363 encoding (r || s), are both 64 bytes.
const signatureSize = 64

// suite is one pairing of a tink hybrid key type with a tink signature key
// type.
type suite struct {
	name  string
	label string // labelPrefix + name

	hybridParams key.Parameters // RAW variant
	sigParams    key.Parameters // RAW variant

	// newHybrid and newSig make a private key with the suite's parameters
	// from randomness read from r.
	newHybrid func(r io.Reader, params key.Parameters) (key.Key, error)
	newSig    func(r io.Reader, params key.Parameters) (key.Key, error)

	// checkHybridPublic performs validation beyond tink's; nil when tink's
	// is complete.
	checkHybridPublic func(k key.Key) error

	// lowS makes signatures (ECDSA r || s) strongly unforgeable: Seal
	// replaces a high s by n-s and Open refuses a high s.
	lowS bool

	// hybridOverhead is the length a hybrid ciphertext adds to its
	// plaintext; minCiphertext the length of a ciphertext of an empty
	// message.
	hybridOverhead int
	minCiphertext  int
}

var (
	hpkeX25519Suite = newSuite(NameHPKEX25519, hpkeX25519Params(), ed25519Params(), newX25519HybridKey, newEd25519Key, checkX25519Public, false, 32+16)
	eciesP256Suite  = newSuite(NameECIESP256, eciesP256Params(), ecdsaP256Params(), newP256HybridKey, newECDSAP256Key, nil, true, 65+12+16)
)

var (
	_ crypto.Suite        = (*suite)(nil)
	_ crypto.PublicKey    = (*publicKey)(nil)
	_ crypto.PrivateKey   = (*privateKey)(nil)
	_ PrivateKeyEncrypter = (*suite)(nil)
)

func init() {
	crypto.Register(hpkeX25519Suite)
	crypto.Register(eciesP256Suite)
}

// HPKEX25519 returns the "tink-hpke-x25519" suite: tink HPKE with
// DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and AES-256-GCM, authenticated
// with tink Ed25519.
func HPKEX25519() crypto.Suite { return hpkeX25519Suite }

// ECIESP256 returns the "tink-ecies-p256" suite: tink ECIES-AEAD-HKDF over
// P-256 with HKDF-SHA256 and AES-128-GCM, authenticated with tink ECDSA
// P-256.
func ECIESP256() crypto.Suite { return eciesP256Suite }

// suiteByName returns this package's suite called name, or nil.
func suiteByName(name string) *suite {
	switch name {
	case NameHPKEX25519:
		return hpkeX25519Suite
	case NameECIESP256:
		return eciesP256Suite
	}
	return nil
}

func newSuite(name string, hybridParams, sigParams key.Parameters, newHybrid, newSig func(io.Reader, key.Parameters) (key.Key, error),
	checkHybridPublic func(key.Key) error, lowS bool, hybridOverhead int) *suite {
	return &suite{
		name:              name,
		label:             labelPrefix + name,
		hybridParams:      hybridParams,
		sigParams:         sigParams,
		newHybrid:         newHybrid,
		newSig:            newSig,
		checkHybridPublic: checkHybridPublic,
		lowS:              lowS,
		hybridOverhead:    hybridOverhead,
		minCiphertext:     hybridOverhead + crypto.SecretSize + signatureSize,
	}
}

// The parameters. Constructing them fails only on a programming error, so
// failures panic at init.

func hpkeX25519Params() key.Parameters {
	p, err := hpke.NewParameters(hpke.ParametersOpts{
		KEMID:   hpke.DHKEM_X25519_HKDF_SHA256,
		KDFID:   hpke.HKDFSHA256,
		AEADID:  hpke.AES256GCM,
		Variant: hpke.VariantNoPrefix,
	})
	return must(p, err)
}

func eciesP256Params() key.Parameters {
	dem, err := aesgcm.NewParameters(aesgcm.ParametersOpts{
		KeySizeInBytes: 16,
		IVSizeInBytes:  12,
		TagSizeInBytes: 16,
		Variant:        aesgcm.VariantNoPrefix,
	})
	must(dem, err)
	p, err := tinkecies.NewParameters(tinkecies.ParametersOpts{
		CurveType:            tinkecies.NISTP256,
		HashType:             tinkecies.SHA256,
		NISTCurvePointFormat: tinkecies.UncompressedPointFormat,
		DEMParameters:        dem,
		Salt:                 nil,
		Variant:              tinkecies.VariantNoPrefix,
	})
	return must(p, err)
}

func ed25519Params() key.Parameters {
	p, err := ed25519.NewParameters(ed25519.VariantNoPrefix)
	return must(&p, err)
}

func ecdsaP256Params() key.Parameters {
	p, err := ecdsa.NewParameters(ecdsa.NistP256, ecdsa.SHA256, ecdsa.IEEEP1363, ecdsa.VariantNoPrefix)
	return must(p, err)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic("dynkey/crypto/tink: " + err.Error())
	}
	return v
}

// secretBytes wraps b, which it copies, for tink's key constructors.
func secretBytes(b []byte) secretdata.Bytes {
	return secretdata.NewBytesFromData(b, insecuresecretdataaccess.Token{})
}

// readSeed reads a 32-byte X25519 or Ed25519 private key from r.
func readSeed(r io.Reader) ([]byte, error) {
	b := make([]byte, 32)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}

// p256Attempts bounds the rejection sampling of P-256 scalars, so that a
// broken reader (all zeros, all 0xff) fails instead of looping forever. An
// honest reader needs more than one attempt with probability about 2^-32.
const p256Attempts = 16

var errNoScalar = errors.New("no P-256 scalar in range from the random reader")

// readP256Scalar reads 32-byte big-endian candidates from r until one is a
// valid P-256 private key, in [1, n-1].
func readP256Scalar(r io.Reader) ([]byte, error) {
	b := make([]byte, 32)
	for range p256Attempts {
		if _, err := io.ReadFull(r, b); err != nil {
			clear(b)
			return nil, err
		}
		if _, err := ecdh.P256().NewPrivateKey(b); err == nil {
			return b, nil
		}
	}
	clear(b)
	return nil, errNoScalar
}

func newX25519HybridKey(r io.Reader, params key.Parameters) (key.Key, error) {
	b, err := readSeed(r)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	return hpke.NewPrivateKey(secretBytes(b), 0, params.(*hpke.Parameters))
}

func newP256HybridKey(r io.Reader, params key.Parameters) (key.Key, error) {
	b, err := readP256Scalar(r)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	return tinkecies.NewPrivateKey(secretBytes(b), 0, params.(*tinkecies.Parameters))
}

func newEd25519Key(r io.Reader, params key.Parameters) (key.Key, error) {
	b, err := readSeed(r)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	return ed25519.NewPrivateKey(secretBytes(b), 0, *params.(*ed25519.Parameters))
}

func newECDSAP256Key(r io.Reader, params key.Parameters) (key.Key, error) {
	b, err := readP256Scalar(r)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	return ecdsa.NewPrivateKey(secretBytes(b), 0, params.(*ecdsa.Parameters))
}

// Name implements crypto.Suite.
func (s *suite) Name() string { return s.name }

// String returns the suite name.
func (s *suite) String() string { return s.name }

// GenerateKey implements crypto.Suite. It reads the hybrid private key and
// then the signature private key from rand (crypto/rand.Reader when nil);
// see the package documentation.
func (s *suite) GenerateKey(rand io.Reader) (crypto.PrivateKey, error) {
	if rand == nil {
		rand = cryptorand.Reader
	}
	hk, err := s.newHybrid(rand, s.hybridParams)
	if err != nil {
		return nil, fmt.Errorf("%s: generating hybrid key: %w", s.name, err)
	}
	sk, err := s.newSig(rand, s.sigParams)
	if err != nil {
		return nil, fmt.Errorf("%s: generating signature key: %w", s.name, err)
	}
	hh, err := singleKeyHandle(hk)
	if err != nil {
		return nil, fmt.Errorf("%s: hybrid keyset: %w", s.name, err)
	}
	sh, err := singleKeyHandle(sk)
	if err != nil {
		return nil, fmt.Errorf("%s: signature keyset: %w", s.name, err)
	}
	return s.newPrivateKey(hh, sh)
}

// singleKeyHandle returns a keyset holding k alone, enabled and primary.
func singleKeyHandle(k key.Key) (*keyset.Handle, error) {
	m := keyset.NewManager()
	id, err := m.AddKey(k)
	if err != nil {
		return nil, err
	}
	if err := m.SetPrimary(id); err != nil {
		return nil, err
	}
	return m.Handle()
}

// ParsePublicKey implements crypto.Suite. It accepts only the exact encoding
// Public().Bytes() produces: two public keysets of one enabled primary key
// each, with the suite's parameters, serialized canonically. For
// tink-hpke-x25519 it also rejects non-canonical and low-order X25519 points.
func (s *suite) ParsePublicKey(b []byte) (pk crypto.PublicKey, err error) {
	defer func() {
		if p := recover(); p != nil {
			pk, err = nil, fmt.Errorf("%s: public key: tink panicked: %w", s.name, crypto.ErrMalformedKey)
		}
	}()
	hb, sb, ok := splitPair(b)
	if !ok {
		return nil, fmt.Errorf("%s: public key is not two length-prefixed keysets: %w", s.name, crypto.ErrMalformedKey)
	}
	hh, err := readPublicKeyset(hb, s.hybridParams, s.checkHybridPublic)
	if err != nil {
		return nil, fmt.Errorf("%s: public hybrid keyset: %w", s.name, err)
	}
	sh, err := readPublicKeyset(sb, s.sigParams, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: public signature keyset: %w", s.name, err)
	}
	return s.newPublicKey(hh, sh)
}

// readPublicKeyset parses one public keyset and checks it as
// ParsePublicKey documents; check, when not nil, validates the key further.
func readPublicKeyset(b []byte, params key.Parameters, check func(key.Key) error) (*keyset.Handle, error) {
	h, err := keyset.ReadWithNoSecrets(keyset.NewBinaryReader(bytes.NewReader(b)))
	if err != nil {
		return nil, fmt.Errorf("unreadable keyset: %w", crypto.ErrMalformedKey)
	}
	k, err := singleKey(h, params)
	if err != nil {
		return nil, err
	}
	if _, isPrivate := k.(interface{ PublicKey() (key.Key, error) }); isPrivate {
		return nil, fmt.Errorf("keyset holds a private key: %w", crypto.ErrMalformedKey)
	}
	if check != nil {
		if err := check(k); err != nil {
			return nil, fmt.Errorf("%w: %w", err, crypto.ErrMalformedKey)
		}
	}
	again, err := publicKeysetBytes(h)
	if err != nil || !bytes.Equal(again, b) {
		return nil, fmt.Errorf("keyset is not canonically encoded: %w", crypto.ErrMalformedKey)
	}
	return h, nil
}

// ParsePrivateKey implements crypto.Suite. It accepts only the exact encoding
// Bytes produces: two cleartext private keysets of one enabled primary key
// each, with the suite's parameters, serialized canonically.
//
// The input is not retained; the caller may clear it afterwards.
func (s *suite) ParsePrivateKey(b []byte) (sk crypto.PrivateKey, err error) {
	defer func() {
		if p := recover(); p != nil {
			sk, err = nil, fmt.Errorf("%s: private key: tink panicked: %w", s.name, crypto.ErrMalformedKey)
		}
	}()
	hb, sb, ok := splitPair(b)
	if !ok {
		return nil, fmt.Errorf("%s: private key is not two length-prefixed keysets: %w", s.name, crypto.ErrMalformedKey)
	}
	hh, err := readPrivateKeyset(hb, s.hybridParams)
	if err != nil {
		return nil, fmt.Errorf("%s: private hybrid keyset: %w", s.name, err)
	}
	sh, err := readPrivateKeyset(sb, s.sigParams)
	if err != nil {
		return nil, fmt.Errorf("%s: private signature keyset: %w", s.name, err)
	}
	return s.newPrivateKey(hh, sh)
}

// readPrivateKeyset parses one cleartext private keyset and checks it as
// ParsePrivateKey documents.
func readPrivateKeyset(b []byte, params key.Parameters) (*keyset.Handle, error) {
	h, err := insecurecleartextkeyset.Read(keyset.NewBinaryReader(bytes.NewReader(b)))
	if err != nil {
		return nil, fmt.Errorf("unreadable keyset: %w", crypto.ErrMalformedKey)
	}
	if err := checkPrivateKeyset(h, params); err != nil {
		return nil, err
	}
	again, err := privateKeysetBytes(h)
	defer clear(again)
	if err != nil || !bytes.Equal(again, b) {
		return nil, fmt.Errorf("keyset is not canonically encoded: %w", crypto.ErrMalformedKey)
	}
	return h, nil
}

// checkPrivateKeyset checks that h holds one private key with params.
func checkPrivateKeyset(h *keyset.Handle, params key.Parameters) error {
	k, err := singleKey(h, params)
	if err != nil {
		return err
	}
	if _, isPrivate := k.(interface{ PublicKey() (key.Key, error) }); !isPrivate {
		return fmt.Errorf("keyset holds no private key: %w", crypto.ErrMalformedKey)
	}
	return nil
}

// singleKey returns the key of a keyset that holds exactly one key, enabled
// and primary, with parameters params.
func singleKey(h *keyset.Handle, params key.Parameters) (key.Key, error) {
	if h.Len() != 1 {
		return nil, fmt.Errorf("keyset holds %d keys, want 1: %w", h.Len(), crypto.ErrMalformedKey)
	}
	e, err := h.Primary()
	if err != nil || !e.IsPrimary() || e.KeyStatus() != keyset.Enabled {
		return nil, fmt.Errorf("keyset has no enabled primary key: %w", crypto.ErrMalformedKey)
	}
	k := e.Key()
	if k == nil || k.Parameters() == nil || !params.Equal(k.Parameters()) {
		return nil, fmt.Errorf("key has other parameters than the suite's: %w: %w", crypto.ErrWrongSuite, crypto.ErrMalformedKey)
	}
	return k, nil
}

// publicKeysetBytes serializes a public keyset.
func publicKeysetBytes(h *keyset.Handle) ([]byte, error) {
	var buf bytes.Buffer
	if err := h.WriteWithNoSecrets(keyset.NewBinaryWriter(&buf)); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// privateKeysetBytes serializes a private keyset in cleartext.
func privateKeysetBytes(h *keyset.Handle) ([]byte, error) {
	var buf bytes.Buffer
	if err := insecurecleartextkeyset.Write(h, keyset.NewBinaryWriter(&buf)); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// appendLP16 appends a 16-bit big-endian length and b.
func appendLP16(dst, b []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(b)))
	return append(dst, b...)
}

// joinPair returns u16 len(a) || a || u16 len(b) || b, or false when either
// does not fit a 16-bit length.
func joinPair(a, b []byte) ([]byte, bool) {
	if len(a) > 0xffff || len(b) > 0xffff {
		return nil, false
	}
	out := make([]byte, 0, 4+len(a)+len(b))
	return appendLP16(appendLP16(out, a), b), true
}

// splitPair parses u16 len(a) || a || u16 len(b) || b, with nothing after
// it and neither part empty. a and b alias in.
func splitPair(in []byte) (a, b []byte, ok bool) {
	a, rest, ok := cutLP16(in)
	if !ok {
		return nil, nil, false
	}
	b, rest, ok = cutLP16(rest)
	if !ok || len(rest) != 0 || len(a) == 0 || len(b) == 0 {
		return nil, nil, false
	}
	return a, b, true
}

// cutLP16 splits a 16-bit length-prefixed field off the front of in.
func cutLP16(in []byte) (field, rest []byte, ok bool) {
	if len(in) < 2 {
		return nil, nil, false
	}
	n := int(binary.BigEndian.Uint16(in))
	if len(in)-2 < n {
		return nil, nil, false
	}
	return in[2 : 2+n], in[2+n:], true
}

// binding returns the message binding, the hybrid contextInfo and the
// prefix of the signed transcript:
//
//	u16 len(label) || label || u32 len(info) || info || SHA-256(aad) || SHA-256(sender public key)
//
// Every field before the two hashes is length-prefixed and the hashes have a
// fixed size, so the binding is self-delimiting and the hybrid ciphertext
// may follow it in the transcript without a prefix.
func (s *suite) binding(info, aad []byte, sender *publicKey) []byte {
	b := make([]byte, 0, 2+len(s.label)+4+len(info)+2*sha256.Size)
	b = appendLP16(b, []byte(s.label))
	b = binary.BigEndian.AppendUint32(b, uint32(len(info)))
	b = append(b, info...)
	aadHash := sha256.Sum256(aad)
	b = append(b, aadHash[:]...)
	return append(b, sender.hash[:]...)
}

// Seal implements crypto.Suite; see the package documentation for the
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
	return s.seal(rand, pkR, skS.pub, skS.signer, info, aad, plaintext)
}

// seal is Seal with the sender given as its public key and a signer for it;
// Ring.Seal passes its keyset's primary signer.
func (s *suite) seal(rand io.Reader, to, sender *publicKey, signer tinkapi.Signer, info, aad, plaintext []byte) (ciphertext, secret []byte, err error) {
	if uint64(len(info)) > math.MaxUint32 {
		return nil, nil, fmt.Errorf("%s: seal: info of %d bytes is too long", s.name, len(info))
	}
	if rand == nil {
		rand = cryptorand.Reader
	}
	inner := make([]byte, crypto.SecretSize+len(plaintext))
	defer clear(inner)
	if _, err := io.ReadFull(rand, inner[:crypto.SecretSize]); err != nil {
		return nil, nil, fmt.Errorf("%s: seal: reading randomness: %w", s.name, err)
	}
	copy(inner[crypto.SecretSize:], plaintext)

	b := s.binding(info, aad, sender)
	hct, err := to.enc.Encrypt(inner, b)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: seal: hybrid encryption: %w", s.name, err)
	}
	if len(hct) != len(inner)+s.hybridOverhead {
		return nil, nil, fmt.Errorf("%s: seal: hybrid ciphertext is %d bytes, want %d", s.name, len(hct), len(inner)+s.hybridOverhead)
	}
	sig, err := signer.Sign(append(b, hct...))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: seal: signing: %w", s.name, err)
	}
	if len(sig) != signatureSize {
		return nil, nil, fmt.Errorf("%s: seal: signature is %d bytes, want %d", s.name, len(sig), signatureSize)
	}
	if s.lowS {
		sig = normalizeLowS(sig)
	}
	ciphertext = make([]byte, 0, len(hct)+len(sig))
	ciphertext = append(append(ciphertext, hct...), sig...)
	return ciphertext, bytes.Clone(inner[:crypto.SecretSize]), nil
}

// Open implements crypto.Suite. Every failure to authenticate or decrypt
// returns crypto.ErrOpen itself, so that no caller can tell which step
// failed. The signature is checked before anything is decrypted.
func (s *suite) Open(to crypto.PrivateKey, from crypto.PublicKey, info, aad, ciphertext []byte) (plaintext, secret []byte, err error) {
	skR, err := s.privateKey(to, "recipient")
	if err != nil {
		return nil, nil, err
	}
	pkS, err := s.publicKey(from, "sender")
	if err != nil {
		return nil, nil, err
	}
	return s.open(skR.dec, pkS, info, aad, ciphertext)
}

// open is Open with the recipient given as a decrypter; Ring.Open passes
// its keyset's, which tries every enabled key.
func (s *suite) open(dec tinkapi.HybridDecrypt, from *publicKey, info, aad, ciphertext []byte) (plaintext, secret []byte, err error) {
	defer func() {
		if recover() != nil {
			plaintext, secret, err = nil, nil, crypto.ErrOpen
		}
	}()
	if len(ciphertext) < s.minCiphertext || uint64(len(info)) > math.MaxUint32 {
		return nil, nil, crypto.ErrOpen
	}
	split := len(ciphertext) - signatureSize
	hct, sig := ciphertext[:split], ciphertext[split:]
	if s.lowS && !isLowS(sig) {
		return nil, nil, crypto.ErrOpen
	}

	b := s.binding(info, aad, from)
	transcript := make([]byte, 0, len(b)+len(hct))
	transcript = append(append(transcript, b...), hct...)
	if err := from.verifier.Verify(sig, transcript); err != nil {
		return nil, nil, crypto.ErrOpen
	}
	inner, err := dec.Decrypt(hct, b)
	if err != nil || len(inner) < crypto.SecretSize {
		return nil, nil, crypto.ErrOpen
	}
	secret = bytes.Clone(inner[:crypto.SecretSize])
	clear(inner[:crypto.SecretSize])
	return inner[crypto.SecretSize:], secret, nil
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

// publicKey is a suite's public key: two public keysets, the primitives
// made from them, and the encoding. It is immutable.
type publicKey struct {
	suite    *suite
	hybrid   *keyset.Handle // public hybrid keyset
	sig      *keyset.Handle // public signature keyset
	enc      tinkapi.HybridEncrypt
	verifier tinkapi.Verifier
	bytes    []byte
	hash     [sha256.Size]byte // SHA-256(bytes), bound into the messages this key sends
}

// newPublicKey makes a public key of two checked public keysets.
func (s *suite) newPublicKey(hybridPub, sigPub *keyset.Handle) (*publicKey, error) {
	hb, err := publicKeysetBytes(hybridPub)
	if err != nil {
		return nil, fmt.Errorf("%s: serializing public hybrid keyset: %w", s.name, crypto.ErrMalformedKey)
	}
	sb, err := publicKeysetBytes(sigPub)
	if err != nil {
		return nil, fmt.Errorf("%s: serializing public signature keyset: %w", s.name, crypto.ErrMalformedKey)
	}
	b, ok := joinPair(hb, sb)
	if !ok {
		return nil, fmt.Errorf("%s: public keysets too long: %w", s.name, crypto.ErrMalformedKey)
	}
	enc, err := hybrid.NewHybridEncrypt(hybridPub)
	if err != nil {
		return nil, fmt.Errorf("%s: hybrid encryption primitive: %w", s.name, crypto.ErrMalformedKey)
	}
	verifier, err := signature.NewVerifier(sigPub)
	if err != nil {
		return nil, fmt.Errorf("%s: verifier primitive: %w", s.name, crypto.ErrMalformedKey)
	}
	return &publicKey{
		suite:    s,
		hybrid:   hybridPub,
		sig:      sigPub,
		enc:      enc,
		verifier: verifier,
		bytes:    b,
		hash:     sha256.Sum256(b),
	}, nil
}

// Bytes implements crypto.PublicKey. It returns a fresh copy of the
// encoding.
func (k *publicKey) Bytes() []byte { return bytes.Clone(k.bytes) }

// String returns the suite name and the key's SHA-256 fingerprint.
func (k *publicKey) String() string {
	return fmt.Sprintf("%s public key sha256:%x", k.suite.name, k.hash[:8])
}

// privateKey is a suite's private key: two private keysets of one key each,
// the primitives made from them, and the public key. It is immutable and
// keeps no serialized copy of the keysets.
type privateKey struct {
	suite  *suite
	hybrid *keyset.Handle
	sig    *keyset.Handle
	dec    tinkapi.HybridDecrypt
	signer tinkapi.Signer
	pub    *publicKey

	// hybridKey and sigKey are the keysets' keys, for Ring.Add.
	hybridKey key.Key
	sigKey    key.Key
}

// newPrivateKey makes a private key of two private keysets, which it
// checks.
func (s *suite) newPrivateKey(hybridPriv, sigPriv *keyset.Handle) (*privateKey, error) {
	if err := checkPrivateKeyset(hybridPriv, s.hybridParams); err != nil {
		return nil, fmt.Errorf("%s: private hybrid keyset: %w", s.name, err)
	}
	if err := checkPrivateKeyset(sigPriv, s.sigParams); err != nil {
		return nil, fmt.Errorf("%s: private signature keyset: %w", s.name, err)
	}
	hybridPub, err := hybridPriv.Public()
	if err != nil {
		return nil, fmt.Errorf("%s: public hybrid keyset: %w", s.name, crypto.ErrMalformedKey)
	}
	sigPub, err := sigPriv.Public()
	if err != nil {
		return nil, fmt.Errorf("%s: public signature keyset: %w", s.name, crypto.ErrMalformedKey)
	}
	if s.checkHybridPublic != nil {
		e, err := hybridPub.Primary()
		if err != nil {
			return nil, fmt.Errorf("%s: public hybrid keyset: %w", s.name, crypto.ErrMalformedKey)
		}
		if err := s.checkHybridPublic(e.Key()); err != nil {
			return nil, fmt.Errorf("%s: %w: %w", s.name, err, crypto.ErrMalformedKey)
		}
	}
	pub, err := s.newPublicKey(hybridPub, sigPub)
	if err != nil {
		return nil, err
	}
	dec, err := hybrid.NewHybridDecrypt(hybridPriv)
	if err != nil {
		return nil, fmt.Errorf("%s: hybrid decryption primitive: %w", s.name, crypto.ErrMalformedKey)
	}
	signer, err := signature.NewSigner(sigPriv)
	if err != nil {
		return nil, fmt.Errorf("%s: signer primitive: %w", s.name, crypto.ErrMalformedKey)
	}
	he, err := hybridPriv.Primary()
	if err != nil {
		return nil, fmt.Errorf("%s: private hybrid keyset: %w", s.name, crypto.ErrMalformedKey)
	}
	se, err := sigPriv.Primary()
	if err != nil {
		return nil, fmt.Errorf("%s: private signature keyset: %w", s.name, crypto.ErrMalformedKey)
	}
	return &privateKey{
		suite:     s,
		hybrid:    hybridPriv,
		sig:       sigPriv,
		dec:       dec,
		signer:    signer,
		pub:       pub,
		hybridKey: he.Key(),
		sigKey:    se.Key(),
	}, nil
}

// Public implements crypto.PrivateKey.
func (k *privateKey) Public() crypto.PublicKey { return k.pub }

// Bytes implements crypto.PrivateKey. It returns the two private keysets in
// CLEARTEXT, serialized with tink's insecurecleartextkeyset, as
//
//	u16 len(H) || H || u16 len(S) || S
//
// which ParsePrivateKey accepts. The crypto.PrivateKey interface needs a
// byte encoding, and this is the only one tink offers without a
// key-encryption key; the dynkey middleware seals it under its own KEK
// before storing it. Wherever a tink AEAD (a KMS key, for instance) is at
// hand, store [MarshalPrivateKeyEncrypted]'s output instead, which tink
// encrypts itself and which is the recommended form.
//
// Each call returns a fresh copy that the caller owns and should clear
// (clear(b)) when done. It returns nil only if tink fails to serialize the
// keysets, which does not happen for keys of this package.
func (k *privateKey) Bytes() []byte {
	hb, err := privateKeysetBytes(k.hybrid)
	if err != nil {
		return nil
	}
	defer clear(hb)
	sb, err := privateKeysetBytes(k.sig)
	if err != nil {
		return nil
	}
	defer clear(sb)
	b, ok := joinPair(hb, sb)
	if !ok {
		return nil
	}
	return b
}

// Format prints only the suite name, never the key, for every verb, so that
// a private key accidentally passed to fmt or a logger is not disclosed.
func (k *privateKey) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, "%s private key (redacted)", k.suite.name)
}

// p256N and p256HalfN are the order n of the P-256 group and floor(n/2).
var (
	p256N     = elliptic.P256().Params().N
	p256HalfN = new(big.Int).Rsh(p256N, 1)
)

// normalizeLowS returns the IEEE P1363 ECDSA P-256 signature r || s with s replaced
// by n-s when s > n/2. Both verify; allowing only the low one makes the
// signature, and so the ciphertext, non-malleable: without it anyone could
// turn a ciphertext into a second valid one. Signatures are public, so big.Int
// arithmetic (not constant time) is fine.
func normalizeLowS(sig []byte) []byte {
	v := new(big.Int).SetBytes(sig[32:])
	if v.Cmp(p256HalfN) <= 0 {
		return sig
	}
	v.Sub(p256N, v)
	out := bytes.Clone(sig)
	v.FillBytes(out[32:])
	return out
}

// isLowS reports whether the s half of an r || s signature is at most n/2.
func isLowS(sig []byte) bool {
	return new(big.Int).SetBytes(sig[32:]).Cmp(p256HalfN) <= 0
}

// The X25519 checks are shared with the other X25519 suites.
var (
	x25519LowOrder  = x25519.LowOrder
	x25519P         = x25519.P
	errNonCanonical = x25519.ErrNonCanonical
	errLowOrder     = x25519.ErrLowOrder
)

// checkX25519Public rejects HPKE X25519 public keys that no X25519 key pair
// produces: a non-canonical u-coordinate (top bit set, or u >= p) and the
// low-order points. Tink accepts any 32 bytes.
func checkX25519Public(k key.Key) error {
	pk, ok := k.(*hpke.PublicKey)
	if !ok {
		return errors.New("not an HPKE public key")
	}
	return x25519.CheckPublic(pk.PublicKeyBytes())
}
