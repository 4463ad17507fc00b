package e2e

// Helpers for the security tests in holes_test.go: a fake clock, a test
// server (middleware + counting handler on httptest), the real client SDK
// wired to it, a man-in-the-middle transport, store wrappers that count or
// gate operations, and a "raw" client that builds envelopes by hand with the
// wire package and the crypto suite (the attacker's, or a victim whose keys
// the test must know).

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/dynkey/dynkey/auth"
	"github.com/dynkey/dynkey/client"
	"github.com/dynkey/dynkey/crypto"
	"github.com/dynkey/dynkey/middleware"
	"github.com/dynkey/dynkey/store"
	"github.com/dynkey/dynkey/wire"

	_ "github.com/dynkey/dynkey/crypto/ecies"
)

// ---------------------------------------------------------------------------
// Clock

// fakeClock is a clock the test moves by hand. It starts at the real time
// (the stores expire entries by their own wall clock, so the fake clock
// must never be behind it by much) and is safe for concurrent use.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// ---------------------------------------------------------------------------
// Server

var (
	testKEK    = bytes.Repeat([]byte{0x42}, 32)
	quietLog   = slog.New(slog.NewTextHandler(io.Discard, nil))
	testParams = auth.Params{Time: 1, MemoryKiB: 1024, Threads: 1, SaltLen: 16, KeyLen: 32}
)

// Test users and their passwords.
var testUsers = map[string]string{"alice": "alice-pw", "bob": "bob-pw", "mallory": "mallory-pw"}

func newUsers(t testing.TB) *auth.Argon2id {
	t.Helper()
	u := auth.NewArgon2id(testParams)
	for name, pw := range testUsers {
		require.NoError(t, u.AddUser(name, pw))
	}
	return u
}

// app is the protected application: it counts its calls and echoes what
// the middleware handed it.
type app struct {
	calls atomic.Int64
	mu    sync.Mutex
	last  *middleware.Session
}

type echo struct {
	User    string `json:"user"`
	Session string `json:"session"`
	Method  string `json:"method"`
	Path    string `json:"path"`
	Query   string `json:"query"`
	Body    string `json:"body"`
}

func (a *app) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.calls.Add(1)
	s, ok := middleware.FromContext(r.Context())
	if !ok {
		http.Error(w, "no dynkey session", http.StatusInternalServerError)
		return
	}
	a.mu.Lock()
	a.last = s
	a.mu.Unlock()
	b, _ := io.ReadAll(r.Body)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(echo{User: s.Username, Session: s.ID, Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Body: string(b)})
}

func (a *app) lastSession() *middleware.Session {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last
}

type server struct {
	m   *middleware.Middleware
	srv *httptest.Server
	app *app
	URL string
}

// baseOptions are the options every test server starts from: the fake
// clock, no background loop, a fixed key-encryption key, quiet logs.
func baseOptions(t *testing.T, clk *fakeClock, st store.Store) middleware.Options {
	return middleware.Options{
		Store:            st,
		Authenticator:    newUsers(t),
		KeyEncryptionKey: testKEK,
		MaintainInterval: -1,
		Now:              clk.Now,
		Logger:           quietLog,
	}
}

// startServer runs a middleware on loopback with the endpoints and a
// protected /api/ tree served by a counting app.
func startServer(t *testing.T, o middleware.Options) *server {
	t.Helper()
	m, err := middleware.New(o)
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	a := &app{}
	mux := http.NewServeMux()
	mux.Handle("/dynkey/", m.Endpoints())
	mux.Handle("/.well-known/dynkey/", m.Endpoints())
	mux.Handle("/api/", m.Handler(a))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	pinIdentity(t, srv.URL, m.IdentityPublicKey())
	return &server{m: m, srv: srv, app: a, URL: srv.URL}
}

// identities maps a test server's base URL to its identity key, so that
// newSDK pins it: the test servers speak plain http on loopback, where the
// client refuses trust on first use (client.ErrFirstContactWithoutTLS).
var identities sync.Map // base URL → ed25519.PublicKey

