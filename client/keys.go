package client

import (
	"context"
	"time"

	"github.com/dynkey/dynkey/crypto"
	"github.com/dynkey/dynkey/policy"
)

// takeNextKey returns the key generated ahead of time, if any.
func (c *Client) takeNextKey() crypto.PrivateKey {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := c.nextKey
	c.nextKey = nil
	return k
}

// prepareNextKey generates the next client key in the background, so a
// rotation rarely waits for key generation (slow for RSA).
func (c *Client) prepareNextKey() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.prepareNextKeyLocked()
}

// prepareNextKeyLocked starts generating the next key unless one is ready
// or being generated, and returns a channel closed once no generation is
// under way any more (with or without a key: generation may fail, or the
// client close). Caller holds c.mu.
func (c *Client) prepareNextKeyLocked() <-chan struct{} {
	if c.genning {
		return c.keyReady
	}
	done := make(chan struct{})
	if c.nextKey != nil || c.closed {
		close(done)
		return done
	}
	c.genning, c.keyReady = true, done
	go func() {
		k, err := c.suite.GenerateKey(c.cfg.Rand)
		c.mu.Lock()
		defer c.mu.Unlock()
		c.genning, c.keyReady = false, nil
		defer close(done)
		if err != nil {
			c.cfg.Logger.Warn("dynkey: generating the next client key", "err", err)
			return
		}
		if !c.closed {
			c.nextKey = k
		}
	}()
	return done
}

// rotationDueLocked reports whether a request that may carry a rotation
// should carry one now: the server asked for it (RotateNow, a heartbeat's
// hint) or the policy says so, no rotation is in flight or pending, and no
// request under an older key is in flight. It ignores whether the next key
// is ready yet (see awaitNextKey). Caller holds c.mu.
func (c *Client) rotationDueLocked(sess *session) bool {
	return sess != nil && sess.pending == nil && !c.rotating && !sess.olderKeyInFlight() &&
		(c.forceRot || c.policyLocked(sess) != policy.Keep)
}

// awaitNextKey waits, if a rotation is due and its key is not generated
// yet, until the key generation started ahead of time has finished (or
// starts one). Without it, a request sent just after login, or just after
// the previous rotation, would go out without the rotation its policy asked
// for, because the background generation had not yet finished. It returns
// early with ctx's error.
func (c *Client) awaitNextKey(ctx context.Context) error {
	c.mu.Lock()
	if c.nextKey != nil || !c.rotationDueLocked(c.sess) {
		c.mu.Unlock()
		return nil
	}
	done := c.prepareNextKeyLocked()
	c.mu.Unlock()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *Client) policyLocked(s *session) policy.Decision {
	sTime, elapsed := c.serverNowLocked()
	growth := time.Duration(int64(sTime+elapsed)-int64(s.installedAt)) * time.Millisecond
	return c.cfg.Policy.Decide(policy.Facts{Now: c.cfg.Now(), Age: growth, OffsetGrowth: growth,
		Messages: s.messages, Bytes: s.bytes, KeyID: s.keyID[:]})
}
