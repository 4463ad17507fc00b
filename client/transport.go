package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
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
}

// result is an opened response or a refusal.
type result struct {
	resp        *http.Response
	contentType string
	body        []byte
	prob        *wire.Problem
	at          time.Time
	status      int // the authenticated status (differs from resp's for 204, 304)
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
	if _, err := io.ReadFull(c.cfg.Rand, h.MessageID[:]); err != nil {
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
	res := &result{resp: resp, at: c.cfg.Now()}
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
func (c *Client) send(tmpl *http.Request, contentType string, body []byte, allowRotate bool) (*result, *session, error) {
	c.mu.Lock()
	sess := c.sess
	if sess == nil {
		c.mu.Unlock()
		return nil, nil, errors.New("dynkey/client: not logged in")
	}
	p := &sealParams{typ: wire.TypeRequest, key: sess.key, token: sess.token, sess: sess}
	keyID := sess.keyID
	if sess.pending != nil {
		p.key, p.pending = sess.pending, true
		keyID = wire.ComputeKeyID(c.suite.Name(), sess.pending.Public().Bytes())
	} else if allowRotate && !c.rotating && c.nextKey != nil && (c.forceRot || c.policyLocked(sess) == policy.Rotate) {
		p.newKey, c.nextKey = c.nextKey, nil
		c.rotating, c.forceRot = true, false
	}
	p.clientKey = keyID[:]
	sess.messages++
	c.mu.Unlock()

	res, err := c.exchange(tmpl, contentType, body, p)

	var events []Event
	c.mu.Lock()
	defer func() {
		c.mu.Unlock()
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
		switch {
		case err == nil && prob == nil && c.sess == sess:
			// The rotation whose response was lost did land.
			sess.key, sess.keyID, sess.pending, sess.messages = sess.pending, keyID, nil, 0
			sess.installedAt = p.sentAt
			c.stats.ClientRotations++
			events = append(events, Event{EventClientKeyRotated, "client key rotation confirmed: " + keyID.String()})
		case prob != nil && prob.Code == wire.CodeClientKeyUnknown && c.sess == sess:
			sess.pending = nil // the rotation never landed: keep the old key
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
				sess.installedAt, sess.messages = p.sentAt, 0
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
	return c.cfg.Policy.Decide(policy.Facts{Now: c.cfg.Now(), Age: growth, OffsetGrowth: growth, Messages: s.messages})
}

// do sends a request with the protocol's recovery: after a refusal that
// says what to do (refetch the directory, log in again, resync the clock,
// retry), it does that once and retries once with a fresh envelope.
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
	res, sess, err := c.send(tmpl, contentType, body, true)
	if err != nil {
		return nil, err
	}
	prob, ok := res.problem()
	if !ok {
		return res, nil
	}
	if retry, err := c.recover(ctx, prob, sess); err != nil || !retry {
		if err != nil {
			c.cfg.Logger.Warn("dynkey: recovery failed", "code", prob.Code, "err", err)
		}
		return res, nil
	}
	c.mu.Lock()
	c.stats.Recoveries++
	c.mu.Unlock()
	c.emit(EventRecovered, "recovered from "+string(prob.Code)+"; retrying once")
	res, _, err = c.send(tmpl, contentType, body, false)
	return res, err
}

// recover acts on a refusal and reports whether a retry can succeed.
func (c *Client) recover(ctx context.Context, p *wire.Problem, sess *session) (bool, error) {
	switch p.Code {
	case wire.CodeServerKeyUnknown, wire.CodeStale:
		return true, c.recoverFrom(ctx, p)
	case wire.CodeTokenExpired, wire.CodeTokenInvalid:
		return true, c.login(ctx, sess)
	case wire.CodeClientKeyUnknown:
		c.mu.Lock()
		pendingCleared := c.sess == sess && sess.pending == nil
		c.mu.Unlock()
		if pendingCleared {
			return true, nil // retry once with the old key, maybe it was the pending one that failed
		}
		return true, c.login(ctx, sess)
	case wire.CodeReplay, wire.CodeRotationRefused:
		return true, nil
	}
	return false, nil
}

// recoverFrom updates the server key or the clock after "server-key-unknown"
// or "stale". A directory carried by the problem is verified against the
// trusted identity key like any other; without one, the directory is
// refetched at most once every 10 seconds.
func (c *Client) recoverFrom(ctx context.Context, p *wire.Problem) error {
	now := c.cfg.Now()
	if p.Code == wire.CodeStale {
		c.mu.Lock()
		c.setServerTimeLocked(p.STime, now)
		c.mu.Unlock()
		return nil
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
			c.mu.Lock()
			loggedIn := c.sess != nil
			c.mu.Unlock()
			if !loggedIn {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), c.cfg.HeartbeatInterval+10*time.Second)
			if err := c.Heartbeat(ctx); err != nil {
				c.mu.Lock()
				c.stats.HeartbeatFailures++
				c.mu.Unlock()
				c.cfg.Logger.Warn("dynkey: heartbeat failed", "err", err)
			}
			cancel()
		}
	}
}
