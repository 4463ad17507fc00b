package middleware

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"

	"github.com/dynkey/dynkey/wire"
)

// Problem is a refusal: the error every core method ([Middleware.Open],
// [Middleware.ServeEndpoint], [Opened.Seal]) returns when a request must not
// reach the handler, with everything needed to answer it.
//
// The embedded [wire.Problem] is the RFC 9457 body the client parses (type,
// title, status, detail, code, and s_time or the key directory for the codes
// that carry them). Header holds the extra response headers the refusal
// needs (Allow on "method-not-allowed", Retry-After on "login-busy",
// Connection: close when the request body could not be drained).
//
// Match a code with errors.Is and the sentinels ([ErrReplay], …), or get the
// details with errors.As:
//
//	var p *middleware.Problem
//	if errors.As(err, &p) { log.Print(p.Code, p.Status) }
//
// The internal cause of an "unavailable" refusal (a store error, say) is
// reachable through errors.Unwrap for logging, and never sent to the
// client.
type Problem struct {
	wire.Problem
	// Header holds extra response headers of this refusal, in order.
	Header Header
	cause  error
	// stored is, on a "replay" of a message whose response was kept
	// (outcome.go), that original sealed response: what Response returns.
	stored *Response
	// suite and the key ids of the refused envelope, when it was parsed:
	// for the log line (logging.go).
	suite, serverKeyID, clientKeyID string
}

// NewProblem returns the refusal for code with a human-readable detail (sent
// to the client: say what the client did wrong, never an internal
// cause).
func NewProblem(code wire.Code, detail string) *Problem {
	return &Problem{Problem: *wire.NewProblem(code, detail)}
}

// Error returns "dynkey: <code> (<status>): <detail>".
func (p *Problem) Error() string { return p.Problem.Error() }

// Unwrap returns the internal cause of the refusal, or nil.
func (p *Problem) Unwrap() error { return p.cause }

// Is reports whether target is the sentinel of p's code (e.g. [ErrReplay]).
func (p *Problem) Is(target error) bool {
	c, ok := target.(codeError)
	return ok && wire.Code(c) == p.Code
}

// Body returns the JSON body of the refusal (application/problem+json).
func (p *Problem) Body() []byte {
	b, err := json.Marshal(&p.Problem)
	if err != nil { // a wire.Problem always marshals; be safe anyway
		b, _ = json.Marshal(wire.NewProblem(wire.CodeUnavailable, ""))
	}
	return b
}

// clone returns a deep enough copy of p for a hook to read (the body's
// directory is shared: hooks get the problem by value and cannot reach the
// one that is sent).
func (p *Problem) clone() *Problem {
	c := *p
	c.Header = append(Header(nil), p.Header...)
	if p.Directory != nil {
		d := *p.Directory
		c.Directory = &d
	}
	return &c
}

// Response returns the response that carries the refusal: its status, the
// problem body and the headers Content-Type: application/problem+json,
// Cache-Control: no-store, Dynkey-Problem: <code> (so that a client that
// gets no body — a HEAD request — still learns the code), then p.Header.
//
// A "replay" of a message whose handler finished and whose sealed response
// the middleware kept (Options.StoredResponseLimit) is answered with that
// original response instead, as it was first sent: see [Problem.Replayed].
func (p *Problem) Response() *Response {
	if p.stored != nil {
		return p.stored.clone()
	}
	h := make(Header, 0, 3+len(p.Header))
	h = append(h,
		[2]string{"Content-Type", wire.ProblemMediaType},
		[2]string{"Cache-Control", "no-store"},
		[2]string{wire.ProblemHeader, string(p.Code)})
	h = append(h, p.Header...)
	return &Response{Status: p.Status, Header: h, Body: p.Body()}
}

// codeError is the type of the per-code sentinels.
type codeError wire.Code

func (c codeError) Error() string { return "dynkey: " + string(c) }

