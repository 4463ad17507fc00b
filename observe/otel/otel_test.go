package otel_test

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/dynkey/dynkey/auth"
	"github.com/dynkey/dynkey/client"
	"github.com/dynkey/dynkey/middleware"
	dkotel "github.com/dynkey/dynkey/observe/otel"
	"github.com/dynkey/dynkey/policy"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// setup serves /api/echo through dkotel.Handler on loopback, under a parent
// span per request, and returns the base URL, the exporter and a client.
func setup(t *testing.T) (string, *tracetest.InMemoryExporter, *http.Client) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })

	users := auth.NewArgon2id(auth.Params{Time: 1, MemoryKiB: 1024, Threads: 1, SaltLen: 16, KeyLen: 32})
	require.NoError(t, users.AddUser("alice", "pw"))
	m, err := middleware.New(middleware.Options{Authenticator: users, MaintainInterval: -1, Logger: quiet})
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The handler's own span nests under dynkey.handler.
		_, span := tp.Tracer("app").Start(r.Context(), "app.work")
		b, _ := io.ReadAll(r.Body)
		span.End()
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(bytes.ToUpper(b))
	})
	h := dkotel.Middleware(m, dkotel.Options{TracerProvider: tp})(app)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, span := tp.Tracer("server").Start(r.Context(), "http.server")
		defer span.End()
		h.ServeHTTP(w, r.WithContext(ctx))
	}))
	t.Cleanup(srv.Close)
	c, err := client.New(client.Config{BaseURL: srv.URL, Username: "alice", Password: "pw",
		HeartbeatInterval: -1, Policy: policy.Manual(), Logger: quiet, IdentityKey: m.IdentityPublicKey()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	hc := c.HTTPClient()
	hc.Timeout = 10 * time.Second
	return srv.URL, exp, hc
}

func byName(spans tracetest.SpanStubs, name string) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range spans {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

func TestSpansOpenHandlerSeal(t *testing.T) {
	base, exp, hc := setup(t)
	resp, err := hc.Post(base+"/api/echo", "text/plain", strings.NewReader("secret body"))
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "SECRET BODY", string(b))

	spans := exp.GetSpans()
	require.NotEmpty(t, byName(spans, dkotel.SpanEndpoint), "the login is traced")
	open, handler, seal, work := byName(spans, dkotel.SpanOpen), byName(spans, dkotel.SpanHandler), byName(spans, dkotel.SpanSeal), byName(spans, "app.work")
	require.Len(t, open, 1)
	require.Len(t, handler, 1)
	require.Len(t, seal, 1)
	require.Len(t, work, 1)
	// open, handler and seal are children of the request's span, in order;
	// the application's span is a child of dynkey.handler.
	var parent trace.SpanID
	for _, s := range byName(spans, "http.server") {
		if s.SpanContext.TraceID() == open[0].SpanContext.TraceID() {
			parent = s.SpanContext.SpanID()
		}
	}
	require.True(t, parent.IsValid())
	for _, s := range []tracetest.SpanStub{open[0], handler[0], seal[0]} {
		require.Equal(t, parent, s.Parent.SpanID(), s.Name)
	}
	require.Equal(t, handler[0].SpanContext.SpanID(), work[0].Parent.SpanID())
	require.False(t, open[0].EndTime.After(handler[0].StartTime))
	require.False(t, handler[0].EndTime.After(seal[0].StartTime))
	require.Contains(t, open[0].Attributes, dkotel.AttrSuite.String("ecies-x25519"))
	require.Equal(t, codes.Unset, open[0].Status.Code)
	// No span carries the body or a username.
	for _, s := range spans {
		for _, a := range s.Attributes {
			v := a.Value.String()
			require.NotContains(t, strings.ToLower(v), "secret body", s.Name)
			require.NotEqual(t, "alice", v, s.Name)
		}
	}
}

func TestSpanOfRefusal(t *testing.T) {
	base, exp, _ := setup(t)
	resp, err := http.Post(base+"/api/echo", "text/plain", strings.NewReader("plain"))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnsupportedMediaType, resp.StatusCode)
	spans := exp.GetSpans()
	open := byName(spans, dkotel.SpanOpen)
	require.Len(t, open, 1)
	require.Equal(t, codes.Error, open[0].Status.Code)
	require.Contains(t, open[0].Attributes, dkotel.AttrProblem.String("not-encrypted"))
	require.Empty(t, byName(spans, dkotel.SpanHandler), "a refused request never reaches the handler")
	require.Empty(t, byName(spans, dkotel.SpanSeal))
}
