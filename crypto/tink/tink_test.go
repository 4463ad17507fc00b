package tink_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/dynkey/dynkey/crypto"
	"github.com/dynkey/dynkey/crypto/backendtest"
	_ "github.com/dynkey/dynkey/crypto/ecies" // so that ForeignKeys also tries ecies keys
	"github.com/dynkey/dynkey/crypto/tink"
	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
)

var suites = []crypto.Suite{tink.HPKEX25519(), tink.ECIESP256()}

func TestConformance(t *testing.T) {
	for _, s := range suites {
		t.Run(s.Name(), func(t *testing.T) { backendtest.Run(t, s) })
	}
}

func BenchmarkSuite(b *testing.B) {
	for _, s := range suites {
		b.Run(s.Name(), func(b *testing.B) { backendtest.Bench(b, s) })
	}
}

func TestRegistered(t *testing.T) {
	for _, name := range []string{tink.NameHPKEX25519, tink.NameECIESP256} {
		s, err := crypto.Lookup(name)
		if err != nil || s.Name() != name {
			t.Errorf("Lookup(%q) = %v, %v", name, s, err)
		}
	}
}

// The sizes the package documentation states.
func TestSizes(t *testing.T) {
	for _, c := range []struct {
		s                 crypto.Suite
		maxPublic, maxKey int
		overhead          int
	}{
		{tink.HPKEX25519(), 239, 317, 144},
		{tink.ECIESP256(), 393, 470, 189},
	} {
		t.Run(c.s.Name(), func(t *testing.T) {
			for range 32 {
				k, err := c.s.GenerateKey(nil)
				if err != nil {
					t.Fatal(err)
				}
				if n := len(k.Public().Bytes()); n > c.maxPublic || n < c.maxPublic-16 {
					t.Errorf("public key is %d bytes, want at most %d", n, c.maxPublic)
				}
				if n := len(k.Bytes()); n > c.maxKey || n < c.maxKey-16 {
					t.Errorf("private key is %d bytes, want at most %d", n, c.maxKey)
				}
				for _, n := range []int{0, 1, 1000} {
					ct, _, err := c.s.Seal(nil, k.Public(), k, nil, nil, make([]byte, n))
					if err != nil {
						t.Fatal(err)
					}
					if len(ct)-n != c.overhead {
						t.Errorf("overhead %d bytes, want %d", len(ct)-n, c.overhead)
					}
				}
			}
		})
	}
}

// Private keys do not print.
func TestPrivateKeyRedacted(t *testing.T) {
	for _, s := range suites {
		k, _ := s.GenerateKey(nil)
		var buf bytes.Buffer
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q"} {
			buf.Reset()
			fmt.Fprintf(&buf, verb, k)
			if got := buf.String(); got != s.Name()+" private key (redacted)" {
				t.Errorf("%s of a private key printed %q", verb, got)
			}
		}
	}
}

func FuzzParsePublicKey(f *testing.F) {
	for _, s := range suites {
		k, _ := s.GenerateKey(nil)
		f.Add(k.Public().Bytes())
		f.Add(k.Bytes())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, s := range suites {
			if k, err := s.ParsePublicKey(b); err == nil && !bytes.Equal(k.Bytes(), b) {
				t.Errorf("%s accepted %x but encodes it as %x", s.Name(), b, k.Bytes())
			}
			if k, err := s.ParsePrivateKey(b); err == nil && !bytes.Equal(k.Bytes(), b) {
				t.Errorf("%s accepted a private key that does not re-encode to its input", s.Name())
			}
		}
	})
}

func FuzzOpen(f *testing.F) {
	type pair struct{ sender, recipient crypto.PrivateKey }
	keys := map[string]pair{}
	for _, s := range suites {
		a, _ := s.GenerateKey(nil)
		b, _ := s.GenerateKey(nil)
		keys[s.Name()] = pair{a, b}
		ct, _, _ := s.Seal(nil, b.Public(), a, []byte("info"), []byte("aad"), []byte("msg"))
		f.Add(ct)
	}
	f.Fuzz(func(t *testing.T, ct []byte) {
		for _, s := range suites {
			p := keys[s.Name()]
			pt, secret, err := s.Open(p.recipient, p.sender.Public(), []byte("info"), []byte("aad"), ct)
			if err != nil && (err != crypto.ErrOpen || pt != nil || secret != nil) {
				t.Errorf("%s: Open = %v", s.Name(), err)
			}
		}
	})
}

func FuzzParsePrivateKeyEncrypted(f *testing.F) {
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		f.Fatal(err)
	}
	kek, err := aead.New(h)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range suites {
		k, _ := s.GenerateKey(nil)
		b, err := tink.MarshalPrivateKeyEncrypted(k, kek)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := tink.ParsePrivateKeyEncrypted(b, kek)
		if err != nil && k != nil {
			t.Errorf("returned a key along with %v", err)
		}
		if err != nil && !errors.Is(err, tink.ErrKeyDecryption) && !errors.Is(err, crypto.ErrMalformedKey) && !errors.Is(err, crypto.ErrWrongSuite) {
			t.Errorf("unexpected error %v", err)
		}
	})
}
