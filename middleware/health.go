package middleware

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/dynkey/dynkey/store"
)

// Health: liveness, readiness and key inspection for operators
// (docs/OPERATIONS.md "Health"). The handlers are plain http.Handlers over
// [Middleware.Ready] and [Middleware.Keys], so that any framework adapter
// can mount them; mount them on an internal port, not next to the
// protected routes.

// ErrNotReady is the error of [Middleware.Ready] when the instance should
// not receive traffic; the wrapped [NotReadyError] says why.
var ErrNotReady = errors.New("dynkey/middleware: not ready")

// NotReadyError is why an instance is not ready. Reason is one of the
// Reason… constants (a fixed string, safe to show on a health endpoint);
// Err is the internal cause, if any (for the log, never sent).
type NotReadyError struct {
	Reason string
	Err    error
}

// Reasons of a [NotReadyError].
const (
	ReasonRingNotLoaded    = "key ring not loaded"
	ReasonRingRefused      = "stored key ring refused"
	ReasonNoPrimary        = "no primary key"
	ReasonStoreUnreachable = "store unreachable"
)

func (e *NotReadyError) Error() string {
	if e.Err != nil {
		return "dynkey/middleware: not ready: " + e.Reason + ": " + e.Err.Error()
	}
	return "dynkey/middleware: not ready: " + e.Reason
}

// Unwrap returns ErrNotReady and the cause.
func (e *NotReadyError) Unwrap() []error { return []error{ErrNotReady, e.Err} }

// healthProbeKey is the key Ready reads to check that the store answers;
// nothing is ever written under it.
const healthProbeKey = "dynkey/health/probe"

// Ready reports whether this instance can serve: its key ring is loaded
// and was not refused, the configured suite has a primary key whose
// private key this instance holds, and the store answers a read (within
// ctx's deadline). It returns nil, or an error wrapping [ErrNotReady] and
// a [*NotReadyError]. It makes one store read; safe for concurrent use.
func (m *Middleware) Ready(ctx context.Context) error {
	r := m.ring.Load()
	if r == nil {
		return &NotReadyError{Reason: ReasonRingNotLoaded}
	}
	if err := m.ringError(); err != nil {
		return &NotReadyError{Reason: ReasonRingRefused, Err: err}
	}
	if p := r.primaries[m.suite.Name()]; p == nil || p.private == nil {
		return &NotReadyError{Reason: ReasonNoPrimary}
	}
	if _, err := m.o.Store.Get(ctx, healthProbeKey); err != nil && !errors.Is(err, store.ErrNotFound) {
		return &NotReadyError{Reason: ReasonStoreUnreachable, Err: err}
	}
	return nil
}

// ReadyTimeout bounds the store read of [Middleware.ReadinessHandler].
const ReadyTimeout = 2 * time.Second

// LivenessHandler answers every request 200 {"status":"alive"}: the
// process runs and serves HTTP. It checks nothing else (a store outage
// must not make an orchestrator restart every instance).
func LivenessHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeHealth(w, http.StatusOK, `{"status":"alive"}`)
	})
}

// ReadinessHandler answers 200 {"status":"ready"} when [Middleware.Ready]
// is nil, else 503 {"status":"not ready","reason":"<reason>"} with one of
// the Reason… constants (never the internal cause, which is logged at
// Warn, rate-limited like the refusal lines). The store read is bounded by
// ReadyTimeout.
func (m *Middleware) ReadinessHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), ReadyTimeout)
		defer cancel()
		err := m.Ready(ctx)
		if err == nil {
			writeHealth(w, http.StatusOK, `{"status":"ready"}`)
			return
		}
		var nr *NotReadyError
		reason := ReasonStoreUnreachable
		if errors.As(err, &nr) {
			reason = nr.Reason
		}
		if ok, suppressed := m.logLim.allow("ready/"+reason, m.now()); ok {
			m.log.Warn("dynkey: not ready", "reason", reason, "err", err, "suppressed", suppressed)
		}
		writeHealth(w, http.StatusServiceUnavailable, `{"status":"not ready","reason":"`+reason+`"}`)
	})
}

func writeHealth(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

// KeyInfo describes one server key for dashboards: public facts only,
// never private material.
type KeyInfo struct {
	// ID is the key id (as in the key directory).
	ID string `json:"id"`
	// Suite is the key's suite.
	Suite string `json:"suite"`
	// State is primary, decrypt-only or destroyed.
	State KeyState `json:"state"`
	// Epoch is the epoch of the key ring this snapshot is from (the same
	// for every key of one call; it grows with every change of the ring).
	Epoch uint64 `json:"epoch"`
	// PrimarySince is when the key became primary.
	PrimarySince time.Time `json:"primary_since"`
	// DecryptUntil is when a retired key stops opening messages (its grace
	// window ends); zero for a primary key.
	DecryptUntil time.Time `json:"decrypt_until,omitzero"`
	// TokenUntil is when a retired key's token key is deleted (the last
	// token it sealed expires); zero for a primary key.
	TokenUntil time.Time `json:"token_until,omitzero"`
	// Legacy is true for the primary key of a suite that is no longer the
	// configured one (it serves that suite's existing sessions).
	Legacy bool `json:"legacy,omitempty"`
}

// Keys returns the keys of this instance's current snapshot of the key
// ring, the configured suite's primary first, then by PrimarySince, newest
// first. It reads no store (the snapshot is at most ServerKeyGrace old, see
// Maintain). Safe for concurrent use.
func (m *Middleware) Keys() []KeyInfo {
	r := m.ring.Load()
	if r == nil {
		return nil
	}
	out := make([]KeyInfo, 0, len(r.rec.Keys))
	for _, k := range r.rec.Keys {
		ki := KeyInfo{ID: k.ID, Suite: k.Suite, State: k.State, Epoch: r.epoch,
			PrimarySince: time.UnixMilli(k.PrimarySince).UTC(), Legacy: k.LegacySince != 0}
		if k.DecryptUntil != 0 {
			ki.DecryptUntil = time.UnixMilli(k.DecryptUntil).UTC()
		}
		if k.TokenUntil != 0 {
			ki.TokenUntil = time.UnixMilli(k.TokenUntil).UTC()
		}
		out = append(out, ki)
	}
	configured := m.suite.Name()
	slices.SortStableFunc(out, func(a, b KeyInfo) int {
		ap := a.State == StatePrimary && a.Suite == configured
		bp := b.State == StatePrimary && b.Suite == configured
		switch {
		case ap && !bp:
			return -1
		case bp && !ap:
			return 1
		}
		return b.PrimarySince.Compare(a.PrimarySince)
	})
	return out
}

// KeysHandler answers GET with {"keys":[…]}: [Middleware.Keys] as JSON,
// for dashboards (mount it on an internal port: it reveals the rotation
// schedule, though no private material).
func (m *Middleware) KeysHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := json.Marshal(struct {
			Keys []KeyInfo `json:"keys"`
		}{m.Keys()})
		if err != nil {
			writeHealth(w, http.StatusInternalServerError, `{"status":"error"}`)
			return
		}
		writeHealth(w, http.StatusOK, string(b))
	})
}
