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
package client

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
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

	// IdentityKey pins the server's directory-signing key. If nil, the
	// client trusts the identity key of the first directory it fetches (use
	// TLS for that fetch) and requires every later directory to be signed
	// by it.
	IdentityKey ed25519.PublicKey

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
	genning  bool
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
// idempotent request (GET, HEAD, OPTIONS, PUT, DELETE) once the next key is
// ready; rotations never ride on a POST or PATCH (see docs/PROTOCOL.md §9).
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

// serverNow is the client's estimate of the server clock, in ms, and the
// parts it is made of. Caller holds c.mu.
func (c *Client) serverNowLocked() (sTime, elapsed uint64) {
	e := c.cfg.Now().Sub(c.sTimeAt) // monotonic when Now is time.Now
	if e < 0 {
		e = 0
	}
	return c.sTime, uint64(e.Milliseconds())
}

func (c *Client) setServerTimeLocked(ms int64, at time.Time) {
	if ms > 0 {
		c.sTime, c.sTimeAt = uint64(ms), at
	}
}

func (c *Client) endpoint(path string) string {
	u := *c.base
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	u.RawQuery = ""
	return u.String()
}

// fetchDirectory gets and verifies the key directory.
func (c *Client) fetchDirectory(ctx context.Context) error {
	// Ask for our suite's directory: a server that switched suites still
	// serves the previous one to its existing sessions, and one that does
	// not offer ours at all refuses (we never take another suite).
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.endpoint(wire.PathKeys)+"?suite="+url.QueryEscape(c.suite.Name()), nil)
	if err != nil {
		return err
	}
	at := c.cfg.Now()
	resp, err := c.next.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("dynkey/client: fetching the key directory: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		if p, ok := wire.ParseProblem(b); ok {
			return fmt.Errorf("dynkey/client: key directory for suite %s: %w", c.suite.Name(), p)
		}
		return fmt.Errorf("dynkey/client: key directory: HTTP %d", resp.StatusCode)
	}
	var sd wire.SignedDirectory
	if err := json.Unmarshal(b, &sd); err != nil {
		return fmt.Errorf("dynkey/client: key directory: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastDir = at
	_, err = c.acceptDirectoryLocked(&sd, at, true)
	return err
}

// acceptDirectoryLocked verifies a signed directory against the trusted
// identity and adopts its primary key if it is newer. firstUse allows
// trusting the identity key on first use when none is pinned. It reports
// whether the server key changed.
func (c *Client) acceptDirectoryLocked(sd *wire.SignedDirectory, at time.Time, firstUse bool) (bool, error) {
	var trusted ed25519.PublicKey
	switch {
	case c.srv != nil:
		trusted = c.srv.identity
	case c.cfg.IdentityKey != nil:
		trusted = c.cfg.IdentityKey
	case firstUse:
		trusted = ed25519.PublicKey(sd.Identity) // trust on first use (over TLS)
	}
	d, err := sd.Verify(trusted)
	if err != nil {
		return false, err
	}
	if d.Suite != c.suite.Name() {
		return false, fmt.Errorf("dynkey/client: server offers suite %q, client accepts %q", d.Suite, c.suite.Name())
	}
	if c.srv != nil && d.Epoch < c.srv.epoch {
		return false, nil // never move back to an older key set
	}
	c.setServerTimeLocked(d.STime, at)
	pk, _ := d.Primary()
	id, _ := wire.ParseKeyID(pk.ID)
	if c.srv != nil && c.srv.keyID == id {
		c.srv.epoch = d.Epoch
		return false, nil
	}
	key, err := c.suite.ParsePublicKey(pk.Public)
	if err != nil {
		return false, fmt.Errorf("dynkey/client: server key: %w", err)
	}
	changed := c.srv != nil
	c.srv = &serverState{identity: trusted, epoch: d.Epoch, keyID: id, key: key}
	if changed {
		c.stats.ServerKeyChanges++
	}
	return changed, nil
}

// Login logs in now (requests log in by themselves when needed).
func (c *Client) Login(ctx context.Context) error {
	c.mu.Lock()
	old := c.sess
	c.mu.Unlock()
	return c.login(ctx, old)
}

// login logs in unless another goroutine already replaced the session
// `stale` (so concurrent requests that all saw an expired token log in once).
func (c *Client) login(ctx context.Context, stale *session) error {
	c.loginMu.Lock()
	defer c.loginMu.Unlock()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	if c.sess != stale && c.sess != nil {
		c.mu.Unlock()
		return nil
	}
	needDir := c.srv == nil
	c.mu.Unlock()
	if needDir {
		if err := c.fetchDirectory(ctx); err != nil {
			return err
		}
	}
	key := c.takeNextKey()
	if key == nil {
		var err error
		if key, err = c.suite.GenerateKey(c.cfg.Rand); err != nil {
			return err
		}
	}
	body, _ := json.Marshal(wire.LoginRequest{Username: c.cfg.Username, Password: c.cfg.Password})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint(wire.PathLogin), nil)
	if err != nil {
		return err
	}
	pub := key.Public().Bytes()
	resp, err := c.exchange(req, "application/json", body, &sealParams{typ: wire.TypeLogin, key: key, clientKey: pub})
	if err != nil {
		return err
	}
	if p, ok := resp.problem(); ok {
		if p.Code == wire.CodeServerKeyUnknown || p.Code == wire.CodeStale {
			// Our directory is old: refetch it once and retry.
			if err := c.recoverFrom(ctx, p); err != nil {
				return err
			}
			resp, err = c.exchange(req, "application/json", body, &sealParams{typ: wire.TypeLogin, key: key, clientKey: pub})
			if err != nil {
				return err
			}
			if p, ok := resp.problem(); ok {
				return p
			}
		} else {
			return p
		}
	}
	var lr wire.LoginResponse
	if err := json.Unmarshal(resp.body, &lr); err != nil {
		return fmt.Errorf("dynkey/client: login response: %w", err)
	}
	c.mu.Lock()
	if lr.Directory != nil {
		if _, err := c.acceptDirectoryLocked(lr.Directory, resp.at, false); err != nil {
			c.mu.Unlock()
			return err
		}
	}
	c.setServerTimeLocked(lr.STime, resp.at)
	c.sess = &session{token: lr.Token, key: key, keyID: wire.ComputeKeyID(c.suite.Name(), pub), installedAt: uint64(lr.STime)}
	c.stats.Logins++
	c.mu.Unlock()
	c.emit(EventLogin, "logged in as "+c.cfg.Username+"; client key "+wire.ComputeKeyID(c.suite.Name(), pub).String())
	c.prepareNextKey()
	return nil
}

// takeNextKey returns the key generated ahead of time, if any.
func (c *Client) takeNextKey() crypto.PrivateKey {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := c.nextKey
	c.nextKey = nil
	return k
}

// prepareNextKey generates the next client key in the background, so a
// rotation never waits for key generation (slow for RSA).
func (c *Client) prepareNextKey() {
	c.mu.Lock()
	if c.nextKey != nil || c.genning || c.closed {
		c.mu.Unlock()
		return
	}
	c.genning = true
	c.mu.Unlock()
	go func() {
		k, err := c.suite.GenerateKey(c.cfg.Rand)
		c.mu.Lock()
		defer c.mu.Unlock()
		c.genning = false
		if err != nil {
			c.cfg.Logger.Warn("dynkey: generating the next client key", "err", err)
			return
		}
		if !c.closed {
			c.nextKey = k
		}
	}()
}

func mediaType(ct string) string {
	mt, _, _ := mime.ParseMediaType(ct)
	return mt
}

var _ http.RoundTripper = (*Client)(nil)

// readAllLimited reads at most limit bytes, failing past it.
func readAllLimited(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("dynkey/client: body larger than %d bytes", limit)
	}
	return b, nil
}
