package e2e

// A man in the middle on loopback, as a real HTTP reverse proxy between the
// client SDK and the server: it lets a request through (its handler runs),
// throws the genuine response away and answers with a forged refusal.
// Refusals are not authenticated, so the client cannot tell; what it must
// never do is run the handler a second time, or tell its caller that a
// request succeeded when it never saw the authenticated response.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/client"
	"github.com/dynkey/dynkey/crypto"
	"github.com/dynkey/dynkey/middleware"
	"github.com/dynkey/dynkey/policy"
	"github.com/dynkey/dynkey/store/memory"
	"github.com/dynkey/dynkey/wire"
)

// processedCounter wraps the whole server (endpoints and protected routes)
// and counts, by message id and by path, the requests the server processed:
// those answered with a sealed response, which only the handler (or the
// heartbeat endpoint) behind a successful open produces. A sealed response
// byte for byte equal to an earlier one for the same message id is the
// server answering a resend from its stored response (middleware/outcome.go),
// not a second run: every run seals with a fresh random nonce.
type processedCounter struct {
	next    http.Handler
	mu      sync.Mutex
	byID    map[[wire.MessageIDSize]byte]int
	path    map[string]int
	answers map[[wire.MessageIDSize]byte][]string
	stored  int // answers from the stored response
}

func (p *processedCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	rec := &statusRecorder{ResponseWriter: w}
	p.next.ServeHTTP(rec, r)
	if rec.status != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), wire.MediaType) {
		return
	}
	env, err := wire.ParseRequest(envelopeOf(r.Header, body))
	if err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.answers == nil {
		p.answers = map[[wire.MessageIDSize]byte][]string{}
	}
	answer := rec.body.String() + rec.Header().Get(wire.ResponseHeader)
	if slices.Contains(p.answers[env.MessageID], answer) {
		p.stored++
		return
	}
	p.answers[env.MessageID] = append(p.answers[env.MessageID], answer)
	p.byID[env.MessageID]++
	p.path[r.URL.Path]++
}

func (p *processedCounter) counts(id [wire.MessageIDSize]byte, path string) (byID, byPath int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.byID[id], p.path[path]
}

// storedAnswers is how many responses were answers from the stored
// response of a message already handled.
func (p *processedCounter) storedAnswers() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stored
}

// maxPerID is the largest number of times one message id was processed.
func (p *processedCounter) maxPerID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.byID {
		n = max(n, c)
	}
	return n
}

type statusRecorder struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	r.body.Write(b)
	return r.ResponseWriter.Write(b)
}

// forgingProxy is a reverse proxy on loopback. Requests to target are
// forwarded to the server, their genuine responses discarded and replaced by
// forge's answer (all of them, or only the first, by every); everything else
// passes through unchanged.
type forgingProxy struct {
	srv      *httptest.Server
	upstream string
	next     http.RoundTripper

	target string
	every  bool
	forge  func() *wire.Problem

	mu     sync.Mutex
	forged [][wire.MessageIDSize]byte // the ids of the requests answered with a forgery
}

