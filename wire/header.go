package wire

import (
	"encoding/base64"
	"fmt"
)

// Header transport (docs/PROTOCOL.md §4, "Header transport"): a request
// without a body — GET, HEAD, DELETE, OPTIONS, or any request whose sender
// chooses — carries its envelope in one request header instead, and the
// sealed response to a HEAD request, which has no body, travels in one
// response header. The bytes are exactly the body envelope's, with exactly
// the same associated data: only the framing differs.
const (
	// EnvelopeHeader carries a request envelope, base64url without padding
	// (RFC 4648 §5). A request with this header must have an empty body.
	EnvelopeHeader = "Dynkey-Envelope"
	// ResponseHeader carries the response envelope of a HEAD request,
	// base64url without padding; the response has no body.
	ResponseHeader = "Dynkey-Response"
	// ProblemHeader carries the code of every refusal next to its
	// problem+json body, so that a client that gets no body (HEAD) still
	// learns it. Like the body, it is not authenticated.
	ProblemHeader = "Dynkey-Problem"
	// MaxEnvelopeHeaderSize bounds the encoded value of EnvelopeHeader, in
	// bytes: 8 KiB, the smallest request-header limit common in front of
	// and inside servers (nginx's large_client_header_buffers line size
	// and Apache's LimitRequestFieldSize are 8 KiB; AWS ALB, Cloudflare and
	// net/http allow more in total). The envelope of a bodiless request
	// with a token is 342 bytes encoded for ecies-x25519 and 6,199 for
	// pq-xwing (docs/PROTOCOL.md §4); what does not fit travels as a body.
	MaxEnvelopeHeaderSize = 8192
)

// EncodeHeaderEnvelope returns the header form of an envelope: base64url
// without padding.
func EncodeHeaderEnvelope(envelope []byte) string {
	return base64.RawURLEncoding.EncodeToString(envelope)
}

// DecodeHeaderEnvelope decodes the header form of an envelope. It refuses
// (with an error wrapping ErrFormat) a value longer than
// MaxEnvelopeHeaderSize, padding, characters outside the base64url
// alphabet (whitespace included) and non-canonical trailing bits.
func DecodeHeaderEnvelope(v string) ([]byte, error) {
	if len(v) > MaxEnvelopeHeaderSize {
		return nil, fmt.Errorf("%w: header envelope of %d bytes exceeds %d", ErrFormat, len(v), MaxEnvelopeHeaderSize)
	}
	for i := 0; i < len(v); i++ {
		if v[i] == '\r' || v[i] == '\n' { // the decoder would skip them
			return nil, fmt.Errorf("%w: header envelope is not base64url without padding", ErrFormat)
		}
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(v)
	if err != nil {
		return nil, fmt.Errorf("%w: header envelope is not base64url without padding", ErrFormat)
	}
	return b, nil
}

// ExposedHeaders are the dynkey response headers a browser page on another
// origin must be allowed to read (list them in
// Access-Control-Expose-Headers): Dynkey-Status, Dynkey-Response and
// Dynkey-Problem. Its request must be allowed to send EnvelopeHeader
// (Access-Control-Allow-Headers).
func ExposedHeaders() []string { return []string{StatusHeader, ResponseHeader, ProblemHeader} }
