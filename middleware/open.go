package middleware

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/dynkey/dynkey/policy"
	"github.com/dynkey/dynkey/wire"
)

// problemError is a refusal on its way to the client.
type problemError struct {
	p   *wire.Problem
	err error // internal cause, logged, never sent
}

func (e *problemError) Error() string { return e.p.Error() }

func refuse(code wire.Code, detail string) *problemError {
	return &problemError{p: wire.NewProblem(code, detail)}
}

// unavailable reports a failure of the store (or of randomness) as 503:
// the client may retry; nothing about the request was wrong.
func unavailable(err error) *problemError {
	return &problemError{p: wire.NewProblem(wire.CodeUnavailable, "state store unavailable, retry later"), err: err}
}

// Exchange is one opened request: it seals the response so that only the
// sender of the request can read it, bound to that request.
type Exchange struct {
	m         *Middleware
	secret    []byte
	messageID [wire.MessageIDSize]byte
}

// opened is the result of the common opening steps.
type opened struct {
	req     *wire.Request
	inner   *wire.Inner
	secret  []byte
	claims  *claims
	session *Session
	sr      sessionRecord // as loaded, before any rotation by this message
}

// readEnvelope reads a request body, bounded in size and in time (item 6 of
// docs/PROTOCOL.md §4 limits): a declared Content-Length over the limit is
// refused before a byte is read (so no "100 Continue" is sent), and the
// body must arrive within Options.ReadTimeout.
func (m *Middleware) readEnvelope(w http.ResponseWriter, r *http.Request) ([]byte, *problemError) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, refuse(wire.CodeNotEncrypted, "the request has no dynkey envelope")
	}
	limit := m.o.MaxBodySize + envelopeOverhead
	tooLarge := refuse(wire.CodeTooLarge, "body exceeds "+strconv.FormatInt(m.o.MaxBodySize, 10)+" bytes")
	if r.ContentLength > limit {
		w.Header().Set("Connection", "close")
		return nil, tooLarge
	}
	// The deadline is on the real clock (it is the connection's), not
	// Options.Now. A writer that cannot set one (ErrNotSupported: HTTP/2
	// streams on old servers, test recorders) keeps the server's own
	// timeouts.
	rc := http.NewResponseController(w)
	deadline := rc.SetReadDeadline(time.Now().Add(m.o.ReadTimeout)) == nil
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		// The deadline stays in the past: the server cannot drain the
		// rest of the body and closes the connection.
		w.Header().Set("Connection", "close")
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			return nil, tooLarge
		case errors.Is(err, os.ErrDeadlineExceeded):
			return nil, refuse(wire.CodeBadFormat, "the body did not arrive within the read timeout")
		}
		return nil, refuse(wire.CodeBadFormat, "reading the body failed")
	}
	if deadline {
		_ = rc.SetReadDeadline(time.Time{})
	}
	if len(body) < 2 || body[0] != 'D' || body[1] != 'K' {
		return nil, refuse(wire.CodeNotEncrypted, "the body is not a dynkey envelope")
	}
	return body, nil
}

// envelopeOverhead is what an envelope may add to MaxBodySize: header,
// token, keys, rotation fields.
const envelopeOverhead = 64 * 1024

// parseAndCheck does the cheap checks shared by login and requests: format,
// type, suite, server key id and freshness.
func (m *Middleware) parseAndCheck(ctx context.Context, body []byte, typ byte, now time.Time) (*wire.Request, *serverKey, *problemError) {
	req, err := wire.ParseRequest(body)
	if err != nil {
		return nil, nil, refuse(wire.CodeBadFormat, err.Error())
	}
	if req.Type != typ {
		return nil, nil, refuse(wire.CodeBadFormat, "wrong message type for this endpoint")
	}
	// New sessions use the configured suite; an existing session keeps the
	// suite it logged in with while that suite still has a primary key
	// (open checks that the message's suite is the session's: no
	// downgrade).
	if req.Suite != m.suite.Name() && (typ == wire.TypeLogin || m.ring.Load().primaries[req.Suite] == nil) {
		return nil, nil, refuse(wire.CodeUnsupportedSuite, fmt.Sprintf("this server uses suite %q", m.suite.Name()))
	}
	sk, err := m.keyFor(ctx, req.ServerKeyID)
	if err != nil {
		return nil, nil, unavailable(err)
	}
	if sk == nil || sk.suite.Name() != req.Suite {
		p := refuse(wire.CodeServerKeyUnknown, "unknown or retired server key "+req.ServerKeyID.String())
		p.p.Directory, _, _ = m.directory(req.Suite)
		return nil, nil, p
	}
	// Freshness against the server's own clock: the client's estimate is
	// the s_time it was given plus its monotonic elapsed time, so a wrong
	// client wall clock does not matter (hole 4).
	// All of it in checked integer milliseconds (timecheck.go): an s_time
	// later than now plus the window, or one whose sum with elapsed
	// overflows, is stale.
	if !fresh(req.STime, req.Elapsed, unixMs(now), durMs(m.o.FreshnessWindow)) {
		p := refuse(wire.CodeStale, "message time is outside the freshness window")
		p.p.STime = now.UnixMilli()
		return nil, nil, p
	}
	return req, sk, nil
}

