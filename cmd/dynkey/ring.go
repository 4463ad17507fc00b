package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/dynkey/dynkey/auth"
	"github.com/dynkey/dynkey/middleware"
	"github.com/dynkey/dynkey/store"

	// Every built-in suite, so that any ring and -suite can be read.
	_ "github.com/dynkey/dynkey/crypto/ecies"
	_ "github.com/dynkey/dynkey/crypto/pq"
	_ "github.com/dynkey/dynkey/crypto/rsa"
	_ "github.com/dynkey/dynkey/crypto/tink"
)

// ringStoreKey is where the middleware keeps its key ring
// (docs/ARCHITECTURE.md, "Where state lives").
const ringStoreKey = "dynkey/ring"

// errNoRing: the store holds no key ring.
var errNoRing = errors.New("the store holds no key ring (no server has started on it yet; check the -store URL)")

// ringKeyInfo is the public part of one stored server key: what the ring
// record says about it besides its sealed secrets, which are never decoded
// here.
type ringKeyInfo struct {
	ID           string `json:"id"`
	Suite        string `json:"suite"`
	State        string `json:"state"`
	PrimarySince int64  `json:"primary_since"`
	DecryptUntil int64  `json:"decrypt_until,omitempty"`
	TokenUntil   int64  `json:"token_until,omitempty"`
	LegacySince  int64  `json:"legacy_since,omitempty"`
	// HasPrivate and HasTokenKey say whether the record still holds the
	// sealed private key and the sealed token key.
	HasPrivate  bool `json:"-"`
	HasTokenKey bool `json:"-"`
}

// tokenKeyInfo is the public part of one stored token key (the keys that
// seal login tokens, docs/PROTOCOL.md §10): its id (the one a token names)
// and its lifetime.
type tokenKeyInfo struct {
	ID string `json:"id"`
	// Since is when it became primary (ms); Until, once it is retired, is
	// when it is deleted: every token it sealed has expired by then.
	Since int64 `json:"since"`
	Until int64 `json:"until,omitempty"`
}

// ringInfo is the public part of the stored key ring.
type ringInfo struct {
	Epoch     uint64         `json:"epoch"`
	Keys      []ringKeyInfo  `json:"keys"`
	TokenKeys []tokenKeyInfo `json:"token_keys"`
	version   uint64
}

// tokenKeyFor says whether the ring holds a key that opens tokens naming
// id: a token key, or (tokens minted before token keys had their own
// ring) a server key record that still holds its token key. until is when
// that key is deleted (0: not scheduled yet).
func (r *ringInfo) tokenKeyFor(id string) (what string, until int64, ok bool) {
	for _, tk := range r.TokenKeys {
		if tk.ID == id {
			if tk.Until == 0 {
				return "primary token key", 0, true
			}
			return "retired token key", tk.Until, true
		}
	}
	for _, k := range r.Keys {
		if k.ID == id && k.HasTokenKey {
			return "token key of " + k.State + " server key", k.TokenUntil, true
		}
	}
	return "", 0, false
}

// readRing reads the public fields of the stored ring. It does not verify
// the ring: openMiddleware does, with the key-encryption key.
func readRing(ctx context.Context, st store.Store) (*ringInfo, error) {
	e, err := st.Get(ctx, ringStoreKey)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errNoRing
	}
	if err != nil {
		return nil, fmt.Errorf("reading the key ring: %w", err)
	}
	var r ringInfo
	if err := json.Unmarshal(e.Value, &r); err != nil {
		return nil, fmt.Errorf("decoding the key ring: %w", err)
	}
	var raw struct {
		Keys []struct {
			SealedPrivate  []byte `json:"sealed_private"`
			SealedTokenKey []byte `json:"sealed_token_key"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(e.Value, &raw); err == nil && len(raw.Keys) == len(r.Keys) {
		for i, k := range raw.Keys {
			r.Keys[i].HasPrivate = len(k.SealedPrivate) > 0
			r.Keys[i].HasTokenKey = len(k.SealedTokenKey) > 0
		}
	}
	r.version = e.Version
	return &r, nil
}

// currentSuite is the suite of the ring's current (non-legacy) primary key:
// the suite the deployment is configured with. A middleware opened on the
// ring with another suite would adopt that suite (a configuration change),
// which inspecting commands must never do.
func (r *ringInfo) currentSuite() (string, error) {
	for _, k := range r.Keys {
		if k.State == string(middleware.StatePrimary) && k.LegacySince == 0 {
			return k.Suite, nil
		}
	}
	return "", errors.New("the key ring has no current primary key")
}

// openMiddleware opens the stored ring with the key-encryption key: New
// verifies the ring's authentication and unseals every secret of the ring,
// so a wrong key-encryption key or a tampered ring fails here. It runs no
// background loop, serves nothing and never creates a ring
// (RequireKeyRing). edit, if not nil, changes the options first.
func openMiddleware(e *env, st store.Store, kek []byte, ring *ringInfo, edit func(*middleware.Options)) (*middleware.Middleware, error) {
	suite, err := ring.currentSuite()
	if err != nil {
		return nil, err
	}
	o := middleware.Options{
		Suite: suite,
		Store: st,
		// Nothing is served: no login ever reaches it.
		Authenticator:    refuseLogins,
		KeyEncryptionKey: kek,
		RequireKeyRing:   true,
		MaintainInterval: -1,
		// Every failure is returned as an error, which says more.
		Logger: discardLogger(),
	}
	if edit != nil {
		edit(&o)
	}
	m, err := middleware.New(o)
	if errors.Is(err, middleware.ErrNoKeyRing) {
		return nil, errNoRing
	}
	if err != nil {
		return nil, fmt.Errorf("opening the key ring: %w", err)
	}
	return m, nil
}

// refuseLogins is the Authenticator of a middleware that serves nothing.
var refuseLogins = auth.AuthenticatorFunc(func(context.Context, string, string) error {
	return auth.ErrBadCredentials
})

// stderrLogger logs to the command's stderr at level and above.
func stderrLogger(e *env, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))
}

// discardLogger logs nothing.
func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// msTime formats ms since the Unix epoch (0: "-").
func msTime(ms int64) string {
	if ms == 0 {
		return "-"
	}
	return time.UnixMilli(ms).UTC().Format(time.RFC3339)
}

// relative says how far t (ms) is from now: "in 5m0s" or "3m0s ago".
func relative(now time.Time, ms int64) string {
	if ms == 0 {
		return ""
	}
	d := time.UnixMilli(ms).Sub(now).Round(time.Second)
	if d == 0 {
		return "now"
	}
	if d > 0 {
		return "in " + d.String()
	}
	return (-d).String() + " ago"
}
