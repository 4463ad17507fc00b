// Package dynkeygin is the Gin glue for dynkey: [Middleware] protects routes
// with a [middleware.Middleware] and [Mount] serves its endpoints. All the
// protocol work is done by package middleware; this package only adapts
// Gin's writer so a handler's response can be sealed.
//
//	m, _ := middleware.New(middleware.Options{Store: st, Authenticator: users})
//	r := gin.New()
//	dynkeygin.Mount(r, m)
//	api := r.Group("/api", dynkeygin.Middleware(m))
//	api.POST("/echo", func(c *gin.Context) { … c.JSON(200, …) })
//
// Responses of protected routes are buffered in memory and sealed when the
// handler chain returns: streaming, Flush and Hijack do not reach the client.
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

// Middleware opens the dynkey envelope of every request it sees, runs the
// rest of the chain with the plaintext request (the session is in
// c.Request.Context(), see [middleware.FromContext]) and seals whatever the
// chain wrote, status and Content-Type included. A refused request gets the
// middleware's problem response and the chain is aborted: no later handler
// runs. Add it to the routes or groups to protect, not in front of the
// routes of [Mount] (login and heartbeat open their own envelopes).
func Middleware(m *middleware.Middleware) gin.HandlerFunc {
	return func(c *gin.Context) {
		r, x, ok := m.OpenRequest(c.Writer, c.Request)
		if !ok {
			c.Abort()
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

// Mount routes the dynkey endpoints (key directory, login, heartbeat) to m,
// for every method, so that a wrong method gets the documented
// "method-not-allowed" problem with an Allow header (not Gin's plain-text
// 404). r must be the engine or a group at "/": the endpoints have fixed
// paths, bound into the login's encryption.
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
// original writer's, so Content-Type set by c.JSON or c.String is sealed.
type bufferedWriter struct {
	gin.ResponseWriter
	buf    bytes.Buffer
	status int
	size   int // -1 until the handler writes (Gin's Written() convention)
}

var errBuffered = errors.New("dynkeygin: the response is sealed after the handler returns; hijacking is not supported")

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
