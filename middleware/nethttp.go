package middleware

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/dynkey/dynkey/wire"
)

// The net/http shape of the core: thin wrappers over Open, Seal and
// ServeEndpoint (core.go).

// RequestFromHTTP returns the core's view of a net/http request (for
// adapters of frameworks built on net/http: Gin, Echo, chi). The Body is
// r.Body, read by Open; Header reads r.Header.
func RequestFromHTTP(r *http.Request) *Request {
	cl := r.ContentLength
	if r.Body == nil || r.Body == http.NoBody {
		cl = 0
	}
	var path, query string
	if r.URL != nil {
		path, query = r.URL.EscapedPath(), r.URL.RawQuery
	}
	req := &Request{
		Method:        r.Method,
		EscapedPath:   path,
		RawQuery:      query,
		ContentLength: cl,
		ContentType:   r.Header.Get("Content-Type"),
		Envelope:      strings.Join(r.Header.Values(wire.EnvelopeHeader), ","),
		Route:         r.Pattern,
		RemoteAddr:    r.RemoteAddr,
		Header: func(name string) string {
			return strings.Join(r.Header.Values(name), ", ")
		},
	}
	if cl != 0 {
		req.Body = r.Body
	}
	return req
}

// WriteHTTP writes a core Response to a net/http writer as [Response]
// says: the handler's Content-Length, Content-Encoding, Dynkey-Status and
// Dynkey-Response are removed, resp.Header is set, then the status and the
// body.
func WriteHTTP(w http.ResponseWriter, resp *Response) {
	h := w.Header()
	h.Del("Content-Encoding")
	h.Del(wire.StatusHeader)
	h.Del(wire.ResponseHeader)
	for _, kv := range resp.Header {
		h.Set(kv[0], kv[1])
	}
	h.Set("Content-Length", strconv.Itoa(len(resp.Body)))
	w.WriteHeader(resp.Status)
	if len(resp.Body) > 0 {
		_, _ = w.Write(resp.Body)
	}
}

// readDeadline sets Options.ReadTimeout on the connection of w, on the real
// clock (it is the connection's, not Options.Now), and returns the function
// that lifts it once the envelope was read. A writer that cannot set one
// (ErrNotSupported: HTTP/2 streams on old servers, test recorders) keeps the
// server's own timeouts.
func (m *Middleware) readDeadline(w http.ResponseWriter) (lift func()) {
	rc := http.NewResponseController(w)
	if rc.SetReadDeadline(time.Now().Add(m.o.ReadTimeout)) != nil {
		return func() {}
	}
	return func() { _ = rc.SetReadDeadline(time.Time{}) }
}

// liftUnlessClosing lifts the read deadline unless resp closes the
// connection: after a read error (a trickled body) the deadline stays in
// the past, so the server cannot drain the rest of the body and closes the
// connection.
func liftUnlessClosing(lift func(), resp *Response) {
	if resp == nil || resp.Header.Get("Connection") != "close" {
		lift()
	}
}

// Handler protects next: the dynkey endpoints are served on their paths
// (see [Middleware.ServeEndpoint]), a request Options.Next skips goes to
// next untouched, and every other request must be a dynkey envelope
// (header or body): next sees the plaintext, the session in its context
// ([FromContext]), and its response is sealed. A refused request gets the
// problem response and never reaches next. Responses are buffered in memory
// (no streaming).
//
// Wrap the whole application to protect all of it (public routes then go
// through Options.Next), or only the routes or sub-routers to protect; see
// [Middleware.Optional] for routes that also accept plain requests.
func (m *Middleware) Handler(next http.Handler) http.Handler {
	return m.handler(next, false)
}

// Optional is [Middleware.Handler] in optional mode, for routes whose
// clients are migrating: a request without an envelope (no Dynkey-Envelope
// header, a Content-Type other than application/dynkey) reaches next as it
// is, with no session in its context, and its response is not sealed; an
// encrypted request is opened and sealed exactly as by Handler (and refused
// if it does not open). The handler tells the two apart with
// [FromContext] (ok is false for a plain request) or [IsEncrypted]. Off
// unless a route is wrapped with Optional.
func (m *Middleware) Optional(next http.Handler) http.Handler {
	return m.handler(next, true)
}

func (m *Middleware) handler(next http.Handler, optional bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req := RequestFromHTTP(r)
		if IsEndpoint(req.EscapedPath) {
			lift := m.readDeadline(w)
			resp, _ := m.ServeEndpoint(r.Context(), req)
			liftUnlessClosing(lift, resp)
			WriteHTTP(w, resp)
			return
		}
		if m.Skip(req) {
			next.ServeHTTP(w, r)
			return
		}
		r2, x, ok := m.openHTTP(w, r, req, optional)
		if !ok {
			return
		}
		if !x.o.Encrypted {
			next.ServeHTTP(w, r)
			return
		}
		bw := &bufferedWriter{header: http.Header{}}
		next.ServeHTTP(bw, r2)
		for k, v := range bw.header {
			w.Header()[k] = v
		}
		x.WriteResponse(w, bw.statusOr200(), bw.buf.Bytes())
	})
}

