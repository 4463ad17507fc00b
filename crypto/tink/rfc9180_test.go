package tink

// RFC 9180 conformance of the "tink-hpke-x25519" suite's hybrid layer.
//
// What can and cannot be checked. Tink's hybrid API runs HPKE base mode
// single-shot: HybridEncrypt(plaintext, contextInfo) is SetupBaseS(pkR,
// info = contextInfo) followed by one Seal(aad = "", plaintext) at sequence
// number 0, and the RAW output is enc || ct. It takes no HPKE associated
// data (always empty), no ephemeral randomness (it draws skE from
// crypto/rand itself) and offers no exporter. So:
//
//   - The RFC 9180 vectors' ciphertexts cannot be decrypted through tink:
//     every published encryption has a non-empty aad ("Count-i"), and tink
//     always authenticates the empty aad (TestRFC9180VectorBaseX25519AES256
//     shows tink rejecting the vector's first ciphertext). Nor can tink
//     reproduce a published enc or ciphertext, since it cannot be handed
//     ikmE; and the vectors' exports have no tink counterpart.
//   - What is checked instead, for the exact algorithms the suite uses
//     (mode 0, DHKEM(X25519, HKDF-SHA256) 0x0020, HKDF-SHA256 0x0001,
//     AES-256-GCM 0x0002): tink derives the vector's pkRm from its skRm;
//     circl, fed the vector's ikmE, reproduces the vector's enc and its
//     first three ciphertexts byte for byte; the same context sealing the
//     vector's pt with the empty aad gives exactly AES-256-GCM(key,
//     base_nonce) of the vector's published key schedule (checked with the
//     standard library's AES-GCM), and tink decrypts that enc || ct with
//     contextInfo = the vector's info. Tink can only decrypt it if its KEM
//     and key schedule derive the vector's key and base_nonce, so this pins
//     tink's decryption path to RFC 9180's values for that skRm, enc and
//     info. The encryption direction is checked by interop: circl opens
//     what tink seals, and nothing else is possible without tink exposing
//     its ephemeral key.
//   - Through our wrapper (TestRFC9180InteropCirclToSuite and
//     TestRFC9180InteropSuiteToCircl): a message whose hybrid part circl
//     built independently (deterministic ephemeral, info = the dynkey
//     binding, plaintext = secret || pt, empty aad) and which is signed as
//     Seal signs opens with Open; and circl opens the hybrid part of what
//     Seal produces. The binding itself is recomputed here from the package
//     documentation rather than only taken from suite.binding.

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	circlhpke "github.com/cloudflare/circl/hpke"
	"github.com/cloudflare/circl/kem"
	"github.com/dynkey/dynkey/crypto"
	"github.com/tink-crypto/tink-go/v2/hybrid"
	"github.com/tink-crypto/tink-go/v2/hybrid/hpke"
	"github.com/tink-crypto/tink-go/v2/insecuresecretdataaccess"
)

// circlBaseSuite is the HPKE suite of tink-hpke-x25519 in circl.
var circlBaseSuite = circlhpke.NewSuite(circlhpke.KEM_X25519_HKDF_SHA256, circlhpke.KDF_HKDF_SHA256, circlhpke.AEAD_AES256GCM)

// fixedIKME is the deterministic ephemeral input keying material the interop
// tests feed circl's sender (RFC 9180 DeriveKeyPair(ikmE)).
var fixedIKME = bytes.Repeat([]byte{0xe7}, 32)

// hexBytes is a JSON hex string.
type hexBytes []byte

func (h *hexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := hex.DecodeString(s)
	*h = v
	return err
}

