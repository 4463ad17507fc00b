package tink

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/big"
	"testing"

	"github.com/dynkey/dynkey/crypto"
)

// Tests written for mutants that survived mutation testing (gremlins, see
// docs/SECURITY.md "Mutation testing"): each fails if the bound or check it
// names moves by one or is dropped.

// TestSealOpenEmptyPlaintext: a message with an empty plaintext (the
// rotation proof is one) is exactly minCiphertext bytes long and must open;
// one byte less must not.
func TestSealOpenEmptyPlaintext(t *testing.T) {
	for _, s := range allSuites {
		t.Run(s.name, func(t *testing.T) {
			a, b := mustKey(t, s), mustKey(t, s)
			ct, secret, err := s.Seal(nil, b.Public(), a, []byte("info"), []byte("aad"), nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(ct) != s.minCiphertext {
				t.Fatalf("empty plaintext sealed to %d bytes, minCiphertext is %d", len(ct), s.minCiphertext)
			}
			pt, secret2, err := s.Open(b, a.Public(), []byte("info"), []byte("aad"), ct)
			if err != nil || len(pt) != 0 || !bytes.Equal(secret, secret2) {
				t.Fatalf("Open of an empty plaintext = %x, %v", pt, err)
			}
			if _, _, err := s.Open(b, a.Public(), []byte("info"), []byte("aad"), ct[:len(ct)-1]); err != crypto.ErrOpen {
				t.Fatalf("Open of a ciphertext one byte short = %v, want ErrOpen", err)
			}
		})
	}
}

// TestLP16Bounds: a length-prefixed field holds 0 to 0xffff bytes, both
// ends included.
func TestLP16Bounds(t *testing.T) {
	max := bytes.Repeat([]byte{7}, 0xffff)
	if j, ok := joinPair(max, nil); !ok || len(j) != 2+0xffff+2 {
		t.Fatalf("joinPair(0xffff bytes, nil) = %d bytes, %v", len(j), ok)
	}
	if j, ok := joinPair(nil, max); !ok || len(j) != 2+2+0xffff {
		t.Fatalf("joinPair(nil, 0xffff bytes) = %d bytes, %v", len(j), ok)
	}
	if _, ok := joinPair(append(max, 7), nil); ok {
		t.Fatal("joinPair accepted a first field of 0x10000 bytes")
	}
	if _, ok := joinPair(nil, append(max, 7)); ok {
		t.Fatal("joinPair accepted a second field of 0x10000 bytes")
	}
	tests := []struct {
		name        string
		in          []byte
		field, rest []byte
		ok          bool
	}{
		{"empty field, nothing after", []byte{0, 0}, []byte{}, []byte{}, true},
		{"empty field, one byte after", []byte{0, 0, 9}, []byte{}, []byte{9}, true},
		{"one byte", []byte{0}, nil, nil, false},
		{"nothing", nil, nil, nil, false},
		{"length beyond the end", []byte{0, 2, 1}, nil, nil, false},
		{"exact", []byte{0, 1, 5}, []byte{5}, []byte{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, r, ok := cutLP16(tt.in)
			if ok != tt.ok || !bytes.Equal(f, tt.field) || !bytes.Equal(r, tt.rest) {
				t.Fatalf("cutLP16(%x) = %x, %x, %v", tt.in, f, r, ok)
			}
		})
	}
}

// paddingKEK is a test KEK that appends zero padding and two 4-byte counts
// to the associated data and plaintext (no secrecy: it only makes each
// encrypted keyset a chosen size), and checks the associated data on the
// way back. The padding is chosen per associated data (one per keyset
// role), def otherwise; seen lists the associated data in call order.
type paddingKEK struct {
	def  int
	pads map[string]int
	seen []string
}

func (k *paddingKEK) Encrypt(pt, ad []byte) ([]byte, error) {
	pad, ok := k.pads[string(ad)]
	if !ok {
		pad = k.def
	}
	k.seen = append(k.seen, string(ad))
	out := append(append(bytes.Clone(ad), pt...), make([]byte, pad)...)
	out = binary.BigEndian.AppendUint32(out, uint32(len(ad)))
	return binary.BigEndian.AppendUint32(out, uint32(pad)), nil
}

func (k *paddingKEK) Decrypt(ct, ad []byte) ([]byte, error) {
	if len(ct) < 8 {
		return nil, errors.New("short")
	}
	pad, adLen := int(binary.BigEndian.Uint32(ct[len(ct)-4:])), int(binary.BigEndian.Uint32(ct[len(ct)-8:]))
	body := ct[:len(ct)-8]
	if adLen > len(body) || pad > len(body)-adLen || !bytes.Equal(body[:adLen], ad) {
		return nil, errors.New("associated data mismatch")
	}
	return body[adLen : len(body)-pad], nil
}

// TestEncryptedKeysetSizeBound: an encrypted private key holds each
// encrypted keyset in a 16-bit length; keysets of exactly 0xffff bytes are
// written and read back, one byte more in either is refused.
func TestEncryptedKeysetSizeBound(t *testing.T) {
	s := hpkeX25519Suite
	k := mustKey(t, s)
	// marshal returns the encoding and the sizes of its two encrypted
	// keysets (fields: name, public key, hybrid keyset, signature keyset).
	marshal := func(kek *paddingKEK) ([]byte, [2]int, error) {
		b, err := s.MarshalPrivateKeyEncrypted(k, kek)
		if err != nil {
			return nil, [2]int{}, err
		}
		var f [4][]byte
		rest := b
		for i := range f {
			var ok bool
			if f[i], rest, ok = cutLP16(rest); !ok {
				t.Fatal("output is not four length-prefixed fields")
			}
		}
		return b, [2]int{len(f[2]), len(f[3])}, nil
	}
	// At this size an encrypted keyset grows byte for byte with the
	// padding (its protobuf length varint stays 3 bytes).
	const probe = 60000
	kek := &paddingKEK{def: probe}
	_, n, err := marshal(kek)
	if err != nil || len(kek.seen) != 2 {
		t.Fatalf("probe: %v, %d keysets encrypted", err, len(kek.seen))
	}
	pads := map[string]int{kek.seen[0]: probe + 0xffff - n[0], kek.seen[1]: probe + 0xffff - n[1]}
	b, n, err := marshal(&paddingKEK{pads: pads})
	if err != nil || n != [2]int{0xffff, 0xffff} {
		t.Fatalf("MarshalPrivateKeyEncrypted with keysets of %v bytes: %v", n, err)
	}
	k2, err := s.ParsePrivateKeyEncrypted(b, &paddingKEK{})
	if err != nil || !bytes.Equal(k2.Public().Bytes(), k.Public().Bytes()) {
		t.Fatalf("ParsePrivateKeyEncrypted of 0xffff-byte keysets: %v", err)
	}
	for i, ad := range kek.seen {
		over := map[string]int{kek.seen[0]: pads[kek.seen[0]], kek.seen[1]: pads[kek.seen[1]]}
		over[ad]++
		if _, n, err := marshal(&paddingKEK{pads: over}); err == nil {
			t.Fatalf("MarshalPrivateKeyEncrypted wrote keyset %d of %d bytes", i, n[i])
		}
	}
}

// TestLowSBoundary: s = floor(n/2) is low and kept as it is; s = floor(n/2)+1
// is high and becomes n-s = floor(n/2). Moving the boundary by one would
// make a valid signature fail isLowS (a message refused) or let both s and
// n-s verify (a malleable ciphertext).
func TestLowSBoundary(t *testing.T) {
	sig := func(s *big.Int) []byte {
		b := make([]byte, 64)
		b[0] = 1 // r, irrelevant here
		s.FillBytes(b[32:])
		return b
	}
	half := new(big.Int).Set(p256HalfN)
	halfPlus := new(big.Int).Add(half, big.NewInt(1))
	if !isLowS(sig(half)) || isLowS(sig(halfPlus)) {
		t.Fatalf("isLowS(n/2) = %v, isLowS(n/2+1) = %v", isLowS(sig(half)), isLowS(sig(halfPlus)))
	}
	if got := normalizeLowS(sig(half)); !bytes.Equal(got, sig(half)) {
		t.Fatalf("normalizeLowS changed s = n/2 to %x", got[32:])
	}
	if got := normalizeLowS(sig(halfPlus)); !bytes.Equal(got, sig(half)) || !isLowS(got) {
		t.Fatalf("normalizeLowS(n/2+1) = %x, want n/2", got[32:])
	}
}

// TestTypedNilKeys: a nil *publicKey or *privateKey inside a non-nil
// interface is refused with ErrWrongSuite by every entry point, never
// dereferenced.
func TestTypedNilKeys(t *testing.T) {
	s := hpkeX25519Suite
	k := mustKey(t, s)
	var nilPub crypto.PublicKey = (*publicKey)(nil)
	var nilPriv crypto.PrivateKey = (*privateKey)(nil)
	kek := &paddingKEK{}
	tests := []struct {
		name string
		call func() error
	}{
		{"Seal to nil", func() error { _, _, err := s.Seal(nil, nilPub, k, nil, nil, nil); return err }},
		{"Seal from nil", func() error { _, _, err := s.Seal(nil, k.Public(), nilPriv, nil, nil, nil); return err }},
		{"Open to nil", func() error { _, _, err := s.Open(nilPriv, k.Public(), nil, nil, nil); return err }},
		{"Open from nil", func() error { _, _, err := s.Open(k, nilPub, nil, nil, nil); return err }},
		{"MarshalPrivateKeyEncrypted", func() error { _, err := MarshalPrivateKeyEncrypted(nilPriv, kek); return err }},
		{"suite MarshalPrivateKeyEncrypted", func() error { _, err := s.MarshalPrivateKeyEncrypted(nilPriv, kek); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, crypto.ErrWrongSuite) {
				t.Fatalf("err = %v, want ErrWrongSuite", err)
			}
		})
	}
}

// TestEncryptedKeyEmptyFields: an encrypted private key with any of its four
// fields empty is malformed (not, say, of another suite).
func TestEncryptedKeyEmptyFields(t *testing.T) {
	s := hpkeX25519Suite
	k := mustKey(t, s)
	kek := &paddingKEK{}
	b, err := s.MarshalPrivateKeyEncrypted(k, kek)
	if err != nil {
		t.Fatal(err)
	}
	var f [4][]byte
	rest := b
	for i := range f {
		f[i], rest, _ = cutLP16(rest)
	}
	for i := range f {
		g := f
		g[i] = nil
		var enc []byte
		for _, x := range g {
			enc = appendLP16(enc, x)
		}
		if _, err := s.ParsePrivateKeyEncrypted(enc, kek); !errors.Is(err, crypto.ErrMalformedKey) {
			t.Errorf("field %d empty: %v, want ErrMalformedKey", i, err)
		}
	}
}
