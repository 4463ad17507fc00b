// Package otel traces dynkey's work with OpenTelemetry: [Handler] protects
// a net/http handler exactly as [middleware.Middleware.Handler] does, and
// records a span for each step — "dynkey.open" (reading and opening the
// envelope, every check, the public-key operation), "dynkey.handler" (the
// protected handler, whose own spans nest under it) and "dynkey.seal"
// (sealing the response), or "dynkey.endpoint" for the key directory,
// login and heartbeat — as children of the span in the request's context
// (an otelhttp server span, say), so that dynkey's cost shows up in the
// traces users already have.
//
// Spans carry the suite (dynkey.suite) and, on a refusal, the problem code
// (dynkey.problem) with status Error; never a username, token, key id or
// body. The core (package middleware) does not import OpenTelemetry; only
// importers of this package do.
package otel

import (
	"bytes"
	"net/http"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/dynkey/dynkey/middleware"
	"github.com/dynkey/dynkey/wire"
)

// ScopeName is the instrumentation scope of the tracer.
const ScopeName = "github.com/dynkey/dynkey/observe/otel"

// Span names.
const (
	SpanOpen     = "dynkey.open"
	SpanHandler  = "dynkey.handler"
	SpanSeal     = "dynkey.seal"
	SpanEndpoint = "dynkey.endpoint"
)

// Attribute keys.
const (
	AttrSuite   = attribute.Key("dynkey.suite")
	AttrProblem = attribute.Key("dynkey.problem")
	AttrPath    = attribute.Key("dynkey.endpoint")
)

// Options configures [Handler]. The zero value is the default.
type Options struct {
	// TracerProvider makes the tracer. Default otel.GetTracerProvider()
	// (a no-op until the application sets one).
	TracerProvider trace.TracerProvider
	// Optional serves the routes in optional mode ([middleware.Middleware.Optional]):
	// a plain request reaches next untraced by dynkey. Default false.
	Optional bool
}

// Handler is m.Handler(next) (or m.Optional(next) with Options.Optional)
// with spans for open, handler and seal. Requests Options.Next skips are
// not traced.
func Handler(m *middleware.Middleware, next http.Handler, o Options) http.Handler {
	tp := o.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	tr := tp.Tracer(ScopeName)
	endpoints := m.Endpoints()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req := middleware.RequestFromHTTP(r)
		if middleware.IsEndpoint(req.EscapedPath) {
			ctx, span := tr.Start(r.Context(), SpanEndpoint, trace.WithAttributes(AttrPath.String(req.EscapedPath)))
			rw := &problemWriter{ResponseWriter: w}
			endpoints.ServeHTTP(rw, r.WithContext(ctx))
			rw.end(span)
			return
		}
		if m.Skip(req) {
			next.ServeHTTP(w, r)
			return
		}
		ctx, span := tr.Start(r.Context(), SpanOpen)
		rw := &problemWriter{ResponseWriter: w}
		open := m.OpenRequest
		if o.Optional {
			open = m.OpenOptionalRequest
		}
		r2, x, ok := open(rw, r.WithContext(ctx))
		if !ok {
			rw.end(span)
			return
		}
		if s := x.Opened().Session; s != nil {
			span.SetAttributes(AttrSuite.String(s.Suite))
		}
		span.End()
		if !x.Opened().Encrypted {
			next.ServeHTTP(w, r)
			return
		}
		hctx, hspan := tr.Start(r.Context(), SpanHandler)
		bw := &bufferedWriter{header: http.Header{}}
		next.ServeHTTP(bw, r2.WithContext(hctx))
		hspan.End()
		for k, v := range bw.header {
			w.Header()[k] = v
		}
		_, sspan := tr.Start(r.Context(), SpanSeal)
		sw := &problemWriter{ResponseWriter: w}
		x.WriteResponse(sw, bw.statusOr200(), bw.buf.Bytes())
		sw.end(sspan)
	})
}

// problemWriter notes the problem code of a refusal written through it.
type problemWriter struct {
	http.ResponseWriter
	code string
}

func (p *problemWriter) WriteHeader(status int) {
	p.code = p.Header().Get(wire.ProblemHeader)
	p.ResponseWriter.WriteHeader(status)
}

// Unwrap lets http.ResponseController reach the connection (the core sets
// read deadlines through it).
func (p *problemWriter) Unwrap() http.ResponseWriter { return p.ResponseWriter }

func (p *problemWriter) end(span trace.Span) {
	if p.code != "" {
		span.SetAttributes(AttrProblem.String(p.code))
		span.SetStatus(codes.Error, p.code)
	}
	span.End()
}

// bufferedWriter collects the handler's response so it can be sealed.
type bufferedWriter struct {
	header http.Header
	buf    bytes.Buffer
	status int
}

func (b *bufferedWriter) Header() http.Header { return b.header }
func (b *bufferedWriter) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.buf.Write(p)
}
func (b *bufferedWriter) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}
func (b *bufferedWriter) statusOr200() int {
	if b.status == 0 {
		return http.StatusOK
	}
	return b.status
}

// Middleware is [Handler] in the func(http.Handler) http.Handler shape
// (chi's r.Use, alice, …).
func Middleware(m *middleware.Middleware, o Options) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler { return Handler(m, next, o) }
}
