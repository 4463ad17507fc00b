package x25519

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"
)

func le(h string) []byte {
	b, err := hex.DecodeString(h)
	if err != nil {
		panic(err)
	}
	return b
}

// TestLowOrderTable checks the table independently: X25519 with any scalar
// and each listed point gives the all-zero output (crypto/ecdh refuses it),
// and each entry is canonical.
func TestLowOrderTable(t *testing.T) {
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range LowOrder {
		pub, err := ecdh.X25519().NewPublicKey(p[:])
		if err != nil {
			t.Fatalf("LowOrder[%d]: %v", i, err)
		}
		if _, err := priv.ECDH(pub); err == nil {
			t.Errorf("LowOrder[%d] = %x is not low order", i, p)
		}
		if !Canonical(p[:]) {
			t.Errorf("LowOrder[%d] is not canonical", i)
		}
	}
}

func TestCheckPublic(t *testing.T) {
	good, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p := P[:]
	plus := func(d byte) []byte { b := bytes.Clone(p); b[0] += d; return b }
	minus := func(d byte) []byte { b := bytes.Clone(p); b[0] -= d; return b }
	base := make([]byte, 32)
	base[0] = 9
	topBit := bytes.Clone(base)
	topBit[31] |= 0x80
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"generated key", good.PublicKey().Bytes(), nil},
		{"base point 9", base, nil},
		{"p-2", minus(2), nil},
		{"p-1 (low order)", minus(1), ErrLowOrder},
		{"p", p, ErrNonCanonical},
		{"p+1", plus(1), ErrNonCanonical},
		{"p+18 = 2^255-1", plus(18), ErrNonCanonical},
		{"top bit set", topBit, ErrNonCanonical},
		{"all ones", bytes.Repeat([]byte{0xff}, 32), ErrNonCanonical},
		{"31 bytes", base[:31], ErrNonCanonical},
		{"33 bytes", append(bytes.Clone(base), 0), ErrNonCanonical},
		{"empty", nil, ErrNonCanonical},
		{"zero", make([]byte, 32), ErrLowOrder},
		{"one", le("0100000000000000000000000000000000000000000000000000000000000000"), ErrLowOrder},
		{"order 8", le("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"), ErrLowOrder},
		{"order 8 (other)", le("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"), ErrLowOrder},
		// The low-order points plus p are their non-canonical encodings.
		{"0 + p", p, ErrNonCanonical},
		{"1 + p", plus(1), ErrNonCanonical},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := CheckPublic(tt.b); !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("CheckPublic(%x) = %v, want %v", tt.b, err, tt.want)
			}
		})
	}
}

// TestCanonical compares against p byte by byte from the top: a value that
// differs from p only in a lower byte is ordered by that byte.
func TestCanonical(t *testing.T) {
	at := func(i int, v byte) []byte { b := bytes.Clone(P[:]); b[i] = v; return b }
	tests := []struct {
		name string
		b    []byte
		want bool
	}{
		{"p", P[:], false},
		{"p-1", at(0, 0xec), true},
		{"p+1", at(0, 0xee), false},
		{"top byte below", at(31, 0x7e), true},
		{"top byte above", at(31, 0x80), false},
		{"middle byte below", at(15, 0xfe), true},
		{"zero", make([]byte, 32), true},
		{"all ones", bytes.Repeat([]byte{0xff}, 32), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Canonical(tt.b); got != tt.want {
				t.Fatalf("Canonical(%x) = %v, want %v", tt.b, got, tt.want)
			}
		})
	}
}
