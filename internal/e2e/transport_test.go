package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/client"
	"github.com/dynkey/dynkey/policy"
	"github.com/dynkey/dynkey/wire"
)

// TestHeaderTransportMethods: GET, DELETE, OPTIONS and HEAD through the Go
// client with its default Config.Envelope: the envelope travels in the
// Dynkey-Envelope header with an empty body, the handler sees the method,
// path and query the client sent, and the response (for HEAD, from the
// Dynkey-Response header) opens with the handler's status and content type.
// POST keeps the body.
func TestHeaderTransportMethods(t *testing.T) {
	clk := newClock()
	s := startServer(t, baseOptions(t, clk, nil))
	tr := newMITM()
	c := newSDK(t, s.URL, clk.Now, "alice", tr)
	hc := c.HTTPClient()
	for _, tc := range []struct {
		name, method string
		body         string
		inHeader     bool
	}{
		{"GET", http.MethodGet, "", true},
		{"DELETE", http.MethodDelete, "", true},
		{"OPTIONS", http.MethodOptions, "", true},
		{"HEAD", http.MethodHead, "", true},
		{"POST", http.MethodPost, `{"a":1}`, false},
		{"GET with a body", http.MethodGet, "x", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := s.app.calls.Load()
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			req, err := http.NewRequest(tc.method, s.URL+"/api/items/7?q=a%20b", body)
			require.NoError(t, err)
			resp, err := hc.Do(req)
			require.NoError(t, err)
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			require.Equal(t, "application/json", resp.Header.Get("Content-Type"), "the sealed content type")
			require.Equal(t, before+1, s.app.calls.Load(), "the handler ran once")

			f := tr.last("/api/items/7")
			require.NotNil(t, f)
			if tc.inHeader {
				require.NotEmpty(t, f.req.Header.Get(wire.EnvelopeHeader))
				require.Empty(t, f.reqBody, "no body beside the header envelope")
				require.Empty(t, f.req.Header.Get("Content-Type"))
			} else {
				require.Empty(t, f.req.Header.Get(wire.EnvelopeHeader))
				require.Equal(t, wire.MediaType, f.req.Header.Get("Content-Type"))
			}
			if tc.method == http.MethodHead {
				require.Empty(t, got)
				require.Empty(t, f.resp, "a HEAD response has no body")
				return
			}
			var e echo
			require.NoError(t, json.Unmarshal(got, &e))
			require.Equal(t, tc.method, e.Method)
			require.Equal(t, "q=a%20b", e.Query)
			require.Equal(t, tc.body, e.Body)
			require.Equal(t, "alice", e.User)
		})
	}
}

// TestHeaderTransportModes: Config.Envelope = EnvelopeInBody sends a GET's
// envelope as its body (the server accepts both), EnvelopeInHeader sends a
// POST's in the header, and a POST whose envelope does not fit the header
// limit falls back to the body.
func TestHeaderTransportModes(t *testing.T) {
	clk := newClock()
	s := startServer(t, baseOptions(t, clk, nil))
	for _, tc := range []struct {
		name     string
		mode     client.EnvelopeMode
		method   string
		body     string
		inHeader bool
	}{
		{"in body: GET", client.EnvelopeInBody, http.MethodGet, "", false},
		{"in header: POST", client.EnvelopeInHeader, http.MethodPost, "small", true},
		{"in header: POST too large falls back", client.EnvelopeInHeader, http.MethodPost, strings.Repeat("x", wire.MaxEnvelopeHeaderSize), false},
		{"in body: HEAD still in header", client.EnvelopeInBody, http.MethodHead, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newMITM()
			c := newSDK(t, s.URL, clk.Now, "alice", tr, func(cfg *client.Config) { cfg.Envelope = tc.mode })
			req, err := http.NewRequest(tc.method, s.URL+"/api/m", strings.NewReader(tc.body))
			require.NoError(t, err)
			resp, err := c.HTTPClient().Do(req)
			require.NoError(t, err)
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode, string(got))
			f := tr.last("/api/m")
			require.Equal(t, tc.inHeader, f.req.Header.Get(wire.EnvelopeHeader) != "")
			if tc.method != http.MethodHead {
				var e echo
				require.NoError(t, json.Unmarshal(got, &e))
				require.Equal(t, tc.body, e.Body)
			}
		})
	}
}

