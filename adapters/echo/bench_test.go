package dynkeyecho_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	dynkeyecho "github.com/dynkey/dynkey/adapters/echo"
	"github.com/dynkey/dynkey/internal/adaptertest"
)

// BenchmarkRoundTrip compares one encrypted POST through Echo with the
// adapter against the same handler behind the net/http middleware, with
// the Go client over loopback (both sides on this machine: compare the
// ratio, not the absolute times).
func BenchmarkRoundTrip(b *testing.B) {
	m := adaptertest.NewMiddleware(b, nil)
	e := echo.New()
	dynkeyecho.Mount(e, m)
	e.POST("/api/echo", func(c echo.Context) error {
		body, _ := io.ReadAll(c.Request().Body)
		return c.Blob(http.StatusOK, "text/plain", body)
	}, dynkeyecho.Middleware(m))
	mux := http.NewServeMux()
	mux.Handle("/dynkey/", m.Endpoints())
	mux.Handle("/.well-known/dynkey/", m.Endpoints())
	mux.Handle("/api/echo", m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(body)
	})))
	payload := strings.Repeat("x", 1024)
	for _, tc := range []struct {
		name string
		h    http.Handler
	}{{"echo", e}, {"nethttp", mux}} {
		b.Run(tc.name, func(b *testing.B) {
			srv := httptest.NewServer(tc.h)
			defer srv.Close()
			hc := adaptertest.NewClient(b, srv.URL, m, &adaptertest.Wire{}).HTTPClient()
			b.ResetTimer()
			for b.Loop() {
				resp, err := hc.Post(srv.URL+"/api/echo", "text/plain", strings.NewReader(payload))
				if err != nil {
					b.Fatal(err)
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || n != 1024 {
					b.Fatalf("status %d, %d bytes", resp.StatusCode, n)
				}
			}
		})
	}
}
