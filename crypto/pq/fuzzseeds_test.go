package pq_test

import (
	"bytes"
	"encoding/hex"
	"testing"

	"github.com/dynkey/dynkey/crypto/pq"
	"github.com/dynkey/dynkey/internal/fuzzseed"
)

// TestWriteFuzzSeeds writes testdata/fuzz/{FuzzOpen,FuzzParseKeys}: a valid
// ciphertext under the fuzz target's fixed keys with its edge cases
// (truncated, tampered in the encapsulation, tag and signature, wrong info
// and aad, another sender), and valid, low-order X25519 and wrongly sized
// keys. Runs only with DYNKEY_WRITE_FUZZ_SEEDS=1.
func TestWriteFuzzSeeds(t *testing.T) {
	fuzzseed.Skip(t)
	s := pq.XWing()
	skS, skR := keyFromSeed(t, seed("fuzz S", 64)), keyFromSeed(t, seed("fuzz R", 64))
	ct, _, err := s.Seal(nil, skR.Public(), skS, []byte("i"), []byte("a"), []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte { b := bytes.Clone(ct); b[i] ^= 0x01; return b }
	o := func(n string, ct, info, aad []byte) { fuzzseed.Write(t, "FuzzOpen", n, ct, info, aad) }
	o("valid", ct, []byte("i"), []byte("a"))
	o("wrong-info", ct, []byte("j"), []byte("a"))
	o("wrong-aad", ct, []byte("i"), []byte("b"))
	o("enc-flipped", flip(0), []byte("i"), []byte("a"))
	o("x25519-part-flipped", flip(encLen-1), []byte("i"), []byte("a"))
	o("aead-flipped", flip(encLen), []byte("i"), []byte("a"))
	o("signature-flipped", flip(len(ct)-1), []byte("i"), []byte("a"))
	o("overhead-short", ct[:overheadLen-1], []byte("i"), []byte("a"))
	o("enc-only", ct[:encLen], []byte("i"), []byte("a"))
	o("appended", append(bytes.Clone(ct), 0), []byte("i"), []byte("a"))
	other := keyFromSeed(t, seed("fuzz other", 64))
	ctOther, _, err := s.Seal(nil, skR.Public(), other, []byte("i"), []byte("a"), []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	o("other-sender", ctOther, []byte("i"), []byte("a"))
	o("empty", []byte{}, []byte{}, []byte{})

	k := keyFromSeed(t, seed("fuzz parse", 64))
	pub := k.Public().Bytes()
	w := func(n string, b []byte) { fuzzseed.Write(t, "FuzzParseKeys", n, b) }
	w("public", pub)
	w("private-seed", k.Bytes())
	w("public-short", pub[:len(pub)-1])
	w("public-long", append(bytes.Clone(pub), 0))
	w("private-seed-short", k.Bytes()[:privLen-1])
	w("private-seed-32", k.Bytes()[:32])
	w("public-length-prefix-wrong", func() []byte { b := bytes.Clone(pub); b[0] ^= 0xff; return b }())
	for i, h := range x25519LowOrder {
		u, _ := hex.DecodeString(h)
		b := bytes.Clone(pub)
		copy(b[2+x25519InXWing:], u)
		w("public-x25519-low-order-"+string(rune('0'+i)), b)
	}
	w("empty", []byte{})
}
