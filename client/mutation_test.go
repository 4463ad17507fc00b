package client

// Package-level tests of the client's security checks, written so that
// mutation testing (docs/SECURITY.md, "Mutation testing") sees them: the
// end-to-end tests in internal/e2e exercise the same code, but gremlins only
// counts a package's own tests. Each test pins one decision — where an
// envelope travels, which requests may carry a rotation, which directory is
// trusted, which response is authentic, which refusal is retried and under
// which message id — against a real middleware on loopback where a server
// is needed.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/auth"
	"github.com/dynkey/dynkey/crypto"
	"github.com/dynkey/dynkey/middleware"
	"github.com/dynkey/dynkey/store/memory"
	"github.com/dynkey/dynkey/wire"
)

var mutQuiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestInHeaderChoice(t *testing.T) {
	// The largest envelope whose base64url encoding fits the header.
	fit := wire.MaxEnvelopeHeaderSize * 3 / 4
	require.LessOrEqual(t, base64.RawURLEncoding.EncodedLen(fit), wire.MaxEnvelopeHeaderSize)
	require.Greater(t, base64.RawURLEncoding.EncodedLen(fit+1), wire.MaxEnvelopeHeaderSize)
	tests := []struct {
		name    string
		mode    EnvelopeMode
		method  string
		bodyLen int
		envLen  int
		want    bool
	}{
		{"HEAD always", EnvelopeInBody, http.MethodHead, 0, 100, true},
		{"HEAD at the size bound", EnvelopeInBody, http.MethodHead, 0, fit, true},
		{"HEAD over the size bound", EnvelopeAuto, http.MethodHead, 0, fit + 1, false},
		{"in header: POST with a body", EnvelopeInHeader, http.MethodPost, 10, 100, true},
		{"in header: over the bound", EnvelopeInHeader, http.MethodPost, 10, fit + 1, false},
		{"in body: GET", EnvelopeInBody, http.MethodGet, 0, 100, false},
		{"auto: GET without body", EnvelopeAuto, http.MethodGet, 0, 100, true},
		{"auto: GET with a body", EnvelopeAuto, http.MethodGet, 1, 100, false},
		{"auto: DELETE without body", EnvelopeAuto, http.MethodDelete, 0, 100, true},
		{"auto: OPTIONS without body", EnvelopeAuto, http.MethodOptions, 0, 100, true},
		{"auto: POST without body", EnvelopeAuto, http.MethodPost, 0, 100, false},
		{"auto: PUT without body", EnvelopeAuto, http.MethodPut, 0, 100, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, inHeader(tc.mode, tc.method, tc.bodyLen, tc.envLen))
		})
	}
}

func TestMayCarryRotationByMethod(t *testing.T) {
	tests := []struct {
		method string
		want   bool
	}{
		{http.MethodGet, true}, {http.MethodPut, true}, {http.MethodDelete, true}, {http.MethodOptions, true},
		{http.MethodPost, false}, {http.MethodPatch, false}, {http.MethodHead, false},
		{http.MethodConnect, false}, {http.MethodTrace, false}, {"BREW", false},
	}
	for _, tc := range tests {
		t.Run(tc.method, func(t *testing.T) {
			require.Equal(t, tc.want, mayCarryRotation(tc.method))
		})
	}
}

func TestHeadProblemHeader(t *testing.T) {
	tests := []struct {
		name   string
		code   string
		status int
		ok     bool
	}{
		{"known code, its status", string(wire.CodeReplay), wire.CodeReplay.Status(), true},
		{"known code, another status", string(wire.CodeReplay), http.StatusConflict, false},
		{"unknown code", "made-up", http.StatusBadRequest, false},
		{"no header", "", http.StatusBadRequest, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := &http.Response{StatusCode: tc.status, Header: http.Header{}}
			if tc.code != "" {
				resp.Header.Set(wire.ProblemHeader, tc.code)
			}
			p, ok := headProblem(resp)
			require.Equal(t, tc.ok, ok)
			if ok {
				require.Equal(t, wire.Code(tc.code), p.Code)
			}
		})
	}
}

func TestReadAllLimitedBound(t *testing.T) {
	tests := []struct {
		name string
		n    int
		ok   bool
	}{
		{"empty", 0, true}, {"at the limit", 16, true}, {"one over", 17, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := readAllLimited(bytes.NewReader(make([]byte, tc.n)), 16)
			if tc.ok {
				require.NoError(t, err)
				require.Len(t, b, tc.n)
			} else {
				require.Error(t, err)
			}
		})
	}
}

