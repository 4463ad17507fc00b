// Package backendtest is the conformance suite every dynkey [crypto.Suite]
// must pass. A suite's package calls it from a test:
//
//	func TestConformance(t *testing.T) { backendtest.Run(t, mysuite.New()) }
//	func BenchmarkSuite(b *testing.B) { backendtest.Bench(b, mysuite.New()) }
//
// Run checks the behaviour documented on crypto.Suite: round trips, the
// per-message secret, authentication failures (wrong keys, tampered or
// truncated ciphertext, info or associated data) reported as crypto.ErrOpen,
// key encoding round trips, rejection of malformed and foreign keys, and
// safety for concurrent use (run the tests with -race). It never expects a
// particular wire format; suites test that with their own vectors.
package backendtest

import (
	"bytes"
	cryptorand "crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/dynkey/dynkey/crypto"
)

// Run runs the conformance tests for s as subtests of t.
func Run(t *testing.T, s crypto.Suite) {
	t.Helper()
	if s == nil {
		t.Fatal("backendtest: nil suite")
	}
	f := newFixture(t, s)

	t.Run("Name", f.testName)
	t.Run("RoundTrip", f.testRoundTrip)
	t.Run("Secret", f.testSecret)
	t.Run("CiphertextsDiffer", f.testCiphertextsDiffer)
	t.Run("WrongRecipientKey", f.testWrongRecipientKey)
	t.Run("WrongSenderKey", f.testWrongSenderKey)
	t.Run("SwappedRoles", f.testSwappedRoles)
	t.Run("TamperedCiphertext", f.testTamperedCiphertext)
	t.Run("TamperedAAD", f.testTamperedAAD)
	t.Run("TamperedInfo", f.testTamperedInfo)
	t.Run("TruncatedCiphertext", f.testTruncated)
	t.Run("ExtendedCiphertext", f.testExtended)
	t.Run("EmptyCiphertext", f.testEmptyCiphertext)
	t.Run("NilAndEmptyInputs", f.testNilAndEmpty)
	t.Run("InputsNotModified", f.testInputsNotModified)
	t.Run("PlaintextSizes", f.testPlaintextSizes)
	t.Run("PublicKeyRoundTrip", f.testPublicKeyRoundTrip)
	t.Run("PrivateKeyRoundTrip", f.testPrivateKeyRoundTrip)
	t.Run("GarbagePublicKeys", f.testGarbagePublicKeys)
	t.Run("GarbagePrivateKeys", f.testGarbagePrivateKeys)
	t.Run("ForeignKeys", f.testForeignKeys)
	t.Run("NilKeys", f.testNilKeys)
	t.Run("Randomness", f.testRandomness)
	t.Run("Concurrent", f.testConcurrent)
}

