package wire

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Key statuses in a directory.
const (
	StatusPrimary     = "primary"      // new messages are sealed to it
	StatusDecryptOnly = "decrypt-only" // still opens messages until Expires
)

// ErrDirectory is wrapped by every directory verification failure: bad
// signature, unexpected identity key, malformed payload.
var ErrDirectory = errors.New("dynkey/wire: key directory rejected")

// DirectoryKey is one server public key in a directory.
type DirectoryKey struct {
	ID     string // KeyID in hex
	Public []byte // the suite's public key encoding
	Status string // StatusPrimary or StatusDecryptOnly
	// Expires is when a decrypt-only key stops opening messages (ms since
	// the Unix epoch); 0 for the primary key.
	Expires int64
}

// Directory is the signed content of the key directory.
type Directory struct {
	Version int    // 1
	Epoch   uint64 // grows by one with every server key rotation
	Suite   string
	STime   int64 // server time when signed, ms since the Unix epoch
	Keys    []DirectoryKey
}

// directoryJSON fixes the JSON shape (base64url keys).
type directoryJSON struct {
	Version int          `json:"version"`
	Epoch   uint64       `json:"epoch"`
	Suite   string       `json:"suite"`
	STime   int64        `json:"s_time"`
	Keys    []dirKeyJSON `json:"keys"`
}

type dirKeyJSON struct {
	ID      string `json:"id"`
	Public  B64    `json:"public"`
	Status  string `json:"status"`
	Expires int64  `json:"expires,omitempty"`
}

// Primary returns the primary key of the directory.
func (d *Directory) Primary() (DirectoryKey, bool) {
	for _, k := range d.Keys {
		if k.Status == StatusPrimary {
			return k, true
		}
	}
	return DirectoryKey{}, false
}

// SignedDirectory is the key directory as served: the identity public key,
// the exact payload bytes and an Ed25519 signature over
// "dynkey/v1 key directory" || 0x00 || payload.
type SignedDirectory struct {
	Identity  B64 `json:"identity"`
	Payload   B64 `json:"payload"`
	Signature B64 `json:"signature"`
}

// SignDirectory serializes and signs d with the server's identity key.
func SignDirectory(identity ed25519.PrivateKey, d *Directory) (*SignedDirectory, error) {
	dj := directoryJSON{Version: d.Version, Epoch: d.Epoch, Suite: d.Suite, STime: d.STime}
	for _, k := range d.Keys {
		dj.Keys = append(dj.Keys, dirKeyJSON{ID: k.ID, Public: k.Public, Status: k.Status, Expires: k.Expires})
	}
	payload, err := json.Marshal(dj)
	if err != nil {
		return nil, err
	}
	return &SignedDirectory{
		Identity:  B64(identity.Public().(ed25519.PublicKey)),
		Payload:   payload,
		Signature: ed25519.Sign(identity, directoryMessage(payload)),
	}, nil
}

func directoryMessage(payload []byte) []byte {
	return append(append([]byte(labelDir), 0), payload...)
}

// Verify checks the signature with the trusted identity key and parses the
// payload. The identity in the document must equal trusted: a directory
// signed by any other key is rejected (no key injection).
//
// Beyond the signature it checks: version 1, a valid suite name, every key
// id the lower-case hex ComputeKeyID of its key (no two keys alike), every
// status primary or decrypt-only, exactly one primary, expires 0 (absent)
// on the primary and positive on every decrypt-only key.
func (sd *SignedDirectory) Verify(trusted ed25519.PublicKey) (*Directory, error) {
	if sd == nil {
		return nil, fmt.Errorf("%w: no directory", ErrDirectory)
	}
	if len(trusted) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: no trusted identity key", ErrDirectory)
	}
	if !trusted.Equal(ed25519.PublicKey(sd.Identity)) {
		return nil, fmt.Errorf("%w: signed by an untrusted identity key", ErrDirectory)
	}
	if !ed25519.Verify(trusted, directoryMessage(sd.Payload), sd.Signature) {
		return nil, fmt.Errorf("%w: bad signature", ErrDirectory)
	}
	var dj directoryJSON
	if err := json.Unmarshal(sd.Payload, &dj); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrDirectory, err)
	}
	if dj.Version != 1 || !validSuiteName(dj.Suite) {
		return nil, fmt.Errorf("%w: version %d, suite %q", ErrDirectory, dj.Version, dj.Suite)
	}
	d := &Directory{Version: dj.Version, Epoch: dj.Epoch, Suite: dj.Suite, STime: dj.STime}
	primaries := 0
	seen := make(map[KeyID]bool, len(dj.Keys))
	for _, k := range dj.Keys {
		id, err := ParseKeyID(k.ID)
		if err != nil || id != ComputeKeyID(dj.Suite, k.Public) || k.ID != id.String() {
			return nil, fmt.Errorf("%w: key id %q does not match its key", ErrDirectory, k.ID)
		}
		if seen[id] {
			return nil, fmt.Errorf("%w: key %s listed twice", ErrDirectory, k.ID)
		}
		seen[id] = true
		switch {
		case k.Status == StatusPrimary && k.Expires == 0:
			primaries++
		case k.Status == StatusDecryptOnly && k.Expires > 0:
		default:
			return nil, fmt.Errorf("%w: key status %q with expires %d", ErrDirectory, k.Status, k.Expires)
		}
		d.Keys = append(d.Keys, DirectoryKey{ID: k.ID, Public: k.Public, Status: k.Status, Expires: k.Expires})
	}
	if primaries != 1 {
		return nil, fmt.Errorf("%w: %d primary keys", ErrDirectory, primaries)
	}
	return d, nil
}

// B64 is a byte string that is base64url without padding in JSON
// (RFC 4648 section 5). Decoding is strict: no padding, no line breaks or
// other characters outside the alphabet, and unused trailing bits zero, so
// that every byte string has exactly one encoding.
type B64 []byte

// MarshalJSON implements json.Marshaler.
func (b B64) MarshalJSON() ([]byte, error) {
	return json.Marshal(base64.RawURLEncoding.EncodeToString(b))
}

// UnmarshalJSON implements json.Unmarshaler.
func (b *B64) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	if strings.ContainsAny(s, "\r\n") { // which even a Strict decoder skips
		return fmt.Errorf("%w: base64url: line break", ErrFormat)
	}
	v, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return fmt.Errorf("%w: base64url: %v", ErrFormat, err)
	}
	*b = v
	return nil
}
