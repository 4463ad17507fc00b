package middleware

import (
	"context"
	"io"
	"mime"
	"strconv"
	"strings"

	"github.com/dynkey/dynkey/wire"
)

// This file is the byte-level core: the whole protocol as functions of
// bytes and strings, with no net/http type in a signature, so that every
// transport (net/http in nethttp.go, Gin, Fiber/fasthttp, Echo, …) is a
// thin wrapper. See "Writing an adapter" in docs/ARCHITECTURE.md.

// Request is the transport-neutral view of an HTTP request, all the core
// needs to open it. Adapters fill it from their framework's request; every
// field is read-only to the core.
type Request struct {
	// Method is the request method as sent ("GET", "POST", …). It is bound
	// into the envelope's associated data.
	Method string
	// EscapedPath is the request target's path exactly as sent, still
	// percent-encoded (net/http: r.URL.EscapedPath(); fasthttp:
	// ctx.Request.URI().PathOriginal()). Bound into the associated data:
	// a path the router decoded or cleaned would not authenticate.
	EscapedPath string
	// RawQuery is the query string as sent, without the '?'. Bound into
	// the associated data.
	RawQuery string
	// ContentLength is the declared body length, -1 when unknown (chunked).
	// A declared length over the limit is refused before Body is read.
	ContentLength int64
	// ContentType is the request's Content-Type header, "" if none. It
	// tells an optional route an encrypted request (application/dynkey)
	// from a plain one; strict routes ignore it.
	ContentType string
	// Envelope is the value of the Dynkey-Envelope request header
	// (wire.EnvelopeHeader), "" if none: the base64url envelope of a
	// request without a body (docs/PROTOCOL.md §4). A request with both an
	// Envelope and a body is refused with "bad-format".
	Envelope string
	// Body is the request body; nil means none. The core reads at most
	// Options.MaxBodySize plus the envelope overhead from it and does not
	// close it. A transport that already holds the body as bytes passes a
	// *bytes.Reader. Deadlines on reading are the adapter's (the net/http
	// wrappers apply Options.ReadTimeout); a read error that
	// errors.Is(os.ErrDeadlineExceeded) is refused as "bad-format".
	Body io.Reader
	// Route is the route pattern the router matched ("/api/users/{id}"),
	// "" if unknown; used only in log lines (the path, with
	// identifier-like segments redacted, stands in when it is ""). The
	// net/http wrappers fill it from http.Request.Pattern.
	Route string
	// RemoteAddr is the address of the connection's peer ("ip:port"),
	// which login throttling charges unless it is a trusted proxy.
	RemoteAddr string
	// Header returns a request header's value, all its field lines joined
	// with ", ", "" if absent; nil means no headers. The core reads only
	// Forwarded and X-Forwarded-For, and only when RemoteAddr is in
	// Options.TrustedProxies; Options.Next and ErrorHandler may read any.
	Header func(name string) string
}

// header returns r.Header(name), "" if r has no Header function.
func (r *Request) header(name string) string {
	if r == nil || r.Header == nil {
		return ""
	}
	return r.Header(name)
}

// Header is an ordered list of response header fields, name then value.
// Names are canonical and distinct: an adapter sets each one, replacing
// any value the handler set.
type Header [][2]string

// Get returns the value of the first field named name (case-insensitive),
// "" if none.
func (h Header) Get(name string) string {
	for _, kv := range h {
		if strings.EqualFold(kv[0], name) {
			return kv[1]
		}
	}
	return ""
}

// Response is a response ready for the wire: a sealed response, a refusal,
// an endpoint's answer, or on an optional route the handler's plain
// response. The adapter writes it as it is:
//
//   - delete the headers Content-Length, Content-Encoding, Dynkey-Status and
//     Dynkey-Response the handler may have set (the sealed body is neither
//     the handler's length nor its encoding);
//   - set every field of Header (replacing), then Content-Length:
//     len(Body);
//   - write Status and Body (for a HEAD request Body is empty and the
//     transport sends no body).
//
// Other headers the handler set travel as they are: dynkey protects
// bodies, status and content type, not headers. On an optional route, the
// response of a plain request (Opened.Encrypted false) is the handler's
// own: write it as the framework would, without the deletions.
type Response struct {
	Status int
	Header Header
	Body   []byte
}

