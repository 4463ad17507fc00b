// Package middleware is dynkey's framework-agnostic server core, in the
// native net/http shape.
//
// It serves the key directory, login and heartbeat endpoints, opens every
// request envelope to a protected route (after cheap checks: format, suite,
// key id, token, freshness, session, replay), hands the handler the plaintext,
// and seals the handler's response so that only the client that sent the
// request can read it. It rotates the server key pair by policy, replaces a
// client's key when the client asks with proof of both keys, and keeps all
// state in a [store.Store] shared by every instance.
//
// # Use
//
//	m, err := middleware.New(middleware.Options{Store: st, Authenticator: users, KeyEncryptionKey: kek})
//	mux.Handle("/dynkey/", m.Endpoints())
//	mux.Handle("/.well-known/dynkey/", m.Endpoints())
//	mux.Handle("/api/", m.Handler(api))          // a protected group
//	mux.Handle("/v1/legacy/", m.Optional(legacy)) // plain requests accepted too
//	defer m.Close()
//
// Or protect the whole application, endpoints included, keeping some
// routes public with Options.Next:
//
//	http.ListenAndServe(addr, m.Handler(mux))
//
// # The byte-level core
//
// The protocol work itself takes bytes and returns bytes, with no net/http
// type in its signatures, so that any transport is a thin wrapper (see
// "Writing an adapter" in docs/ARCHITECTURE.md):
//
//	if m.Skip(req) { /* run the handler untouched */ }
//	if resp, ok := m.ServeEndpoint(ctx, req); ok { /* write resp */ }
//	o, err := m.Open(ctx, req)        // or m.OpenOptional
//	if err != nil { /* write m.Refusal(ctx, req, err) */ }
//	// run the handler with o.Body, o.ContentType, o.Session
//	resp, err := o.Seal(status, contentType, body)
//
// [Middleware.Handler], [Middleware.Optional], [Middleware.Endpoints] and
// [Middleware.OpenRequest] are the net/http wrappers; adapters/gin is the
// Gin one.
//
// # Errors
//
// Every refusal is a [*Problem]: an RFC 9457 application/problem+json body
// with a stable code (see wire.Code and docs/PROTOCOL.md), matched with
// errors.Is and the sentinels ([ErrReplay], …). Bad input never panics,
// never yields a 500, and never reaches a protected handler.
package middleware

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dynkey/dynkey/auth"
	"github.com/dynkey/dynkey/crypto"
	"github.com/dynkey/dynkey/policy"
	"github.com/dynkey/dynkey/store"
	"github.com/dynkey/dynkey/store/memory"
	"github.com/dynkey/dynkey/wire"

	// The default suite.
	_ "github.com/dynkey/dynkey/crypto/ecies"
)

