package tink

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/dynkey/dynkey/crypto"
	"github.com/tink-crypto/tink-go/v2/keyset"
)

// KeyEncryptionAEAD is [crypto.KeyEncryptionAEAD]: any tink AEAD is one
// (aead.New of a keyset handle, or the remote AEAD of a KMS client).
type KeyEncryptionAEAD = crypto.KeyEncryptionAEAD

// PrivateKeyEncrypter is [crypto.PrivateKeyEncrypter]; both suites of this
// package implement it, so the middleware stores their keysets written
// encrypted by tink, never as cleartext keysets:
//
//	if pe, ok := s.(crypto.PrivateKeyEncrypter); ok { b, err = pe.MarshalPrivateKeyEncrypted(k, kek) }
//
// MarshalPrivateKeyEncrypted's result names the suite and carries k's public
// key in the clear, so that a store can show its key id without the KEK;
// everything secret is encrypted. ParsePrivateKeyEncrypted yields
// ErrKeyDecryption for a KEK that does not decrypt (another KEK, or tampered
// bytes), crypto.ErrMalformedKey for other malformed input and
// crypto.ErrWrongSuite for a key of another suite; it never panics.
type PrivateKeyEncrypter = crypto.PrivateKeyEncrypter

// ErrKeyDecryption is returned when an encrypted private key does not
// decrypt under the key-encryption AEAD given: the KEK is not the one it was
// written with, or the bytes were tampered with.
var ErrKeyDecryption = errors.New("dynkey/crypto/tink: private key does not decrypt under this key-encryption key")

// labelKeyset starts the associated data of every encrypted keyset.
const labelKeyset = "dynkey/v1 encrypted private keyset"

// The roles of the two keysets of a key pair, bound into the associated
// data so that they cannot be swapped.
const (
	roleHybrid    = "hybrid"
	roleSignature = "signature"
)

// MarshalPrivateKeyEncrypted returns k, a private key of one of this
// package's suites, with both keysets encrypted under kek by tink's
// keyset.Handle.WriteWithAssociatedData. The encoding is
//
//	u16 len(N) || N || u16 len(P) || P || u16 len(H) || H || u16 len(S) || S
//
// with N the suite name, P the public key (k.Public().Bytes()), and H and S
// the hybrid and signature keysets as tink's binary EncryptedKeyset protos
// (which hold only tink's AEAD ciphertext). Each keyset's associated data is
//
//	u16 len(label) || label || u16 len(N) || N || u16 len(role) || role || SHA-256(P)
//
// with label "dynkey/v1 encrypted private keyset" and role "hybrid" or
// "signature", which binds each keyset to its suite, its role and its
// public key. This is the form in which to store a private key; see
// [PrivateKeyEncrypter].
func MarshalPrivateKeyEncrypted(k crypto.PrivateKey, kek KeyEncryptionAEAD) ([]byte, error) {
	sk, ok := k.(*privateKey)
	if !ok || sk == nil {
		return nil, fmt.Errorf("dynkey/crypto/tink: private key: %w", crypto.ErrWrongSuite)
	}
	return sk.suite.MarshalPrivateKeyEncrypted(k, kek)
}

// ParsePrivateKeyEncrypted decrypts and parses the output of
// [MarshalPrivateKeyEncrypted] for whichever of this package's suites wrote
// it; see [PrivateKeyEncrypter.ParsePrivateKeyEncrypted] for the errors.
func ParsePrivateKeyEncrypted(b []byte, kek KeyEncryptionAEAD) (crypto.PrivateKey, error) {
	name, _, ok := cutLP16(b)
	if !ok {
		return nil, fmt.Errorf("dynkey/crypto/tink: encrypted private key: no suite name: %w", crypto.ErrMalformedKey)
	}
	s := suiteByName(string(name))
	if s == nil {
		if crypto.ValidName(string(name)) {
			return nil, fmt.Errorf("dynkey/crypto/tink: encrypted private key of suite %q: %w", name, crypto.ErrWrongSuite)
		}
		return nil, fmt.Errorf("dynkey/crypto/tink: encrypted private key: invalid suite name: %w", crypto.ErrMalformedKey)
	}
	return s.ParsePrivateKeyEncrypted(b, kek)
}