// rfc9180BaseVector is testdata/rfc9180-base-x25519-aes256.json (see
// testdata/README.md).
type rfc9180BaseVector struct {
	Mode        int      `json:"mode"`
	KEM         uint16   `json:"kem_id"`
	KDF         uint16   `json:"kdf_id"`
	AEAD        uint16   `json:"aead_id"`
	Info        hexBytes `json:"info"`
	IkmR        hexBytes `json:"ikmR"`
	IkmE        hexBytes `json:"ikmE"`
	SkRm        hexBytes `json:"skRm"`
	PkRm        hexBytes `json:"pkRm"`
	SkEm        hexBytes `json:"skEm"`
	PkEm        hexBytes `json:"pkEm"`
	Enc         hexBytes `json:"enc"`
	Key         hexBytes `json:"key"`
	BaseNonce   hexBytes `json:"base_nonce"`
	Encryptions []struct {
		AAD   hexBytes `json:"aad"`
		CT    hexBytes `json:"ct"`
		Nonce hexBytes `json:"nonce"`
		PT    hexBytes `json:"pt"`
	} `json:"encryptions"`
}

// hpkeRawKeys returns the raw X25519 HPKE public and private key bytes of
// a tink-hpke-x25519 private key, read out of its keysets.
func hpkeRawKeys(t *testing.T, k *privateKey) (pkR, skR []byte) {
	t.Helper()
	priv, ok := k.hybridKey.(*hpke.PrivateKey)
	if !ok {
		t.Fatalf("hybrid key is %T, want *hpke.PrivateKey", k.hybridKey)
	}
	skR = bytes.Clone(priv.PrivateKeyBytes().Data(insecuresecretdataaccess.Token{}))
	e, err := k.pub.hybrid.Primary()
	if err != nil {
		t.Fatal(err)
	}
	pub, ok := e.Key().(*hpke.PublicKey)
	if !ok {
		t.Fatalf("public hybrid key is %T, want *hpke.PublicKey", e.Key())
	}
	pkR = pub.PublicKeyBytes()
	if len(pkR) != 32 || len(skR) != 32 {
		t.Fatalf("raw X25519 keys of %d and %d bytes, want 32", len(pkR), len(skR))
	}
	return pkR, skR
}

// circlKeys unmarshals raw X25519 keys for circl and checks that the
// private key's public key, computed by circl, is pkR.
func circlKeys(t *testing.T, pkR, skR []byte) (kem.PublicKey, kem.PrivateKey) {
	t.Helper()
	scheme := circlhpke.KEM_X25519_HKDF_SHA256.Scheme()
	pk, err := scheme.UnmarshalBinaryPublicKey(pkR)
	if err != nil {
		t.Fatal(err)
	}
	sk, err := scheme.UnmarshalBinaryPrivateKey(skR)
	if err != nil {
		t.Fatal(err)
	}
	if !sk.Public().Equal(pk) {
		t.Fatal("circl's public key of tink's private key differs from tink's public key")
	}
	return pk, sk
}

// docBinding computes the message binding from the package documentation,
// independently of suite.binding:
//
//	u16 len(label) || label || u32 len(info) || info || SHA-256(aad) || SHA-256(from.Bytes())
func docBinding(info, aad []byte, from crypto.PublicKey) []byte {
	label := "dynkey/v1 " + NameHPKEX25519
	var b []byte
	b = binary.BigEndian.AppendUint16(b, uint16(len(label)))
	b = append(b, label...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(info)))
	b = append(b, info...)
	ah := sha256.Sum256(aad)
	fh := sha256.Sum256(from.Bytes())
	return append(append(b, ah[:]...), fh[:]...)
}

// circlSealHybrid builds a hybrid ciphertext as tink's HybridEncrypt
// would, with circl and a deterministic ephemeral: enc || Seal(aad = "").
func circlSealHybrid(t *testing.T, pkR kem.PublicKey, ikmE, info, plaintext []byte) []byte {
	t.Helper()
	snd, err := circlBaseSuite.NewSender(pkR, info)
	if err != nil {
		t.Fatal(err)
	}
	enc, sealer, err := snd.Setup(bytes.NewReader(ikmE))
	if err != nil {
		t.Fatal(err)
	}
	ct, err := sealer.Seal(plaintext, nil)
	if err != nil {
		t.Fatal(err)
	}
	return append(enc, ct...)
}

