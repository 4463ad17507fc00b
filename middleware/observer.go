package middleware

import (
	"errors"
	"time"

	"github.com/dynkey/dynkey/store"

	"github.com/dynkey/dynkey/wire"
)

// Observer receives what metrics need to count. Set it in Options.Observer;
// nil (the default) costs nothing: no call, no clock reading, no
// allocation. Methods are called synchronously on the request path (or the
// maintenance loop) and from many goroutines at once: they must be safe
// for concurrent use and quick (increment a counter, observe a histogram).
// Embed [NopObserver] to implement only some of them; methods added later
// will be added to NopObserver too.
type Observer interface {
	// Refused is called once for every refused request (protected routes
	// and endpoints alike), with its code.
	Refused(code wire.Code)
	// Rotated is called once for every key rotation this instance made
	// (another instance's rotations are seen by that instance's observer).
	Rotated(e Rotation)
	// Opened is called after a request envelope opened successfully (login,
	// heartbeat or protected route), with the suite and the time the whole
	// opening took (parsing, store reads, the public-key operation, a
	// client key rotation). Plain requests of optional routes are not
	// timed.
	Opened(suite string, d time.Duration)
	// Sealed is called after a response was sealed, with the suite of the
	// request's session and the time sealing took.
	Sealed(suite string, d time.Duration)
	// LoggedIn is called after a successful login (a failed one is
	// Refused with "login-failed", "login-throttled" or "login-busy").
	LoggedIn(suite string)
}

// Rotation describes one key rotation for [Observer.Rotated].
type Rotation struct {
	// Side is "server" (a server key pair) or "client" (a session's
	// client key).
	Side string
	// Suite is the suite of the rotated key.
	Suite string
	// Reason is why: for the server "policy" (Options.ServerPolicy, in
	// Maintain) or "manual" ([Middleware.Rotate]); for a client "request"
	// (carried by a request to a protected route) or "heartbeat".
	Reason string
}

// Rotation sides, for [Rotation.Side].
const (
	SideServer = "server"
	SideClient = "client"
)

// NopObserver does nothing; embed it in an Observer that implements only
// some methods.
type NopObserver struct{}

func (NopObserver) Refused(wire.Code)            {}
func (NopObserver) Rotated(Rotation)             {}
func (NopObserver) Opened(string, time.Duration) {}
func (NopObserver) Sealed(string, time.Duration) {}
func (NopObserver) LoggedIn(string)              {}

var _ Observer = NopObserver{}

// StoreObserver is an optional interface of an [Observer] that also wants
// every store operation the middleware makes (sessions, key ring, replay
// ids, login throttling counters of the default limiter): set an Observer
// that implements it and the middleware finds it by type assertion. Like
// Observer's, its method is called synchronously from many goroutines and
// must be quick.
type StoreObserver interface {
	// StoreDone is called after each store operation with its name (one of
	// the Store… constants), how long it took and its error as the store
	// returned it. [store.ErrNotFound] from Get and [store.ErrConflict]
	// from CompareAndSwap are answers, not failures: use [StoreFailed] to
	// tell them apart.
	StoreDone(op string, d time.Duration, err error)
}

// Store operations, for [StoreObserver.StoreDone]: the methods of
// [store.Store] and its optional interfaces.
const (
	StoreGet            = "get"
	StoreCompareAndSwap = "compare_and_swap"
	StoreDelete         = "delete"
	StoreMarkSeen       = "mark_seen"
	StoreListKeys       = "list_keys"
	StoreScrub          = "scrub"
)

// StoreFailed reports whether err, returned by a store operation, is a
// failure: not nil, [store.ErrNotFound] or [store.ErrConflict].
func StoreFailed(err error) bool {
	return err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrConflict)
}

// observeRefusal reports err to the observer if it is a refusal.
func (m *Middleware) observeRefusal(err error) {
	if m.o.Observer == nil || err == nil {
		return
	}
	m.o.Observer.Refused(asProblem(err).Code)
}

// observeRotation reports a rotation to the observer.
func (m *Middleware) observeRotation(side, suite, reason string) {
	if m.o.Observer != nil {
		m.o.Observer.Rotated(Rotation{Side: side, Suite: suite, Reason: reason})
	}
	m.logRotation(side, suite, reason)
}

// startTimer returns the time to measure from, zero without an observer
// (no clock reading on the hot path).
func (m *Middleware) startTimer() time.Time {
	if m.o.Observer == nil {
		return time.Time{}
	}
	return time.Now()
}
