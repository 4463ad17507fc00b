// Package wire is the dynkey wire format, shared by the server middleware and
// the client SDK (the client never imports the server side).
//
// It encodes and parses the binary request and response envelopes, builds the
// associated data that binds a message to its HTTP method, path, query,
// token, key ids and suite, derives the response key from the request's
// per-message secret, and signs and verifies the key directory. Everything
// here is specified byte for byte in docs/PROTOCOL.md, and testdata/ holds
// vectors that the tests re-derive.
//
// # Messages
//
// Every envelope starts with the 4-byte prefix 'D' 'K' 0x01 type. A request
// (type [TypeLogin] or [TypeRequest]) continues with seven length-prefixed
// header fields and then the suite's ciphertext; a response ([TypeResponse])
// continues with a length-prefixed response nonce and then the AEAD
// ciphertext. Integers are big-endian.
//
// # Framing in HTTP
//
// An envelope travels as the body (Content-Type [MediaType]) or, for
// requests without a body, base64url in the [EnvelopeHeader] request header;
// the response to a HEAD request travels in [ResponseHeader]. The bytes and
// their associated data are the same either way (header.go).
package wire

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/dynkey/dynkey/crypto"
)

// Message types, the fourth byte of every envelope.
const (
	TypeLogin    byte = 1 // first request of a session: carries the full client public key
	TypeRequest  byte = 2 // every later request: carries the client key id and a token
	TypeResponse byte = 3 // a response to either
)

// Version is the protocol version, the third byte of every envelope.
const Version byte = 1

// Labels. Each binds a key or a message to one purpose; see docs/PROTOCOL.md.
const (
	InfoLogin    = "dynkey/v1 login"          // HPKE info of a login request
	InfoRequest  = "dynkey/v1 request"        // HPKE info of every other request
	InfoProof    = "dynkey/v1 rotation proof" // HPKE info of the new-key proof
	labelKeyID   = "dynkey/v1 key id"
	labelReqAAD  = "dynkey/v1 request aad"
	labelRespKey = "dynkey/v1 response"
	labelDir     = "dynkey/v1 key directory"
	labelProof   = "dynkey/v1 rotation proof aad"
)

// Sizes and limits of header fields.
const (
	KeyIDSize         = 8
	MessageIDSize     = 16
	ResponseNonceSize = 32
	MaxTokenSize      = 1024
	MaxPublicKeySize  = 8192
	prefixSize        = 4
	// maxContentType bounds a sealed content type (request and response).
	maxContentType = 1024
)

// ErrFormat is wrapped by every parsing error: the bytes are not a
// well-formed dynkey envelope. It maps to the "bad-format" problem code.
var ErrFormat = errors.New("dynkey/wire: malformed message")

// KeyID names a public key: the first 8 bytes of
// SHA-256("dynkey/v1 key id" || 0x00 || u16 len(suite) || suite || public key).
type KeyID = crypto.KeyID

// ComputeKeyID returns the id of a public key of the named suite.
func ComputeKeyID(suite string, publicKey []byte) KeyID {
	h := sha256.New()
	h.Write([]byte(labelKeyID))
	h.Write([]byte{0})
	h.Write(appendLP16(nil, []byte(suite)))
	h.Write(publicKey)
	var id KeyID
	copy(id[:], h.Sum(nil))
	return id
}

// ParseKeyID parses the hex form of a KeyID.
func ParseKeyID(s string) (KeyID, error) {
	var id KeyID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != KeyIDSize {
		return id, fmt.Errorf("%w: key id %q", ErrFormat, s)
	}
	copy(id[:], b)
	return id, nil
}

// RequestHeader is the authenticated, unencrypted part of a request envelope.
type RequestHeader struct {
	Type        byte   // TypeLogin or TypeRequest
	Suite       string // suite name, bound into every message (no downgrade)
	ServerKeyID KeyID  // the server key the request is sealed to
	// ClientKey is the full client public key for TypeLogin, and the
	// 8-byte client key id for TypeRequest.
	ClientKey []byte
	Token     []byte // empty for TypeLogin
	MessageID [MessageIDSize]byte
	// STime is the latest server time the client holds (ms since the Unix
	// epoch), from the login or a heartbeat response.
	STime uint64
	// Elapsed is the time in ms, on the client's monotonic clock, since the
	// client received STime. STime+Elapsed is the client's estimate of the
	// server's clock, which is what freshness is checked against.
	Elapsed uint64
}

// Request is a parsed request envelope.
type Request struct {
	RequestHeader
	// Header is the exact bytes of the prefix and header fields, bound
	// into the associated data.
	Header     []byte
	Ciphertext []byte
}

