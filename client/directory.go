package client

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/dynkey/dynkey/wire"
)

// serverNow is the client's estimate of the server clock, in ms, and the
// parts it is made of. Caller holds c.mu.
func (c *Client) serverNowLocked() (sTime, elapsed uint64) {
	e := c.cfg.Now().Sub(c.sTimeAt) // monotonic when Now is time.Now
	if e < 0 {
		e = 0
	}
	return c.sTime, uint64(e.Milliseconds())
}

func (c *Client) setServerTimeLocked(ms int64, at time.Time) {
	if ms > 0 {
		c.sTime, c.sTimeAt = uint64(ms), at
	}
}

func (c *Client) endpoint(path string) string {
	u := *c.base
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	u.RawQuery = ""
	return u.String()
}

// fetchDirectory gets and verifies the key directory.
func (c *Client) fetchDirectory(ctx context.Context) error {
	// Ask for our suite's directory: a server that switched suites still
	// serves the previous one to its existing sessions, and one that does
	// not offer ours at all refuses (we never take another suite).
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.endpoint(wire.PathKeys)+"?suite="+url.QueryEscape(c.suite.Name()), nil)
	if err != nil {
		return err
	}
	at := c.cfg.Now()
	resp, err := c.next.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("dynkey/client: fetching the key directory: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		if p, ok := wire.ParseProblem(b); ok {
			return fmt.Errorf("dynkey/client: key directory for suite %s: %w", c.suite.Name(), p)
		}
		return fmt.Errorf("dynkey/client: key directory: HTTP %d", resp.StatusCode)
	}
	var sd wire.SignedDirectory
	if err := json.Unmarshal(b, &sd); err != nil {
		return fmt.Errorf("dynkey/client: key directory: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastDir = at
	_, err = c.acceptDirectoryLocked(&sd, at, true)
	return err
}

// acceptDirectoryLocked verifies a signed directory against the trusted
// identity and adopts its primary key if it is newer. firstUse allows
// trusting the identity key on first use when none is pinned. It reports
// whether the server key changed.
func (c *Client) acceptDirectoryLocked(sd *wire.SignedDirectory, at time.Time, firstUse bool) (bool, error) {
	var trusted ed25519.PublicKey
	switch {
	case c.srv != nil:
		trusted = c.srv.identity
	case c.cfg.IdentityKey != nil:
		trusted = c.cfg.IdentityKey
	case firstUse:
		trusted = ed25519.PublicKey(sd.Identity) // trust on first use (over TLS)
	}
	d, err := sd.Verify(trusted)
	if err != nil {
		return false, err
	}
	if d.Suite != c.suite.Name() {
		return false, fmt.Errorf("dynkey/client: server offers suite %q, client accepts %q", d.Suite, c.suite.Name())
	}
	if c.srv != nil && d.Epoch < c.srv.epoch {
		return false, nil // never move back to an older key set
	}
	c.setServerTimeLocked(d.STime, at)
	pk, _ := d.Primary()
	id, _ := wire.ParseKeyID(pk.ID)
	if c.srv != nil && c.srv.keyID == id {
		c.srv.epoch = d.Epoch
		return false, nil
	}
	key, err := c.suite.ParsePublicKey(pk.Public)
	if err != nil {
		return false, fmt.Errorf("dynkey/client: server key: %w", err)
	}
	changed := c.srv != nil
	c.srv = &serverState{identity: trusted, epoch: d.Epoch, keyID: id, key: key}
	if changed {
		c.stats.ServerKeyChanges++
	}
	return changed, nil
}
