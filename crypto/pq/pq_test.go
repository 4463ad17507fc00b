package pq_test

import (
	"bytes"
	"crypto/hpke"
	cryptorand "crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	circlhpke "github.com/cloudflare/circl/hpke"
	"github.com/cloudflare/circl/kem"
	"github.com/cloudflare/circl/kem/xwing"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/dynkey/dynkey/crypto"
	"github.com/dynkey/dynkey/crypto/backendtest"
	"github.com/dynkey/dynkey/crypto/pq"
)

var update = flag.Bool("update", false, "rewrite testdata/dynkey-pq-xwing.json")

// Sizes and constants of the wire format, written out independently of the
// package.
const (
	label         = "dynkey/v1 pq-xwing"
	exportContext = "dynkey/v1 message secret"
	xwingPubLen   = 1216
	mldsaPubLen   = 1952
	pubLen        = 2 + xwingPubLen + mldsaPubLen // 3170
	privLen       = 64
	encLen        = 1120
	sigLen        = 3309
	overheadLen   = encLen + 16 + sigLen // 4445
	kemID, kdfID  = 0x647a, 0x0001
	aeadID        = 0x0003
	x25519InXWing = 1184
)

func TestConformance(t *testing.T) { backendtest.Run(t, pq.XWing()) }

func BenchmarkXWing(b *testing.B) { backendtest.Bench(b, pq.XWing()) }

func TestRegistered(t *testing.T) {
	got, err := crypto.Lookup("pq-xwing")
	if err != nil {
		t.Fatal(err)
	}
	if got != pq.XWing() || got.Name() != pq.Name {
		t.Errorf("Lookup(pq-xwing) = %v", got)
	}
}