// circlOpenHybrid opens a hybrid ciphertext enc || ct with circl (base
// mode, one Open at sequence 0 with the given aad).
func circlOpenHybrid(skR kem.PrivateKey, info, hct, aad []byte) ([]byte, error) {
	n := circlhpke.KEM_X25519_HKDF_SHA256.Scheme().CiphertextSize()
	if len(hct) < n {
		return nil, crypto.ErrOpen
	}
	rcv, err := circlBaseSuite.NewReceiver(skR, info)
	if err != nil {
		return nil, err
	}
	opener, err := rcv.Setup(hct[:n])
	if err != nil {
		return nil, err
	}
	return opener.Open(hct[n:], aad)
}

// A message whose hybrid part circl built (RFC 9180 base mode, fixed ikmE,
// info = the binding, plaintext = secret || pt, empty aad) and which is
// signed as Seal signs it opens with our Open, with the right plaintext and
// secret. Built with any other HPKE info it does not open: tink's
// contextInfo is exactly the HPKE info.
func TestRFC9180InteropCirclToSuite(t *testing.T) {
	s := hpkeX25519Suite
	sender, recipient := mustKey(t, s), mustKey(t, s)
	pkR, skR := hpkeRawKeys(t, recipient)
	cpkR, _ := circlKeys(t, pkR, skR)
	secret := bytes.Repeat([]byte{0x5e}, crypto.SecretSize)

	for _, c := range []struct{ name, info, aad, pt string }{
		{"typical", "dynkey info", "associated data", "a message from circl"},
		{"empty", "", "", ""},
		{"long", string(bytes.Repeat([]byte("i"), 300)), string(bytes.Repeat([]byte("a"), 1000)), string(bytes.Repeat([]byte("p"), 5000))},
	} {
		t.Run(c.name, func(t *testing.T) {
			info, aad, pt := []byte(c.info), []byte(c.aad), []byte(c.pt)
			b := s.binding(info, aad, sender.pub)
			if !bytes.Equal(b, docBinding(info, aad, sender.Public())) {
				t.Fatalf("binding differs from the documented construction")
			}
			inner := append(bytes.Clone(secret), pt...)
			hct := circlSealHybrid(t, cpkR, fixedIKME, b, inner)
			if again := circlSealHybrid(t, cpkR, fixedIKME, b, inner); !bytes.Equal(hct, again) {
				t.Fatal("circl's sender is not deterministic in ikmE")
			}
			if got, want := len(hct), len(inner)+s.hybridOverhead; got != want {
				t.Errorf("circl hybrid ciphertext is %d bytes, want %d", got, want)
			}
			sign := func(hct []byte) []byte {
				sig, err := sender.signer.Sign(append(bytes.Clone(b), hct...))
				if err != nil {
					t.Fatal(err)
				}
				return append(bytes.Clone(hct), sig...)
			}

			gotPT, gotSecret, err := s.Open(recipient, sender.Public(), info, aad, sign(hct))
			if err != nil {
				t.Fatalf("Open(circl-built ciphertext) = %v", err)
			}
			if !bytes.Equal(gotPT, pt) || !bytes.Equal(gotSecret, secret) {
				t.Errorf("Open returned pt %x, secret %x; want %x, %x", gotPT, gotSecret, pt, secret)
			}

			// The same, correctly signed, but with HPKE info other than
			// the binding, or a non-empty HPKE aad, does not open.
			for name, bad := range map[string][]byte{
				"raw info as HPKE info": circlSealHybrid(t, cpkR, fixedIKME, info, inner),
				"empty HPKE info":       circlSealHybrid(t, cpkR, fixedIKME, nil, inner),
				"binding of other aad":  circlSealHybrid(t, cpkR, fixedIKME, s.binding(info, append(aad, 'x'), sender.pub), inner),
				"non-empty HPKE aad": func() []byte {
					snd, err := circlBaseSuite.NewSender(cpkR, b)
					if err != nil {
						t.Fatal(err)
					}
					enc, sealer, err := snd.Setup(bytes.NewReader(fixedIKME))
					if err != nil {
						t.Fatal(err)
					}
					ct, err := sealer.Seal(inner, []byte("hpke aad"))
					if err != nil {
						t.Fatal(err)
					}
					return append(enc, ct...)
				}(),
			} {
				if _, _, err := s.Open(recipient, sender.Public(), info, aad, sign(bad)); err != crypto.ErrOpen {
					t.Errorf("%s: Open = %v, want crypto.ErrOpen", name, err)
				}
			}
		})
	}
}

