package middleware_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/client"
	"github.com/dynkey/dynkey/middleware"
	"github.com/dynkey/dynkey/wire"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// httptestServer serves h on loopback and returns its URL.
func httptestServer(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// routeApp is a handler that counts its runs and says what it saw.
type routeApp struct{ calls atomic.Int64 }

func (a *routeApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.calls.Add(1)
	b, _ := io.ReadAll(r.Body)
	who := "plain"
	if s, ok := middleware.FromContext(r.Context()); ok {
		who = "encrypted:" + s.Username
	}
	if middleware.IsEncrypted(r.Context()) != strings.HasPrefix(who, "encrypted") {
		http.Error(w, "IsEncrypted disagrees with FromContext", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.WriteString(w, who+" "+r.URL.Path+" "+string(b))
}

// routeCase is one request of a route-selection test: sent plain (a bare
// net/http client) or through the dynkey client.
type routeCase struct {
	name      string
	path      string
	encrypted bool
	status    int    // the status the caller sees
	want      string // its body prefix ("" for a refusal: its code)
	code      wire.Code
	reaches   bool // the handler runs
	sealed    bool // the response on the wire is application/dynkey
}

func runRouteCases(t *testing.T, base string, m *middleware.Middleware, app *routeApp, cases []routeCase) {
	t.Helper()
	var lastCT atomic.Value
	rec := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err == nil && !strings.HasPrefix(r.URL.Path, "/dynkey/") && !strings.HasPrefix(r.URL.Path, "/.well-known/") {
			lastCT.Store(resp.Header.Get("Content-Type"))
		}
		return resp, err
	})
	c, err := client.New(client.Config{BaseURL: base, Username: "alice", Password: "pw", IdentityKey: m.IdentityPublicKey(),
		HeartbeatInterval: -1, Transport: rec})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	plain := &http.Client{Transport: rec}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := app.calls.Load()
			hc := plain
			if tc.encrypted {
				hc = c.HTTPClient()
			}
			resp, err := hc.Post(base+tc.path, "text/plain", strings.NewReader("hi"))
			require.NoError(t, err)
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.Equal(t, tc.status, resp.StatusCode, string(b))
			if tc.code != "" {
				p, ok := wire.ParseProblem(b)
				require.True(t, ok, string(b))
				require.Equal(t, tc.code, p.Code)
			} else {
				require.True(t, strings.HasPrefix(string(b), tc.want), "got %q, want %q…", b, tc.want)
			}
			if tc.reaches {
				require.Equal(t, before+1, app.calls.Load(), "the handler ran")
			} else {
				require.Equal(t, before, app.calls.Load(), "the handler never ran")
			}
			require.Equal(t, tc.sealed, lastCT.Load() == wire.MediaType, "content type on the wire: %v", lastCT.Load())
		})
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestRouteSelectionWholeApp: Handler around the whole mux serves the
// endpoints itself and protects every route; Options.Next keeps /public/
// public (untouched: plain in, plain out, even from the dynkey client's
// point of view it is not a dynkey route).
func TestRouteSelectionWholeApp(t *testing.T) {
	app := &routeApp{}
	m := newCoreMiddleware(t, middleware.Options{Next: func(r *middleware.Request) bool {
		return strings.HasPrefix(r.EscapedPath, "/public/")
	}})
	mux := http.NewServeMux()
	mux.Handle("/", app)
	base := httptestServer(t, m.Handler(mux))
	runRouteCases(t, base, m, app, []routeCase{
		{name: "protected, encrypted", path: "/api/x", encrypted: true, status: 200, want: "encrypted:alice /api/x hi", reaches: true, sealed: true},
		{name: "protected, plain", path: "/api/x", status: 415, code: wire.CodeNotEncrypted},
		{name: "root, plain", path: "/other", status: 415, code: wire.CodeNotEncrypted},
		{name: "public (Next), plain", path: "/public/x", status: 200, want: "plain /public/x hi", reaches: true},
	})
}

// TestRouteSelectionGroupAndSingleRoute: a protected sub-router (group)
// and a single protected route beside public ones on the same mux.
func TestRouteSelectionGroupAndSingleRoute(t *testing.T) {
	app := &routeApp{}
	m := newCoreMiddleware(t, middleware.Options{})
	mux := http.NewServeMux()
	mux.Handle("/dynkey/", m.Endpoints())
	mux.Handle("/.well-known/dynkey/", m.Endpoints())
	mux.Handle("/api/", m.Handler(app))        // a group
	mux.Handle("/pub/secret", m.Handler(app))  // a single route
	mux.Handle("/pub/", app)                   // public
	mux.Handle("/migrating/", m.Optional(app)) // optional mode
	base := httptestServer(t, mux)
	runRouteCases(t, base, m, app, []routeCase{
		{name: "group, encrypted", path: "/api/a", encrypted: true, status: 200, want: "encrypted:alice /api/a hi", reaches: true, sealed: true},
		{name: "group, plain refused", path: "/api/a", status: 415, code: wire.CodeNotEncrypted},
		{name: "single route, encrypted", path: "/pub/secret", encrypted: true, status: 200, want: "encrypted:alice /pub/secret hi", reaches: true, sealed: true},
		{name: "single route, plain refused", path: "/pub/secret", status: 415, code: wire.CodeNotEncrypted},
		{name: "public beside it, plain", path: "/pub/open", status: 200, want: "plain /pub/open hi", reaches: true},
		{name: "optional, plain accepted unsealed", path: "/migrating/x", status: 200, want: "plain /migrating/x hi", reaches: true},
		{name: "optional, encrypted preferred", path: "/migrating/x", encrypted: true, status: 200, want: "encrypted:alice /migrating/x hi", reaches: true, sealed: true},
	})
}

// TestOptionalRouteRefusesBadEnvelopes: on an optional route a request
// that claims to be encrypted (Content-Type application/dynkey, or a
// Dynkey-Envelope header) is opened and refused if it does not open — it
// never reaches the handler as plain.
func TestOptionalRouteRefusesBadEnvelopes(t *testing.T) {
	app := &routeApp{}
	m := newCoreMiddleware(t, middleware.Options{})
	base := httptestServer(t, m.Optional(app))
	for _, tc := range []struct {
		name string
		req  func() *http.Request
		code wire.Code
	}{
		{"junk body with the dynkey type", func() *http.Request {
			r, _ := http.NewRequest("POST", base+"/x", strings.NewReader("DK\x01\x02junk"))
			r.Header.Set("Content-Type", wire.MediaType)
			return r
		}, wire.CodeBadFormat},
		{"plain body with the dynkey type", func() *http.Request {
			r, _ := http.NewRequest("POST", base+"/x", strings.NewReader("hello"))
			r.Header.Set("Content-Type", wire.MediaType+"; charset=x")
			return r
		}, wire.CodeNotEncrypted},
		{"junk header envelope", func() *http.Request {
			r, _ := http.NewRequest("GET", base+"/x", nil)
			r.Header.Set(wire.EnvelopeHeader, "REsBAg")
			return r
		}, wire.CodeBadFormat},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.DefaultClient.Do(tc.req())
			require.NoError(t, err)
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			p, ok := wire.ParseProblem(b)
			require.True(t, ok, string(b))
			require.Equal(t, tc.code, p.Code)
			require.Zero(t, app.calls.Load())
		})
	}
}
