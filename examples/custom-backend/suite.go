package main

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"io"

	"golang.org/x/crypto/nacl/box"

	"github.com/dynkey/dynkey/crypto"
)

// naclBox is a whole dynkey suite in one page: NaCl box (X25519,
// XSalsa20-Poly1305) authenticates the sender by its static key; a random
// per-message secret travels inside the box; info and aad are bound by their
// hash inside the box, checked in constant time. (Static-static DH: unlike
// the HPKE suites it has no ephemeral key, so it is an example, not a
// recommendation.)
type naclBox struct{}

type pub struct{ b [32]byte }
type priv struct{ b, p [32]byte }

func (k *pub) Bytes() []byte             { return bytes.Clone(k.b[:]) }
func (k *priv) Bytes() []byte            { return bytes.Clone(k.b[:]) }
func (k *priv) Public() crypto.PublicKey { return &pub{k.p} }

var _ crypto.Suite = naclBox{}

func (naclBox) Name() string { return "example-naclbox" }

func (s naclBox) GenerateKey(r io.Reader) (crypto.PrivateKey, error) {
	if r == nil {
		r = rand.Reader
	}
	var seed [32]byte
	if _, err := io.ReadFull(r, seed[:]); err != nil {
		return nil, err
	}
	return s.ParsePrivateKey(seed[:])
}

func (naclBox) ParsePrivateKey(b []byte) (crypto.PrivateKey, error) {
	k, err := ecdh.X25519().NewPrivateKey(b)
	if err != nil {
		return nil, crypto.ErrMalformedKey
	}
	p := &priv{}
	copy(p.b[:], b)
	copy(p.p[:], k.PublicKey().Bytes())
	return p, nil
}

func (naclBox) ParsePublicKey(b []byte) (crypto.PublicKey, error) {
	// Canonical (< 2^255-19) and not of low order (a trial ECDH fails).
	if len(b) != 32 || b[31]&0x80 != 0 || b[31] == 0x7f && bytes.Count(b[1:31], []byte{0xff}) == 30 && b[0] >= 0xed {
		return nil, crypto.ErrMalformedKey
	}
	if k, err := ecdh.X25519().NewPublicKey(b); err != nil {
		return nil, crypto.ErrMalformedKey
	} else if _, err := probe.ECDH(k); err != nil {
		return nil, crypto.ErrMalformedKey
	}
	p := &pub{}
	copy(p.b[:], b)
	return p, nil
}

var probe, _ = ecdh.X25519().GenerateKey(rand.Reader)

// binding hashes the context and both keys in order: box's DH is symmetric,
// so without the direction a reply from the recipient would open as if
// the sender had sent it (the conformance suite catches exactly that).
func binding(sender, recipient, info, aad []byte) []byte {
	h := sha256.New()
	for _, v := range [][]byte{[]byte("example-naclbox"), sender, recipient, info, aad} {
		h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(v))))
		h.Write(v)
	}
	return h.Sum(nil)
}

func (naclBox) Seal(r io.Reader, to crypto.PublicKey, from crypto.PrivateKey, info, aad, pt []byte) ([]byte, []byte, error) {
	t, ok1 := to.(*pub)
	f, ok2 := from.(*priv)
	if !ok1 || !ok2 {
		return nil, nil, crypto.ErrWrongSuite
	}
	if r == nil {
		r = rand.Reader
	}
	var nonce [24]byte
	secret := make([]byte, 32)
	if _, err := io.ReadFull(r, nonce[:]); err != nil {
		return nil, nil, err
	}
	if _, err := io.ReadFull(r, secret); err != nil {
		return nil, nil, err
	}
	msg := append(append(append([]byte{}, secret...), binding(f.p[:], t.b[:], info, aad)...), pt...)
	ct := box.Seal(nonce[:], msg, &nonce, &t.b, &f.b)
	out, err := hkdf.Key(sha256.New, secret, nil, "dynkey/v1 message secret", 32)
	return ct, out, err
}

func (naclBox) Open(to crypto.PrivateKey, from crypto.PublicKey, info, aad, ct []byte) ([]byte, []byte, error) {
	t, ok1 := to.(*priv)
	f, ok2 := from.(*pub)
	if !ok1 || !ok2 {
		return nil, nil, crypto.ErrWrongSuite
	}
	if len(ct) < 24+box.Overhead+64 {
		return nil, nil, crypto.ErrOpen
	}
	var nonce [24]byte
	copy(nonce[:], ct)
	msg, ok := box.Open(nil, ct[24:], &nonce, &f.b, &t.b)
	if !ok || subtle.ConstantTimeCompare(msg[32:64], binding(f.b[:], t.p[:], info, aad)) != 1 {
		return nil, nil, crypto.ErrOpen
	}
	out, err := hkdf.Key(sha256.New, msg[:32], nil, "dynkey/v1 message secret", 32)
	return msg[64:], out, err
}
