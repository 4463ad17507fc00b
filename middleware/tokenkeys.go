package middleware

import (
	"crypto/cipher"
	"encoding/hex"
	"io"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/dynkey/dynkey/wire"
)

// Token keys (docs/PROTOCOL.md §10, §12). Login tokens are sealed under a
// token key of their own ring, rotating every TokenKeyRotation (default
// 24h) whatever the server key rotation rate: a retired token key is kept
// until every token it sealed has expired (TokenTTL after its retirement,
// plus ServerKeyGrace for an instance that minted under it from a ring it had
// not yet reloaded), so the ring holds about TokenTTL/TokenKeyRotation + 1
// token keys. Server keys no longer carry a token key and are deleted as
// soon as their private key is destroyed: the ring holds about
// ServerKeyGrace / rotation interval + 1 server keys, where it held
// TokenTTL / rotation interval before (21,600 at a 2s rotation and a 12h
// TokenTTL).

// DefaultTokenKeyRotation is Options.TokenKeyRotation's default.
const DefaultTokenKeyRotation = 24 * time.Hour

// tokenKeyRecord is one token key as stored in the ring record.
type tokenKeyRecord struct {
	ID     string `json:"id"`     // 8 random bytes, hex; the id in a token's header
	Sealed []byte `json:"sealed"` // the 32-byte key, sealed under the KEK
	Since  int64  `json:"since"`  // ms: became primary
	Until  int64  `json:"until,omitempty"`
}

// tokenKey is one token key in memory.
type tokenKey struct {
	id    wire.KeyID
	token cipher.AEAD
}

// newTokenKeyRecord generates a token key, primary from now.
func (m *Middleware) newTokenKeyRecord(ks *kekSet) (tokenKeyRecord, error) {
	var id wire.KeyID
	if _, err := io.ReadFull(m.o.Rand, id[:]); err != nil {
		return tokenKeyRecord{}, err
	}
	k := make([]byte, chacha20poly1305.KeySize)
	defer clear(k)
	if _, err := io.ReadFull(m.o.Rand, k); err != nil {
		return tokenKeyRecord{}, err
	}
	r := tokenKeyRecord{ID: hex.EncodeToString(id[:]), Since: m.now().UnixMilli()}
	var err error
	r.Sealed, err = ks.seal(m.o.Rand, "token key", r.ID, k)
	return r, err
}

func openTokenKey(ks *kekSet, id string, sealed []byte) (cipher.AEAD, error) {
	k, err := ks.open("token key", id, sealed)
	if err != nil {
		return nil, refusedRing("%v", err)
	}
	defer clear(k)
	a, err := chacha20poly1305.NewX(k)
	if err != nil {
		return nil, refusedRing("token key %s: %v", id, err)
	}
	return a, nil
}

// decodeTokenKeys unseals the ring's token keys into r.
func decodeTokenKeys(ks *kekSet, recs []tokenKeyRecord, r *keyRing) error {
	for _, tr := range recs {
		b, err := hex.DecodeString(tr.ID)
		if err != nil || len(b) != wire.KeyIDSize {
			return refusedRing("token key id %q is malformed", tr.ID)
		}
		var id wire.KeyID
		copy(id[:], b)
		if r.tokenKeys[id] != nil || r.keys[id] != nil {
			return refusedRing("token key %s appears twice", tr.ID)
		}
		a, err := openTokenKey(ks, tr.ID, tr.Sealed)
		if err != nil {
			return err
		}
		k := &tokenKey{id: id, token: a}
		r.tokenKeys[id] = k
		if tr.Until == 0 {
			if r.tokenPrimary != nil {
				return refusedRing("two primary token keys")
			}
			r.tokenPrimary = k
		}
	}
	return nil
}

// upkeepTokenKeys rotates the primary token key when it is older than
// TokenKeyRotation (or adds one to a ring that has none: a ring from before
// token keys had their own ring) and drops retired ones whose tokens have
// all expired. It reports whether rec changed.
func (m *Middleware) upkeepTokenKeys(rec *ringRecord) (bool, error) {
	now := m.now()
	rotation := m.o.TokenKeyRotation
	if rotation <= 0 {
		rotation = DefaultTokenKeyRotation
	}
	changed, primary := false, false
	kept := rec.TokenKeys[:0]
	for _, tk := range rec.TokenKeys {
		if tk.Until == 0 && now.UnixMilli() >= tk.Since+rotation.Milliseconds() {
			tk.Until = now.Add(m.o.TokenTTL + m.o.ServerKeyGrace).UnixMilli()
			changed = true
		}
		if tk.Until != 0 && now.UnixMilli() >= tk.Until {
			changed = true
			continue
		}
		primary = primary || tk.Until == 0
		kept = append(kept, tk)
	}
	rec.TokenKeys = kept
	if !primary {
		nk, err := m.newTokenKeyRecord(m.keks.Load())
		if err != nil {
			return false, err
		}
		rec.TokenKeys = append(rec.TokenKeys, nk)
		changed = true
	}
	return changed, nil
}