// Bench runs Seal, Open and GenerateKey benchmarks for s as sub-benchmarks
// of b, reporting allocations.
func Bench(b *testing.B, s crypto.Suite) {
	b.Helper()
	sender, err := s.GenerateKey(nil)
	if err != nil {
		b.Fatalf("GenerateKey: %v", err)
	}
	recipient, err := s.GenerateKey(nil)
	if err != nil {
		b.Fatalf("GenerateKey: %v", err)
	}
	info := []byte("dynkey/v1 benchmark")
	aad := []byte("associated data")
	msg := make([]byte, 1024)

	b.Run("Seal1KiB", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(msg)))
		for b.Loop() {
			if _, _, err := s.Seal(nil, recipient.Public(), sender, info, aad, msg); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Open1KiB", func(b *testing.B) {
		ct, _, err := s.Seal(nil, recipient.Public(), sender, info, aad, msg)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.SetBytes(int64(len(msg)))
		for b.Loop() {
			if _, _, err := s.Open(recipient, sender.Public(), info, aad, ct); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("GenerateKey", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.GenerateKey(nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// fixture holds a suite and a sender and recipient key pair shared by the
// subtests. Keys are never mutated, so sharing them is itself a test of
// concurrent-use safety when subtests run in parallel.
type fixture struct {
	s         crypto.Suite
	sender    crypto.PrivateKey
	recipient crypto.PrivateKey
	info      []byte
	aad       []byte
	msg       []byte
}

func newFixture(t *testing.T, s crypto.Suite) *fixture {
	t.Helper()
	return &fixture{
		s:         s,
		sender:    mustGenerate(t, s),
		recipient: mustGenerate(t, s),
		info:      []byte("dynkey/v1 backendtest"),
		aad:       []byte("associated data"),
		msg:       []byte("the quick brown fox jumps over the lazy dog"),
	}
}

func mustGenerate(t testing.TB, s crypto.Suite) crypto.PrivateKey {
	t.Helper()
	k, err := s.GenerateKey(nil)
	if err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}
	if k == nil || k.Public() == nil {
		t.Fatalf("GenerateKey returned a nil key")
	}
	return k
}

// seal seals f.msg (or msg when given) from f.sender to f.recipient.
func (f *fixture) seal(t testing.TB, msg []byte) (ct, secret []byte) {
	t.Helper()
	ct, secret, err := f.s.Seal(nil, f.recipient.Public(), f.sender, f.info, f.aad, msg)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	return ct, secret
}

// mustOpen opens ct with the fixture's keys and checks the plaintext.
func (f *fixture) mustOpen(t testing.TB, ct, want []byte) []byte {
	t.Helper()
	pt, secret, err := f.s.Open(f.recipient, f.sender.Public(), f.info, f.aad, ct)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if !bytes.Equal(pt, want) {
		t.Fatalf("Open returned %d bytes %.32x..., want %d bytes %.32x...", len(pt), pt, len(want), want)
	}
	return secret
}

// expectOpenFails calls Open, requires an error wrapping crypto.ErrOpen and
// nil results, and turns a panic into a test failure.
func expectOpenFails(t *testing.T, s crypto.Suite, to crypto.PrivateKey, from crypto.PublicKey, info, aad, ct []byte, what string) {
	t.Helper()
	var (
		pt, secret []byte
		err        error
	)
	if p := catch(func() { pt, secret, err = s.Open(to, from, info, aad, ct) }); p != nil {
		t.Errorf("%s: Open panicked: %v", what, p)
		return
	}
	if !errors.Is(err, crypto.ErrOpen) {
		t.Errorf("%s: Open error = %v, want one wrapping crypto.ErrOpen", what, err)
	}
	if pt != nil || secret != nil {
		t.Errorf("%s: Open returned plaintext %x and secret %x along with an error", what, pt, secret)
	}
}

// catch runs fn and returns what it panicked with, if anything.
func catch(fn func()) (p any) {
	defer func() { p = recover() }()
	fn()
	return nil
}

func (f *fixture) testName(t *testing.T) {
	name := f.s.Name()
	if !crypto.ValidName(name) {
		t.Fatalf("Name() = %q, which crypto.ValidName rejects", name)
	}
	if f.s.Name() != name {
		t.Errorf("Name() is not stable: %q then %q", name, f.s.Name())
	}
	got, err := crypto.Lookup(name)
	switch {
	case err == nil:
		if got.Name() != name {
			t.Errorf("Lookup(%q) returned suite named %q", name, got.Name())
		}
	case errors.Is(err, crypto.ErrUnknownSuite):
		t.Logf("suite %q is not registered", name)
	default:
		t.Errorf("Lookup(%q): unexpected error %v", name, err)
	}
}

func (f *fixture) testRoundTrip(t *testing.T) {
	ct, _ := f.seal(t, f.msg)
	if len(ct) <= len(f.msg) {
		t.Errorf("ciphertext is %d bytes for a %d-byte message; it cannot be authenticated", len(ct), len(f.msg))
	}
	if bytes.Contains(ct, f.msg) {
		t.Errorf("ciphertext contains the plaintext")
	}
	f.mustOpen(t, ct, f.msg)
	// Opening is repeatable.
	f.mustOpen(t, ct, f.msg)
}

func (f *fixture) testSecret(t *testing.T) {
	ct1, s1 := f.seal(t, f.msg)
	ct2, s2 := f.seal(t, f.msg)
	if len(s1) != crypto.SecretSize || len(s2) != crypto.SecretSize {
		t.Fatalf("secret lengths %d and %d, want crypto.SecretSize = %d", len(s1), len(s2), crypto.SecretSize)
	}
	if o1 := f.mustOpen(t, ct1, f.msg); !bytes.Equal(o1, s1) {
		t.Errorf("Open secret %x differs from Seal secret %x", o1, s1)
	}
	if o2 := f.mustOpen(t, ct2, f.msg); !bytes.Equal(o2, s2) {
		t.Errorf("Open secret %x differs from Seal secret %x", o2, s2)
	}
	if bytes.Equal(s1, s2) {
		t.Errorf("two seals of the same message gave the same secret %x", s1)
	}
	if bytes.Equal(s1, make([]byte, crypto.SecretSize)) {
		t.Errorf("secret is all zeros")
	}
	// The secret is not derivable from the public ciphertext alone in any
	// trivial way: at least it must not appear in it.
	if bytes.Contains(ct1, s1) {
		t.Errorf("ciphertext contains the secret")
	}
}

func (f *fixture) testCiphertextsDiffer(t *testing.T) {
	ct1, _ := f.seal(t, f.msg)
	ct2, _ := f.seal(t, f.msg)
	if bytes.Equal(ct1, ct2) {
		t.Errorf("two seals of the same message gave the same ciphertext")
	}
}

func (f *fixture) testWrongRecipientKey(t *testing.T) {
	ct, _ := f.seal(t, f.msg)
	other := mustGenerate(t, f.s)
	expectOpenFails(t, f.s, other, f.sender.Public(), f.info, f.aad, ct, "other recipient key")
}

func (f *fixture) testWrongSenderKey(t *testing.T) {
	ct, _ := f.seal(t, f.msg)
	other := mustGenerate(t, f.s)
	expectOpenFails(t, f.s, f.recipient, other.Public(), f.info, f.aad, ct, "other sender key")
	// The recipient's own public key as the claimed sender.
	expectOpenFails(t, f.s, f.recipient, f.recipient.Public(), f.info, f.aad, ct, "recipient's key as sender")
}

func (f *fixture) testSwappedRoles(t *testing.T) {
	ct, _ := f.seal(t, f.msg)
	expectOpenFails(t, f.s, f.sender, f.recipient.Public(), f.info, f.aad, ct, "sender and recipient swapped")
}

func (f *fixture) testTamperedCiphertext(t *testing.T) {
	for _, msg := range [][]byte{f.msg, nil} {
		ct, _ := f.seal(t, msg)
		// Every byte position, flipping a different bit each time; this
		// includes the first byte, the middle and the last byte.
		positions := make([]int, 0, len(ct))
		for i := range ct {
			positions = append(positions, i)
		}
		if len(ct) > 512 {
			positions = []int{0, 1, len(ct) / 2, len(ct) - 2, len(ct) - 1}
		}
		for _, i := range positions {
			for _, bit := range []byte{1 << (i % 8), 0x80} {
				bad := bytes.Clone(ct)
				bad[i] ^= bit
				expectOpenFails(t, f.s, f.recipient, f.sender.Public(), f.info, f.aad, bad,
					fmt.Sprintf("%d-byte message, byte %d of %d xor %#02x", len(msg), i, len(ct), bit))
			}
		}
		// The original still opens: the tampering above worked on copies.
		f.mustOpen(t, ct, msg)
	}
}

func (f *fixture) testTamperedAAD(t *testing.T) {
	ct, _ := f.seal(t, f.msg)
	for name, aad := range tamperings(f.aad) {
		expectOpenFails(t, f.s, f.recipient, f.sender.Public(), f.info, aad, ct, "aad "+name)
	}
}

func (f *fixture) testTamperedInfo(t *testing.T) {
	ct, _ := f.seal(t, f.msg)
	for name, info := range tamperings(f.info) {
		expectOpenFails(t, f.s, f.recipient, f.sender.Public(), info, f.aad, ct, "info "+name)
	}
}

// tamperings returns variants of b that differ from it.
func tamperings(b []byte) map[string][]byte {
	m := map[string][]byte{
		"nil":         nil,
		"extra byte":  append(bytes.Clone(b), 0),
		"one shorter": bytes.Clone(b[:len(b)-1]),
	}
	for _, i := range []int{0, len(b) / 2, len(b) - 1} {
		c := bytes.Clone(b)
		c[i] ^= 1
		m[fmt.Sprintf("byte %d flipped", i)] = c
	}
	return m
}

func (f *fixture) testTruncated(t *testing.T) {
	for _, msg := range [][]byte{nil, {0x42}, f.msg} {
		ct, _ := f.seal(t, msg)
		for n := 0; n < len(ct); n++ {
			expectOpenFails(t, f.s, f.recipient, f.sender.Public(), f.info, f.aad, bytes.Clone(ct[:n]),
				fmt.Sprintf("%d-byte message truncated to %d of %d bytes", len(msg), n, len(ct)))
		}
		// Dropping bytes from the front is not a valid ciphertext either.
		for _, n := range []int{1, len(ct) / 2, len(ct) - 1} {
			expectOpenFails(t, f.s, f.recipient, f.sender.Public(), f.info, f.aad, bytes.Clone(ct[n:]),
				fmt.Sprintf("%d-byte message with first %d bytes dropped", len(msg), n))
		}
	}
}

func (f *fixture) testExtended(t *testing.T) {
	ct, _ := f.seal(t, f.msg)
	for _, extra := range [][]byte{{0}, {0xff}, make([]byte, 16)} {
		expectOpenFails(t, f.s, f.recipient, f.sender.Public(), f.info, f.aad, append(bytes.Clone(ct), extra...),
			fmt.Sprintf("%d bytes appended", len(extra)))
	}
	other, _ := f.seal(t, f.msg)
	expectOpenFails(t, f.s, f.recipient, f.sender.Public(), f.info, f.aad, append(bytes.Clone(ct), other...), "two ciphertexts concatenated")
}

func (f *fixture) testEmptyCiphertext(t *testing.T) {
	expectOpenFails(t, f.s, f.recipient, f.sender.Public(), f.info, f.aad, nil, "nil ciphertext")
	expectOpenFails(t, f.s, f.recipient, f.sender.Public(), f.info, f.aad, []byte{}, "empty ciphertext")
	expectOpenFails(t, f.s, f.recipient, f.sender.Public(), nil, nil, nil, "nil everything")
}

func (f *fixture) testNilAndEmpty(t *testing.T) {
	// nil and empty are the same byte string, for every input.
	ct, s1, err := f.s.Seal(nil, f.recipient.Public(), f.sender, nil, nil, nil)
	if err != nil {
		t.Fatalf("Seal with nil info, aad and plaintext: %v", err)
	}
	pt, s2, err := f.s.Open(f.recipient, f.sender.Public(), []byte{}, []byte{}, ct)
	if err != nil {
		t.Fatalf("Open with empty info and aad of a message sealed with nil ones: %v", err)
	}
	if len(pt) != 0 {
		t.Errorf("Open returned %d bytes, want 0", len(pt))
	}
	if !bytes.Equal(s1, s2) {
		t.Errorf("secrets differ: %x and %x", s1, s2)
	}
}

func (f *fixture) testInputsNotModified(t *testing.T) {
	info, aad, msg := bytes.Clone(f.info), bytes.Clone(f.aad), bytes.Clone(f.msg)
	ct, _, err := f.s.Seal(nil, f.recipient.Public(), f.sender, info, aad, msg)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	if !bytes.Equal(info, f.info) || !bytes.Equal(aad, f.aad) || !bytes.Equal(msg, f.msg) {
		t.Fatalf("Seal modified its inputs")
	}
	ctCopy := bytes.Clone(ct)
	pt, _, err := f.s.Open(f.recipient, f.sender.Public(), info, aad, ct)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if !bytes.Equal(info, f.info) || !bytes.Equal(aad, f.aad) || !bytes.Equal(ct, ctCopy) {
		t.Fatalf("Open modified its inputs")
	}
	// The plaintext must not alias the ciphertext: changing one must not
	// change the other.
	if len(pt) > 0 {
		pt[0] ^= 0xff
		if !bytes.Equal(ct, ctCopy) {
			t.Errorf("modifying the plaintext returned by Open modified the ciphertext")
		}
	}
	bad := bytes.Clone(ct)
	bad[len(bad)-1] ^= 1
	badCopy := bytes.Clone(bad)
	expectOpenFails(t, f.s, f.recipient, f.sender.Public(), info, aad, bad, "tampered")
	if !bytes.Equal(bad, badCopy) {
		t.Errorf("a failed Open modified the ciphertext")
	}
}

func (f *fixture) testPlaintextSizes(t *testing.T) {
	for _, n := range []int{0, 1, 15, 16, 17, 64, 1 << 20} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			msg := make([]byte, n)
			fillRandom(t, msg)
			ct, secret := f.seal(t, msg)
			if len(ct) <= n {
				t.Errorf("ciphertext is %d bytes for a %d-byte message", len(ct), n)
			}
			if got := f.mustOpen(t, ct, msg); !bytes.Equal(got, secret) {
				t.Errorf("secrets differ")
			}
		})
	}
}

