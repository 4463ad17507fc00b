package rsa

import (
	"errors"
	"testing"

	"github.com/dynkey/dynkey/crypto"
)

// TestTypedNilKeys passes nil pointers of the package's own key types.
func TestTypedNilKeys(t *testing.T) {
	s := suite2048
	var (
		nilPub  *publicKey
		nilPriv *privateKey
	)
	// A key of the suite is not needed: the key checks come first.
	if _, _, err := s.Seal(nil, nilPub, nilPriv, nil, nil, nil); !errors.Is(err, crypto.ErrWrongSuite) {
		t.Errorf("Seal to typed nil: %v", err)
	}
	if _, _, err := s.Open(nilPriv, nilPub, nil, nil, nil); !errors.Is(err, crypto.ErrWrongSuite) {
		t.Errorf("Open with typed nil: %v", err)
	}
}

// TestSuiteConstants checks the modulus size in bytes and the overhead.
func TestSuiteConstants(t *testing.T) {
	for _, s := range []*suite{suite2048, suite3072, suite4096} {
		if s.k*8 != s.bits {
			t.Errorf("%s: k = %d for %d bits", s.name, s.k, s.bits)
		}
		if s.overhead() != 2*s.k+28 {
			t.Errorf("%s: overhead %d", s.name, s.overhead())
		}
	}
}

func TestIsDefaultReader(t *testing.T) {
	if !isDefaultReader(nil) {
		t.Error("nil is not default")
	}
}
