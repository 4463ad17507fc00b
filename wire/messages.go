package wire

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
)

// Endpoint paths served by the middleware.
const (
	PathKeys      = "/.well-known/dynkey/keys"
	PathLogin     = "/dynkey/login"
	PathHeartbeat = "/dynkey/heartbeat"
)

// Media types.
const (
	MediaType        = "application/dynkey"       // request and response envelopes
	ProblemMediaType = "application/problem+json" // refusals (RFC 9457)
)

// LoginRequest is the JSON body sealed inside a TypeLogin envelope.
type LoginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// LoginResponse is the JSON body sealed inside the response to a login.
type LoginResponse struct {
	Token        B64              `json:"token"`         // opaque to the client
	TokenExpires int64            `json:"token_expires"` // ms since the Unix epoch
	ClientKeyID  string           `json:"client_key_id"` // KeyID of the login key, hex
	STime        int64            `json:"s_time"`        // server time, ms since the Unix epoch
	Directory    *SignedDirectory `json:"directory"`
}

// HeartbeatResponse is the JSON body sealed inside the response to a
// heartbeat. A new server key is announced in Directory, signed by the
// identity key and delivered inside a response only the server could seal.
type HeartbeatResponse struct {
	STime     int64            `json:"s_time"`
	Directory *SignedDirectory `json:"directory"`
	// RotateClientKey is the server's hint that the client should rotate
	// its key now.
	RotateClientKey bool `json:"rotate_client_key,omitempty"`
}

// Code is a stable problem code: it tells the client what to do.
type Code string

// Problem codes. docs/PROTOCOL.md lists the client's action for each.
const (
	CodeBadFormat        Code = "bad-format"         // 400: not a well-formed envelope
	CodeNotEncrypted     Code = "not-encrypted"      // 415: a protected route got a plain body
	CodeTooLarge         Code = "too-large"          // 413: body over the size limit
	CodeUnsupportedSuite Code = "unsupported-suite"  // 400: suite differs from the server's
	CodeServerKeyUnknown Code = "server-key-unknown" // 400: unknown or retired server key; carries the directory
	CodeDecryptFailed    Code = "decrypt-failed"     // 400: the envelope did not authenticate
	CodeTokenInvalid     Code = "token-invalid"      // 401: log in again
	CodeTokenExpired     Code = "token-expired"      // 401: log in again
	CodeClientKeyUnknown Code = "client-key-unknown" // 401: not the session's current client key
	CodeClientKeyExpired Code = "client-key-expired" // 401: client key past its hard limit; rotate on a heartbeat, retry
	CodeStale            Code = "stale"              // 400: freshness check failed; carries s_time
	CodeReplay           Code = "replay"             // 400: message id already seen
	CodeRotationRefused  Code = "rotation-refused"   // 409: client key rotation refused
	CodeLoginFailed      Code = "login-failed"       // 401: bad username or password
	CodeLoginThrottled   Code = "login-throttled"    // 429: too many failed logins
	CodeLoginBusy        Code = "login-busy"         // 503: too many password checks at once; retry after Retry-After
	CodeMethod           Code = "method-not-allowed" // 405
	CodeUnavailable      Code = "unavailable"        // 503: state store unreachable; retry later
)

// Status returns the HTTP status that goes with a code.
func (c Code) Status() int {
	switch c {
	case CodeNotEncrypted:
		return http.StatusUnsupportedMediaType
	case CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case CodeTokenInvalid, CodeTokenExpired, CodeClientKeyUnknown, CodeClientKeyExpired, CodeLoginFailed:
		return http.StatusUnauthorized
	case CodeRotationRefused:
		return http.StatusConflict
	case CodeLoginThrottled:
		return http.StatusTooManyRequests
	case CodeMethod:
		return http.StatusMethodNotAllowed
	case CodeUnavailable, CodeLoginBusy:
		return http.StatusServiceUnavailable
	default:
		return http.StatusBadRequest
	}
}

// TypeURI returns the RFC 9457 problem type URI of a code.
func (c Code) TypeURI() string { return "urn:dynkey:problem:" + string(c) }

// Problem is an RFC 9457 problem details body with dynkey's extensions.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	Code   Code   `json:"code"`
	// STime is the server's clock (ms since the Unix epoch), on "stale".
	STime int64 `json:"s_time,omitempty"`
	// Directory is the current key directory, on "server-key-unknown".
	// Unauthenticated transport: the client verifies it like any other.
	Directory *SignedDirectory `json:"directory,omitempty"`
}

// Error implements error, so a client can return a Problem.
func (p *Problem) Error() string {
	if p.Detail != "" {
		return fmt.Sprintf("dynkey: %s (%d): %s", p.Code, p.Status, p.Detail)
	}
	return fmt.Sprintf("dynkey: %s (%d)", p.Code, p.Status)
}

// NewProblem returns the problem for code with a human-readable detail.
func NewProblem(code Code, detail string) *Problem {
	return &Problem{Type: code.TypeURI(), Title: titles[code], Status: code.Status(), Detail: detail, Code: code}
}

// ParseProblem decodes a problem body; ok is false if b is not one. A dynkey
// problem has a non-empty code and the type Code.TypeURI() of that code; an
// RFC 9457 problem of any other type (from a proxy, say) is not one, even
// with a "code" member.
func ParseProblem(b []byte) (*Problem, bool) {
	var p Problem
	if err := json.Unmarshal(b, &p); err != nil || p.Code == "" || p.Type != p.Code.TypeURI() {
		return nil, false
	}
	return &p, true
}

var titles = map[Code]string{
	CodeBadFormat:        "Malformed dynkey message",
	CodeNotEncrypted:     "Request body is not a dynkey envelope",
	CodeTooLarge:         "Request body too large",
	CodeUnsupportedSuite: "Unsupported suite",
	CodeServerKeyUnknown: "Unknown or retired server key",
	CodeDecryptFailed:    "Message authentication failed",
	CodeTokenInvalid:     "Invalid token",
	CodeTokenExpired:     "Token expired",
	CodeClientKeyUnknown: "Unknown client key",
	CodeClientKeyExpired: "Client key past its hard limit",
	CodeStale:            "Message outside the freshness window",
	CodeReplay:           "Message already seen",
	CodeRotationRefused:  "Client key rotation refused",
	CodeLoginFailed:      "Login failed",
	CodeLoginThrottled:   "Too many failed logins",
	CodeLoginBusy:        "Too many logins in progress",
	CodeMethod:           "Method not allowed",
	CodeUnavailable:      "Service temporarily unavailable",
}

// Codes returns every problem code, sorted. A client that handles problems
// (or a test that forges them) can range over it.
func Codes() []Code {
	out := make([]Code, 0, len(titles))
	for c := range titles {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}