// Opened is a request the core opened: what the handler sees, and the key
// to seal its response.
type Opened struct {
	// Session is the authenticated caller; nil when Encrypted is false.
	Session *Session
	// Body is the plaintext request body (nil when Encrypted is false: the
	// plain request's body was not read; pass it to the handler as it is).
	Body []byte
	// ContentType is the Content-Type the client sealed with the body ("" if
	// none); for a plain request, Request.ContentType.
	ContentType string
	// Encrypted is true for an opened envelope, false only for a plain
	// request accepted by [Middleware.OpenOptional].
	Encrypted bool

	m         *Middleware
	secret    []byte
	messageID [wire.MessageIDSize]byte
	head      bool
	scope     string          // replay scope of messageID, for its recorded outcome
	ctx       context.Context // the request's, for recording the outcome
	sealed    bool            // an outcome was recorded (Seal records once)
}

// Open opens the dynkey envelope of a request to a protected route: from
// the header (Request.Envelope) or the body. It runs every check, cheap
// ones first — size, format, suite, server key id, freshness, token,
// session, client key, the one public-key operation, a client key rotation
// if the message carries one, then the replay check — and returns the
// plaintext and session, or a *Problem (match it with errors.Is and the
// Err… sentinels; answer it with [Middleware.Refusal]). A refused request
// must not reach the handler. A request without an envelope is refused
// with [ErrNotEncrypted].
//
// Open does not consult Options.Next (call [Middleware.Skip] first) and
// does not serve the endpoints (call [Middleware.ServeEndpoint] first, or
// route their paths elsewhere). Safe for concurrent use.
func (m *Middleware) Open(ctx context.Context, r *Request) (*Opened, error) {
	o, p := m.openRoute(ctx, r, false)
	if p != nil {
		return nil, p
	}
	return o, nil
}

// OpenOptional is [Middleware.Open] for a route in optional mode, for
// migrating clients: a request that carries no envelope — no
// Dynkey-Envelope header and a Content-Type other than application/dynkey
// — is accepted as it is, with Encrypted false, no Session and its body
// unread; a request that carries one is opened exactly as by Open, and
// refused if it does not open (never passed through as plain). Seal of a
// plain Opened returns the handler's response unchanged.
func (m *Middleware) OpenOptional(ctx context.Context, r *Request) (*Opened, error) {
	o, p := m.openRoute(ctx, r, true)
	if p != nil {
		return nil, p
	}
	return o, nil
}

// carriesEnvelope reports whether a request claims to be encrypted: a
// header envelope, or the dynkey media type.
func carriesEnvelope(r *Request) bool {
	if r.Envelope != "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(r.ContentType)
	return err == nil && mt == wire.MediaType
}

func (m *Middleware) openRoute(ctx context.Context, r *Request, optional bool) (*Opened, *Problem) {
	if optional && !carriesEnvelope(r) {
		return &Opened{ContentType: r.ContentType, m: m}, nil
	}
	start := m.startTimer()
	o, p := m.open(ctx, r, false)
	if p != nil {
		m.observeRefusal(p)
		return nil, p
	}
	if o.session.Rotated {
		m.observeRotation(SideClient, o.session.Suite, "request")
	}
	if m.o.Observer != nil {
		m.o.Observer.Opened(o.session.Suite, timeSince(start))
	}
	return m.newOpened(ctx, o, r), nil
}

func (m *Middleware) newOpened(ctx context.Context, o *opened, r *Request) *Opened {
	return &Opened{Session: o.session, Body: o.inner.Body, ContentType: o.inner.ContentType, Encrypted: true,
		m: m, secret: o.secret, messageID: o.req.MessageID, head: r.Method == "HEAD", scope: o.scope, ctx: ctx}
}

// Seal seals the handler's response — its status, content type and body —
// so that only the sender of the request can read it, bound to that
// request (docs/PROTOCOL.md §5). The result is 200 with the envelope as
// body, Content-Type: application/dynkey and Cache-Control: no-store; a
// status that cannot carry a body (1xx, 204, 304) is sent as 200 with the
// real one in Dynkey-Status; for a HEAD request the envelope travels in the
// Dynkey-Response header instead (base64url), its body is sealed empty and
// the response has none. contentType "" means none (the net/http wrappers
// sniff one first, as net/http does). For a plain request of an optional
// route, Seal returns the response unchanged (with contentType as
// Content-Type if not ""). An error is a *Problem ("unavailable" if
// randomness failed, "bad-format" for a content type with control
// characters): answer it with [Middleware.Refusal].
//
// Seal also records the outcome of the request for its retries
// (docs/PROTOCOL.md §11): the sealed response, if it is at most
// Options.StoredResponseLimit bytes, is kept in the store for the replay
// window under the request's message id, before Seal returns (one store
// write); a retry of the same message then gets this response instead of
// reaching the handler. Call Seal once per Opened, after the handler
// finished; a later call seals but records nothing.
func (o *Opened) Seal(status int, contentType string, body []byte) (*Response, error) {
	if !o.Encrypted {
		resp := &Response{Status: status, Body: body}
		if contentType != "" {
			resp.Header = Header{{"Content-Type", contentType}}
		}
		return resp, nil
	}
	suite := ""
	if o.Session != nil {
		suite = o.Session.Suite
	}
	resp, err := o.m.seal(o.secret, o.messageID, o.head, suite, status, contentType, body)
	if !o.sealed {
		o.sealed = true
		ctx := o.ctx
		if ctx == nil {
			ctx = context.Background()
		}
		o.m.recordOutcome(ctx, o.scope, o.messageID, resp) // nil: ran, nothing to keep
	}
	if err != nil {
		o.m.observeRefusal(err)
		return nil, err
	}
	return resp, nil
}