// Options configure a Middleware. The zero value of every field is a safe
// default, except Authenticator, which New requires, and
// KeyEncryptionKey, which New requires with any store but the memory
// store.
type Options struct {
	// Suite is the algorithm suite of new server keys and sessions, by
	// registered name. Default "ecies-x25519". Changing it on a running
	// deployment is safe: new logins use the new suite, while sessions of
	// the previous one keep it (its key pair stays primary for that suite,
	// rotating by policy) until TokenTTL after the change; see
	// docs/SUITES.md.
	Suite string

	// Store holds sessions, the key ring and replay ids. Instances that
	// share a store form one cluster. Default: a new in-memory store (one
	// instance, state lost on restart).
	Store store.Store

	// Authenticator checks passwords at login. Required: New fails with
	// ErrConfig without it.
	Authenticator auth.Authenticator

	// KeyEncryptionKey (32 bytes) seals server private keys, token keys and
	// the identity key before they reach the store, and authenticates every
	// record that carries trust (the key ring, sessions) with a MAC key
	// derived from it, so that a store writer without it can neither read
	// those secrets nor change, forge or swap those records
	// (docs/PROTOCOL.md §10). All instances of a cluster need the same one,
	// and it must survive restarts for a durable store to be readable. To
	// replace it, see PreviousKeyEncryptionKeys and RotateKEK. Required
	// (New fails with ErrConfig) with any store but the memory store
	// (*memory.Store), whose state dies with the process anyway: a random
	// key would make a durable store unreadable after a restart. Default
	// with the memory store: a random key for this process only.
	KeyEncryptionKey []byte

	// PreviousKeyEncryptionKeys are older key-encryption keys (32 bytes
	// each) still accepted when reading records, never used to write: the
	// step of a KEK rotation in which instances already write under the new
	// KeyEncryptionKey while the store still holds records under the old
	// one. Once [Middleware.RotateKEK] has re-sealed the store, remove them.
	// Default: none.
	PreviousKeyEncryptionKeys [][]byte

	// RequireKeyRing makes New fail with ErrNoKeyRing when the store holds
	// no key ring, instead of creating one. Set it once a deployment has
	// started, so that a store that lost its state (an empty or replaced
	// database file, the wrong address) stops the server instead of
	// starting a fresh ring that logs every client out. Default false: the
	// ring is created, with a warning in the log.
	RequireKeyRing bool

	// ServerPolicy decides when the server key pair rotates.
	// Default policy.Uptime(24h) (claim 6).
	ServerPolicy policy.Policy

	// ServerKeyGrace is how long a retired server key still opens messages
	// (decrypt-only) before its private key is destroyed. It must outlast a
	// client's heartbeat interval plus its retries. Default 10m.
	ServerKeyGrace time.Duration

	// ClientKeyGrace is how long a client's previous key is still accepted
	// after it rotated, for requests already in flight. Default 2m.
	ClientKeyGrace time.Duration

	// TokenTTL is the lifetime of a login token and its session.
	// Default 12h.
	TokenTTL time.Duration

	// FreshnessWindow bounds |server clock − (s_time + elapsed)| of every
	// message, and is how long message ids are remembered. Default 2m.
	FreshnessWindow time.Duration

	// RotationOffsetThreshold bounds |(receive time − s_time) − time_offset|
	// of a client key rotation (claim 4). Default 30s.
	RotationOffsetThreshold time.Duration

	// ClientPolicy is the server's policy for client keys (Facts.Age is
	// the time since the key was installed). Rotate: heartbeat responses
	// ask the client to rotate. Reject: the key is past its hard limit and
	// refused with "client-key-expired", except on a heartbeat carrying its
	// rotation (WireGuard's reject-after); the client SDK rotates and
	// retries by itself. Example: policy.MustParse("age>=1h or
	// reject(age>=2h)"). Default: nil, or policy.MaxAge(RotateClientAfter)
	// if that is set.
	ClientPolicy policy.Policy

	// RotateClientAfter is a shorthand for ClientPolicy =
	// policy.MaxAge(RotateClientAfter). Default 0: not set.
	RotateClientAfter time.Duration

	// MaxBodySize limits the plaintext body of a request. Default 1 MiB.
	// An envelope may be up to 64 KiB larger; a request whose
	// Content-Length says more is refused with "too-large" before its body
	// is read (no "100 Continue" is sent).
	MaxBodySize int64

	// StoredResponseLimit is the size up to which a sealed response is
	// kept in the store, for the replay window (2×FreshnessWindow + 1m),
	// under its user and message id, so that the client's retry of the
	// same message after a lost response gets that original response
	// instead of a second run of the handler (docs/PROTOCOL.md §11). A
	// larger response is not kept (a retry gets "replay": it ran). Costs
	// one store write per request, and up to this many bytes per request
	// of the last replay window (at 1,000 req/s of 1 KiB responses and the
	// default window: ~5 MiB). Negative: nothing is recorded, and a retry
	// gets "replay" as from a replayed message. Default 64 KiB.
	StoredResponseLimit int64

	// ReadTimeout bounds the time to read a request's envelope (login,
	// heartbeat and protected routes), from the moment the middleware
	// starts reading it, set by the net/http wrappers (Handler, Optional,
	// Endpoints, OpenRequest, and so the Gin adapter) with
	// http.ResponseController.SetReadDeadline (ignored where the writer
	// does not support it). Adapters on other transports, which hand the
	// core a body already read (fasthttp), rely on their server's read
	// timeout instead. A body trickled
	// slower is cut off with "bad-format". It does not bound the
	// headers: set http.Server.ReadHeaderTimeout (e.g. 5s), and IdleTimeout
	// (e.g. 60s); see docs/PROTOCOL.md §4. Default 10s.
	ReadTimeout time.Duration

	// MaxFailedLogins is how many failed logins one client address may
	// have against one (canonical) username within LoginThrottleWindow
	// before its logins for that user are refused with "login-throttled".
	// It sets the default budgets of LoginLimiter (LimiterOptions: 10×
	// as many per user from all addresses, and per address for all
	// users). Default 10 within 15m.
	MaxFailedLogins     int
	LoginThrottleWindow time.Duration

	// LoginLimiter throttles password guessing by client address and by
	// canonical username (see LimiterOptions and limiter.go). Default
	// NewStoreLimiter(Store, LimiterOptions{PerAddressUser:
	// MaxFailedLogins, Window: LoginThrottleWindow}), shared by every
	// instance of the store; NewMemoryLimiter suits a single instance.
	LoginLimiter LoginLimiter

	// TrustedProxies are the reverse proxies whose forwarding headers are
	// believed. Login throttling charges a request to the connection's
	// peer address, except when that peer is in one of these prefixes:
	// then the client is the rightmost address of the Forwarded (RFC
	// 7239, for=) or else X-Forwarded-For chain that is not itself a
	// trusted proxy. Headers from any other peer are ignored, so a
	// client cannot choose the address it is throttled by. List exactly
	// your proxies (e.g. netip.MustParsePrefix("10.0.0.0/8")): a prefix
	// that also holds clients lets them forge their address. Default
	// none: the peer address is the client.
	TrustedProxies []netip.Prefix

	// MaxConcurrentLogins bounds the password checks running at once.
	// Each argon2id check with auth.DefaultParams holds 64 MiB, so this
	// bounds the memory a flood of logins can take. A login that finds
	// every slot taken waits at most LoginQueueWait, then is refused with
	// "login-busy" (503, Retry-After: 1) before its message id is
	// recorded. Default runtime.NumCPU(); negative: no bound.
	MaxConcurrentLogins int

	// LoginQueueWait is the longest a login waits for a password-check
	// slot (see MaxConcurrentLogins). Default 100ms; negative: no wait.
	LoginQueueWait time.Duration

	// MaintainInterval is how often the background loop checks the server
	// policy and the key lifecycle. Default 10s. Negative disables the loop
	// (call Maintain yourself).
	MaintainInterval time.Duration

	// IdentityKey signs the key directory. Clients may pin its public key.
	// If the store already holds a key ring with another identity key, New
	// fails with ErrIdentityMismatch. Default: generated once and kept
	// (sealed) in the store.
	IdentityKey ed25519.PrivateKey

	// Next, if set, is asked first about every request the net/http
	// wrappers and adapters see (not the endpoints): true means skip
	// dynkey — the request reaches the handler untouched, neither opened
	// nor sealed (public routes, health checks, CORS preflights). It gets
	// the core's view of the request (method, escaped path, query,
	// headers; do not read Body). Adapters call [Middleware.Skip]. Default
	// nil: nothing is skipped.
	Next func(r *Request) bool

	// ErrorHandler, if set, is called with every refusal an adapter
	// answers through [Middleware.Refusal] (protected routes and
	// endpoints), for logging or to add response headers (e.g.
	// WWW-Authenticate, CORS): it returns the fields to add. It gets a
	// copy of the problem and the request (r may be nil); it cannot change
	// the status or the problem body, and the fields it returns that frame
	// the body (Content-Type, Content-Length, Content-Encoding,
	// Transfer-Encoding, Cache-Control, Dynkey-*), that the refusal already
	// has (Allow, Retry-After) or that hold control characters are
	// dropped. Called on the request path: keep it quick.
	// Default nil.
	ErrorHandler func(ctx context.Context, r *Request, p *Problem) Header

	// Observer receives refusals by code, rotations, open and seal timings
	// and logins, for metrics (see [Observer]); one that is also a
	// [StoreObserver] times every store operation. The Prometheus
	// implementation is in observe/prometheus. Default nil: no calls, no
	// clock readings, no allocation.
	Observer Observer

	// Logger receives operational events: one line per refusal, per
	// rotation and per failed store operation, rate-limited per kind, with
	// no secret in any (docs/OPERATIONS.md "Logs"). Default slog.Default().
	Logger *slog.Logger

	// Now and Rand replace the clock and the randomness, for tests.
	// Defaults time.Now and crypto/rand.Reader.
	Now  func() time.Time
	Rand io.Reader

	// KeyWrapper, instead of KeyEncryptionKey, keeps the key-encryption key
	// in a key management service: the store holds a random
	// data-encryption key wrapped by it (under "dynkey/dek", created on
	// first start), which each instance unwraps once at start-up and uses
	// as its KeyEncryptionKey (envelope encryption: no KMS call per
	// record). Setting both is an error. See KeyWrapper, RotateKEKWrapped
	// and docs/DEPLOYMENT.md. Default nil: KeyEncryptionKey is used.
	KeyWrapper KeyWrapper

	// RingPollInterval is how often each instance re-reads the key ring
	// from the store (one Get; decoded only if it changed), so that it
	// learns a key another instance rotated in at most this long even if
	// it missed a notification. A store implementing store.Watcher (Redis,
	// PostgreSQL) also tells it at once. Keep it well below the clients'
	// heartbeat interval. Default 5s; negative: no polling (a Watcher
	// alone, and the reloads on unknown key ids).
	RingPollInterval time.Duration

	// TokenKeyRotation is how often the key that seals login tokens
	// rotates. Token keys have their own ring, independent of server key
	// rotation: a retired one is kept TokenTTL (plus ServerKeyGrace) so
	// that its tokens stay valid, and server keys are deleted as soon as
	// their private key is destroyed, so the key ring's size does not grow
	// with the server key rotation rate. Default 24h
	// (DefaultTokenKeyRotation).
	TokenKeyRotation time.Duration
}

