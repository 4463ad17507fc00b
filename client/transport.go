package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dynkey/dynkey/crypto"
	"github.com/dynkey/dynkey/policy"
	"github.com/dynkey/dynkey/wire"
)

// sealParams say how to seal one request.
type sealParams struct {
	typ       byte
	key       crypto.PrivateKey // the key that authenticates the request
	clientKey []byte            // login: full public key; request: key id
	token     []byte
	newKey    crypto.PrivateKey // non-nil: this request rotates to newKey
	pending   bool              // key is the session's pending key
	sess      *session
	sentAt    uint64 // the client's estimate of the server clock at sending (ms)
	// messageID, if set, is the id to send instead of a fresh one: a
	// retry reuses the id of the refused request (see do).
	messageID *[wire.MessageIDSize]byte
}

// result is an opened response or a refusal.
type result struct {
	resp        *http.Response
	contentType string
	body        []byte
	prob        *wire.Problem
	at          time.Time
	status      int        // the authenticated status (differs from resp's for 204, 304)
	keyID       wire.KeyID // the client key that authenticated the request
	messageID   [wire.MessageIDSize]byte
}

func (r *result) problem() (*wire.Problem, bool) { return r.prob, r.prob != nil }

// exchange seals one request, sends it and opens the response.
func (c *Client) exchange(tmpl *http.Request, contentType string, body []byte, p *sealParams) (*result, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	if c.srv == nil {
		c.mu.Unlock()
		return nil, errors.New("dynkey/client: no server key")
	}
	srvKey, srvKeyID := c.srv.key, c.srv.keyID
	sTime, elapsed := c.serverNowLocked()
	c.stats.Requests++
	c.mu.Unlock()
	p.sentAt = sTime + elapsed

	h := wire.RequestHeader{Type: p.typ, Suite: c.suite.Name(), ServerKeyID: srvKeyID, ClientKey: p.clientKey,
		Token: p.token, STime: sTime, Elapsed: elapsed}
	if p.messageID != nil {
		h.MessageID = *p.messageID
	} else if _, err := io.ReadFull(c.cfg.Rand, h.MessageID[:]); err != nil {
		return nil, err
	}
	in := wire.Inner{ContentType: contentType, Body: body}
	if p.newKey != nil {
		newPub := p.newKey.Public().Bytes()
		var cur wire.KeyID
		copy(cur[:], p.clientKey)
		proof, _, err := c.suite.Seal(c.cfg.Rand, srvKey, p.newKey, []byte(wire.InfoProof), wire.ProofAAD(h.MessageID, cur, newPub), nil)
		if err != nil {
			return nil, err
		}
		in.NewClientKey, in.TimeOffset, in.HasOffset, in.Proof = newPub, int64(elapsed), true, proof
	}
	header, err := wire.AppendRequestHeader(nil, &h)
	if err != nil {
		return nil, err
	}
	pt, err := wire.AppendInner(nil, &in)
	if err != nil {
		return nil, err
	}
	info := wire.InfoRequest
	if p.typ == wire.TypeLogin {
		info = wire.InfoLogin
	}
	aad := wire.RequestAAD(tmpl.Method, tmpl.URL.EscapedPath(), tmpl.URL.RawQuery, header)
	ct, secret, err := c.suite.Seal(c.cfg.Rand, srvKey, p.key, []byte(info), aad, pt)
	if err != nil {
		return nil, err
	}
	env := append(header, ct...)

	out := tmpl.Clone(tmpl.Context())
	out.Body = io.NopCloser(bytes.NewReader(env))
	out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(env)), nil }
	out.ContentLength = int64(len(env))
	out.Header.Set("Content-Type", wire.MediaType)
	out.Header.Del("Content-Encoding")
	resp, err := c.next.RoundTrip(out)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	rb, err := readAllLimited(resp.Body, c.cfg.MaxBodySize+64*1024)
	if err != nil {
		return nil, err
	}
	res := &result{resp: resp, at: c.cfg.Now(), messageID: h.MessageID}
	switch mediaType(resp.Header.Get("Content-Type")) {
	case wire.MediaType:
		status := resp.StatusCode
		if v := resp.Header.Get(wire.StatusHeader); v != "" {
			if status, err = strconv.Atoi(v); err != nil || wire.StatusCarriesBody(status) || resp.StatusCode != http.StatusOK {
				return nil, fmt.Errorf("%w: bad %s header", ErrResponseNotAuthentic, wire.StatusHeader)
			}
		}
		res.status = status
		res.contentType, res.body, err = wire.OpenResponse(secret, h.MessageID, status, rb)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrResponseNotAuthentic, err)
		}
		return res, nil
	case wire.ProblemMediaType:
		// A refusal from the middleware, sent before any handler ran. It
		// is not authenticated, so the client only ever acts on it in
		// ways an attacker on the path could force anyway (retry, log in
		// again, refetch the signed directory).
		if prob, ok := wire.ParseProblem(rb); ok && resp.StatusCode >= 400 {
			res.prob = prob
			res.status = resp.StatusCode
			res.body = rb
			res.contentType = wire.ProblemMediaType
			return res, nil
		}
	}
	return nil, fmt.Errorf("%w: HTTP %d with content type %q", ErrResponseNotAuthentic, resp.StatusCode, resp.Header.Get("Content-Type"))
}

