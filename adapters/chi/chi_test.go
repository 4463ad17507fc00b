package dynkeychi_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/rs/cors"
	"github.com/stretchr/testify/require"

	dynkeychi "github.com/dynkey/dynkey/adapters/chi"
	"github.com/dynkey/dynkey/internal/adaptertest"
	"github.com/dynkey/dynkey/middleware"
	"github.com/dynkey/dynkey/wire"
)

func writeJSON(w http.ResponseWriter, s string) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, s)
}

// newRouter is the suite's application in chi: a public route, a protected
// group built with r.Route and r.Use(m.Handler), route parameters read with
// chi.URLParam after the middleware.
func newRouter(app *adaptertest.App, extra func(r chi.Router)) chi.Router {
	r := chi.NewRouter()
	dynkeychi.Mount(r, app.M)
	r.Get("/public/ping", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "pong") })
	r.Route("/api", func(r chi.Router) {
		r.Use(app.M.Handler)
		r.Post("/echo", func(w http.ResponseWriter, r *http.Request) {
			app.Hits.Add(1)
			s, ok := middleware.FromContext(r.Context())
			if !ok {
				http.Error(w, "no session", http.StatusInternalServerError)
				return
			}
			b, _ := io.ReadAll(r.Body)
			writeJSON(w, `{"user":"`+s.Username+`","ct":"`+r.Header.Get("Content-Type")+`","body":"`+string(b)+`"}`)
		})
		r.Get("/items/{id}", func(w http.ResponseWriter, r *http.Request) {
			app.Hits.Add(1)
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, "item "+chi.URLParam(r, "id")+" q="+r.URL.Query().Get("q"))
		})
		if extra != nil {
			extra(r)
		}
	})
	return r
}

// TestChi runs the shared adapter suite against chi with the net/http
// middleware: login, encrypted call, GET through the header with a route
// parameter, two rotations of each side, a refusal, the 405s, and no
// plaintext on the wire.
func TestChi(t *testing.T) {
	app := &adaptertest.App{M: adaptertest.NewMiddleware(t, nil)}
	srv := httptest.NewServer(newRouter(app, nil))
	t.Cleanup(srv.Close)
	adaptertest.Run(t, srv.URL, app)
}

// Single routes with r.With, a group with r.Group, and a 404 inside a
// protected sub-router: the client gets it sealed; a plain caller gets the
// refusal, not chi's 404 (the middleware runs before routing inside the
// sub-router).
func TestChiWithAndGroup(t *testing.T) {
	m := adaptertest.NewMiddleware(t, nil)
	r := chi.NewRouter()
	dynkeychi.Mount(r, m)
	r.With(m.Handler).Delete("/single/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	r.Get("/single/{id}", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "public "+chi.URLParam(r, "id"))
	})
	r.Group(func(r chi.Router) {
		r.Use(m.Handler)
		r.Put("/grouped/{id}", func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			w.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(w, chi.URLParam(r, "id")+"="+string(b))
		})
	})
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	hc := adaptertest.NewClient(t, srv.URL, m, &adaptertest.Wire{}).HTTPClient()

	req, _ := http.NewRequest(http.MethodDelete, srv.URL+"/single/9", nil)
	resp, err := hc.Do(req)
	require.NoError(t, err)
	adaptertest.ReadBody(t, resp)
	require.Equal(t, http.StatusNoContent, resp.StatusCode, "204 through Dynkey-Status")

	resp, err = http.Get(srv.URL + "/single/9")
	require.NoError(t, err)
	require.Equal(t, "public 9", adaptertest.ReadBody(t, resp), "the GET on the same path stays public")

	req, _ = http.NewRequest(http.MethodPut, srv.URL+"/grouped/a", strings.NewReader("b"))
	resp, err = hc.Do(req)
	require.NoError(t, err)
	require.Equal(t, "a=b", adaptertest.ReadBody(t, resp))
	require.Equal(t, http.StatusCreated, resp.StatusCode)

	req, _ = http.NewRequest(http.MethodDelete, srv.URL+"/single/9", nil)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	adaptertest.RequireProblem(t, resp, http.StatusUnsupportedMediaType, wire.CodeNotEncrypted)
}

