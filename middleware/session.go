package middleware

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// sessionRecord is a session as stored under "dynkey/session/<id>".
type sessionRecord struct {
	Username     string `json:"username"`
	Suite        string `json:"suite"`
	ClientKey    []byte `json:"client_key"`
	KeyInstalled int64  `json:"key_installed"` // ms
	PrevKey      []byte `json:"prev_key,omitempty"`
	PrevUntil    int64  `json:"prev_until,omitempty"` // ms
	// PrevInstalled is when PrevKey was installed (ms), for ClientPolicy:
	// a key past its hard limit stays refused once replaced. Records
	// written before it existed have 0: their previous key is as old as
	// the epoch, refused under any age limit.
	PrevInstalled int64 `json:"prev_installed,omitempty"`
	Expires       int64 `json:"expires"` // ms
}

func sessionKey(id [16]byte) string { return "dynkey/session/" + hex.EncodeToString(id[:]) }

// loadSession reads and decodes the session id. It returns the store's
// errors as they are (store.ErrNotFound for a session that ended).
func (m *Middleware) loadSession(ctx context.Context, id [16]byte) (sessionRecord, uint64, error) {
	e, err := m.o.Store.Get(ctx, sessionKey(id))
	if err != nil {
		return sessionRecord{}, 0, err
	}
	var sr sessionRecord
	if err := json.Unmarshal(e.Value, &sr); err != nil {
		return sessionRecord{}, 0, fmt.Errorf("dynkey/middleware: decoding session %x: %w", id, err)
	}
	return sr, e.Version, nil
}

// storeSession writes the session id with compare-and-swap against version
// (0: create). It returns store.ErrConflict if another writer got there
// first.
func (m *Middleware) storeSession(ctx context.Context, id [16]byte, version uint64, sr *sessionRecord) error {
	b, err := json.Marshal(sr)
	if err != nil {
		return err
	}
	_, err = m.o.Store.CompareAndSwap(ctx, sessionKey(id), version, b, time.UnixMilli(sr.Expires))
	return err
}
