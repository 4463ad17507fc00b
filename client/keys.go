package client

import (
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
// rotation never waits for key generation (slow for RSA).
func (c *Client) prepareNextKey() {
	c.mu.Lock()
	if c.nextKey != nil || c.genning || c.closed {
		c.mu.Unlock()
		return
	}
	c.genning = true
	c.mu.Unlock()
	go func() {
		k, err := c.suite.GenerateKey(c.cfg.Rand)
		c.mu.Lock()
		defer c.mu.Unlock()
		c.genning = false
		if err != nil {
			c.cfg.Logger.Warn("dynkey: generating the next client key", "err", err)
			return
		}
		if !c.closed {
			c.nextKey = k
		}
	}()
}

func (c *Client) policyLocked(s *session) policy.Decision {
	sTime, elapsed := c.serverNowLocked()
	growth := time.Duration(int64(sTime+elapsed)-int64(s.installedAt)) * time.Millisecond
	return c.cfg.Policy.Decide(policy.Facts{Now: c.cfg.Now(), Age: growth, OffsetGrowth: growth,
		Messages: s.messages, Bytes: s.bytes, KeyID: s.keyID[:]})
}