// seal is Opened.Seal for an encrypted request.
func (m *Middleware) seal(secret []byte, id [wire.MessageIDSize]byte, head bool, suite string, status int, ct string, body []byte) (*Response, error) {
	start := m.startTimer()
	sent := status
	var statusHdr string
	if !wire.StatusCarriesBody(status) {
		// 1xx, 204 and 304 cannot carry the envelope: send 200 and the
		// real status in a header, authenticated by the response AAD.
		statusHdr, sent = strconv.Itoa(status), 200
		// Nor can they carry content (RFC 9110 §15.3.5, §15.4.5): what a
		// handler wrote with them (Fiber's SendStatus writes the reason
		// phrase) is dropped, as an HTTP server would drop it.
		body, ct = nil, ""
	}
	if head {
		body = nil
	}
	env, err := wire.SealResponse(m.o.Rand, secret, id, status, ct, body)
	if err != nil {
		if wireFormat(err) {
			return nil, refuse(wire.CodeBadFormat, "the handler's content type cannot be sealed")
		}
		return nil, unavailable(err)
	}
	h := make(Header, 0, 4)
	h = append(h, [2]string{"Content-Type", wire.MediaType}, [2]string{"Cache-Control", "no-store"})
	if statusHdr != "" {
		h = append(h, [2]string{wire.StatusHeader, statusHdr})
	}
	resp := &Response{Status: sent, Header: h, Body: env}
	if head {
		resp.Header = append(resp.Header, [2]string{wire.ResponseHeader, wire.EncodeHeaderEnvelope(env)})
		resp.Body = nil
	}
	if m.o.Observer != nil {
		m.o.Observer.Sealed(suite, timeSince(start))
	}
	return resp, nil
}

// Skip reports whether Options.Next says r bypasses dynkey (false when Next
// is nil). Adapters call it first: a skipped request goes to the handler
// untouched, neither opened nor sealed.
func (m *Middleware) Skip(r *Request) bool {
	return m.o.Next != nil && m.o.Next(r)
}

// IsEndpoint reports whether path is one of the paths ServeEndpoint serves.
func IsEndpoint(path string) bool {
	return path == wire.PathKeys || path == wire.PathLogin || path == wire.PathHeartbeat
}

// ServeEndpoint serves the dynkey endpoints — the key directory (GET or
// HEAD /.well-known/dynkey/keys), login (POST /dynkey/login) and heartbeat
// (POST /dynkey/heartbeat) — on their fixed paths, for every method: a
// wrong method gets the "method-not-allowed" problem with an Allow header.
// ok is false, and resp nil, when r.EscapedPath is not one of those paths
// (let the application route it). Refusals are already rendered through
// [Middleware.Refusal]: write resp as it is.
func (m *Middleware) ServeEndpoint(ctx context.Context, r *Request) (resp *Response, ok bool) {
	var err error
	switch r.EscapedPath {
	case wire.PathKeys:
		if r.Method != "GET" && r.Method != "HEAD" {
			err = refuse(wire.CodeMethod, "use GET").withHeader("Allow", "GET, HEAD")
			break
		}
		resp, err = m.serveKeys(r)
	case wire.PathLogin:
		if r.Method != "POST" {
			err = refuse(wire.CodeMethod, "use POST").withHeader("Allow", "POST")
			break
		}
		resp, err = m.serveLogin(ctx, r)
	case wire.PathHeartbeat:
		if r.Method != "POST" {
			err = refuse(wire.CodeMethod, "use POST").withHeader("Allow", "POST")
			break
		}
		resp, err = m.serveHeartbeat(ctx, r)
	default:
		return nil, false
	}
	if err != nil {
		m.observeRefusal(err)
		return m.Refusal(ctx, r, err), true
	}
	return resp, true
}
