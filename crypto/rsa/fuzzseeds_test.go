package rsa_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	stdrsa "crypto/rsa"
	"crypto/x509"
	"testing"

	"github.com/dynkey/dynkey/crypto/rsa"
	"github.com/dynkey/dynkey/internal/fuzzseed"
)

// TestWriteFuzzSeeds writes testdata/fuzz/{FuzzOpen,FuzzParseKeys}: the
// canonical encodings of each suite's keys and the encodings the parsers
// must refuse (wrong size, e = 3, PKCS #1 instead of PKIX/PKCS #8, EC keys),
// and ciphertexts of the right and wrong shapes. FuzzOpen's keys are
// generated per run, so its seeds exercise the length and padding checks,
// not a successful open. Runs only with DYNKEY_WRITE_FUZZ_SEEDS=1.
func TestWriteFuzzSeeds(t *testing.T) {
	fuzzseed.Skip(t)
	k := cachedKey(t, rsa.RSA2048(), 0)
	pub, priv := k.Public().Bytes(), k.Bytes()
	w := func(n string, b []byte) { fuzzseed.Write(t, "FuzzParseKeys", n, b) }
	w("rsa-2048-public", pub)
	w("rsa-2048-private", priv)
	w("rsa-2048-public-short", pub[:len(pub)-1])
	w("rsa-2048-public-long", append(bytes.Clone(pub), 0))
	w("rsa-2048-private-cut", priv[:len(priv)/2])
	k3 := cachedKey(t, rsa.RSA3072(), 0)
	w("rsa-3072-public", k3.Public().Bytes())
	w("rsa-3072-private", k3.Bytes())

	small, err := stdrsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	smallPub, _ := x509.MarshalPKIXPublicKey(&small.PublicKey)
	smallPriv, _ := x509.MarshalPKCS8PrivateKey(small)
	w("rsa-1024-public", smallPub)
	w("rsa-1024-private", smallPriv)

	std, err := x509.ParsePKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	e3 := *std.(*stdrsa.PublicKey)
	e3.E = 3
	e3Pub, _ := x509.MarshalPKIXPublicKey(&e3)
	w("rsa-2048-public-e3", e3Pub)
	w("rsa-2048-public-pkcs1", x509.MarshalPKCS1PublicKey(std.(*stdrsa.PublicKey)))
	stdPriv, err := x509.ParsePKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	w("rsa-2048-private-pkcs1", x509.MarshalPKCS1PrivateKey(stdPriv.(*stdrsa.PrivateKey)))

	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecPub, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	ecPriv, _ := x509.MarshalPKCS8PrivateKey(ec)
	w("ec-p256-public-pkix", ecPub)
	w("ec-p256-private-pkcs8", ecPriv)

	s := rsa.RSA2048()
	other := cachedKey(t, s, 1)
	ct, _, err := s.Seal(nil, k.Public(), other, []byte("i"), []byte("a"), []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	o := func(n string, ct []byte) { fuzzseed.Write(t, "FuzzOpen", n, ct, []byte("i"), []byte("a")) }
	o("sealed-to-other-keys", ct)
	o("wrapped-key-only", ct[:256])
	o("one-short", ct[:len(ct)-1])
	o("one-long", append(bytes.Clone(ct), 0))
	o("overhead-zeros", make([]byte, len(ct)-len("hello")))
	o("all-ones", bytes.Repeat([]byte{0xff}, len(ct)))
	o("modulus-sized-zeros", make([]byte, 256))
}