// markSeen rejects a message id seen within the replay window (hole 3). The
// id set lives in the store, shared by every instance. It is called only
// once the message authenticated, and scope names who authenticated it (the
// user, or the client key of a login), so an unauthenticated sender costs no
// store write and nobody can occupy another sender's ids. The user, not the
// session: a retry after logging in again must still find its id.
func (m *Middleware) markSeen(ctx context.Context, scope string, id [wire.MessageIDSize]byte, now time.Time) *problemError {
	first, err := m.o.Store.MarkSeen(ctx, "dynkey/msg/"+scope+"/"+hex.EncodeToString(id[:]), now.Add(m.replayWindow()))
	if err != nil {
		return unavailable(err)
	}
	if !first {
		return refuse(wire.CodeReplay, "message id already seen")
	}
	return nil
}

// userScope is the replay scope of a user's requests: a hash, so that the
// store's keys do not hold usernames.
func userScope(username string) string {
	h := sha256.Sum256([]byte("dynkey/v1 replay scope\x00" + username))
	return "u-" + hex.EncodeToString(h[:16])
}

// replayWindow is how long a message id is remembered: a message is fresh
// while its time is within FreshnessWindow of the server clock, so it can
// arrive at most 2×FreshnessWindow after the first copy was accepted; the
// margin covers clock steps between instances.
func (m *Middleware) replayWindow() time.Duration {
	return 2*m.o.FreshnessWindow + replayMargin
}

// replayMargin is added to the replay window (see replayWindow).
const replayMargin = time.Minute