func (f *fixture) testPublicKeyRoundTrip(t *testing.T) {
	enc := f.recipient.Public().Bytes()
	pub, err := f.s.ParsePublicKey(bytes.Clone(enc))
	if err != nil {
		t.Fatalf("ParsePublicKey(Public().Bytes()): %v", err)
	}
	if !bytes.Equal(pub.Bytes(), enc) {
		t.Fatalf("parsed public key encodes as %x, want %x", pub.Bytes(), enc)
	}
	// Sealed to the parsed key, opens with the original private key.
	ct, secret, err := f.s.Seal(nil, pub, f.sender, f.info, f.aad, f.msg)
	if err != nil {
		t.Fatalf("Seal to parsed key: %v", err)
	}
	if got := f.mustOpen(t, ct, f.msg); !bytes.Equal(got, secret) {
		t.Errorf("secrets differ")
	}
	// A parsed sender key authenticates what the original sealed.
	senderPub, err := f.s.ParsePublicKey(f.sender.Public().Bytes())
	if err != nil {
		t.Fatalf("ParsePublicKey(sender): %v", err)
	}
	ct, _ = f.seal(t, f.msg)
	pt, _, err := f.s.Open(f.recipient, senderPub, f.info, f.aad, ct)
	if err != nil || !bytes.Equal(pt, f.msg) {
		t.Fatalf("Open with parsed sender key: %q, %v", pt, err)
	}
}

