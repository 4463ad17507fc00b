package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/dynkey/dynkey/wire"
)

// Login logs in now (requests log in by themselves when needed).
func (c *Client) Login(ctx context.Context) error {
	c.mu.Lock()
	old := c.sess
	c.mu.Unlock()
	return c.login(ctx, old)
}

// login logs in unless another goroutine already replaced the session
// `stale` (so concurrent requests that all saw an expired token log in once).
func (c *Client) login(ctx context.Context, stale *session) error {
	c.loginMu.Lock()
	defer c.loginMu.Unlock()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	if c.sess != stale && c.sess != nil {
		c.mu.Unlock()
		return nil
	}
	needDir := c.srv == nil
	c.mu.Unlock()
	if needDir {
		if err := c.fetchDirectory(ctx); err != nil {
			return err
		}
	}
	key := c.takeNextKey()
	if key == nil {
		var err error
		if key, err = c.suite.GenerateKey(c.cfg.Rand); err != nil {
			return err
		}
	}
	body, _ := json.Marshal(wire.LoginRequest{Username: c.cfg.Username, Password: c.cfg.Password})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint(wire.PathLogin), nil)
	if err != nil {
		return err
	}
	pub := key.Public().Bytes()
	resp, err := c.exchange(req, "application/json", body, &sealParams{typ: wire.TypeLogin, key: key, clientKey: pub})
	if err != nil {
		return err
	}
	if p, ok := resp.problem(); ok && p.Code == wire.CodeLoginBusy {
		// Too many password checks at once on the server: wait as it asks
		// (at most maxLoginBusyWait) and retry once.
		d, ok := retryAfter(resp.resp.Header.Get("Retry-After"))
		if !ok {
			return p
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		if resp, err = c.exchange(req, "application/json", body, &sealParams{typ: wire.TypeLogin, key: key, clientKey: pub}); err != nil {
			return err
		}
	}
	if p, ok := resp.problem(); ok {
		if p.Code == wire.CodeServerKeyUnknown || p.Code == wire.CodeStale {
			// Our directory is old: refetch it once and retry.
			if err := c.recoverFrom(ctx, p); err != nil {
				return err
			}
			resp, err = c.exchange(req, "application/json", body, &sealParams{typ: wire.TypeLogin, key: key, clientKey: pub})
			if err != nil {
				return err
			}
			if p, ok := resp.problem(); ok {
				return p
			}
		} else {
			return p
		}
	}
	var lr wire.LoginResponse
	if err := json.Unmarshal(resp.body, &lr); err != nil {
		return fmt.Errorf("dynkey/client: login response: %w", err)
	}
	c.mu.Lock()
	if lr.Directory != nil {
		if _, err := c.acceptDirectoryLocked(lr.Directory, resp.at, false); err != nil {
			c.mu.Unlock()
			return err
		}
	}
	c.setServerTimeLocked(lr.STime, resp.at)
	c.sess = &session{token: lr.Token, key: key, keyID: wire.ComputeKeyID(c.suite.Name(), pub), installedAt: uint64(lr.STime)}
	c.stats.Logins++
	c.mu.Unlock()
	c.emit(EventLogin, "logged in as "+c.cfg.Username+"; client key "+wire.ComputeKeyID(c.suite.Name(), pub).String())
	c.prepareNextKey()
	return nil
}

// maxLoginBusyWait is the longest Retry-After a login waits for after
// "login-busy" before its one retry; a longer one fails the login.
const maxLoginBusyWait = 5 * time.Second

// retryAfter parses a Retry-After of delay-seconds (RFC 9110 §10.2.3) up to
// maxLoginBusyWait.
func retryAfter(v string) (time.Duration, bool) {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 || time.Duration(n)*time.Second > maxLoginBusyWait {
		return 0, false
	}
	return time.Duration(n) * time.Second, true
}
