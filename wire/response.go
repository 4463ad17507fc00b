package wire

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ErrResponse is returned by OpenResponse when a response cannot be
// authenticated: it was not made from this request's secret, or was altered
// (body, status or nonce).
var ErrResponse = errors.New("dynkey/wire: response authentication failed")

const responseHeaderSize = prefixSize + 2 + ResponseNonceSize

// StatusHeader carries the real HTTP status of a response whose status
// cannot carry a body (1xx, 204, 304): such responses are sent as 200 with
// this header, and the real status is what the response AAD authenticates.
const StatusHeader = "Dynkey-Status"

// StatusCarriesBody reports whether an HTTP response with this status can
// carry the response envelope.
func StatusCarriesBody(status int) bool {
	return status >= 200 && status != 204 && status != 304
}

// responseAEAD derives the response key and nonce:
// HKDF-SHA256(ikm = secret, salt = response nonce, info = "dynkey/v1 response", L = 44),
// the first 32 bytes an AES-256-GCM key, the last 12 its nonce. The key is
// unique to one request (its secret) and one response (its random nonce), so
// the fixed nonce is used once.
func responseAEAD(secret, nonce []byte) (cipher.AEAD, []byte, error) {
	okm, err := hkdf.Key(sha256.New, secret, nonce, labelRespKey, 44)
	if err != nil {
		return nil, nil, err
	}
	block, err := aes.NewCipher(okm[:32])
	if err != nil {
		return nil, nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, nil, err
	}
	return aead, okm[32:], nil
}

// responseAAD is the response header bytes, the HTTP status as a u16 and
// the request's message id.
func responseAAD(header []byte, status int, messageID [MessageIDSize]byte) []byte {
	aad := append([]byte(nil), header...)
	aad = binary.BigEndian.AppendUint16(aad, uint16(status))
	return append(aad, messageID[:]...)
}

// SealResponse builds the response envelope for a request whose per-message
// secret is secret and whose message id is messageID. status is the HTTP
// status the response is sent with; it is authenticated. Randomness for the
// response nonce comes from rnd (crypto/rand.Reader when nil).
func SealResponse(rnd io.Reader, secret []byte, messageID [MessageIDSize]byte, status int, contentType string, body []byte) ([]byte, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	if len(contentType) > maxContentType || !validContentType(contentType) {
		return nil, fmt.Errorf("%w: content type too long or with a control character", ErrFormat)
	}
	if status < 100 || status > 999 {
		return nil, fmt.Errorf("dynkey/wire: invalid status %d", status)
	}
	out := make([]byte, responseHeaderSize, responseHeaderSize+2+len(contentType)+len(body)+16)
	out[0], out[1], out[2], out[3] = 'D', 'K', Version, TypeResponse
	binary.BigEndian.PutUint16(out[4:], ResponseNonceSize)
	nonce := out[6:responseHeaderSize]
	if _, err := io.ReadFull(rnd, nonce); err != nil {
		return nil, fmt.Errorf("dynkey/wire: reading randomness: %w", err)
	}
	aead, n, err := responseAEAD(secret, nonce)
	if err != nil {
		return nil, err
	}
	pt := appendLP16(make([]byte, 0, 2+len(contentType)+len(body)), []byte(contentType))
	pt = append(pt, body...)
	return aead.Seal(out, n, pt, responseAAD(out[:responseHeaderSize], status, messageID)), nil
}

// OpenResponse authenticates and decrypts a response envelope received with
// the given HTTP status, for the request with this secret and message id.
// A status outside 100-999 (which SealResponse never seals) fails with
// ErrResponse; the sealed content type must be valid as in [ParseInner].
func OpenResponse(secret []byte, messageID [MessageIDSize]byte, status int, b []byte) (contentType string, body []byte, err error) {
	if status < 100 || status > 999 {
		// Checked before the u16 in the associated data could wrap.
		return "", nil, fmt.Errorf("%w: status %d", ErrResponse, status)
	}
	if len(b) < responseHeaderSize || b[0] != 'D' || b[1] != 'K' || b[2] != Version || b[3] != TypeResponse ||
		binary.BigEndian.Uint16(b[4:]) != ResponseNonceSize {
		return "", nil, fmt.Errorf("%w: not a dynkey response", ErrFormat)
	}
	aead, n, err := responseAEAD(secret, b[6:responseHeaderSize])
	if err != nil {
		return "", nil, err
	}
	pt, err := aead.Open(nil, n, b[responseHeaderSize:], responseAAD(b[:responseHeaderSize], status, messageID))
	if err != nil {
		return "", nil, ErrResponse
	}
	ct, rest, ok := readLP16(pt)
	if !ok {
		return "", nil, fmt.Errorf("%w: truncated response plaintext", ErrFormat)
	}
	if len(ct) > maxContentType || !validContentType(string(ct)) {
		return "", nil, fmt.Errorf("%w: response content type", ErrFormat)
	}
	return string(ct), rest, nil
}
