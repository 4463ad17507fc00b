package middleware_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/auth"
	"github.com/dynkey/dynkey/client"
	"github.com/dynkey/dynkey/middleware"
	"github.com/dynkey/dynkey/policy"
	"github.com/dynkey/dynkey/store"
	"github.com/dynkey/dynkey/store/memory"
	"github.com/dynkey/dynkey/wire"
)

// The byte-level core used without net/http: coreTransport is a transport
// that is neither a server nor a net/http handler. It turns the client's
// request into a middleware.Request, calls Skip, ServeEndpoint, Open, the
// "handler" and Opened.Seal directly, and turns the middleware.Response
// back — what a Fiber or any other adapter does.

type coreTransport struct {
	m       *middleware.Middleware
	handler func(o *middleware.Opened, r *middleware.Request) (status int, contentType string, body []byte)

	mu      sync.Mutex
	last    *middleware.Request // the last request to a protected route
	lastEnv []byte              // its body or decoded header envelope
	lastErr error               // the last error of Open
	calls   int                 // handler runs
}

func (t *coreTransport) RoundTrip(hr *http.Request) (*http.Response, error) {
	var b []byte
	if hr.Body != nil {
		var err error
		if b, err = io.ReadAll(hr.Body); err != nil {
			return nil, err
		}
		hr.Body.Close()
	}
	req := &middleware.Request{
		Method: hr.Method, EscapedPath: hr.URL.EscapedPath(), RawQuery: hr.URL.RawQuery,
		ContentLength: int64(len(b)), ContentType: hr.Header.Get("Content-Type"),
		Envelope: hr.Header.Get(wire.EnvelopeHeader), Body: bytes.NewReader(b),
		RemoteAddr: "192.0.2.7:4242", Header: hr.Header.Get,
	}
	ctx := hr.Context()
	resp := t.serve(ctx, req, b)
	out := &http.Response{StatusCode: resp.Status, Header: http.Header{}, Request: hr,
		Body: io.NopCloser(bytes.NewReader(resp.Body)), ContentLength: int64(len(resp.Body))}
	for _, kv := range resp.Header {
		out.Header.Set(kv[0], kv[1])
	}
	return out, nil
}

func (t *coreTransport) serve(ctx context.Context, req *middleware.Request, body []byte) *middleware.Response {
	if t.m.Skip(req) {
		return &middleware.Response{Status: 200, Body: []byte("skipped")}
	}
	if resp, ok := t.m.ServeEndpoint(ctx, req); ok {
		return resp
	}
	t.mu.Lock()
	t.last = req
	t.lastEnv = body
	if req.Envelope != "" {
		t.lastEnv, _ = wire.DecodeHeaderEnvelope(req.Envelope)
	}
	t.mu.Unlock()
	o, err := t.m.Open(ctx, req)
	t.mu.Lock()
	t.lastErr = err
	t.mu.Unlock()
	if err != nil {
		return t.m.Refusal(ctx, req, err)
	}
	t.mu.Lock()
	t.calls++
	t.mu.Unlock()
	status, ct, rb := t.handler(o, req)
	resp, err := o.Seal(status, ct, rb)
	if err != nil {
		return t.m.Refusal(ctx, req, err)
	}
	return resp
}

func coreUsers(t *testing.T) *auth.Argon2id {
	t.Helper()
	users := auth.NewArgon2id(auth.Params{Time: 1, MemoryKiB: 1024, Threads: 1, SaltLen: 16, KeyLen: 32})
	require.NoError(t, users.AddUser("alice", "pw"))
	return users
}

var coreKEK = bytes.Repeat([]byte{0x3c}, 32)

func newCoreMiddleware(t *testing.T, o middleware.Options) *middleware.Middleware {
	t.Helper()
	if o.Authenticator == nil {
		o.Authenticator = coreUsers(t)
	}
	if o.KeyEncryptionKey == nil {
		o.KeyEncryptionKey = coreKEK
	}
	o.MaintainInterval = -1
	if o.Logger == nil {
		o.Logger = quiet
	}
	m, err := middleware.New(o)
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	return m
}

