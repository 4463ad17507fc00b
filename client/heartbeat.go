package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/dynkey/dynkey/wire"
)

// Heartbeat sends one heartbeat: it refreshes s_time, adopts a new server
// key announced in the signed directory, and takes the server's hint to
// rotate the client key. The background loop calls it every
// HeartbeatInterval.
func (c *Client) Heartbeat(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint(wire.PathHeartbeat), nil)
	if err != nil {
		return err
	}
	res, err := c.do(req, "", nil, true)
	if err != nil {
		return err
	}
	return c.heartbeatResult(res)
}

// rotateOnHeartbeat rotates the client key now, on a heartbeat without the
// recovery loop (its only possible recovery would be this very rotation).
// It waits for the next key only if it was not generated ahead of time
// (send waits for a due rotation's key).
func (c *Client) rotateOnHeartbeat(ctx context.Context) error {
	c.mu.Lock()
	c.forceRot = true
	before := c.stats.ClientRotations
	c.mu.Unlock()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint(wire.PathHeartbeat), nil)
	if err != nil {
		return err
	}
	id, err := c.newMessageID()
	if err != nil {
		return err
	}
	res, _, err := c.send(req, "", nil, true, id, nil)
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
