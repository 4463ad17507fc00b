package middleware

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/dynkey/dynkey/wire"
)

// Logging of refusals, rotations and store failures through Options.Logger
// (docs/OPERATIONS.md "Logs"). Every line is structured and carries no
// secret: no token, password, private key, plaintext, query string or
// message id — only the problem code, the method, the route (the router's
// pattern, else the path with identifier-like segments redacted), the suite
// and the key ids of the envelope (public: hashes of public keys).
//
// So that a flood of bad requests cannot make logging the denial of
// service, each kind of line (a refusal code, a rotation side, a store
// operation) has its own token bucket: logBurst lines at once, then
// logPerSecond; the lines a bucket drops are counted, and the next line of
// that kind carries the count as "suppressed". Metrics (Options.Observer)
// count every event, logged or not.

// Rate limit of each kind of log line.
const (
	logBurst     = 10
	logPerSecond = 1
	// logKinds bounds the buckets: codes other than the documented ones
	// (an adapter's own problems) share one.
	logKinds = 64
)

// logLimiter is a token bucket per kind of line, on the middleware's clock.
type logLimiter struct {
	mu      sync.Mutex
	buckets map[string]*logBucket
}

type logBucket struct {
	tokens     float64
	last       time.Time
	suppressed int
}

// allow takes a token of kind's bucket at now. ok false: drop the line
// (counted). When ok, suppressed is the number of lines dropped since the
// last one allowed.
func (l *logLimiter) allow(kind string, now time.Time) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buckets == nil {
		l.buckets = map[string]*logBucket{}
	}
	b := l.buckets[kind]
	if b == nil {
		if len(l.buckets) >= logKinds {
			kind = "other"
			b = l.buckets[kind]
		}
		if b == nil {
			b = &logBucket{tokens: logBurst, last: now}
			l.buckets[kind] = b
		}
	}
	if el := now.Sub(b.last); el > 0 {
		b.tokens = min(logBurst, b.tokens+el.Seconds()*logPerSecond)
		b.last = now
	}
	if b.tokens < 1 {
		b.suppressed++
		return false, 0
	}
	b.tokens--
	suppressed, b.suppressed = b.suppressed, 0
	return true, suppressed
}

// refusalLevel is the level of a refusal's log line: Error for a failure
// of the server ("unavailable"), Warn for what an attacker or a broken
// client causes (forgeries, replays, malformed or oversized envelopes,
// unknown keys, throttled logins), Info for what a well-behaved client
// meets and recovers from by itself (a stale clock, an expired token or
// key, a rotated server key, a wrong password, a busy login queue, a plain
// request, a wrong method).
func refusalLevel(code wire.Code) slog.Level {
	switch code {
	case wire.CodeUnavailable:
		return slog.LevelError
	case wire.CodeStale, wire.CodeServerKeyUnknown, wire.CodeTokenExpired, wire.CodeClientKeyExpired,
		wire.CodeLoginFailed, wire.CodeLoginBusy, wire.CodeNotEncrypted, wire.CodeMethod:
		return slog.LevelInfo
	}
	return slog.LevelWarn
}

// logRefusal writes the line of one refusal.
func (m *Middleware) logRefusal(ctx context.Context, r *Request, p *Problem) {
	if ctx == nil {
		ctx = context.Background()
	}
	level := refusalLevel(p.Code)
	if !m.log.Enabled(ctx, level) {
		return
	}
	ok, suppressed := m.logLim.allow("refused/"+string(p.Code), m.now())
	if !ok {
		return
	}
	attrs := make([]slog.Attr, 0, 10)
	attrs = append(attrs, slog.String("code", string(p.Code)), slog.Int("status", p.Status))
	if r != nil {
		attrs = append(attrs, slog.String("method", boundedToken(r.Method)), slog.String("route", logRoute(r)))
	}
	if p.suite != "" {
		attrs = append(attrs, slog.String("suite", p.suite))
	}
	if p.serverKeyID != "" {
		attrs = append(attrs, slog.String("server_key_id", p.serverKeyID))
	}
	if p.clientKeyID != "" {
		attrs = append(attrs, slog.String("client_key_id", p.clientKeyID))
	}
	if p.cause != nil {
		attrs = append(attrs, slog.String("err", p.cause.Error()))
	}
	if suppressed > 0 {
		attrs = append(attrs, slog.Int("suppressed", suppressed))
	}
	m.log.LogAttrs(ctx, level, "dynkey: request refused", attrs...)
}

