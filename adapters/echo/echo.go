// Package dynkeyecho is the Echo v4 glue for dynkey: [Middleware] protects
// routes with a [middleware.Middleware] and [Mount] serves its endpoints.
// All the protocol work is done by package middleware; this package only
// swaps Echo's response writer so that a handler's answer — including the
// one Echo's HTTPErrorHandler renders for a returned error — is sealed.
//
//	m, _ := middleware.New(middleware.Options{Store: st, Authenticator: users})
//	e := echo.New()
//	dynkeyecho.Mount(e, m)
//	api := e.Group("/api", dynkeyecho.Middleware(m))
//	api.POST("/echo", func(c echo.Context) error { … return c.JSON(200, …) })
//
// Responses of protected routes are buffered in memory and sealed when the
// handler returns: streaming, Flush and Hijack do not reach the client. A
// panic reaches Echo's Recover with the real writer: the client gets Echo's
// unsealed 500, which it refuses as not authentic (never the handler's
// data). The envelope is bound to the path as sent: an e.Pre middleware that
// rewrites the path (RemoveTrailingSlash, Rewrite) makes every request fail
// with "decrypt-failed".
package dynkeyecho

import (
	"bytes"
	"net/http"

	"github.com/labstack/echo/v4"
	echomw "github.com/labstack/echo/v4/middleware"

	"github.com/dynkey/dynkey/middleware"
	"github.com/dynkey/dynkey/wire"
)

// Config configures [MiddlewareWithConfig]. The zero value is the default.
type Config struct {
	// Skipper, if set, lets a request bypass dynkey: it reaches the handler
	// untouched, neither opened nor sealed (Echo's convention; the core's
	// middleware.Options.Next is asked too). Default nil: skip nothing.
	Skipper echomw.Skipper
	// Optional puts the routes in optional mode for migrating clients: a
	// plain request (no Dynkey-Envelope header, a Content-Type other than
	// application/dynkey) reaches the handler as it is, unsealed, with no
	// session; an encrypted one is opened and sealed as usual. Default
	// false: plain requests are refused with "not-encrypted".
	Optional bool
}

// Middleware protects the routes it is added to (e.Use, a group or single
// routes): each request must be a dynkey envelope (header or body), the
// handler sees the plaintext body and sealed Content-Type, the session is in
// c.Request().Context() ([middleware.FromContext]), and its response is
// sealed — status, Content-Type and body. A handler's error goes through
// Echo's HTTPErrorHandler before sealing, so echo.NewHTTPError(418, …)
// reaches the client as a sealed 418. A refused request gets the problem
// response and the handler does not run. The endpoint paths (served by
// [Mount]) pass untouched, so it may protect the whole app (e.Use). Put a
// CORS middleware in front of it.
func Middleware(m *middleware.Middleware) echo.MiddlewareFunc {
	return MiddlewareWithConfig(m, Config{})
}

// MiddlewareWithConfig is [Middleware] with a [Config].
func MiddlewareWithConfig(m *middleware.Middleware, cfg Config) echo.MiddlewareFunc {
	open := m.OpenRequest
	if cfg.Optional {
		open = m.OpenOptionalRequest
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if middleware.IsEndpoint(c.Request().URL.EscapedPath()) ||
				(cfg.Skipper != nil && cfg.Skipper(c)) || m.Skip(middleware.RequestFromHTTP(c.Request())) {
				return next(c)
			}
			orig := c.Response()
			r, x, ok := open(orig, c.Request())
			if !ok {
				return nil // the problem response is written; the handler must not run
			}
			if !x.Opened().Encrypted {
				return next(c)
			}
			bw := &bufferedWriter{header: orig.Header()}
			c.SetRequest(r)
			c.SetResponse(echo.NewResponse(bw, c.Echo()))
			defer c.SetResponse(orig) // a panic reaches Recover with the real writer
			if err := next(c); err != nil {
				c.Error(err) // Echo's HTTPErrorHandler renders it into the buffer
			}
			x.WriteResponse(orig, bw.statusOr200(), bw.buf.Bytes())
			return nil
		}
	}
}

// Mount routes the dynkey endpoints (key directory, login, heartbeat) to m
// for every method Echo routes (the standard ones), so that a wrong method
// gets the documented "method-not-allowed" problem with an Allow header,
// not Echo's own 405.
// The endpoints have fixed paths, bound into the login's encryption.
func Mount(e *echo.Echo, m *middleware.Middleware) {
	h := echo.WrapHandler(m.Endpoints())
	for _, p := range []string{wire.PathKeys, wire.PathLogin, wire.PathHeartbeat} {
		e.Any(p, h)
	}
}

// bufferedWriter keeps the handler's response in memory; its header map is
// the real response's, so the Content-Type the handler sets is sealed and
// headers set by earlier middleware (CORS) stay.
type bufferedWriter struct {
	header http.Header
	buf    bytes.Buffer
	status int
}

func (b *bufferedWriter) Header() http.Header { return b.header }
func (b *bufferedWriter) Write(p []byte) (int, error) {
	b.WriteHeader(http.StatusOK)
	return b.buf.Write(p)
}
func (b *bufferedWriter) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}

// Flush does nothing: the response is sealed when the handler returns.
func (b *bufferedWriter) Flush() {}
func (b *bufferedWriter) statusOr200() int {
	if b.status == 0 {
		return http.StatusOK
	}
	return b.status
}

// CORSConfig returns Echo's CORS configuration for browser pages on
// origins calling dynkey routes: the request headers dynkey needs
// (Dynkey-Envelope, and Content-Type for application/dynkey bodies) are
// allowed, the response headers its client reads (Dynkey-Status,
// Dynkey-Response, Dynkey-Problem, Retry-After, Allow) are exposed, and
// preflights are cached for 10 minutes. Add it with e.Use, in front of
// [Middleware]: echomw.CORSWithConfig(dynkeyecho.CORSConfig(origins)).
func CORSConfig(origins []string) echomw.CORSConfig {
	return echomw.CORSConfig{
		AllowOrigins:  origins,
		AllowMethods:  []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions},
		AllowHeaders:  []string{wire.EnvelopeHeader, "Content-Type"},
		ExposeHeaders: []string{wire.StatusHeader, wire.ResponseHeader, wire.ProblemHeader, "Retry-After", "Allow"},
		MaxAge:        600,
	}
}