// open runs every check of a TypeRequest envelope, cheap ones first, then
// the one public-key operation, then a client key rotation if asked for.
func (m *Middleware) open(w http.ResponseWriter, r *http.Request, heartbeat bool) (*opened, *problemError) {
	ctx := r.Context()
	body, perr := m.readEnvelope(w, r)
	if perr != nil {
		return nil, perr
	}
	now := m.now()
	req, sk, perr := m.parseAndCheck(ctx, body, wire.TypeRequest, now)
	if perr != nil {
		return nil, perr
	}
	c, err := m.openToken(ctx, req.Token, now)
	switch {
	case errors.Is(err, errTokenExpired):
		return nil, refuse(wire.CodeTokenExpired, "log in again")
	case err != nil:
		return nil, refuse(wire.CodeTokenInvalid, "log in again")
	}
	sr, version, err := m.loadSession(ctx, c.SessionID)
	if err != nil {
		if errors.Is(err, errNotFound) {
			return nil, refuse(wire.CodeTokenInvalid, "session ended; log in again")
		}
		return nil, unavailable(err)
	}
	if req.Suite != sr.Suite {
		return nil, refuse(wire.CodeUnsupportedSuite, fmt.Sprintf("this session uses suite %q", sr.Suite))
	}
	// The token's username must be the session's (patent step b2).
	if subtle.ConstantTimeCompare([]byte(sr.Username), []byte(c.Username)) != 1 {
		return nil, refuse(wire.CodeTokenInvalid, "token does not match its session")
	}
	var clientKeyID wire.KeyID
	copy(clientKeyID[:], req.ClientKey)
	var clientPub []byte
	current := false
	switch {
	case clientKeyID == wire.ComputeKeyID(sr.Suite, sr.ClientKey):
		clientPub, current = sr.ClientKey, true
	case sr.PrevKey != nil && now.UnixMilli() < sr.PrevUntil && clientKeyID == wire.ComputeKeyID(sr.Suite, sr.PrevKey):
		clientPub = sr.PrevKey // in flight across a rotation: grace window
	default:
		return nil, refuse(wire.CodeClientKeyUnknown, "not the session's current client key")
	}
	// The server's policy for client keys: past a hard limit (Reject) the
	// key is refused, before the message id is recorded, except on a
	// heartbeat, which may carry the rotation that replaces it. The
	// previous key too: the grace window is for requests in flight, not
	// for a key that was refused before it was replaced.
	installed := sr.KeyInstalled
	if !current {
		installed = sr.PrevInstalled
	}
	expired := m.clientKeyDecision(installed, clientKeyID, now) == policy.Reject
	if expired && (!heartbeat || !current) {
		return nil, refuse(wire.CodeClientKeyExpired, "the client key is past its hard limit; rotate it on a heartbeat and retry")
	}
	cpk, err := sk.suite.ParsePublicKey(clientPub)
	if err != nil {
		return nil, unavailable(err)
	}
	aad := wire.RequestAAD(r.Method, r.URL.EscapedPath(), r.URL.RawQuery, req.Header)
	pt, secret, err := m.openMessage(sk, cpk, wire.InfoRequest, aad, req.Ciphertext)
	if err != nil {
		return nil, refuse(wire.CodeDecryptFailed, "the envelope did not authenticate")
	}
	inner, err := wire.ParseInner(pt)
	if err != nil {
		return nil, refuse(wire.CodeBadFormat, err.Error())
	}
	if int64(len(inner.Body)) > m.o.MaxBodySize {
		return nil, refuse(wire.CodeTooLarge, "body exceeds the size limit")
	}
	o := &opened{req: req, inner: inner, secret: secret, claims: c, sr: sr,
		session: &Session{ID: hex.EncodeToString(c.SessionID[:]), Username: sr.Username, Suite: sr.Suite, ClientKeyID: clientKeyID}}
	if expired && !inner.Rotating() {
		return nil, refuse(wire.CodeClientKeyExpired, "the client key is past its hard limit; this heartbeat must rotate it")
	}
	if inner.Rotating() {
		if !current {
			return nil, refuse(wire.CodeRotationRefused, "a rotation must be authenticated by the current client key")
		}
		if perr := m.rotateClientKey(ctx, o, sk, &sr, version, now); perr != nil {
			return nil, perr
		}
	}
	// The message id is recorded last, once everything that can refuse the
	// message has passed: every genuine refusal leaves the id unused, so the
	// client's retry with the same id works, while a refusal forged after
	// the handler ran makes that retry a replay (docs/PROTOCOL.md §9). A
	// replayed rotation cannot get here twice: once it has landed, its key
	// is the previous one, which may not rotate.
	if perr := m.markSeen(ctx, userScope(sr.Username), req.MessageID, now); perr != nil {
		return nil, perr
	}
	return o, nil
}

// clientKeyDecision applies ClientPolicy to a client key installed at
// installed (ms).
func (m *Middleware) clientKeyDecision(installed int64, id wire.KeyID, now time.Time) policy.Decision {
	if m.o.ClientPolicy == nil {
		return policy.Keep
	}
	age := ageDuration(unixMs(now), installed)
	return m.o.ClientPolicy.Decide(policy.Facts{Now: now, Age: age, OffsetGrowth: age, KeyID: id[:]})
}

