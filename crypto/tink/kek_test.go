package tink

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/dynkey/dynkey/crypto"
	"github.com/tink-crypto/tink-go/v2/aead"
	tinkecies "github.com/tink-crypto/tink-go/v2/hybrid/ecies"
	"github.com/tink-crypto/tink-go/v2/hybrid/hpke"
	"github.com/tink-crypto/tink-go/v2/insecuresecretdataaccess"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/signature/ecdsa"
	"github.com/tink-crypto/tink-go/v2/signature/ed25519"
)

// newKEK returns a fresh AES-256-GCM tink AEAD.
func newKEK(t testing.TB) KeyEncryptionAEAD {
	t.Helper()
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		t.Fatal(err)
	}
	a, err := aead.New(h)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// secretMaterial returns the raw private key values inside k's keysets.
func secretMaterial(t *testing.T, k *privateKey) [][]byte {
	t.Helper()
	var out [][]byte
	for _, kk := range []any{k.hybridKey, k.sigKey} {
		var b []byte
		switch kk := kk.(type) {
		case *hpke.PrivateKey:
			b = kk.PrivateKeyBytes().Data(insecuresecretdataaccess.Token{})
		case *tinkecies.PrivateKey:
			b = kk.PrivateKeyBytes().Data(insecuresecretdataaccess.Token{})
		case *ed25519.PrivateKey:
			b = kk.PrivateKeyBytes().Data(insecuresecretdataaccess.Token{})
		case *ecdsa.PrivateKey:
			b = kk.PrivateKeyValue().Data(insecuresecretdataaccess.Token{})
		default:
			t.Fatalf("unexpected key type %T", kk)
		}
		if len(b) != 32 {
			t.Fatalf("%T private value is %d bytes", kk, len(b))
		}
		out = append(out, b)
	}
	return out
}

func TestEncryptedRoundTrip(t *testing.T) {
	for _, s := range allSuites {
		t.Run(s.name, func(t *testing.T) {
			kek := newKEK(t)
			k, sender := mustKey(t, s), mustKey(t, s)
			enc, err := MarshalPrivateKeyEncrypted(k, kek)
			if err != nil {
				t.Fatal(err)
			}
			for name, parse := range map[string]func([]byte, KeyEncryptionAEAD) (crypto.PrivateKey, error){
				"package": ParsePrivateKeyEncrypted,
				"suite":   s.ParsePrivateKeyEncrypted,
			} {
				got, err := parse(bytes.Clone(enc), kek)
				if err != nil {
					t.Fatalf("%s ParsePrivateKeyEncrypted: %v", name, err)
				}
				if !bytes.Equal(got.Public().Bytes(), k.Public().Bytes()) || !bytes.Equal(got.Bytes(), k.Bytes()) {
					t.Errorf("%s: parsed key differs from the original", name)
				}
				ct, secret, err := s.Seal(nil, k.Public(), sender, nil, nil, []byte("hi"))
				if err != nil {
					t.Fatal(err)
				}
				pt, secret2, err := s.Open(got, sender.Public(), nil, nil, ct)
				if err != nil || string(pt) != "hi" || !bytes.Equal(secret, secret2) {
					t.Errorf("%s: parsed key does not open: %q, %v", name, pt, err)
				}
			}
			// The optional interface is found by type assertion.
			var cs crypto.Suite = s
			if _, ok := cs.(PrivateKeyEncrypter); !ok {
				t.Errorf("suite does not implement PrivateKeyEncrypter")
			}
		})
	}
}

// A keyset written under one KEK cannot be read with another, and the
// written bytes hold neither the private values nor the cleartext keysets.
func TestEncryptedKeysetSecrecy(t *testing.T) {
	for _, s := range allSuites {
		t.Run(s.name, func(t *testing.T) {
			kek, otherKEK := newKEK(t), newKEK(t)
			k := mustKey(t, s)
			enc, err := MarshalPrivateKeyEncrypted(k, kek)
			if err != nil {
				t.Fatal(err)
			}

			got, err := ParsePrivateKeyEncrypted(enc, otherKEK)
			if !errors.Is(err, ErrKeyDecryption) || got != nil {
				t.Errorf("ParsePrivateKeyEncrypted with another KEK = %v, %v; want ErrKeyDecryption", got, err)
			}

			for i, m := range secretMaterial(t, k) {
				if bytes.Contains(enc, m) {
					t.Errorf("encrypted key contains private value %d in the clear", i)
				}
				if !bytes.Contains(k.Bytes(), m) {
					t.Errorf("test is broken: the cleartext encoding does not contain private value %d", i)
				}
			}
			hb, sb, _ := splitPair(k.Bytes())
			if bytes.Contains(enc, hb) || bytes.Contains(enc, sb) {
				t.Errorf("encrypted key contains a cleartext keyset")
			}
			// By design it does carry the public key.
			if !bytes.Contains(enc, k.Public().Bytes()) {
				t.Errorf("encrypted key does not carry the public key")
			}
		})
	}
}

