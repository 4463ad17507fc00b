package middleware

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/dynkey/dynkey/auth"
	"github.com/dynkey/dynkey/policy"
	"github.com/dynkey/dynkey/wire"
)

// serveKeys serves the directory of the configured suite, or with
// ?suite=NAME that of another suite whose sessions are still served.
func (m *Middleware) serveKeys(r *Request) (*Response, error) {
	q, _ := url.ParseQuery(r.RawQuery)
	suite := q.Get("suite")
	if suite == "" {
		suite = m.suite.Name()
	}
	sd, ok, err := m.directory(suite)
	if err != nil {
		return nil, unavailable(err)
	}
	if !ok {
		return nil, refuse(wire.CodeUnsupportedSuite, fmt.Sprintf("this server uses suite %q", m.suite.Name()))
	}
	b, err := json.Marshal(sd)
	if err != nil {
		return nil, unavailable(err)
	}
	// Never cached: a cache that served an old directory after a rotation
	// would put a retired key back (docs/PROTOCOL.md §6).
	return &Response{Status: 200, Header: Header{{"Content-Type", "application/json"}, {"Cache-Control", "no-store"}}, Body: b}, nil
}

// serveLogin is patent steps a1–a3: the login is sealed to the server key
// and authenticated by the client's first key; the password is checked by
// the Authenticator, at most MaxConcurrentLogins at once, with failed
// attempts throttled by LoginLimiter (client address and canonical
// username; hole 8);
// the response carries the token, sealed so only this client reads it.
func (m *Middleware) serveLogin(ctx context.Context, r *Request) (_ *Response, err error) {
	start := m.startTimer()
	body, perr := m.readEnvelope(r)
	if perr != nil {
		return nil, perr
	}
	now := m.now()
	req, sk, perr := m.parseAndCheck(ctx, body, wire.TypeLogin, now)
	if perr != nil {
		return nil, perr
	}
	defer func() { // the log line's suite and key ids
		if p, ok := err.(*Problem); ok {
			p.about(req)
		}
	}()
	cpk, err := m.suite.ParsePublicKey(req.ClientKey)
	if err != nil {
		return nil, refuse(wire.CodeBadFormat, "malformed client public key")
	}
	aad := wire.RequestAAD(r.Method, r.EscapedPath, r.RawQuery, req.Header)
	pt, secret, err := m.openMessage(sk, cpk, wire.InfoLogin, aad, req.Ciphertext)
	if err != nil {
		return nil, refuse(wire.CodeDecryptFailed, "the envelope did not authenticate")
	}
	inner, err := wire.ParseInner(pt)
	if err != nil || inner.Rotating() {
		return nil, refuse(wire.CodeBadFormat, "malformed login")
	}
	var lr wire.LoginRequest
	if err := json.Unmarshal(inner.Body, &lr); err != nil || lr.Username == "" || len(lr.Username) > maxUsername {
		return nil, refuse(wire.CodeBadFormat, "login body must be {\"username\",\"password\"}")
	}
	// A slot for the password check, before the id is recorded: a busy
	// refusal leaves the id unused (docs/PROTOCOL.md §9).
	release, perr := m.acquireLoginSlot(ctx)
	if perr != nil {
		return nil, perr
	}
	defer release()
	// Recorded once the login authenticated under its client key, before
	// the password check: a replayed login costs no password hash.
	if perr := m.markSeen(ctx, "login-"+wire.ComputeKeyID(m.suite.Name(), req.ClientKey).String(), req.MessageID, now); perr != nil {
		return nil, perr
	}
	if m.o.Observer != nil {
		m.o.Observer.Opened(m.suite.Name(), timeSince(start))
	}
	attempt := LoginAttempt{Address: m.clientAddress(r), User: auth.CanonicalUsername(m.o.Authenticator, lr.Username), At: now}
	resp, perr := m.login(ctx, &lr, attempt, req.ClientKey, now)
	if perr != nil {
		return nil, perr
	}
	b, _ := json.Marshal(resp)
	if m.o.Observer != nil {
		m.o.Observer.LoggedIn(m.suite.Name())
	}
	return m.seal(secret, req.MessageID, false, m.suite.Name(), 200, "application/json", b)
}

