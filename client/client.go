// Package client is the dynkey Go SDK: an [http.RoundTripper] that makes an
// ordinary [http.Client] speak the dynkey protocol.
//
//	c, err := client.New(client.Config{
//		BaseURL:  "https://api.example.com",
//		Username: "alice", Password: "…",
//	})
//	defer c.Close()
//	resp, err := c.HTTPClient().Post("https://api.example.com/api/echo", "application/json", body)
//
// The client logs in on first use, seals every request to the server's
// current key and authenticates it with its own key, opens every response
// (rejecting anything it cannot authenticate), heartbeats in the background,
// rotates its key by its [policy.Policy] with proof of both keys, follows
// server key rotations announced in heartbeats (verified against the server's
// identity key, never moving back to an older directory), and recovers by
// itself from a stale server key, an expired token or a stale clock (each at
// most once per request). It never uses the local wall clock for the protocol: times
// are the server's s_time plus elapsed time on the monotonic clock.
//
// # Safety against a man in the middle
//
// Refusals (problem+json) are not authenticated, so the client only acts on
// them in ways an attacker on the path could force anyway, and a retry
// always carries the refused request's message id: a refusal forged after
// the handler ran makes the retry a replay, never a second run. Rotations
// of the client key ride only on heartbeats and GET, PUT, DELETE and
// OPTIONS requests. A HEAD request's envelope travels in the
// Dynkey-Envelope header and its sealed response in the Dynkey-Response
// header, so its status and content type are authenticated like any
// other's. Without a pinned [Config.IdentityKey] the
// first key directory must come over https ([ErrFirstContactWithoutTLS]).
package client

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/dynkey/dynkey/crypto"
	"github.com/dynkey/dynkey/policy"
	"github.com/dynkey/dynkey/wire"

	// The default suite.
	_ "github.com/dynkey/dynkey/crypto/ecies"
)

// Config configures a Client. Zero values are safe defaults except BaseURL,
// Username and Password.
type Config struct {
	// BaseURL is the server's origin, such as "https://api.example.com".
	// The dynkey endpoints are under it at their fixed paths.
	BaseURL  string
	Username string
	Password string

	// Suite is the algorithm suite the client accepts. A server offering
	// another suite is refused (no silent downgrade). Default
	// "ecies-x25519".
	Suite string

	// IdentityKey pins the server's directory-signing key (the server
	// prints it: middleware.Middleware.IdentityPublicKey). If nil, the
	// client trusts the identity key of the first directory it fetches
	// (trust on first use) and requires every later directory to be signed
	// by it; that first fetch must then be protected by TLS, so New refuses
	// a BaseURL that is not https:// unless
	// InsecureTrustOnFirstUseWithoutTLS is set. Default nil.
	IdentityKey ed25519.PublicKey

	// InsecureTrustOnFirstUseWithoutTLS lets a client with no IdentityKey
	// take the server's identity from the first key directory it fetches
	// over a BaseURL that is not https://. That directory is then
	// unauthenticated: anyone on the path (a Wi-Fi hotspot, a proxy, a
	// DNS spoofer) can answer with a directory of their own, and the client
	// seals its username and password — and every later request — to the
	// attacker's key, and keeps trusting the attacker from then on. Set it
	// only on a network you control (tests, a loopback demo); otherwise pin
	// IdentityKey or use https. Ignored when IdentityKey is set. Default
	// false.
	InsecureTrustOnFirstUseWithoutTLS bool

	// Policy decides when the client rotates its key.
	// Default policy.OffsetGrowth(1h) (claim 5).
	Policy policy.Policy

	// HeartbeatInterval is how often the background heartbeat runs.
	// Default 1m; negative disables it.
	HeartbeatInterval time.Duration

	// Transport sends the sealed requests. Default http.DefaultTransport.
	Transport http.RoundTripper

	// MaxBodySize limits request bodies the client will seal. Default 1 MiB.
	MaxBodySize int64

	// Envelope chooses where a request carries its envelope: in its body,
	// or base64url in the Dynkey-Envelope header (docs/PROTOCOL.md §4),
	// which is what browsers and many proxies need for GET, HEAD, DELETE
	// and OPTIONS. HEAD always uses the header (its response comes back in
	// the Dynkey-Response header). Default EnvelopeAuto.
	Envelope EnvelopeMode

	// OnEvent, if set, is called (synchronously) on protocol events:
	// login, heartbeat, key rotations, recoveries.
	OnEvent func(Event)

	// Logger receives warnings. Default slog.Default().
	Logger *slog.Logger

	// Now and Rand replace the clock and randomness, for tests. Only
	// differences between Now readings are used. Defaults time.Now and
	// crypto/rand.Reader.
	Now  func() time.Time
	Rand io.Reader
}