// logRotation writes the line of one rotation (Info). A server rotation by
// policy is logged by Maintain itself, with the new key's id.
func (m *Middleware) logRotation(side, suite, reason string) {
	if side == SideServer && reason == "policy" {
		return
	}
	ctx := context.Background()
	if !m.log.Enabled(ctx, slog.LevelInfo) {
		return
	}
	ok, suppressed := m.logLim.allow("rotated/"+side+"/"+reason, m.now())
	if !ok {
		return
	}
	attrs := []slog.Attr{slog.String("side", side), slog.String("suite", suite), slog.String("reason", reason)}
	if suppressed > 0 {
		attrs = append(attrs, slog.Int("suppressed", suppressed))
	}
	m.log.LogAttrs(ctx, slog.LevelInfo, "dynkey: key rotated", attrs...)
}

// logStoreError writes the line of one failed store operation (Error).
// The error is the store's (its driver's message); the key is not logged.
func (m *Middleware) logStoreError(ctx context.Context, op string, err error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if m.log == nil || !m.log.Enabled(ctx, slog.LevelError) {
		return // during New, before the logger is set: New returns the error
	}
	ok, suppressed := m.logLim.allow("store/"+op, m.now())
	if !ok {
		return
	}
	attrs := []slog.Attr{slog.String("op", op), slog.String("err", err.Error())}
	if suppressed > 0 {
		attrs = append(attrs, slog.Int("suppressed", suppressed))
	}
	m.log.LogAttrs(ctx, slog.LevelError, "dynkey: store operation failed", attrs...)
}

// about records the suite and key ids of the envelope p refuses, for the
// log line. Safe on a nil p or req.
func (p *Problem) about(req *wire.Request) {
	if p == nil || req == nil || p.suite != "" {
		return
	}
	p.suite = boundedToken(req.Suite)
	p.serverKeyID = req.ServerKeyID.String()
	switch {
	case req.Type == wire.TypeLogin && len(req.ClientKey) > 0: // the public key itself
		p.clientKeyID = wire.ComputeKeyID(req.Suite, req.ClientKey).String()
	case len(req.ClientKey) == len(wire.KeyID{}):
		var id wire.KeyID
		copy(id[:], req.ClientKey)
		p.clientKeyID = id.String()
	}
}

// logRoute is the route of r for a log line: Request.Route when the
// adapter knows the router's pattern, else the escaped path cut to
// maxRouteSegments segments, each segment that looks like an identifier
// (has a digit, is long, or has characters other than letters, '-', '_'
// and '.') replaced by ":id". The query is never logged.
func logRoute(r *Request) string {
	if r.Route != "" {
		return boundedText(r.Route, maxRouteLen)
	}
	path := r.EscapedPath
	var b strings.Builder
	n := 0
	for seg := range strings.SplitSeq(strings.TrimPrefix(path, "/"), "/") {
		if n == maxRouteSegments {
			b.WriteString("/…")
			break
		}
		n++
		b.WriteByte('/')
		if identifierLike(seg) {
			b.WriteString(":id")
		} else {
			b.WriteString(seg)
		}
	}
	if b.Len() == 0 {
		return "/"
	}
	return b.String()
}

const (
	maxRouteSegments = 4
	maxRouteLen      = 128
	maxSegmentLen    = 24
)

func identifierLike(seg string) bool {
	if len(seg) > maxSegmentLen {
		return true
	}
	for _, c := range []byte(seg) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '-', c == '_', c == '.':
		default:
			return true
		}
	}
	return false
}

// boundedToken keeps a short printable token (a method, a suite name) as
// it is, and replaces anything else with "other".
func boundedToken(s string) string {
	if len(s) == 0 || len(s) > 32 {
		return "other"
	}
	for _, c := range []byte(s) {
		if c <= ' ' || c >= 0x7f {
			return "other"
		}
	}
	return s
}

// boundedText cuts s to n bytes.
func boundedText(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