func (f *fixture) testPrivateKeyRoundTrip(t *testing.T) {
	enc := f.recipient.Bytes()
	priv, err := f.s.ParsePrivateKey(bytes.Clone(enc))
	if err != nil {
		t.Fatalf("ParsePrivateKey(Bytes()): %v", err)
	}
	if !bytes.Equal(priv.Bytes(), enc) {
		t.Fatalf("parsed private key does not re-encode to the same bytes")
	}
	if !bytes.Equal(priv.Public().Bytes(), f.recipient.Public().Bytes()) {
		t.Fatalf("parsed private key has public key %x, want %x", priv.Public().Bytes(), f.recipient.Public().Bytes())
	}
	// A key parsed from bytes opens what the original sealed...
	ct, secret := f.seal(t, f.msg)
	pt, got, err := f.s.Open(priv, f.sender.Public(), f.info, f.aad, ct)
	if err != nil || !bytes.Equal(pt, f.msg) || !bytes.Equal(got, secret) {
		t.Fatalf("Open with parsed recipient key: %q, %v", pt, err)
	}
	// ...and a message sealed with a parsed sender key opens with the
	// original public key.
	sender, err := f.s.ParsePrivateKey(f.sender.Bytes())
	if err != nil {
		t.Fatalf("ParsePrivateKey(sender): %v", err)
	}
	ct, secret, err = f.s.Seal(nil, f.recipient.Public(), sender, f.info, f.aad, f.msg)
	if err != nil {
		t.Fatalf("Seal with parsed sender key: %v", err)
	}
	if got := f.mustOpen(t, ct, f.msg); !bytes.Equal(got, secret) {
		t.Errorf("secrets differ")
	}
	// Clearing the input after parsing must not affect the parsed key.
	in := f.sender.Bytes()
	k, err := f.s.ParsePrivateKey(in)
	if err != nil {
		t.Fatalf("ParsePrivateKey: %v", err)
	}
	clear(in)
	if !bytes.Equal(k.Bytes(), f.sender.Bytes()) {
		t.Errorf("parsed private key aliases its input")
	}
}