// mutClock is a clock moved by hand.
type mutClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *mutClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *mutClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestServerClockEstimate(t *testing.T) {
	clk := &mutClock{t: time.Unix(1_800_000_000, 0)}
	c := &Client{cfg: Config{Now: clk.Now}}
	c.setServerTimeLocked(5000, clk.Now())
	s, e := c.serverNowLocked()
	require.Equal(t, uint64(5000), s)
	require.Equal(t, uint64(0), e)

	clk.Advance(1500 * time.Millisecond)
	s, e = c.serverNowLocked()
	require.Equal(t, uint64(5000), s)
	require.Equal(t, uint64(1500), e)

	// A reading before sTimeAt (a clock that went back) counts as 0, not
	// as a huge unsigned elapsed time.
	c.sTimeAt = clk.Now().Add(time.Second)
	_, e = c.serverNowLocked()
	require.Equal(t, uint64(0), e)

	// Only a positive server time is adopted.
	at := clk.Now()
	for _, ms := range []int64{0, -1, -5000} {
		c.setServerTimeLocked(ms, at.Add(time.Hour))
		require.Equal(t, uint64(5000), c.sTime, "s_time %d", ms)
		require.Equal(t, at.Add(time.Second), c.sTimeAt)
	}
	c.setServerTimeLocked(1, at)
	require.Equal(t, uint64(1), c.sTime)
}

// dirSigner signs directories for TestAcceptDirectory.
type dirSigner struct {
	t     *testing.T
	id    ed25519.PrivateKey
	suite crypto.Suite
}

func newDirSigner(t *testing.T) *dirSigner {
	_, id, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	s, err := crypto.Lookup("ecies-x25519")
	require.NoError(t, err)
	return &dirSigner{t: t, id: id, suite: s}
}

func (d *dirSigner) key() crypto.PrivateKey {
	k, err := d.suite.GenerateKey(rand.Reader)
	require.NoError(d.t, err)
	return k
}

func (d *dirSigner) sign(suite string, epoch uint64, sTime int64, pub []byte) *wire.SignedDirectory {
	id := wire.ComputeKeyID(suite, pub)
	sd, err := wire.SignDirectory(d.id, &wire.Directory{Version: 1, Epoch: epoch, Suite: suite, STime: sTime,
		Keys: []wire.DirectoryKey{{ID: id.String(), Public: pub, Status: wire.StatusPrimary}}})
	require.NoError(d.t, err)
	return sd
}

func TestAcceptDirectory(t *testing.T) {
	d := newDirSigner(t)
	other := newDirSigner(t)
	a, b := d.key().Public().Bytes(), d.key().Public().Bytes()
	idA := wire.ComputeKeyID("ecies-x25519", a)
	idB := wire.ComputeKeyID("ecies-x25519", b)
	at := time.Unix(1_800_000_000, 0)

	c, err := New(Config{BaseURL: "https://dynkey.invalid", Username: "u", Password: "p", HeartbeatInterval: -1,
		IdentityKey: d.id.Public().(ed25519.PublicKey), Logger: mutQuiet, Now: func() time.Time { return at }})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })

	accept := func(sd *wire.SignedDirectory, firstUse bool) (bool, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.acceptDirectoryLocked(sd, at, firstUse)
	}
	state := func() (uint64, wire.KeyID, uint64) {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.srv.epoch, c.srv.keyID, c.sTime
	}

	// First directory: adopted, not counted as a change.
	changed, err := accept(d.sign("ecies-x25519", 5, 1000, a), false)
	require.NoError(t, err)
	require.False(t, changed)
	ep, id, st := state()
	require.Equal(t, uint64(5), ep)
	require.Equal(t, idA, id)
	require.Equal(t, uint64(1000), st)

	// Signed by another identity: refused, even with firstUse (the pin wins).
	_, err = accept(other.sign("ecies-x25519", 9, 2000, b), true)
	require.ErrorIs(t, err, wire.ErrDirectory)
	// Another suite, correctly signed: refused (no downgrade).
	_, err = accept(d.sign("pq-mlkem768", 9, 2000, b), false)
	require.ErrorContains(t, err, "offers suite")
	// An older epoch: ignored, s_time not taken from it.
	changed, err = accept(d.sign("ecies-x25519", 4, 3000, b), false)
	require.NoError(t, err)
	require.False(t, changed)
	ep, id, st = state()
	require.Equal(t, uint64(5), ep)
	require.Equal(t, idA, id)
	require.Equal(t, uint64(1000), st)
	// The same epoch and key: its (newer) signed s_time is adopted — this is
	// how the client resyncs its clock after "stale".
	changed, err = accept(d.sign("ecies-x25519", 5, 4000, a), false)
	require.NoError(t, err)
	require.False(t, changed)
	_, _, st = state()
	require.Equal(t, uint64(4000), st)
	// A newer epoch with the same key: epoch follows, no change.
	changed, err = accept(d.sign("ecies-x25519", 6, 5000, a), false)
	require.NoError(t, err)
	require.False(t, changed)
	ep, id, _ = state()
	require.Equal(t, uint64(6), ep)
	require.Equal(t, idA, id)
	require.Equal(t, uint64(0), c.Stats().ServerKeyChanges)
	// A malformed primary key: refused.
	_, err = accept(d.sign("ecies-x25519", 7, 6000, []byte("not a key")), false)
	require.Error(t, err)
	// A newer epoch with another key: adopted and counted.
	changed, err = accept(d.sign("ecies-x25519", 7, 6000, b), false)
	require.NoError(t, err)
	require.True(t, changed)
	ep, id, _ = state()
	require.Equal(t, uint64(7), ep)
	require.Equal(t, idB, id)
	require.Equal(t, uint64(1), c.Stats().ServerKeyChanges)
}

