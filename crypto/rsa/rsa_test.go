package rsa_test

import (
	"bytes"
	stdcrypto "crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	cryptorand "crypto/rand"
	stdrsa "crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/dynkey/dynkey/crypto"
	"github.com/dynkey/dynkey/crypto/backendtest"
	"github.com/dynkey/dynkey/crypto/rsa"
)

var update = flag.Bool("update", false, "rewrite testdata/dynkey-rsa-2048.json from the current implementation (keeping its keys)")

// params describes a suite independently of the package under test.
type params struct {
	suite  crypto.Suite
	name   string
	bits   int
	k      int // modulus bytes
	pubLen int // PKIX encoding length
}

var allParams = []params{
	{rsa.RSA2048(), "rsa-2048", 2048, 256, 294},
	{rsa.RSA3072(), "rsa-3072", 3072, 384, 422},
	{rsa.RSA4096(), "rsa-4096", 4096, 512, 550},
}

func TestConformance2048(t *testing.T) { backendtest.Run(t, pooled(t, rsa.RSA2048())) }
func TestConformance3072(t *testing.T) { backendtest.Run(t, pooled(t, rsa.RSA3072())) }

// TestConformance4096 is skipped with -short: a 4096-bit key takes 0.5 to 2
// seconds to generate, and the conformance suite generates several.
func TestConformance4096(t *testing.T) {
	if testing.Short() {
		t.Skip("rsa-4096 key generation is slow; skipped in -short mode")
	}
	backendtest.Run(t, pooled(t, rsa.RSA4096()))
}

// pooledSuite is a suite whose GenerateKey(nil) hands out keys from a
// small pool of distinct keys, in turn, instead of generating one: the
// conformance suite asks for seven keys of the suite under test, and RSA
// key generation dominates the package's test time. Every other method,
// and GenerateKey with a non-nil reader, is the real suite's. The keys come
// from the real GenerateKey (cachedKey). (The conformance suite's
// ForeignKeys test still generates real keys of the other registered
// suites, through crypto.Lookup.)
type pooledSuite struct {
	crypto.Suite
	mu   sync.Mutex
	keys []crypto.PrivateKey
	next int
}

const poolSize = 4

func pooled(t *testing.T, s crypto.Suite) *pooledSuite {
	p := &pooledSuite{Suite: s}
	for i := range poolSize {
		p.keys = append(p.keys, cachedKey(t, s, i))
	}
	return p
}