// pinIdentity makes newSDK clients of base pin id (startServer does it for
// its own URL; a test with a front server in between calls it for that).
func pinIdentity(t *testing.T, base string, id ed25519.PublicKey) {
	t.Helper()
	identities.Store(base, id)
	t.Cleanup(func() { identities.Delete(base) }) // runs before the server closes: its port is still taken
}

// ---------------------------------------------------------------------------
// Client SDK

func newSDK(t *testing.T, base string, now func() time.Time, user string, tr http.RoundTripper, mods ...func(*client.Config)) *client.Client {
	t.Helper()
	cfg := client.Config{
		BaseURL: base, Username: user, Password: testUsers[user],
		HeartbeatInterval: -1, Transport: tr, Now: now, Logger: quietLog,
	}
	for _, f := range mods {
		f(&cfg)
	}
	if cfg.IdentityKey == nil && !cfg.InsecureTrustOnFirstUseWithoutTLS {
		id, ok := identities.Load(base)
		require.True(t, ok, "no identity key to pin for %s (pinIdentity)", base)
		cfg.IdentityKey = id.(ed25519.PublicKey)
	}
	c, err := client.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// call sends body through an SDK-backed http.Client and returns the status,
// the plaintext response body and the error, if any.
func call(hc *http.Client, method, target, body string) (int, string, error) {
	req, err := http.NewRequest(method, target, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "text/plain")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// mustCall is call that requires a 200.
func mustCall(t *testing.T, hc *http.Client, method, target, body string) echo {
	t.Helper()
	status, b, err := call(hc, method, target, body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status, b)
	var e echo
	require.NoError(t, json.Unmarshal([]byte(b), &e), b)
	return e
}

// rotateSDK makes the SDK client rotate its key on one of its next calls
// (the next key is generated in the background after login).
func rotateSDK(t *testing.T, c *client.Client, target string) {
	t.Helper()
	before := c.Stats().ClientRotations
	hc := c.HTTPClient()
	require.Eventually(t, func() bool {
		c.RotateNow()
		if status, _, err := call(hc, http.MethodPut, target, "rotate"); err != nil || status != http.StatusOK {
			return false
		}
		return c.Stats().ClientRotations > before
	}, 10*time.Second, 2*time.Millisecond)
}

// ---------------------------------------------------------------------------
// Man in the middle

// flight is one request seen by the mitm transport.
type flight struct {
	req     *http.Request
	reqBody []byte
	status  int
	respCT  string
	resp    []byte
	// respProblem is the response's Dynkey-Problem header.
	respProblem string
	next        http.RoundTripper
}

// forward sends the request on and records the response.
func (f *flight) forward() (*http.Response, error) {
	r := f.req.Clone(f.req.Context())
	r.Body = io.NopCloser(bytes.NewReader(f.reqBody))
	r.ContentLength = int64(len(f.reqBody))
	resp, err := f.next.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	f.status, f.respCT, f.resp = resp.StatusCode, resp.Header.Get("Content-Type"), b
	f.respProblem = resp.Header.Get(wire.ProblemHeader)
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp, nil
}

// mitm is a transport between the client SDK and the network that records
// every exchange and lets a test replace what goes by.
type mitm struct {
	next    http.RoundTripper
	mu      sync.Mutex
	hook    func(f *flight) (*http.Response, error) // nil: forward unchanged
	flights []*flight
}

func newMITM() *mitm { return &mitm{next: http.DefaultTransport} }

func (m *mitm) setHook(h func(f *flight) (*http.Response, error)) {
	m.mu.Lock()
	m.hook = h
	m.mu.Unlock()
}

func (m *mitm) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		body = b
	}
	f := &flight{req: req, reqBody: body, next: m.next}
	m.mu.Lock()
	m.flights = append(m.flights, f)
	h := m.hook
	m.mu.Unlock()
	if h == nil {
		return f.forward()
	}
	return h(f)
}

