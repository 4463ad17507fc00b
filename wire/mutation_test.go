package wire_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/dynkey/dynkey/wire"
)

// Tests written for mutants that survived mutation testing (gremlins, see
// docs/SECURITY.md "Mutation testing"): each fails if the check it names is
// weakened.

// TestStatusCarriesBody pins which statuses travel as 200 with the
// Dynkey-Status header: the client refuses that header when it names a
// status that could have carried the envelope itself, so that a proxy cannot
// relabel a sealed response.
func TestStatusCarriesBody(t *testing.T) {
	tests := []struct {
		name   string
		status int
		want   bool
	}{
		{"100 continue", 100, false},
		{"103 early hints", 103, false},
		{"199", 199, false},
		{"200", 200, true},
		{"201", 201, true},
		{"204 no content", 204, false},
		{"205", 205, true},
		{"303", 303, true},
		{"304 not modified", 304, false},
		{"305", 305, true},
		{"404", 404, true},
		{"599", 599, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := wire.StatusCarriesBody(tt.status); got != tt.want {
				t.Fatalf("StatusCarriesBody(%d) = %v, want %v", tt.status, got, tt.want)
			}
		})
	}
}

// TestResponseStatusBounds: the status range 100-999 is inclusive on both
// sides for sealing and opening, and a status one outside it is refused
// before it reaches the u16 of the associated data.
func TestResponseStatusBounds(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		sealable bool
	}{
		{"99", 99, false},
		{"100", 100, true},
		{"999", 999, true},
		{"1000", 1000, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, err := wire.SealResponse(bytes.NewReader(make([]byte, 32)), testSecret, testMsgID, tt.status, "", []byte("b"))
			if (err == nil) != tt.sealable {
				t.Fatalf("SealResponse(%d) error = %v, want sealable %v", tt.status, err, tt.sealable)
			}
			if !tt.sealable {
				env = sealTest(t, 200, "", []byte("b"))
				if _, _, err := wire.OpenResponse(testSecret, testMsgID, tt.status, env); !errors.Is(err, wire.ErrResponse) {
					t.Fatalf("OpenResponse(status %d) = %v, want ErrResponse", tt.status, err)
				}
				return
			}
			if _, body, err := wire.OpenResponse(testSecret, testMsgID, tt.status, env); err != nil || string(body) != "b" {
				t.Fatalf("OpenResponse(status %d) = %q, %v", tt.status, body, err)
			}
		})
	}
}

// TestContentTypeBounds: 1024 bytes of content type pass everywhere, 1025
// fail everywhere (inner plaintext, response sealing and opening).
func TestContentTypeBounds(t *testing.T) {
	for _, n := range []int{1024, 1025} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			ct := string(bytes.Repeat([]byte("a"), n))
			ok := n <= 1024
			_, err := wire.AppendInner(nil, &wire.Inner{ContentType: ct})
			if (err == nil) != ok {
				t.Errorf("AppendInner: %v", err)
			}
			raw := append([]byte{byte(n >> 8), byte(n)}, ct...)
			raw = append([]byte{0, 0, 0, 0, 0, 0}, raw...)
			if _, err := wire.ParseInner(raw); (err == nil) != ok {
				t.Errorf("ParseInner: %v", err)
			}
			if _, err := wire.SealResponse(bytes.NewReader(make([]byte, 32)), testSecret, testMsgID, 200, ct, nil); (err == nil) != ok {
				t.Errorf("SealResponse: %v", err)
			}
		})
	}
}

// TestAppendInnerPartialRotation: the encoder refuses every incomplete
// rotation, including the two the other AppendInner tests leave out.
func TestAppendInnerPartialRotation(t *testing.T) {
	tests := []struct {
		name string
		in   wire.Inner
	}{
		{"offset and proof, no key", wire.Inner{HasOffset: true, Proof: []byte("p")}},
		{"key and proof, no offset", wire.Inner{NewClientKey: []byte("k"), Proof: []byte("p")}},
		{"key and offset, no proof", wire.Inner{NewClientKey: []byte("k"), HasOffset: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if b, err := wire.AppendInner(nil, &tt.in); !errors.Is(err, wire.ErrFormat) {
				t.Fatalf("AppendInner = %x, %v; want ErrFormat", b, err)
			}
		})
	}
}

// sealRawResponse seals a response plaintext as docs/PROTOCOL.md §6 says,
// without SealResponse's checks, so that a server that sends a bad content
// type can be imitated.
func sealRawResponse(t *testing.T, status int, plaintext []byte) []byte {
	t.Helper()
	env := []byte{'D', 'K', wire.Version, wire.TypeResponse, 0, 32}
	nonce := bytes.Repeat([]byte{0x4e}, 32)
	env = append(env, nonce...)
	okm, err := hkdf.Key(sha256.New, testSecret, nonce, "dynkey/v1 response", 44)
	if err != nil {
		t.Fatal(err)
	}
	block, err := aes.NewCipher(okm[:32])
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	aad := binary.BigEndian.AppendUint16(bytes.Clone(env), uint16(status))
	aad = append(aad, testMsgID[:]...)
	return gcm.Seal(env, okm[32:], plaintext, aad)
}

// TestOpenResponseContentType: an authentic response whose sealed content
// type is too long, or carries a control character (a header injection
// once the client sets it on its http.Response), is refused; each
// condition alone is enough.
func TestOpenResponseContentType(t *testing.T) {
	lp := func(ct string) []byte { return append(binary.BigEndian.AppendUint16(nil, uint16(len(ct))), ct...) }
	tests := []struct {
		name string
		ct   string
		ok   bool
	}{
		{"json", "application/json", true},
		{"1024 bytes", strings.Repeat("a", 1024), true},
		{"1025 bytes", strings.Repeat("a", 1025), false},
		{"CRLF, short", "text/plain\r\nSet-Cookie: x=1", false},
		{"NUL, short", "text/plain\x00", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := sealRawResponse(t, 200, append(lp(tt.ct), "body"...))
			ct, body, err := wire.OpenResponse(testSecret, testMsgID, 200, env)
			if tt.ok {
				if err != nil || ct != tt.ct || string(body) != "body" {
					t.Fatalf("OpenResponse = %q, %q, %v", ct, body, err)
				}
				return
			}
			if !errors.Is(err, wire.ErrFormat) || ct != "" || body != nil {
				t.Fatalf("OpenResponse = %q, %q, %v; want ErrFormat", ct, body, err)
			}
		})
	}
}