// Endpoints serves the key directory (GET /.well-known/dynkey/keys), login
// (POST /dynkey/login) and heartbeat (POST /dynkey/heartbeat), and answers
// 404 on any other path. Mount it at the root of the URL space (or route
// those three paths to it, for every method). Another method on one of them
// gets the "method-not-allowed" problem with an Allow header.
func (m *Middleware) Endpoints() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lift := m.readDeadline(w)
		resp, ok := m.ServeEndpoint(r.Context(), RequestFromHTTP(r))
		liftUnlessClosing(lift, resp)
		if !ok {
			http.NotFound(w, r)
			return
		}
		WriteHTTP(w, resp)
	})
}

// Exchange is one opened request in the net/http shape: it seals the
// response so that only the sender of the request can read it.
type Exchange struct {
	o *Opened
}

// Opened returns the core's view of the opened request.
func (x *Exchange) Opened() *Opened { return x.o }

// OpenRequest opens the dynkey envelope of a request to a protected route
// ([Middleware.Open] in the net/http shape, with Options.ReadTimeout). On
// success it returns the request to pass to the handler (body replaced by
// the plaintext, Content-Type by the sealed one, the Dynkey-Envelope header
// removed, the Session in its context) and the Exchange that seals the
// response. On failure it has written the problem response and returns
// ok == false; the handler must not run. It does not consult Options.Next.
func (m *Middleware) OpenRequest(w http.ResponseWriter, r *http.Request) (*http.Request, *Exchange, bool) {
	return m.openHTTP(w, r, RequestFromHTTP(r), false)
}

// OpenOptionalRequest is [Middleware.OpenRequest] for an optional route
// (see [Middleware.OpenOptional]): for a plain request it returns r itself
// and an Exchange whose Opened().Encrypted is false and whose
// WriteResponse writes the response unsealed.
func (m *Middleware) OpenOptionalRequest(w http.ResponseWriter, r *http.Request) (*http.Request, *Exchange, bool) {
	return m.openHTTP(w, r, RequestFromHTTP(r), true)
}

func (m *Middleware) openHTTP(w http.ResponseWriter, r *http.Request, req *Request, optional bool) (*http.Request, *Exchange, bool) {
	var lift func()
	if !optional || carriesEnvelope(req) {
		lift = m.readDeadline(w)
	}
	o, perr := m.openRoute(r.Context(), req, optional)
	if perr != nil {
		// On a read error the deadline stays in the past: the server
		// cannot drain the rest of the body and closes the connection.
		WriteHTTP(w, m.Refusal(r.Context(), req, perr))
		return nil, nil, false
	}
	if lift != nil {
		lift()
	}
	if !o.Encrypted {
		return r, &Exchange{o: o}, true
	}
	r2 := r.WithContext(context.WithValue(r.Context(), ctxKey{}, o.Session))
	r2.Body = io.NopCloser(bytes.NewReader(o.Body))
	r2.ContentLength = int64(len(o.Body))
	r2.Header = r.Header.Clone()
	r2.Header.Del("Content-Type")
	r2.Header.Del(wire.EnvelopeHeader)
	if o.ContentType != "" {
		r2.Header.Set("Content-Type", o.ContentType)
	}
	r2.Header.Set("Content-Length", strconv.Itoa(len(o.Body)))
	r2.GetBody = nil
	return r2, &Exchange{o: o}, true
}

// WriteResponse seals body as the response to the exchange's request and
// writes it with the given status ([Opened.Seal], then [WriteHTTP]). The
// Content-Type in w's header, if any, is sealed with the body (sniffed
// with http.DetectContentType when unset and the body is not empty) and
// replaced by application/dynkey; other headers travel as they are (dynkey
// protects bodies, not headers). For a plain request of an optional route
// the response is written unsealed.
func (x *Exchange) WriteResponse(w http.ResponseWriter, status int, body []byte) {
	if !x.o.Encrypted {
		w.WriteHeader(status)
		_, _ = w.Write(body)
		return
	}
	ct := w.Header().Get("Content-Type")
	if ct == "" && len(body) > 0 {
		ct = http.DetectContentType(body)
	}
	resp, err := x.o.Seal(status, ct, body)
	if err != nil {
		x.o.m.log.Error("dynkey: sealing a response", "err", err)
		resp = x.o.m.Refusal(context.Background(), nil, err)
	}
	WriteHTTP(w, resp)
}

// bufferedWriter collects a handler's response so it can be sealed.
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
