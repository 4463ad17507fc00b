package ecies_test

import (
	"bytes"
	"encoding/hex"
	"testing"

	"github.com/dynkey/dynkey/internal/fuzzseed"
)

// TestWriteFuzzSeeds writes testdata/fuzz/{FuzzOpen,FuzzParseKeys}: valid
// ciphertexts under the fuzz targets' fixed keys with their edge cases
// (truncated, tampered, wrong info or aad, low-order and off-curve
// encapsulations), and valid, low-order, off-curve, compressed and
// out-of-range keys. Runs only with DYNKEY_WRITE_FUZZ_SEEDS=1.
func TestWriteFuzzSeeds(t *testing.T) {
	fuzzseed.Skip(t)
	for _, p := range allParams {
		name := p.suite.Name()
		skR, err := p.suite.GenerateKey(bytes.NewReader(seed(name, "fuzz R")))
		if err != nil {
			t.Fatal(err)
		}
		skS, err := p.suite.GenerateKey(bytes.NewReader(seed(name, "fuzz S")))
		if err != nil {
			t.Fatal(err)
		}
		ct, _, err := p.suite.Seal(nil, skR.Public(), skS, []byte("i"), []byte("a"), []byte("hello"))
		if err != nil {
			t.Fatal(err)
		}
		flip := func(i int) []byte { b := bytes.Clone(ct); b[i] ^= 0x01; return b }
		w := func(n string, ct, info, aad []byte) { fuzzseed.Write(t, "FuzzOpen", name+"-"+n, ct, info, aad) }
		w("valid", ct, []byte("i"), []byte("a"))
		w("wrong-info", ct, []byte("j"), []byte("a"))
		w("wrong-aad", ct, []byte("i"), []byte("b"))
		w("empty-info-aad", ct, []byte{}, []byte{})
		w("enc-flipped", flip(0), []byte("i"), []byte("a"))
		w("tag-flipped", flip(len(ct)-1), []byte("i"), []byte("a"))
		w("enc-only", ct[:p.encLen], []byte("i"), []byte("a"))
		w("enc-short", ct[:p.encLen-1], []byte("i"), []byte("a"))
		w("no-tag", ct[:len(ct)-16], []byte("i"), []byte("a"))
		w("appended", append(bytes.Clone(ct), 0), []byte("i"), []byte("a"))
		w("zero-enc", append(make([]byte, p.encLen), ct[p.encLen:]...), []byte("i"), []byte("a"))
		// A valid ciphertext from other keys: the sender authentication
		// (auth mode) must refuse it.
		other, err := p.suite.GenerateKey(bytes.NewReader(seed(name, "fuzz other")))
		if err != nil {
			t.Fatal(err)
		}
		ctOther, _, err := p.suite.Seal(nil, skR.Public(), other, []byte("i"), []byte("a"), []byte("hello"))
		if err != nil {
			t.Fatal(err)
		}
		w("other-sender", ctOther, []byte("i"), []byte("a"))
		k := func(n string, b []byte) { fuzzseed.Write(t, "FuzzParseKeys", name+"-"+n, b) }
		k("public", skR.Public().Bytes())
		k("private", skR.Bytes())
		k("public-short", skR.Public().Bytes()[:p.pubLen-1])
		k("public-long", append(skR.Public().Bytes(), 0))
		k("private-short", skR.Bytes()[:p.privLen-1])
	}
	for i, h := range x25519LowOrder {
		b, _ := hex.DecodeString(h)
		fuzzseed.Write(t, "FuzzParseKeys", "x25519-low-order-"+string(rune('0'+i)), b)
		fuzzseed.Write(t, "FuzzOpen", "x25519-low-order-enc-"+string(rune('0'+i)), append(b, make([]byte, 21)...), []byte("i"), []byte("a"))
	}
	// P-256: the point at infinity, the generator compressed, an x with no
	// point, and the scalars 0, n and n-1 (the group order n).
	n, _ := hex.DecodeString("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551")
	nm1 := bytes.Clone(n)
	nm1[31]--
	g, _ := hex.DecodeString("046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c2964fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5")
	offCurve := bytes.Clone(g)
	offCurve[64] ^= 1
	for name, b := range map[string][]byte{
		"p256-infinity":        {0},
		"p256-generator":       g,
		"p256-off-curve":       offCurve,
		"p256-compressed":      append([]byte{0x02 | g[64]&1}, g[1:33]...),
		"p256-hybrid-prefix":   append([]byte{0x06}, g[1:]...),
		"p256-all-zero-point":  append([]byte{4}, make([]byte, 64)...),
		"p256-scalar-zero":     make([]byte, 32),
		"p256-scalar-order":    n,
		"p256-scalar-order-m1": nm1,
		"p256-scalar-all-ones": bytes.Repeat([]byte{0xff}, 32),
		"empty":                {},
		"x25519-non-canonical": append(bytes.Repeat([]byte{0xff}, 31), 0x7f),
		"x25519-high-bit-set":  append(bytes.Repeat([]byte{0x09}, 31), 0x80),
	} {
		fuzzseed.Write(t, "FuzzParseKeys", name, b)
	}
	fuzzseed.Write(t, "FuzzOpen", "p256-off-curve-enc", append(offCurve, make([]byte, 21)...), []byte("i"), []byte("a"))
	fuzzseed.Write(t, "FuzzOpen", "empty", []byte{}, []byte{}, []byte{})
}