// acquireLoginSlot takes one of the MaxConcurrentLogins password-check
// slots, waiting at most LoginQueueWait, or refuses with "login-busy".
func (m *Middleware) acquireLoginSlot(ctx context.Context) (release func(), perr *Problem) {
	if m.loginSlots == nil {
		return func() {}, nil
	}
	release = func() { <-m.loginSlots }
	select {
	case m.loginSlots <- struct{}{}:
		return release, nil
	default:
	}
	if m.o.LoginQueueWait > 0 {
		t := time.NewTimer(m.o.LoginQueueWait)
		defer t.Stop()
		select {
		case m.loginSlots <- struct{}{}:
			return release, nil
		case <-t.C:
		case <-ctx.Done():
		}
	}
	return nil, refuse(wire.CodeLoginBusy, "too many logins in progress; retry after Retry-After").withHeader("Retry-After", retryAfter)
}

func (m *Middleware) login(ctx context.Context, lr *wire.LoginRequest, attempt LoginAttempt, clientKey []byte, now time.Time) (*wire.LoginResponse, *Problem) {
	if m.o.Authenticator == nil {
		return nil, refuse(wire.CodeLoginFailed, "login is not configured")
	}
	ok, err := m.o.LoginLimiter.Allow(ctx, attempt)
	if err != nil {
		return nil, unavailable(err)
	}
	if !ok {
		return nil, refuse(wire.CodeLoginThrottled, "too many failed logins; wait and retry")
	}
	if err := m.o.Authenticator.Authenticate(ctx, lr.Username, lr.Password); err != nil {
		if !errors.Is(err, auth.ErrBadCredentials) {
			m.o.LoginLimiter.Done(ctx, attempt, LoginNotChecked) // not the user's fault
			return nil, unavailable(err)
		}
		return nil, refuse(wire.CodeLoginFailed, "bad username or password") // counted already
	}
	m.o.LoginLimiter.Done(ctx, attempt, LoginSucceeded)

	nowMs := unixMs(now)
	expires, ok := addMs(nowMs, durMs(m.o.TokenTTL))
	if !ok {
		return nil, unavailable(errors.New("TokenTTL overflows the clock"))
	}
	c := &claims{Username: lr.Username, STime: nowMs, Issued: nowMs, Expires: expires}
	if _, err := io.ReadFull(m.o.Rand, c.TokenID[:]); err != nil {
		return nil, unavailable(err)
	}
	if _, err := io.ReadFull(m.o.Rand, c.SessionID[:]); err != nil {
		return nil, unavailable(err)
	}
	sr := sessionRecord{Username: lr.Username, Suite: m.suite.Name(), ClientKey: clientKey,
		KeyInstalled: nowMs, Expires: c.Expires}
	if err := m.storeSession(ctx, c.SessionID, 0, &sr); err != nil {
		return nil, unavailable(err)
	}
	tok, err := m.mintToken(c)
	if err != nil {
		return nil, unavailable(err)
	}
	dir, _, err := m.directory(m.suite.Name())
	if err != nil {
		return nil, unavailable(err)
	}
	return &wire.LoginResponse{
		Token:        tok,
		TokenExpires: c.Expires,
		ClientKeyID:  wire.ComputeKeyID(m.suite.Name(), clientKey).String(),
		STime:        now.UnixMilli(),
		Directory:    dir,
	}, nil
}

// serveHeartbeat answers with the server's time and the signed key
// directory, inside a response only this client can open: a new server key
// reaches the client authenticated twice, by the identity signature and by
// the response AEAD keyed from the request to the key the client trusts.
func (m *Middleware) serveHeartbeat(ctx context.Context, r *Request) (*Response, error) {
	start := m.startTimer()
	o, perr := m.open(ctx, r, true)
	if perr != nil {
		return nil, perr
	}
	if o.session.Rotated {
		m.observeRotation(SideClient, o.session.Suite, "heartbeat")
	}
	if m.o.Observer != nil {
		m.o.Observer.Opened(o.session.Suite, timeSince(start))
	}
	dir, ok, err := m.directory(o.session.Suite)
	if err != nil || !ok {
		return nil, unavailable(fmt.Errorf("no directory for suite %s: %v", o.session.Suite, err))
	}
	now := m.now()
	hb := wire.HeartbeatResponse{STime: now.UnixMilli(), Directory: dir}
	if m.o.ClientPolicy != nil && !o.session.Rotated {
		hb.RotateClientKey = m.clientKeyDecision(o.sr.KeyInstalled, o.session.ClientKeyID, now) != policy.Keep
	}
	b, _ := json.Marshal(hb)
	resp, err := m.seal(o.secret, o.req.MessageID, false, o.session.Suite, 200, "application/json", b)
	m.recordOutcome(ctx, o.scope, o.req.MessageID, resp) // a resent heartbeat gets this answer
	return resp, err
}