func newCoreClient(t *testing.T, m *middleware.Middleware, tr http.RoundTripper, mods ...func(*client.Config)) *client.Client {
	t.Helper()
	cfg := client.Config{BaseURL: "https://core.test", Username: "alice", Password: "pw",
		IdentityKey: m.IdentityPublicKey(), Transport: tr, HeartbeatInterval: -1, Policy: policy.Manual()}
	for _, f := range mods {
		f(&cfg)
	}
	c, err := client.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// echoHandler answers with the method, the session's user, whether the
// request was encrypted and the body.
func echoHandler(o *middleware.Opened, r *middleware.Request) (int, string, []byte) {
	user := ""
	if o.Session != nil {
		user = o.Session.Username
	}
	b, _ := json.Marshal(map[string]any{"method": r.Method, "user": user, "encrypted": o.Encrypted,
		"body": string(o.Body), "ct": o.ContentType})
	if r.EscapedPath == "/api/empty" {
		return http.StatusNoContent, "", nil
	}
	return http.StatusCreated, "application/json", b
}

// TestCoreWithoutNetHTTP: login, POST, GET through the header, DELETE, HEAD
// and a 204, all through the byte-level core and the real client, with no
// net/http server or handler anywhere.
func TestCoreWithoutNetHTTP(t *testing.T) {
	m := newCoreMiddleware(t, middleware.Options{})
	tr := &coreTransport{m: m, handler: echoHandler}
	hc := newCoreClient(t, m, tr).HTTPClient()

	for _, tc := range []struct {
		name, method, path, body string
		wantStatus               int
	}{
		{"POST", http.MethodPost, "/api/echo", "hello", http.StatusCreated},
		{"GET in the header", http.MethodGet, "/api/echo?x=1", "", http.StatusCreated},
		{"DELETE in the header", http.MethodDelete, "/api/echo", "", http.StatusCreated},
		{"HEAD", http.MethodHead, "/api/echo", "", http.StatusCreated},
		{"204 through Dynkey-Status", http.MethodPost, "/api/empty", "x", http.StatusNoContent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, "https://core.test"+tc.path, strings.NewReader(tc.body))
			require.NoError(t, err)
			if tc.body != "" {
				req.Header.Set("Content-Type", "text/plain")
			}
			resp, err := hc.Do(req)
			require.NoError(t, err)
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.Equal(t, tc.wantStatus, resp.StatusCode)
			if tc.method == http.MethodHead || tc.wantStatus == http.StatusNoContent {
				require.Empty(t, b)
				return
			}
			var got map[string]any
			require.NoError(t, json.Unmarshal(b, &got))
			require.Equal(t, map[string]any{"method": tc.method, "user": "alice", "encrypted": true,
				"body": tc.body, "ct": req.Header.Get("Content-Type")}, got)
			require.Equal(t, tc.method == http.MethodGet || tc.method == http.MethodDelete, tr.last.Envelope != "")
		})
	}
}

// TestCoreErrors: Open's errors are *Problem values that errors.Is matches
// against the sentinels and errors.As unpacks; ProblemResponse renders any
// error, a non-problem one as the 503 "unavailable" problem without its
// text.
func TestCoreErrors(t *testing.T) {
	m := newCoreMiddleware(t, middleware.Options{})
	tr := &coreTransport{m: m, handler: echoHandler}
	hc := newCoreClient(t, m, tr).HTTPClient()
	ctx := context.Background()

	// A plain request.
	_, err := m.Open(ctx, &middleware.Request{Method: "POST", EscapedPath: "/api/x", ContentLength: 5, Body: strings.NewReader("plain")})
	require.ErrorIs(t, err, middleware.ErrNotEncrypted)
	require.NotErrorIs(t, err, middleware.ErrReplay)
	var p *middleware.Problem
	require.ErrorAs(t, err, &p)
	require.Equal(t, wire.CodeNotEncrypted, p.Code)
	require.Equal(t, http.StatusUnsupportedMediaType, p.Status)

	// A replayed envelope, opened twice by the core.
	resp, err := hc.Get("https://core.test/api/x")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	tr.mu.Lock()
	last, env := *tr.last, tr.lastEnv
	tr.mu.Unlock()
	last.Body, last.Envelope = nil, wire.EncodeHeaderEnvelope(env)
	_, err = m.Open(ctx, &last)
	require.ErrorIs(t, err, middleware.ErrReplay)
	// The same envelope to another path does not authenticate.
	moved := last
	moved.EscapedPath = "/api/y"
	_, err = m.Open(ctx, &moved)
	require.ErrorIs(t, err, middleware.ErrDecryptFailed)

	// Rendering.
	r := middleware.ProblemResponse(err)
	require.Equal(t, http.StatusBadRequest, r.Status)
	require.Equal(t, wire.ProblemMediaType, r.Header.Get("Content-Type"))
	require.Equal(t, string(wire.CodeDecryptFailed), r.Header.Get(wire.ProblemHeader))
	pp, ok := wire.ParseProblem(r.Body)
	require.True(t, ok)
	require.Equal(t, wire.CodeDecryptFailed, pp.Code)

	secret := errors.New("dial tcp 10.0.0.5:5432: secret internal detail")
	r = middleware.ProblemResponse(secret)
	require.Equal(t, http.StatusServiceUnavailable, r.Status)
	require.NotContains(t, string(r.Body), "10.0.0.5")
	pp, ok = wire.ParseProblem(r.Body)
	require.True(t, ok)
	require.Equal(t, wire.CodeUnavailable, pp.Code)
	// Wrapped problems are found.
	r = middleware.ProblemResponse(errors.Join(errors.New("context"), middleware.NewProblem(wire.CodeStale, "x")))
	require.Equal(t, string(wire.CodeStale), r.Header.Get(wire.ProblemHeader))
	// Every code has its sentinel.
	for _, code := range wire.Codes() {
		require.ErrorIs(t, middleware.NewProblem(code, ""), sentinelOf(t, code), code)
	}
}

