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

// opened is the result of the common opening steps.
type opened struct {
	req     *wire.Request
	inner   *wire.Inner
	secret  []byte
	claims  *claims
	session *Session
	sr      sessionRecord // as loaded, before any rotation by this message
	scope   string        // the replay scope of the message id
}

// readEnvelope returns a request's envelope bytes, from the
// Dynkey-Envelope header or from the body, bounded in size (item 6 of
// docs/PROTOCOL.md §4 limits): a declared Content-Length over the limit is
// refused before a byte is read (so no "100 Continue" is sent). A request
// with both a header envelope and a body is refused: which one would be
// authenticated is exactly the ambiguity an attacker wants.
func (m *Middleware) readEnvelope(r *Request) ([]byte, *Problem) {
	if r.Envelope != "" {
		if len(r.Envelope) > wire.MaxEnvelopeHeaderSize {
			return nil, refuse(wire.CodeTooLarge, "the "+wire.EnvelopeHeader+" header exceeds "+
				strconv.Itoa(wire.MaxEnvelopeHeaderSize)+" bytes; send the envelope as the body")
		}
		if hasBody(r) {
			return nil, refuse(wire.CodeBadFormat, "a request carries its envelope in the "+wire.EnvelopeHeader+
				" header or in its body, not both").withHeader("Connection", "close")
		}
		env, err := wire.DecodeHeaderEnvelope(r.Envelope)
		if err != nil {
			return nil, refuse(wire.CodeBadFormat, err.Error())
		}
		return env, nil
	}
	if r.Body == nil || r.ContentLength == 0 {
		return nil, refuse(wire.CodeNotEncrypted, "the request has no dynkey envelope")
	}
	limit := m.o.MaxBodySize + envelopeOverhead
	tooLarge := func() *Problem {
		return refuse(wire.CodeTooLarge, "body exceeds "+strconv.FormatInt(m.o.MaxBodySize, 10)+" bytes").
			withHeader("Connection", "close")
	}
	if r.ContentLength > limit {
		return nil, tooLarge()
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		// The server cannot drain the rest of the body: close the
		// connection.
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, refuse(wire.CodeBadFormat, "the body did not arrive within the read timeout").withHeader("Connection", "close")
		}
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge()
		}
		return nil, refuse(wire.CodeBadFormat, "reading the body failed").withHeader("Connection", "close")
	}
	if int64(len(body)) > limit {
		return nil, tooLarge()
	}
	if len(body) == 0 && r.ContentLength < 0 {
		return nil, refuse(wire.CodeNotEncrypted, "the request has no dynkey envelope")
	}
	if len(body) < 2 || body[0] != 'D' || body[1] != 'K' {
		return nil, refuse(wire.CodeNotEncrypted, "the body is not a dynkey envelope")
	}
	return body, nil
}

// hasBody reports whether r has a non-empty body, reading at most one byte
// when its length is unknown.
func hasBody(r *Request) bool {
	if r.Body == nil || r.ContentLength == 0 {
		return false
	}
	if r.ContentLength > 0 {
		return true
	}
	var one [1]byte
	n, _ := io.ReadFull(r.Body, one[:])
	return n > 0
}

// envelopeOverhead is what an envelope may add to MaxBodySize: header,
// token, keys, rotation fields.
const envelopeOverhead = 64 * 1024

// parseAndCheck does the cheap checks shared by login and requests: format,
// type, suite, server key id and freshness.
func (m *Middleware) parseAndCheck(ctx context.Context, body []byte, typ byte, now time.Time) (_ *wire.Request, _ *serverKey, perr *Problem) {
	req, err := wire.ParseRequest(body)
	if err != nil {
		return nil, nil, refuse(wire.CodeBadFormat, err.Error())
	}
	defer func() { perr.about(req) }() // the log line's suite and key ids
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
		p.Directory, _, _ = m.directory(req.Suite)
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
		p.STime = now.UnixMilli()
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
func (m *Middleware) markSeen(ctx context.Context, scope string, id [wire.MessageIDSize]byte, now time.Time) *Problem {
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
func (m *Middleware) open(ctx context.Context, r *Request, heartbeat bool) (_ *opened, perr *Problem) {
	body, perr := m.readEnvelope(r)
	if perr != nil {
		return nil, perr
	}
	now := m.now()
	req, sk, perr := m.parseAndCheck(ctx, body, wire.TypeRequest, now)
	if perr != nil {
		return nil, perr
	}
	defer func() { perr.about(req) }() // the log line's suite and key ids
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
	aad := wire.RequestAAD(r.Method, r.EscapedPath, r.RawQuery, req.Header)
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
	scope := userScope(sr.Username)
	o.scope = scope
	if inner.Rotating() {
		if !current {
			// The same rotation resent after a transport failure, once
			// it landed: answer with its response if it was kept.
			if p := m.answered(ctx, scope, req.MessageID); p != nil {
				return nil, p
			}
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
	//
	// An id seen before is answered from its recorded outcome (outcome.go):
	// the original sealed response, or "outcome-unknown" while its handler
	// has not finished.
	if perr := m.markSeen(ctx, scope, req.MessageID, now); perr != nil {
		if errors.Is(perr, ErrReplay) {
			return nil, m.lookupOutcome(ctx, scope, req.MessageID)
		}
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
func (m *Middleware) rotateClientKey(ctx context.Context, o *opened, sk *serverKey, sr *sessionRecord, version uint64, now time.Time) *Problem {
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