// last returns the latest flight to path.
func (m *mitm) last(path string) *flight {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := len(m.flights) - 1; i >= 0; i-- {
		if m.flights[i].req.URL.Path == path {
			return m.flights[i]
		}
	}
	return nil
}

// codes returns the problem codes of the responses seen so far.
func (m *mitm) codes() []wire.Code {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []wire.Code
	for _, f := range m.flights {
		if p, ok := wire.ParseProblem(f.resp); ok && strings.HasPrefix(f.respCT, wire.ProblemMediaType) {
			out = append(out, p.Code)
		}
	}
	return out
}

// onceHook applies h to the first request to path, then forwards.
func onceHook(path string, h func(f *flight) (*http.Response, error)) func(f *flight) (*http.Response, error) {
	var done atomic.Bool
	return func(f *flight) (*http.Response, error) {
		if f.req.URL.Path == path && done.CompareAndSwap(false, true) {
			return h(f)
		}
		return f.forward()
	}
}

// fakeResponse builds a response as the attacker wants it.
func fakeResponse(req *http.Request, status int, contentType string, body []byte) *http.Response {
	h := http.Header{}
	if contentType != "" {
		h.Set("Content-Type", contentType)
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	return &http.Response{
		Status: strconv.Itoa(status) + " " + http.StatusText(status), StatusCode: status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)), Request: req,
	}
}

func problemJSON(t *testing.T, p *wire.Problem) []byte {
	t.Helper()
	b, err := json.Marshal(p)
	require.NoError(t, err)
	return b
}

var errDropped = errors.New("mitm: request captured and not forwarded")

// ---------------------------------------------------------------------------
// Store wrappers

// countingStore counts the Get calls for keys with a prefix: a request the
// middleware refuses early must not cost a store lookup.
type countingStore struct {
	store.Store
	prefix string
	gets   atomic.Int64
}

func (s *countingStore) Get(ctx context.Context, key string) (store.Entry, error) {
	if strings.HasPrefix(key, s.prefix) {
		s.gets.Add(1)
	}
	return s.Store.Get(ctx, key)
}

// gateStore calls beforeCAS (when set) before every CompareAndSwap, so a
// test can force two instances to interleave in one exact order.
type gateStore struct {
	store.Store
	beforeCAS atomic.Pointer[func(key string)]
}

func (s *gateStore) CompareAndSwap(ctx context.Context, key string, old uint64, v []byte, exp time.Time) (uint64, error) {
	if f := s.beforeCAS.Load(); f != nil {
		(*f)(key)
	}
	return s.Store.CompareAndSwap(ctx, key, old, v, exp)
}

func (s *gateStore) setBeforeCAS(f func(key string)) {
	if f == nil {
		s.beforeCAS.Store(nil)
		return
	}
	s.beforeCAS.Store(&f)
}

// ---------------------------------------------------------------------------
// Raw client: hand-built envelopes

// rawClient speaks the protocol with the wire package and the suite
// directly, so a test controls every byte and holds every key.
type rawClient struct {
	t       *testing.T
	base    string
	suite   crypto.Suite
	now     func() time.Time
	dir     *wire.Directory
	srvID   wire.KeyID
	srvPub  crypto.PublicKey
	key     crypto.PrivateKey
	keyID   wire.KeyID
	token   []byte
	sTime   uint64
	sTimeAt time.Time
}

// newRawClient fetches the key directory (public material only) and takes
// its primary key and s_time, as any outsider can.
func newRawClient(t *testing.T, base string, now func() time.Time) *rawClient {
	t.Helper()
	sd := fetchDirectory(t, base)
	d, err := sd.Verify(ed25519.PublicKey(sd.Identity))
	require.NoError(t, err)
	s, err := crypto.Lookup(d.Suite)
	require.NoError(t, err)
	rc := &rawClient{t: t, base: base, suite: s, now: now}
	rc.useDirectory(d)
	rc.sTime, rc.sTimeAt = uint64(d.STime), now()
	rc.key = rc.genKey()
	rc.keyID = wire.ComputeKeyID(s.Name(), rc.key.Public().Bytes())
	return rc
}