func sentinelOf(t *testing.T, code wire.Code) error {
	t.Helper()
	for _, e := range []error{middleware.ErrBadFormat, middleware.ErrNotEncrypted, middleware.ErrTooLarge,
		middleware.ErrUnsupportedSuite, middleware.ErrServerKeyUnknown, middleware.ErrDecryptFailed,
		middleware.ErrTokenInvalid, middleware.ErrTokenExpired, middleware.ErrClientKeyUnknown,
		middleware.ErrClientKeyExpired, middleware.ErrStale, middleware.ErrReplay, middleware.ErrRotationRefused,
		middleware.ErrLoginFailed, middleware.ErrLoginThrottled, middleware.ErrLoginBusy,
		middleware.ErrMethodNotAllowed, middleware.ErrUnavailable} {
		if strings.HasSuffix(e.Error(), " "+string(code)) {
			return e
		}
	}
	t.Fatalf("no sentinel for %s", code)
	return nil
}

// nilStore is a store type whose nil pointer the README's snippet would
// pass when opening a store failed and its error was ignored.
type nilStore struct{ store.Store }

// durableStore stands for any store but *memory.Store.
type durableStore struct{ store.Store }

type nilObserver struct{ middleware.NopObserver }

// TestNewFailsFast: options that cannot work are refused by New with
// ErrConfig and a message naming the problem, before anything is created.
func TestNewFailsFast(t *testing.T) {
	users := coreUsers(t)
	for _, tc := range []struct {
		name string
		o    middleware.Options
		want string
	}{
		{"no Authenticator", middleware.Options{KeyEncryptionKey: coreKEK}, "Authenticator is required"},
		{"nil Authenticator pointer", middleware.Options{Authenticator: (*auth.Argon2id)(nil)}, "Authenticator is required"},
		{"nil store pointer", middleware.Options{Authenticator: users, Store: (*nilStore)(nil), KeyEncryptionKey: coreKEK}, "Store is a nil *middleware_test.nilStore"},
		{"nil memory store pointer", middleware.Options{Authenticator: users, Store: (*memory.Store)(nil)}, "Store is a nil"},
		{"durable store without KEK", middleware.Options{Authenticator: users, Store: &durableStore{memory.New()}}, "KeyEncryptionKey is required with a durable store"},
		{"short KEK", middleware.Options{Authenticator: users, KeyEncryptionKey: make([]byte, 16)}, "must be 32 bytes"},
		{"nil Observer pointer", middleware.Options{Authenticator: users, Observer: (*nilObserver)(nil)}, "Observer is a nil"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.MaintainInterval, tc.o.Logger = -1, quiet
			m, err := middleware.New(tc.o)
			require.Nil(t, m)
			require.ErrorIs(t, err, middleware.ErrConfig)
			require.ErrorContains(t, err, tc.want)
		})
	}
	// What works: the memory store without a KEK (random, for this
	// process), a durable store with one.
	for _, o := range []middleware.Options{
		{Authenticator: users},
		{Authenticator: users, Store: &durableStore{memory.New()}, KeyEncryptionKey: coreKEK},
	} {
		o.MaintainInterval, o.Logger = -1, quiet
		m, err := middleware.New(o)
		require.NoError(t, err)
		m.Close()
	}
}

