package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
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
// rotate, retry), it does that and retries with a fresh envelope, at most
// once per kind of refusal. rotate says whether the request may carry a
// client key rotation (mayCarryRotation); a retry never carries one.
//
// One request has one message id: the first envelope and every retry carry
// the same id, whatever the refusal. Refusals are not authenticated, and a
// man in the middle (or a TLS-terminating proxy) can let a request through,
// let its handler run and answer with a forged refusal of any code. The
// server records a message id only once the message passed every check that
// can refuse it — the public-key open and a rotation's compare-and-swap
// included (docs/PROTOCOL.md §11) — so after a genuine refusal the id is
// unused and the retry runs, while after a forged one the retry is refused
// as a replay and the handler does not run twice. A request that carried a
// rotation is retried without it, under the same id.
func (c *Client) do(tmpl *http.Request, contentType string, body []byte, rotate bool) (*result, error) {
	ctx := tmpl.Context()
	c.mu.Lock()
	sess := c.sess
	c.mu.Unlock()
	if sess == nil {
		if err := c.login(ctx, nil); err != nil {
			return nil, err
		}
	}
	id, err := c.newMessageID()
	if err != nil {
		return nil, err
	}
	// Every envelope of this request has its own secret; the server may
	// answer a later one with the response it sealed for an earlier one
	// (its stored response, docs/PROTOCOL.md §11).
	var secrets [][]byte
	res, sess, err := c.send(tmpl, contentType, body, rotate, id, &secrets)
	if err != nil {
		return nil, err
	}
	var recovered []wire.Code
	for len(recovered) < maxRecoveries {
		prob, ok := res.problem()
		if ok && prob.Code == wire.CodeOutcomeUnknown {
			return nil, fmt.Errorf("%w (message id %x): %s", ErrOutcomeUnknown, id, prob.Detail)
		}
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
		if res, sess, err = c.send(tmpl, contentType, body, false, id, &secrets); err != nil {
			return nil, err
		}
	}
	if prob, ok := res.problem(); ok && prob.Code == wire.CodeOutcomeUnknown {
		return nil, fmt.Errorf("%w (message id %x): %s", ErrOutcomeUnknown, id, prob.Detail)
	}
	return res, nil
}

// mayCarryRotation reports whether a request sent through RoundTrip may
// carry a client key rotation: only the idempotent methods GET, PUT, DELETE
// and OPTIONS (RFC 9110 §9.2.2), besides the heartbeat (Heartbeat passes
// its own flag; a POST to the heartbeat path through RoundTrip is an
// ordinary POST). A retry keeps the message id, so a forged refusal cannot
// run a handler twice even here; keeping rotations off POST and PATCH is a
// second line: a request that carried one is always safe to repeat. HEAD
// never gets this far (RoundTrip refuses it), and CONNECT and TRACE are not
// requests a dynkey handler serves.
func mayCarryRotation(method string) bool {
	switch method {
	case http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodOptions:
		return true
	}
	return false
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
		// Retry without the rotation (do never rotates on a retry), under
		// the same message id: the server records it only after the
		// rotation's compare-and-swap, so a genuine refusal left it unused.
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