func mustGenerate(t testing.TB) crypto.PrivateKey {
	t.Helper()
	k, err := pq.XWing().GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// keyFromSeed returns the key pair whose private key encoding is seed.
func keyFromSeed(t testing.TB, seed []byte) crypto.PrivateKey {
	t.Helper()
	k, err := pq.XWing().ParsePrivateKey(seed)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSizes(t *testing.T) {
	s := pq.XWing()
	k := mustGenerate(t)
	pub := k.Public().Bytes()
	if len(pub) != pubLen || len(k.Bytes()) != privLen {
		t.Errorf("public key %d bytes, private key %d bytes; want %d and %d", len(pub), len(k.Bytes()), pubLen, privLen)
	}
	if n := binary.BigEndian.Uint16(pub); n != xwingPubLen {
		t.Errorf("X-Wing length prefix %d", n)
	}
	for _, n := range []int{0, 1, 1000} {
		ct, _, err := s.Seal(nil, k.Public(), k, nil, nil, make([]byte, n))
		if err != nil {
			t.Fatal(err)
		}
		if len(ct) != n+overheadLen {
			t.Errorf("%d-byte message: ciphertext %d bytes, want %d", n, len(ct), n+overheadLen)
		}
	}
}

// TestGenerateKeyReader checks that GenerateKey reads exactly 64 bytes and
// that they are the private key encoding: X-Wing seed, then ML-DSA-65 seed.
func TestGenerateKeyReader(t *testing.T) {
	seed := make([]byte, 64)
	for i := range seed {
		seed[i] = byte(i)
	}
	r := bytes.NewReader(append(bytes.Clone(seed), 0xee))
	k, err := pq.XWing().GenerateKey(r)
	if err != nil {
		t.Fatal(err)
	}
	if r.Len() != 1 {
		t.Errorf("GenerateKey read %d bytes, want 64", 65-r.Len())
	}
	if !bytes.Equal(k.Bytes(), seed) {
		t.Errorf("private key %x, want the 64 bytes read", k.Bytes())
	}
	// The halves are the X-Wing and ML-DSA-65 seeds, checked with circl.
	_, xpk := xwing.DeriveKeyPair(seed[:32])
	var ms [32]byte
	copy(ms[:], seed[32:])
	mpk, _ := mldsa65.NewKeyFromSeed(&ms)
	xb, _ := xpk.MarshalBinary()
	want := binary.BigEndian.AppendUint16(nil, xwingPubLen)
	want = append(append(want, xb...), mpk.Bytes()...)
	if !bytes.Equal(k.Public().Bytes(), want) {
		t.Errorf("public key is not lp16(circl X-Wing public key) || circl ML-DSA-65 public key")
	}
}

// TestSealReader checks that Seal refuses readers it cannot use.
func TestSealReader(t *testing.T) {
	s := pq.XWing()
	k := mustGenerate(t)
	for name, r := range map[string]io.Reader{
		"bytes.Reader":   bytes.NewReader(make([]byte, 1<<12)),
		"wrapped crypto": struct{ io.Reader }{cryptorand.Reader},
		"uncomparable":   uncomparableReader{nil},
	} {
		if ct, sec, err := s.Seal(r, k.Public(), k, nil, nil, nil); err == nil || ct != nil || sec != nil {
			t.Errorf("Seal(%s): %v", name, err)
		}
	}
	for name, r := range map[string]io.Reader{"nil": nil, "crypto/rand.Reader": cryptorand.Reader} {
		if _, _, err := s.Seal(r, k.Public(), k, nil, nil, nil); err != nil {
			t.Errorf("Seal(%s): %v", name, err)
		}
	}
}

type uncomparableReader struct{ b []byte }

func (uncomparableReader) Read(b []byte) (int, error) { clear(b); return len(b), nil }

// x25519LowOrder are the canonical low-order u-coordinates (RFC 7748;
// https://cr.yp.to/ecdh.html).
var x25519LowOrder = []string{
	"0000000000000000000000000000000000000000000000000000000000000000",
	"0100000000000000000000000000000000000000000000000000000000000000",
	"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
	"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
	"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
}

func TestPublicKeyValidation(t *testing.T) {
	s := pq.XWing()
	good := mustGenerate(t).Public().Bytes()
	withX25519 := func(h string) []byte {
		b := bytes.Clone(good)
		u, _ := hex.DecodeString(h)
		copy(b[2+x25519InXWing:], u)
		return b
	}
	reject := map[string][]byte{
		"prefix 0":                append([]byte{0, 0}, good[2:]...),
		"prefix 1217":             append([]byte{0x04, 0xc1}, good[2:]...),
		"ML-KEM coefficient >= q": append([]byte{0x04, 0xc0, 0xff, 0xff}, good[4:]...),
		"X25519 p":                withX25519("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
		"X25519 p+1":              withX25519("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
		"X25519 top bit":          withX25519("0900000000000000000000000000000000000000000000000000000000000080"),
		"X25519 all 0xff":         withX25519(strings.Repeat("ff", 32)),
		"truncated":               good[:len(good)-1],
		"extended":                append(bytes.Clone(good), 0),
	}
	for i, h := range x25519LowOrder {
		reject[fmt.Sprint("X25519 low order ", i)] = withX25519(h)
	}
	for name, b := range reject {
		if k, err := s.ParsePublicKey(b); !errors.Is(err, crypto.ErrMalformedKey) || k != nil {
			t.Errorf("ParsePublicKey(%s) = %v, %v; want ErrMalformedKey", name, k, err)
		}
	}
	accept := map[string][]byte{
		"generated":    good,
		"X25519 9":     withX25519("0900000000000000000000000000000000000000000000000000000000000000"),
		"X25519 p-2":   withX25519("ebffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
		"ML-DSA zeros": append(bytes.Clone(good[:2+xwingPubLen]), make([]byte, mldsaPubLen)...),
	}
	for name, b := range accept {
		k, err := s.ParsePublicKey(b)
		if err != nil {
			t.Errorf("ParsePublicKey(%s): %v", name, err)
			continue
		}
		if !bytes.Equal(k.Bytes(), b) {
			t.Errorf("ParsePublicKey(%s) re-encodes differently", name)
		}
		if _, _, err := s.Seal(nil, k, mustGenerate(t), nil, nil, []byte("m")); err != nil {
			t.Errorf("Seal to %s: %v", name, err)
		}
	}
}

// TestOpenErrorsIndistinguishable checks that every authentication failure
// returns exactly crypto.ErrOpen.
func TestOpenErrorsIndistinguishable(t *testing.T) {
	s := pq.XWing()
	skS, skR, other := mustGenerate(t), mustGenerate(t), mustGenerate(t)
	info, aad := []byte("info"), []byte("aad")
	ct, _, err := s.Seal(nil, skR.Public(), skS, info, aad, []byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	mod := func(i int) []byte { c := bytes.Clone(ct); c[i] ^= 1; return c }
	cases := map[string][]byte{
		"empty":    nil,
		"short":    ct[:overheadLen-1],
		"bad enc":  mod(0),
		"bad ct":   mod(encLen),
		"bad tag":  mod(len(ct) - sigLen - 1),
		"bad sig":  mod(len(ct) - 1),
		"zero sig": append(bytes.Clone(ct[:len(ct)-sigLen]), make([]byte, sigLen)...),
	}
	for name, c := range cases {
		if _, _, err := s.Open(skR, skS.Public(), info, aad, c); err != crypto.ErrOpen {
			t.Errorf("%s: error %v, want exactly crypto.ErrOpen", name, err)
		}
	}
	if _, _, err := s.Open(other, skS.Public(), info, aad, ct); err != crypto.ErrOpen {
		t.Errorf("wrong recipient: %v", err)
	}
	if _, _, err := s.Open(skR, other.Public(), info, aad, ct); err != crypto.ErrOpen {
		t.Errorf("wrong sender: %v", err)
	}
}

// lp and the transcript functions below restate the wire format
// independently of the package.
func lp(b []byte) []byte { return append(binary.BigEndian.AppendUint64(nil, uint64(len(b))), b...) }

func fp(pub []byte) []byte { h := sha256.Sum256(pub); return h[:] }

func hpkeInfo(info, pkS []byte) []byte {
	return bytes.Join([][]byte{lp([]byte(label)), lp(info), lp(fp(pkS))}, nil)
}

func signedMessage(info, aad, pkS, pkR, enc, ct []byte) []byte {
	return bytes.Join([][]byte{lp([]byte(label)), lp(info), lp(aad), lp(fp(pkS)), lp(fp(pkR)), lp(enc), lp(ct)}, nil)
}

// mldsaKey returns the circl ML-DSA-65 key of a dynkey private key.
func mldsaKey(k crypto.PrivateKey) *mldsa65.PrivateKey {
	var seed [32]byte
	copy(seed[:], k.Bytes()[32:])
	_, sk := mldsa65.NewKeyFromSeed(&seed)
	return sk
}

// TestResignedByAnother checks the sender binding: someone who strips the
// sender's signature and signs enc and ct with their own key cannot pass
// the message off as theirs.
func TestResignedByAnother(t *testing.T) {
	s := pq.XWing()
	skS, skR, mallory := mustGenerate(t), mustGenerate(t), mustGenerate(t)
	info, aad := []byte("info"), []byte("aad")
	ct, _, err := s.Seal(nil, skR.Public(), skS, info, aad, []byte("transfer 10 to bob"))
	if err != nil {
		t.Fatal(err)
	}
	body := ct[:len(ct)-sigLen]
	msg := signedMessage(info, aad, mallory.Public().Bytes(), skR.Public().Bytes(), body[:encLen], body[encLen:])
	sig := make([]byte, sigLen)
	if err := mldsa65.SignTo(mldsaKey(mallory), msg, nil, true, sig); err != nil {
		t.Fatal(err)
	}
	forged := append(bytes.Clone(body), sig...)
	if _, _, err := s.Open(skR, mallory.Public(), info, aad, forged); err != crypto.ErrOpen {
		t.Errorf("message re-signed by another key opened: %v", err)
	}
}

// circlSuite is the same HPKE suite in circl.
var circlSuite = circlhpke.NewSuite(circlhpke.KEM_XWING, circlhpke.KDF_HKDF_SHA256, circlhpke.AEAD_ChaCha20Poly1305)

func circlKeys(t testing.TB, k crypto.PrivateKey) (kem.PublicKey, kem.PrivateKey) {
	t.Helper()
	pk, sk := xwing.Scheme().DeriveKeyPair(k.Bytes()[:32])
	pkb, _ := pk.MarshalBinary()
	if !bytes.Equal(pkb, k.Public().Bytes()[2:2+xwingPubLen]) {
		t.Fatalf("circl derives a different X-Wing public key from the same seed")
	}
	return pk, sk
}

// TestCirclHPKEInterop checks Go's crypto/hpke X-Wing against circl's, both
// directions, with the same key from the same seed.
func TestCirclHPKEInterop(t *testing.T) {
	seed := make([]byte, 32)
	cryptorand.Read(seed)
	goKey, err := hpke.MLKEM768X25519().NewPrivateKey(seed)
	if err != nil {
		t.Fatal(err)
	}
	cPub, cPriv := xwing.Scheme().DeriveKeyPair(seed)
	cPubBytes, _ := cPub.MarshalBinary()
	if !bytes.Equal(goKey.PublicKey().Bytes(), cPubBytes) {
		t.Fatalf("Go and circl derive different X-Wing public keys from one seed")
	}
	info, aad, msg := []byte("info"), []byte("aad"), []byte("hello")
	ctxName := []byte(exportContext)

	// Go -> circl.
	enc, sender, err := hpke.NewSender(goKey.PublicKey(), hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), info)
	if err != nil {
		t.Fatal(err)
	}
	ct, _ := sender.Seal(aad, msg)
	goSecret, _ := sender.Export(exportContext, 32)
	r, _ := circlSuite.NewReceiver(cPriv, info)
	opener, err := r.Setup(enc)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := opener.Open(ct, aad); err != nil || !bytes.Equal(pt, msg) {
		t.Errorf("circl cannot open Go's ciphertext: %v", err)
	}
	if got := opener.Export(ctxName, 32); !bytes.Equal(got, goSecret) {
		t.Errorf("exporter secrets differ: circl %x, Go %x", got, goSecret)
	}

	// circl -> Go.
	snd, _ := circlSuite.NewSender(cPub, info)
	enc2, sealer, err := snd.Setup(cryptorand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ct2, _ := sealer.Seal(msg, aad)
	rcp, err := hpke.NewRecipient(enc2, goKey, hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), info)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := rcp.Open(aad, ct2); err != nil || !bytes.Equal(pt, msg) {
		t.Errorf("Go cannot open circl's ciphertext: %v", err)
	}
	if got, _ := rcp.Export(exportContext, 32); !bytes.Equal(got, sealer.Export(ctxName, 32)) {
		t.Errorf("exporter secrets differ")
	}
}

// TestCirclSuiteInterop checks whole dynkey ciphertexts: one sealed by the
// package is verified and opened with circl alone, and one built with circl
// alone opens with the package.
func TestCirclSuiteInterop(t *testing.T) {
	s := pq.XWing()
	skS, skR := mustGenerate(t), mustGenerate(t)
	pkS, pkR := skS.Public().Bytes(), skR.Public().Bytes()
	info, aad, msg := []byte("i"), []byte("a"), []byte("hello, circl")

	// package -> circl
	ct, secret, err := s.Seal(nil, skR.Public(), skS, info, aad, msg)
	if err != nil {
		t.Fatal(err)
	}
	enc, body, sig := ct[:encLen], ct[encLen:len(ct)-sigLen], ct[len(ct)-sigLen:]
	var mpk mldsa65.PublicKey
	if err := mpk.UnmarshalBinary(pkS[2+xwingPubLen:]); err != nil {
		t.Fatal(err)
	}
	if !mldsa65.Verify(&mpk, signedMessage(info, aad, pkS, pkR, enc, body), nil, sig) {
		t.Errorf("circl does not verify the signature")
	}
	_, cPriv := circlKeys(t, skR)
	r, _ := circlSuite.NewReceiver(cPriv, hpkeInfo(info, pkS))
	o, err := r.Setup(enc)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := o.Open(body, aad); err != nil || !bytes.Equal(pt, msg) {
		t.Errorf("circl Open: %q, %v", pt, err)
	}
	if got := o.Export([]byte(exportContext), 32); !bytes.Equal(got, secret) {
		t.Errorf("secret %x, circl export %x", secret, got)
	}

	// circl -> package
	cPub, _ := circlKeys(t, skR)
	snd, _ := circlSuite.NewSender(cPub, hpkeInfo(info, pkS))
	enc2, sealer, err := snd.Setup(cryptorand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	body2, _ := sealer.Seal(msg, aad)
	sig2 := make([]byte, sigLen)
	if err := mldsa65.SignTo(mldsaKey(skS), signedMessage(info, aad, pkS, pkR, enc2, body2), nil, true, sig2); err != nil {
		t.Fatal(err)
	}
	pt, secret2, err := s.Open(skR, skS.Public(), info, aad, bytes.Join([][]byte{enc2, body2, sig2}, nil))
	if err != nil || !bytes.Equal(pt, msg) {
		t.Fatalf("Open of circl-built ciphertext: %q, %v", pt, err)
	}
	if !bytes.Equal(secret2, sealer.Export([]byte(exportContext), 32)) {
		t.Errorf("secrets differ")
	}
}

// hexBytes is a byte string encoded in JSON as hex.
type hexBytes []byte

func (h hexBytes) MarshalText() ([]byte, error) { return []byte(hex.EncodeToString(h)), nil }
func (h *hexBytes) UnmarshalText(b []byte) error {
	d, err := hex.DecodeString(string(b))
	*h = d
	return err
}

func readJSON(t *testing.T, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// draftVector is an entry of testdata/hpke-pq-xwing.json (see its README).
type draftVector struct {
	Mode        int      `json:"mode"`
	KEM         uint16   `json:"kem_id"`
	KDF         uint16   `json:"kdf_id"`
	AEAD        uint16   `json:"aead_id"`
	Info        hexBytes `json:"info"`
	IkmE        hexBytes `json:"ikmE"`
	IkmR        hexBytes `json:"ikmR"`
	SkRm        hexBytes `json:"skRm"`
	PkRm        hexBytes `json:"pkRm"`
	Enc         hexBytes `json:"enc"`
	Encryptions []struct {
		AAD hexBytes `json:"aad"`
		CT  hexBytes `json:"ct"`
		PT  hexBytes `json:"pt"`
	} `json:"encryptions"`
	Exports []struct {
		Context hexBytes `json:"exporter_context"`
		L       int      `json:"L"`
		Value   hexBytes `json:"exported_value"`
	} `json:"exports"`
}

// TestDraftVectors runs the draft-ietf-hpke-pq vector for X-Wing with
// HKDF-SHA256 and ChaCha20-Poly1305, the package's exact HPKE suite: the
// ids, the key derivation, Go's crypto/hpke as recipient (it takes no
// randomness, so it cannot reproduce the sender side), and circl as sender
// from the vector's ikmE.
func TestDraftVectors(t *testing.T) {
	var vectors []draftVector
	readJSON(t, "hpke-pq-xwing.json", &vectors)
	if len(vectors) != 1 {
		t.Fatalf("%d vectors, want 1", len(vectors))
	}
	v := vectors[0]
	if v.Mode != 0 || v.KEM != kemID || v.KDF != kdfID || v.AEAD != aeadID {
		t.Fatalf("vector is mode %d, suite %#04x/%#04x/%#04x", v.Mode, v.KEM, v.KDF, v.AEAD)
	}
	kemAlg, err := hpke.NewKEM(v.KEM)
	if err != nil {
		t.Fatal(err)
	}
	kdfAlg, err := hpke.NewKDF(v.KDF)
	if err != nil {
		t.Fatal(err)
	}
	aeadAlg, err := hpke.NewAEAD(v.AEAD)
	if err != nil {
		t.Fatal(err)
	}
	if kemAlg.ID() != hpke.MLKEM768X25519().ID() || kdfAlg.ID() != hpke.HKDFSHA256().ID() || aeadAlg.ID() != hpke.ChaCha20Poly1305().ID() {
		t.Fatalf("ids do not map to MLKEM768X25519/HKDFSHA256/ChaCha20Poly1305")
	}

	// DeriveKeyPair(ikmR) gives skRm, the X-Wing seed; pkRm is its public key.
	derived, err := kemAlg.DeriveKeyPair(v.IkmR)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := derived.Bytes(); !bytes.Equal(b, v.SkRm) {
		t.Errorf("DeriveKeyPair(ikmR) = %x, want skRm %x", b, v.SkRm)
	}
	if !bytes.Equal(derived.PublicKey().Bytes(), v.PkRm) {
		t.Errorf("DeriveKeyPair(ikmR) public key differs from pkRm")
	}

	// Through the package: skRm is the first half of a private key, and
	// pkRm the X-Wing part of its public key.
	dk := keyFromSeed(t, append(bytes.Clone(v.SkRm), make([]byte, 32)...))
	if pub := dk.Public().Bytes(); !bytes.Equal(pub[2:2+xwingPubLen], v.PkRm) {
		t.Errorf("package public key does not contain pkRm")
	}
	if _, err := pq.XWing().ParsePublicKey(dk.Public().Bytes()); err != nil {
		t.Errorf("ParsePublicKey of the vector's key: %v", err)
	}

	// Go's crypto/hpke opens every encryption in order.
	skR, err := hpke.MLKEM768X25519().NewPrivateKey(v.SkRm)
	if err != nil {
		t.Fatal(err)
	}
	r, err := hpke.NewRecipient(v.Enc, skR, kdfAlg, aeadAlg, v.Info)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range v.Encryptions {
		pt, err := r.Open(e.AAD, e.CT)
		if err != nil || !bytes.Equal(pt, e.PT) {
			t.Errorf("Go Open of encryption %d: %x, %v", i, pt, err)
		}
	}
	for _, x := range v.Exports {
		if got, err := r.Export(string(x.Context), x.L); err != nil || !bytes.Equal(got, x.Value) {
			t.Errorf("Go Export(%x) = %x, %v; want %x", x.Context, got, err, x.Value)
		}
	}

	// circl reproduces the sender side from ikmE.
	cPub, err := xwing.Scheme().UnmarshalBinaryPublicKey(v.PkRm)
	if err != nil {
		t.Fatal(err)
	}
	snd, _ := circlSuite.NewSender(cPub, v.Info)
	enc, sealer, err := snd.Setup(bytes.NewReader(v.IkmE))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc, v.Enc) {
		t.Errorf("circl enc from ikmE differs from the vector's")
	}
	for i, e := range v.Encryptions {
		if ct, err := sealer.Seal(e.PT, e.AAD); err != nil || !bytes.Equal(ct, e.CT) {
			t.Errorf("circl Seal of encryption %d differs: %v", i, err)
		}
	}
	for _, x := range v.Exports {
		if got := sealer.Export(x.Context, uint(x.L)); !bytes.Equal(got, x.Value) {
			t.Errorf("circl Export(%x) = %x, want %x", x.Context, got, x.Value)
		}
	}
}

// dynkeyVector is the content of testdata/dynkey-pq-xwing.json.
type dynkeyVector struct {
	Comment       string   `json:"comment"`
	Suite         string   `json:"suite"`
	KEM           uint16   `json:"kem_id"`
	KDF           uint16   `json:"kdf_id"`
	AEAD          uint16   `json:"aead_id"`
	ExportContext hexBytes `json:"exporter_context"`
	SkS           hexBytes `json:"skS"`
	PkS           hexBytes `json:"pkS"`
	SkR           hexBytes `json:"skR"`
	PkR           hexBytes `json:"pkR"`
	Info          hexBytes `json:"info"`
	AAD           hexBytes `json:"aad"`
	PT            hexBytes `json:"pt"`
	HPKEInfo      hexBytes `json:"hpke_info"`
	IkmE          hexBytes `json:"ikmE"`
	Enc           hexBytes `json:"enc"`
	CT            hexBytes `json:"ct"`
	Signed        hexBytes `json:"signed_sha256"`
	Signature     hexBytes `json:"signature"`
	Ciphertext    hexBytes `json:"ciphertext"`
	Secret        hexBytes `json:"secret"`
}

func seed(role string, n int) []byte {
	var out []byte
	for i := 0; len(out) < n; i++ {
		h := sha256.Sum256(fmt.Appendf(nil, "dynkey/v1 test vector pq-xwing %s %d", role, i))
		out = append(out, h[:]...)
	}
	return out[:n]
}

// buildVector builds the dynkey vector with circl alone, following the
// documented wire format: circl's HPKE takes X-Wing's 64-byte encapsulation
// seed (ikmE) and ML-DSA-65 signs deterministically (FIPS 204's
// deterministic variant, rnd = 0), so every byte is reproducible.
func buildVector(t *testing.T) dynkeyVector {
	t.Helper()
	v := dynkeyVector{
		Comment: "dynkey pq-xwing Seal/Open vector: HPKE (RFC 9180) base mode, X-Wing/HKDF-SHA256/ChaCha20-Poly1305, one message at sequence 0, " +
			"info = hpke_info = lp(label) || lp(info) || lp(SHA-256(pkS)); ML-DSA-65 signature (deterministic variant here; Seal hedges) with empty context over " +
			"lp(label) || lp(info) || lp(aad) || lp(SHA-256(pkS)) || lp(SHA-256(pkR)) || lp(enc) || lp(ct), whose SHA-256 is signed_sha256; " +
			"ciphertext = enc || ct || signature; secret = Export(exporter_context, 32). lp is an 8-byte big-endian length. " +
			"skS/skR = X-Wing seed || ML-DSA-65 seed. All byte strings are hex. Generated by go test ./crypto/pq -run TestDynkeyVector -update.",
		Suite:         pq.Name,
		KEM:           kemID,
		KDF:           kdfID,
		AEAD:          aeadID,
		ExportContext: []byte(exportContext),
		SkS:           seed("sender", 64),
		SkR:           seed("recipient", 64),
		Info:          []byte("dynkey/v1 request"),
		AAD:           []byte("POST /v1/secrets/db-password\nrequest-id: 7f3c2a"),
		PT:            []byte(`{"op":"get","name":"db-password","version":3}`),
		IkmE:          seed("ephemeral", 64),
	}
	// Public keys with circl.
	pubOf := func(sk []byte) []byte {
		_, xpk := xwing.DeriveKeyPair(sk[:32])
		xb, _ := xpk.MarshalBinary()
		var ms [32]byte
		copy(ms[:], sk[32:])
		mpk, _ := mldsa65.NewKeyFromSeed(&ms)
		return append(append(binary.BigEndian.AppendUint16(nil, uint16(len(xb))), xb...), mpk.Bytes()...)
	}
	v.PkS, v.PkR = pubOf(v.SkS), pubOf(v.SkR)
	v.HPKEInfo = hpkeInfo(v.Info, v.PkS)

	cPub, _ := xwing.Scheme().UnmarshalBinaryPublicKey(v.PkR[2 : 2+xwingPubLen])
	snd, err := circlSuite.NewSender(cPub, v.HPKEInfo)
	if err != nil {
		t.Fatal(err)
	}
	enc, sealer, err := snd.Setup(bytes.NewReader(v.IkmE))
	if err != nil {
		t.Fatal(err)
	}
	v.Enc = enc
	v.CT, _ = sealer.Seal(v.PT, v.AAD)
	v.Secret = sealer.Export(v.ExportContext, 32)
	signed := signedMessage(v.Info, v.AAD, v.PkS, v.PkR, v.Enc, v.CT)
	h := sha256.Sum256(signed)
	v.Signed = h[:]
	var ms [32]byte
	copy(ms[:], v.SkS[32:])
	_, msk := mldsa65.NewKeyFromSeed(&ms)
	v.Signature = make([]byte, sigLen)
	if err := mldsa65.SignTo(msk, signed, nil, false, v.Signature); err != nil {
		t.Fatal(err)
	}
	v.Ciphertext = bytes.Join([][]byte{v.Enc, v.CT, v.Signature}, nil)
	return v
}

// TestDynkeyVector checks testdata/dynkey-pq-xwing.json byte for byte
// against circl, then that the package opens it and derives its keys.
func TestDynkeyVector(t *testing.T) {
	const file = "dynkey-pq-xwing.json"
	got := buildVector(t)
	if *update {
		b, err := json.MarshalIndent(got, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("testdata", file), append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote testdata/%s", file)
	}
	var want dynkeyVector
	readJSON(t, file, &want)
	gotJSON, _ := json.MarshalIndent(got, "", "  ")
	wantJSON, _ := json.MarshalIndent(want, "", "  ")
	if !bytes.Equal(gotJSON, wantJSON) {
		t.Fatalf("vector differs from testdata/%s:\n got %s\nwant %s", file, gotJSON, wantJSON)
	}

	s := pq.XWing()
	skS, skR := keyFromSeed(t, want.SkS), keyFromSeed(t, want.SkR)
	if !bytes.Equal(skS.Public().Bytes(), want.PkS) || !bytes.Equal(skR.Public().Bytes(), want.PkR) {
		t.Fatalf("package derives other public keys from the seeds")
	}
	pkS, err := s.ParsePublicKey(want.PkS)
	if err != nil {
		t.Fatal(err)
	}
	pt, secret, err := s.Open(skR, pkS, want.Info, want.AAD, want.Ciphertext)
	if err != nil || !bytes.Equal(pt, want.PT) || !bytes.Equal(secret, want.Secret) {
		t.Fatalf("Open of the vector: %q, %x, %v", pt, secret, err)
	}
	// Go's crypto/hpke agrees on the HPKE part.
	goKey, _ := hpke.MLKEM768X25519().NewPrivateKey(want.SkR[:32])
	r, err := hpke.NewRecipient(want.Enc, goKey, hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), want.HPKEInfo)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := r.Open(want.AAD, want.CT); err != nil || !bytes.Equal(pt, want.PT) {
		t.Errorf("Go hpke Open: %v", err)
	}
	// A hedged signature (what Seal makes) over the same message verifies
	// too: the two variants differ only in the signer's randomness.
	msg := signedMessage(want.Info, want.AAD, want.PkS, want.PkR, want.Enc, want.CT)
	hedged := make([]byte, sigLen)
	if err := mldsa65.SignTo(mldsaKey(skS), msg, nil, true, hedged); err != nil {
		t.Fatal(err)
	}
	ct := bytes.Join([][]byte{want.Enc, want.CT, hedged}, nil)
	if _, _, err := s.Open(skR, pkS, want.Info, want.AAD, ct); err != nil {
		t.Errorf("Open with a hedged signature: %v", err)
	}
}

func TestPrivateKeyNotPrinted(t *testing.T) {
	k := mustGenerate(t)
	secret := hex.EncodeToString(k.Bytes())
	for _, format := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q", "%d"} {
		out := fmt.Sprintf(format, k)
		if strings.Contains(strings.ToLower(out), secret) || strings.Contains(out, string(k.Bytes())) {
			t.Errorf("fmt %s prints the private key: %s", format, out)
		}
		if !strings.Contains(out, "redacted") {
			t.Errorf("fmt %s = %q", format, out)
		}
	}
	if out := fmt.Sprintf("%+v", struct{ K crypto.PrivateKey }{k}); strings.Contains(out, secret) {
		t.Errorf("nested private key printed: %s", out)
	}
}

// TestBytesReturnsCopies clears what Bytes returned and checks the key
// still works: crypto/hpke's PrivateKey.Bytes returns its own seed slice,
// which the package must not hand out.
func TestBytesReturnsCopies(t *testing.T) {
	s := pq.XWing()
	k := mustGenerate(t)
	want := k.Bytes()
	priv, pub := k.Bytes(), k.Public().Bytes()
	clear(priv)
	clear(pub)
	if !bytes.Equal(k.Bytes(), want) || bytes.Equal(k.Public().Bytes(), pub) {
		t.Fatalf("clearing the result of Bytes changed the key")
	}
	ct, _, err := s.Seal(nil, k.Public(), k, nil, nil, []byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Open(k, k.Public(), nil, nil, ct); err != nil {
		t.Errorf("key unusable after clearing Bytes: %v", err)
	}
}

// FuzzOpen feeds arbitrary ciphertexts, info and aad to Open: it must fail
// with crypto.ErrOpen and never panic.
func FuzzOpen(f *testing.F) {
	s := pq.XWing()
	skS, skR := keyFromSeed(f, seed("fuzz S", 64)), keyFromSeed(f, seed("fuzz R", 64))
	ct, _, err := s.Seal(nil, skR.Public(), skS, []byte("i"), []byte("a"), []byte("hello"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ct, []byte("i"), []byte("a"))
	f.Add([]byte{}, []byte{}, []byte{})
	f.Add(make([]byte, overheadLen), []byte{}, []byte{})
	f.Fuzz(func(t *testing.T, ct, info, aad []byte) {
		pt, secret, err := s.Open(skR, skS.Public(), info, aad, ct)
		if err == nil {
			if string(pt) != "hello" || len(secret) != crypto.SecretSize {
				t.Fatalf("Open accepted %x: %x", ct, pt)
			}
			return
		}
		if err != crypto.ErrOpen || pt != nil || secret != nil {
			t.Fatalf("Open = %x, %x, %v", pt, secret, err)
		}
	})
}

// FuzzParseKeys feeds arbitrary bytes to the key parsers: they must return
// a key or an error wrapping crypto.ErrMalformedKey, never panic, and
// accepted keys must re-encode to the input.
func FuzzParseKeys(f *testing.F) {
	k := keyFromSeed(f, seed("fuzz parse", 64))
	f.Add(k.Public().Bytes())
	f.Add(k.Bytes())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		s := pq.XWing()
		if k, err := s.ParsePublicKey(b); err != nil {
			if !errors.Is(err, crypto.ErrMalformedKey) || k != nil {
				t.Fatalf("ParsePublicKey: %v", err)
			}
		} else if !bytes.Equal(k.Bytes(), b) {
			t.Fatalf("ParsePublicKey re-encodes differently")
		}
		if k, err := s.ParsePrivateKey(b); err != nil {
			if !errors.Is(err, crypto.ErrMalformedKey) || k != nil {
				t.Fatalf("ParsePrivateKey: %v", err)
			}
		} else if !bytes.Equal(k.Bytes(), b) {
			t.Fatalf("ParsePrivateKey does not re-encode its input")
		}
	})
}