// TestErrorHandlerCannotChangeTheBody: the hook sees every refusal (code,
// request), may add headers, but its changes to the problem it was given
// and the headers that frame the body are ignored: status, body,
// Content-Type and Cache-Control are the problem's.
func TestErrorHandlerCannotChangeTheBody(t *testing.T) {
	var seen []wire.Code
	var seenPath []string
	m := newCoreMiddleware(t, middleware.Options{ErrorHandler: func(ctx context.Context, r *middleware.Request, p *middleware.Problem) middleware.Header {
		seen = append(seen, p.Code)
		if r != nil {
			seenPath = append(seenPath, r.EscapedPath)
		}
		p.Code, p.Status, p.Detail, p.Title = wire.CodeUnavailable, 200, "changed by the hook", "changed"
		p.Header = append(p.Header, [2]string{"X-Sneaky", "1"})
		return middleware.Header{
			{"X-Request-Id", "abc"},
			{"Allow", "DELETE"},
			{"Content-Type", "text/html"},
			{"cache-control", "max-age=3600"},
			{"Content-Length", "1"},
			{wire.ProblemHeader, "unavailable"},
			{"X-Bad", "a\r\nSet-Cookie: x=1"},
			{"Bad Name", "v"},
		}
	}})
	ctx := context.Background()
	req := &middleware.Request{Method: "GET", EscapedPath: "/api/x"}
	_, err := m.Open(ctx, req)
	require.ErrorIs(t, err, middleware.ErrNotEncrypted)
	want := middleware.ProblemResponse(err)
	got := m.Refusal(ctx, req, err)
	require.Equal(t, want.Status, got.Status)
	require.Equal(t, want.Body, got.Body)
	require.Equal(t, append(want.Header, [2]string{"X-Request-Id", "abc"}, [2]string{"Allow", "DELETE"}), got.Header)
	require.Equal(t, []wire.Code{wire.CodeNotEncrypted}, seen)
	require.Equal(t, []string{"/api/x"}, seenPath)

	// The same through net/http, on an endpoint: 405 with Allow, body intact.
	srv := httptestServer(t, m.Handler(http.NotFoundHandler()))
	resp, err := http.Post(srv+wire.PathKeys, "text/plain", nil)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	require.Equal(t, "GET, HEAD", resp.Header.Get("Allow"))
	require.Equal(t, "abc", resp.Header.Get("X-Request-Id"))
	require.Empty(t, resp.Header.Get("X-Sneaky"))
	require.Empty(t, resp.Header.Get("X-Bad"))
	require.Empty(t, resp.Header.Values("Set-Cookie"))
	require.Equal(t, wire.ProblemMediaType, resp.Header.Get("Content-Type"))
	require.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	p, ok := wire.ParseProblem(b)
	require.True(t, ok)
	require.Equal(t, wire.CodeMethod, p.Code)
	require.Equal(t, http.StatusMethodNotAllowed, p.Status)
	require.NotContains(t, string(b), "changed")
}

// recObserver records what the observer sees.
type recObserver struct {
	mu        sync.Mutex
	refused   map[wire.Code]int
	rotations []middleware.Rotation
	opened    map[string]int
	sealed    map[string]int
	logins    int
	negative  bool
}

func newRecObserver() *recObserver {
	return &recObserver{refused: map[wire.Code]int{}, opened: map[string]int{}, sealed: map[string]int{}}
}

func (o *recObserver) Refused(c wire.Code) { o.mu.Lock(); o.refused[c]++; o.mu.Unlock() }
func (o *recObserver) Rotated(r middleware.Rotation) {
	o.mu.Lock()
	o.rotations = append(o.rotations, r)
	o.mu.Unlock()
}
func (o *recObserver) Opened(s string, d time.Duration) {
	o.mu.Lock()
	o.opened[s]++
	o.negative = o.negative || d < 0
	o.mu.Unlock()
}
func (o *recObserver) Sealed(s string, d time.Duration) {
	o.mu.Lock()
	o.sealed[s]++
	o.negative = o.negative || d < 0
	o.mu.Unlock()
}
func (o *recObserver) LoggedIn(string) { o.mu.Lock(); o.logins++; o.mu.Unlock() }