func fetchDirectory(t *testing.T, base string) *wire.SignedDirectory {
	t.Helper()
	resp, err := http.Get(base + wire.PathKeys)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var sd wire.SignedDirectory
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&sd))
	return &sd
}

func (rc *rawClient) useDirectory(d *wire.Directory) {
	rc.t.Helper()
	pk, ok := d.Primary()
	require.True(rc.t, ok)
	id, err := wire.ParseKeyID(pk.ID)
	require.NoError(rc.t, err)
	pub, err := rc.suite.ParsePublicKey(pk.Public)
	require.NoError(rc.t, err)
	rc.dir, rc.srvID, rc.srvPub = d, id, pub
}

func (rc *rawClient) genKey() crypto.PrivateKey {
	rc.t.Helper()
	k, err := rc.suite.GenerateKey(nil)
	require.NoError(rc.t, err)
	return k
}

func (rc *rawClient) elapsed() uint64 {
	e := rc.now().Sub(rc.sTimeAt)
	if e < 0 {
		e = 0
	}
	return uint64(e.Milliseconds())
}

// msg is one request envelope under construction: tests change any field
// between newMsg and seal.
type msg struct {
	Method, Path, Query string // where it is sent
	Header              wire.RequestHeader
	Inner               wire.Inner
	From                crypto.PrivateKey // authenticates the envelope
	To                  crypto.PublicKey  // server key it is sealed to
	Info                string
	// RawInner, if set, is sealed instead of the encoding of Inner (for
	// plaintexts the wire package refuses to build).
	RawInner []byte
	suite    crypto.Suite

	env    []byte
	secret []byte
}

// newMsg prepares a request of the session to method and target.
func (rc *rawClient) newMsg(method, target string, body []byte) *msg {
	rc.t.Helper()
	u, err := url.Parse(target)
	require.NoError(rc.t, err)
	m := &msg{
		Method: method, Path: u.EscapedPath(), Query: u.RawQuery,
		Header: wire.RequestHeader{Type: wire.TypeRequest, Suite: rc.suite.Name(), ServerKeyID: rc.srvID,
			ClientKey: append([]byte(nil), rc.keyID[:]...), Token: rc.token, STime: rc.sTime, Elapsed: rc.elapsed()},
		Inner: wire.Inner{ContentType: "text/plain", Body: body},
		From:  rc.key, To: rc.srvPub, Info: wire.InfoRequest, suite: rc.suite,
	}
	_, err = rand.Read(m.Header.MessageID[:])
	require.NoError(rc.t, err)
	return m
}

// rotate turns m into a rotation to newKey: the patent's two reserved
// fields plus the proof of possession, made with proofKey (newKey for an
// honest rotation) and bound to proofMsgID (m's own id for an honest one).
func (m *msg) rotate(t *testing.T, newKey, proofKey crypto.PrivateKey, proofMsgID [wire.MessageIDSize]byte, offsetDelta time.Duration) *msg {
	t.Helper()
	newPub := newKey.Public().Bytes()
	var cur wire.KeyID
	copy(cur[:], m.Header.ClientKey)
	proof, _, err := m.suite.Seal(nil, m.To, proofKey, []byte(wire.InfoProof), wire.ProofAAD(proofMsgID, cur, newPub), nil)
	require.NoError(t, err)
	m.Inner.NewClientKey, m.Inner.Proof = newPub, proof
	m.Inner.TimeOffset, m.Inner.HasOffset = int64(m.Header.Elapsed)+offsetDelta.Milliseconds(), true
	return m
}

// honestRotation is rotate with a correct proof and time_offset.
func (m *msg) honestRotation(t *testing.T, newKey crypto.PrivateKey) *msg {
	return m.rotate(t, newKey, newKey, m.Header.MessageID, 0)
}

