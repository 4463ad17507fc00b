// Package adaptertest is the end-to-end suite every framework adapter (and
// every framework used through the net/http middleware) passes: a real server
// on loopback, the real Go client pinned to the server's identity key, and
// the protocol's whole life — login, encrypted calls, GET through the
// Dynkey-Envelope header, client and server key rotations, a refusal with its
// problem code, the 405 of the endpoints — with the bytes on the wire checked
// for the handler's plaintext.
//
// The application under test routes, with the framework's own router:
//
//	GET  /public/ping      unprotected: 200 text/plain "pong"
//	POST /api/echo         protected: 200 application/json
//	                       {"user": session user, "ct": request Content-Type, "body": request body}
//	GET  /api/items/{id}   protected: 200 text/plain "item <id> q=<query q>"
//
// and counts the runs of its protected handlers in App.Hits.
package adaptertest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/auth"
	"github.com/dynkey/dynkey/client"
	"github.com/dynkey/dynkey/middleware"
	"github.com/dynkey/dynkey/wire"
)

// Secret is a marker the suite puts in request bodies and the handlers echo:
// it must never appear in the bytes on the wire.
const Secret = "plaintext-marker-7f3a"

// App is the state a test application shares with the suite.
type App struct {
	M    *middleware.Middleware
	Hits atomic.Int64 // runs of protected handlers
}

// NewMiddleware returns a middleware with user alice (password "pw"), fast
// password hashing and no background maintenance.
func NewMiddleware(t testing.TB, mod func(*middleware.Options)) *middleware.Middleware {
	t.Helper()
	users := auth.NewArgon2id(auth.Params{Time: 1, MemoryKiB: 1024, Threads: 1, SaltLen: 16, KeyLen: 32})
	require.NoError(t, users.AddUser("alice", "pw"))
	o := middleware.Options{Authenticator: users, MaintainInterval: -1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if mod != nil {
		mod(&o)
	}
	m, err := middleware.New(o)
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	return m
}

// Wire records what crossed the connection.
type Wire struct {
	mu       sync.Mutex
	Requests []*http.Request // as sent (bodies not kept)
	Bodies   [][]byte        // request bodies as sent
	Raw      [][]byte        // response bodies as received
	Headers  []http.Header   // response headers as received
}

// Transport returns a RoundTripper that records into w.
func (w *Wire) Transport() http.RoundTripper { return recorder{w} }

// Last returns the last request and its response headers.
func (w *Wire) Last() (*http.Request, []byte, http.Header) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(w.Requests)
	return w.Requests[n-1], w.Bodies[n-1], w.Headers[n-1]
}

// Contains reports whether s appears in any recorded request or response body.
func (w *Wire) Contains(s string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, b := range append(append([][]byte{}, w.Bodies...), w.Raw...) {
		if bytes.Contains(b, []byte(s)) {
			return true
		}
	}
	for _, h := range w.Headers {
		for _, v := range h {
			if strings.Contains(strings.Join(v, ","), s) {
				return true
			}
		}
	}
	return false
}

type recorder struct{ w *Wire }

func (r recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		body = b
		req.Body = io.NopCloser(bytes.NewReader(b))
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(raw))
	r.w.mu.Lock()
	r.w.Requests = append(r.w.Requests, req)
	r.w.Bodies = append(r.w.Bodies, body)
	r.w.Raw = append(r.w.Raw, raw)
	r.w.Headers = append(r.w.Headers, resp.Header.Clone())
	r.w.mu.Unlock()
	return resp, nil
}

// NewClient returns a client of base pinned to m's identity, recording into
// w, with no background heartbeats.
func NewClient(t testing.TB, base string, m *middleware.Middleware, w *Wire) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{BaseURL: base, Username: "alice", Password: "pw", HeartbeatInterval: -1,
		IdentityKey: m.IdentityPublicKey(), Transport: w.Transport()})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// ReadBody reads and closes resp's body.