// rotateClientKey is patent step b2 with hole 2 closed: the request is
// already authenticated by the current client key; the new key must prove
// possession too, time_offset must match the server's view (claim 4), and
// the swap is a compare-and-swap so concurrent rotations cannot both win.
func (m *Middleware) rotateClientKey(ctx context.Context, o *opened, sk *serverKey, sr *sessionRecord, version uint64, now time.Time) *problemError {
	in := o.inner
	// Checked integer milliseconds: a time_offset near the int64 extremes
	// is outside any threshold, never wrapped into it.
	sTime, ok := u64ms(o.req.STime)
	if !ok {
		return refuse(wire.CodeRotationRefused, "time_offset is outside the threshold")
	}
	serverOffset, ok := subMs(unixMs(now), sTime)
	if !ok || !withinMs(serverOffset, in.TimeOffset, durMs(m.o.RotationOffsetThreshold)) {
		return refuse(wire.CodeRotationRefused, "time_offset is outside the threshold")
	}
	newPub, err := sk.suite.ParsePublicKey(in.NewClientKey)
	if err != nil {
		return refuse(wire.CodeRotationRefused, "the new client key is malformed")
	}
	// Neither the current key nor the previous one: rotating back would
	// reset the key's age (KeyInstalled) and defeat the client policy's
	// reject(age…), and the previous key is still accepted in its grace
	// window. Compared as sent and as the suite re-encodes it.
	isKey := func(k []byte) bool {
		return k != nil && (bytes.Equal(in.NewClientKey, k) || bytes.Equal(newPub.Bytes(), k))
	}
	if isKey(sr.ClientKey) {
		return refuse(wire.CodeRotationRefused, "the new client key is the current one")
	}
	if isKey(sr.PrevKey) {
		return refuse(wire.CodeRotationRefused, "the new client key is the previous one")
	}
	proofAAD := wire.ProofAAD(o.req.MessageID, o.session.ClientKeyID, in.NewClientKey)
	if _, _, err := m.openMessage(sk, newPub, wire.InfoProof, proofAAD, in.Proof); err != nil {
		return refuse(wire.CodeRotationRefused, "no proof of possession of the new client key")
	}
	next := *sr
	prevUntil, ok := addMs(unixMs(now), durMs(m.o.ClientKeyGrace))
	if !ok {
		return unavailable(errors.New("ClientKeyGrace overflows the clock"))
	}
	next.PrevKey, next.PrevUntil = sr.ClientKey, prevUntil
	next.PrevInstalled = sr.KeyInstalled
	next.ClientKey, next.KeyInstalled = in.NewClientKey, unixMs(now)
	if err := m.storeSession(ctx, o.claims.SessionID, version, &next); err != nil {
		if errors.Is(err, errConflict) {
			return refuse(wire.CodeRotationRefused, "the session changed meanwhile; retry")
		}
		return unavailable(err)
	}
	o.session.Rotated = true
	o.session.ClientKeyID = wire.ComputeKeyID(sr.Suite, in.NewClientKey)
	return nil
}

// OpenRequest opens the dynkey envelope of a request to a protected route.
// On success it returns the request to pass to the handler (body replaced by
// the plaintext, Content-Type by the sealed one, the Session in its
// context) and the Exchange that seals the response. On failure it has
// written the problem response and returns ok == false; the handler must
// not run.
func (m *Middleware) OpenRequest(w http.ResponseWriter, r *http.Request) (*http.Request, *Exchange, bool) {
	o, perr := m.open(w, r, false)
	if perr != nil {
		m.writeProblem(w, perr)
		return nil, nil, false
	}
	r2 := r.WithContext(context.WithValue(r.Context(), ctxKey{}, o.session))
	r2.Body = io.NopCloser(bytes.NewReader(o.inner.Body))
	r2.ContentLength = int64(len(o.inner.Body))
	r2.Header = r.Header.Clone()
	r2.Header.Del("Content-Type")
	if o.inner.ContentType != "" {
		r2.Header.Set("Content-Type", o.inner.ContentType)
	}
	r2.Header.Set("Content-Length", strconv.Itoa(len(o.inner.Body)))
	r2.GetBody = nil
	return r2, &Exchange{m: m, secret: o.secret, messageID: o.req.MessageID}, true
}

// WriteResponse seals body as the response to the exchange's request and
// writes it with the given status. The Content-Type in w's header, if any,
// is sealed with the body and replaced by application/dynkey; other headers
// travel as they are (dynkey protects bodies, not headers).
func (x *Exchange) WriteResponse(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	ct := h.Get("Content-Type")
	if ct == "" && len(body) > 0 {
		ct = http.DetectContentType(body)
	}
	env, err := wire.SealResponse(x.m.o.Rand, x.secret, x.messageID, status, ct, body)
	if err != nil {
		x.m.log.Error("dynkey: sealing a response", "err", err)
		x.m.writeProblem(w, unavailable(err))
		return
	}
	h.Set("Content-Type", wire.MediaType)
	h.Set("Content-Length", strconv.Itoa(len(env)))
	h.Del("Content-Encoding")
	h.Set("Cache-Control", "no-store")
	h.Del(wire.StatusHeader)
	if !wire.StatusCarriesBody(status) {
		// 1xx, 204 and 304 cannot carry the envelope: send 200 and the
		// real status in a header, authenticated by the response AAD.
		h.Set(wire.StatusHeader, strconv.Itoa(status))
		status = http.StatusOK
	}
	w.WriteHeader(status)
	_, _ = w.Write(env)
}

// Handler protects next: every request must be a dynkey envelope; next sees
// the plaintext and its response is sealed. Responses are buffered in memory
// (no streaming).
func (m *Middleware) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r2, x, ok := m.OpenRequest(w, r)
		if !ok {
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
