package ecies

import (
	"crypto/ecdh"
	"errors"
	"github.com/dynkey/dynkey/crypto/internal/x25519"
	"testing"

	"github.com/dynkey/dynkey/crypto"
)

// TestX25519LowOrderTable checks the package's low-order table against
// crypto/ecdh: X25519 of each point with a valid scalar must be the
// all-zero output that crypto/ecdh reports as an error, while a normal
// point works.
func TestX25519LowOrderTable(t *testing.T) {
	priv, err := ecdh.X25519().GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range x25519LowOrder {
		pub, err := ecdh.X25519().NewPublicKey(p[:])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := priv.ECDH(pub); err == nil {
			t.Errorf("x25519LowOrder[%d] = %x is not low order", i, p)
		}
		if !x25519.Canonical(p[:]) {
			t.Errorf("x25519LowOrder[%d] is not canonical", i)
		}
	}
	if _, err := priv.ECDH(priv.PublicKey()); err != nil {
		t.Errorf("ECDH with a normal point: %v", err)
	}
}

// TestTypedNilKeys passes nil pointers of the package's own key types.
func TestTypedNilKeys(t *testing.T) {
	s := x25519Suite
	k, err := s.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	var (
		nilPub  *publicKey
		nilPriv *privateKey
	)
	if _, _, err := s.Seal(nil, nilPub, k, nil, nil, nil); !errors.Is(err, crypto.ErrWrongSuite) {
		t.Errorf("Seal to typed nil: %v", err)
	}
	if _, _, err := s.Seal(nil, k.Public(), nilPriv, nil, nil, nil); !errors.Is(err, crypto.ErrWrongSuite) {
		t.Errorf("Seal from typed nil: %v", err)
	}
	if _, _, err := s.Open(nilPriv, k.Public(), nil, nil, nil); !errors.Is(err, crypto.ErrWrongSuite) {
		t.Errorf("Open with typed nil: %v", err)
	}
	if _, _, err := s.Open(k, nilPub, nil, nil, nil); !errors.Is(err, crypto.ErrWrongSuite) {
		t.Errorf("Open from typed nil: %v", err)
	}
}

// TestParsedKeyPublicPrecomputed guards the data-race fix in newPrivateKey:
// circl's X25519 key caches its public key on first use, so the package
// must have triggered that before handing the key out.
func TestParsedKeyPublicPrecomputed(t *testing.T) {
	for _, s := range []*suite{x25519Suite, p256Suite} {
		k, err := s.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		parsed, err := s.ParsePrivateKey(k.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		pk := parsed.(*privateKey)
		if pk.pub == nil || !pk.pub.kem.Equal(pk.kem.Public()) {
			t.Errorf("%s: public key not precomputed", s.name)
		}
	}
}
