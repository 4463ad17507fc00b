package client

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/dynkey/dynkey/wire"
)

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
