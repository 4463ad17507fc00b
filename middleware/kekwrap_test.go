package middleware

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/store"
	"github.com/dynkey/dynkey/store/memory"
	"github.com/dynkey/dynkey/store/sqlite"
)

// kwAESGCM is a KeyWrapper whose key stays inside it, as a KMS key stays in
// the KMS: AES-256-GCM, random nonce prepended. It counts its calls.
type kwAESGCM struct {
	aead          cipher.AEAD
	wraps, unwrap int
}

func newKWAESGCM(t *testing.T) *kwAESGCM {
	t.Helper()
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	b, err := aes.NewCipher(k)
	require.NoError(t, err)
	g, err := cipher.NewGCM(b)
	require.NoError(t, err)
	return &kwAESGCM{aead: g}
}

func (w *kwAESGCM) Wrap(pt, ad []byte) ([]byte, error) {
	w.wraps++
	n := make([]byte, w.aead.NonceSize())
	_, _ = rand.Read(n)
	return w.aead.Seal(n, n, pt, ad), nil
}

func (w *kwAESGCM) Unwrap(ct, ad []byte) ([]byte, error) {
	w.unwrap++
	n := w.aead.NonceSize()
	if len(ct) < n {
		return nil, errors.New("kms: ciphertext too short")
	}
	return w.aead.Open(nil, ct[:n], ct[n:], ad)
}

func TestParseKEK(t *testing.T) {
	key := bytes.Repeat([]byte{0x5a, 0xc3}, 16)
	for _, tc := range []struct {
		name, text string
		ok         bool
	}{
		{"hex", hex.EncodeToString(key), true},
		{"hex upper case, newline", hex.EncodeToString(key) + "\n", true},
		{"base64", base64.StdEncoding.EncodeToString(key), true},
		{"base64 raw url", base64.RawURLEncoding.EncodeToString(key), true},
		{"base64 with spaces around", "  " + base64.StdEncoding.EncodeToString(key) + " \r\n", true},
		{"16 bytes of hex", hex.EncodeToString(key[:16]), false},
		{"48 bytes of base64", base64.StdEncoding.EncodeToString(append(key, key[:16]...)), false},
		{"not an encoding", "correct horse battery staple", false},
		{"empty", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseKEK(tc.text)
			if !tc.ok {
				require.ErrorIs(t, err, ErrKEKFormat)
				if tc.text != "" {
					require.NotContains(t, err.Error(), tc.text, "the error shows the text")
				}
				return
			}
			require.NoError(t, err)
			require.Equal(t, key, got)
		})
	}
}

func TestKEKFromEnvAndFile(t *testing.T) {
	key := bytes.Repeat([]byte{0x42}, 32)
	t.Setenv("DYNKEY_TEST_KEK", hex.EncodeToString(key))
	got, err := KEKFromEnv("DYNKEY_TEST_KEK")
	require.NoError(t, err)
	require.Equal(t, key, got)

	_, err = KEKFromEnv("DYNKEY_TEST_KEK_UNSET")
	require.ErrorContains(t, err, "DYNKEY_TEST_KEK_UNSET")
	require.ErrorContains(t, err, "not set")

	secret := "deadbeef-not-a-key-" + hex.EncodeToString(key[:4])
	t.Setenv("DYNKEY_TEST_KEK", secret)
	_, err = KEKFromEnv("DYNKEY_TEST_KEK")
	require.ErrorIs(t, err, ErrKEKFormat)
	require.ErrorContains(t, err, "DYNKEY_TEST_KEK")
	require.NotContains(t, err.Error(), secret, "the error shows the secret")

	dir := t.TempDir()
	p := filepath.Join(dir, "kek")
	require.NoError(t, os.WriteFile(p, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600))
	got, err = KEKFromFile(p)
	require.NoError(t, err)
	require.Equal(t, key, got)
	_, err = KEKFromFile(filepath.Join(dir, "missing"))
	require.ErrorIs(t, err, os.ErrNotExist)
	require.NoError(t, os.WriteFile(p, []byte("short"), 0o600))
	_, err = KEKFromFile(p)
	require.ErrorIs(t, err, ErrKEKFormat)
	require.ErrorContains(t, err, p)
}