// AppendRequestHeader appends the encoded prefix and header fields of h to b.
// The suite's ciphertext follows them to form the envelope.
func AppendRequestHeader(b []byte, h *RequestHeader) ([]byte, error) {
	if err := h.check(); err != nil {
		return nil, err
	}
	b = append(b, 'D', 'K', Version, h.Type)
	b = appendLP16(b, []byte(h.Suite))
	b = appendLP16(b, h.ServerKeyID[:])
	b = appendLP16(b, h.ClientKey)
	b = appendLP16(b, h.Token)
	b = appendLP16(b, h.MessageID[:])
	b = appendLP16(b, binary.BigEndian.AppendUint64(nil, h.STime))
	b = appendLP16(b, binary.BigEndian.AppendUint64(nil, h.Elapsed))
	return b, nil
}

func (h *RequestHeader) check() error {
	switch h.Type {
	case TypeLogin:
		if len(h.ClientKey) == 0 || len(h.ClientKey) > MaxPublicKeySize {
			return fmt.Errorf("%w: login client key of %d bytes", ErrFormat, len(h.ClientKey))
		}
		if len(h.Token) != 0 {
			return fmt.Errorf("%w: login carries a token", ErrFormat)
		}
	case TypeRequest:
		if len(h.ClientKey) != KeyIDSize {
			return fmt.Errorf("%w: client key id of %d bytes", ErrFormat, len(h.ClientKey))
		}
		if len(h.Token) == 0 || len(h.Token) > MaxTokenSize {
			return fmt.Errorf("%w: token of %d bytes", ErrFormat, len(h.Token))
		}
	default:
		return fmt.Errorf("%w: message type %d is not a request", ErrFormat, h.Type)
	}
	if !validSuiteName(h.Suite) {
		return fmt.Errorf("%w: suite name %q", ErrFormat, h.Suite)
	}
	return nil
}

// ParseRequest parses a request envelope. It checks the format only; the
// result aliases b.
func ParseRequest(b []byte) (*Request, error) {
	if len(b) < prefixSize || b[0] != 'D' || b[1] != 'K' {
		return nil, fmt.Errorf("%w: not a dynkey envelope", ErrFormat)
	}
	if b[2] != Version {
		return nil, fmt.Errorf("%w: unsupported version %d", ErrFormat, b[2])
	}
	r := &Request{}
	r.Type = b[3]
	rest := b[prefixSize:]
	var fields [7][]byte
	for i := range fields {
		var ok bool
		if fields[i], rest, ok = readLP16(rest); !ok {
			return nil, fmt.Errorf("%w: truncated header field %d", ErrFormat, i)
		}
	}
	r.Suite = string(fields[0])
	if len(fields[1]) != KeyIDSize || len(fields[4]) != MessageIDSize || len(fields[5]) != 8 || len(fields[6]) != 8 {
		return nil, fmt.Errorf("%w: header field of the wrong size", ErrFormat)
	}
	copy(r.ServerKeyID[:], fields[1])
	r.ClientKey = fields[2]
	r.Token = fields[3]
	copy(r.MessageID[:], fields[4])
	r.STime = binary.BigEndian.Uint64(fields[5])
	r.Elapsed = binary.BigEndian.Uint64(fields[6])
	if err := r.check(); err != nil {
		return nil, err
	}
	r.Header = b[:len(b)-len(rest)]
	r.Ciphertext = rest
	if len(r.Ciphertext) == 0 {
		return nil, fmt.Errorf("%w: no ciphertext", ErrFormat)
	}
	return r, nil
}

// RequestAAD returns the associated data of a request: the label, the HTTP
// method, the escaped path and the raw query, each with a 32-bit length
// prefix, followed by the envelope header bytes (which hold the suite, both
// key ids or the client key, the token, the message id and the times).
func RequestAAD(method, path, rawQuery string, header []byte) []byte {
	b := make([]byte, 0, len(labelReqAAD)+1+12+len(method)+len(path)+len(rawQuery)+len(header))
	b = append(b, labelReqAAD...)
	b = append(b, 0)
	b = appendLP32(b, []byte(method))
	b = appendLP32(b, []byte(path))
	b = appendLP32(b, []byte(rawQuery))
	return append(b, header...)
}

// Inner is the plaintext sealed inside a request.
type Inner struct {
	// NewClientKey and TimeOffset are the patent's two reserved fields
	// (claim 7): both empty unless the client rotates its key.
	NewClientKey []byte
	// TimeOffset is client send time − s_time in ms, present only when
	// rotating (HasOffset).
	TimeOffset int64
	HasOffset  bool
	// Proof is the new key's proof of possession, present only when
	// rotating: see ProofAAD.
	Proof       []byte
	ContentType string
	Body        []byte
}

