package client

import (
	"errors"
	"net/http"

	"github.com/dynkey/dynkey/wire"
)

// send seals and sends one request under the current session with message
// id id, rotating the client key if rotate is set and a rotation is due
// (rotationDueLocked), and settles the rotation's outcome. rotate must be
// set only for a request that is safe to run twice: the heartbeat and the
// idempotent methods (see mayCarryRotation). secrets, if not nil, collects
// the per-message secrets of every envelope of this request (see
// sealParams.secrets).
func (c *Client) send(tmpl *http.Request, contentType string, body []byte, rotate bool, id [wire.MessageIDSize]byte, secrets *[][]byte) (*result, *session, error) {
	if rotate {
		// A due rotation waits for its key rather than being skipped.
		if err := c.awaitNextKey(tmpl.Context()); err != nil {
			return nil, nil, err
		}
	}
	c.mu.Lock()
	sess := c.sess
	if c.closed {
		c.mu.Unlock()
		return nil, nil, ErrClosed
	}
	if sess == nil {
		c.mu.Unlock()
		return nil, nil, errors.New("dynkey/client: not logged in")
	}
	p := &sealParams{typ: wire.TypeRequest, key: sess.key, token: sess.token, sess: sess, messageID: &id, secrets: secrets}
	keyID := sess.keyID
	if sess.pending != nil {
		p.key, p.pending = sess.pending, true
		keyID = wire.ComputeKeyID(c.suite.Name(), sess.pending.Public().Bytes())
	} else if rotate && c.nextKey != nil && c.rotationDueLocked(sess) {
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
