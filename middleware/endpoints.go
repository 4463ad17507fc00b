package middleware

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/dynkey/dynkey/auth"
	"github.com/dynkey/dynkey/policy"
	"github.com/dynkey/dynkey/wire"
)

// Endpoints serves the key directory (GET /.well-known/dynkey/keys), login
// (POST /dynkey/login) and heartbeat (POST /dynkey/heartbeat). Mount it at
// the root of the URL space (or route those three paths to it, for every
// method). Another method on one of them gets the "method-not-allowed"
// problem with an Allow header.
func (m *Middleware) Endpoints() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case wire.PathKeys:
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				w.Header().Set("Allow", "GET, HEAD")
				m.writeProblem(w, refuse(wire.CodeMethod, "use GET"))
				return
			}
			m.serveKeys(w, r)
		case wire.PathLogin:
			if r.Method != http.MethodPost {
				w.Header().Set("Allow", "POST")
				m.writeProblem(w, refuse(wire.CodeMethod, "use POST"))
				return
			}
			m.serveLogin(w, r)
		case wire.PathHeartbeat:
			if r.Method != http.MethodPost {
				w.Header().Set("Allow", "POST")
				m.writeProblem(w, refuse(wire.CodeMethod, "use POST"))
				return
			}
			m.serveHeartbeat(w, r)
		default:
			http.NotFound(w, r)
		}
	})
}

// serveKeys serves the directory of the configured suite, or with
// ?suite=NAME that of another suite whose sessions are still served.
func (m *Middleware) serveKeys(w http.ResponseWriter, r *http.Request) {
	suite := r.URL.Query().Get("suite")
	if suite == "" {
		suite = m.suite.Name()
	}
	sd, ok, err := m.directory(suite)
	if err != nil {
		m.writeProblem(w, unavailable(err))
		return
	}
	if !ok {
		m.writeProblem(w, refuse(wire.CodeUnsupportedSuite, fmt.Sprintf("this server uses suite %q", m.suite.Name())))
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, "application/json", sd)
}

// serveLogin is patent steps a1–a3: the login is sealed to the server key
// and authenticated by the client's first key; the password is checked by
// the Authenticator, at most MaxConcurrentLogins at once, with failed
// attempts throttled by LoginLimiter (client address and canonical
// username; hole 8);
// the response carries the token, sealed so only this client reads it.
func (m *Middleware) serveLogin(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	body, perr := m.readEnvelope(w, r)
	if perr != nil {
		m.writeProblem(w, perr)
		return
	}
	now := m.now()
	req, sk, perr := m.parseAndCheck(ctx, body, wire.TypeLogin, now)
	if perr != nil {
		m.writeProblem(w, perr)
		return
	}
	cpk, err := m.suite.ParsePublicKey(req.ClientKey)
	if err != nil {
		m.writeProblem(w, refuse(wire.CodeBadFormat, "malformed client public key"))
		return
	}
	aad := wire.RequestAAD(r.Method, r.URL.EscapedPath(), r.URL.RawQuery, req.Header)
	pt, secret, err := m.openMessage(sk, cpk, wire.InfoLogin, aad, req.Ciphertext)
	if err != nil {
		m.writeProblem(w, refuse(wire.CodeDecryptFailed, "the envelope did not authenticate"))
		return
	}
	inner, err := wire.ParseInner(pt)
	if err != nil || inner.Rotating() {
		m.writeProblem(w, refuse(wire.CodeBadFormat, "malformed login"))
		return
	}
	var lr wire.LoginRequest
	if err := json.Unmarshal(inner.Body, &lr); err != nil || lr.Username == "" || len(lr.Username) > maxUsername {
		m.writeProblem(w, refuse(wire.CodeBadFormat, "login body must be {\"username\",\"password\"}"))
		return
	}
	// A slot for the password check, before the id is recorded: a busy
	// refusal leaves the id unused (docs/PROTOCOL.md §9).
	release, perr := m.acquireLoginSlot(ctx)
	if perr != nil {
		m.writeProblem(w, perr)
		return
	}
	defer release()
	// Recorded once the login authenticated under its client key, before
	// the password check: a replayed login costs no password hash.
	if perr := m.markSeen(ctx, "login-"+wire.ComputeKeyID(m.suite.Name(), req.ClientKey).String(), req.MessageID, now); perr != nil {
		m.writeProblem(w, perr)
		return
	}
	x := &Exchange{m: m, secret: secret, messageID: req.MessageID}
	attempt := LoginAttempt{Address: m.clientAddress(r), User: auth.CanonicalUsername(m.o.Authenticator, lr.Username), At: now}
	resp, perr := m.login(ctx, &lr, attempt, req.ClientKey, now)
	if perr != nil {
		m.writeProblem(w, perr)
		return
	}
	b, _ := json.Marshal(resp)
	w.Header().Set("Content-Type", "application/json")
	x.WriteResponse(w, http.StatusOK, b)
}

// acquireLoginSlot takes one of the MaxConcurrentLogins password-check
// slots, waiting at most LoginQueueWait, or refuses with "login-busy".
func (m *Middleware) acquireLoginSlot(ctx context.Context) (release func(), perr *problemError) {
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
	return nil, refuse(wire.CodeLoginBusy, "too many logins in progress; retry after Retry-After")
}

func (m *Middleware) login(ctx context.Context, lr *wire.LoginRequest, attempt LoginAttempt, clientKey []byte, now time.Time) (*wire.LoginResponse, *problemError) {
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
func (m *Middleware) serveHeartbeat(w http.ResponseWriter, r *http.Request) {
	o, perr := m.open(w, r, true)
	if perr != nil {
		m.writeProblem(w, perr)
		return
	}
	x := &Exchange{m: m, secret: o.secret, messageID: o.req.MessageID}
	dir, ok, err := m.directory(o.session.Suite)
	if err != nil || !ok {
		m.writeProblem(w, unavailable(fmt.Errorf("no directory for suite %s: %v", o.session.Suite, err)))
		return
	}
	now := m.now()
	hb := wire.HeartbeatResponse{STime: now.UnixMilli(), Directory: dir}
	if m.o.ClientPolicy != nil && !o.session.Rotated {
		hb.RotateClientKey = m.clientKeyDecision(o.sr.KeyInstalled, o.session.ClientKeyID, now) != policy.Keep
	}
	b, _ := json.Marshal(hb)
	w.Header().Set("Content-Type", "application/json")
	x.WriteResponse(w, http.StatusOK, b)
}

// writeProblem sends a refusal as RFC 9457 problem details.
func (m *Middleware) writeProblem(w http.ResponseWriter, perr *problemError) {
	if perr.err != nil {
		m.log.Warn("dynkey: request refused", "code", perr.p.Code, "err", perr.err)
	}
	w.Header().Set("Cache-Control", "no-store")
	if perr.p.Code == wire.CodeLoginBusy {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, perr.p.Status, wire.ProblemMediaType, perr.p)
}

func writeJSON(w http.ResponseWriter, status int, ct string, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
