package wire_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/dynkey/dynkey/wire"
)

var (
	testSecret = bytes.Repeat([]byte{0x5e}, 32)
	testMsgID  = [wire.MessageIDSize]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
)

func sealTest(t testing.TB, status int, ct string, body []byte) []byte {
	t.Helper()
	env, err := wire.SealResponse(bytes.NewReader(bytes.Repeat([]byte{0x4e}, 32)), testSecret, testMsgID, status, ct, body)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func TestResponseRoundTrip(t *testing.T) {
	tests := []struct {
		name   string
		status int
		ct     string
		body   []byte
	}{
		{"json", 200, "application/json", []byte(`{"a":1}`)},
		{"empty", 204, "", nil},
		{"error status", 500, "text/plain", []byte("oops")},
		{"lowest status", 100, "", nil},
		{"highest status", 999, "", []byte{0}},
		{"max content type", 200, strings.Repeat("a", 1024), []byte("x")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := sealTest(t, tt.status, tt.ct, tt.body)
			if len(env) != 4+2+32+2+len(tt.ct)+len(tt.body)+16 {
				t.Errorf("envelope of %d bytes", len(env))
			}
			if !bytes.Equal(env[:6], []byte{'D', 'K', 1, 3, 0, 32}) {
				t.Errorf("prefix %x", env[:6])
			}
			ct, body, err := wire.OpenResponse(testSecret, testMsgID, tt.status, env)
			if err != nil {
				t.Fatal(err)
			}
			if ct != tt.ct || !bytes.Equal(body, tt.body) {
				t.Errorf("got %q %q", ct, body)
			}
		})
	}
	// Random nonces (nil reader) make distinct envelopes that both open.
	a, _ := wire.SealResponse(nil, testSecret, testMsgID, 200, "", []byte("x"))
	b, _ := wire.SealResponse(nil, testSecret, testMsgID, 200, "", []byte("x"))
	if bytes.Equal(a, b) {
		t.Error("two responses with crypto/rand nonces are equal")
	}
	if _, _, err := wire.OpenResponse(testSecret, testMsgID, 200, b); err != nil {
		t.Error(err)
	}
}

func TestOpenResponseErrors(t *testing.T) {
	env := sealTest(t, 200, "application/json", []byte(`{"ok":true}`))
	otherID := testMsgID
	otherID[15] ^= 1
	flip := func(i int) []byte {
		return mutate(env, func(b []byte) []byte { b[i] ^= 0x01; return b })
	}
	tests := []struct {
		name   string
		secret []byte
		id     [wire.MessageIDSize]byte
		status int
		env    []byte
		want   error
	}{
		{"tampered nonce first byte", testSecret, testMsgID, 200, flip(6), wire.ErrResponse},
		{"tampered nonce last byte", testSecret, testMsgID, 200, flip(37), wire.ErrResponse},
		{"tampered ciphertext", testSecret, testMsgID, 200, flip(40), wire.ErrResponse},
		{"tampered tag", testSecret, testMsgID, 200, flip(len(env) - 1), wire.ErrResponse},
		{"truncated tag", testSecret, testMsgID, 200, env[:len(env)-1], wire.ErrResponse},
		{"appended byte", testSecret, testMsgID, 200, append(bytes.Clone(env), 0), wire.ErrResponse},
		{"other status", testSecret, testMsgID, 201, env, wire.ErrResponse},
		{"status + 65536", testSecret, testMsgID, 200 + 65536, env, wire.ErrResponse},
		{"negative status", testSecret, testMsgID, 200 - 65536, env, wire.ErrResponse},
		{"other message id", testSecret, otherID, 200, env, wire.ErrResponse},
		{"wrong secret", bytes.Repeat([]byte{0x5f}, 32), testMsgID, 200, env, wire.ErrResponse},
		{"empty secret", nil, testMsgID, 200, env, wire.ErrResponse},
		{"no ciphertext", testSecret, testMsgID, 200, env[:38], wire.ErrResponse},
		{"empty", testSecret, testMsgID, 200, nil, wire.ErrFormat},
		{"header only, truncated", testSecret, testMsgID, 200, env[:37], wire.ErrFormat},
		{"wrong magic", testSecret, testMsgID, 200, flip(0), wire.ErrFormat},
		{"wrong version", testSecret, testMsgID, 200, flip(2), wire.ErrFormat},
		{"request type", testSecret, testMsgID, 200, mutate(env, func(b []byte) []byte { b[3] = wire.TypeRequest; return b }), wire.ErrFormat},
		{"nonce length 31", testSecret, testMsgID, 200, mutate(env, func(b []byte) []byte { b[5] = 31; return b }), wire.ErrFormat},
		{"nonce length 288", testSecret, testMsgID, 200, mutate(env, func(b []byte) []byte { b[4] = 1; return b }), wire.ErrFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct, body, err := wire.OpenResponse(tt.secret, tt.id, tt.status, tt.env)
			if !errors.Is(err, tt.want) || ct != "" || body != nil {
				t.Fatalf("OpenResponse = %q, %q, %v; want %v", ct, body, err, tt.want)
			}
		})
	}
	// Every truncation fails without panicking.
	for n := range len(env) {
		if _, _, err := wire.OpenResponse(testSecret, testMsgID, 200, env[:n:n]); err == nil {
			t.Fatalf("truncation to %d bytes opened", n)
		}
	}
}

func TestSealResponseErrors(t *testing.T) {
	tests := []struct {
		name   string
		status int
		ct     string
		rnd    []byte
	}{
		{"status 99", 99, "", make([]byte, 32)},
		{"status 1000", 1000, "", make([]byte, 32)},
		{"status 0", 0, "", make([]byte, 32)},
		{"content type too long", 200, strings.Repeat("a", 1025), make([]byte, 32)},
		{"content type with CR", 200, "a\rb", make([]byte, 32)},
		{"short randomness", 200, "", make([]byte, 31)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if env, err := wire.SealResponse(bytes.NewReader(tt.rnd), testSecret, testMsgID, tt.status, tt.ct, nil); err == nil {
				t.Fatalf("SealResponse = %x, want an error", env)
			}
		})
	}
}
