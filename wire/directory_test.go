package wire_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/dynkey/dynkey/wire"
)

var testIdentity = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x1d}, ed25519.SeedSize))

func testDirectory() *wire.Directory {
	pub1, pub2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	return &wire.Directory{Version: 1, Epoch: 3, Suite: "ecies-x25519", STime: 1767225600000, Keys: []wire.DirectoryKey{
		{ID: wire.ComputeKeyID("ecies-x25519", pub1).String(), Public: pub1, Status: wire.StatusPrimary},
		{ID: wire.ComputeKeyID("ecies-x25519", pub2).String(), Public: pub2, Status: wire.StatusDecryptOnly, Expires: 1767312000000},
	}}
}

// signPayload signs raw payload bytes as SignDirectory would.
func signPayload(payload []byte) *wire.SignedDirectory {
	msg := append([]byte("dynkey/v1 key directory\x00"), payload...)
	return &wire.SignedDirectory{Identity: wire.B64(testIdentity.Public().(ed25519.PublicKey)), Payload: payload, Signature: ed25519.Sign(testIdentity, msg)}
}

func TestDirectoryRoundTrip(t *testing.T) {
	d := testDirectory()
	sd, err := wire.SignDirectory(testIdentity, d)
	if err != nil {
		t.Fatal(err)
	}
	// Through its JSON form, as served.
	b, err := json.Marshal(sd)
	if err != nil {
		t.Fatal(err)
	}
	var sd2 wire.SignedDirectory
	if err := json.Unmarshal(b, &sd2); err != nil {
		t.Fatal(err)
	}
	got, err := sd2.Verify(testIdentity.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != d.Version || got.Epoch != d.Epoch || got.Suite != d.Suite || got.STime != d.STime || len(got.Keys) != 2 {
		t.Fatalf("got %+v", got)
	}
	for i := range got.Keys {
		g, w := got.Keys[i], d.Keys[i]
		if g.ID != w.ID || !bytes.Equal(g.Public, w.Public) || g.Status != w.Status || g.Expires != w.Expires {
			t.Errorf("key %d: %+v, want %+v", i, g, w)
		}
	}
	if p, ok := got.Primary(); !ok || p.ID != d.Keys[0].ID {
		t.Errorf("Primary() = %+v, %v", p, ok)
	}
	want := `{"version":1,"epoch":3,"suite":"ecies-x25519","s_time":1767225600000,"keys":[{"id":"` + d.Keys[0].ID +
		`","public":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE","status":"primary"},{"id":"` + d.Keys[1].ID +
		`","public":"AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI","status":"decrypt-only","expires":1767312000000}]}`
	if string(sd.Payload) != want {
		t.Errorf("payload\n got %s\nwant %s", sd.Payload, want)
	}
}

func TestVerifyDirectoryErrors(t *testing.T) {
	trusted := testIdentity.Public().(ed25519.PublicKey)
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x2d}, 32))
	good, err := wire.SignDirectory(testIdentity, testDirectory())
	if err != nil {
		t.Fatal(err)
	}
	modified := func(f func(d *wire.Directory)) *wire.SignedDirectory {
		d := testDirectory()
		f(d)
		sd, err := wire.SignDirectory(testIdentity, d)
		if err != nil {
			t.Fatal(err)
		}
		return sd
	}
	// payload replaces one substring of the good payload and re-signs it.
	payload := func(old, new string) *wire.SignedDirectory {
		p := strings.Replace(string(good.Payload), old, new, 1)
		if p == string(good.Payload) {
			t.Fatalf("%q not in the payload", old)
		}
		return signPayload([]byte(p))
	}
	bySigner := func(k ed25519.PrivateKey) *wire.SignedDirectory {
		sd, _ := wire.SignDirectory(k, testDirectory())
		return sd
	}
	pub2 := bytes.Repeat([]byte{2}, 32)
	tests := []struct {
		name    string
		sd      *wire.SignedDirectory
		trusted ed25519.PublicKey
	}{
		{"nil document", nil, trusted},
		{"no trusted key", good, nil},
		{"short trusted key", good, trusted[:31]},
		{"wrong identity", good, other.Public().(ed25519.PublicKey)},
		{"signed by another key", bySigner(other), trusted},
		{"signed by another key claiming ours", func() *wire.SignedDirectory {
			sd := bySigner(other)
			sd.Identity = wire.B64(trusted)
			return sd
		}(), trusted},
		{"bad signature", func() *wire.SignedDirectory {
			sd := *good
			sd.Signature = mutate(sd.Signature, func(b []byte) []byte { b[0] ^= 1; return b })
			return &sd
		}(), trusted},
		{"short signature", func() *wire.SignedDirectory { sd := *good; sd.Signature = sd.Signature[:63]; return &sd }(), trusted},
		{"payload changed after signing", func() *wire.SignedDirectory {
			sd := *good
			sd.Payload = bytes.Replace(sd.Payload, []byte(`"epoch":3`), []byte(`"epoch":4`), 1)
			return &sd
		}(), trusted},
		{"garbage payload", signPayload([]byte("garbage")), trusted},
		{"empty payload", signPayload(nil), trusted},
		{"JSON array payload", signPayload([]byte("[]")), trusted},
		{"trailing data", signPayload(append(bytes.Clone(good.Payload), "{}"...)), trusted},
		{"version 2", payload(`"version":1`, `"version":2`), trusted},
		{"version 0", payload(`"version":1`, `"version":0`), trusted},
		{"invalid suite", payload(`"suite":"ecies-x25519"`, `"suite":"ECIES"`), trusted},
		{"no primary", modified(func(d *wire.Directory) { d.Keys = d.Keys[1:] }), trusted},
		{"no keys", modified(func(d *wire.Directory) { d.Keys = nil }), trusted},
		{"two primaries", modified(func(d *wire.Directory) { d.Keys[1].Status, d.Keys[1].Expires = wire.StatusPrimary, 0 }), trusted},
		{"unknown status", modified(func(d *wire.Directory) { d.Keys[1].Status = "retired" }), trusted},
		{"status case", modified(func(d *wire.Directory) { d.Keys[0].Status = "Primary" }), trusted},
		{"key id not matching its key", modified(func(d *wire.Directory) { d.Keys[1].ID = d.Keys[0].ID }), trusted},
		{"key id of another suite", modified(func(d *wire.Directory) {
			d.Keys[1].ID = wire.ComputeKeyID("ecies-p256", pub2).String()
		}), trusted},
		{"key id not hex", modified(func(d *wire.Directory) { d.Keys[1].ID = "zz" }), trusted},
		{"key id upper case", modified(func(d *wire.Directory) { d.Keys[1].ID = strings.ToUpper(d.Keys[1].ID) }), trusted},
		{"duplicate key", modified(func(d *wire.Directory) { d.Keys = append(d.Keys, d.Keys[1]) }), trusted},
		{"primary with expires", modified(func(d *wire.Directory) { d.Keys[0].Expires = 5 }), trusted},
		{"decrypt-only without expires", modified(func(d *wire.Directory) { d.Keys[1].Expires = 0 }), trusted},
		{"decrypt-only with negative expires", modified(func(d *wire.Directory) { d.Keys[1].Expires = -1 }), trusted},
		{"public key not base64url", payload(`"public":"AQEB`, `"public":"+QEB`), trusted},
		{"public key with padding", payload(`AQE","status":"primary"`, `AQE=","status":"primary"`), trusted},
		{"public key not a string", payload(`"public":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE"`, `"public":[1]`), trusted},
		{"epoch negative", payload(`"epoch":3`, `"epoch":-3`), trusted},
		{"version not an integer", payload(`"version":1`, `"version":1.5`), trusted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := tt.sd.Verify(tt.trusted)
			if !errors.Is(err, wire.ErrDirectory) || d != nil {
				t.Fatalf("Verify = %+v, %v; want ErrDirectory", d, err)
			}
		})
	}
	if _, err := good.Verify(trusted); err != nil {
		t.Fatalf("the good directory: %v", err)
	}
}

