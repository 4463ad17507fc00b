// Package dynkeygin is the Gin glue for dynkey: [Middleware] protects the
// engine, groups or routes, [Optional] accepts plain requests too, and
// [Mount] serves the endpoints. The protocol work is package middleware's.
//
//	r := gin.New()
//	dynkeygin.Mount(r, m)
//	api := r.Group("/api", dynkeygin.Middleware(m))
//	api.POST("/echo", func(c *gin.Context) { … c.JSON(200, …) })
//
// Responses are buffered and sealed when the chain returns: streaming,
// Flush and Hijack do not reach the client.
package dynkeygin

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/dynkey/dynkey/middleware"
	"github.com/dynkey/dynkey/wire"
)

// Middleware opens the envelope of every request it sees, runs the chain
// with the plaintext (session: [middleware.FromContext]) and seals what the
// chain wrote, status and Content-Type included. A refused request gets
// the problem response and the chain is aborted. Requests Options.Next
// skips, and the endpoint paths (served by [Mount]), pass untouched.
func Middleware(m *middleware.Middleware) gin.HandlerFunc { return handler(m, m.OpenRequest) }

// Optional is [Middleware] in optional mode, for routes whose clients are
// migrating: a plain request runs the chain as it is, unsealed, with no
// session ([middleware.FromContext] reports ok == false); an encrypted one
// is opened and sealed as by Middleware.
func Optional(m *middleware.Middleware) gin.HandlerFunc { return handler(m, m.OpenOptionalRequest) }

type openFunc func(http.ResponseWriter, *http.Request) (*http.Request, *middleware.Exchange, bool)

func handler(m *middleware.Middleware, open openFunc) gin.HandlerFunc {
	return func(c *gin.Context) {
		if middleware.IsEndpoint(c.Request.URL.EscapedPath()) || m.Skip(middleware.RequestFromHTTP(c.Request)) {
			return // the chain continues untouched
		}
		r, x, ok := open(c.Writer, c.Request)
		if !ok {
			c.Abort()
			return
		}
		if !x.Opened().Encrypted {
			return
		}
		orig := c.Writer
		// Inherit the status Gin already chose (404/405 for unmatched routes).
		bw := &bufferedWriter{ResponseWriter: orig, status: orig.Status(), size: -1}
		c.Request, c.Writer = r, bw
		defer func() { c.Writer = orig }() // a panic reaches gin.Recovery with the real writer
		c.Next()
		c.Writer = orig
		x.WriteResponse(orig, bw.status, bw.buf.Bytes())
	}
}

// Mount routes the endpoints (key directory, login, heartbeat) to m for
// every method (a wrong one gets the 405 problem with Allow). r must be the
// engine or a group at "/": the paths are fixed.
func Mount(r gin.IRouter, m *middleware.Middleware) {
	if g, ok := r.(interface{ BasePath() string }); ok && g.BasePath() != "/" {
		panic("dynkeygin: Mount needs the engine or a group at \"/\", not " + g.BasePath())
	}
	h := gin.WrapH(m.Endpoints())
	for _, p := range []string{wire.PathKeys, wire.PathLogin, wire.PathHeartbeat} {
		r.Any(p, h)
	}
}

// bufferedWriter keeps the response in memory; the header map is the
// original writer's (Content-Type set by c.JSON is sealed).
type bufferedWriter struct {
	gin.ResponseWriter
	buf    bytes.Buffer
	status int
	size   int // -1 until the handler writes (Gin's Written() convention)
}

var errBuffered = errors.New("dynkeygin: the response is sealed after the handler returns; no hijacking")

func (w *bufferedWriter) WriteHeader(code int) {
	if code > 0 && !w.Written() {
		w.status = code
	}
}
func (w *bufferedWriter) WriteHeaderNow() {
	if !w.Written() {
		w.size = 0
	}
}
func (w *bufferedWriter) Write(p []byte) (int, error) {
	w.WriteHeaderNow()
	n, err := w.buf.Write(p)
	w.size += n
	return n, err
}
func (w *bufferedWriter) WriteString(s string) (int, error) { return w.Write([]byte(s)) }
func (w *bufferedWriter) Status() int                       { return w.status }
func (w *bufferedWriter) Size() int                         { return w.size }
func (w *bufferedWriter) Written() bool                     { return w.size != -1 }
func (w *bufferedWriter) Flush()                            { w.WriteHeaderNow() }
func (w *bufferedWriter) Pusher() http.Pusher               { return nil }
func (w *bufferedWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return nil, nil, errBuffered
}