// Sentinels, one per problem code, for errors.Is on any error a core method
// returns: errors.Is(err, middleware.ErrReplay). Each matches a *Problem of
// its code. docs/PROTOCOL.md lists what a client does about each.
var (
	ErrBadFormat        error = codeError(wire.CodeBadFormat)
	ErrNotEncrypted     error = codeError(wire.CodeNotEncrypted)
	ErrTooLarge         error = codeError(wire.CodeTooLarge)
	ErrUnsupportedSuite error = codeError(wire.CodeUnsupportedSuite)
	ErrServerKeyUnknown error = codeError(wire.CodeServerKeyUnknown)
	ErrDecryptFailed    error = codeError(wire.CodeDecryptFailed)
	ErrTokenInvalid     error = codeError(wire.CodeTokenInvalid)
	ErrTokenExpired     error = codeError(wire.CodeTokenExpired)
	ErrClientKeyUnknown error = codeError(wire.CodeClientKeyUnknown)
	ErrClientKeyExpired error = codeError(wire.CodeClientKeyExpired)
	ErrStale            error = codeError(wire.CodeStale)
	ErrReplay           error = codeError(wire.CodeReplay)
	ErrRotationRefused  error = codeError(wire.CodeRotationRefused)
	ErrLoginFailed      error = codeError(wire.CodeLoginFailed)
	ErrLoginThrottled   error = codeError(wire.CodeLoginThrottled)
	ErrLoginBusy        error = codeError(wire.CodeLoginBusy)
	ErrMethodNotAllowed error = codeError(wire.CodeMethod)
	ErrUnavailable      error = codeError(wire.CodeUnavailable)
	ErrOutcomeUnknown   error = codeError(wire.CodeOutcomeUnknown)
)

// ProblemResponse renders any error as a refusal response: a *Problem (or an
// error wrapping one) as itself, anything else as the 503 "unavailable"
// problem with a generic detail — never a 500, never the error's text. It
// runs no hook; adapters answer refusals with [Middleware.Refusal], which
// does.
func ProblemResponse(err error) *Response {
	return asProblem(err).Response()
}

// asProblem returns the *Problem in err's chain, or an "unavailable"
// problem caused by err.
func asProblem(err error) *Problem {
	var p *Problem
	if errors.As(err, &p) {
		return p
	}
	return unavailable(err)
}

// Refusal is how an adapter answers an error of [Middleware.Open],
// [Opened.Seal] or its own: it writes one structured line to
// Options.Logger (code, method, route, suite, key ids, the internal cause
// of an "unavailable"; never a secret; rate-limited per code — see
// docs/OPERATIONS.md "Logs"), calls Options.ErrorHandler, which may add headers but cannot change the
// status or body, and returns the response to write as it is (see
// [ProblemResponse] for non-problem errors). r may be nil when no request
// is at hand.
func (m *Middleware) Refusal(ctx context.Context, r *Request, err error) *Response {
	p := asProblem(err)
	m.logRefusal(ctx, r, p)
	if p.stored != nil {
		// A resend answered with its original response (logged as the
		// replay it is): not a refusal on the wire, so no hook adds
		// headers to it.
		return p.stored.clone()
	}
	resp := p.Response()
	if m.o.ErrorHandler != nil {
		for _, kv := range m.o.ErrorHandler(ctx, r, p.clone()) {
			if reservedHeader(kv[0]) || !validHeaderField(kv[0], kv[1]) || resp.Header.Get(kv[0]) != "" {
				continue // frames the body, breaks the framing, or already set (Allow, Retry-After)
			}
			resp.Header = append(resp.Header, kv)
		}
	}
	return resp
}

// reservedHeader reports the headers an ErrorHandler may not add: those
// that frame or describe the problem body.
func reservedHeader(name string) bool {
	switch strings.ToLower(name) {
	case "content-type", "content-length", "content-encoding", "transfer-encoding",
		"cache-control", strings.ToLower(wire.ProblemHeader), strings.ToLower(wire.StatusHeader),
		strings.ToLower(wire.ResponseHeader):
		return true
	}
	return false
}

// validHeaderField rejects names and values that would break the framing
// of the response (control characters, empty names, ':' in names).
func validHeaderField(name, value string) bool {
	if name == "" {
		return false
	}
	for _, c := range []byte(name) {
		if c <= ' ' || c >= 0x7f || c == ':' {
			return false
		}
	}
	for _, c := range []byte(value) {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// refuse returns the refusal for code.
func refuse(code wire.Code, detail string) *Problem { return NewProblem(code, detail) }

// unavailable reports a failure of the store (or of randomness) as 503:
// the client may retry; nothing about the request was wrong. The cause is
// kept for the log, never sent.
func unavailable(err error) *Problem {
	p := NewProblem(wire.CodeUnavailable, "state store unavailable, retry later")
	p.cause = err
	return p
}

// withHeader adds a response header to p and returns p.
func (p *Problem) withHeader(name, value string) *Problem {
	p.Header = append(p.Header, [2]string{name, value})
	return p
}

// retryAfter is the Retry-After of "login-busy", in seconds.
var retryAfter = strconv.Itoa(1)