// Middleware is a dynkey server. It is safe for concurrent use.
type Middleware struct {
	o     Options
	suite crypto.Suite
	// keks are the key-encryption keys: replaced, never modified, by
	// RotateKEK (under kekMu).
	keks  atomic.Pointer[kekSet]
	kekMu sync.Mutex
	log   *slog.Logger
	// logLim rate-limits the log lines of refusals, rotations and store
	// failures (logging.go).
	logLim logLimiter

	ring       atomic.Pointer[keyRing]
	reloadMu   sync.Mutex
	lastReload time.Time
	forced     *forcedReload  // under reloadMu (ring.go reloadRateLimited)
	syncing    sync.WaitGroup // the goroutines of startSync (propagate.go)
	// syncedAt is when the ring was last read from the store (UnixNano of
	// m.now()), whether or not it had changed.
	syncedAt atomic.Int64
	// ringErr is the error of the last stored ring this instance refused
	// (ErrRecordRefused), nil once a valid ring was read again.
	ringErr atomic.Pointer[error]
	// scrubPending: private keys were destroyed (or a KEK retired) and the
	// store has not yet wiped its files' copies (store.Scrubber).
	scrubPending atomic.Bool
	// keyRings mirrors the server keys of suites with their own key ring
	// (crypto.KeyRingSuite); replaced, never modified, under reloadMu.
	keyRings map[string]crypto.KeyRing

	// loginSlots bounds concurrent password checks (nil: no bound).
	loginSlots chan struct{}

	dirMu    sync.Mutex
	dirCache map[string]dirCacheEntry // by suite

	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

// New validates the options, loads the server key ring from the store (or
// creates it) and starts the background maintenance loop.
func New(o Options) (*Middleware, error) {
	if o.Suite == "" {
		o.Suite = "ecies-x25519"
	}
	suite, err := crypto.Lookup(o.Suite)
	if err != nil {
		return nil, fmt.Errorf("dynkey/middleware: %w", err)
	}
	if err := checkConfig(&o); err != nil {
		return nil, err
	}
	if o.Store == nil {
		o.Store = memory.New()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.ClientPolicy == nil && o.RotateClientAfter > 0 {
		o.ClientPolicy = policy.MaxAge(o.RotateClientAfter)
	}
	if o.ServerPolicy == nil {
		o.ServerPolicy = policy.Uptime(24 * time.Hour)
	}
	setDefault(&o.ServerKeyGrace, 10*time.Minute)
	setDefault(&o.ClientKeyGrace, 2*time.Minute)
	setDefault(&o.TokenTTL, 12*time.Hour)
	setDefault(&o.FreshnessWindow, 2*time.Minute)
	setDefault(&o.RotationOffsetThreshold, 30*time.Second)
	setDefault(&o.LoginThrottleWindow, 15*time.Minute)
	setDefault(&o.MaintainInterval, 10*time.Second)
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = 10 * time.Second
	}
	if o.MaxBodySize <= 0 {
		o.MaxBodySize = 1 << 20
	}
	if o.MaxFailedLogins <= 0 {
		o.MaxFailedLogins = 10
	}
	// Every store operation (the default limiter's too) is timed for a
	// StoreObserver and its failures logged (storeobs.go).
	m := &Middleware{}
	o.Store = observeStore(o.Store, o.Observer, m)
	if o.LoginLimiter == nil {
		o.LoginLimiter = NewStoreLimiter(o.Store, LimiterOptions{PerAddressUser: o.MaxFailedLogins, Window: o.LoginThrottleWindow})
	}
	if o.MaxConcurrentLogins == 0 {
		o.MaxConcurrentLogins = runtime.NumCPU()
	}
	if o.LoginQueueWait == 0 {
		o.LoginQueueWait = 100 * time.Millisecond
	}
	if o.IdentityKey != nil && len(o.IdentityKey) != ed25519.PrivateKeySize {
		return nil, errors.New("dynkey/middleware: IdentityKey is not an Ed25519 private key")
	}
	if err := resolveKEK(&o); err != nil {
		return nil, err
	}
	if o.KeyEncryptionKey == nil {
		o.KeyEncryptionKey = make([]byte, 32)
		if _, err := io.ReadFull(o.Rand, o.KeyEncryptionKey); err != nil {
			return nil, fmt.Errorf("dynkey/middleware: generating a key-encryption key: %w", err)
		}
		o.Logger.Info("dynkey: no KeyEncryptionKey configured; the memory store uses a random one for this process")
	}
	ks, err := newKEKSet(o.KeyEncryptionKey, o.PreviousKeyEncryptionKeys)
	if err != nil {
		return nil, err
	}
	m.o, m.suite, m.log, m.stop, m.done = o, suite, o.Logger, make(chan struct{}), make(chan struct{})
	m.keks.Store(ks)
	if o.MaxConcurrentLogins > 0 {
		m.loginSlots = make(chan struct{}, o.MaxConcurrentLogins)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.initRing(ctx); err != nil {
		return nil, err
	}
	if o.MaintainInterval > 0 {
		go m.loop()
	} else {
		close(m.done)
	}
	return m, nil
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d == 0 {
		*d = def
	}
}

// Close stops the background loop. It does not close the store.
func (m *Middleware) Close() error {
	m.stopOnce.Do(func() { close(m.stop) })
	<-m.done
	m.syncing.Wait() // the ring's sync with the store (propagate.go)
	return nil
}

func (m *Middleware) loop() {
	defer close(m.done)
	t := time.NewTicker(m.o.MaintainInterval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), m.o.MaintainInterval+5*time.Second)
			if err := m.Maintain(ctx); err != nil {
				m.log.Warn("dynkey: key maintenance failed", "err", err)
			}
			cancel()
		}
	}
}