// MarshalPrivateKeyEncrypted implements PrivateKeyEncrypter; see the
// package-level function of the same name for the encoding.
func (s *suite) MarshalPrivateKeyEncrypted(k crypto.PrivateKey, kek KeyEncryptionAEAD) ([]byte, error) {
	sk, err := s.privateKey(k, "encrypted")
	if err != nil {
		return nil, err
	}
	if kek == nil {
		return nil, fmt.Errorf("%s: marshal private key: nil key-encryption AEAD", s.name)
	}
	pub := sk.pub.bytes
	hb, err := writeEncrypted(sk.hybrid, kek, s.keysetAD(roleHybrid, pub))
	if err != nil {
		return nil, fmt.Errorf("%s: encrypting hybrid keyset: %w", s.name, err)
	}
	sb, err := writeEncrypted(sk.sig, kek, s.keysetAD(roleSignature, pub))
	if err != nil {
		return nil, fmt.Errorf("%s: encrypting signature keyset: %w", s.name, err)
	}
	if len(pub) > 0xffff || len(hb) > 0xffff || len(sb) > 0xffff {
		return nil, fmt.Errorf("%s: encrypted keysets too long", s.name)
	}
	out := make([]byte, 0, 8+len(s.name)+len(pub)+len(hb)+len(sb))
	out = appendLP16(out, []byte(s.name))
	out = appendLP16(out, pub)
	out = appendLP16(out, hb)
	return appendLP16(out, sb), nil
}

// ParsePrivateKeyEncrypted implements PrivateKeyEncrypter.
func (s *suite) ParsePrivateKeyEncrypted(b []byte, kek KeyEncryptionAEAD) (sk crypto.PrivateKey, err error) {
	defer func() {
		if p := recover(); p != nil {
			sk, err = nil, fmt.Errorf("%s: encrypted private key: tink panicked: %w", s.name, crypto.ErrMalformedKey)
		}
	}()
	if kek == nil {
		return nil, fmt.Errorf("%s: parse private key: nil key-encryption AEAD", s.name)
	}
	fields := make([][]byte, 4)
	rest := b
	for i := range fields {
		var ok bool
		if fields[i], rest, ok = cutLP16(rest); !ok || len(fields[i]) == 0 {
			return nil, fmt.Errorf("%s: encrypted private key: field %d: %w", s.name, i, crypto.ErrMalformedKey)
		}
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%s: encrypted private key: %d trailing bytes: %w", s.name, len(rest), crypto.ErrMalformedKey)
	}
	name, pubBytes, hb, sb := fields[0], fields[1], fields[2], fields[3]
	if string(name) != s.name {
		return nil, fmt.Errorf("%s: encrypted private key of suite %q: %w", s.name, name, crypto.ErrWrongSuite)
	}
	pub, err := s.ParsePublicKey(pubBytes)
	if err != nil {
		return nil, fmt.Errorf("%s: encrypted private key: %w", s.name, err)
	}
	pubBytes = pub.(*publicKey).bytes
	hh, err := readEncrypted(hb, kek, s.keysetAD(roleHybrid, pubBytes))
	if err != nil {
		return nil, fmt.Errorf("%s: hybrid keyset: %w", s.name, err)
	}
	sh, err := readEncrypted(sb, kek, s.keysetAD(roleSignature, pubBytes))
	if err != nil {
		return nil, fmt.Errorf("%s: signature keyset: %w", s.name, err)
	}
	k, err := s.newPrivateKey(hh, sh)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(k.pub.bytes, pubBytes) {
		return nil, fmt.Errorf("%s: encrypted private key does not match its public key: %w", s.name, crypto.ErrMalformedKey)
	}
	return k, nil
}

// keysetAD returns the associated data of an encrypted keyset.
func (s *suite) keysetAD(role string, pub []byte) []byte {
	ad := make([]byte, 0, 6+len(labelKeyset)+len(s.name)+len(role)+sha256.Size)
	ad = appendLP16(ad, []byte(labelKeyset))
	ad = appendLP16(ad, []byte(s.name))
	ad = appendLP16(ad, []byte(role))
	h := sha256.Sum256(pub)
	return append(ad, h[:]...)
}

// writeEncrypted writes h encrypted under kek with tink's binary writer.
func writeEncrypted(h *keyset.Handle, kek KeyEncryptionAEAD, ad []byte) ([]byte, error) {
	var buf bytes.Buffer
	if err := h.WriteWithAssociatedData(keyset.NewBinaryWriter(&buf), kek, ad); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// readEncrypted reads a keyset written by writeEncrypted, telling a KEK
// that does not decrypt it (ErrKeyDecryption) from other malformed input.
func readEncrypted(b []byte, kek KeyEncryptionAEAD, ad []byte) (*keyset.Handle, error) {
	w := &decryptWatch{KeyEncryptionAEAD: kek}
	h, err := keyset.ReadWithAssociatedData(keyset.NewBinaryReader(bytes.NewReader(b)), w, ad)
	switch {
	case w.failed:
		return nil, ErrKeyDecryption
	case err != nil:
		return nil, fmt.Errorf("unreadable keyset: %w", crypto.ErrMalformedKey)
	}
	return h, nil
}

// decryptWatch records whether the KEK refused to decrypt.
type decryptWatch struct {
	KeyEncryptionAEAD
	failed bool
}

func (d *decryptWatch) Decrypt(ciphertext, associatedData []byte) ([]byte, error) {
	pt, err := d.KeyEncryptionAEAD.Decrypt(ciphertext, associatedData)
	if err != nil {
		d.failed = true
	}
	return pt, err
}
