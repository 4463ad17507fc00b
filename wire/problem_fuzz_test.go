package wire_test

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/dynkey/dynkey/wire"
)

// FuzzParseProblem feeds arbitrary bodies to ParseProblem, which a client
// runs on every refusal it receives (unauthenticated input): it must never
// panic, accept only a dynkey problem (a code and the type URI of that
// code), and what it accepts must survive a round trip through JSON. A
// carried directory must verify or fail with ErrDirectory, never panic.
func FuzzParseProblem(f *testing.F) {
	for _, c := range wire.Codes() {
		b, err := json.Marshal(wire.NewProblem(c, "detail"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"type":"about:blank","status":502,"code":"unavailable"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, ok := wire.ParseProblem(b)
		if !ok {
			if p != nil {
				t.Fatalf("ParseProblem returned %+v with ok = false", p)
			}
			return
		}
		if p == nil || p.Code == "" || p.Type != p.Code.TypeURI() {
			t.Fatalf("ParseProblem accepted %+v", p)
		}
		if !strings.Contains(p.Error(), string(p.Code)) {
			t.Fatalf("Error() = %q does not name the code", p.Error())
		}
		again, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("accepted problem does not marshal: %v", err)
		}
		p2, ok := wire.ParseProblem(again)
		if !ok || p2.Code != p.Code || p2.Status != p.Status || p2.STime != p.STime || p2.Detail != p.Detail || p2.Title != p.Title {
			t.Fatalf("unstable: %+v then %+v (%v)", p, p2, ok)
		}
		if p.Directory != nil {
			d, err := p.Directory.Verify(ed25519.PublicKey(p.Directory.Identity))
			if err != nil && (!errors.Is(err, wire.ErrDirectory) || d != nil) {
				t.Fatalf("Verify of a carried directory = %v, %v", d, err)
			}
		}
	})
}