func ReadBody(t testing.TB, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// RequireProblem checks that resp is the refusal code with status.
func RequireProblem(t testing.TB, resp *http.Response, status int, code wire.Code) wire.Problem {
	t.Helper()
	body := ReadBody(t, resp)
	require.Equal(t, status, resp.StatusCode, body)
	require.Equal(t, wire.ProblemMediaType, resp.Header.Get("Content-Type"))
	require.Equal(t, string(code), resp.Header.Get(wire.ProblemHeader))
	var p wire.Problem
	require.NoError(t, json.Unmarshal([]byte(body), &p))
	require.Equal(t, code, p.Code)
	return p
}

// Run runs the suite against the application at base (routes as in the
// package comment; the endpoints mounted at the root).
func Run(t *testing.T, base string, app *App) {
	ctx := context.Background()
	w := &Wire{}
	c := NewClient(t, base, app.M, w)
	hc := c.HTTPClient()

	t.Run("public route stays public", func(t *testing.T) {
		resp, err := http.Get(base + "/public/ping")
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, "pong", ReadBody(t, resp))
	})

	t.Run("login and encrypted call", func(t *testing.T) {
		require.NoError(t, c.Login(ctx))
		resp, err := hc.Post(base+"/api/echo", "text/plain; charset=utf-8", strings.NewReader("hello "+Secret))
		require.NoError(t, err)
		body := ReadBody(t, resp)
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		require.Contains(t, resp.Header.Get("Content-Type"), "application/json")
		var got struct{ User, Ct, Body string }
		require.NoError(t, json.Unmarshal([]byte(body), &got), body)
		require.Equal(t, "alice", got.User, "the session reaches the handler")
		require.Equal(t, "text/plain; charset=utf-8", got.Ct, "the sealed content type reaches the handler")
		require.Equal(t, "hello "+Secret, got.Body, "the decrypted body reaches the handler")
		_, reqBody, h := w.Last()
		require.Equal(t, wire.MediaType, h.Get("Content-Type"), "sealed on the wire")
		require.NotContains(t, string(reqBody), Secret)
	})

	t.Run("GET through the Dynkey-Envelope header", func(t *testing.T) {
		resp, err := hc.Get(base + "/api/items/42?q=caf%C3%A9")
		require.NoError(t, err)
		body := ReadBody(t, resp)
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		require.Equal(t, "item 42 q=café", body)
		req, reqBody, h := w.Last()
		require.NotEmpty(t, req.Header.Get(wire.EnvelopeHeader), "GET carries its envelope in the header")
		require.Empty(t, reqBody, "GET has no body")
		require.Equal(t, wire.MediaType, h.Get("Content-Type"))
	})

	t.Run("client rotation", func(t *testing.T) {
		for i := 0; i < 2; i++ {
			before, _ := c.ClientKeyID()
			rot := c.Stats().ClientRotations
			c.RotateNow()
			resp, err := hc.Get(base + "/api/items/7")
			require.NoError(t, err)
			require.Equal(t, "item 7 q=", ReadBody(t, resp))
			after, _ := c.ClientKeyID()
			require.NotEqual(t, before, after, "the client key rotated")
			require.Equal(t, rot+1, c.Stats().ClientRotations)
		}
	})

	t.Run("server rotation", func(t *testing.T) {
		for i := 0; i < 2; i++ {
			before, _ := c.ServerKeyID()
			require.NoError(t, app.M.Rotate(ctx))
			require.NoError(t, c.Heartbeat(ctx))
			after, _ := c.ServerKeyID()
			require.NotEqual(t, before, after, "the client followed the server key rotation")
			resp, err := hc.Post(base+"/api/echo", "text/plain", strings.NewReader(Secret))
			require.NoError(t, err)
			body := ReadBody(t, resp)
			require.Equal(t, http.StatusOK, resp.StatusCode, body)
			require.Contains(t, body, Secret)
		}
	})

	t.Run("plain request refused with not-encrypted", func(t *testing.T) {
		hits := app.Hits.Load()
		resp, err := http.Post(base+"/api/echo", "application/json", strings.NewReader(`{"a":1}`))
		require.NoError(t, err)
		RequireProblem(t, resp, http.StatusUnsupportedMediaType, wire.CodeNotEncrypted)
		resp, err = http.Get(base + "/api/items/1")
		require.NoError(t, err)
		RequireProblem(t, resp, http.StatusUnsupportedMediaType, wire.CodeNotEncrypted)
		require.Equal(t, hits, app.Hits.Load(), "a refused request reached the handler")
	})

	t.Run("wrong method on the endpoints", func(t *testing.T) {
		for _, tc := range []struct{ name, method, path, allow string }{
			{"GET login", http.MethodGet, wire.PathLogin, "POST"},
			{"PUT heartbeat", http.MethodPut, wire.PathHeartbeat, "POST"},
			{"DELETE keys", http.MethodDelete, wire.PathKeys, "GET, HEAD"},
			{"POST keys", http.MethodPost, wire.PathKeys, "GET, HEAD"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				req, err := http.NewRequest(tc.method, base+tc.path, nil)
				require.NoError(t, err)
				resp, err := http.DefaultClient.Do(req)
				require.NoError(t, err)
				require.Equal(t, tc.allow, resp.Header.Get("Allow"))
				RequireProblem(t, resp, http.StatusMethodNotAllowed, wire.CodeMethod)
			})
		}
	})

	t.Run("the wire never carries the plaintext", func(t *testing.T) {
		require.Greater(t, app.Hits.Load(), int64(0))
		require.False(t, w.Contains(Secret), "the handler's plaintext crossed the wire")
		require.False(t, w.Contains("café"), "the query's answer crossed the wire in plaintext")
	})
}
