// Package fibertest is the end-to-end test suite shared by the Fiber v3 and
// Fiber v2 adapters: it talks to a real server on loopback with the Go
// client, so it does not depend on the Fiber version. Each adapter's test
// builds an app with the routes described by [Start] and calls [Run].
package fibertest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/auth"
	"github.com/dynkey/dynkey/client"
	"github.com/dynkey/dynkey/middleware"
	"github.com/dynkey/dynkey/wire"
)

// Markers the handlers put in their answers (RespMarker) and the client in
// its request bodies (ReqMarker): neither may ever appear on the wire.
const (
	RespMarker = "handler-secret-7f3a9c"
	ReqMarker  = "client-secret-91c2e4"
)

// Start serves an app on ln (a loopback listener) until the test ends. The
// app must have:
//
//   - GET /public → 200 "public ok", no dynkey;
//   - the dynkey endpoints mounted with the adapter's Mount;
//   - under /api, the adapter's protection with a Next that skips exactly
//     the path /api/skip, and these routes, each adding 1 to hits:
//     POST /api/echo → 201 JSON {"user": session user from the adapter's
//     accessor, "ctx_user": from middleware.FromContext of the request's
//     context.Context, "ct": c.Get("Content-Type"), "body": string(c.Body()),
//     "secret": RespMarker};
//     GET /api/items/:id → 200 JSON {"id", "q": query q, "user",
//     "secret": RespMarker} (HEAD too, as Fiber registers it);
//     DELETE /api/items/:id → 204;
//     GET /api/fail → returns fiber.NewError(418, RespMarker+" teapot");
//     GET /api/skip → 200 "skipped" (reached through Next);
//   - POST /opt/echo under the adapter in optional mode → 200 JSON
//     {"encrypted": whether the adapter's accessor found a session,
//     "body": string(c.Body())}.
type Start func(t testing.TB, ln net.Listener, m *middleware.Middleware, hits *atomic.Int64)

// Env is a running app with dynkey and a client; Env is the client's
// transport, recording what crossed the wire.
type Env struct {
	URL  string
	M    *middleware.Middleware
	C    *client.Client
	HC   *http.Client
	Hits atomic.Int64
	tap  tap
}

// tap records, for the last request, the Dynkey-Envelope header and body
// length sent and the Content-Type and Dynkey-Response received.
type tap struct {
	mu                         sync.Mutex
	envHeader, wireCT, respEnv string
	reqBodyLen                 int64
}

// RoundTrip sends r over http.DefaultTransport and records it.
func (e *Env) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	e.tap.mu.Lock()
	defer e.tap.mu.Unlock()
	e.tap.envHeader, e.tap.reqBodyLen = r.Header.Get(wire.EnvelopeHeader), r.ContentLength
	if err == nil {
		e.tap.wireCT = resp.Header.Get("Content-Type")
		e.tap.respEnv = resp.Header.Get(wire.ResponseHeader)
	}
	return resp, err
}

func (e *Env) last() (envHeader string, bodyLen int64, ct string) {
	e.tap.mu.Lock()
	defer e.tap.mu.Unlock()
	return e.tap.envHeader, e.tap.reqBodyLen, e.tap.wireCT
}

// NewMiddleware returns a memory-backed dynkey server with user alice/pw.
func NewMiddleware(t testing.TB) *middleware.Middleware {
	t.Helper()
	users := auth.NewArgon2id(auth.Params{Time: 1, MemoryKiB: 1024, Threads: 1, SaltLen: 16, KeyLen: 32})
	require.NoError(t, users.AddUser("alice", "pw"))
	m, err := middleware.New(middleware.Options{Authenticator: users, MaintainInterval: -1})
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	return m
}

// Listen returns a loopback listener.
func Listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	return ln
}

// NewEnv starts the app on loopback and a client pinned to its identity
// key.
func NewEnv(t testing.TB, start Start) *Env {
	t.Helper()
	e := &Env{M: NewMiddleware(t)}
	ln := Listen(t)
	e.URL = "http://" + ln.Addr().String()
	start(t, ln, e.M, &e.Hits)
	e.C = newClient(t, e.URL, e.M, e)
	e.HC = e.C.HTTPClient()
	return e
}