func TestAcceptDirectoryTrustOnFirstUse(t *testing.T) {
	d := newDirSigner(t)
	other := newDirSigner(t)
	pub := d.key().Public().Bytes()
	at := time.Unix(1_800_000_000, 0)
	c, err := New(Config{BaseURL: "http://dynkey.invalid", Username: "u", Password: "p", HeartbeatInterval: -1,
		InsecureTrustOnFirstUseWithoutTLS: true, Logger: mutQuiet})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	c.mu.Lock()
	defer c.mu.Unlock()
	// Not a first use (a refusal's directory): no identity to trust yet.
	_, err = c.acceptDirectoryLocked(d.sign("ecies-x25519", 1, 1, pub), at, false)
	require.Error(t, err)
	require.Nil(t, c.srv)
	// First use: the directory's identity is adopted...
	_, err = c.acceptDirectoryLocked(d.sign("ecies-x25519", 1, 1, pub), at, true)
	require.NoError(t, err)
	require.Equal(t, d.id.Public(), c.srv.identity)
	// ...and from then on only that identity is trusted.
	_, err = c.acceptDirectoryLocked(other.sign("ecies-x25519", 2, 2, pub), at, true)
	require.ErrorIs(t, err, wire.ErrDirectory)
}

// ---------------------------------------------------------------------------
// Against a real middleware on loopback.

// mutServer is a middleware with a counting handler, on loopback.
type mutServer struct {
	url      string
	identity ed25519.PublicKey
	calls    atomic.Int64
}

func startMutServer(t *testing.T) *mutServer {
	t.Helper()
	users := auth.NewArgon2id(auth.Params{Time: 1, MemoryKiB: 1024, Threads: 1, SaltLen: 16, KeyLen: 32})
	require.NoError(t, users.AddUser("alice", "alice-pw"))
	m, err := middleware.New(middleware.Options{Store: memory.New(), Authenticator: users,
		KeyEncryptionKey: bytes.Repeat([]byte{0x42}, 32), MaintainInterval: -1, Logger: mutQuiet})
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	s := &mutServer{identity: m.IdentityPublicKey()}
	mux := http.NewServeMux()
	mux.Handle("/dynkey/", m.Endpoints())
	mux.Handle("/.well-known/dynkey/", m.Endpoints())
	mux.Handle("/api/", m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.calls.Add(1)
		if code, err := strconv.Atoi(r.URL.Query().Get("status")); err == nil {
			w.WriteHeader(code)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		if n, err := strconv.Atoi(r.URL.Query().Get("size")); err == nil {
			_, _ = w.Write(make([]byte, n))
			return
		}
		_, _ = io.WriteString(w, "hello")
	})))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

// hookTransport sends through http.DefaultTransport; hook, if set, sees
// every request to /api/ and may answer it itself (forward sends it on).
type hookTransport struct {
	mu   sync.Mutex
	hook func(req *http.Request, forward func() (*http.Response, error)) (*http.Response, error)
	ids  [][wire.MessageIDSize]byte // message ids of the /api/ requests, in order
}

func (h *hookTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !strings.HasPrefix(req.URL.Path, "/api/") {
		return http.DefaultTransport.RoundTrip(req)
	}
	var env []byte
	if v := req.Header.Get(wire.EnvelopeHeader); v != "" {
		env, _ = wire.DecodeHeaderEnvelope(v)
	} else if req.Body != nil {
		env, _ = io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(env))
	}
	h.mu.Lock()
	if r, err := wire.ParseRequest(env); err == nil {
		h.ids = append(h.ids, r.MessageID)
	}
	hook := h.hook
	h.mu.Unlock()
	forward := func() (*http.Response, error) { return http.DefaultTransport.RoundTrip(req) }
	if hook == nil {
		return forward()
	}
	return hook(req, forward)
}

func (h *hookTransport) sent() [][wire.MessageIDSize]byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([][wire.MessageIDSize]byte(nil), h.ids...)
}

func (h *hookTransport) setHook(f func(req *http.Request, forward func() (*http.Response, error)) (*http.Response, error)) {
	h.mu.Lock()
	h.hook, h.ids = f, nil
	h.mu.Unlock()
}