// Suite returns the name of the suite of new sessions.
func (m *Middleware) Suite() string { return m.suite.Name() }

// IdentityPublicKey returns the public key that signs the key directory, for
// clients to pin.
func (m *Middleware) IdentityPublicKey() ed25519.PublicKey {
	return m.ring.Load().identity.Public().(ed25519.PublicKey)
}

func (m *Middleware) now() time.Time { return m.o.Now() }

type ctxKey struct{}

// Session describes the authenticated caller of a protected request.
type Session struct {
	ID          string // hex session id
	Username    string
	Suite       string // the suite the session logged in with
	ClientKeyID wire.KeyID
	// Rotated is true when this request replaced the client's key.
	Rotated bool
}

// FromContext returns the dynkey session of a request opened by the
// net/http wrappers (or an adapter that stores it with [NewContext]). ok is
// false for a request that was not encrypted: a plain request of an
// optional route, or one Options.Next skipped.
func FromContext(ctx context.Context) (*Session, bool) {
	s, ok := ctx.Value(ctxKey{}).(*Session)
	return s, ok && s != nil
}

// IsEncrypted reports whether the request of ctx arrived encrypted (a
// session is in ctx): on an optional route, false for a plain request.
func IsEncrypted(ctx context.Context) bool {
	_, ok := FromContext(ctx)
	return ok
}