// TestHeaderEnvelopeRefusals: a request with both a header envelope and a
// body is refused with "bad-format" (the envelope is genuine: the client
// sealed it; the attacker adds a body), a header envelope over
// wire.MaxEnvelopeHeaderSize with "too-large", one that is not base64url
// with "bad-format" — and in each case the handler never runs.
//
// Defense exercised: readEnvelope's both-ways and size checks. Verified:
// without the both-ways check the first case reaches the handler.
func TestHeaderEnvelopeRefusals(t *testing.T) {
	clk := newClock()
	s := startServer(t, baseOptions(t, clk, nil))
	tr := newMITM()
	c := newSDK(t, s.URL, clk.Now, "alice", tr)
	require.NoError(t, c.Login(context.Background()))
	for _, tc := range []struct {
		name   string
		tamper func(f *flight)
		code   wire.Code
	}{
		{"header and body", func(f *flight) {
			f.reqBody = []byte("DK body beside the header envelope")
			f.req.Header.Set("Content-Type", wire.MediaType)
		}, wire.CodeBadFormat},
		{"header and the same envelope as body", func(f *flight) {
			env, _ := wire.DecodeHeaderEnvelope(f.req.Header.Get(wire.EnvelopeHeader))
			f.reqBody = env
		}, wire.CodeBadFormat},
		{"header too large", func(f *flight) {
			f.req.Header.Set(wire.EnvelopeHeader, strings.Repeat("A", wire.MaxEnvelopeHeaderSize+1))
		}, wire.CodeTooLarge},
		{"not base64url", func(f *flight) {
			f.req.Header.Set(wire.EnvelopeHeader, f.req.Header.Get(wire.EnvelopeHeader)+"==")
		}, wire.CodeBadFormat},
		{"padded", func(f *flight) {
			v := f.req.Header.Get(wire.EnvelopeHeader)
			f.req.Header.Set(wire.EnvelopeHeader, v+strings.Repeat("=", (4-len(v)%4)%4)+"=")
		}, wire.CodeBadFormat},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := s.app.calls.Load()
			var seen *http.Response
			tr.setHook(onceHook("/api/x", func(f *flight) (*http.Response, error) {
				tc.tamper(f)
				r, err := f.forward()
				seen = r
				return r, err
			}))
			defer tr.setHook(nil)
			resp, err := c.HTTPClient().Get(s.URL + "/api/x")
			require.NoError(t, err)
			resp.Body.Close()
			require.NotNil(t, seen)
			require.Equal(t, tc.code.Status(), seen.StatusCode)
			require.Equal(t, string(tc.code), seen.Header.Get(wire.ProblemHeader))
			p, ok := wire.ParseProblem(tr.last("/api/x").resp)
			require.True(t, ok)
			require.Equal(t, tc.code, p.Code)
			require.Equal(t, before, s.app.calls.Load(), "the handler never ran")
		})
	}
}