// TestKeyWrapper: with a KeyWrapper, the store holds a wrapped random
// data-encryption key that every instance unwraps once at start; another KMS
// key cannot unwrap it and the instance refuses to start, writing nothing.
func TestKeyWrapper(t *testing.T) {
	st := memory.New()
	kms := newKWAESGCM(t)
	s := newMTServer(t)
	m1, err := New(Options{Store: st, KeyWrapper: kms, Authenticator: mtUsers(t), MaintainInterval: -1, Logger: mtQuiet})
	require.NoError(t, err)
	t.Cleanup(func() { m1.Close() })
	require.Equal(t, 1, kms.wraps)
	s.serve(m1)
	c, hc := mtClient(t, s, nil)
	first := mtEcho(t, s, hc, "a")

	// A second instance with the same KMS key serves the same session.
	m2, err := New(Options{Store: st, KeyWrapper: kms, Authenticator: mtUsers(t), MaintainInterval: -1, Logger: mtQuiet})
	require.NoError(t, err)
	t.Cleanup(func() { m2.Close() })
	require.Equal(t, 1, kms.wraps, "the second instance wrapped a new key")
	s.serve(m2)
	require.Equal(t, first, mtEcho(t, s, hc, "a"))
	require.Equal(t, uint64(1), c.Stats().Logins)

	// Another KMS key: refused at start, the store unchanged.
	before := mtSnapshot(t, st)
	_, err = New(Options{Authenticator: mtUsers(t), Store: st, KeyWrapper: newKWAESGCM(t), MaintainInterval: -1, Logger: mtQuiet})
	require.ErrorIs(t, err, ErrKEKUnwrap)
	require.Equal(t, before, mtSnapshot(t, st))

	// Both a raw key and a wrapper: a configuration error.
	_, err = New(Options{Authenticator: mtUsers(t), Store: st, KeyWrapper: kms, KeyEncryptionKey: mtKEK(1), MaintainInterval: -1, Logger: mtQuiet})
	require.ErrorContains(t, err, "not both")

	// A durable store needs a key-encryption key: a KeyWrapper is one.
	lite, err := sqlite.Open(filepath.Join(t.TempDir(), "d.db"))
	require.NoError(t, err)
	defer lite.Close()
	md, err := New(Options{Authenticator: mtUsers(t), Store: lite, KeyWrapper: kms, MaintainInterval: -1, Logger: mtQuiet})
	require.NoError(t, err)
	md.Close()
	_, err = New(Options{Authenticator: mtUsers(t), Store: lite, KeyWrapper: (*kwAESGCM)(nil), MaintainInterval: -1, Logger: mtQuiet})
	require.ErrorIs(t, err, ErrConfig)
}

// mtSnapshot returns the values of the keys dynkey keeps outside sessions.
func mtSnapshot(t *testing.T, st store.Store) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, k := range []string{ringKey, dekKey} {
		e, err := st.Get(t.Context(), k)
		if err == nil {
			out[k] = string(e.Value)
		}
	}
	return out
}

// TestRotateKEKRawToWrappedAndBack moves a store from a raw key to a KMS
// (RotateKEKWrapped) and back to another raw key (RotateKEK): after each
// step the session survives, the new configuration alone opens the store,
// and the previous one alone is refused.
func TestRotateKEKRawToWrappedAndBack(t *testing.T) {
	st := memory.New()
	kms := newKWAESGCM(t)
	s := newMTServer(t)
	users := mtUsers(t)
	start := func(o Options) (*Middleware, error) {
		o.Store, o.Authenticator, o.MaintainInterval, o.Logger = st, users, -1, mtQuiet
		m, err := New(o)
		if err == nil {
			t.Cleanup(func() { m.Close() })
			s.serve(m)
		}
		return m, err
	}
	m, err := start(Options{KeyEncryptionKey: mtKEK(1)})
	require.NoError(t, err)
	c, hc := mtClient(t, s, nil)
	want := mtEcho(t, s, hc, "x")

	require.NoError(t, m.RotateKEKWrapped(t.Context(), kms))
	require.Equal(t, want, mtEcho(t, s, hc, "x"), "the rotating instance serves on")
	_, err = start(Options{KeyEncryptionKey: mtKEK(1)})
	require.ErrorIs(t, err, ErrRecordRefused, "the old raw key still opens the store")
	_, err = start(Options{KeyWrapper: newKWAESGCM(t)})
	require.ErrorIs(t, err, ErrKEKUnwrap)
	w, err := start(Options{KeyWrapper: kms})
	require.NoError(t, err)
	require.Equal(t, want, mtEcho(t, s, hc, "x"))

	require.NoError(t, w.RotateKEK(t.Context(), mtKEK(2)))
	_, err = start(Options{KeyWrapper: kms})
	require.ErrorIs(t, err, ErrRecordRefused, "the KMS-wrapped key still opens the store")
	_, err = start(Options{KeyEncryptionKey: mtKEK(2)})
	require.NoError(t, err)
	require.Equal(t, want, mtEcho(t, s, hc, "x"))
	require.Equal(t, uint64(1), c.Stats().Logins, "a session was lost")
}