// send seals and sends one request under the current session, rotating the
// client key if the policy says so, and settles the rotation's outcome.
func (c *Client) send(tmpl *http.Request, contentType string, body []byte, allowRotate bool, messageID *[wire.MessageIDSize]byte) (*result, *session, error) {
	c.mu.Lock()
	sess := c.sess
	if sess == nil {
		c.mu.Unlock()
		return nil, nil, errors.New("dynkey/client: not logged in")
	}
	p := &sealParams{typ: wire.TypeRequest, key: sess.key, token: sess.token, sess: sess, messageID: messageID}
	keyID := sess.keyID
	if sess.pending != nil {
		p.key, p.pending = sess.pending, true
		keyID = wire.ComputeKeyID(c.suite.Name(), sess.pending.Public().Bytes())
	} else if allowRotate && !c.rotating && c.nextKey != nil && !sess.olderKeyInFlight() &&
		(c.forceRot || c.policyLocked(sess) != policy.Keep) {
		p.newKey, c.nextKey = c.nextKey, nil
		c.rotating, c.forceRot = true, false
	}
	p.clientKey = keyID[:]
	sess.messages++
	sess.bytes += uint64(len(body))
	if sess.inFlight == nil {
		sess.inFlight = map[wire.KeyID]int{}
	}
	sess.inFlight[keyID]++
	c.mu.Unlock()

	res, err := c.exchange(tmpl, contentType, body, p)
	if res != nil {
		res.keyID = keyID
	}

	var events []Event
	needKey := false
	c.mu.Lock()
	if sess.inFlight[keyID]--; sess.inFlight[keyID] <= 0 {
		delete(sess.inFlight, keyID)
	}
	defer func() {
		c.mu.Unlock()
		if needKey {
			c.prepareNextKey()
		}
		for _, e := range events {
			if e.Kind == EventClientKeyRotated {
				c.prepareNextKey()
			}
			c.emit(e.Kind, e.Detail)
		}
	}()
	var prob *wire.Problem
	if err == nil {
		prob = res.prob
	}
	if p.pending {
		// Concurrent requests may all have used the pending key: only the
		// first outcome settles it (a later one would install a nil key).
		stillPending := c.sess == sess && sess.pending != nil &&
			wire.ComputeKeyID(c.suite.Name(), sess.pending.Public().Bytes()) == keyID
		switch {
		case !stillPending:
		case err == nil && prob == nil:
			// The rotation whose response was lost did land.
			sess.key, sess.keyID, sess.pending, sess.messages, sess.bytes = sess.pending, keyID, nil, 0, 0
			sess.installedAt = p.sentAt
			c.stats.ClientRotations++
			events = append(events, Event{EventClientKeyRotated, "client key rotation confirmed: " + keyID.String()})
		case prob != nil && prob.Code == wire.CodeClientKeyUnknown:
			// The rotation never landed: keep the old key, and prepare a
			// fresh next key (the pending one took the place of nextKey;
			// without a new one the client would never rotate again).
			sess.pending = nil
			needKey = true
		}
	}
	if p.newKey != nil {
		c.rotating = false
		switch {
		case err != nil:
			if c.sess == sess {
				sess.pending = p.newKey // outcome unknown: try it first next time
			}
		case prob == nil:
			if c.sess == sess {
				sess.key = p.newKey
				sess.keyID = wire.ComputeKeyID(c.suite.Name(), p.newKey.Public().Bytes())
				sess.installedAt, sess.messages, sess.bytes = p.sentAt, 0, 0
				c.stats.ClientRotations++
				events = append(events, Event{EventClientKeyRotated, "client key rotated to " + sess.keyID.String()})
			}
		default:
			if c.nextKey == nil {
				c.nextKey = p.newKey // never installed; use it next time
			}
			if prob.Code == wire.CodeRotationRefused {
				events = append(events, Event{EventRotationAbandoned, prob.Detail})
			}
		}
	}
	return res, sess, err
}