// rs/cors in front: the preflight never reaches dynkey, and both a sealed
// response and a refusal carry Access-Control-Allow-Origin and expose the
// dynkey headers.
func TestChiRSCors(t *testing.T) {
	app := &adaptertest.App{M: adaptertest.NewMiddleware(t, nil)}
	r := chi.NewRouter()
	r.Use(cors.New(dynkeychi.CORSOptions([]string{"http://page.example"})).Handler)
	r.Mount("/", newRouter(app, nil))
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	requireCORS(t, srv.URL, app)
}

// CORS behind dynkey (the wrong order) still works if Options.Next lets
// preflights through: the core then never sees them.
func TestChiPreflightSkippedByNext(t *testing.T) {
	app := &adaptertest.App{M: adaptertest.NewMiddleware(t, func(o *middleware.Options) {
		o.Next = func(r *middleware.Request) bool {
			return r.Method == http.MethodOptions && r.Header("Access-Control-Request-Method") != ""
		}
	})}
	r := chi.NewRouter()
	dynkeychi.Mount(r, app.M)
	r.Route("/api", func(r chi.Router) {
		r.Use(app.M.Handler, cors.New(dynkeychi.CORSOptions([]string{"http://page.example"})).Handler)
		r.Get("/items/{id}", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "item") })
	})
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	resp := preflight(t, srv.URL+"/api/items/1")
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	require.Equal(t, "http://page.example", resp.Header.Get("Access-Control-Allow-Origin"))

	// Without Next, that order refuses the preflight: the browser would fail.
	app2 := &adaptertest.App{M: adaptertest.NewMiddleware(t, nil)}
	r2 := chi.NewRouter()
	r2.Route("/api", func(r chi.Router) {
		r.Use(app2.M.Handler, cors.New(dynkeychi.CORSOptions([]string{"http://page.example"})).Handler)
		r.Get("/items/{id}", func(w http.ResponseWriter, r *http.Request) {})
	})
	srv2 := httptest.NewServer(r2)
	t.Cleanup(srv2.Close)
	resp = preflight(t, srv2.URL+"/api/items/1")
	require.Equal(t, http.StatusUnsupportedMediaType, resp.StatusCode)
	require.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"))
}

func preflight(t *testing.T, url string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodOptions, url, nil)
	req.Header.Set("Origin", "http://page.example")
	req.Header.Set("Access-Control-Request-Method", "GET")
	req.Header.Set("Access-Control-Request-Headers", "dynkey-envelope")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	adaptertest.ReadBody(t, resp)
	return resp
}

func requireCORS(t *testing.T, base string, app *adaptertest.App) {
	t.Helper()
	resp := preflight(t, base+"/api/items/1")
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	require.Equal(t, "http://page.example", resp.Header.Get("Access-Control-Allow-Origin"))
	require.Equal(t, "dynkey-envelope", strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers")))

	req, _ := http.NewRequest(http.MethodGet, base+"/api/items/1", nil)
	req.Header.Set("Origin", "http://page.example")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.Equal(t, "http://page.example", resp.Header.Get("Access-Control-Allow-Origin"))
	require.Contains(t, resp.Header.Get("Access-Control-Expose-Headers"), wire.ProblemHeader)
	adaptertest.RequireProblem(t, resp, http.StatusUnsupportedMediaType, wire.CodeNotEncrypted)

	w := &adaptertest.Wire{}
	c := adaptertest.NewClient(t, base, app.M, w)
	hc := c.HTTPClient()
	req, _ = http.NewRequest(http.MethodGet, base+"/api/items/5", nil)
	req.Header.Set("Origin", "http://page.example")
	resp, err = hc.Do(req)
	require.NoError(t, err)
	require.Equal(t, "item 5 q=", adaptertest.ReadBody(t, resp))
	_, _, h := w.Last()
	require.Equal(t, "http://page.example", h.Get("Access-Control-Allow-Origin"))
	require.Contains(t, h.Get("Access-Control-Expose-Headers"), wire.StatusHeader)
}
