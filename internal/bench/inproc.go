package bench

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/cloudflare/circl/hpke"
	"github.com/cloudflare/circl/kem"

	"github.com/dynkey/dynkey/middleware"
	"github.com/dynkey/dynkey/wire"
)

// opResult is what one in-process slice measured.
type opResult struct {
	ops     int
	errors  int
	elapsed time.Duration
	lat     []time.Duration
	before  usage
	after   usage
	err     error
}

// runOps calls op serially for d or until it reports done, reading this
// process's counters around the loop.
func runOps(d time.Duration, op func(i int) (done bool, err error)) opResult {
	var r opResult
	r.lat = make([]time.Duration, 0, 4096)
	r.before = readUsage()
	start := time.Now()
	deadline := start.Add(d)
	for i := 0; time.Now().Before(deadline); i++ {
		t0 := time.Now()
		done, err := op(i)
		if done {
			break
		}
		r.lat = append(r.lat, time.Since(t0))
		if err != nil {
			r.errors++
			if r.err == nil {
				r.err = err
			}
		}
	}
	r.elapsed = time.Since(start)
	r.after = readUsage()
	r.ops = len(r.lat)
	return r
}

// floor is the crypto floor of one dynkey request of an HPKE suite: exactly
// the public-key and AEAD operations the server performs, straight through
// circl and the standard library — HPKE auth-mode SetupAuthR + Open of the
// request, Export of the message secret, and the response: 12 random nonce
// bytes, HKDF-SHA256 of the response key and AES-256-GCM Seal of the body.
type floor struct {
	suite   hpke.Suite
	skR     kem.PrivateKey
	pkS     kem.PublicKey
	info    []byte
	aad     []byte
	msgs    [][]byte // enc || ciphertext
	encLen  int
	body    []byte
	respAAD []byte
}

// hpkeSuites are the suites with a floor: their circl parameters.
var hpkeSuites = map[string][3]uint16{
	"ecies-x25519": {uint16(hpke.KEM_X25519_HKDF_SHA256), uint16(hpke.KDF_HKDF_SHA256), uint16(hpke.AEAD_ChaCha20Poly1305)},
	"ecies-p256":   {uint16(hpke.KEM_P256_HKDF_SHA256), uint16(hpke.KDF_HKDF_SHA256), uint16(hpke.AEAD_AES128GCM)},
}

// newFloor prepares 64 distinct requests of bodySize bytes (plus the inner
// framing and a header-sized AAD, as dynkey's).
func newFloor(suiteName string, bodySize int) (*floor, error) {
	ids, ok := hpkeSuites[suiteName]
	if !ok {
		return nil, fmt.Errorf("dynkey/bench: no crypto floor for suite %q (HPKE suites only)", suiteName)
	}
	kemID := hpke.KEM(ids[0])
	s := hpke.NewSuite(kemID, hpke.KDF(ids[1]), hpke.AEAD(ids[2]))
	scheme := kemID.Scheme()
	pkR, skR, err := scheme.GenerateKeyPair()
	if err != nil {
		return nil, err
	}
	pkS, skS, err := scheme.GenerateKeyPair()
	if err != nil {
		return nil, err
	}
	f := &floor{suite: s, skR: skR, pkS: pkS, info: []byte(wire.InfoRequest), encLen: scheme.CiphertextSize()}
	f.aad = make([]byte, 160) // method, path, header with token: about what dynkey binds
	_, _ = rand.Read(f.aad)
	f.body = make([]byte, bodySize)
	f.respAAD = make([]byte, 6+wire.ResponseNonceSize+2+wire.MessageIDSize)
	pt := make([]byte, bodySize+24) // the inner framing around the body
	for range 64 {
		sender, err := s.NewSender(pkR, f.info)
		if err != nil {
			return nil, err
		}
		enc, sealer, err := sender.SetupAuth(rand.Reader, skS)
		if err != nil {
			return nil, err
		}
		ct, err := sealer.Seal(pt, f.aad)
		if err != nil {
			return nil, err
		}
		f.msgs = append(f.msgs, append(enc, ct...))
	}
	return f, nil
}

// op is one request's floor.
func (f *floor) op(i int) error {
	m := f.msgs[i%len(f.msgs)]
	r, err := f.suite.NewReceiver(f.skR, f.info)
	if err != nil {
		return err
	}
	opener, err := r.SetupAuth(m[:f.encLen], f.pkS)
	if err != nil {
		return err
	}
	if _, err := opener.Open(m[f.encLen:], f.aad); err != nil {
		return err
	}
	secret := opener.Export([]byte("dynkey/v1 message secret"), 32)
	var nonce [wire.ResponseNonceSize]byte
	if _, err := io.ReadFull(rand.Reader, nonce[:]); err != nil {
		return err
	}
	okm, err := hkdf.Key(sha256.New, secret, nonce[:], "dynkey/v1 response", 44)
	if err != nil {
		return err
	}
	block, err := aes.NewCipher(okm[:32])
	if err != nil {
		return err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return err
	}
	out := make([]byte, 0, len(f.body)+64)
	_ = aead.Seal(out, okm[32:], f.body, f.respAAD)
	return nil
}

// serverPath is dynkey's whole server-side handling of a request without
// HTTP: the middleware's http.Handler around an echo handler, called with
// an httptest recorder on envelopes sealed by the real client.
type serverPath struct {
	h http.Handler
}

func newServerPath(m *middleware.Middleware) *serverPath {
	return &serverPath{h: m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	}))}
}

// op handles one envelope.
func (p *serverPath) op(env []byte) error {
	req := httptest.NewRequest(http.MethodPost, echoPath, bytes.NewReader(env))
	req.Header.Set("Content-Type", wire.MediaType)
	rec := httptest.NewRecorder()
	p.h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != wire.MediaType {
		return fmt.Errorf("%w: HTTP %d: %.200s", errBadResponse, rec.Code, rec.Body.Bytes())
	}
	return nil
}