func (c *Client) policyLocked(s *session) policy.Decision {
	sTime, elapsed := c.serverNowLocked()
	growth := time.Duration(int64(sTime+elapsed)-int64(s.installedAt)) * time.Millisecond
	return c.cfg.Policy.Decide(policy.Facts{Now: c.cfg.Now(), Age: growth, OffsetGrowth: growth,
		Messages: s.messages, Bytes: s.bytes, KeyID: s.keyID[:]})
}

// maxRecoveries bounds the recoveries of one request. Each kind of refusal
// is recovered from at most once per request, but several kinds can come one
// after the other: after a night asleep a laptop's monotonic clock has not
// advanced (stale), the server key it holds may be destroyed
// (server-key-unknown) and its token expired (token-expired).
const maxRecoveries = 3

// do sends a request with the protocol's recovery: after a refusal that
// says what to do (refetch the directory, log in again, resync the clock,
// retry), it does that and retries with a fresh envelope, at most once per
// kind of refusal. A genuine refusal always comes before any handler ran;
// a forged one may not, so the retry keeps the message id (below) and the
// server's replay check keeps a handler from running twice.
func (c *Client) do(tmpl *http.Request, contentType string, body []byte) (*result, error) {
	ctx := tmpl.Context()
	c.mu.Lock()
	sess := c.sess
	c.mu.Unlock()
	if sess == nil {
		if err := c.login(ctx, nil); err != nil {
			return nil, err
		}
	}
	res, sess, err := c.send(tmpl, contentType, body, mayCarryRotation(tmpl), nil)
	if err != nil {
		return nil, err
	}
	var recovered []wire.Code
	for len(recovered) < maxRecoveries {
		prob, ok := res.problem()
		if !ok || slices.Contains(recovered, prob.Code) {
			return res, nil
		}
		recovered = append(recovered, prob.Code)
		if retry, err := c.recover(ctx, prob, sess, res.keyID); err != nil || !retry {
			if err != nil {
				c.cfg.Logger.Warn("dynkey: recovery failed", "code", prob.Code, "err", err)
			}
			return res, nil
		}
		c.mu.Lock()
		c.stats.Recoveries++
		c.mu.Unlock()
		c.emit(EventRecovered, "recovered from "+string(prob.Code)+"; retrying")
		// Refusals are not authenticated: one may be forged by a man in
		// the middle after the handler ran. The retry therefore reuses the
		// refused request's message id, which the server records only
		// after the checks that give the refusals retried here (docs/
		// PROTOCOL.md §11): if the request did run, the retry is refused as
		// a replay instead of running it twice. A refused rotation is the
		// exception: the server recorded the id before refusing it; that is
		// why rotations ride only on requests that are safe to repeat
		// (mayCarryRotation).
		var id *[wire.MessageIDSize]byte
		if prob.Code != wire.CodeRotationRefused {
			id = &res.messageID
		}
		if res, sess, err = c.send(tmpl, contentType, body, false, id); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// mayCarryRotation reports whether a request may carry a client key
// rotation: heartbeats and idempotent methods (RFC 9110 §9.2.2). A refused
// rotation is retried with a fresh message id, so a refusal forged after the
// handler ran would repeat the request; for these requests that is harmless.
func mayCarryRotation(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete:
		return true
	}
	return r.URL.Path == wire.PathHeartbeat || strings.HasSuffix(r.URL.Path, wire.PathHeartbeat)
}

// recover acts on a refusal of a request authenticated by the client key
// used, and reports whether a retry can succeed.
func (c *Client) recover(ctx context.Context, p *wire.Problem, sess *session, used wire.KeyID) (bool, error) {
	switch p.Code {
	case wire.CodeServerKeyUnknown, wire.CodeStale:
		return true, c.recoverFrom(ctx, p)
	case wire.CodeTokenExpired, wire.CodeTokenInvalid:
		return true, c.login(ctx, sess)
	case wire.CodeClientKeyUnknown:
		// If the session's key changed since the request was sealed (the
		// refused key was a pending key now dropped, or a key two
		// rotations old), retry with the current one. If the refused key
		// is still the one the client would use, retrying cannot help:
		// the server lost it, so log in again.
		c.mu.Lock()
		keyChanged := c.sess == sess && sess.keyID != used &&
			(sess.pending == nil || wire.ComputeKeyID(c.suite.Name(), sess.pending.Public().Bytes()) != used)
		c.mu.Unlock()
		if keyChanged {
			return true, nil
		}
		return true, c.login(ctx, sess)
	case wire.CodeRotationRefused:
		return true, nil
	case wire.CodeClientKeyExpired:
		// The key is past the server's hard limit: rotate it on a
		// heartbeat (safe to repeat), then retry the request with its
		// message id, which the server did not record.
		c.mu.Lock()
		rotated := c.sess == sess && sess.keyID != used
		c.mu.Unlock()
		if rotated {
			return true, nil
		}
		return true, c.rotateOnHeartbeat(ctx)
	}
	// Not "replay": the message was delivered before (its handler may have
	// run, and a retry with a new id would run it again).
	return false, nil
}

// recoverFrom updates the server key or the clock after "server-key-unknown"
// or "stale". A directory carried by the problem is verified against the
// trusted identity key like any other; without one, the directory is
// refetched at most once every 10 seconds. After "stale" the directory is
// refetched for its signed s_time (the problem's own is not trusted).
func (c *Client) recoverFrom(ctx context.Context, p *wire.Problem) error {
	now := c.cfg.Now()
	if p.Code == wire.CodeStale {
		// The problem's s_time is not authenticated: adopting it would let
		// a man in the middle date the client's messages in the future,
		// keep them and deliver them later, fresh. Resync from the signed
		// directory instead: nobody else can sign an s_time ahead of the
		// server's clock (a replayed old one only dates messages in the
		// past, where they are refused).
		return c.fetchDirectory(ctx)
	}
	if p.Directory != nil {
		c.mu.Lock()
		changed, err := c.acceptDirectoryLocked(p.Directory, now, false)
		c.mu.Unlock()
		if err == nil && changed {
			c.emit(EventServerKeyChanged, "server key changed (from a refusal's directory)")
			return nil
		}
	}
	c.mu.Lock()
	recent := !c.lastDir.IsZero() && now.Sub(c.lastDir) < 10*time.Second
	c.mu.Unlock()
	if recent {
		return errors.New("dynkey/client: key directory fetched less than 10s ago")
	}
	return c.fetchDirectory(ctx)
}

// RoundTrip implements http.RoundTripper: it seals req, sends it, and
// returns the opened response. A refusal by the middleware comes back as
// its problem response (application/problem+json, 4xx/5xx) after one
// recovery attempt; a response that fails authentication is an error.
func (c *Client) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		b, err := readAllLimited(req.Body, c.cfg.MaxBodySize)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		body = b
	}
	res, err := c.do(req, req.Header.Get("Content-Type"), body)
	if err != nil {
		return nil, err
	}
	out := &http.Response{
		Status:     fmt.Sprintf("%d %s", res.status, http.StatusText(res.status)),
		StatusCode: res.status,
		Proto:      res.resp.Proto, ProtoMajor: res.resp.ProtoMajor, ProtoMinor: res.resp.ProtoMinor,
		Header:        res.resp.Header.Clone(),
		Body:          io.NopCloser(bytes.NewReader(res.body)),
		ContentLength: int64(len(res.body)),
		Request:       req,
	}
	out.Header.Del("Content-Length")
	out.Header.Del(wire.StatusHeader)
	if res.contentType != "" {
		out.Header.Set("Content-Type", res.contentType)
	} else {
		out.Header.Del("Content-Type")
	}
	return out, nil
}

