package crypto_test

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/dynkey/dynkey/crypto"
)

// TestValidName pins the one rule for suite names (bound into every
// envelope and directory): 1 to 64 bytes of [a-z0-9-], with each end of
// every range and its neighbours.
func TestValidName(t *testing.T) {
	tests := []struct {
		name  string
		suite string
		want  bool
	}{
		{"default suite", "ecies-x25519", true},
		{"empty", "", false},
		{"one letter", "a", true},
		{"64 bytes", strings.Repeat("a", 64), true},
		{"65 bytes", strings.Repeat("a", 65), false},
		{"a", "a", true},
		{"z", "z", true},
		{"0", "0", true},
		{"9", "9", true},
		{"dash", "-", true},
		{"backquote (before a)", "`", false},
		{"brace (after z)", "{", false},
		{"slash (before 0)", "/", false},
		{"colon (after 9)", ":", false},
		{"upper case", "ECIES-X25519", false},
		{"upper case A", "A", false},
		{"underscore", "ecies_x25519", false},
		{"dot", "ecies.x25519", false},
		{"space", "ecies x25519", false},
		{"NUL", "ecies\x00", false},
		{"non-ASCII", "écies", false},
		{"trailing valid after invalid", "A-valid-name", false},
		{"invalid last byte", "valid-name-Z", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := crypto.ValidName(tt.suite); got != tt.want {
				t.Fatalf("ValidName(%q) = %v, want %v", tt.suite, got, tt.want)
			}
		})
	}
}

// namedSuite is a Suite that only has a name: Register and Lookup need no
// more.
type namedSuite struct {
	crypto.Suite
	name string
}

func (s namedSuite) Name() string { return s.name }

// registrations numbers the test's suites: the registry is global and
// outlives a run, so -count=N registers a new name each time.
var registrations atomic.Int64

func TestRegisterLookup(t *testing.T) {
	name := "crypto-test-registry-" + strconv.FormatInt(registrations.Add(1), 10)
	s := namedSuite{name: name}
	crypto.Register(s)
	got, err := crypto.Lookup(name)
	if err != nil || got.Name() != s.name {
		t.Fatalf("Lookup = %v, %v", got, err)
	}
	if !slices.Contains(crypto.Names(), s.name) || !slices.IsSorted(crypto.Names()) {
		t.Fatalf("Names() = %v: missing %q or not sorted", crypto.Names(), s.name)
	}
	_, err = crypto.Lookup("crypto-test-unknown")
	if !errors.Is(err, crypto.ErrUnknownSuite) || !strings.Contains(err.Error(), s.name) {
		t.Fatalf("Lookup(unknown) = %v; want ErrUnknownSuite listing the known names", err)
	}
	for _, tt := range []struct{ name, suite string }{
		{"duplicate", name},
		{"invalid name", "Crypto Test"},
		{"empty name", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if r := recover(); r == nil || !strings.HasPrefix(r.(string), "dynkey/crypto: ") {
					t.Fatalf("Register(%q) did not panic with the package prefix: %v", tt.suite, r)
				}
			}()
			crypto.Register(namedSuite{name: tt.suite})
		})
	}
	// The failed registrations left the first one in place.
	if got, err := crypto.Lookup(name); err != nil || got != crypto.Suite(s) {
		t.Fatalf("after failed registrations, Lookup = %v, %v", got, err)
	}
}

func TestKeyIDString(t *testing.T) {
	id := crypto.KeyID{0x00, 0x01, 0xab, 0xcd, 0xef, 0x10, 0xff, 0x7f}
	if got := id.String(); got != "0001abcdef10ff7f" {
		t.Fatalf("String() = %q", got)
	}
}
