package middleware

import (
	"context"
	"encoding/hex"
	"errors"
	"time"
)

// sessionRecord is a session as stored under "dynkey/session/<id>",
// authenticated (recordAuth) under the KEK and bound to that store key, so
// that a store writer without the KEK can neither install a client key of
// their own under a stolen token nor move one session's record to another
// session id (docs/PROTOCOL.md §10).
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
	recordAuth
}

func sessionKey(id [16]byte) string { return "dynkey/session/" + hex.EncodeToString(id[:]) }

// loadSession reads, verifies and decodes the session id. It returns the
// store's errors as they are (store.ErrNotFound for a session that ended),
// and an error wrapping ErrRecordRefused, logged here, for a record that
// fails verification.
func (m *Middleware) loadSession(ctx context.Context, id [16]byte) (sessionRecord, uint64, error) {
	key := sessionKey(id)
	e, err := m.o.Store.Get(ctx, key)
	if err != nil {
		return sessionRecord{}, 0, err
	}
	var sr sessionRecord
	if _, err := m.keks.Load().unmarshalRecord(key, e.Value, &sr); err != nil {
		if errors.Is(err, ErrRecordRefused) {
			m.log.Error("dynkey: refusing a stored session", "record", key, "err", err)
		}
		return sessionRecord{}, 0, err
	}
	return sr, e.Version, nil
}

// storeSession writes the session id with compare-and-swap against version
// (0: create). It returns store.ErrConflict if another writer got there
// first.
func (m *Middleware) storeSession(ctx context.Context, id [16]byte, version uint64, sr *sessionRecord) error {
	b, err := m.keks.Load().marshalRecord(sessionKey(id), sr)
	if err != nil {
		return err
	}
	_, err = m.o.Store.CompareAndSwap(ctx, sessionKey(id), version, b, time.UnixMilli(sr.Expires))
	return err
}
