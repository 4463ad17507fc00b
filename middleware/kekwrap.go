package middleware

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/dynkey/dynkey/store"
)

// Key-encryption keys from where operators keep secrets (docs/DEPLOYMENT.md,
// "The key-encryption key"): raw bytes from an environment variable or a
// file ([KEKFromEnv], [KEKFromFile], [ParseKEK]), or a key management
// service's key that never leaves it ([KeyWrapper], envelope encryption).

var (
	// ErrKEKFormat is wrapped by ParseKEK, KEKFromEnv and KEKFromFile when
	// the text is not 32 bytes written as hex or base64. The error never
	// contains the text.
	ErrKEKFormat = errors.New("dynkey/middleware: a key-encryption key must be 32 bytes, written as 64 hex digits or in base64 (44 characters with padding)")

	// ErrKEKUnwrap is wrapped by New when Options.KeyWrapper cannot unwrap
	// the data-encryption key stored under "dynkey/dek": the wrapper names
	// another key of the key management service than the one that wrapped
	// it (or the service refused, or the record was altered). Nothing is
	// written to the store.
	ErrKEKUnwrap = errors.New("dynkey/middleware: Options.KeyWrapper cannot unwrap the stored data-encryption key (another KMS key than the one that wrapped it?)")
)

// ParseKEK decodes a key-encryption key written as 64 hex digits or as
// base64 (standard or URL alphabet, with or without padding), ignoring
// surrounding white space (a trailing newline in a file). Anything else
// is an error wrapping ErrKEKFormat.
func ParseKEK(text string) ([]byte, error) {
	s := strings.TrimSpace(text)
	if len(s) == 2*kekSize {
		if b, err := hex.DecodeString(s); err == nil {
			return b, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) == kekSize {
				return b, nil
			}
			return nil, fmt.Errorf("%w (decoded %d bytes)", ErrKEKFormat, len(b))
		}
	}
	return nil, ErrKEKFormat
}

// KEKFromEnv reads a key-encryption key from the environment variable name
// (see ParseKEK for the accepted forms), e.g. KEKFromEnv("DYNKEY_KEK"). An
// unset or empty variable is an error naming it.
func KEKFromEnv(name string) ([]byte, error) {
	v, ok := os.LookupEnv(name)
	if !ok || strings.TrimSpace(v) == "" {
		return nil, fmt.Errorf("dynkey/middleware: environment variable %s (the key-encryption key) is not set", name)
	}
	k, err := ParseKEK(v)
	if err != nil {
		return nil, fmt.Errorf("environment variable %s: %w", name, err)
	}
	return k, nil
}

// KEKFromFile reads a key-encryption key from the file at path (see
// ParseKEK for the accepted forms), e.g. a Kubernetes or Docker secret
// mounted as a file.
func KEKFromFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("dynkey/middleware: reading the key-encryption key: %w", err)
	}
	defer clear(b)
	k, err := ParseKEK(string(b))
	if err != nil {
		return nil, fmt.Errorf("file %s: %w", path, err)
	}
	return k, nil
}

const kekSize = 32

// KeyWrapper is an authenticated encryption with associated data whose key
// is held elsewhere — a key management service (a tink-go KMS AEAD for AWS
// KMS or Google Cloud KMS has exactly these methods' shape), a Vault transit
// key, an HSM — so that dynkey never holds that key and imports no cloud
// SDK.
//
// Wrap encrypts plaintext bound to associatedData; Unwrap decrypts what Wrap
// returned given the same associatedData, and returns an error for anything
// else: another key's ciphertext, altered bytes, other associated data. Both
// are called only at start-up and during a key-encryption key rotation,
// never on a request's path. They must be safe for concurrent use.
type KeyWrapper interface {
	Wrap(plaintext, associatedData []byte) ([]byte, error)
	Unwrap(ciphertext, associatedData []byte) ([]byte, error)
}

// dekKey is the store key of the wrapped data-encryption key.
const dekKey = "dynkey/dek"

// dekAD is the associated data of a wrapped data-encryption key.
var dekAD = []byte("dynkey/v2 data-encryption key\x00" + dekKey)

// dekRecord is what the store holds under dekKey: a random 32-byte
// data-encryption key wrapped by Options.KeyWrapper. The data-encryption
// key is the key-encryption key of everything else (kek.go derives its
// seal, MAC and id keys), so the KMS is asked once per instance start, not
// once per record. It needs no MAC of its own: Unwrap authenticates it.
type dekRecord struct {
	Wrapped []byte `json:"wrapped"`
}