func newForgingProxy(t *testing.T, upstream string) *forgingProxy {
	t.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	p := &forgingProxy{upstream: upstream, next: tr}
	p.srv = httptest.NewServer(p)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *forgingProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	out, err := http.NewRequestWithContext(r.Context(), r.Method, p.upstream+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	out.Header = r.Header.Clone()
	resp, err := p.next.RoundTrip(out) // the request reaches the server: its handler runs
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	genuine, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}

	p.mu.Lock()
	forge := r.URL.Path == p.target && p.forge != nil && (p.every || len(p.forged) == 0)
	if forge {
		var id [wire.MessageIDSize]byte
		if env, err := wire.ParseRequest(envelopeOf(r.Header, body)); err == nil {
			id = env.MessageID
		}
		p.forged = append(p.forged, id)
	}
	p.mu.Unlock()
	if forge {
		prob := p.forge()
		b, _ := json.Marshal(prob)
		w.Header().Set("Content-Type", wire.ProblemMediaType)
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(prob.Status)
		_, _ = w.Write(b)
		return
	}
	for k, v := range resp.Header {
		if k != "Content-Length" {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(genuine)
}

func (p *forgingProxy) forgedIDs() [][wire.MessageIDSize]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([][wire.MessageIDSize]byte(nil), p.forged...)
}

// mitmRig is a server (counting its handler runs and processed messages,
// and the client key rotations that landed), a forging proxy in front of
// it, and an SDK client that talks to the proxy, pinned to the server's
// identity.
type mitmRig struct {
	clk       *fakeClock
	s         *server
	st        *sdkStore
	processed *processedCounter
	proxy     *forgingProxy
	c         *client.Client
	hc        *http.Client
}

func newMITMRig(t *testing.T) *mitmRig {
	t.Helper()
	clk := newClock()
	st := &sdkStore{Store: memory.New()}
	m, err := middleware.New(baseOptions(t, clk, st))
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	a := &app{}
	mux := http.NewServeMux()
	mux.Handle("/dynkey/", m.Endpoints())
	mux.Handle("/.well-known/dynkey/", m.Endpoints())
	mux.Handle("/api/", m.Handler(a))
	pc := &processedCounter{next: mux, byID: map[[wire.MessageIDSize]byte]int{}, path: map[string]int{}}
	hs := httptest.NewServer(pc)
	t.Cleanup(hs.Close)
	s := &server{m: m, srv: hs, app: a, URL: hs.URL}
	proxy := newForgingProxy(t, s.URL)
	pinIdentity(t, proxy.srv.URL, s.m.IdentityPublicKey())
	// The client's own policy never rotates; tests force a rotation with
	// RotateNow.
	c := newSDK(t, proxy.srv.URL, clk.Now, "alice", nil, func(cfg *client.Config) { cfg.Policy = policy.Manual() })
	hc := c.HTTPClient()
	hc.Timeout = 20 * time.Second
	return &mitmRig{clk: clk, s: s, st: st, processed: pc, proxy: proxy, c: c, hc: hc}
}

// forgedProblem is what the man in the middle answers: a well-formed
// problem of code, with the extras a genuine one carries.
func forgedProblem(code wire.Code, now func() time.Time, dir *wire.SignedDirectory) func() *wire.Problem {
	return func() *wire.Problem {
		p := wire.NewProblem(code, "forged by the man in the middle")
		if code == wire.CodeStale {
			p.STime = now().UnixMilli()
		}
		if code == wire.CodeServerKeyUnknown {
			p.Directory = dir
		}
		return p
	}
}

// TestMITMForgedRefusalNeverRunsAHandlerTwice: for every problem code
// (wire.Codes(), plus server-key-unknown carrying the genuine directory),
// for GET, POST, PUT, PATCH, DELETE and the heartbeat, with and without a
// client key rotation on the request (forced on those that may carry one),
// with the first answer forged or every answer forged: the request's
// handler runs exactly once (the proxy let it through once; the client's
// retries, if any, are refused as replays), no message id is processed
// twice, and the caller gets an error or a non-2xx status, never a 2xx.
// Once the forging stops, the client works again, also after the client
// key grace window (a rotation hidden by a forged refusal ends in a fresh
// login, not a stuck client).
//
// Defense exercised: client do (every retry of a request carries the
// refused request's message id, rotation-refused and client-key-expired
// included) and the server recording an id only after every check that can
// refuse it (middleware/open.go). Verified: with the client drawing a fresh
// id for its retries (send called with a new id in do's loop), the handler
// ran twice for every code the client retries (server-key-unknown, stale,
// token-invalid, token-expired, client-key-unknown, client-key-expired,
// rotation-refused), for every method, and this test failed.
func TestMITMForgedRefusalNeverRunsAHandlerTwice(t *testing.T) {
	type target struct {
		name   string
		method string // "" for the heartbeat
	}
	targets := []target{
		{"GET", http.MethodGet}, {"POST", http.MethodPost}, {"PUT", http.MethodPut},
		{"PATCH", http.MethodPatch}, {"DELETE", http.MethodDelete}, {"heartbeat", ""},
	}
	type forgery struct {
		name    string
		code    wire.Code
		withDir bool
	}
	var forgeries []forgery
	for _, code := range wire.Codes() {
		forgeries = append(forgeries, forgery{string(code), code, false})
	}
	forgeries = append(forgeries, forgery{"server-key-unknown with the genuine directory", wire.CodeServerKeyUnknown, true})
	require.Len(t, forgeries, len(wire.Codes())+1, "every code and one variant")

	for _, tg := range targets {
		for _, rotate := range []bool{false, true} {
			if rotate && !(tg.method == "" || tg.method == http.MethodGet || tg.method == http.MethodPut || tg.method == http.MethodDelete) {
				continue // the client never rotates on a POST or PATCH (TestMITMRotationOnlyOnIdempotentRequests)
			}
			for _, every := range []bool{false, true} {
				for _, fg := range forgeries {
					name := fmt.Sprintf("%s/rotation=%v/every=%v/%s", tg.name, rotate, every, fg.name)
					t.Run(name, func(t *testing.T) {
						r := newMITMRig(t)
						require.NoError(t, r.c.Login(context.Background()))
						var dir *wire.SignedDirectory
						if fg.withDir {
							dir = fetchDirectory(t, r.s.URL)
						}
						// Let the client refetch the directory if it wants
						// (it does so at most every 10 s).
						r.clk.Advance(11 * time.Second)
						if rotate {
							r.c.RotateNow()
						}
						path := "/api/pay"
						if tg.method == "" {
							path = wire.PathHeartbeat
						}
						r.proxy.mu.Lock()
						r.proxy.target, r.proxy.every, r.proxy.forge = path, every, forgedProblem(fg.code, r.clk.Now, dir)
						r.proxy.mu.Unlock()
						calls, rotations := r.s.app.calls.Load(), r.st.committed.Load()

						var (
							status int
							body   string
							err    error
						)
						if tg.method == "" {
							err = r.c.Heartbeat(context.Background())
						} else {
							status, body, err = call(r.hc, tg.method, r.proxy.srv.URL+path, "pay bob 10")
						}

						ids := r.proxy.forgedIDs()
						require.NotEmpty(t, ids, "the proxy forged an answer")
						first, byPath := r.processed.counts(ids[0], path)
						require.Equal(t, 1, first, "the forged request was processed once (the proxy let it through)")
						if tg.method == "" && fg.code == wire.CodeClientKeyExpired {
							// The client answers client-key-expired with a
							// rotation on a new heartbeat (a new message id,
							// safe to repeat); the refused one is not re-run.
							require.LessOrEqual(t, byPath, 2, "the forged heartbeat and at most one rotation heartbeat")
						} else {
							require.Equal(t, 1, byPath, "the %s ran exactly once", path)
						}
						require.Equal(t, 1, r.processed.maxPerID(), "no message id processed twice")
						if tg.method != "" {
							require.Equal(t, calls+1, r.s.app.calls.Load(), "the handler ran exactly once")
						}
						// The truth: a failure, or the original response of
						// the one run, which the server kept and answered the
						// client's retry with (same message id,
						// middleware/outcome.go).
						ok := err == nil && (tg.method == "" || status >= 200 && status < 300)
						if ok {
							require.False(t, every, "every answer forged, yet the caller saw success: %d %q", status, body)
							require.GreaterOrEqual(t, r.processed.storedAnswers(), 1,
								"a success after a forged refusal is the stored response: got %d %q", status, body)
							if tg.method != "" {
								var e echo
								require.NoError(t, json.Unmarshal([]byte(body), &e), body)
								require.Equal(t, "pay bob 10", e.Body)
							}
						}
						if rotate {
							// The forged request carried the rotation: it
							// landed on the server (and only once), though the
							// client was told it did not.
							require.Equal(t, rotations+1, r.st.committed.Load(), "the forged request carried a rotation")
						} else if fg.code != wire.CodeClientKeyExpired {
							// client-key-expired makes the client rotate on a
							// separate heartbeat (a new message, safe to repeat).
							require.Equal(t, rotations, r.st.committed.Load())
						}

						// The forgery leaves the client working: once the man
						// in the middle stops, the next call goes through
						// (after a recovery, if the forgery left the client
						// behind the server).
						r.proxy.mu.Lock()
						r.proxy.forge = nil
						r.proxy.mu.Unlock()
						mustCall(t, r.hc, http.MethodPost, r.proxy.srv.URL+"/api/after", "after")
						r.clk.Advance(3 * time.Minute) // past ClientKeyGrace: a key the client lost track of is gone
						mustCall(t, r.hc, http.MethodPost, r.proxy.srv.URL+"/api/later", "later")
					})
				}
			}
		}
	}
}

// TestMITMRotationOnlyOnIdempotentRequests: with a rotation due, POST and
// PATCH go out without one, and the next GET, PUT, DELETE, OPTIONS or
// heartbeat carries it.
//
// Defense exercised: client mayCarryRotation. Verified: with POST allowed
// to carry rotations, the POST case fails.
func TestMITMRotationOnlyOnIdempotentRequests(t *testing.T) {
	for _, tc := range []struct {
		method  string // "" for the heartbeat
		carries bool
	}{
		{http.MethodPost, false}, {http.MethodPatch, false},
		{http.MethodGet, true}, {http.MethodPut, true}, {http.MethodDelete, true}, {http.MethodOptions, true}, {"", true},
	} {
		name := tc.method
		if name == "" {
			name = "heartbeat"
		}
		t.Run(name, func(t *testing.T) {
			r := newMITMRig(t)
			require.NoError(t, r.c.Login(context.Background()))
			r.c.RotateNow()
			before := r.st.committed.Load()
			if tc.method == "" {
				require.NoError(t, r.c.Heartbeat(context.Background()))
			} else {
				status, body, err := call(r.hc, tc.method, r.proxy.srv.URL+"/api/x", "")
				require.NoError(t, err)
				require.Equal(t, http.StatusOK, status, body)
			}
			if tc.carries {
				require.Equal(t, before+1, r.st.committed.Load())
				require.Equal(t, uint64(1), r.c.Stats().ClientRotations)
			} else {
				require.Equal(t, before, r.st.committed.Load())
				require.Zero(t, r.c.Stats().ClientRotations)
			}
		})
	}
}

// TestClientFirstContactNeedsTLS: without a pinned identity, the client
// takes the server's identity from the first directory it fetches, so that
// fetch must be protected by TLS. An http:// BaseURL is refused unless the
// caller opts in with InsecureTrustOnFirstUseWithoutTLS — and the opt-in
// does what its name says: a man in the middle who answers the first
// directory fetch gets the password sealed to its key.
//
// Defense exercised: client.New's check. Verified: without it, the
// refusal cases fail.
func TestClientFirstContactNeedsTLS(t *testing.T) {
	cfg := func(base string) client.Config {
		return client.Config{BaseURL: base, Username: "alice", Password: testUsers["alice"], HeartbeatInterval: -1, Logger: quietLog}
	}
	for _, tc := range []struct {
		name string
		cfg  func(client.Config) client.Config
		err  error
	}{
		{"http without a pinned identity", func(c client.Config) client.Config { return c }, client.ErrFirstContactWithoutTLS},
		{"HTTP in capitals", func(c client.Config) client.Config { c.BaseURL = "HTTP://example.com"; return c }, client.ErrFirstContactWithoutTLS},
		{"http with a pinned identity", func(c client.Config) client.Config {
			c.IdentityKey = make(ed25519.PublicKey, ed25519.PublicKeySize)
			return c
		}, nil},
		{"http with the opt-in", func(c client.Config) client.Config { c.InsecureTrustOnFirstUseWithoutTLS = true; return c }, nil},
		{"https", func(c client.Config) client.Config { c.BaseURL = "https://example.com"; return c }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := client.New(tc.cfg(cfg("http://example.com")))
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
				require.Nil(t, c)
				return
			}
			require.NoError(t, err)
			require.NoError(t, c.Close())
		})
	}

	t.Run("https on loopback trusts on first use", func(t *testing.T) {
		clk := newClock()
		m := startServer(t, baseOptions(t, clk, memory.New())).m
		mux := http.NewServeMux()
		mux.Handle("/dynkey/", m.Endpoints())
		mux.Handle("/.well-known/dynkey/", m.Endpoints())
		a := &app{}
		mux.Handle("/api/", m.Handler(a))
		tls := httptest.NewTLSServer(mux)
		t.Cleanup(tls.Close)
		conf := cfg(tls.URL)
		conf.Transport, conf.Now = tls.Client().Transport, clk.Now
		c, err := client.New(conf)
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		mustCall(t, c.HTTPClient(), http.MethodPost, tls.URL+"/api/x", "over TLS")
		require.Equal(t, int64(1), a.calls.Load())
	})

	t.Run("the opt-in trusts whoever answers first", func(t *testing.T) {
		clk := newClock()
		s := startServer(t, baseOptions(t, clk, memory.New()))
		// The attacker answers the first directory fetch with its own
		// identity and key and captures the login.
		_, evilIdentity, err := ed25519.GenerateKey(nil)
		require.NoError(t, err)
		rc := newRawClient(t, s.URL, clk.Now)
		evilKey := rc.genKey()
		evilPub := evilKey.Public().Bytes()
		evilDir, err := wire.SignDirectory(evilIdentity, &wire.Directory{
			Version: 1, Epoch: 1, Suite: rc.suite.Name(), STime: clk.Now().UnixMilli(),
			Keys: []wire.DirectoryKey{{ID: wire.ComputeKeyID(rc.suite.Name(), evilPub).String(), Public: evilPub, Status: wire.StatusPrimary}},
		})
		require.NoError(t, err)
		var captured atomic.Pointer[[]byte]
		tr := newMITM()
		tr.setHook(func(f *flight) (*http.Response, error) {
			switch f.req.URL.Path {
			case wire.PathKeys:
				b, _ := json.Marshal(evilDir)
				return fakeResponse(f.req, http.StatusOK, "application/json", b), nil
			case wire.PathLogin:
				b := bytes.Clone(f.reqBody)
				captured.Store(&b)
				return nil, errDropped
			}
			return f.forward()
		})
		c := newSDK(t, s.URL, clk.Now, "alice", tr, func(cfg *client.Config) { cfg.InsecureTrustOnFirstUseWithoutTLS = true })
		require.ErrorIs(t, c.Login(context.Background()), errDropped)
		env := captured.Load()
		require.NotNil(t, env, "the login went to the attacker")
		req, err := wire.ParseRequest(*env)
		require.NoError(t, err)
		require.Equal(t, wire.ComputeKeyID(rc.suite.Name(), evilPub), req.ServerKeyID, "sealed to the attacker's key")
		pt, _, err := rc.suite.Open(evilKey, mustParsePub(t, rc, req.ClientKey), []byte(wire.InfoLogin),
			wire.RequestAAD(http.MethodPost, wire.PathLogin, "", req.Header), req.Ciphertext)
		require.NoError(t, err)
		in, err := wire.ParseInner(pt)
		require.NoError(t, err)
		require.Contains(t, string(in.Body), testUsers["alice"], "the attacker reads the password")
	})
}

func mustParsePub(t *testing.T, rc *rawClient, b []byte) crypto.PublicKey {
	t.Helper()
	k, err := rc.suite.ParsePublicKey(b)
	require.NoError(t, err)
	return k
}
