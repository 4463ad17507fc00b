package tink

import (
	"bytes"
	"crypto/ecdh"
	cryptorand "crypto/rand"
	"errors"
	"io"
	"math/big"
	"testing"

	"github.com/dynkey/dynkey/crypto"
	"github.com/tink-crypto/tink-go/v2/hybrid"
	"github.com/tink-crypto/tink-go/v2/hybrid/hpke"
	"github.com/tink-crypto/tink-go/v2/key"
	"github.com/tink-crypto/tink-go/v2/keyset"
	tinkpb "github.com/tink-crypto/tink-go/v2/proto/tink_go_proto"
	"github.com/tink-crypto/tink-go/v2/signature"
	"google.golang.org/protobuf/proto"
)

var allSuites = []*suite{hpkeX25519Suite, eciesP256Suite}

func mustKey(t testing.TB, s *suite) *privateKey {
	t.Helper()
	k, err := s.GenerateKey(nil)
	if err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}
	return k.(*privateKey)
}

// The suites' parameters are exactly those of the tink templates the
// package documentation names, with the RAW output prefix.
func TestParametersMatchTemplates(t *testing.T) {
	raw := func(kt *tinkpb.KeyTemplate) *tinkpb.KeyTemplate {
		kt = proto.Clone(kt).(*tinkpb.KeyTemplate)
		kt.OutputPrefixType = tinkpb.OutputPrefixType_RAW
		return kt
	}
	for _, c := range []struct {
		name     string
		template *tinkpb.KeyTemplate
		suite    *suite
		hybrid   bool
	}{
		{"HPKE X25519 AES-256-GCM RAW", hybrid.DHKEM_X25519_HKDF_SHA256_HKDF_SHA256_AES_256_GCM_Raw_Key_Template(), hpkeX25519Suite, true},
		{"ECIES P-256 AES-128-GCM (as RAW)", raw(hybrid.ECIESHKDFAES128GCMKeyTemplate()), eciesP256Suite, true},
		{"Ed25519 without prefix", signature.ED25519KeyWithoutPrefixTemplate(), hpkeX25519Suite, false},
		{"ECDSA P-256 IEEE P1363 RAW", signature.ECDSAP256RawKeyTemplate(), eciesP256Suite, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, err := keyset.NewHandle(c.template)
			if err != nil {
				t.Fatal(err)
			}
			e, err := h.Primary()
			if err != nil {
				t.Fatal(err)
			}
			want := e.Key().Parameters()
			got := c.suite.sigParams
			if c.hybrid {
				got = c.suite.hybridParams
			}
			if !got.Equal(want) || !want.Equal(got) {
				t.Errorf("%s parameters %v differ from the template's %v", c.suite.name, got, want)
			}
			// A key tink generated from the template is accepted as a
			// key of the suite.
			if err := checkPrivateKeyset(h, got); err != nil {
				t.Errorf("template keyset rejected: %v", err)
			}
		})
	}
}