func newMutClient(t *testing.T, s *mutServer, tr http.RoundTripper) *Client {
	t.Helper()
	c, err := New(Config{BaseURL: s.url, Username: "alice", Password: "alice-pw", IdentityKey: s.identity,
		HeartbeatInterval: -1, Transport: tr, Logger: mutQuiet, Envelope: EnvelopeInBody})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func forgedProblem(req *http.Request, status int, p *wire.Problem) *http.Response {
	b, _ := json.Marshal(p)
	return &http.Response{StatusCode: status, Status: strconv.Itoa(status) + " " + http.StatusText(status),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {wire.ProblemMediaType}}, Body: io.NopCloser(bytes.NewReader(b)),
		ContentLength: int64(len(b)), Request: req}
}

func doReq(c *Client, method, target string) (*http.Response, error) {
	req, err := http.NewRequest(method, target, strings.NewReader("body"))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "text/plain")
	resp, err := c.HTTPClient().Do(req)
	if err == nil {
		_, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	return resp, err
}

// TestResponseAuthenticity tampers with genuine responses on the way back:
// the client accepts them only as sent.
func TestResponseAuthenticity(t *testing.T) {
	s := startMutServer(t)
	tr := &hookTransport{}
	c := newMutClient(t, s, tr)
	resp, err := doReq(c, http.MethodPost, s.url+"/api/x")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/plain", resp.Header.Get("Content-Type"))

	// A genuine 204 travels as 200 + Dynkey-Status: 204.
	resp, err = doReq(c, http.MethodPost, s.url+"/api/x?status=204")
	require.NoError(t, err)
	require.Equal(t, http.StatusNoContent, resp.StatusCode)

	tests := []struct {
		name   string
		target string
		tamper func(r *http.Response) *http.Response
	}{
		{"content type not the envelope's", "/api/x", func(r *http.Response) *http.Response {
			r.Header.Set("Content-Type", "text/plain")
			return r
		}},
		{"problem content type on a 200", "/api/x", func(r *http.Response) *http.Response {
			r.Header.Set("Content-Type", wire.ProblemMediaType)
			return r
		}},
		{"status header not a number", "/api/x?status=204", func(r *http.Response) *http.Response {
			r.Header.Set(wire.StatusHeader, "x204")
			return r
		}},
		{"status header for a status with a body", "/api/x", func(r *http.Response) *http.Response {
			r.Header.Set(wire.StatusHeader, "200")
			return r
		}},
		{"status header with an outer status not 200", "/api/x?status=204", func(r *http.Response) *http.Response {
			r.StatusCode = http.StatusAccepted
			return r
		}},
		{"status header dropped", "/api/x?status=204", func(r *http.Response) *http.Response {
			r.Header.Del(wire.StatusHeader)
			return r
		}},
		{"outer status changed", "/api/x", func(r *http.Response) *http.Response {
			r.StatusCode = http.StatusCreated
			return r
		}},
		{"body flipped", "/api/x", func(r *http.Response) *http.Response {
			b, _ := io.ReadAll(r.Body)
			b[len(b)-1] ^= 1
			r.Body = io.NopCloser(bytes.NewReader(b))
			return r
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr.setHook(func(req *http.Request, forward func() (*http.Response, error)) (*http.Response, error) {
				r, err := forward()
				if err != nil {
					return nil, err
				}
				return tc.tamper(r), nil
			})
			defer tr.setHook(nil)
			_, err := doReq(c, http.MethodPost, s.url+tc.target)
			require.ErrorIs(t, err, ErrResponseNotAuthentic)
		})
	}
}

// TestRefusalStatusBound: a problem body counts as a refusal only with an
// error status (4xx/5xx); with any other status it is not authentic.
func TestRefusalStatusBound(t *testing.T) {
	s := startMutServer(t)
	tr := &hookTransport{}
	c := newMutClient(t, s, tr)
	_, err := doReq(c, http.MethodPost, s.url+"/api/x")
	require.NoError(t, err)
	for _, status := range []int{200, 204, 302, 399, 400, 500} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			tr.setHook(func(req *http.Request, _ func() (*http.Response, error)) (*http.Response, error) {
				return forgedProblem(req, status, wire.NewProblem(wire.CodeBadFormat, "")), nil
			})
			defer tr.setHook(nil)
			resp, err := doReq(c, http.MethodPost, s.url+"/api/x")
			if status >= 400 {
				require.NoError(t, err)
				require.Equal(t, status, resp.StatusCode)
				require.Equal(t, wire.ProblemMediaType, resp.Header.Get("Content-Type"))
			} else {
				require.ErrorIs(t, err, ErrResponseNotAuthentic)
			}
		})
	}
}

