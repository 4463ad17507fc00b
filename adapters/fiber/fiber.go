// Package dynkeyfiber is the Fiber v3 glue for dynkey: [New] protects routes
// with a [middleware.Middleware] and [Mount] serves its endpoints. Fiber runs
// on fasthttp, so this package calls the byte-level core of package
// middleware (Open, Seal, ServeEndpoint) directly on the fasthttp request
// and response; all the protocol work is done there.
//
//	app := fiber.New()
//	dynkeyfiber.Mount(app, m)
//	api := app.Group("/api", dynkeyfiber.New(dynkeyfiber.Config{Middleware: m}))
//	api.Post("/echo", func(c fiber.Ctx) error { … return c.JSON(…) })
//
// The handler sees the plaintext body (c.Body()) and its Content-Type
// (c.Get("Content-Type")), the session through [FromContext]; its status,
// Content-Type and body are sealed after the chain returned, once Fiber's
// ErrorHandler turned a returned error into a response. The request body is
// read by fasthttp before the handler runs: Fiber's Config.BodyLimit and
// ReadTimeout bound it (Options.ReadTimeout does not apply). Responses are
// buffered (a body stream is read whole, then sealed). Do not use
// adaptor.HTTPMiddleware(m.Handler): the Fiber handler would run after the
// net/http middleware returned, and answer in plaintext.
package dynkeyfiber

import (
	"bytes"
	"strings"

	"github.com/gofiber/fiber/v3"

	"github.com/dynkey/dynkey/middleware"
	"github.com/dynkey/dynkey/wire"
)

// sessionKey is the c.Locals key of the session.
type sessionKey struct{}

// FromContext returns the dynkey session of a request [New] opened; ok is
// false for a plain request of an Optional route or one Next skipped. The
// session is also in c.Context() for [middleware.FromContext].
func FromContext(c fiber.Ctx) (*middleware.Session, bool) {
	s, ok := c.Locals(sessionKey{}).(*middleware.Session)
	return s, ok && s != nil
}

// New returns the handler that protects the routes after it: the dynkey
// endpoints are served on their paths (so app.Use(New(…)) protects a whole
// app), a request Config.Next or Options.Next skips runs the chain
// untouched, and every other request must be a dynkey envelope (header or
// body) — a refused one gets the problem response and the chain does not
// run. It panics if Config.Middleware is nil.
func New(config ...Config) fiber.Handler {
	cfg := configDefault(config...)
	m := cfg.Middleware
	open := m.Open
	if cfg.Optional {
		open = m.OpenOptional
	}
	return func(c fiber.Ctx) error {
		if cfg.Next != nil && cfg.Next(c) {
			return c.Next()
		}
		req, ctx := request(c), c.Context()
		if middleware.IsEndpoint(req.EscapedPath) {
			resp, _ := m.ServeEndpoint(ctx, req)
			write(c, resp)
			return nil
		}
		if m.Skip(req) {
			return c.Next()
		}
		o, err := open(ctx, req)
		if err != nil {
			write(c, m.Refusal(ctx, req, err))
			return nil
		}
		if !o.Encrypted {
			return c.Next() // plain request of an optional route
		}
		r := c.Request()
		r.SetBody(o.Body)
		r.Header.SetContentLength(len(o.Body))
		r.Header.Del(wire.EnvelopeHeader)
		r.Header.Del(fiber.HeaderContentEncoding)
		r.Header.SetContentType(o.ContentType) // "" removes it
		c.Locals(sessionKey{}, o.Session)
		c.SetContext(middleware.NewContext(ctx, o.Session))
		sealed := false
		defer func() { // a panic must not leave the plaintext in the response
			if !sealed {
				c.Response().ResetBody()
			}
		}()
		if err := c.Next(); err != nil {
			if err := c.App().ErrorHandler(c, err); err != nil {
				_ = c.SendStatus(fiber.StatusInternalServerError) // as Fiber does
			}
		}
		resp := c.Response()
		body, err := resp.BodyUncompressed() // a compress middleware inside: seal the content
		var out *middleware.Response
		if err == nil {
			out, err = o.Seal(resp.StatusCode(), string(resp.Header.ContentType()), body)
		}
		if err != nil {
			out = m.Refusal(ctx, req, err)
		}
		write(c, out)
		sealed = true
		return nil
	}
}

// Mount routes the dynkey endpoints (key directory, login, heartbeat) to m
// for every method, so that a wrong method gets the documented
// "method-not-allowed" problem with an Allow header. r must be the app or a
// group at "/" (it panics otherwise): the endpoints have fixed paths,
// bound into the login's encryption.
func Mount(r fiber.Router, m *middleware.Middleware) {
	if g, ok := r.(*fiber.Group); ok && strings.Trim(g.Prefix, "/") != "" {
		panic("dynkeyfiber: Mount needs the app or a group at \"/\", not " + g.Prefix)
	}
	h := New(Config{Middleware: m}) // serves the endpoints on their paths
	for _, p := range []string{wire.PathKeys, wire.PathLogin, wire.PathHeartbeat} {
		r.All(p, h)
	}
}

// request is the core's view of the fasthttp request, as sent.
func request(c fiber.Ctx) *middleware.Request {
	r := c.Request()
	body := r.Body() // raw: not decoded by Content-Encoding
	req := &middleware.Request{
		Method:        c.Method(),
		EscapedPath:   string(r.URI().PathOriginal()),
		RawQuery:      string(r.URI().QueryString()),
		ContentLength: int64(len(body)),
		ContentType:   string(r.Header.ContentType()),
		Envelope:      string(bytes.Join(r.Header.PeekAll(wire.EnvelopeHeader), []byte(","))),
		RemoteAddr:    c.RequestCtx().RemoteAddr().String(),
		Header: func(name string) string {
			return string(bytes.Join(r.Header.PeekAll(name), []byte(", ")))
		},
	}
	if len(body) > 0 {
		req.Body = bytes.NewReader(body)
	}
	return req
}

// write writes a core response as middleware.Response says (fasthttp sets
// Content-Length from the body; it sends none for HEAD).
func write(c fiber.Ctx, resp *middleware.Response) {
	h := &c.Response().Header
	for _, name := range []string{fiber.HeaderContentEncoding, wire.StatusHeader, wire.ResponseHeader} {
		h.Del(name)
	}
	for _, kv := range resp.Header {
		h.Set(kv[0], kv[1])
	}
	c.Response().SetStatusCode(resp.Status)
	c.Response().SetBody(resp.Body)
}