// EnvelopeMode says where requests carry their envelope (Config.Envelope).
type EnvelopeMode int

const (
	// EnvelopeAuto puts the envelope of a GET, HEAD, DELETE or OPTIONS
	// request without a body in the Dynkey-Envelope header, and every other
	// envelope in the body. The default.
	EnvelopeAuto EnvelopeMode = iota
	// EnvelopeInBody puts every envelope in the body, except HEAD's.
	EnvelopeInBody
	// EnvelopeInHeader puts every envelope that fits
	// wire.MaxEnvelopeHeaderSize (encoded) in the header, bodies included;
	// larger ones go in the body.
	EnvelopeInHeader
)

// Event kinds passed to Config.OnEvent.
const (
	EventLogin             = "login"
	EventHeartbeat         = "heartbeat"
	EventClientKeyRotated  = "client-key-rotated"
	EventServerKeyChanged  = "server-key-changed"
	EventRecovered         = "recovered"
	EventRotationAbandoned = "rotation-abandoned"
)

// Event describes something the client did.
type Event struct {
	Kind   string
	Detail string
}

// Stats counts what the client did.
type Stats struct {
	Requests          uint64 // sealed requests sent, heartbeats and retries included
	Logins            uint64
	ClientRotations   uint64
	ServerKeyChanges  uint64
	Recoveries        uint64
	HeartbeatFailures uint64
}

var (
	// ErrResponseNotAuthentic is returned when a response is neither a
	// response sealed for this request nor a well-formed problem: it may
	// have been injected or altered, and it is never passed on.
	ErrResponseNotAuthentic = errors.New("dynkey/client: response failed authentication")

	// ErrClosed is returned by requests after Close.
	ErrClosed = errors.New("dynkey/client: closed")

	// ErrFirstContactWithoutTLS is returned by New for a BaseURL that is
	// not https:// when no IdentityKey is pinned: the client would take
	// the server's identity from a key directory anyone on the path could
	// replace, and seal the password to them. Pin Config.IdentityKey, use
	// https, or (tests and loopback only) set
	// Config.InsecureTrustOnFirstUseWithoutTLS.
	ErrFirstContactWithoutTLS = errors.New("dynkey/client: no IdentityKey pinned and BaseURL is not https (trust on first use needs TLS)")
)

// serverState is what the client trusts about the server.
type serverState struct {
	identity ed25519.PublicKey
	epoch    uint64
	keyID    wire.KeyID
	key      crypto.PublicKey
}

// session is a logged-in session.
type session struct {
	token       []byte
	key         crypto.PrivateKey
	keyID       wire.KeyID
	installedAt uint64 // server time (ms) when the key was installed
	messages    uint64 // messages sent under key
	bytes       uint64 // plaintext bytes sent under key
	// pending is a key sent in a rotation whose outcome is unknown (the
	// response was lost); it is tried first on the next request.
	pending crypto.PrivateKey
	// inFlight counts the requests in flight by the client key that
	// authenticated them. The server accepts only the current key and the
	// one before it, so the client does not rotate again while requests
	// under an older key than the current one are still in flight.
	inFlight map[wire.KeyID]int
}

// olderKeyInFlight reports whether a request authenticated by another key
// than the current one is in flight. Caller holds c.mu.
func (s *session) olderKeyInFlight() bool {
	for id, n := range s.inFlight {
		if id != s.keyID && n > 0 {
			return true
		}
	}
	return false
}

