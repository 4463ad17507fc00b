package pq

import (
	"crypto/ecdh"
	"errors"
	"github.com/dynkey/dynkey/crypto/internal/x25519"
	"testing"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
	"github.com/dynkey/dynkey/crypto"
)

// TestTypedNilKeys passes nil pointers of the package's own key types.
func TestTypedNilKeys(t *testing.T) {
	s := xwingSuite
	var (
		nilPub  *publicKey
		nilPriv *privateKey
	)
	if _, _, err := s.Seal(nil, nilPub, nilPriv, nil, nil, nil); !errors.Is(err, crypto.ErrWrongSuite) {
		t.Errorf("Seal to typed nil: %v", err)
	}
	if _, _, err := s.Open(nilPriv, nilPub, nil, nil, nil); !errors.Is(err, crypto.ErrWrongSuite) {
		t.Errorf("Open with typed nil: %v", err)
	}
}

func TestConstants(t *testing.T) {
	if publicKeySize != 3170 || privateKeySize != 64 || overhead != 4445 {
		t.Errorf("sizes %d %d %d", publicKeySize, privateKeySize, overhead)
	}
	if mldsa65.PublicKeySize != 1952 || mldsa65.SignatureSize != 3309 {
		t.Errorf("ML-DSA-65 sizes changed")
	}
	k, err := xwingSuite.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	pk := k.(*privateKey).pub
	if len(pk.kem.Bytes()) != xwingPublicSize {
		t.Errorf("X-Wing public key is %d bytes", len(pk.kem.Bytes()))
	}
	if _, err := ecdh.X25519().NewPublicKey(pk.kem.Bytes()[x25519Offset:]); err != nil {
		t.Error(err)
	}
}

// TestX25519Canonical checks x25519Canonical around p = 2^255-19.
func TestX25519Canonical(t *testing.T) {
	p := [32]byte{0xed}
	for i := 1; i < 31; i++ {
		p[i] = 0xff
	}
	p[31] = 0x7f
	below, above := p, p
	below[0]--
	above[0]++
	zero := [32]byte{}
	top := [32]byte{31: 0x80}
	mid := p
	mid[15] = 0xfe
	for _, c := range []struct {
		u    [32]byte
		want bool
	}{{p, false}, {below, true}, {above, false}, {zero, true}, {top, false}, {mid, true}} {
		if got := x25519.Canonical(c.u[:]); got != c.want {
			t.Errorf("x25519.Canonical(%x) = %v", c.u, got)
		}
	}
}