// circl opens the hybrid part of what our Seal produces (base mode, skR
// from the keyset, info = the binding, empty aad) and finds secret || pt;
// with a non-empty aad or another info it does not.
func TestRFC9180InteropSuiteToCircl(t *testing.T) {
	s := hpkeX25519Suite
	sender, recipient := mustKey(t, s), mustKey(t, s)
	pkR, skR := hpkeRawKeys(t, recipient)
	_, cskR := circlKeys(t, pkR, skR)

	for _, c := range []struct{ name, info, aad, pt string }{
		{"typical", "dynkey info", "associated data", "a message to circl"},
		{"empty", "", "", ""},
		{"long", string(bytes.Repeat([]byte("i"), 300)), string(bytes.Repeat([]byte("a"), 1000)), string(bytes.Repeat([]byte("p"), 5000))},
	} {
		t.Run(c.name, func(t *testing.T) {
			info, aad, pt := []byte(c.info), []byte(c.aad), []byte(c.pt)
			ct, secret, err := s.Seal(nil, recipient.Public(), sender, info, aad, pt)
			if err != nil {
				t.Fatal(err)
			}
			hct := ct[:len(ct)-signatureSize]
			b := docBinding(info, aad, sender.Public())

			got, err := circlOpenHybrid(cskR, b, hct, nil)
			if err != nil {
				t.Fatalf("circl cannot open the hybrid part of Seal's ciphertext: %v", err)
			}
			if want := append(bytes.Clone(secret), pt...); !bytes.Equal(got, want) {
				t.Errorf("circl decrypted %x, want secret || pt = %x", got, want)
			}
			if _, err := circlOpenHybrid(cskR, b, hct, []byte("x")); err == nil {
				t.Error("circl opened it with a non-empty HPKE aad")
			}
			if _, err := circlOpenHybrid(cskR, info, hct, nil); err == nil {
				t.Error("circl opened it with info instead of the binding")
			}
		})
	}
}