// seal builds the envelope bytes.
func (m *msg) seal(t *testing.T) *msg {
	t.Helper()
	header, err := wire.AppendRequestHeader(nil, &m.Header)
	require.NoError(t, err)
	pt := m.RawInner
	if pt == nil {
		pt, err = wire.AppendInner(nil, &m.Inner)
		require.NoError(t, err)
	}
	aad := wire.RequestAAD(m.Method, m.Path, m.Query, header)
	ct, secret, err := m.suite.Seal(nil, m.To, m.From, []byte(m.Info), aad, pt)
	require.NoError(t, err)
	m.env, m.secret = append(header, ct...), secret
	return m
}

// reply is what came back for a raw request.
type reply struct {
	Status  int
	CT      string
	Body    []byte
	Problem *wire.Problem
	PlainCT string // the opened response, for a sealed one
	Plain   []byte
}

// code is the problem code of r, or "" if it is not a problem.
func (r *reply) code() wire.Code {
	if r.Problem == nil {
		return ""
	}
	return r.Problem.Code
}

func (r *reply) echo(t *testing.T) echo {
	t.Helper()
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	var e echo
	require.NoError(t, json.Unmarshal(r.Plain, &e))
	return e
}

// postEnvelope posts an envelope without a testing.T (for goroutines) and
// returns the status and the problem, if any.
func postEnvelope(target string, env []byte) (int, *wire.Problem, error) {
	resp, err := http.Post(target, wire.MediaType, bytes.NewReader(env))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, err
	}
	p, _ := wire.ParseProblem(b)
	return resp.StatusCode, p, nil
}

// sendRaw posts body to base+target as an envelope and parses the answer.
func sendRaw(t *testing.T, method, target string, contentType string, body []byte) *reply {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, target, rd)
	require.NoError(t, err)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	r := &reply{Status: resp.StatusCode, CT: resp.Header.Get("Content-Type"), Body: b}
	if strings.HasPrefix(r.CT, wire.ProblemMediaType) {
		p, ok := wire.ParseProblem(b)
		require.True(t, ok, "unparsable problem: %s", b)
		require.Equal(t, p.Code.Status(), resp.StatusCode, "status of %s", p.Code)
		r.Problem = p
	}
	return r
}

// send posts the sealed msg to base and opens a sealed response.
func (m *msg) send(t *testing.T, base string) *reply {
	t.Helper()
	target := base + m.Path
	if m.Query != "" {
		target += "?" + m.Query
	}
	r := sendRaw(t, m.Method, target, wire.MediaType, m.env)
	if strings.HasPrefix(r.CT, wire.MediaType) {
		status := r.Status
		var err error
		r.PlainCT, r.Plain, err = wire.OpenResponse(m.secret, m.Header.MessageID, status, r.Body)
		require.NoError(t, err)
	}
	return r
}

// loginMsg prepares a login (a TypeLogin envelope) with a fresh key.
func (rc *rawClient) loginMsg(user, password string) *msg {
	rc.t.Helper()
	key := rc.genKey()
	body, _ := json.Marshal(wire.LoginRequest{Username: user, Password: password})
	m := rc.newMsg(http.MethodPost, wire.PathLogin, body)
	m.Header.Type, m.Header.Token, m.Header.ClientKey = wire.TypeLogin, nil, key.Public().Bytes()
	m.Inner.ContentType, m.From, m.Info = "application/json", key, wire.InfoLogin
	return m
}

// login logs in with a fresh key (a TypeLogin envelope) and, on success,
// takes the token, key and s_time of the new session.
func (rc *rawClient) login(user, password string) *reply {
	rc.t.Helper()
	t := rc.t
	m := rc.loginMsg(user, password)
	key := m.From
	r := m.seal(t).send(t, rc.base)
	if r.Status != http.StatusOK {
		return r
	}
	var lr wire.LoginResponse
	require.NoError(t, json.Unmarshal(r.Plain, &lr))
	rc.key, rc.keyID, rc.token = key, wire.ComputeKeyID(rc.suite.Name(), key.Public().Bytes()), lr.Token
	rc.sTime, rc.sTimeAt = uint64(lr.STime), rc.now()
	return r
}

