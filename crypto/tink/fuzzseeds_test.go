package tink_test

import (
	"bytes"
	"testing"

	"github.com/dynkey/dynkey/crypto/tink"
	"github.com/dynkey/dynkey/internal/fuzzseed"
	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
)

// TestWriteFuzzSeeds writes testdata/fuzz/{FuzzParsePublicKey,FuzzOpen,
// FuzzParsePrivateKeyEncrypted}: serialized keysets of each suite (public,
// private, encrypted), cut and extended, and ciphertexts with a tink output
// prefix cut, flipped and extended. The fuzz targets generate their keys and
// key-encryption key per run, so these exercise parsing and the prefix and
// length checks rather than a successful open. Runs only with
// DYNKEY_WRITE_FUZZ_SEEDS=1.
func TestWriteFuzzSeeds(t *testing.T) {
	fuzzseed.Skip(t)
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		t.Fatal(err)
	}
	kek, err := aead.New(h)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range suites {
		n := s.Name()
		a, err := s.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := s.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		pub, priv := a.Public().Bytes(), a.Bytes()
		p := func(name string, v []byte) { fuzzseed.Write(t, "FuzzParsePublicKey", n+"-"+name, v) }
		p("public", pub)
		p("private", priv)
		p("public-cut", pub[:len(pub)/2])
		p("public-extended", append(bytes.Clone(pub), 0))
		p("public-last-byte-flipped", func() []byte { c := bytes.Clone(pub); c[len(c)-1] ^= 1; return c }())
		p("private-cut", priv[:len(priv)-1])

		ct, _, err := s.Seal(nil, b.Public(), a, []byte("info"), []byte("aad"), []byte("msg"))
		if err != nil {
			t.Fatal(err)
		}
		o := func(name string, v []byte) { fuzzseed.Write(t, "FuzzOpen", n+"-"+name, v) }
		o("sealed", ct)
		o("prefix-only", ct[:5])
		o("prefix-flipped", func() []byte { c := bytes.Clone(ct); c[1] ^= 1; return c }())
		o("tag-flipped", func() []byte { c := bytes.Clone(ct); c[len(c)-1] ^= 1; return c }())
		o("cut", ct[:len(ct)-1])
		o("extended", append(bytes.Clone(ct), 0))

		enc, err := tink.MarshalPrivateKeyEncrypted(a, kek)
		if err != nil {
			t.Fatal(err)
		}
		e := func(name string, v []byte) { fuzzseed.Write(t, "FuzzParsePrivateKeyEncrypted", n+"-"+name, v) }
		e("encrypted", enc)
		e("encrypted-cut", enc[:len(enc)-1])
		e("encrypted-flipped", func() []byte { c := bytes.Clone(enc); c[len(c)/2] ^= 1; return c }())
		e("cleartext-private", priv)
		e("public", pub)
	}
	for _, target := range []string{"FuzzParsePublicKey", "FuzzOpen", "FuzzParsePrivateKeyEncrypted"} {
		fuzzseed.Write(t, target, "empty", []byte{})
		fuzzseed.Write(t, target, "zero-byte", []byte{0})
	}
}