func newClient(t testing.TB, base string, m *middleware.Middleware, rt http.RoundTripper) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{BaseURL: base, Username: "alice", Password: "pw", HeartbeatInterval: -1,
		Transport: rt, IdentityKey: m.IdentityPublicKey()})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// Do sends a request with hc and returns the response and its body.
func Do(t testing.TB, hc *http.Client, method, url, ct, body string) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	require.NoError(t, err)
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	resp, err := hc.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

func problemCode(t *testing.T, resp *http.Response, body string) wire.Code {
	t.Helper()
	require.Equal(t, wire.ProblemMediaType, resp.Header.Get("Content-Type"), body)
	p, ok := wire.ParseProblem([]byte(body))
	require.True(t, ok, body)
	return p.Code
}

// Run runs the whole suite against the app start builds.
func Run(t *testing.T, start Start) {
	e := NewEnv(t, start)
	plain := &http.Client{Timeout: 10 * time.Second}

	t.Run("EncryptedPOST", func(t *testing.T) {
		in := `{"msg":"` + ReqMarker + `"}`
		resp, body := Do(t, e.HC, "POST", e.URL+"/api/echo", "application/json", in)
		require.Equal(t, http.StatusCreated, resp.StatusCode, body)
		require.True(t, strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json"), resp.Header.Get("Content-Type"))
		var v map[string]string
		require.NoError(t, json.Unmarshal([]byte(body), &v), body)
		require.Equal(t, map[string]string{"user": "alice", "ctx_user": "alice", "ct": "application/json",
			"body": in, "secret": RespMarker}, v)
		_, _, ct := e.last()
		require.Equal(t, wire.MediaType, ct, "the response on the wire is not sealed")
	})

	t.Run("GETThroughHeader", func(t *testing.T) {
		resp, body := Do(t, e.HC, "GET", e.URL+"/api/items/42?q=caf%C3%A9+au+lait", "", "")
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		require.JSONEq(t, `{"id":"42","q":"café au lait","user":"alice","secret":"`+RespMarker+`"}`, body)
		env, n, ct := e.last()
		require.NotEmpty(t, env, "the GET did not carry the Dynkey-Envelope header")
		require.LessOrEqual(t, n, int64(0), "the GET had a body")
		require.Equal(t, wire.MediaType, ct)
		// The path is bound as sent, still escaped (not Fiber's decoded one).
		resp, body = Do(t, e.HC, "GET", e.URL+"/api/items/caf%C3%A9%20x?q=a%26b", "", "")
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		require.Contains(t, body, `"q":"a\u0026b"`)
	})

	t.Run("HEAD", func(t *testing.T) {
		resp, body := Do(t, e.HC, "HEAD", e.URL+"/api/items/7", "", "")
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		require.Empty(t, body)
		e.tap.mu.Lock()
		respEnv := e.tap.respEnv
		e.tap.mu.Unlock()
		require.NotEmpty(t, respEnv, "the HEAD response envelope travels in Dynkey-Response")
	})

	t.Run("DELETE", func(t *testing.T) {
		resp, body := Do(t, e.HC, "DELETE", e.URL+"/api/items/7", "", "")
		require.Equal(t, http.StatusNoContent, resp.StatusCode, body)
		require.Empty(t, body)
		env, _, _ := e.last()
		require.NotEmpty(t, env)
	})

	t.Run("HandlerErrorSealed", func(t *testing.T) {
		resp, body := Do(t, e.HC, "GET", e.URL+"/api/fail", "", "")
		require.Equal(t, http.StatusTeapot, resp.StatusCode, body)
		require.Equal(t, RespMarker+" teapot", body)
		_, _, ct := e.last()
		require.Equal(t, wire.MediaType, ct, "the error response left in plaintext")
	})

	t.Run("PlainRequestRefused", func(t *testing.T) {
		before := e.Hits.Load()
		resp, body := Do(t, plain, "POST", e.URL+"/api/echo", "application/json", `{"msg":"hi"}`)
		require.Equal(t, http.StatusUnsupportedMediaType, resp.StatusCode, body)
		require.Equal(t, wire.CodeNotEncrypted, problemCode(t, resp, body))
		resp, body = Do(t, plain, "GET", e.URL+"/api/items/1", "", "")
		require.Equal(t, wire.CodeNotEncrypted, problemCode(t, resp, body))
		require.Equal(t, before, e.Hits.Load(), "a protected handler ran for a plain request")
	})

	t.Run("BadEnvelopeRefused", func(t *testing.T) {
		before := e.Hits.Load()
		resp, body := Do(t, plain, "POST", e.URL+"/api/echo", wire.MediaType, "DK not an envelope")
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, body)
		require.Equal(t, wire.CodeBadFormat, problemCode(t, resp, body))
		require.Equal(t, before, e.Hits.Load())
	})

	t.Run("EnvelopeInHeaderAndBodyRefused", func(t *testing.T) {
		before := e.Hits.Load()
		req, err := http.NewRequest("POST", e.URL+"/api/echo", strings.NewReader("DK body"))
		require.NoError(t, err)
		req.Header.Set(wire.EnvelopeHeader, "REsgaGVhZGVy")
		req.Header.Set("Content-Type", wire.MediaType)
		resp, err := plain.Do(req)
		require.NoError(t, err)
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, string(b))
		require.Equal(t, wire.CodeBadFormat, problemCode(t, resp, string(b)))
		require.Equal(t, before, e.Hits.Load())
	})

	t.Run("WrongMethodOnEndpoints", func(t *testing.T) {
		for _, tc := range []struct{ name, method, path, allow string }{
			{"POST keys", "POST", wire.PathKeys, "GET, HEAD"},
			{"DELETE keys", "DELETE", wire.PathKeys, "GET, HEAD"},
			{"GET login", "GET", wire.PathLogin, "POST"},
			{"PUT login", "PUT", wire.PathLogin, "POST"},
			{"GET heartbeat", "GET", wire.PathHeartbeat, "POST"},
			{"PATCH heartbeat", "PATCH", wire.PathHeartbeat, "POST"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				resp, body := Do(t, plain, tc.method, e.URL+tc.path, "", "")
				require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode, body)
				require.Equal(t, tc.allow, resp.Header.Get("Allow"))
				require.Equal(t, wire.CodeMethod, problemCode(t, resp, body))
			})
		}
		resp, body := Do(t, plain, "GET", e.URL+wire.PathKeys, "", "")
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
	})

	t.Run("NextSkipsAndPublicStaysPublic", func(t *testing.T) {
		resp, body := Do(t, plain, "GET", e.URL+"/api/skip", "", "")
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		require.Equal(t, "skipped", body)
		resp, body = Do(t, plain, "GET", e.URL+"/public", "", "")
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		require.Equal(t, "public ok", body)
	})

	t.Run("Optional", func(t *testing.T) {
		resp, body := Do(t, plain, "POST", e.URL+"/opt/echo", "text/plain", "plain hi")
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		require.JSONEq(t, `{"encrypted":false,"body":"plain hi"}`, body)
		resp, body = Do(t, e.HC, "POST", e.URL+"/opt/echo", "text/plain", "sealed hi")
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		require.JSONEq(t, `{"encrypted":true,"body":"sealed hi"}`, body)
		_, _, ct := e.last()
		require.Equal(t, wire.MediaType, ct)
		// A broken envelope on an optional route is refused, not passed as plain.
		resp, body = Do(t, plain, "POST", e.URL+"/opt/echo", wire.MediaType, "DK garbage")
		require.Equal(t, wire.CodeBadFormat, problemCode(t, resp, body))
	})

	t.Run("Rotations", func(t *testing.T) {
		post := func() {
			t.Helper()
			resp, body := Do(t, e.HC, "POST", e.URL+"/api/echo", "text/plain", "x")
			require.Equal(t, http.StatusCreated, resp.StatusCode, body)
		}
		post()
		before := e.C.Stats()
		e.C.RotateNow() // carried by the next heartbeat or bodiless request
		require.Eventually(t, func() bool {
			return e.C.Heartbeat(t.Context()) == nil && e.C.Stats().ClientRotations == before.ClientRotations+1
		}, 5*time.Second, 10*time.Millisecond)
		post()
		e.C.RotateNow()
		require.Eventually(t, func() bool {
			resp, body := Do(t, e.HC, "GET", e.URL+"/api/items/r", "", "")
			require.Equal(t, http.StatusOK, resp.StatusCode, body)
			return e.C.Stats().ClientRotations == before.ClientRotations+2
		}, 5*time.Second, 10*time.Millisecond, "a GET through the header carried no rotation")
		require.NoError(t, e.M.Rotate(t.Context()))
		require.NoError(t, e.C.Heartbeat(t.Context()))
		require.Equal(t, before.ServerKeyChanges+1, e.C.Stats().ServerKeyChanges)
		post()
		id, _ := e.C.ServerKeyID()
		require.NoError(t, e.M.Rotate(t.Context()))
		post() // sealed to the retired key, still open within the grace
		require.NoError(t, e.C.Heartbeat(t.Context()))
		id2, _ := e.C.ServerKeyID()
		require.NotEqual(t, id, id2)
		post()
	})
}

