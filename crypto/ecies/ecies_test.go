package ecies_test

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloudflare/circl/hpke"
	"github.com/dynkey/dynkey/crypto"
	"github.com/dynkey/dynkey/crypto/backendtest"
	"github.com/dynkey/dynkey/crypto/ecies"
)

var update = flag.Bool("update", false, "rewrite testdata/dynkey-*.json from the current implementation")

// exportContext is the dynkey exporter context, spelled out independently of
// the package's constant.
const exportContext = "dynkey/v1 message secret"

// params describes a suite independently of the package under test.
type params struct {
	suite          crypto.Suite
	kem            hpke.KEM
	kdf            hpke.KDF
	aead           hpke.AEAD
	pubLen, encLen int
	privLen        int
}

var allParams = []params{
	{ecies.X25519(), hpke.KEM_X25519_HKDF_SHA256, hpke.KDF_HKDF_SHA256, hpke.AEAD_ChaCha20Poly1305, 32, 32, 32},
	{ecies.P256(), hpke.KEM_P256_HKDF_SHA256, hpke.KDF_HKDF_SHA256, hpke.AEAD_AES128GCM, 65, 65, 32},
}

func paramsFor(t *testing.T, kemID, kdfID, aeadID uint16) params {
	t.Helper()
	for _, p := range allParams {
		if uint16(p.kem) == kemID && uint16(p.kdf) == kdfID && uint16(p.aead) == aeadID {
			return p
		}
	}
	t.Fatalf("no suite for kem %#04x kdf %#04x aead %#04x", kemID, kdfID, aeadID)
	return params{}
}

func TestConformanceX25519(t *testing.T) { backendtest.Run(t, ecies.X25519()) }
func TestConformanceP256(t *testing.T)   { backendtest.Run(t, ecies.P256()) }

func BenchmarkX25519(b *testing.B) { backendtest.Bench(b, ecies.X25519()) }
func BenchmarkP256(b *testing.B)   { backendtest.Bench(b, ecies.P256()) }