// Heartbeat sends one heartbeat: it refreshes s_time, adopts a new server
// key announced in the signed directory, and takes the server's hint to
// rotate the client key. The background loop calls it every
// HeartbeatInterval.
func (c *Client) Heartbeat(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint(wire.PathHeartbeat), nil)
	if err != nil {
		return err
	}
	res, err := c.do(req, "", nil)
	if err != nil {
		return err
	}
	return c.heartbeatResult(res)
}

// rotateOnHeartbeat rotates the client key now, on a heartbeat without the
// recovery loop (its only possible recovery would be this very rotation).
// It waits for the next key only if it was not generated ahead of time.
func (c *Client) rotateOnHeartbeat(ctx context.Context) error {
	c.mu.Lock()
	need := c.nextKey == nil
	c.mu.Unlock()
	if need {
		k, err := c.suite.GenerateKey(c.cfg.Rand)
		if err != nil {
			return err
		}
		c.mu.Lock()
		if c.nextKey == nil {
			c.nextKey = k
		}
		c.mu.Unlock()
	}
	c.mu.Lock()
	c.forceRot = true
	before := c.stats.ClientRotations
	c.mu.Unlock()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint(wire.PathHeartbeat), nil)
	if err != nil {
		return err
	}
	res, _, err := c.send(req, "", nil, true, nil)
	if err != nil {
		return err
	}
	if err := c.heartbeatResult(res); err != nil {
		return err
	}
	if c.Stats().ClientRotations == before {
		return errors.New("dynkey/client: the key rotation did not happen (another one in flight?)")
	}
	return nil
}