// The RFC 9180 test vector for mode 0, DHKEM(X25519, HKDF-SHA256),
// HKDF-SHA256, AES-256-GCM, checked against tink's HPKE key and hybrid
// decryption; see the comment at the top of the file for why the vector's
// own ciphertexts cannot be replayed through tink and what is checked
// instead.
func TestRFC9180VectorBaseX25519AES256(t *testing.T) {
	s := hpkeX25519Suite
	raw, err := os.ReadFile(filepath.Join("testdata", "rfc9180-base-x25519-aes256.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v rfc9180BaseVector
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	if v.Mode != 0 || v.KEM != 0x0020 || v.KDF != 0x0001 || v.AEAD != 0x0002 {
		t.Fatalf("vector is mode %d, suite %#x/%#x/%#x; want 0, 0x20/0x1/0x2", v.Mode, v.KEM, v.KDF, v.AEAD)
	}
	if k, f, a := circlBaseSuite.Params(); uint16(k) != v.KEM || uint16(f) != v.KDF || uint16(a) != v.AEAD {
		t.Fatalf("circl suite is %#x/%#x/%#x, not the vector's", k, f, a)
	}
	if len(v.Encryptions) == 0 {
		t.Fatal("vector has no encryptions")
	}

	// The vector is self-consistent under circl: DeriveKeyPair(ikmR) and
	// DeriveKeyPair(ikmE) give its key pairs.
	scheme := circlhpke.KEM_X25519_HKDF_SHA256.Scheme()
	for _, kp := range []struct {
		name        string
		ikm, sk, pk []byte
	}{
		{"R", v.IkmR, v.SkRm, v.PkRm},
		{"E", v.IkmE, v.SkEm, v.PkEm},
	} {
		pk, sk := scheme.DeriveKeyPair(kp.ikm)
		skb, _ := sk.MarshalBinary()
		pkb, _ := pk.MarshalBinary()
		if !bytes.Equal(skb, kp.sk) || !bytes.Equal(pkb, kp.pk) {
			t.Errorf("circl DeriveKeyPair(ikm%s) = (%x, %x), want (%x, %x)", kp.name, skb, pkb, kp.sk, kp.pk)
		}
	}

	// (a) A tink HPKE private key with the suite's parameters made from
	// skRm has the public key pkRm, and makes a keyset the suite accepts.
	params := s.hybridParams.(*hpke.Parameters)
	tk, err := hpke.NewPrivateKey(secretBytes(v.SkRm), 0, params)
	if err != nil {
		t.Fatalf("hpke.NewPrivateKey(skRm): %v", err)
	}
	if got := publicOf(t, tk).(*hpke.PublicKey).PublicKeyBytes(); !bytes.Equal(got, v.PkRm) {
		t.Fatalf("tink public key of skRm = %x, want pkRm %x", got, v.PkRm)
	}
	tpk, err := hpke.NewPublicKey(v.PkRm, 0, params)
	if err != nil {
		t.Fatal(err)
	}
	if !publicOf(t, tk).Equal(tpk) {
		t.Error("hpke.NewPublicKey(pkRm) differs from the public key of skRm")
	}
	if err := checkX25519Public(tpk); err != nil {
		t.Errorf("checkX25519Public(pkRm) = %v", err)
	}
	h, err := singleKeyHandle(tk)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkPrivateKeyset(h, s.hybridParams); err != nil {
		t.Fatalf("keyset of skRm is not a suite keyset: %v", err)
	}
	dec, err := hybrid.NewHybridDecrypt(h)
	if err != nil {
		t.Fatal(err)
	}
	cpkR, cskR := circlKeys(t, v.PkRm, v.SkRm)

	// (b) No published encryption has an empty aad, so none can be
	// decrypted by tink, which always uses the empty aad.
	for i, e := range v.Encryptions {
		if len(e.AAD) == 0 {
			t.Fatalf("encryption %d has an empty aad: decrypt it with tink directly", i)
		}
	}
	first := v.Encryptions[0]
	if !bytes.Equal(first.Nonce, v.BaseNonce) {
		t.Fatalf("encryption 0 nonce %x is not base_nonce %x", first.Nonce, v.BaseNonce)
	}
	if _, err := dec.Decrypt(append(bytes.Clone(v.Enc), first.CT...), v.Info); err == nil {
		t.Fatal("tink decrypted encryption 0, whose aad is not empty")
	}

	// Instead: circl with the vector's ikmE re-derives enc and reproduces
	// the published ciphertexts at sequence numbers 0, 1, 2...
	snd, err := circlBaseSuite.NewSender(cpkR, v.Info)
	if err != nil {
		t.Fatal(err)
	}
	enc, sealer, err := snd.Setup(bytes.NewReader(v.IkmE))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc, v.Enc) {
		t.Fatalf("circl enc from ikmE = %x, want %x", enc, v.Enc)
	}
	for i, e := range v.Encryptions {
		ct, err := sealer.Seal(e.PT, e.AAD)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ct, e.CT) {
			t.Fatalf("circl encryption %d = %x, want %x", i, ct, e.CT)
		}
	}
	if got, err := circlOpenHybrid(cskR, v.Info, append(bytes.Clone(v.Enc), first.CT...), first.AAD); err != nil || !bytes.Equal(got, first.PT) {
		t.Fatalf("circl cannot open encryption 0: %x, %v", got, err)
	}

	// ... and sealing pt at sequence 0 with the EMPTY aad gives exactly
	// AES-256-GCM under the vector's key and base_nonce (an independent
	// AES-GCM, fed only published values), which tink then decrypts with
	// contextInfo = info: tink's KEM and key schedule derive RFC 9180's
	// key and base_nonce from skRm, enc and info.
	hct := circlSealHybrid(t, cpkR, v.IkmE, v.Info, first.PT)
	block, err := aes.NewCipher(v.Key)
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	want := append(bytes.Clone(v.Enc), gcm.Seal(nil, v.BaseNonce, first.PT, nil)...)
	if !bytes.Equal(hct, want) {
		t.Fatalf("circl empty-aad ciphertext %x differs from AES-256-GCM(key, base_nonce) %x", hct, want)
	}
	got, err := dec.Decrypt(want, v.Info)
	if err != nil {
		t.Fatalf("tink cannot decrypt enc || AES-256-GCM(key, base_nonce, pt, aad = \"\"): %v", err)
	}
	if !bytes.Equal(got, first.PT) {
		t.Errorf("tink decrypted %x, want %x", got, first.PT)
	}
	if _, err := dec.Decrypt(want, append(bytes.Clone(v.Info), '!')); err == nil {
		t.Error("tink decrypted under another contextInfo")
	}

	// Tink encrypts to pkRm and circl opens it (tink's ephemeral is
	// random, so this direction is interop only).
	hpub, err := h.Public()
	if err != nil {
		t.Fatal(err)
	}
	enc2, err := hybrid.NewHybridEncrypt(hpub)
	if err != nil {
		t.Fatal(err)
	}
	tct, err := enc2.Encrypt(first.PT, v.Info)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := circlOpenHybrid(cskR, v.Info, tct, nil); err != nil || !bytes.Equal(got, first.PT) {
		t.Errorf("circl cannot open tink's encryption to pkRm: %x, %v", got, err)
	}

	// Through our wrapper: a suite key pair whose hybrid key is skRm (with
	// a fresh Ed25519 key) opens a message whose hybrid part circl built
	// from the vector's ikmE, so its enc is the vector's enc.
	sigKey := mustKey(t, s)
	recipient, err := s.newPrivateKey(h, sigKey.sig)
	if err != nil {
		t.Fatalf("suite key from skRm: %v", err)
	}
	sender := mustKey(t, s)
	info, aad, pt := []byte("info"), []byte("aad"), first.PT
	secret := bytes.Repeat([]byte{0x11}, crypto.SecretSize)
	b := docBinding(info, aad, sender.Public())
	mhct := circlSealHybrid(t, cpkR, v.IkmE, b, append(bytes.Clone(secret), pt...))
	if !bytes.Equal(mhct[:len(v.Enc)], v.Enc) {
		t.Fatalf("enc %x, want the vector's %x", mhct[:len(v.Enc)], v.Enc)
	}
	sig, err := sender.signer.Sign(append(bytes.Clone(b), mhct...))
	if err != nil {
		t.Fatal(err)
	}
	gotPT, gotSecret, err := s.Open(recipient, sender.Public(), info, aad, append(mhct, sig...))
	if err != nil || !bytes.Equal(gotPT, pt) || !bytes.Equal(gotSecret, secret) {
		t.Errorf("Open with the vector's key = (%x, %x, %v), want (%x, %x, nil)", gotPT, gotSecret, err, pt, secret)
	}
}