// garbage returns malformed key encodings around the length n: nil, empty,
// short, long, and random strings of every length up to n+33 except n.
func garbage(t *testing.T, valid []byte) map[string][]byte {
	n := len(valid)
	if n == 0 {
		t.Fatal("key encodes as zero bytes")
	}
	m := map[string][]byte{
		"nil":             nil,
		"empty":           {},
		"one zero byte":   {0},
		"one 0xff byte":   {0xff},
		"valid minus one": bytes.Clone(valid[:n-1]),
		"valid plus zero": append(bytes.Clone(valid), 0),
		"valid twice":     append(bytes.Clone(valid), valid...),
	}
	for l := 1; l <= n+33; l++ {
		if l == n {
			continue
		}
		b := make([]byte, l)
		fillRandom(t, b)
		m[fmt.Sprintf("random %d bytes", l)] = b
	}
	m["1 MiB"] = make([]byte, 1<<20)
	return m
}

func (f *fixture) testGarbagePublicKeys(t *testing.T) {
	valid := f.recipient.Public().Bytes()
	n := len(valid)
	for name, b := range garbage(t, valid) {
		f.expectMalformedPublic(t, name, b)
	}
	// All-0xFF is not a valid encoding of a point for any suite.
	f.expectMalformedPublic(t, "all 0xff", bytes.Repeat([]byte{0xff}, n))
	// Right-length strings may or may not be valid keys (for X25519 most
	// 32-byte strings are); if accepted, they must work.
	f.maybePublic(t, "all zero", make([]byte, n))
	for i := range 64 {
		b := make([]byte, n)
		fillRandom(t, b)
		f.maybePublic(t, fmt.Sprintf("random right length #%d", i), b)
	}
}