// TestHEADResponseAuthenticated: the sealed response to a HEAD request is
// authenticated like any other: a man in the middle who changes its status,
// drops or swaps its Dynkey-Response header, or answers with a plain 200
// gets ErrResponseNotAuthentic from the client, never a response.
//
// Defense exercised: the client opens the Dynkey-Response envelope with the
// status it received and the request's secret. Verified: accepting a HEAD
// response without opening it passes the forged ones.
func TestHEADResponseAuthenticated(t *testing.T) {
	clk := newClock()
	s := startServer(t, baseOptions(t, clk, nil))
	tr := newMITM()
	c := newSDK(t, s.URL, clk.Now, "alice", tr)
	hc := c.HTTPClient()
	// A genuine HEAD response, kept for the swap.
	resp, err := hc.Head(s.URL + "/api/h")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var old string
	tr.setHook(func(f *flight) (*http.Response, error) {
		r, err := f.forward()
		if err == nil && old == "" {
			old = r.Header.Get(wire.ResponseHeader)
		}
		return r, err
	})
	resp, err = hc.Head(s.URL + "/api/h")
	require.NoError(t, err)
	resp.Body.Close()
	require.NotEmpty(t, old)

	for _, tc := range []struct {
		name   string
		tamper func(r *http.Response)
	}{
		{"status changed", func(r *http.Response) { r.StatusCode, r.Status = http.StatusNotFound, "404 Not Found" }},
		{"Dynkey-Status added", func(r *http.Response) { r.Header.Set(wire.StatusHeader, "204") }},
		{"Dynkey-Response dropped", func(r *http.Response) { r.Header.Del(wire.ResponseHeader) }},
		{"Dynkey-Response of another request", func(r *http.Response) { r.Header.Set(wire.ResponseHeader, old) }},
		{"Dynkey-Response altered", func(r *http.Response) {
			b, _ := wire.DecodeHeaderEnvelope(r.Header.Get(wire.ResponseHeader))
			b[len(b)-1] ^= 1
			r.Header.Set(wire.ResponseHeader, wire.EncodeHeaderEnvelope(b))
		}},
		{"plain 200", func(r *http.Response) { r.Header = http.Header{"Content-Type": {"application/json"}} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr.setHook(onceHook("/api/h", func(f *flight) (*http.Response, error) {
				r, err := f.forward()
				if err == nil {
					tc.tamper(r)
				}
				return r, err
			}))
			defer tr.setHook(nil)
			resp, err := hc.Head(s.URL + "/api/h")
			if resp != nil {
				resp.Body.Close()
			}
			require.ErrorIs(t, err, client.ErrResponseNotAuthentic)
		})
	}
}

// TestHEADRefusalCode: a refusal to a HEAD request has no body; the client
// learns its code from the Dynkey-Problem header and recovers as from any
// other: here an expired token, after which it logs in again and the HEAD
// succeeds.
func TestHEADRefusalCode(t *testing.T) {
	clk := newClock()
	o := baseOptions(t, clk, nil)
	o.TokenTTL = time.Minute
	o.FreshnessWindow = time.Hour
	s := startServer(t, o)
	tr := newMITM()
	c := newSDK(t, s.URL, clk.Now, "alice", tr, func(cfg *client.Config) { cfg.HeartbeatInterval = -1 })
	require.NoError(t, c.Login(context.Background()))
	clk.Advance(2 * time.Minute)
	resp, err := c.HTTPClient().Head(s.URL + "/api/h")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, []wire.Code{wire.CodeTokenExpired}, headCodes(tr))
	require.Equal(t, uint64(2), c.Stats().Logins)
}

// headCodes returns the Dynkey-Problem codes of the refused HEAD requests
// (their responses have no body for mitm.codes to parse).
func headCodes(tr *mitm) []wire.Code {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []wire.Code
	for _, f := range tr.flights {
		if f.req.Method == http.MethodHead && f.respProblem != "" {
			out = append(out, wire.Code(f.respProblem))
		}
	}
	return out
}