// TestForgedRefusalKeepsMessageID lets each request through to its handler
// and answers with a forged refusal of every code: the client retries (for
// the codes that call for it) only under the same message id, so the
// handler runs once; the retry gets the response stored for that id.
func TestForgedRefusalKeepsMessageID(t *testing.T) {
	s := startMutServer(t)
	tr := &hookTransport{}
	c := newMutClient(t, s, tr)
	_, err := doReq(c, http.MethodPost, s.url+"/api/x")
	require.NoError(t, err)
	retried := map[wire.Code]bool{
		wire.CodeServerKeyUnknown: true, wire.CodeStale: true, wire.CodeTokenExpired: true,
		wire.CodeTokenInvalid: true, wire.CodeClientKeyUnknown: true, wire.CodeRotationRefused: true,
		wire.CodeClientKeyExpired: true,
	}
	for _, code := range wire.Codes() {
		t.Run(string(code), func(t *testing.T) {
			c.mu.Lock()
			c.lastDir = time.Time{} // allow the directory refetch of server-key-unknown
			c.mu.Unlock()
			var first atomic.Bool
			tr.setHook(func(req *http.Request, forward func() (*http.Response, error)) (*http.Response, error) {
				r, err := forward()
				if err != nil || !first.CompareAndSwap(false, true) {
					return r, err
				}
				r.Body.Close()
				return forgedProblem(req, code.Status(), wire.NewProblem(code, "forged")), nil
			})
			defer tr.setHook(nil)
			before := s.calls.Load()
			resp, err := doReq(c, http.MethodPost, s.url+"/api/x")
			require.Equal(t, int64(1), s.calls.Load()-before, "the handler ran once")
			ids := tr.sent()
			if retried[code] {
				require.Len(t, ids, 2, "one retry")
				require.Equal(t, ids[0], ids[1], "the retry keeps the message id")
				require.NoError(t, err)
				// The server answers the retry with the response it stored
				// for that id: the handler's real one, from its single run.
				require.Equal(t, http.StatusOK, resp.StatusCode, "the stored response of the one run")
			} else if code == wire.CodeOutcomeUnknown {
				require.Len(t, ids, 1, "no retry")
				require.ErrorIs(t, err, ErrOutcomeUnknown, "the caller is told it cannot know")
			} else {
				require.Len(t, ids, 1, "no retry")
				require.NoError(t, err)
				require.Equal(t, code.Status(), resp.StatusCode)
			}
		})
	}
}

// TestRecoveriesBounded: each kind of refusal is recovered from once per
// request, and at most maxRecoveries kinds one after the other.
func TestRecoveriesBounded(t *testing.T) {
	require.Equal(t, 3, maxRecoveries)
	s := startMutServer(t)
	tr := &hookTransport{}
	c := newMutClient(t, s, tr)
	_, err := doReq(c, http.MethodPost, s.url+"/api/x")
	require.NoError(t, err)
	tests := []struct {
		name   string
		forged []wire.Code // refusals answered in turn without forwarding; then forward
		sends  int
		status int
	}{
		{"same code twice", []wire.Code{wire.CodeRotationRefused, wire.CodeRotationRefused}, 2, http.StatusConflict},
		{"three kinds then through", []wire.Code{wire.CodeRotationRefused, wire.CodeStale, wire.CodeTokenExpired}, 4, http.StatusOK},
		{"four kinds", []wire.Code{wire.CodeRotationRefused, wire.CodeStale, wire.CodeTokenExpired, wire.CodeClientKeyUnknown}, 4, http.StatusUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int64
			recoveries := c.Stats().Recoveries
			tr.setHook(func(req *http.Request, forward func() (*http.Response, error)) (*http.Response, error) {
				i := int(n.Add(1)) - 1
				if i < len(tc.forged) {
					code := tc.forged[i]
					return forgedProblem(req, code.Status(), wire.NewProblem(code, "forged")), nil
				}
				return forward()
			})
			defer tr.setHook(nil)
			resp, err := doReq(c, http.MethodPost, s.url+"/api/x")
			require.NoError(t, err)
			require.Equal(t, tc.status, resp.StatusCode)
			ids := tr.sent()
			require.Len(t, ids, tc.sends)
			require.Equal(t, uint64(tc.sends-1), c.Stats().Recoveries-recoveries, "recoveries counted")
			for _, id := range ids {
				require.Equal(t, ids[0], id, "every retry keeps the message id")
			}
		})
	}
}