// TestObserver: the observer sees refusals by code, server rotations by
// reason (manual, policy), client rotations (on a request, on a
// heartbeat), logins, and one open and one seal per exchange, by suite.
func TestObserver(t *testing.T) {
	obs := newRecObserver()
	clk := &fakeNow{t: time.Now()}
	m := newCoreMiddleware(t, middleware.Options{Observer: obs, Now: clk.Now, ServerPolicy: policy.Uptime(time.Hour)})
	tr := &coreTransport{m: m, handler: echoHandler}
	c := newCoreClient(t, m, tr)
	hc := c.HTTPClient()
	ctx := context.Background()
	suite := m.Suite()

	get := func() {
		t.Helper()
		resp, err := hc.Get("https://core.test/api/x")
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusCreated, resp.StatusCode)
	}
	get() // login + request
	c.RotateNow()
	get() // carries the client rotation
	c.RotateNow()
	require.NoError(t, c.Heartbeat(ctx)) // carries one too
	require.NoError(t, m.Rotate(ctx))
	clk.Advance(2 * time.Hour)
	require.NoError(t, m.Maintain(ctx))
	_, _ = m.Open(ctx, &middleware.Request{Method: "GET", EscapedPath: "/api/x"})
	m.ServeEndpoint(ctx, &middleware.Request{Method: "DELETE", EscapedPath: wire.PathLogin})

	obs.mu.Lock()
	defer obs.mu.Unlock()
	require.Equal(t, 1, obs.logins)
	require.Equal(t, map[wire.Code]int{wire.CodeNotEncrypted: 1, wire.CodeMethod: 1}, obs.refused)
	require.Equal(t, []middleware.Rotation{
		{Side: middleware.SideClient, Suite: suite, Reason: "request"},
		{Side: middleware.SideClient, Suite: suite, Reason: "heartbeat"},
		{Side: middleware.SideServer, Suite: suite, Reason: "manual"},
		{Side: middleware.SideServer, Suite: suite, Reason: "policy"},
	}, obs.rotations)
	// login + 2 requests + heartbeat: each opened and sealed once.
	require.Equal(t, map[string]int{suite: 4}, obs.opened)
	require.Equal(t, map[string]int{suite: 4}, obs.sealed)
	require.False(t, obs.negative)
}

type fakeNow struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeNow) Now() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.t }
func (f *fakeNow) Advance(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

// FuzzOpen: whatever the header envelope, body, method and path, Open
// never panics and refuses with a *Problem of a documented code (here no
// store can fail, so never "unavailable").
func FuzzOpen(f *testing.F) {
	f.Add("GET", "/api/x", "", []byte(nil), "")
	f.Add("POST", "/api/x", "", []byte("DK\x01\x02\x00\x0cecies-x25519"), wire.MediaType)
	f.Add("GET", "/api/x", "REsBAgAMZWNpZXMteDI1NTE5", []byte(nil), "")
	f.Add("DELETE", "/api/x?a=1", "REsBAg", []byte("x"), "")
	m, err := middleware.New(middleware.Options{Authenticator: auth.AuthenticatorFunc(func(context.Context, string, string) error {
		return auth.ErrBadCredentials
	}), MaintainInterval: -1, Logger: quiet})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { m.Close() })
	codes := wire.Codes()
	f.Fuzz(func(t *testing.T, method, path, envelope string, body []byte, ct string) {
		req := &middleware.Request{Method: method, EscapedPath: path, Envelope: envelope, ContentType: ct,
			ContentLength: int64(len(body)), Body: bytes.NewReader(body)}
		for _, open := range []func(context.Context, *middleware.Request) (*middleware.Opened, error){m.Open, m.OpenOptional} {
			req.Body = bytes.NewReader(body)
			o, err := open(context.Background(), req)
			if err == nil {
				if o.Encrypted {
					t.Fatal("a fuzzed request opened")
				}
				continue
			}
			var p *middleware.Problem
			if !errors.As(err, &p) || p.Code == wire.CodeUnavailable {
				t.Fatalf("not a refusal: %v", err)
			}
			found := false
			for _, c := range codes {
				found = found || c == p.Code
			}
			if !found || p.Status != p.Code.Status() {
				t.Fatalf("undocumented refusal %+v", p)
			}
		}
	})
}

// BenchmarkCoreExchange measures one protected exchange through the
// byte-level core (client seal, Open, Seal, client open; ecies-x25519, no
// network), with the envelope in the body and in the header.
func BenchmarkCoreExchange(b *testing.B) {
	for _, mode := range []struct {
		name string
		mode client.EnvelopeMode
	}{{"body", client.EnvelopeInBody}, {"header", client.EnvelopeAuto}} {
		b.Run(mode.name, func(b *testing.B) {
			users := auth.NewArgon2id(auth.Params{Time: 1, MemoryKiB: 1024, Threads: 1, SaltLen: 16, KeyLen: 32})
			if err := users.AddUser("alice", "pw"); err != nil {
				b.Fatal(err)
			}
			m, err := middleware.New(middleware.Options{Authenticator: users, MaintainInterval: -1, Logger: quiet})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			tr := &coreTransport{m: m, handler: echoHandler}
			c, err := client.New(client.Config{BaseURL: "https://core.test", Username: "alice", Password: "pw",
				IdentityKey: m.IdentityPublicKey(), Transport: tr, HeartbeatInterval: -1, Policy: policy.Manual(), Envelope: mode.mode})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			hc := c.HTTPClient()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				resp, err := hc.Get("https://core.test/api/x")
				if err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					b.Fatal(resp.Status)
				}
			}
		})
	}
}