// unwrapDEK returns the data-encryption key stored under dekKey, creating
// it (random, wrapped by w) if the store holds none.
func unwrapDEK(ctx context.Context, st store.Store, w KeyWrapper, rnd io.Reader) ([]byte, error) {
	for range 5 {
		e, err := st.Get(ctx, dekKey)
		if err == nil {
			var rec dekRecord
			if err := json.Unmarshal(e.Value, &rec); err != nil || len(rec.Wrapped) == 0 {
				return nil, fmt.Errorf("%w: %s is not a wrapped key", ErrRecordRefused, dekKey)
			}
			dek, err := w.Unwrap(rec.Wrapped, dekAD)
			if err != nil {
				return nil, fmt.Errorf("%w: %w", ErrKEKUnwrap, err)
			}
			if len(dek) != kekSize {
				clear(dek)
				return nil, fmt.Errorf("%w: unwrapped %d bytes, want %d", ErrKEKUnwrap, len(dek), kekSize)
			}
			return dek, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("dynkey/middleware: reading the data-encryption key: %w", err)
		}
		b, err := newWrappedDEK(w, rnd)
		if err != nil {
			return nil, err
		}
		if _, err := st.CompareAndSwap(ctx, dekKey, 0, b, time.Time{}); err != nil && !errors.Is(err, store.ErrConflict) {
			return nil, fmt.Errorf("dynkey/middleware: storing the data-encryption key: %w", err)
		}
		// Written, or another instance wrote first: read it back.
	}
	return nil, errors.New("dynkey/middleware: could not create the data-encryption key")
}

// newWrappedDEK returns a dekRecord for a new random data-encryption key.
func newWrappedDEK(w KeyWrapper, rnd io.Reader) ([]byte, error) {
	dek := make([]byte, kekSize)
	defer clear(dek)
	if _, err := io.ReadFull(rnd, dek); err != nil {
		return nil, err
	}
	wrapped, err := w.Wrap(dek, dekAD)
	if err != nil {
		return nil, fmt.Errorf("dynkey/middleware: wrapping a data-encryption key: %w", err)
	}
	return json.Marshal(dekRecord{Wrapped: wrapped})
}

// resolveKEK sets o.KeyEncryptionKey from o.KeyWrapper, if set: the
// data-encryption key it unwraps from the store (created on first start).
func resolveKEK(o *Options) error {
	if o.KeyWrapper == nil {
		return nil
	}
	if o.KeyEncryptionKey != nil {
		return errors.New("dynkey/middleware: set KeyEncryptionKey or KeyWrapper, not both (the raw key of a previous configuration goes in PreviousKeyEncryptionKeys)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dek, err := unwrapDEK(ctx, o.Store, o.KeyWrapper, o.Rand)
	if err != nil {
		return err
	}
	o.KeyEncryptionKey = dek
	return nil
}

// RotateKEKWrapped moves the store to a new random data-encryption key
// wrapped by w (the same KeyWrapper, or another KMS key): it stores the
// wrapped key under "dynkey/dek", then re-seals everything under it as
// RotateKEK does. Use it to go from a raw KeyEncryptionKey to a KMS, or to
// replace the data-encryption key. Instances started afterwards need
// Options.KeyWrapper = w; running ones keep the key-encryption keys they
// hold and refuse re-sealed records until restarted (see RotateKEK for the
// cluster procedure). To go from a KMS back to a raw key, call RotateKEK
// with the raw key.
func (m *Middleware) RotateKEKWrapped(ctx context.Context, w KeyWrapper) error {
	if _, ok := m.o.Store.(store.Lister); !ok {
		return ErrStoreCannotList
	}
	b, err := newWrappedDEK(w, m.o.Rand)
	if err != nil {
		return err
	}
	var rec dekRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return err
	}
	dek, err := w.Unwrap(rec.Wrapped, dekAD)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrKEKUnwrap, err)
	}
	defer clear(dek)
	for range 8 {
		e, err := m.o.Store.Get(ctx, dekKey)
		var old uint64
		switch {
		case err == nil:
			old = e.Version
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		if _, err := m.o.Store.CompareAndSwap(ctx, dekKey, old, b, time.Time{}); errors.Is(err, store.ErrConflict) {
			continue
		} else if err != nil {
			return err
		}
		return m.RotateKEK(ctx, dek)
	}
	return errors.New("dynkey/middleware: the data-encryption key kept changing")
}