// TestRequestsGetFreshMessageIDs: two requests never share a message id.
func TestRequestsGetFreshMessageIDs(t *testing.T) {
	s := startMutServer(t)
	tr := &hookTransport{}
	c := newMutClient(t, s, tr)
	for range 3 {
		resp, err := doReq(c, http.MethodPost, s.url+"/api/x")
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	ids := tr.sent()
	require.Len(t, ids, 3)
	require.NotEqual(t, ids[0], ids[1])
	require.NotEqual(t, ids[1], ids[2])
	var zero [wire.MessageIDSize]byte
	require.NotEqual(t, zero, ids[0])
	// What the rotation policy counts: messages and plaintext bytes.
	c.mu.Lock()
	defer c.mu.Unlock()
	require.Equal(t, uint64(3), c.sess.messages)
	require.Equal(t, uint64(3*len("body")), c.sess.bytes)

}

// TestNewDefaults: the documented defaults of Config, and that values set
// by the caller are kept.
func TestNewDefaults(t *testing.T) {
	c, err := New(Config{BaseURL: "https://dynkey.invalid", HeartbeatInterval: -1})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	require.NotNil(t, c.cfg.Policy)
	require.Equal(t, int64(1<<20), c.cfg.MaxBodySize)
	require.Equal(t, slog.Default(), c.cfg.Logger)
	require.Equal(t, "ecies-x25519", c.suite.Name())

	pol := c.cfg.Policy
	lg := mutQuiet
	c2, err := New(Config{BaseURL: "https://dynkey.invalid", HeartbeatInterval: -1, Policy: pol, Logger: lg, MaxBodySize: 5})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c2.Close() })
	require.Equal(t, lg, c2.cfg.Logger)
	require.Equal(t, int64(5), c2.cfg.MaxBodySize)

	c3, err := New(Config{BaseURL: "https://dynkey.invalid", Logger: lg})
	require.NoError(t, err)
	require.Equal(t, time.Minute, c3.cfg.HeartbeatInterval)
	require.NoError(t, c3.Close())

	for _, bad := range []Config{
		{BaseURL: "https://dynkey.invalid", Suite: "no-such-suite"},
		{BaseURL: "/relative"},
		{BaseURL: "https://"},
		{BaseURL: "https://dynkey.invalid", IdentityKey: make([]byte, 31)},
		{BaseURL: "http://dynkey.invalid"},
	} {
		_, err := New(bad)
		require.Error(t, err, "%+v", bad)
	}
}

// TestRotationDatesItsKey: a rotation's key is dated with the server time
// the request was sent at (s_time + elapsed), the base of the client's
// rotation policy; and every exchange is counted.
func TestRotationDatesItsKey(t *testing.T) {
	s := startMutServer(t)
	clk := &mutClock{t: time.Now()}
	c, err := New(Config{BaseURL: s.url, Username: "alice", Password: "alice-pw", IdentityKey: s.identity,
		HeartbeatInterval: -1, Logger: mutQuiet, Now: clk.Now})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	_, err = doReq(c, http.MethodPost, s.url+"/api/x")
	require.NoError(t, err)
	require.Equal(t, uint64(2), c.Stats().Requests, "the login and the request")
	clk.Advance(5 * time.Second)
	c.RotateNow()
	_, err = doReq(c, http.MethodPut, s.url+"/api/x")
	require.NoError(t, err)
	require.Equal(t, uint64(1), c.Stats().ClientRotations)
	c.mu.Lock()
	defer c.mu.Unlock()
	require.Equal(t, c.sTime+5000, c.sess.installedAt)
}

// TestResponseSizeBound: a response may be as large as MaxBodySize plus the
// envelope's overhead.
func TestResponseSizeBound(t *testing.T) {
	s := startMutServer(t)
	const max = 100 << 10
	c, err := New(Config{BaseURL: s.url, Username: "alice", Password: "alice-pw", IdentityKey: s.identity,
		HeartbeatInterval: -1, Logger: mutQuiet, MaxBodySize: max})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	resp, err := doReq(c, http.MethodPost, s.url+"/api/x?size="+strconv.Itoa(max))
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	_, err = doReq(c, http.MethodPost, s.url+"/api/x?size="+strconv.Itoa(max+64<<10+1))
	require.ErrorContains(t, err, "body larger than")
}

// offline is a transport that fails every request: a recovery that needs
// the network (log in, refetch the directory, rotate on a heartbeat) then
// fails with errOffline, one that does not succeeds.
type offline struct{}

var errOffline = errors.New("offline")

func (offline) RoundTrip(*http.Request) (*http.Response, error) { return nil, errOffline }