func (f *fixture) testGarbagePrivateKeys(t *testing.T) {
	valid := f.recipient.Bytes()
	n := len(valid)
	for name, b := range garbage(t, valid) {
		f.expectMalformedPrivate(t, name, b)
	}
	// Right-length strings may or may not be valid keys (for X25519 every
	// 32-byte string is a private key, even all-0xFF); if accepted, they
	// must work.
	f.maybePrivate(t, "all 0xff", bytes.Repeat([]byte{0xff}, n))
	f.maybePrivate(t, "all zero", make([]byte, n))
	for i := range 64 {
		b := make([]byte, n)
		fillRandom(t, b)
		f.maybePrivate(t, fmt.Sprintf("random right length #%d", i), b)
	}
}

func (f *fixture) parsePublic(t *testing.T, what string, b []byte) (k crypto.PublicKey, ok bool, err error) {
	t.Helper()
	if p := catch(func() { k, err = f.s.ParsePublicKey(b) }); p != nil {
		t.Errorf("ParsePublicKey(%s) panicked: %v", what, p)
		return nil, false, nil
	}
	if err != nil && !errors.Is(err, crypto.ErrMalformedKey) {
		t.Errorf("ParsePublicKey(%s) error = %v, want one wrapping crypto.ErrMalformedKey", what, err)
		return nil, false, err
	}
	if err != nil && k != nil {
		t.Errorf("ParsePublicKey(%s) returned a key along with error %v", what, err)
		return nil, false, err
	}
	if err == nil && k == nil {
		t.Errorf("ParsePublicKey(%s) returned neither a key nor an error", what)
		return nil, false, nil
	}
	return k, true, err
}

func (f *fixture) parsePrivate(t *testing.T, what string, b []byte) (k crypto.PrivateKey, ok bool, err error) {
	t.Helper()
	if p := catch(func() { k, err = f.s.ParsePrivateKey(b) }); p != nil {
		t.Errorf("ParsePrivateKey(%s) panicked: %v", what, p)
		return nil, false, nil
	}
	if err != nil && !errors.Is(err, crypto.ErrMalformedKey) {
		t.Errorf("ParsePrivateKey(%s) error = %v, want one wrapping crypto.ErrMalformedKey", what, err)
		return nil, false, err
	}
	if err != nil && k != nil {
		t.Errorf("ParsePrivateKey(%s) returned a key along with error %v", what, err)
		return nil, false, err
	}
	if err == nil && (k == nil || k.Public() == nil) {
		t.Errorf("ParsePrivateKey(%s) returned neither a usable key nor an error", what)
		return nil, false, nil
	}
	return k, true, err
}

func (f *fixture) expectMalformedPublic(t *testing.T, what string, b []byte) {
	t.Helper()
	if _, ok, err := f.parsePublic(t, what, b); ok && err == nil {
		t.Errorf("ParsePublicKey(%s) accepted %d bytes %.16x...", what, len(b), b)
	}
}

func (f *fixture) expectMalformedPrivate(t *testing.T, what string, b []byte) {
	t.Helper()
	if _, ok, err := f.parsePrivate(t, what, b); ok && err == nil {
		t.Errorf("ParsePrivateKey(%s) accepted %d bytes", what, len(b))
	}
}

// maybePublic allows b to parse or not; a key that parses must re-encode
// to b and be usable as a recipient.
func (f *fixture) maybePublic(t *testing.T, what string, b []byte) {
	t.Helper()
	k, ok, err := f.parsePublic(t, what, b)
	if !ok || err != nil {
		return
	}
	if !bytes.Equal(k.Bytes(), b) {
		t.Errorf("ParsePublicKey(%s) accepted %x but encodes it as %x", what, b, k.Bytes())
	}
	if p := catch(func() { _, _, err = f.s.Seal(nil, k, f.sender, f.info, f.aad, f.msg) }); p != nil {
		t.Errorf("Seal to accepted public key %s (%x) panicked: %v", what, b, p)
	} else if err != nil {
		t.Errorf("Seal to accepted public key %s (%x): %v", what, b, err)
	}
}