func (p *pooledSuite) GenerateKey(r io.Reader) (crypto.PrivateKey, error) {
	if r != nil {
		return p.Suite.GenerateKey(r)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	k := p.keys[p.next%len(p.keys)]
	p.next++
	return k, nil
}

func BenchmarkRSA2048(b *testing.B) { backendtest.Bench(b, rsa.RSA2048()) }
func BenchmarkRSA3072(b *testing.B) { backendtest.Bench(b, rsa.RSA3072()) }

// keyCache holds generated keys shared by the package's own tests (not the
// conformance suite, which generates its own), so that each size is
// generated only a few times per run.
var keyCache struct {
	sync.Mutex
	keys map[string][]crypto.PrivateKey
}

// cachedKey returns the i-th cached key of s, generating it on first use.
func cachedKey(t testing.TB, s crypto.Suite, i int) crypto.PrivateKey {
	t.Helper()
	keyCache.Lock()
	defer keyCache.Unlock()
	if keyCache.keys == nil {
		keyCache.keys = map[string][]crypto.PrivateKey{}
	}
	for len(keyCache.keys[s.Name()]) <= i {
		k, err := s.GenerateKey(nil)
		if err != nil {
			t.Fatalf("GenerateKey: %v", err)
		}
		keyCache.keys[s.Name()] = append(keyCache.keys[s.Name()], k)
	}
	return keyCache.keys[s.Name()][i]
}

// paramsShort returns the suites to test, without rsa-4096 in -short mode.
func paramsShort() []params {
	if testing.Short() {
		return allParams[:2]
	}
	return allParams
}

func TestRegistered(t *testing.T) {
	for _, p := range allParams {
		got, err := crypto.Lookup(p.name)
		if err != nil {
			t.Fatalf("Lookup(%q): %v", p.name, err)
		}
		if got != p.suite || got.Name() != p.name {
			t.Errorf("Lookup(%q) = %v, want %v", p.name, got, p.suite)
		}
	}
	if rsa.RSA2048().Name() != rsa.Name2048 || rsa.RSA3072().Name() != rsa.Name3072 || rsa.RSA4096().Name() != rsa.Name4096 {
		t.Errorf("Name constants do not match")
	}
}

// TestSizes checks the sizes the package documentation states: the public
// key length, the modulus, and the ciphertext overhead 2k + 28.
func TestSizes(t *testing.T) {
	for _, p := range paramsShort() {
		t.Run(p.name, func(t *testing.T) {
			k := cachedKey(t, p.suite, 0)
			pub := k.Public().Bytes()
			if len(pub) != p.pubLen {
				t.Errorf("public key is %d bytes, want %d", len(pub), p.pubLen)
			}
			parsed, err := x509.ParsePKIXPublicKey(pub)
			if err != nil {
				t.Fatal(err)
			}
			rk := parsed.(*stdrsa.PublicKey)
			if rk.N.BitLen() != p.bits || rk.E != 65537 || rk.Size() != p.k {
				t.Errorf("key: %d bits, e = %d", rk.N.BitLen(), rk.E)
			}
			priv := k.Bytes()
			if _, err := x509.ParsePKCS8PrivateKey(priv); err != nil {
				t.Errorf("private key is not PKCS #8: %v", err)
			}
			t.Logf("%s: public key %d bytes, private key %d bytes, overhead %d bytes", p.name, len(pub), len(priv), 2*p.k+28)
			for _, n := range []int{0, 1, 1000} {
				ct, _, err := p.suite.Seal(nil, k.Public(), k, nil, nil, make([]byte, n))
				if err != nil {
					t.Fatal(err)
				}
				if len(ct) != n+2*p.k+28 {
					t.Errorf("%d-byte message: ciphertext %d bytes, want %d", n, len(ct), n+2*p.k+28)
				}
			}
		})
	}
}

// TestWrongModulusSize gives each suite keys of the other sizes.
func TestWrongModulusSize(t *testing.T) {
	ps := paramsShort()
	for _, p := range ps {
		for _, q := range ps {
			if p.name == q.name {
				continue
			}
			k := cachedKey(t, q.suite, 0)
			if _, err := p.suite.ParsePublicKey(k.Public().Bytes()); !errors.Is(err, crypto.ErrMalformedKey) {
				t.Errorf("%s ParsePublicKey(%s key): %v, want ErrMalformedKey", p.name, q.name, err)
			}
			if _, err := p.suite.ParsePrivateKey(k.Bytes()); !errors.Is(err, crypto.ErrMalformedKey) {
				t.Errorf("%s ParsePrivateKey(%s key): %v, want ErrMalformedKey", p.name, q.name, err)
			}
			if _, _, err := p.suite.Seal(nil, k.Public(), cachedKey(t, p.suite, 0), nil, nil, nil); !errors.Is(err, crypto.ErrWrongSuite) {
				t.Errorf("%s Seal to %s key: %v, want ErrWrongSuite", p.name, q.name, err)
			}
		}
	}
}

// TestRejectedKeys checks keys that are valid RSA or PKIX/PKCS #8 but not
// what a suite accepts.
func TestRejectedKeys(t *testing.T) {
	s := rsa.RSA2048()
	good := cachedKey(t, s, 0)
	goodKey, err := x509.ParsePKCS8PrivateKey(good.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	rk := goodKey.(*stdrsa.PrivateKey)

	ec, err := ecdsa.GenerateKey(elliptic.P256(), cryptorand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecPub, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	ecPriv, _ := x509.MarshalPKCS8PrivateKey(ec)

	// The same modulus with e = 3 (not a usable key pair, but a
	// well-formed public key).
	e3 := stdrsa.PublicKey{N: rk.N, E: 3}
	e3Pub, err := x509.MarshalPKIXPublicKey(&e3)
	if err != nil {
		t.Fatal(err)
	}
	// A 2047-bit modulus.
	short := stdrsa.PublicKey{N: new(big.Int).Rsh(rk.N, 1), E: 65537}
	shortPub, _ := x509.MarshalPKIXPublicKey(&short)

	pub := good.Public().Bytes()
	priv := good.Bytes()
	pkcs1 := x509.MarshalPKCS1PrivateKey(rk)
	pkcs1Pub := x509.MarshalPKCS1PublicKey(&rk.PublicKey)

	publics := map[string][]byte{
		"ECDSA PKIX":            ecPub,
		"e = 3":                 e3Pub,
		"2047-bit modulus":      shortPub,
		"PKCS #1 public key":    pkcs1Pub,
		"trailing zero":         append(bytes.Clone(pub), 0),
		"private key as public": priv,
		"last byte flipped":     flipLast(pub),
	}
	for name, b := range publics {
		if k, err := s.ParsePublicKey(b); !errors.Is(err, crypto.ErrMalformedKey) || k != nil {
			t.Errorf("ParsePublicKey(%s) = %v, %v; want ErrMalformedKey", name, k, err)
		}
	}
	privates := map[string][]byte{
		"ECDSA PKCS #8":         ecPriv,
		"PKCS #1":               pkcs1,
		"trailing zero":         append(bytes.Clone(priv), 0),
		"public key as private": pub,
		"last byte flipped":     flipLast(priv),
	}
	for name, b := range privates {
		if k, err := s.ParsePrivateKey(b); !errors.Is(err, crypto.ErrMalformedKey) || k != nil {
			t.Errorf("ParsePrivateKey(%s) = %v, %v; want ErrMalformedKey", name, k, err)
		}
	}
}

func flipLast(b []byte) []byte {
	c := bytes.Clone(b)
	c[len(c)-1] ^= 1
	return c
}

// TestGenerateKeyReader checks that GenerateKey refuses readers it would
// not use and accepts the default ones.
func TestGenerateKeyReader(t *testing.T) {
	s := rsa.RSA2048()
	for name, r := range map[string]io.Reader{
		"bytes.Reader":   bytes.NewReader(make([]byte, 1<<16)),
		"zero reader":    zeroReader{},
		"func-typed":     readerFunc(cryptorand.Read),
		"uncomparable":   uncomparableReader{nil},
		"wrapped crypto": struct{ io.Reader }{cryptorand.Reader},
	} {
		if k, err := s.GenerateKey(r); err == nil || k != nil {
			t.Errorf("GenerateKey(%s) = %v, %v; want an error", name, k, err)
		}
	}
	for name, r := range map[string]io.Reader{"nil": nil, "crypto/rand.Reader": cryptorand.Reader} {
		if _, err := s.GenerateKey(r); err != nil {
			t.Errorf("GenerateKey(%s): %v", name, err)
		}
	}
}

type zeroReader struct{}

func (zeroReader) Read(b []byte) (int, error) { clear(b); return len(b), nil }

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(b []byte) (int, error) { return f(b) }

type uncomparableReader struct{ b []byte }

func (uncomparableReader) Read(b []byte) (int, error) { clear(b); return len(b), nil }

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += n
	return n, err
}

// TestSealReadsExactly checks that Seal reads exactly 108 bytes from rand,
// and that the same bytes give the same ciphertext.
func TestSealReadsExactly(t *testing.T) {
	s := rsa.RSA2048()
	skS, skR := cachedKey(t, s, 0), cachedKey(t, s, 1)
	rnd := make([]byte, 108)
	for i := range rnd {
		rnd[i] = byte(i)
	}
	var outs [][]byte
	for range 2 {
		r := &countingReader{r: bytes.NewReader(rnd)}
		ct, _, err := s.Seal(r, skR.Public(), skS, []byte("info"), []byte("aad"), []byte("msg"))
		if err != nil {
			t.Fatal(err)
		}
		if r.n != 108 {
			t.Errorf("Seal read %d bytes, want 108", r.n)
		}
		outs = append(outs, ct)
	}
	if !bytes.Equal(outs[0], outs[1]) {
		t.Errorf("Seal with the same random bytes gave different ciphertexts")
	}
	// One byte short fails.
	if _, _, err := s.Seal(bytes.NewReader(rnd[:107]), skR.Public(), skS, nil, nil, nil); err == nil {
		t.Errorf("Seal with 107 random bytes succeeded")
	}
}

// TestOpenErrorsIndistinguishable checks that every authentication failure
// returns exactly crypto.ErrOpen.
func TestOpenErrorsIndistinguishable(t *testing.T) {
	s := rsa.RSA2048()
	skS, skR, other := cachedKey(t, s, 0), cachedKey(t, s, 1), cachedKey(t, s, 2)
	info, aad := []byte("info"), []byte("aad")
	ct, _, err := s.Seal(nil, skR.Public(), skS, info, aad, []byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	k := 256
	mod := func(i int) []byte { c := bytes.Clone(ct); c[i] ^= 1; return c }
	cases := map[string][]byte{
		"empty":       nil,
		"short":       ct[:2*k+27],
		"bad wrapped": mod(0),
		"bad nonce":   mod(k),
		"bad ct":      mod(k + 12),
		"bad tag":     mod(len(ct) - k - 1),
		"bad sig":     mod(len(ct) - 1),
		"zero sig":    append(bytes.Clone(ct[:len(ct)-k]), make([]byte, k)...),
		"max sig":     append(bytes.Clone(ct[:len(ct)-k]), bytes.Repeat([]byte{0xff}, k)...),
	}
	for name, c := range cases {
		if _, _, err := s.Open(skR, skS.Public(), info, aad, c); err != crypto.ErrOpen {
			t.Errorf("%s: error %v, want exactly crypto.ErrOpen", name, err)
		}
	}
	if _, _, err := s.Open(other, skS.Public(), info, aad, ct); err != crypto.ErrOpen {
		t.Errorf("wrong recipient: %v", err)
	}
	if _, _, err := s.Open(skR, other.Public(), info, aad, ct); err != crypto.ErrOpen {
		t.Errorf("wrong sender: %v", err)
	}
}

// TestResignedByAnother checks the sender binding: someone who strips the
// sender's signature and signs the same wrapped key, nonce and ciphertext
// with their own key cannot pass the message off as theirs.
func TestResignedByAnother(t *testing.T) {
	s := rsa.RSA2048()
	skS, skR, mallory := cachedKey(t, s, 0), cachedKey(t, s, 1), cachedKey(t, s, 2)
	info, aad := []byte("info"), []byte("aad")
	ct, _, err := s.Seal(nil, skR.Public(), skS, info, aad, []byte("transfer 10 to bob"))
	if err != nil {
		t.Fatal(err)
	}
	k := 256
	body := ct[:len(ct)-k]
	wrapped, nonce, gcm := body[:k], body[k:k+12], body[k+12:]
	// Mallory's signature over the transcript as if she were the sender.
	digest := transcriptDigest(s.Name(), info, aad, mallory.Public().Bytes(), skR.Public().Bytes(), wrapped, nonce, gcm)
	sig, err := stdrsa.SignPSS(cryptorand.Reader, stdKey(t, mallory), stdcrypto.SHA256, digest, &stdrsa.PSSOptions{SaltLength: 32})
	if err != nil {
		t.Fatal(err)
	}
	forged := append(bytes.Clone(body), sig...)
	if _, _, err := s.Open(skR, mallory.Public(), info, aad, forged); err != crypto.ErrOpen {
		t.Errorf("message re-signed by another key opened: %v", err)
	}
}

func stdKey(t testing.TB, k crypto.PrivateKey) *stdrsa.PrivateKey {
	t.Helper()
	key, err := x509.ParsePKCS8PrivateKey(k.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return key.(*stdrsa.PrivateKey)
}

// lp is the length prefix of the wire format, written out independently of
// the package: an 8-byte big-endian length, then the bytes.
func lp(b []byte) []byte {
	return append(binary.BigEndian.AppendUint64(nil, uint64(len(b))), b...)
}

func header(name string, info, aad, pkS, pkR []byte) []byte {
	var h []byte
	for _, part := range [][]byte{[]byte("dynkey/v1 rsa"), []byte(name), info, aad, pkS, pkR} {
		h = append(h, lp(part)...)
	}
	return h
}

func transcriptDigest(name string, info, aad, pkS, pkR, wrapped, nonce, ct []byte) []byte {
	m := header(name, info, aad, pkS, pkR)
	m = append(m, lp(wrapped)...)
	m = append(m, lp(nonce)...)
	m = append(m, lp(ct)...)
	d := sha256.Sum256(m)
	return d[:]
}

// hexBytes is a byte string encoded in JSON as hex.
type hexBytes []byte

func (h hexBytes) MarshalText() ([]byte, error) { return []byte(hex.EncodeToString(h)), nil }
func (h *hexBytes) UnmarshalText(b []byte) error {
	d, err := hex.DecodeString(string(b))
	*h = d
	return err
}

// vector is the content of testdata/dynkey-rsa-2048.json.
type vector struct {
	Comment    string   `json:"comment"`
	Suite      string   `json:"suite"`
	SkS        hexBytes `json:"skS_pkcs8"`
	PkS        hexBytes `json:"pkS_pkix"`
	SkR        hexBytes `json:"skR_pkcs8"`
	PkR        hexBytes `json:"pkR_pkix"`
	Info       hexBytes `json:"info"`
	AAD        hexBytes `json:"aad"`
	PT         hexBytes `json:"pt"`
	AESKey     hexBytes `json:"aes_key"`
	Nonce      hexBytes `json:"nonce"`
	OAEPSeed   hexBytes `json:"oaep_seed"`
	PSSSalt    hexBytes `json:"pss_salt"`
	Context    hexBytes `json:"context"`
	Wrapped    hexBytes `json:"wrapped"`
	GCM        hexBytes `json:"gcm_ct"`
	Signature  hexBytes `json:"signature"`
	Ciphertext hexBytes `json:"ciphertext"`
	Secret     hexBytes `json:"secret"`
}

const vectorFile = "dynkey-rsa-2048.json"

func seed(role string, n int) []byte {
	var out []byte
	for i := 0; len(out) < n; i++ {
		h := sha256.Sum256(fmt.Appendf(nil, "dynkey/v1 test vector rsa-2048 %s %d", role, i))
		out = append(out, h[:]...)
	}
	return out[:n]
}

// buildVector computes the vector from fixed keys and fixed randomness
// through the package.
func buildVector(t *testing.T, skS, skR []byte) vector {
	t.Helper()
	s := rsa.RSA2048()
	v := vector{
		Comment: "dynkey rsa-2048 Seal/Open vector. Keys are fixed (RSA key generation is not reproducible) and given as PKCS #8 / PKIX DER. " +
			"Seal read aes_key || nonce || oaep_seed || pss_salt from its rand, in that order; context = SHA-256(header); " +
			"ciphertext = wrapped || nonce || gcm_ct || signature; secret = HKDF-SHA256(aes_key, no salt, \"dynkey/v1 message secret\", 32). " +
			"All byte strings are hex. Generated by go test ./crypto/rsa -run TestVector -update.",
		Suite:    s.Name(),
		SkS:      skS,
		SkR:      skR,
		Info:     []byte("dynkey/v1 request"),
		AAD:      []byte("POST /v1/secrets/db-password\nrequest-id: 7f3c2a"),
		PT:       []byte(`{"op":"get","name":"db-password","version":3}`),
		AESKey:   seed("aes key", 32),
		Nonce:    seed("nonce", 12),
		OAEPSeed: seed("oaep seed", 32),
		PSSSalt:  seed("pss salt", 32),
	}
	sender := mustParsePrivate(t, s, skS)
	recipient := mustParsePrivate(t, s, skR)
	v.PkS, v.PkR = sender.Public().Bytes(), recipient.Public().Bytes()
	rnd := bytes.Join([][]byte{v.AESKey, v.Nonce, v.OAEPSeed, v.PSSSalt}, nil)
	var err error
	v.Ciphertext, v.Secret, err = s.Seal(bytes.NewReader(rnd), recipient.Public(), sender, v.Info, v.AAD, v.PT)
	if err != nil {
		t.Fatal(err)
	}
	k := 256
	ctx := sha256.Sum256(header(s.Name(), v.Info, v.AAD, v.PkS, v.PkR))
	v.Context = ctx[:]
	v.Wrapped = v.Ciphertext[:k]
	v.GCM = v.Ciphertext[k+12 : len(v.Ciphertext)-k]
	v.Signature = v.Ciphertext[len(v.Ciphertext)-k:]
	return v
}

// TestVector checks testdata/dynkey-rsa-2048.json: Seal with the file's
// keys and randomness must reproduce it byte for byte, and every value is
// also checked with the standard library directly, independently of the
// package.
func TestVector(t *testing.T) {
	path := filepath.Join("testdata", vectorFile)
	var want vector
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatal(err)
		}
	case *update && errors.Is(err, os.ErrNotExist):
		want.SkS = cachedKey(t, rsa.RSA2048(), 0).Bytes()
		want.SkR = cachedKey(t, rsa.RSA2048(), 1).Bytes()
	default:
		t.Fatal(err)
	}
	got := buildVector(t, want.SkS, want.SkR)
	if *update {
		out, err := json.MarshalIndent(got, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, append(out, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", path)
		want = got
	}
	gotJSON, _ := json.MarshalIndent(got, "", "  ")
	wantJSON, _ := json.MarshalIndent(want, "", "  ")
	if !bytes.Equal(gotJSON, wantJSON) {
		t.Fatalf("Seal does not reproduce %s (a wire-format change?):\n got %s\nwant %s", path, gotJSON, wantJSON)
	}

	// The package opens it.
	s := rsa.RSA2048()
	pt, secret, err := s.Open(mustParsePrivate(t, s, want.SkR), mustParsePublic(t, s, want.PkS), want.Info, want.AAD, want.Ciphertext)
	if err != nil || !bytes.Equal(pt, want.PT) || !bytes.Equal(secret, want.Secret) {
		t.Fatalf("Open of the file's ciphertext: %q, %x, %v", pt, secret, err)
	}

	// The standard library, following the documented construction.
	skS := parseStdPrivate(t, want.SkS)
	skR := parseStdPrivate(t, want.SkR)
	if pub, _ := x509.MarshalPKIXPublicKey(&skS.PublicKey); !bytes.Equal(pub, want.PkS) {
		t.Errorf("pkS is not the PKIX encoding of skS")
	}
	if pub, _ := x509.MarshalPKIXPublicKey(&skR.PublicKey); !bytes.Equal(pub, want.PkR) {
		t.Errorf("pkR is not the PKIX encoding of skR")
	}
	ctx := sha256.Sum256(header(want.Suite, want.Info, want.AAD, want.PkS, want.PkR))
	if !bytes.Equal(ctx[:], want.Context) {
		t.Errorf("context = %x, want %x", ctx, want.Context)
	}
	wrapped, err := stdrsa.EncryptOAEP(sha256.New(), bytes.NewReader(want.OAEPSeed), &skR.PublicKey, want.AESKey, ctx[:])
	if err != nil || !bytes.Equal(wrapped, want.Wrapped) {
		t.Errorf("EncryptOAEP with the file's seed does not reproduce wrapped: %v", err)
	}
	key, err := stdrsa.DecryptOAEP(sha256.New(), nil, skR, want.Wrapped, ctx[:])
	if err != nil || !bytes.Equal(key, want.AESKey) {
		t.Errorf("DecryptOAEP(wrapped) = %x, %v; want the AES key", key, err)
	}
	block, _ := aes.NewCipher(want.AESKey)
	gcm, _ := cipher.NewGCM(block)
	if ct := gcm.Seal(nil, want.Nonce, want.PT, ctx[:]); !bytes.Equal(ct, want.GCM) {
		t.Errorf("GCM ciphertext = %x, want %x", ct, want.GCM)
	}
	digest := transcriptDigest(want.Suite, want.Info, want.AAD, want.PkS, want.PkR, want.Wrapped, want.Nonce, want.GCM)
	if err := stdrsa.VerifyPSS(&skS.PublicKey, stdcrypto.SHA256, digest, want.Signature, &stdrsa.PSSOptions{SaltLength: 32}); err != nil {
		t.Errorf("VerifyPSS: %v", err)
	}
	sig, err := stdrsa.SignPSS(bytes.NewReader(want.PSSSalt), skS, stdcrypto.SHA256, digest, &stdrsa.PSSOptions{SaltLength: 32})
	if err != nil || !bytes.Equal(sig, want.Signature) {
		t.Errorf("SignPSS with the file's salt does not reproduce the signature: %v", err)
	}
	if ct := bytes.Join([][]byte{want.Wrapped, want.Nonce, want.GCM, want.Signature}, nil); !bytes.Equal(ct, want.Ciphertext) {
		t.Errorf("ciphertext is not wrapped || nonce || gcm_ct || signature")
	}
	sec, err := hkdf.Key(sha256.New, want.AESKey, nil, "dynkey/v1 message secret", 32)
	if err != nil || !bytes.Equal(sec, want.Secret) {
		t.Errorf("HKDF secret = %x, want %x", sec, want.Secret)
	}
}

func parseStdPrivate(t *testing.T, der []byte) *stdrsa.PrivateKey {
	t.Helper()
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		t.Fatal(err)
	}
	return k.(*stdrsa.PrivateKey)
}

func mustParsePrivate(t *testing.T, s crypto.Suite, b []byte) crypto.PrivateKey {
	t.Helper()
	k, err := s.ParsePrivateKey(b)
	if err != nil {
		t.Fatalf("ParsePrivateKey: %v", err)
	}
	return k
}

func mustParsePublic(t *testing.T, s crypto.Suite, b []byte) crypto.PublicKey {
	t.Helper()
	k, err := s.ParsePublicKey(b)
	if err != nil {
		t.Fatalf("ParsePublicKey: %v", err)
	}
	return k
}

// TestStdlibInterop seals with the standard library directly, following the
// documented construction, and opens with the package.
func TestStdlibInterop(t *testing.T) {
	s := rsa.RSA3072()
	skS, skR := cachedKey(t, s, 0), cachedKey(t, s, 1)
	pkS, pkR := skS.Public().Bytes(), skR.Public().Bytes()
	info, aad, msg := []byte("i"), []byte("a"), []byte("hello from the standard library")

	key := make([]byte, 32)
	nonce := make([]byte, 12)
	cryptorand.Read(key)
	cryptorand.Read(nonce)
	ctx := sha256.Sum256(header(s.Name(), info, aad, pkS, pkR))
	wrapped, err := stdrsa.EncryptOAEP(sha256.New(), cryptorand.Reader, &stdKey(t, skR).PublicKey, key, ctx[:])
	if err != nil {
		t.Fatal(err)
	}
	block, _ := aes.NewCipher(key)
	gcm, _ := cipher.NewGCM(block)
	ct := gcm.Seal(nil, nonce, msg, ctx[:])
	sig, err := stdrsa.SignPSS(cryptorand.Reader, stdKey(t, skS), stdcrypto.SHA256, transcriptDigest(s.Name(), info, aad, pkS, pkR, wrapped, nonce, ct), &stdrsa.PSSOptions{SaltLength: 32})
	if err != nil {
		t.Fatal(err)
	}
	pt, secret, err := s.Open(skR, skS.Public(), info, aad, bytes.Join([][]byte{wrapped, nonce, ct, sig}, nil))
	if err != nil || !bytes.Equal(pt, msg) {
		t.Fatalf("Open: %q, %v", pt, err)
	}
	want, _ := hkdf.Key(sha256.New, key, nil, "dynkey/v1 message secret", 32)
	if !bytes.Equal(secret, want) {
		t.Errorf("secret %x, want %x", secret, want)
	}
}

func TestPrivateKeyNotPrinted(t *testing.T) {
	k := cachedKey(t, rsa.RSA2048(), 0)
	der := k.Bytes()
	secret := hex.EncodeToString(der)
	d := stdKey(t, k).D.String()
	for _, format := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q", "%d"} {
		out := fmt.Sprintf(format, k)
		if strings.Contains(strings.ToLower(out), secret[:64]) || strings.Contains(out, d[:20]) {
			t.Errorf("fmt %s prints the private key: %s", format, out)
		}
		if !strings.Contains(out, "redacted") {
			t.Errorf("fmt %s = %q", format, out)
		}
	}
	if out := fmt.Sprintf("%+v", struct{ K crypto.PrivateKey }{k}); strings.Contains(out, d[:20]) {
		t.Errorf("nested private key printed: %s", out)
	}
	if out := fmt.Sprint(k.Public()); !strings.HasPrefix(out, "rsa-2048 public key SHA256:") {
		t.Errorf("public key prints as %q", out)
	}
}

func TestBytesReturnsCopies(t *testing.T) {
	k := cachedKey(t, rsa.RSA2048(), 0)
	priv, pub := k.Bytes(), k.Public().Bytes()
	clear(priv)
	clear(pub)
	if bytes.Equal(k.Bytes(), priv) || bytes.Equal(k.Public().Bytes(), pub) {
		t.Errorf("clearing the result of Bytes changed the key")
	}
}

// FuzzOpen feeds arbitrary ciphertexts, info and aad to Open: it must fail
// with crypto.ErrOpen and never panic.
func FuzzOpen(f *testing.F) {
	s := rsa.RSA2048()
	skS, skR := cachedKey(f, s, 0), cachedKey(f, s, 1)
	ct, _, err := s.Seal(nil, skR.Public(), skS, []byte("i"), []byte("a"), []byte("hello"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ct, []byte("i"), []byte("a"))
	f.Add([]byte{}, []byte{}, []byte{})
	f.Add(make([]byte, 540), []byte{}, []byte{})
	f.Fuzz(func(t *testing.T, ct, info, aad []byte) {
		pt, secret, err := s.Open(skR, skS.Public(), info, aad, ct)
		if err == nil {
			if string(pt) != "hello" || len(secret) != crypto.SecretSize {
				t.Fatalf("Open accepted %x: %x", ct, pt)
			}
			return
		}
		if err != crypto.ErrOpen || pt != nil || secret != nil {
			t.Fatalf("Open = %x, %x, %v", pt, secret, err)
		}
	})
}

// FuzzParseKeys feeds arbitrary bytes to the key parsers: they must return
// a key or an error wrapping crypto.ErrMalformedKey, never panic, and
// accepted keys must re-encode to the input.
func FuzzParseKeys(f *testing.F) {
	s := rsa.RSA2048()
	k := cachedKey(f, s, 0)
	f.Add(k.Public().Bytes())
	f.Add(k.Bytes())
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0x30}, 294))
	f.Fuzz(func(t *testing.T, b []byte) {
		if k, err := s.ParsePublicKey(b); err != nil {
			if !errors.Is(err, crypto.ErrMalformedKey) || k != nil {
				t.Fatalf("ParsePublicKey: %v", err)
			}
		} else if !bytes.Equal(k.Bytes(), b) {
			t.Fatalf("ParsePublicKey(%x) re-encodes as %x", b, k.Bytes())
		}
		if k, err := s.ParsePrivateKey(b); err != nil {
			if !errors.Is(err, crypto.ErrMalformedKey) || k != nil {
				t.Fatalf("ParsePrivateKey: %v", err)
			}
		} else if !bytes.Equal(k.Bytes(), b) {
			t.Fatalf("ParsePrivateKey does not re-encode its input")
		}
	})
}