// Every tampering and truncation is refused without a panic.
func TestEncryptedTampered(t *testing.T) {
	for _, s := range allSuites {
		t.Run(s.name, func(t *testing.T) {
			kek := newKEK(t)
			k := mustKey(t, s)
			enc, err := MarshalPrivateKeyEncrypted(k, kek)
			if err != nil {
				t.Fatal(err)
			}
			try := func(what string, b []byte) {
				t.Helper()
				var (
					got crypto.PrivateKey
					err error
				)
				func() {
					defer func() {
						if p := recover(); p != nil {
							t.Errorf("%s: panicked: %v", what, p)
						}
					}()
					got, err = ParsePrivateKeyEncrypted(b, kek)
				}()
				if err == nil || got != nil {
					t.Errorf("%s: accepted", what)
				}
				if !errors.Is(err, ErrKeyDecryption) && !errors.Is(err, crypto.ErrMalformedKey) && !errors.Is(err, crypto.ErrWrongSuite) {
					t.Errorf("%s: unexpected error %v", what, err)
				}
			}
			for i := range enc {
				b := bytes.Clone(enc)
				b[i] ^= 1 << (i % 8)
				try(fmt.Sprintf("byte %d flipped", i), b)
			}
			for n := range len(enc) {
				try(fmt.Sprintf("truncated to %d", n), bytes.Clone(enc[:n]))
			}
			try("extended", append(bytes.Clone(enc), 0))
		})
	}
}

// The two keysets of a key pair are bound to each other and to the public
// key: mixing parts of two encrypted keys under the same KEK fails.
func TestEncryptedSwappedParts(t *testing.T) {
	s := hpkeX25519Suite
	kek := newKEK(t)
	k1, k2 := mustKey(t, s), mustKey(t, s)
	e1, err := MarshalPrivateKeyEncrypted(k1, kek)
	if err != nil {
		t.Fatal(err)
	}
	e2, err := MarshalPrivateKeyEncrypted(k2, kek)
	if err != nil {
		t.Fatal(err)
	}
	fields := func(b []byte) [][]byte {
		var f [][]byte
		for range 4 {
			var x []byte
			x, b, _ = cutLP16(b)
			f = append(f, x)
		}
		return f
	}
	f1, f2 := fields(e1), fields(e2)
	build := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = appendLP16(b, p)
		}
		return b
	}
	cases := map[string][]byte{
		"k2's public key":       build(f1[0], f2[1], f1[2], f1[3]),
		"k2's signature":        build(f1[0], f1[1], f1[2], f2[3]),
		"k2's hybrid":           build(f1[0], f1[1], f2[2], f1[3]),
		"hybrid and sig swap":   build(f1[0], f1[1], f1[3], f1[2]),
		"other suite's name":    build([]byte(NameECIESP256), f1[1], f1[2], f1[3]),
		"unregistered name":     build([]byte("ecies-x25519"), f1[1], f1[2], f1[3]),
		"invalid name":          build([]byte("Not A Name"), f1[1], f1[2], f1[3]),
		"cleartext keyset as H": build(f1[0], f1[1], k1.Bytes(), f1[3]),
	}
	for name, b := range cases {
		if got, err := ParsePrivateKeyEncrypted(b, kek); err == nil || got != nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := ParsePrivateKeyEncrypted(cases["k2's signature"], kek); !errors.Is(err, ErrKeyDecryption) {
		t.Errorf("k2's signature keyset: %v, want ErrKeyDecryption", err)
	}
	if _, err := ParsePrivateKeyEncrypted(cases["other suite's name"], kek); !errors.Is(err, crypto.ErrMalformedKey) {
		t.Errorf("other suite's name: %v, want ErrMalformedKey (the public key does not parse)", err)
	}
	if _, err := ParsePrivateKeyEncrypted(cases["unregistered name"], kek); !errors.Is(err, crypto.ErrWrongSuite) {
		t.Errorf("unregistered name: %v, want ErrWrongSuite", err)
	}
}

type failingKEK struct{}

func (failingKEK) Encrypt([]byte, []byte) ([]byte, error) { return nil, errors.New("kms down") }
func (failingKEK) Decrypt([]byte, []byte) ([]byte, error) { return nil, errors.New("kms down") }

func TestEncryptedErrors(t *testing.T) {
	k := mustKey(t, hpkeX25519Suite)
	if _, err := MarshalPrivateKeyEncrypted(k, nil); err == nil {
		t.Errorf("Marshal with nil KEK succeeded")
	}
	if _, err := MarshalPrivateKeyEncrypted(k, failingKEK{}); err == nil {
		t.Errorf("Marshal with failing KEK succeeded")
	}
	if _, err := MarshalPrivateKeyEncrypted(nil, newKEK(t)); !errors.Is(err, crypto.ErrWrongSuite) {
		t.Errorf("Marshal of nil key: %v, want ErrWrongSuite", err)
	}
	if _, err := eciesP256Suite.MarshalPrivateKeyEncrypted(k, newKEK(t)); !errors.Is(err, crypto.ErrWrongSuite) {
		t.Errorf("Marshal of another suite's key: %v, want ErrWrongSuite", err)
	}
	kek := newKEK(t)
	enc, err := MarshalPrivateKeyEncrypted(k, kek)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParsePrivateKeyEncrypted(enc, nil); err == nil {
		t.Errorf("Parse with nil KEK succeeded")
	}
	if _, err := ParsePrivateKeyEncrypted(enc, failingKEK{}); !errors.Is(err, ErrKeyDecryption) {
		t.Errorf("Parse with failing KEK: %v, want ErrKeyDecryption", err)
	}
	if _, err := eciesP256Suite.ParsePrivateKeyEncrypted(enc, kek); !errors.Is(err, crypto.ErrWrongSuite) {
		t.Errorf("Parse by another suite: %v, want ErrWrongSuite", err)
	}
	for _, b := range [][]byte{nil, {}, {0}, {0, 0}, {0, 1, 'X'}} {
		if _, err := ParsePrivateKeyEncrypted(b, kek); !errors.Is(err, crypto.ErrMalformedKey) {
			t.Errorf("Parse(%x): %v, want ErrMalformedKey", b, err)
		}
	}
}