// heartbeatResult adopts what a heartbeat response says.
func (c *Client) heartbeatResult(res *result) error {
	if p, ok := res.problem(); ok {
		return p
	}
	var hb wire.HeartbeatResponse
	if err := json.Unmarshal(res.body, &hb); err != nil || hb.Directory == nil {
		return fmt.Errorf("%w: heartbeat body", ErrResponseNotAuthentic)
	}
	c.mu.Lock()
	changed, err := c.acceptDirectoryLocked(hb.Directory, res.at, false)
	if err == nil {
		c.setServerTimeLocked(hb.STime, res.at)
		if hb.RotateClientKey {
			c.forceRot = true
		}
	}
	c.mu.Unlock()
	if err != nil {
		return err
	}
	c.emit(EventHeartbeat, fmt.Sprintf("s_time=%d rotate_hint=%v", hb.STime, hb.RotateClientKey))
	if changed {
		id, _ := c.ServerKeyID()
		c.emit(EventServerKeyChanged, "server key changed to "+id.String()+" (announced in a heartbeat)")
	}
	return nil
}

func (c *Client) heartbeatLoop() {
	defer close(c.done)
	t := time.NewTicker(c.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			if c.stopCtx.Err() != nil {
				return // closed while the ticker fired: no new heartbeat
			}
			c.mu.Lock()
			loggedIn := c.sess != nil
			c.mu.Unlock()
			if !loggedIn {
				continue
			}
			ctx, cancel := context.WithTimeout(c.stopCtx, c.cfg.HeartbeatInterval+10*time.Second)
			if err := c.Heartbeat(ctx); err != nil && c.stopCtx.Err() == nil {
				c.mu.Lock()
				c.stats.HeartbeatFailures++
				c.mu.Unlock()
				c.cfg.Logger.Warn("dynkey: heartbeat failed", "err", err)
			}
			cancel()
		}
	}
}