// maybePrivate allows b to parse or not; a key that parses must re-encode to
// b, and seal to and open from the fixture recipient.
func (f *fixture) maybePrivate(t *testing.T, what string, b []byte) {
	t.Helper()
	k, ok, err := f.parsePrivate(t, what, b)
	if !ok || err != nil {
		return
	}
	if !bytes.Equal(k.Bytes(), b) {
		t.Errorf("ParsePrivateKey(%s) does not re-encode to its input", what)
	}
	if p := catch(func() {
		var ct, pt []byte
		ct, _, err = f.s.Seal(nil, f.recipient.Public(), k, f.info, f.aad, f.msg)
		if err != nil {
			return
		}
		pt, _, err = f.s.Open(f.recipient, k.Public(), f.info, f.aad, ct)
		if err == nil && !bytes.Equal(pt, f.msg) {
			err = errors.New("wrong plaintext")
		}
	}); p != nil {
		t.Errorf("using accepted private key %s panicked: %v", what, p)
	} else if err != nil {
		t.Errorf("using accepted private key %s: %v", what, err)
	}
}

// foreignPublicKey and foreignPrivateKey are keys of a suite that is not the
// one under test. Their encoding copies a real key's, so a suite that
// re-parsed any crypto.PublicKey from its Bytes would wrongly accept them.
type foreignPublicKey struct{ b []byte }

func (k *foreignPublicKey) Bytes() []byte { return k.b }

type foreignPrivateKey struct {
	b   []byte
	pub *foreignPublicKey
}

func (k *foreignPrivateKey) Public() crypto.PublicKey { return k.pub }
func (k *foreignPrivateKey) Bytes() []byte            { return k.b }

func (f *fixture) testForeignKeys(t *testing.T) {
	fakeSender := &foreignPrivateKey{b: f.sender.Bytes(), pub: &foreignPublicKey{b: f.sender.Public().Bytes()}}
	fakeRecipient := &foreignPrivateKey{b: f.recipient.Bytes(), pub: &foreignPublicKey{b: f.recipient.Public().Bytes()}}
	f.expectWrongSuite(t, "fake", fakeSender, fakeRecipient)

	// Keys of every other registered suite.
	for _, name := range crypto.Names() {
		if name == f.s.Name() {
			continue
		}
		other, err := crypto.Lookup(name)
		if err != nil {
			t.Errorf("Lookup(%q): %v", name, err)
			continue
		}
		f.expectWrongSuite(t, name, mustGenerate(t, other), mustGenerate(t, other))
	}
}

func (f *fixture) expectWrongSuite(t *testing.T, what string, sender, recipient crypto.PrivateKey) {
	t.Helper()
	ct, _ := f.seal(t, f.msg)
	cases := []struct {
		name string
		fn   func() ([]byte, []byte, error)
	}{
		{"Seal to foreign recipient", func() ([]byte, []byte, error) {
			return f.s.Seal(nil, recipient.Public(), f.sender, f.info, f.aad, f.msg)
		}},
		{"Seal from foreign sender", func() ([]byte, []byte, error) {
			return f.s.Seal(nil, f.recipient.Public(), sender, f.info, f.aad, f.msg)
		}},
		{"Open with foreign recipient", func() ([]byte, []byte, error) {
			return f.s.Open(recipient, f.sender.Public(), f.info, f.aad, ct)
		}},
		{"Open from foreign sender", func() ([]byte, []byte, error) {
			return f.s.Open(f.recipient, sender.Public(), f.info, f.aad, ct)
		}},
	}
	for _, c := range cases {
		var (
			a, b []byte
			err  error
		)
		if p := catch(func() { a, b, err = c.fn() }); p != nil {
			t.Errorf("%s (%s key) panicked: %v", c.name, what, p)
			continue
		}
		if !errors.Is(err, crypto.ErrWrongSuite) {
			t.Errorf("%s (%s key): error = %v, want one wrapping crypto.ErrWrongSuite", c.name, what, err)
		}
		if a != nil || b != nil {
			t.Errorf("%s (%s key): returned data along with an error", c.name, what)
		}
	}
}

