package wire_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/dynkey/dynkey/wire"
)

func TestHeaderEnvelopeEncoding(t *testing.T) {
	env := []byte("DK\x01\x02 any bytes \xff\xfe")
	enc := wire.EncodeHeaderEnvelope(env)
	if strings.ContainsAny(enc, "=+/") {
		t.Fatalf("not base64url without padding: %q", enc)
	}
	got, err := wire.DecodeHeaderEnvelope(enc)
	if err != nil || string(got) != string(env) {
		t.Fatalf("round trip: %q, %v", got, err)
	}
	for _, tc := range []struct {
		name, value string
	}{
		{"padding", enc + "="},
		{"standard alphabet", strings.ReplaceAll(strings.ReplaceAll(enc, "-", "+"), "_", "/") + "+/"},
		{"space", enc[:4] + " " + enc[4:]},
		{"CRLF", enc[:4] + "\r\n" + enc[4:]},
		{"LF", enc[:4] + "\n" + enc[4:]},
		{"non-canonical trailing bits", "AB"},
		{"too long", strings.Repeat("A", wire.MaxEnvelopeHeaderSize+4)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := wire.DecodeHeaderEnvelope(tc.value); !errors.Is(err, wire.ErrFormat) {
				t.Fatalf("DecodeHeaderEnvelope(%q) = %v, want ErrFormat", tc.value, err)
			}
		})
	}
	// The limit itself is accepted.
	if _, err := wire.DecodeHeaderEnvelope(strings.Repeat("A", wire.MaxEnvelopeHeaderSize)); err != nil {
		t.Fatalf("at the limit: %v", err)
	}
}