// Client is a dynkey client. It is safe for concurrent use.
type Client struct {
	cfg   Config
	suite crypto.Suite
	base  *url.URL
	next  http.RoundTripper

	mu       sync.Mutex
	srv      *serverState
	sess     *session
	sTime    uint64    // latest server time (ms)
	sTimeAt  time.Time // local reading when sTime arrived (monotonic)
	rotating bool      // a rotation is in flight
	forceRot bool      // the server asked for a rotation
	nextKey  crypto.PrivateKey
	genning  bool          // the next key is being generated
	keyReady chan struct{} // closed when that generation ends (nil when none)
	lastDir  time.Time
	stats    Stats
	closed   bool

	loginMu sync.Mutex

	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
	// stopCtx is cancelled by Close, so that a heartbeat in flight does not
	// hold Close up (a server that does not answer would block it for
	// HeartbeatInterval+10s).
	stopCtx    context.Context
	cancelStop context.CancelFunc
}

// New returns a client. It does not contact the server: the first request
// (or Login) does.
func New(cfg Config) (*Client, error) {
	if cfg.Suite == "" {
		cfg.Suite = "ecies-x25519"
	}
	s, err := crypto.Lookup(cfg.Suite)
	if err != nil {
		return nil, fmt.Errorf("dynkey/client: %w", err)
	}
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("dynkey/client: BaseURL %q is not an absolute URL", cfg.BaseURL)
	}
	if cfg.IdentityKey != nil && len(cfg.IdentityKey) != ed25519.PublicKeySize {
		return nil, errors.New("dynkey/client: IdentityKey is not an Ed25519 public key")
	}
	if cfg.IdentityKey == nil && !strings.EqualFold(u.Scheme, "https") && !cfg.InsecureTrustOnFirstUseWithoutTLS {
		return nil, fmt.Errorf("%w: BaseURL %q", ErrFirstContactWithoutTLS, cfg.BaseURL)
	}
	if cfg.Policy == nil {
		cfg.Policy = policy.OffsetGrowth(time.Hour)
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = time.Minute
	}
	if cfg.Transport == nil {
		cfg.Transport = http.DefaultTransport
	}
	if cfg.MaxBodySize <= 0 {
		cfg.MaxBodySize = 1 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	c := &Client{cfg: cfg, suite: s, base: u, next: cfg.Transport, stop: make(chan struct{}), done: make(chan struct{})}
	c.stopCtx, c.cancelStop = context.WithCancel(context.Background())
	// The first key too is generated ahead of time, so a first login with
	// a slow suite (RSA) rarely waits for it.
	c.prepareNextKey()
	if cfg.HeartbeatInterval > 0 {
		go c.heartbeatLoop()
	} else {
		close(c.done)
	}
	return c, nil
}

// HTTPClient returns an http.Client that uses c as its transport.
func (c *Client) HTTPClient() *http.Client { return &http.Client{Transport: c} }

// Close stops the heartbeat and forgets the session keys. In-flight
// requests finish; later ones fail with ErrClosed.
func (c *Client) Close() error {
	c.stopOnce.Do(func() { close(c.stop); c.cancelStop() })
	<-c.done
	c.mu.Lock()
	c.closed = true
	c.sess = nil
	c.nextKey = nil
	c.mu.Unlock()
	return nil
}

// Stats returns counters of what the client did.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// ServerKeyID returns the id of the server key requests are sealed to.
func (c *Client) ServerKeyID() (wire.KeyID, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.srv == nil {
		return wire.KeyID{}, false
	}
	return c.srv.keyID, true
}

// ClientKeyID returns the id of the client's current key.
func (c *Client) ClientKeyID() (wire.KeyID, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess == nil {
		return wire.KeyID{}, false
	}
	return c.sess.keyID, true
}

// RotateNow makes the client rotate its key on its next heartbeat or
// request that may carry a rotation (GET, PUT, DELETE, OPTIONS); that
// request waits for the next key if it is not generated yet. Rotations
// never ride on a POST or PATCH (see docs/PROTOCOL.md §5).
func (c *Client) RotateNow() {
	c.mu.Lock()
	c.forceRot = true
	c.mu.Unlock()
}

func (c *Client) emit(kind, detail string) {
	if c.cfg.OnEvent != nil {
		c.cfg.OnEvent(Event{Kind: kind, Detail: detail})
	}
}