func TestRegistered(t *testing.T) {
	for name, want := range map[string]crypto.Suite{
		"ecies-x25519": ecies.X25519(),
		"ecies-p256":   ecies.P256(),
	} {
		got, err := crypto.Lookup(name)
		if err != nil {
			t.Fatalf("Lookup(%q): %v", name, err)
		}
		if got != want || got.Name() != name {
			t.Errorf("Lookup(%q) = %v, want %v", name, got, want)
		}
	}
	if ecies.X25519().Name() != ecies.NameX25519 || ecies.P256().Name() != ecies.NameP256 {
		t.Errorf("Name constants do not match")
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

// rfcVector is an entry of testdata/rfc9180-auth.json (see its README).
type rfcVector struct {
	Mode           int      `json:"mode"`
	KEM            uint16   `json:"kem_id"`
	KDF            uint16   `json:"kdf_id"`
	AEAD           uint16   `json:"aead_id"`
	Info           hexBytes `json:"info"`
	IkmR           hexBytes `json:"ikmR"`
	IkmS           hexBytes `json:"ikmS"`
	IkmE           hexBytes `json:"ikmE"`
	SkRm           hexBytes `json:"skRm"`
	SkSm           hexBytes `json:"skSm"`
	PkRm           hexBytes `json:"pkRm"`
	PkSm           hexBytes `json:"pkSm"`
	Enc            hexBytes `json:"enc"`
	ExporterSecret hexBytes `json:"exporter_secret"`
	Encryptions    []struct {
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

// TestRFC9180AuthVectors runs the RFC 9180 auth-mode vectors for both
// suites through the crypto.Suite wrapper.
func TestRFC9180AuthVectors(t *testing.T) {
	var vectors []rfcVector
	readJSON(t, "rfc9180-auth.json", &vectors)
	if len(vectors) != 2 {
		t.Fatalf("got %d vectors, want 2", len(vectors))
	}
	seen := map[string]bool{}
	for _, v := range vectors {
		p := paramsFor(t, v.KEM, v.KDF, v.AEAD)
		seen[p.suite.Name()] = true
		t.Run(p.suite.Name(), func(t *testing.T) {
			if v.Mode != 2 {
				t.Fatalf("mode %d, want 2 (auth)", v.Mode)
			}
			s := p.suite
			skR := mustParsePrivate(t, s, v.SkRm)
			skS := mustParsePrivate(t, s, v.SkSm)
			pkR := mustParsePublic(t, s, v.PkRm)
			pkS := mustParsePublic(t, s, v.PkSm)
			if !bytes.Equal(skR.Public().Bytes(), v.PkRm) || !bytes.Equal(skS.Public().Bytes(), v.PkSm) {
				t.Fatalf("public keys of parsed skRm/skSm differ from pkRm/pkSm")
			}
			if !bytes.Equal(skR.Bytes(), v.SkRm) || !bytes.Equal(pkR.Bytes(), v.PkRm) {
				t.Fatalf("keys do not re-encode to the vector's bytes")
			}

			// GenerateKey(ikm) is DeriveKeyPair(ikm).
			for _, k := range []struct{ ikm, sk, pk []byte }{{v.IkmR, v.SkRm, v.PkRm}, {v.IkmS, v.SkSm, v.PkSm}} {
				got, err := s.GenerateKey(bytes.NewReader(k.ikm))
				if err != nil {
					t.Fatalf("GenerateKey(ikm): %v", err)
				}
				if !bytes.Equal(got.Bytes(), k.sk) || !bytes.Equal(got.Public().Bytes(), k.pk) {
					t.Errorf("GenerateKey(ikm) = %x, want DeriveKeyPair(ikm) = %x", got.Bytes(), k.sk)
				}
			}

			// Seal with rand = ikmE reproduces enc || ct of sequence 0.
			e := v.Encryptions[0]
			want := append(bytes.Clone(v.Enc), e.CT...)
			ct, secret, err := s.Seal(bytes.NewReader(v.IkmE), pkR, skS, v.Info, e.AAD, e.PT)
			if err != nil {
				t.Fatalf("Seal: %v", err)
			}
			if !bytes.Equal(ct, want) {
				t.Fatalf("Seal:\n got %x\nwant %x", ct, want)
			}

			pt, secret2, err := s.Open(skR, pkS, v.Info, e.AAD, want)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if !bytes.Equal(pt, e.PT) {
				t.Fatalf("Open = %x, want %x", pt, e.PT)
			}
			if !bytes.Equal(secret, secret2) {
				t.Fatalf("Seal and Open secrets differ")
			}

			// The secret, checked two ways that do not go through the
			// package: circl's exporter on an independently set-up
			// receiver context, and RFC 9180's LabeledExpand computed here
			// from the vector's exporter_secret.
			opener := circlReceiver(t, p, v.SkRm, v.PkSm, v.Info, v.Enc)
			for _, x := range v.Exports {
				if got := opener.Export(x.Context, uint(x.L)); !bytes.Equal(got, x.Value) {
					t.Errorf("circl Export(%x) = %x, want %x", x.Context, got, x.Value)
				}
				if got := labeledExportRFC(t, p, v.ExporterSecret, x.Context, x.L); !bytes.Equal(got, x.Value) {
					t.Errorf("test's LabeledExpand(%x) = %x, want %x", x.Context, got, x.Value)
				}
			}
			if want := opener.Export([]byte(exportContext), crypto.SecretSize); !bytes.Equal(secret, want) {
				t.Errorf("secret = %x, circl receiver export = %x", secret, want)
			}
			if want := labeledExportRFC(t, p, v.ExporterSecret, []byte(exportContext), crypto.SecretSize); !bytes.Equal(secret, want) {
				t.Errorf("secret = %x, LabeledExpand from the vector's exporter_secret = %x", secret, want)
			}
			if got, err := opener.Open(e.CT, e.AAD); err != nil || !bytes.Equal(got, e.PT) {
				t.Errorf("circl receiver Open: %x, %v", got, err)
			}
		})
	}
	if len(seen) != 2 {
		t.Errorf("vectors cover %v, want both suites", seen)
	}
}

// circlReceiver sets up an HPKE auth-mode receiver context with circl
// directly, bypassing the package under test.
func circlReceiver(t *testing.T, p params, skRm, pkSm, info, enc []byte) hpke.Opener {
	t.Helper()
	scheme := p.kem.Scheme()
	skR, err := scheme.UnmarshalBinaryPrivateKey(skRm)
	if err != nil {
		t.Fatal(err)
	}
	pkS, err := scheme.UnmarshalBinaryPublicKey(pkSm)
	if err != nil {
		t.Fatal(err)
	}
	r, err := hpke.NewSuite(p.kem, p.kdf, p.aead).NewReceiver(skR, info)
	if err != nil {
		t.Fatal(err)
	}
	o, err := r.SetupAuth(enc, pkS)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// labeledExportRFC computes RFC 9180's Export from an exporter secret:
// LabeledExpand(exporter_secret, "sec", exporter_context, L) with
// suite_id = "HPKE" || I2OSP(kem_id, 2) || I2OSP(kdf_id, 2) || I2OSP(aead_id, 2),
// using the standard library's HKDF (all suites here use HKDF-SHA256).
func labeledExportRFC(t *testing.T, p params, exporterSecret, context []byte, l int) []byte {
	t.Helper()
	if p.kdf != hpke.KDF_HKDF_SHA256 {
		t.Fatalf("labeledExportRFC supports HKDF-SHA256 only")
	}
	info := binary.BigEndian.AppendUint16(nil, uint16(l))
	info = append(info, "HPKE-v1HPKE"...)
	info = binary.BigEndian.AppendUint16(info, uint16(p.kem))
	info = binary.BigEndian.AppendUint16(info, uint16(p.kdf))
	info = binary.BigEndian.AppendUint16(info, uint16(p.aead))
	info = append(info, "sec"...)
	info = append(info, context...)
	out, err := hkdf.Expand(sha256.New, exporterSecret, string(info), l)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func mustParsePrivate(t *testing.T, s crypto.Suite, b []byte) crypto.PrivateKey {
	t.Helper()
	k, err := s.ParsePrivateKey(b)
	if err != nil {
		t.Fatalf("ParsePrivateKey(%x): %v", b, err)
	}
	return k
}

func mustParsePublic(t *testing.T, s crypto.Suite, b []byte) crypto.PublicKey {
	t.Helper()
	k, err := s.ParsePublicKey(b)
	if err != nil {
		t.Fatalf("ParsePublicKey(%x): %v", b, err)
	}
	return k
}

// dynkeyVector is the content of testdata/dynkey-<suite>.json.
type dynkeyVector struct {
	Comment       string   `json:"comment"`
	Suite         string   `json:"suite"`
	Mode          int      `json:"mode"`
	KEM           uint16   `json:"kem_id"`
	KDF           uint16   `json:"kdf_id"`
	AEAD          uint16   `json:"aead_id"`
	ExportContext hexBytes `json:"exporter_context"`
	SecretLen     int      `json:"L"`
	SeedR         hexBytes `json:"seedR"`
	SeedS         hexBytes `json:"seedS"`
	SkRm          hexBytes `json:"skRm"`
	PkRm          hexBytes `json:"pkRm"`
	SkSm          hexBytes `json:"skSm"`
	PkSm          hexBytes `json:"pkSm"`
	IkmE          hexBytes `json:"ikmE"`
	Info          hexBytes `json:"info"`
	AAD           hexBytes `json:"aad"`
	PT            hexBytes `json:"pt"`
	Enc           hexBytes `json:"enc"`
	Ciphertext    hexBytes `json:"ciphertext"`
	Secret        hexBytes `json:"secret"`
}

func seed(suite, role string) []byte {
	h := sha256.Sum256([]byte("dynkey/v1 test vector " + suite + " " + role))
	return h[:]
}

// buildVector computes the dynkey vector for p from fixed inputs.
func buildVector(t *testing.T, p params) dynkeyVector {
	t.Helper()
	s := p.suite
	v := dynkeyVector{
		Comment: "dynkey " + s.Name() + " Seal/Open vector: HPKE (RFC 9180) auth mode, single message at sequence 0; " +
			"ciphertext = enc || aead_ct; secret = Export(exporter_context, L). " +
			"skRm/skSm = DeriveKeyPair(seedR/seedS). All byte strings are hex. Generated by go test ./crypto/ecies -run TestDynkeyVectors -update.",
		Suite:         s.Name(),
		Mode:          2,
		KEM:           uint16(p.kem),
		KDF:           uint16(p.kdf),
		AEAD:          uint16(p.aead),
		ExportContext: []byte(exportContext),
		SecretLen:     crypto.SecretSize,
		SeedR:         seed(s.Name(), "recipient seed"),
		SeedS:         seed(s.Name(), "sender seed"),
		IkmE:          seed(s.Name(), "ephemeral ikm"),
		Info:          []byte("dynkey/v1 request"),
		AAD:           []byte("POST /v1/secrets/db-password\nrequest-id: 7f3c2a"),
		PT:            []byte(`{"op":"get","name":"db-password","version":3}`),
	}
	skR, err := s.GenerateKey(bytes.NewReader(v.SeedR))
	if err != nil {
		t.Fatal(err)
	}
	skS, err := s.GenerateKey(bytes.NewReader(v.SeedS))
	if err != nil {
		t.Fatal(err)
	}
	v.SkRm, v.PkRm = skR.Bytes(), skR.Public().Bytes()
	v.SkSm, v.PkSm = skS.Bytes(), skS.Public().Bytes()
	v.Ciphertext, v.Secret, err = s.Seal(bytes.NewReader(v.IkmE), skR.Public(), skS, v.Info, v.AAD, v.PT)
	if err != nil {
		t.Fatal(err)
	}
	v.Enc = v.Ciphertext[:p.encLen]
	return v
}

// TestDynkeyVectors checks testdata/dynkey-<suite>.json byte for byte, or
// rewrites it with -update.
func TestDynkeyVectors(t *testing.T) {
	for _, p := range allParams {
		t.Run(p.suite.Name(), func(t *testing.T) {
			file := "dynkey-" + p.suite.Name() + ".json"
			got := buildVector(t, p)
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
				t.Fatalf("vector differs from testdata/%s (a wire-format change?):\n got %s\nwant %s", file, gotJSON, wantJSON)
			}

			// The file is self-consistent: its ciphertext opens with its
			// keys, through the package and through circl directly.
			s := p.suite
			pt, secret, err := s.Open(mustParsePrivate(t, s, want.SkRm), mustParsePublic(t, s, want.PkSm), want.Info, want.AAD, want.Ciphertext)
			if err != nil || !bytes.Equal(pt, want.PT) || !bytes.Equal(secret, want.Secret) {
				t.Fatalf("Open of the file's ciphertext: %x, %x, %v", pt, secret, err)
			}
			o := circlReceiver(t, p, want.SkRm, want.PkSm, want.Info, want.Enc)
			if got := o.Export(want.ExportContext, uint(want.SecretLen)); !bytes.Equal(got, want.Secret) {
				t.Errorf("circl export %x, want %x", got, want.Secret)
			}
			if got, err := o.Open(want.Ciphertext[p.encLen:], want.AAD); err != nil || !bytes.Equal(got, want.PT) {
				t.Errorf("circl Open: %x, %v", got, err)
			}
		})
	}
}

// TestCirclInterop seals with circl directly and opens with the package, and
// the reverse, for fresh random keys.
func TestCirclInterop(t *testing.T) {
	for _, p := range allParams {
		t.Run(p.suite.Name(), func(t *testing.T) {
			s := p.suite
			skR, skS := mustGenerate(t, s), mustGenerate(t, s)
			info, aad, msg := []byte("info"), []byte("aad"), []byte("message")
			scheme := p.kem.Scheme()
			hs := hpke.NewSuite(p.kem, p.kdf, p.aead)

			// circl -> package
			pkR, _ := scheme.UnmarshalBinaryPublicKey(skR.Public().Bytes())
			circlSkS, _ := scheme.UnmarshalBinaryPrivateKey(skS.Bytes())
			sender, _ := hs.NewSender(pkR, info)
			enc, sealer, err := sender.SetupAuth(nil, circlSkS)
			if err != nil {
				t.Fatal(err)
			}
			ct, _ := sealer.Seal(msg, aad)
			pt, secret, err := s.Open(skR, skS.Public(), info, aad, append(enc, ct...))
			if err != nil || !bytes.Equal(pt, msg) {
				t.Fatalf("Open of circl ciphertext: %q, %v", pt, err)
			}
			if want := sealer.Export([]byte(exportContext), crypto.SecretSize); !bytes.Equal(secret, want) {
				t.Errorf("secret %x, circl sender export %x", secret, want)
			}

			// package -> circl
			ct2, secret2, err := s.Seal(nil, skR.Public(), skS, info, aad, msg)
			if err != nil {
				t.Fatal(err)
			}
			if len(ct2) != p.encLen+len(msg)+16 {
				t.Errorf("ciphertext is %d bytes, want enc %d + %d + tag 16", len(ct2), p.encLen, len(msg))
			}
			o := circlReceiver(t, p, skR.Bytes(), skS.Public().Bytes(), info, ct2[:p.encLen])
			if got, err := o.Open(ct2[p.encLen:], aad); err != nil || !bytes.Equal(got, msg) {
				t.Errorf("circl Open: %q, %v", got, err)
			}
			if want := o.Export([]byte(exportContext), crypto.SecretSize); !bytes.Equal(secret2, want) {
				t.Errorf("secret %x, circl receiver export %x", secret2, want)
			}
		})
	}
}

func mustGenerate(t *testing.T, s crypto.Suite) crypto.PrivateKey {
	t.Helper()
	k, err := s.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestKeySizes(t *testing.T) {
	for _, p := range allParams {
		k := mustGenerate(t, p.suite)
		if n := len(k.Public().Bytes()); n != p.pubLen {
			t.Errorf("%s public key is %d bytes, want %d", p.suite.Name(), n, p.pubLen)
		}
		if n := len(k.Bytes()); n != p.privLen {
			t.Errorf("%s private key is %d bytes, want %d", p.suite.Name(), n, p.privLen)
		}
		if p.pubLen == 65 && k.Public().Bytes()[0] != 4 {
			t.Errorf("%s public key is not an uncompressed point", p.suite.Name())
		}
	}
}

// TestCrossSuiteKeys gives keys of one ecies suite to the other.
func TestCrossSuiteKeys(t *testing.T) {
	x, p := ecies.X25519(), ecies.P256()
	xk, pk := mustGenerate(t, x), mustGenerate(t, p)
	if _, _, err := x.Seal(nil, pk.Public(), xk, nil, nil, nil); !errors.Is(err, crypto.ErrWrongSuite) {
		t.Errorf("X25519 Seal to P-256 key: %v", err)
	}
	if _, _, err := p.Seal(nil, pk.Public(), xk, nil, nil, nil); !errors.Is(err, crypto.ErrWrongSuite) {
		t.Errorf("P-256 Seal from X25519 key: %v", err)
	}
	if _, _, err := p.Open(xk, pk.Public(), nil, nil, make([]byte, 100)); !errors.Is(err, crypto.ErrWrongSuite) {
		t.Errorf("P-256 Open with X25519 key: %v", err)
	}
	// Encodings do not cross over either: a P-256 point has the wrong length.
	if _, err := x.ParsePublicKey(pk.Public().Bytes()); !errors.Is(err, crypto.ErrMalformedKey) {
		t.Errorf("X25519 ParsePublicKey of a P-256 public key: %v", err)
	}
}

// TestOpenErrorsIndistinguishable checks that every authentication failure
// returns exactly crypto.ErrOpen, so callers cannot tell the steps apart.
func TestOpenErrorsIndistinguishable(t *testing.T) {
	for _, p := range allParams {
		s := p.suite
		skR, skS := mustGenerate(t, s), mustGenerate(t, s)
		ct, _, err := s.Seal(nil, skR.Public(), skS, nil, nil, []byte("m"))
		if err != nil {
			t.Fatal(err)
		}
		badEnc := bytes.Clone(ct)
		badEnc[1] ^= 0xff // for P-256 almost surely off the curve
		zeroEnc := bytes.Clone(ct)
		clear(zeroEnc[:p.encLen]) // X25519: low-order point; P-256: invalid
		badTag := bytes.Clone(ct)
		badTag[len(badTag)-1] ^= 1
		for name, c := range map[string][]byte{
			"short": ct[:p.encLen+15], "bad enc": badEnc, "zero enc": zeroEnc, "bad tag": badTag, "empty": nil,
		} {
			_, _, err := s.Open(skR, skS.Public(), nil, nil, c)
			if err != crypto.ErrOpen {
				t.Errorf("%s %s: error %v, want exactly crypto.ErrOpen", s.Name(), name, err)
			}
		}
		if _, _, err := s.Open(skR, skR.Public(), nil, nil, ct); err != crypto.ErrOpen {
			t.Errorf("%s wrong sender: error %v, want exactly crypto.ErrOpen", s.Name(), err)
		}
	}
}

// x25519LowOrder are the canonical low-order u-coordinates, written out here
// independently of the package (RFC 7748; https://cr.yp.to/ecdh.html).
var x25519LowOrder = []string{
	"0000000000000000000000000000000000000000000000000000000000000000", // 0
	"0100000000000000000000000000000000000000000000000000000000000000", // 1
	"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800", // order 8
	"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157", // order 8
	"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // p-1
}

func TestX25519PublicKeyValidation(t *testing.T) {
	s := ecies.X25519()
	reject := map[string]string{
		"p":         "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"p+1":       "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"2^255-1":   "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"top bit":   "0900000000000000000000000000000000000000000000000000000000000080",
		"all 0xff":  strings.Repeat("ff", 32),
		"p-1+2^255": "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
	}
	for i, h := range x25519LowOrder {
		reject[fmt.Sprint("low order ", i)] = h
	}
	for name, h := range reject {
		b, _ := hex.DecodeString(h)
		if _, err := s.ParsePublicKey(b); !errors.Is(err, crypto.ErrMalformedKey) {
			t.Errorf("ParsePublicKey(%s) error = %v, want ErrMalformedKey", name, err)
		}
	}
	accept := map[string]string{
		"base point 9": "0900000000000000000000000000000000000000000000000000000000000000",
		"p-2":          "ebffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"2":            "0200000000000000000000000000000000000000000000000000000000000000",
	}
	for name, h := range accept {
		b, _ := hex.DecodeString(h)
		if _, err := s.ParsePublicKey(b); err != nil {
			t.Errorf("ParsePublicKey(%s): %v", name, err)
		}
	}
}

func TestPrivateKeyNotPrinted(t *testing.T) {
	for _, p := range allParams {
		k := mustGenerate(t, p.suite)
		secret := hex.EncodeToString(k.Bytes())
		for _, format := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q", "%d"} {
			out := fmt.Sprintf(format, k)
			if strings.Contains(strings.ToLower(out), secret) || strings.Contains(out, string(k.Bytes())) {
				t.Errorf("%s: fmt %s prints the private key: %s", p.suite.Name(), format, out)
			}
			if !strings.Contains(out, "redacted") {
				t.Errorf("%s: fmt %s = %q", p.suite.Name(), format, out)
			}
		}
		// Nested in a struct.
		if out := fmt.Sprintf("%+v", struct{ K crypto.PrivateKey }{k}); strings.Contains(out, secret) {
			t.Errorf("%s: nested private key printed: %s", p.suite.Name(), out)
		}
	}
}

func TestBytesReturnsCopies(t *testing.T) {
	for _, p := range allParams {
		k := mustGenerate(t, p.suite)
		priv, pub := k.Bytes(), k.Public().Bytes()
		clear(priv)
		clear(pub)
		if bytes.Equal(k.Bytes(), priv) || bytes.Equal(k.Public().Bytes(), pub) {
			t.Errorf("%s: clearing the result of Bytes changed the key", p.suite.Name())
		}
	}
}

// FuzzOpen feeds arbitrary ciphertexts, info and aad to Open: it must fail
// with crypto.ErrOpen (a forgery would need the keys) and never panic.
func FuzzOpen(f *testing.F) {
	type keys struct{ skR, skS crypto.PrivateKey }
	ks := map[string]keys{}
	for _, p := range allParams {
		skR, err := p.suite.GenerateKey(bytes.NewReader(seed(p.suite.Name(), "fuzz R")))
		if err != nil {
			f.Fatal(err)
		}
		skS, err := p.suite.GenerateKey(bytes.NewReader(seed(p.suite.Name(), "fuzz S")))
		if err != nil {
			f.Fatal(err)
		}
		ks[p.suite.Name()] = keys{skR, skS}
		ct, _, err := p.suite.Seal(nil, skR.Public(), skS, []byte("i"), []byte("a"), []byte("hello"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(ct, []byte("i"), []byte("a"))
	}
	f.Add([]byte{}, []byte{}, []byte{})
	f.Fuzz(func(t *testing.T, ct, info, aad []byte) {
		for _, p := range allParams {
			k := ks[p.suite.Name()]
			pt, secret, err := p.suite.Open(k.skR, k.skS.Public(), info, aad, ct)
			if err == nil {
				// Only the seed corpus entries are valid ciphertexts.
				if string(pt) != "hello" || len(secret) != crypto.SecretSize {
					t.Fatalf("%s: Open accepted %x: %x", p.suite.Name(), ct, pt)
				}
				continue
			}
			if err != crypto.ErrOpen || pt != nil || secret != nil {
				t.Fatalf("%s: Open = %x, %x, %v", p.suite.Name(), pt, secret, err)
			}
		}
	})
}

// FuzzParseKeys feeds arbitrary bytes to the key parsers: they must return a
// key or an error wrapping crypto.ErrMalformedKey, never panic, and accepted
// keys must re-encode to the input.
func FuzzParseKeys(f *testing.F) {
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0xff}, 32))
	f.Add(bytes.Repeat([]byte{0xff}, 65))
	f.Add(append([]byte{4}, make([]byte, 64)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, p := range allParams {
			if k, err := p.suite.ParsePublicKey(b); err != nil {
				if !errors.Is(err, crypto.ErrMalformedKey) || k != nil {
					t.Fatalf("%s ParsePublicKey: %v", p.suite.Name(), err)
				}
			} else if !bytes.Equal(k.Bytes(), b) {
				t.Fatalf("%s ParsePublicKey(%x) re-encodes as %x", p.suite.Name(), b, k.Bytes())
			}
			if k, err := p.suite.ParsePrivateKey(b); err != nil {
				if !errors.Is(err, crypto.ErrMalformedKey) || k != nil {
					t.Fatalf("%s ParsePrivateKey: %v", p.suite.Name(), err)
				}
			} else if !bytes.Equal(k.Bytes(), b) {
				t.Fatalf("%s ParsePrivateKey does not re-encode its input", p.suite.Name())
			}
		}
	})
}