// Each listed low-order point gives the all-zero X25519 output, which
// crypto/ecdh refuses, and is rejected by checkX25519Public.
func TestX25519LowOrder(t *testing.T) {
	sk, err := ecdh.X25519().GenerateKey(cryptorand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	params := hpkeX25519Suite.hybridParams.(*hpke.Parameters)
	for i, p := range x25519LowOrder {
		pk, err := ecdh.X25519().NewPublicKey(p[:])
		if err != nil {
			t.Fatalf("point %d: %v", i, err)
		}
		if _, err := sk.ECDH(pk); err == nil {
			t.Errorf("point %d (%x) is not low order: ECDH succeeded", i, p)
		}
		k, err := hpke.NewPublicKey(p[:], 0, params)
		if err != nil {
			t.Logf("tink itself rejects point %d: %v", i, err)
			continue
		}
		if err := checkX25519Public(k); !errors.Is(err, errLowOrder) {
			t.Errorf("point %d: checkX25519Public = %v, want errLowOrder", i, err)
		}
	}
	// Non-canonical encodings: p itself, p+1 and a set top bit.
	for _, b := range [][]byte{x25519P[:], func() []byte { c := x25519P; c[0]++; return c[:] }(),
		func() []byte { c := make([]byte, 32); c[0] = 9; c[31] = 0x80; return c }()} {
		k, err := hpke.NewPublicKey(b, 0, params)
		if err != nil {
			continue
		}
		if err := checkX25519Public(k); !errors.Is(err, errNonCanonical) {
			t.Errorf("%x: checkX25519Public = %v, want errNonCanonical", b, err)
		}
	}
}

// A public key whose HPKE key is a low-order point does not parse, though
// tink itself accepts the point.
func TestParseRejectsLowOrderX25519(t *testing.T) {
	s := hpkeX25519Suite
	good := mustKey(t, s)
	k, err := hpke.NewPublicKey(x25519LowOrder[1][:], 0, s.hybridParams.(*hpke.Parameters))
	if err != nil {
		t.Skipf("tink rejects the point itself: %v", err)
	}
	h, err := singleKeyHandle(k)
	if err != nil {
		t.Fatal(err)
	}
	hb, err := publicKeysetBytes(h)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := publicKeysetBytes(good.pub.sig)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := joinPair(hb, sb)
	if _, err := s.ParsePublicKey(b); !errors.Is(err, crypto.ErrMalformedKey) {
		t.Errorf("ParsePublicKey(low-order X25519) = %v, want ErrMalformedKey", err)
	}
}

// publicOf returns the public key of a tink private key.
func publicOf(t *testing.T, k key.Key) key.Key {
	t.Helper()
	p, ok := k.(interface{ PublicKey() (key.Key, error) })
	if !ok {
		t.Fatalf("%T is not a private key", k)
	}
	pub, err := p.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// GenerateKey takes its keys from rand and from nowhere else: the same
// bytes give the same keys (the keysets' internal ids are random, so the
// encodings differ), and it reads exactly 64 bytes when no P-256 candidate
// is rejected.
func TestGenerateKeyReadsRand(t *testing.T) {
	seed := bytes.Repeat([]byte{0x42}, 64)
	for _, s := range allSuites {
		t.Run(s.name, func(t *testing.T) {
			r1 := &countingReader{r: bytes.NewReader(seed)}
			k1, err := s.GenerateKey(r1)
			if err != nil {
				t.Fatal(err)
			}
			k2, err := s.GenerateKey(bytes.NewReader(seed))
			if err != nil {
				t.Fatal(err)
			}
			if r1.n != 64 {
				t.Errorf("GenerateKey read %d bytes, want 64", r1.n)
			}
			a, b := k1.(*privateKey), k2.(*privateKey)
			ha, hb := publicOf(t, a.hybridKey), publicOf(t, b.hybridKey)
			sa, sb := publicOf(t, a.sigKey), publicOf(t, b.sigKey)
			if !ha.Equal(hb) || !sa.Equal(sb) {
				t.Errorf("the same randomness gave different keys")
			}
			// Keys from different randomness differ.
			k3 := mustKey(t, s)
			h3 := publicOf(t, k3.hybridKey)
			if ha.Equal(h3) {
				t.Errorf("keys from different randomness are equal")
			}
		})
	}
}

// P-256 scalars out of range are rejected and the next candidate read; a
// reader that never yields one fails instead of looping.
func TestP256RejectionSampling(t *testing.T) {
	valid := bytes.Repeat([]byte{0x42}, 32)
	in := append(bytes.Repeat([]byte{0xff}, 32), make([]byte, 32)...) // >= n, then 0
	in = append(in, valid...)
	r := &countingReader{r: bytes.NewReader(in)}
	b, err := readP256Scalar(r)
	if err != nil || !bytes.Equal(b, valid) || r.n != 96 {
		t.Errorf("readP256Scalar = %x, %v after %d bytes; want %x after 96", b, err, r.n, valid)
	}
	_, err = readP256Scalar(bytes.NewReader(bytes.Repeat([]byte{0xff}, 32*(p256Attempts+1))))
	if !errors.Is(err, errNoScalar) {
		t.Errorf("readP256Scalar(all 0xff) = %v, want errNoScalar", err)
	}
	if _, err := eciesP256Suite.GenerateKey(bytes.NewReader(bytes.Repeat([]byte{0xff}, 4096))); err == nil {
		t.Errorf("GenerateKey from all-0xff reader succeeded")
	}
}

// The ciphertext is the hybrid ciphertext of secret || plaintext under
// contextInfo = binding, followed by a 64-byte signature of binding ||
// hybrid ciphertext: check it with tink directly.
func TestCiphertextLayout(t *testing.T) {
	info, aad, msg := []byte("info"), []byte("aad"), []byte("message")
	for _, s := range allSuites {
		t.Run(s.name, func(t *testing.T) {
			sender, recipient := mustKey(t, s), mustKey(t, s)
			ct, secret, err := s.Seal(nil, recipient.Public(), sender, info, aad, msg)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := len(ct)-len(msg), s.minCiphertext; got != want {
				t.Errorf("overhead %d bytes, want %d", got, want)
			}
			hct, sig := ct[:len(ct)-signatureSize], ct[len(ct)-signatureSize:]
			b := s.binding(info, aad, sender.pub)
			if err := sender.pub.verifier.Verify(sig, append(bytes.Clone(b), hct...)); err != nil {
				t.Errorf("signature does not verify over binding || hybrid ciphertext: %v", err)
			}
			dec, err := hybrid.NewHybridDecrypt(recipient.hybrid)
			if err != nil {
				t.Fatal(err)
			}
			inner, err := dec.Decrypt(hct, b)
			if err != nil {
				t.Fatalf("hybrid ciphertext does not decrypt under contextInfo = binding: %v", err)
			}
			if !bytes.Equal(inner, append(bytes.Clone(secret), msg...)) {
				t.Errorf("hybrid plaintext is not secret || plaintext")
			}
		})
	}
}

// The hybrid contextInfo binds aad and info: a sender who signs the same
// hybrid ciphertext again for another aad or info (which only the sender
// can) still cannot make it open, because decryption itself fails.
func TestContextInfoBindsAADAndInfo(t *testing.T) {
	info, aad, msg := []byte("info"), []byte("aad"), []byte("message")
	for _, s := range allSuites {
		t.Run(s.name, func(t *testing.T) {
			sender, recipient := mustKey(t, s), mustKey(t, s)
			ct, _, err := s.Seal(nil, recipient.Public(), sender, info, aad, msg)
			if err != nil {
				t.Fatal(err)
			}
			hct := ct[:len(ct)-signatureSize]
			for _, c := range []struct{ name, info, aad string }{
				{"other aad", "info", "aad2"},
				{"other info", "info2", "aad"},
			} {
				b := s.binding([]byte(c.info), []byte(c.aad), sender.pub)
				sig, err := sender.signer.Sign(append(bytes.Clone(b), hct...))
				if err != nil {
					t.Fatal(err)
				}
				forged := append(bytes.Clone(hct), sig...)
				_, _, err = s.Open(recipient, sender.Public(), []byte(c.info), []byte(c.aad), forged)
				if err != crypto.ErrOpen {
					t.Errorf("%s: re-signed ciphertext: Open = %v, want crypto.ErrOpen", c.name, err)
				}
			}
		})
	}
}

// Anyone can strip the signature off a captured ciphertext and sign it
// with their own key; the sender's key in the contextInfo makes the
// recipient refuse it.
func TestResignedBySomeoneElse(t *testing.T) {
	info, aad, msg := []byte("info"), []byte("aad"), []byte("message")
	for _, s := range allSuites {
		t.Run(s.name, func(t *testing.T) {
			victim, recipient, attacker := mustKey(t, s), mustKey(t, s), mustKey(t, s)
			ct, _, err := s.Seal(nil, recipient.Public(), victim, info, aad, msg)
			if err != nil {
				t.Fatal(err)
			}
			hct := ct[:len(ct)-signatureSize]
			b := s.binding(info, aad, attacker.pub)
			sig, err := attacker.signer.Sign(append(bytes.Clone(b), hct...))
			if err != nil {
				t.Fatal(err)
			}
			forged := append(bytes.Clone(hct), sig...)
			if _, _, err := s.Open(recipient, attacker.Public(), info, aad, forged); err != crypto.ErrOpen {
				t.Errorf("Open of a ciphertext re-signed by another key = %v, want crypto.ErrOpen", err)
			}
		})
	}
}

// Parsing is strict: anything but the canonical encoding of one key with
// the suite's parameters is refused.
func TestParseStrict(t *testing.T) {
	for _, s := range allSuites {
		t.Run(s.name, func(t *testing.T) {
			k := mustKey(t, s)
			other := allSuites[0]
			if other == s {
				other = allSuites[1]
			}
			ok := mustKey(t, other)
			hb, sb, _ := splitPair(k.pub.bytes)
			phb, psb, _ := splitPair(k.Bytes())
			ohb, osb, _ := splitPair(ok.pub.bytes)

			// Two keys in the hybrid keyset.
			m := keyset.NewManagerFromHandle(k.pub.hybrid)
			if _, err := m.AddKey(publicOf(t, mustKey(t, s).hybridKey)); err != nil {
				t.Fatal(err)
			}
			two, err := m.Handle()
			if err != nil {
				t.Fatal(err)
			}
			twoBytes, err := publicKeysetBytes(two)
			if err != nil {
				t.Fatal(err)
			}
			// The same key with the TINK output prefix.
			withPrefix := func(kt *tinkpb.KeyTemplate) []byte {
				h, err := keyset.NewHandle(kt)
				if err != nil {
					t.Fatal(err)
				}
				p, err := h.Public()
				if err != nil {
					t.Fatal(err)
				}
				b, err := publicKeysetBytes(p)
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
			var prefixed []byte
			if s == hpkeX25519Suite {
				prefixed = withPrefix(hybrid.DHKEM_X25519_HKDF_SHA256_HKDF_SHA256_AES_256_GCM_Key_Template())
			} else {
				prefixed = withPrefix(hybrid.ECIESHKDFAES128GCMKeyTemplate())
			}
			join := func(a, b []byte) []byte { j, _ := joinPair(a, b); return j }

			public := map[string][]byte{
				"unknown field appended": join(append(bytes.Clone(hb), 0x78, 0x01), sb),
				"keysets swapped":        join(sb, hb),
				"two hybrid keys":        join(twoBytes, sb),
				"TINK output prefix":     join(prefixed, sb),
				"other suite's hybrid":   join(ohb, sb),
				"other suite's sig":      join(hb, osb),
				"private keysets":        join(phb, psb),
				"trailing byte":          append(bytes.Clone(k.pub.bytes), 0),
				"empty second keyset":    join(hb, nil),
			}
			for name, b := range public {
				if _, err := s.ParsePublicKey(b); !errors.Is(err, crypto.ErrMalformedKey) {
					t.Errorf("ParsePublicKey(%s) = %v, want ErrMalformedKey", name, err)
				}
			}
			private := map[string][]byte{
				"unknown field appended": join(append(bytes.Clone(phb), 0x78, 0x01), psb),
				"keysets swapped":        join(psb, phb),
				"public keysets":         k.pub.bytes,
				"trailing byte":          append(k.Bytes(), 0),
			}
			for name, b := range private {
				if _, err := s.ParsePrivateKey(b); !errors.Is(err, crypto.ErrMalformedKey) {
					t.Errorf("ParsePrivateKey(%s) = %v, want ErrMalformedKey", name, err)
				}
			}
		})
	}
}

// ECDSA signatures are low-s, and the high-s twin of a valid signature,
// which tink would verify, is refused: ciphertexts are not malleable.
func TestECDSALowS(t *testing.T) {
	s := eciesP256Suite
	sender, recipient := mustKey(t, s), mustKey(t, s)
	for i := range 32 {
		ct, _, err := s.Seal(nil, recipient.Public(), sender, nil, nil, []byte("m"))
		if err != nil {
			t.Fatal(err)
		}
		split := len(ct) - signatureSize
		sig := ct[split:]
		if !isLowS(sig) {
			t.Fatalf("seal %d: signature has a high s", i)
		}
		v := new(big.Int).SetBytes(sig[32:])
		twin := bytes.Clone(ct)
		new(big.Int).Sub(p256N, v).FillBytes(twin[split+32:])
		// tink accepts the twin signature itself...
		b := s.binding(nil, nil, sender.pub)
		if err := sender.pub.verifier.Verify(twin[split:], append(bytes.Clone(b), ct[:split]...)); err != nil {
			t.Fatalf("test is broken: tink refuses the high-s twin: %v", err)
		}
		// ...but Open does not.
		if _, _, err := s.Open(recipient, sender.Public(), nil, nil, twin); err != crypto.ErrOpen {
			t.Fatalf("Open of the high-s twin = %v, want crypto.ErrOpen", err)
		}
		if _, _, err := s.Open(recipient, sender.Public(), nil, nil, ct); err != nil {
			t.Fatalf("Open: %v", err)
		}
	}
	// normalizeLowS turns a high s into n-s and leaves a low one alone.
	hi := make([]byte, 64)
	new(big.Int).Sub(p256N, big.NewInt(1)).FillBytes(hi[32:])
	if lo := normalizeLowS(hi); !isLowS(lo) || new(big.Int).SetBytes(lo[32:]).Int64() != 1 || !isLowS(normalizeLowS(lo)) {
		t.Errorf("normalizeLowS(n-1) = %x", lo)
	}
}