// TestRecoverDecisions: which refusals are retried, and which need the
// network first, by the session's state when the refusal arrives.
func TestRecoverDecisions(t *testing.T) {
	d := newDirSigner(t)
	clk := &mutClock{t: time.Unix(1_800_000_000, 0)}
	c, err := New(Config{BaseURL: "https://dynkey.invalid", Username: "u", Password: "p", HeartbeatInterval: -1,
		IdentityKey: d.id.Public().(ed25519.PublicKey), Logger: mutQuiet, Transport: offline{}, Now: clk.Now})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	keyA, keyB := d.key(), d.key()
	c.mu.Lock()
	_, err = c.acceptDirectoryLocked(d.sign("ecies-x25519", 1, 1000, keyA.Public().Bytes()), clk.Now(), false)
	c.mu.Unlock()
	require.NoError(t, err)

	idOf := func(k crypto.PrivateKey) wire.KeyID { return wire.ComputeKeyID("ecies-x25519", k.Public().Bytes()) }
	cur, old, pend := d.key(), d.key(), d.key()
	newSess := func(pending crypto.PrivateKey) *session {
		s := &session{key: cur, keyID: idOf(cur), pending: pending, token: []byte("token")}
		c.mu.Lock()
		c.sess = s
		c.mu.Unlock()
		return s
	}
	tests := []struct {
		name    string
		code    wire.Code
		pending crypto.PrivateKey
		used    crypto.PrivateKey
		other   bool // the refusal belongs to a session already replaced
		retry   bool
		offline bool // the recovery needed the network
	}{
		{"client-key-unknown, current key: log in again", wire.CodeClientKeyUnknown, nil, cur, false, true, true},
		{"client-key-unknown, key changed since: retry", wire.CodeClientKeyUnknown, nil, old, false, true, false},
		{"client-key-unknown, the pending key refused: log in again", wire.CodeClientKeyUnknown, pend, pend, false, true, true},
		{"client-key-unknown, another pending key: retry", wire.CodeClientKeyUnknown, pend, old, false, true, false},
		{"client-key-expired, current key: rotate first", wire.CodeClientKeyExpired, nil, cur, false, true, true},
		{"client-key-expired, rotated since: retry", wire.CodeClientKeyExpired, nil, old, false, true, false},
		{"rotation-refused: retry", wire.CodeRotationRefused, nil, cur, false, true, false},
		{"token-expired: log in again", wire.CodeTokenExpired, nil, cur, false, true, true},
		{"token-invalid: log in again", wire.CodeTokenInvalid, nil, cur, false, true, true},
		{"stale: refetch the directory", wire.CodeStale, nil, cur, false, true, true},
		{"replay: never retried", wire.CodeReplay, nil, cur, false, false, false},
		{"decrypt-failed: never retried", wire.CodeDecryptFailed, nil, cur, false, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSess(tc.pending)
			retry, err := c.recover(context.Background(), wire.NewProblem(tc.code, ""), s, idOf(tc.used))
			require.Equal(t, tc.retry, retry)
			if tc.offline {
				require.ErrorIs(t, err, errOffline)
			} else {
				require.NoError(t, err)
			}
		})
	}

	// server-key-unknown: a directory carried by the refusal is adopted if
	// it verifies and changes the key; otherwise the directory is refetched,
	// at most once every 10 seconds.
	p := wire.NewProblem(wire.CodeServerKeyUnknown, "")
	p.Directory = d.sign("ecies-x25519", 2, 2000, keyB.Public().Bytes())
	require.NoError(t, c.recoverFrom(context.Background(), p))
	id, _ := c.ServerKeyID()
	require.Equal(t, idOf(keyB), id)
	forged := newDirSigner(t)
	p.Directory = forged.sign("ecies-x25519", 3, 3000, keyA.Public().Bytes())
	require.ErrorIs(t, c.recoverFrom(context.Background(), p), errOffline, "not adopted: refetched")
	id, _ = c.ServerKeyID()
	require.Equal(t, idOf(keyB), id)

	p.Directory = nil
	for _, tc := range []struct {
		name   string
		ago    time.Duration
		recent bool
	}{
		{"never fetched", -1, false},
		{"just now", 0, true},
		{"9.999s ago", 10*time.Second - time.Millisecond, true},
		{"10s ago", 10 * time.Second, false},
		{"an hour ago", time.Hour, false},
	} {
		t.Run("refetch "+tc.name, func(t *testing.T) {
			c.mu.Lock()
			c.lastDir = time.Time{}
			if tc.ago >= 0 {
				c.lastDir = clk.Now().Add(-tc.ago)
			}
			c.mu.Unlock()
			err := c.recoverFrom(context.Background(), p)
			if tc.recent {
				require.ErrorContains(t, err, "less than 10s ago")
			} else {
				require.ErrorIs(t, err, errOffline)
			}
		})
	}
}