// Capture returns every byte exchanged, both ways, through a proxy on
// loopback in front of base while a client logs in and makes every kind of
// protected call (POST with ReqMarker in the body, GET, a handler error),
// plus one plain GET /public (whose "public ok" shows the capture works).
// Client errors are ignored: a leaking adapter may also break the client.
func Capture(t *testing.T, base string, m *middleware.Middleware) []byte {
	t.Helper()
	return Wire(t, base, m, func(try func(method, path, ct, body string), plain *http.Client, proxy string) {
		try("POST", "/api/echo", "application/json", `{"msg":"`+ReqMarker+`"}`)
		try("GET", "/api/items/9?q=x", "", "")
		try("GET", "/api/fail", "", "")
		if resp, err := plain.Get(proxy + "/public"); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}

// Wire returns every byte exchanged, both ways, through a proxy on loopback
// in front of base while script runs: try sends a request with a dynkey
// client pinned to m (its errors ignored), plain is an ordinary client and
// proxy the proxy's URL.
func Wire(t *testing.T, base string, m *middleware.Middleware, script func(try func(method, path, ct, body string), plain *http.Client, proxy string)) []byte {
	t.Helper()
	ln := Listen(t)
	backend := strings.TrimPrefix(base, "http://")
	var mu sync.Mutex
	var buf bytes.Buffer
	rec := func(dst io.Writer, src io.Reader) {
		_, _ = io.Copy(io.MultiWriter(dst, writerFunc(func(p []byte) {
			mu.Lock()
			buf.Write(p)
			mu.Unlock()
		})), src)
	}
	var wg sync.WaitGroup
	var conns sync.Map
	wg.Go(func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", backend)
			if err != nil {
				in.Close()
				continue
			}
			conns.Store(in, out)
			wg.Go(func() { rec(out, in); out.(*net.TCPConn).CloseWrite() })
			wg.Go(func() { rec(in, out); in.(*net.TCPConn).CloseWrite() })
		}
	})
	proxy := "http://" + ln.Addr().String()
	tr := &http.Transport{}
	c := newClient(t, proxy, m, tr)
	hc := c.HTTPClient()
	hc.Timeout = 5 * time.Second
	try := func(method, path, ct, body string) {
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequestWithContext(context.Background(), method, proxy+path, rd)
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		if resp, err := hc.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	script(try, &http.Client{Transport: tr, Timeout: 5 * time.Second}, proxy)
	c.Close()
	tr.CloseIdleConnections()
	ln.Close()
	conns.Range(func(k, v any) bool { k.(net.Conn).Close(); v.(net.Conn).Close(); return true })
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	return bytes.Clone(buf.Bytes())
}

type writerFunc func([]byte)

func (f writerFunc) Write(p []byte) (int, error) { f(p); return len(p), nil }

// RequireNoLeak runs [Capture] and fails if the handlers' answers or the
// client's request bodies appear on the wire.
func RequireNoLeak(t *testing.T, start Start) {
	t.Helper()
	m := NewMiddleware(t)
	ln := Listen(t)
	var hits atomic.Int64
	start(t, ln, m, &hits)
	got := Capture(t, "http://"+ln.Addr().String(), m)
	require.Contains(t, string(got), "public ok", "the capture missed the plain response")
	require.Contains(t, string(got), "application/dynkey", "no sealed traffic captured")
	require.NotZero(t, hits.Load(), "no protected handler ran")
	require.NotContains(t, string(got), RespMarker, "a handler's answer crossed the wire in plaintext")
	require.NotContains(t, string(got), ReqMarker, "a request body crossed the wire in plaintext")
}

// Origin is the page origin of [RunCORS].
const Origin = "http://page.example"

// RunCORS checks that the framework's own CORS middleware works in front of
// dynkey. start builds the app of [Start] with Fiber's cors middleware first
// (app.Use), allowing Origin and the Dynkey-Envelope request header and
// exposing wire.ExposedHeaders().
func RunCORS(t *testing.T, start Start) {
	e := NewEnv(t, start)
	plain := &http.Client{Timeout: 10 * time.Second}
	send := func(hc *http.Client, method, path string, h map[string]string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, e.URL+path, nil)
		require.NoError(t, err)
		req.Header.Set("Origin", Origin)
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := hc.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp, string(b)
	}

	t.Run("PreflightPassesUntouched", func(t *testing.T) {
		before := e.Hits.Load()
		resp, body := send(plain, "OPTIONS", "/api/items/1", map[string]string{
			"Access-Control-Request-Method":  "GET",
			"Access-Control-Request-Headers": "dynkey-envelope",
		})
		require.Equal(t, http.StatusNoContent, resp.StatusCode, body)
		require.Equal(t, Origin, resp.Header.Get("Access-Control-Allow-Origin"))
		require.Contains(t, strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers")), "dynkey-envelope")
		require.Empty(t, resp.Header.Get(wire.ProblemHeader), "dynkey answered the preflight")
		require.Equal(t, before, e.Hits.Load())
	})

	t.Run("SealedResponseCarriesCORS", func(t *testing.T) {
		resp, body := send(e.HC, "GET", "/api/items/5?q=z", nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		require.Contains(t, body, `"q":"z"`)
		require.Equal(t, Origin, resp.Header.Get("Access-Control-Allow-Origin"))
		for _, h := range wire.ExposedHeaders() {
			require.Contains(t, resp.Header.Get("Access-Control-Expose-Headers"), h)
		}
		_, _, ct := e.last()
		require.Equal(t, wire.MediaType, ct)
	})

	t.Run("RefusalCarriesCORS", func(t *testing.T) {
		resp, body := send(plain, "GET", "/api/items/5", nil)
		require.Equal(t, wire.CodeNotEncrypted, problemCode(t, resp, body))
		require.Equal(t, Origin, resp.Header.Get("Access-Control-Allow-Origin"), "the page cannot read the problem")
		require.Contains(t, resp.Header.Get("Access-Control-Expose-Headers"), wire.ProblemHeader)
	})
}

// RequireTrickleCutOff sends a protected route (path) at addr an envelope
// trickled a byte every 20ms and requires the server to close the
// connection before a 5s bound, without running a handler: on fasthttp the
// app's read timeout bounds the body (dynkey's Options.ReadTimeout cannot).
func RequireTrickleCutOff(t *testing.T, addr, path string, hits *atomic.Int64) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	_, err = io.WriteString(conn, "POST "+path+" HTTP/1.1\r\nHost: x\r\nContent-Type: application/dynkey\r\nContent-Length: 5000\r\n\r\nDK")
	require.NoError(t, err)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				if _, err := conn.Write([]byte{0}); err != nil {
					return
				}
			}
		}
	}()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
	b, err := io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the connection was still open at the 5s bound; got %q", b)
	}
	require.Zero(t, hits.Load(), "a handler ran")
}