func (f *fixture) testNilKeys(t *testing.T) {
	ct, _ := f.seal(t, f.msg)
	cases := []struct {
		name string
		fn   func() ([]byte, []byte, error)
	}{
		{"Seal to nil", func() ([]byte, []byte, error) { return f.s.Seal(nil, nil, f.sender, f.info, f.aad, f.msg) }},
		{"Seal from nil", func() ([]byte, []byte, error) {
			return f.s.Seal(nil, f.recipient.Public(), nil, f.info, f.aad, f.msg)
		}},
		{"Open with nil", func() ([]byte, []byte, error) { return f.s.Open(nil, f.sender.Public(), f.info, f.aad, ct) }},
		{"Open from nil", func() ([]byte, []byte, error) { return f.s.Open(f.recipient, nil, f.info, f.aad, ct) }},
	}
	for _, c := range cases {
		var err error
		if p := catch(func() { _, _, err = c.fn() }); p != nil {
			t.Errorf("%s panicked: %v", c.name, p)
		} else if err == nil {
			t.Errorf("%s succeeded", c.name)
		}
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("backendtest: no randomness") }

func (f *fixture) testRandomness(t *testing.T) {
	readers := map[string]func() io.Reader{
		"failing": func() io.Reader { return failingReader{} },
		"empty":   func() io.Reader { return bytes.NewReader(nil) },
		"5 bytes": func() io.Reader { return bytes.NewReader([]byte{1, 2, 3, 4, 5}) },
	}
	for name, r := range readers {
		var (
			ct, secret []byte
			k          crypto.PrivateKey
			err        error
		)
		if p := catch(func() { ct, secret, err = f.s.Seal(r(), f.recipient.Public(), f.sender, f.info, f.aad, f.msg) }); p != nil {
			t.Errorf("Seal with %s reader panicked: %v", name, p)
		} else if err == nil || ct != nil || secret != nil {
			t.Errorf("Seal with %s reader: err = %v, %d-byte ciphertext; want an error and nothing else", name, err, len(ct))
		}
		if p := catch(func() { k, err = f.s.GenerateKey(r()) }); p != nil {
			t.Errorf("GenerateKey with %s reader panicked: %v", name, p)
		} else if err == nil || k != nil {
			t.Errorf("GenerateKey with %s reader: err = %v; want an error and no key", name, err)
		}
	}
	// The default reader works and keys differ.
	a, b := mustGenerate(t, f.s), mustGenerate(t, f.s)
	if bytes.Equal(a.Bytes(), b.Bytes()) || bytes.Equal(a.Public().Bytes(), b.Public().Bytes()) {
		t.Errorf("two generated keys are equal")
	}
	// An explicit reader is used.
	if _, _, err := f.s.Seal(cryptorand.Reader, f.recipient.Public(), f.sender, f.info, f.aad, f.msg); err != nil {
		t.Errorf("Seal with crypto/rand.Reader: %v", err)
	}
	if _, err := f.s.GenerateKey(cryptorand.Reader); err != nil {
		t.Errorf("GenerateKey with crypto/rand.Reader: %v", err)
	}
}

func (f *fixture) testConcurrent(t *testing.T) {
	// Keys parsed from bytes as well as generated ones: a key type may
	// cache derived values lazily, which is only safe if done before
	// sharing.
	sender, err := f.s.ParsePrivateKey(f.sender.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	recipient, err := f.s.ParsePrivateKey(f.recipient.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	recipientPub, err := f.s.ParsePublicKey(f.recipient.Public().Bytes())
	if err != nil {
		t.Fatal(err)
	}
	shared, sharedSecret := f.seal(t, f.msg)

	const goroutines, rounds = 16, 8
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for r := range rounds {
				msg := fmt.Appendf(nil, "goroutine %d round %d", g, r)
				// Alternate between the parsed and the original keys.
				var (
					from crypto.PrivateKey = sender
					to   crypto.PublicKey  = recipientPub
					dec  crypto.PrivateKey = recipient
				)
				if r%2 == 1 {
					from, to, dec = f.sender, f.recipient.Public(), f.recipient
				}
				ct, s1, err := f.s.Seal(nil, to, from, f.info, f.aad, msg)
				if err != nil {
					t.Errorf("goroutine %d: Seal: %v", g, err)
					return
				}
				pt, s2, err := f.s.Open(dec, from.Public(), f.info, f.aad, ct)
				if err != nil || !bytes.Equal(pt, msg) || !bytes.Equal(s1, s2) {
					t.Errorf("goroutine %d: Open: %q, %v", g, pt, err)
					return
				}
				pt, s3, err := f.s.Open(dec, f.sender.Public(), f.info, f.aad, shared)
				if err != nil || !bytes.Equal(pt, f.msg) || !bytes.Equal(s3, sharedSecret) {
					t.Errorf("goroutine %d: Open shared ciphertext: %q, %v", g, pt, err)
					return
				}
				_ = dec.Public().Bytes()
				_ = dec.Bytes()
			}
		})
	}
	wg.Wait()
}

// fillRandom fills b from crypto/rand.
func fillRandom(t *testing.T, b []byte) {
	t.Helper()
	if _, err := cryptorand.Read(b); err != nil {
		t.Fatal(err)
	}
}