// mustLogin is login that requires success.
func (rc *rawClient) mustLogin(user string) *rawClient {
	rc.t.Helper()
	r := rc.login(user, testUsers[user])
	require.Equal(rc.t, http.StatusOK, r.Status, string(r.Body))
	return rc
}

// get sends an ordinary request of the session.
func (rc *rawClient) post(target, body string) *reply {
	rc.t.Helper()
	return rc.newMsg(http.MethodPost, target, []byte(body)).seal(rc.t).send(rc.t, rc.base)
}

// rotateTo rotates the session's key to newKey honestly and requires success.
func (rc *rawClient) rotateTo(newKey crypto.PrivateKey) {
	rc.t.Helper()
	r := rc.newMsg(http.MethodPost, "/api/rotate", nil).honestRotation(rc.t, newKey).seal(rc.t).send(rc.t, rc.base)
	require.Equal(rc.t, http.StatusOK, r.Status, string(r.Body))
	rc.key, rc.keyID = newKey, wire.ComputeKeyID(rc.suite.Name(), newKey.Public().Bytes())
}

// ---------------------------------------------------------------------------
// The stored key ring, as an attacker who stole the store and the
// key-encryption key sees it (docs/PROTOCOL.md §12).

type ringDump struct {
	Epoch          uint64 `json:"epoch"`
	IdentityPublic []byte `json:"identity_public"`
	SealedIdentity []byte `json:"sealed_identity"`
	Keys           []struct {
		ID             string `json:"id"`
		Suite          string `json:"suite"`
		Public         []byte `json:"public"`
		SealedPrivate  []byte `json:"sealed_private"`
		SealedTokenKey []byte `json:"sealed_token_key"`
		State          string `json:"state"`
	} `json:"keys"`
	TokenKeys []struct {
		ID     string `json:"id"`
		Sealed []byte `json:"sealed"`
	} `json:"token_keys"`
}

func readRing(t *testing.T, st store.Store) ringDump {
	t.Helper()
	e, err := st.Get(context.Background(), "dynkey/ring")
	require.NoError(t, err)
	var r ringDump
	require.NoError(t, json.Unmarshal(e.Value, &r))
	return r
}

func (r ringDump) primaries() []string {
	var ids []string
	for _, k := range r.Keys {
		if k.State == "primary" {
			ids = append(ids, k.ID)
		}
	}
	return ids
}

// unsealAtRest opens a secret sealed under the key-encryption key.
func unsealAtRest(t *testing.T, kek []byte, purpose, id string, sealed []byte) []byte {
	t.Helper()
	// docs/PROTOCOL.md §10: the seal key is HKDF-SHA256(KEK, "dynkey/v2 kek
	// seal"); a sealed secret is KEK id (8) | nonce (24) | ciphertext.
	sk, err := hkdf.Key(sha256.New, kek, nil, "dynkey/v2 kek seal", chacha20poly1305.KeySize)
	require.NoError(t, err)
	a, err := chacha20poly1305.NewX(sk)
	require.NoError(t, err)
	require.Greater(t, len(sealed), 8+a.NonceSize())
	sealed = sealed[8:]
	pt, err := a.Open(nil, sealed[:a.NonceSize()], sealed[a.NonceSize():], []byte("dynkey/v2 sealed "+purpose+"\x00"+id))
	require.NoError(t, err)
	return pt
}

// envelopeOf returns a request's envelope: from the Dynkey-Envelope header
// if it has one (header transport), else the body.
func envelopeOf(h http.Header, body []byte) []byte {
	if v := h.Get(wire.EnvelopeHeader); v != "" {
		env, _ := wire.DecodeHeaderEnvelope(v)
		return env
	}
	return body
}