// Rotating reports whether the message carries a client key rotation.
func (in *Inner) Rotating() bool {
	return len(in.NewClientKey) > 0 || in.HasOffset || len(in.Proof) > 0
}

// AppendInner appends the encoding of in to b. It refuses what ParseInner
// would reject: rotation fields that are not all present or all empty, and
// an invalid content type (see [ParseInner]).
func AppendInner(b []byte, in *Inner) ([]byte, error) {
	if len(in.NewClientKey) > MaxPublicKeySize || len(in.Proof) > 0xffff || len(in.ContentType) > maxContentType {
		return nil, fmt.Errorf("%w: inner field too long", ErrFormat)
	}
	if in.Rotating() && (len(in.NewClientKey) == 0 || !in.HasOffset || len(in.Proof) == 0) {
		return nil, fmt.Errorf("%w: rotation fields must be all present or all empty", ErrFormat)
	}
	if !validContentType(in.ContentType) {
		return nil, fmt.Errorf("%w: content type with a control character", ErrFormat)
	}
	b = appendLP16(b, in.NewClientKey)
	if in.HasOffset {
		b = appendLP16(b, binary.BigEndian.AppendUint64(nil, uint64(in.TimeOffset)))
	} else {
		b = appendLP16(b, nil)
	}
	b = appendLP16(b, in.Proof)
	b = appendLP16(b, []byte(in.ContentType))
	return append(b, in.Body...), nil
}

// ParseInner parses a request plaintext. The result aliases b.
//
// The new client key is at most MaxPublicKeySize bytes; time_offset is
// empty or 8 bytes (a big-endian two's-complement int64); new client key,
// time_offset and proof are all present or all empty; the content type is
// at most 1024 bytes of HTTP field-value characters (HTAB, 0x20-0x7E,
// 0x80-0xFF: no CR, LF, NUL or other control character).
func ParseInner(b []byte) (*Inner, error) {
	var f [4][]byte
	rest := b
	for i := range f {
		var ok bool
		if f[i], rest, ok = readLP16(rest); !ok {
			return nil, fmt.Errorf("%w: truncated inner field %d", ErrFormat, i)
		}
	}
	in := &Inner{NewClientKey: f[0], Proof: f[2], ContentType: string(f[3]), Body: rest}
	switch len(f[1]) {
	case 0:
	case 8:
		in.HasOffset = true
		in.TimeOffset = int64(binary.BigEndian.Uint64(f[1]))
	default:
		return nil, fmt.Errorf("%w: time_offset of %d bytes", ErrFormat, len(f[1]))
	}
	if in.Rotating() && (len(in.NewClientKey) == 0 || !in.HasOffset || len(in.Proof) == 0) {
		return nil, fmt.Errorf("%w: rotation fields must be all present or all empty", ErrFormat)
	}
	if len(in.NewClientKey) > MaxPublicKeySize {
		return nil, fmt.Errorf("%w: new client key of %d bytes", ErrFormat, len(in.NewClientKey))
	}
	if len(in.ContentType) > maxContentType {
		return nil, fmt.Errorf("%w: content type too long", ErrFormat)
	}
	if !validContentType(in.ContentType) {
		return nil, fmt.Errorf("%w: content type with a control character", ErrFormat)
	}
	return in, nil
}

// validContentType reports whether s holds only HTTP field-value characters
// (RFC 9110 section 5.5: HTAB, SP, VCHAR, obs-text), so that it can be set
// as a Content-Type header as it is: no CR, LF, NUL or other control.
func validContentType(s string) bool {
	for _, c := range []byte(s) {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// ProofAAD is the associated data of the proof of possession of a new client
// key: the label, the request's message id, the current client key id and
// the new public key. The proof is Seal(to: server key, from: new client key,
// info: InfoProof, aad: ProofAAD(...), plaintext: empty), so it shows the
// sender holds the new private key, for this message only.
func ProofAAD(messageID [MessageIDSize]byte, currentKeyID KeyID, newPublicKey []byte) []byte {
	b := append([]byte(labelProof), 0)
	b = append(b, messageID[:]...)
	b = append(b, currentKeyID[:]...)
	return appendLP16(b, newPublicKey)
}

// validSuiteName is the one rule for suite names, crypto.ValidName.
func validSuiteName(name string) bool { return crypto.ValidName(name) }

func appendLP16(b, v []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...)
}

func appendLP32(b, v []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}

func readLP16(b []byte) (v, rest []byte, ok bool) {
	if len(b) < 2 {
		return nil, nil, false
	}
	n := int(binary.BigEndian.Uint16(b))
	if len(b)-2 < n {
		return nil, nil, false
	}
	return b[2 : 2+n : 2+n], b[2+n:], true
}