func TestB64(t *testing.T) {
	tests := []struct {
		name string
		json string
		want []byte
		ok   bool
	}{
		{"empty", `""`, []byte{}, true},
		{"one byte", `"AQ"`, []byte{1}, true},
		{"url alphabet", `"-_8"`, []byte{0xfb, 0xff}, true},
		{"three bytes", `"AQID"`, []byte{1, 2, 3}, true},
		{"padding", `"AQ=="`, nil, false},
		{"std alphabet +", `"+_8"`, nil, false},
		{"std alphabet /", `"-/8"`, nil, false},
		{"non-canonical trailing bits", `"AR"`, nil, false},
		{"newline", `"AQ\nID"`, nil, false},
		{"carriage return", `"AQ\rID"`, nil, false},
		{"space", `"AQ ID"`, nil, false},
		{"impossible length", `"AQIDB"`, nil, false},
		{"number", `1`, nil, false},
		{"array", `[1]`, nil, false},
		{"object", `{}`, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b wire.B64
			err := json.Unmarshal([]byte(tt.json), &b)
			if (err == nil) != tt.ok {
				t.Fatalf("Unmarshal(%s) = %x, %v; want ok=%v", tt.json, b, err, tt.ok)
			}
			if !tt.ok {
				return
			}
			if !bytes.Equal(b, tt.want) {
				t.Fatalf("Unmarshal(%s) = %x, want %x", tt.json, b, tt.want)
			}
			out, err := json.Marshal(b)
			if err != nil || string(out) != tt.json {
				t.Fatalf("Marshal = %s, %v; want %s", out, err, tt.json)
			}
		})
	}
	// A base64 error inside a document wraps ErrFormat.
	var sd wire.SignedDirectory
	if err := json.Unmarshal([]byte(`{"identity":"AQ=="}`), &sd); !errors.Is(err, wire.ErrFormat) {
		t.Errorf("bad base64 in a document: %v", err)
	}
	if out, _ := json.Marshal(wire.B64(nil)); string(out) != `""` {
		t.Errorf("nil marshals to %s", out)
	}
	// Round trip of every length 0..64.
	for n := range 65 {
		in := wire.B64(bytes.Repeat([]byte{0xa5}, n))
		j, _ := json.Marshal(in)
		var out wire.B64
		if err := json.Unmarshal(j, &out); err != nil || !bytes.Equal(in, out) {
			t.Fatalf("length %d: %s → %x, %v", n, j, out, err)
		}
	}
}