// TestInFlightAndLostRotation: requests in flight are counted by the key
// that authenticated them (no rotation while an older key is in flight) and
// uncounted when they end; a rotation whose response is lost leaves its key
// pending, tried first by the next request, which confirms it.
func TestInFlightAndLostRotation(t *testing.T) {
	s := startMutServer(t)
	tr := &hookTransport{}
	c := newMutClient(t, s, tr)
	_, err := doReq(c, http.MethodPost, s.url+"/api/x")
	require.NoError(t, err)
	inFlight := func() map[wire.KeyID]int {
		c.mu.Lock()
		defer c.mu.Unlock()
		out := map[wire.KeyID]int{}
		for k, v := range c.sess.inFlight {
			out[k] = v
		}
		return out
	}
	cur, _ := c.ClientKeyID()
	var during map[wire.KeyID]int
	tr.setHook(func(req *http.Request, forward func() (*http.Response, error)) (*http.Response, error) {
		during = inFlight()
		return forward()
	})
	_, err = doReq(c, http.MethodPost, s.url+"/api/x")
	require.NoError(t, err)
	require.Equal(t, map[wire.KeyID]int{cur: 1}, during)
	require.Empty(t, inFlight(), "uncounted once it ended")

	// A rotation on a PUT whose response is lost after the server applied it.
	lost := errors.New("response lost")
	tr.setHook(func(req *http.Request, forward func() (*http.Response, error)) (*http.Response, error) {
		r, err := forward()
		if err == nil {
			r.Body.Close()
		}
		return nil, lost
	})
	c.RotateNow()
	_, err = doReq(c, http.MethodPut, s.url+"/api/x")
	require.ErrorIs(t, err, lost)
	tr.setHook(nil)
	c.mu.Lock()
	pending := c.sess.pending
	c.mu.Unlock()
	require.NotNil(t, pending, "the rotation's outcome is unknown: its key is pending")
	rotations := c.Stats().ClientRotations
	_, err = doReq(c, http.MethodPost, s.url+"/api/x")
	require.NoError(t, err)
	now, _ := c.ClientKeyID()
	require.Equal(t, wire.ComputeKeyID("ecies-x25519", pending.Public().Bytes()), now, "the pending key was confirmed")
	require.Equal(t, rotations+1, c.Stats().ClientRotations, "the confirmed rotation is counted")
	require.Empty(t, inFlight())
}

// TestHeadResponseAuthenticity: a HEAD response is authenticated from its
// Dynkey-Response header; without it, or with a bad one, it is refused.
func TestHeadResponseAuthenticity(t *testing.T) {
	s := startMutServer(t)
	tr := &hookTransport{}
	c := newMutClient(t, s, tr)
	head := func() (*http.Response, error) {
		req, err := http.NewRequest(http.MethodHead, s.url+"/api/x", nil)
		require.NoError(t, err)
		return c.HTTPClient().Do(req)
	}
	resp, err := head()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp.Body.Close()
	for _, v := range []string{"", "!!", "AA"} {
		tr.setHook(func(req *http.Request, forward func() (*http.Response, error)) (*http.Response, error) {
			r, err := forward()
			if err == nil {
				r.Header.Set(wire.ResponseHeader, v)
			}
			return r, err
		})
		_, err := head()
		require.ErrorIs(t, err, ErrResponseNotAuthentic, "%q", v)
	}
	tr.setHook(nil)
}

// TestHeartbeatResultNeedsATrustedDirectory: a heartbeat whose directory is
// signed by another identity is refused as an error, and neither its s_time
// nor its rotation hint is adopted; a genuine one is adopted. (Kills the
// heartbeat.go mutants that adopt the s_time or report success on a refused
// directory.)
func TestHeartbeatResultNeedsATrustedDirectory(t *testing.T) {
	d := newDirSigner(t)
	other := newDirSigner(t)
	pub := d.key().Public().Bytes()
	at := time.Unix(1_800_000_000, 0)
	c, err := New(Config{BaseURL: "https://dynkey.invalid", Username: "u", Password: "p", HeartbeatInterval: -1,
		IdentityKey: d.id.Public().(ed25519.PublicKey), Logger: mutQuiet, Now: func() time.Time { return at }})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	c.mu.Lock()
	_, err = c.acceptDirectoryLocked(d.sign("ecies-x25519", 5, 1000, pub), at, false)
	c.mu.Unlock()
	require.NoError(t, err)

	hb := func(sd *wire.SignedDirectory, sTime int64) *result {
		b, err := json.Marshal(wire.HeartbeatResponse{STime: sTime, Directory: sd, RotateClientKey: true})
		require.NoError(t, err)
		return &result{body: b, at: at}
	}
	state := func() (uint64, bool) {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.sTime, c.forceRot
	}

	// Signed by an identity the client does not trust: refused, nothing adopted.
	err = c.heartbeatResult(hb(other.sign("ecies-x25519", 6, 9_000_000, pub), 9_000_000))
	require.Error(t, err)
	sTime, force := state()
	require.Equal(t, uint64(1000), sTime, "s_time of a refused heartbeat adopted")
	require.False(t, force, "rotation hint of a refused heartbeat adopted")

	// Genuine: adopted.
	require.NoError(t, c.heartbeatResult(hb(d.sign("ecies-x25519", 6, 2000, pub), 2000)))
	sTime, force = state()
	require.Equal(t, uint64(2000), sTime)
	require.True(t, force)
}