// TestClientRetriesLoginBusyOnce: a login refused with "login-busy" and
// Retry-After: 1 is retried once by the client after that wait (here the
// slot is freed as soon as the refusal went by, so the retry succeeds); a
// Retry-After over 5 s, or a second "login-busy", fails the login with
// that problem — never a loop.
func TestClientRetriesLoginBusyOnce(t *testing.T) {
	clk := newClock()
	o := baseOptions(t, clk, nil)
	ha := &holdAuth{inner: o.Authenticator, release: make(chan struct{})}
	o.Authenticator, o.MaxConcurrentLogins, o.LoginQueueWait = ha, 1, -1
	s := startServer(t, o)
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(ha.release) }) }
	t.Cleanup(release)

	// Another login holds the only password-check slot.
	holder := newSDK(t, s.URL, clk.Now, "bob", nil)
	held := make(chan error, 1)
	go func() { held <- holder.Login(context.Background()) }()
	require.Eventually(t, func() bool { return ha.running.Load() == 1 }, 10*time.Second, time.Millisecond)

	for _, tc := range []struct {
		name       string
		retryAfter string // rewritten on the first busy answer; "" keeps the server's
		freeSlot   bool
		wantErr    bool
		logins     int // login requests sent
	}{
		{"Retry-After over 5s: no retry", "6", false, true, 1},
		{"still busy on the retry: fails", "", false, true, 2},
		{"busy then free: retried once", "", true, false, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newMITM()
			tr.setHook(func(f *flight) (*http.Response, error) {
				r, err := f.forward()
				if err == nil && f.req.URL.Path == wire.PathLogin && f.respProblem == string(wire.CodeLoginBusy) {
					if tc.retryAfter != "" {
						r.Header.Set("Retry-After", tc.retryAfter)
					}
					if tc.freeSlot {
						release()
					}
				}
				return r, err
			})
			c := newSDK(t, s.URL, clk.Now, "alice", tr)
			err := c.Login(context.Background())
			if tc.wantErr {
				var p *wire.Problem
				require.ErrorAs(t, err, &p)
				require.Equal(t, wire.CodeLoginBusy, p.Code)
			} else {
				require.NoError(t, err)
			}
			n := 0
			tr.mu.Lock()
			for _, f := range tr.flights {
				if f.req.URL.Path == wire.PathLogin {
					n++
				}
			}
			tr.mu.Unlock()
			require.Equal(t, tc.logins, n)
		})
	}
	require.NoError(t, <-held)
}

// TestHeaderEnvelopeSizesEverySuite: for every built-in suite, the
// envelope of a bodiless GET with a token fits the 8 KiB Dynkey-Envelope
// limit and travels in the header end to end; one carrying a client key
// rotation (new public key and proof) travels in the header where it fits
// and falls back to the body where it does not (pq-xwing: its ML-DSA
// proof), and works either way. The sizes are logged: they are the numbers
// docs/PROTOCOL.md §4 quotes.
func TestHeaderEnvelopeSizesEverySuite(t *testing.T) {
	for _, suite := range builtinSuites {
		t.Run(suite, func(t *testing.T) {
			if suite == "rsa-4096" && testing.Short() {
				t.Skip("rsa-4096 key generation takes seconds; skipped with -short")
			}
			clk := newClock()
			o := baseOptions(t, clk, nil)
			o.Suite = suite
			s := startServer(t, o)
			tr := newMITM()
			c := newSDK(t, s.URL, clk.Now, "alice", tr, withSuite(suite), func(cfg *client.Config) {
				cfg.Policy = policy.Manual()
			})
			// size returns the encoded size of the last envelope, and
			// whether it travelled in the header.
			size := func() (int, bool) {
				t.Helper()
				f := tr.last("/api/s")
				require.NotNil(t, f)
				if v := f.req.Header.Get(wire.EnvelopeHeader); v != "" {
					require.Empty(t, f.reqBody)
					return len(v), true
				}
				return base64.RawURLEncoding.EncodedLen(len(f.reqBody)), false
			}
			require.Equal(t, http.MethodGet, mustCall(t, c.HTTPClient(), http.MethodGet, s.URL+"/api/s", "").Method)
			plain, inHeader := size()
			require.True(t, inHeader)
			require.LessOrEqual(t, plain, wire.MaxEnvelopeHeaderSize)
			c.RotateNow()
			require.Equal(t, http.MethodGet, mustCall(t, c.HTTPClient(), http.MethodGet, s.URL+"/api/s", "").Method)
			require.Equal(t, uint64(1), c.Stats().ClientRotations)
			rotating, inHeader := size()
			require.Equal(t, rotating <= wire.MaxEnvelopeHeaderSize, inHeader, "in the header exactly when it fits")
			t.Logf("%s: base64url envelope of a bodiless GET %d bytes, with a client key rotation %d bytes (in the header: %v; limit %d)",
				suite, plain, rotating, inHeader, wire.MaxEnvelopeHeaderSize)
		})
	}
}