// NewContext returns ctx carrying s, for [FromContext]; adapters whose
// framework keeps a context.Context per request use it.
func NewContext(ctx context.Context, s *Session) context.Context {
	return context.WithValue(ctx, ctxKey{}, s)
}

// ErrConfig is wrapped by every error New returns for options that cannot
// work (a missing Authenticator, a durable store without a
// KeyEncryptionKey, a nil store behind a non-nil interface, …).
var ErrConfig = errors.New("dynkey/middleware: invalid options")

// checkConfig refuses options that cannot work, before anything is
// defaulted or touched.
func checkConfig(o *Options) error {
	if o.Store != nil && isNilPointer(o.Store) {
		return fmt.Errorf("%w: Store is a nil %T (did opening the store fail?)", ErrConfig, o.Store)
	}
	if o.Authenticator == nil || isNilPointer(o.Authenticator) {
		return fmt.Errorf("%w: Authenticator is required (login checks passwords with it); e.g. auth.NewArgon2id", ErrConfig)
	}
	if o.KeyWrapper != nil && isNilPointer(o.KeyWrapper) {
		return fmt.Errorf("%w: KeyWrapper is a nil %T", ErrConfig, o.KeyWrapper)
	}
	if _, isMem := o.Store.(*memory.Store); o.Store != nil && !isMem && o.KeyEncryptionKey == nil && o.KeyWrapper == nil {
		return fmt.Errorf("%w: KeyEncryptionKey is required with a durable store (%T), or a KeyWrapper: a random one would make the stored keys unreadable after a restart", ErrConfig, o.Store)
	}
	if o.KeyEncryptionKey != nil && len(o.KeyEncryptionKey) != 32 {
		return fmt.Errorf("%w: KeyEncryptionKey must be 32 bytes, not %d", ErrConfig, len(o.KeyEncryptionKey))
	}
	if o.LoginLimiter != nil && isNilPointer(o.LoginLimiter) {
		return fmt.Errorf("%w: LoginLimiter is a nil %T", ErrConfig, o.LoginLimiter)
	}
	if o.Observer != nil && isNilPointer(o.Observer) {
		return fmt.Errorf("%w: Observer is a nil %T", ErrConfig, o.Observer)
	}
	if o.ServerPolicy != nil && isNilPointer(o.ServerPolicy) {
		return fmt.Errorf("%w: ServerPolicy is a nil %T", ErrConfig, o.ServerPolicy)
	}
	return nil
}

// isNilPointer reports whether v, a non-nil interface value, holds a nil
// pointer (or nil map, func, chan, slice): calling its methods would panic.
func isNilPointer(v any) bool {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Func, reflect.Chan, reflect.Slice, reflect.Interface:
		return rv.IsNil()
	}
	return false
}

// timeSince is time.Since(start) for the observer.
func timeSince(start time.Time) time.Duration { return time.Since(start) }

// wireFormat reports whether err is a wire format error.
func wireFormat(err error) bool { return errors.Is(err, wire.ErrFormat) }

var (
	errNotFound = store.ErrNotFound
	errConflict = store.ErrConflict
)
