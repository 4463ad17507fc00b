package rsa_test

import (
	cryptorand "crypto/rand"
	stdrsa "crypto/rsa"
	"crypto/x509"
	"errors"
	"testing"

	"github.com/dynkey/dynkey/crypto"
	"github.com/dynkey/dynkey/crypto/rsa"
)

// TestKeySizeEnforced: a suite accepts keys of exactly its modulus size,
// private and public. A 2050-bit public key has the same PKIX length as a
// 2048-bit one (a 2048-bit modulus needs a leading zero byte, a 2050-bit one
// does not), so only the bit-length check refuses it; private keys have no
// fixed length at all. Found by mutation testing (docs/SECURITY.md): with
// the bit-length check off, every test but this one passed.
func TestKeySizeEnforced(t *testing.T) {
	s := rsa.RSA2048()
	other, err := stdrsa.GenerateKey(cryptorand.Reader, 2050)
	if err != nil {
		t.Fatal(err)
	}
	otherPub, err := x509.MarshalPKIXPublicKey(&other.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if want := len(cachedKey(t, s, 0).Public().Bytes()); len(otherPub) != want {
		t.Fatalf("2050-bit PKIX key is %d bytes, want %d (the test relies on equal lengths)", len(otherPub), want)
	}
	otherPriv, err := x509.MarshalPKCS8PrivateKey(other)
	if err != nil {
		t.Fatal(err)
	}
	small, err := stdrsa.GenerateKey(cryptorand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	smallPriv, err := x509.MarshalPKCS8PrivateKey(small)
	if err != nil {
		t.Fatal(err)
	}
	k3072 := cachedKey(t, rsa.RSA3072(), 0)

	if k, err := s.ParsePublicKey(otherPub); !errors.Is(err, crypto.ErrMalformedKey) || k != nil {
		t.Errorf("ParsePublicKey(2050-bit) = %v, %v; want ErrMalformedKey", k, err)
	}
	for _, tt := range []struct {
		name string
		b    []byte
	}{
		{"2050-bit", otherPriv},
		{"1024-bit", smallPriv},
		{"rsa-3072 key", k3072.Bytes()},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if k, err := s.ParsePrivateKey(tt.b); !errors.Is(err, crypto.ErrMalformedKey) || k != nil {
				t.Errorf("ParsePrivateKey(%s) = %v, %v; want ErrMalformedKey", tt.name, k, err)
			}
		})
	}
}
