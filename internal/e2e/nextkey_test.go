package e2e

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/client"
	"github.com/dynkey/dynkey/crypto"
	"github.com/dynkey/dynkey/middleware"
	"github.com/dynkey/dynkey/policy"
	"github.com/dynkey/dynkey/store/memory"
)

// gatedSuite is ecies-x25519 under another name, whose GenerateKey waits
// for the test while armed: it holds the client's background generation of
// its next key for as long as the test wants.
type gatedSuite struct {
	crypto.Suite
	mu      sync.Mutex
	release chan struct{} // non-nil: armed; GenerateKey waits until it is closed
}

func (s *gatedSuite) Name() string { return "test-gated-x25519" }

func (s *gatedSuite) GenerateKey(rand io.Reader) (crypto.PrivateKey, error) {
	s.mu.Lock()
	ch := s.release
	s.mu.Unlock()
	if ch != nil {
		<-ch
	}
	return s.Suite.GenerateKey(rand)
}

func (s *gatedSuite) arm() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.release = make(chan struct{})
}

// disarm lets GenerateKey run again (and any call waiting go on); it is
// idempotent.
func (s *gatedSuite) disarm() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.release != nil {
		close(s.release)
		s.release = nil
	}
}

var (
	gatedOnce sync.Once
	gated     *gatedSuite
)

func gatedX25519(t *testing.T) *gatedSuite {
	gatedOnce.Do(func() {
		base, err := crypto.Lookup("ecies-x25519")
		require.NoError(t, err)
		gated = &gatedSuite{Suite: base}
		crypto.Register(gated)
	})
	return gated
}

// TestClientDueRotationWaitsForItsKey: a request on which a rotation is due
// carries it even when the next client key, generated in the background
// after login (or after the previous rotation), is not ready yet: the
// request waits for the key instead of going out without the rotation its
// policy (or RotateNow) asked for. This was the cause of TestSmoke failing
// about once in 25 runs under -race: its third request could leave before
// the background generation finished, and the rotation was silently
// skipped.
//
// The test runs in a synctest bubble with the server in process, so that
// "the request has gone as far as it can while the key generation is held"
// is an exact point (synctest.Wait), not a sleep.
//
// Defense exercised: client awaitNextKey (called by send). Verified: with
// the wait removed, the request goes out at once without the rotation and
// the test fails.
func TestClientDueRotationWaitsForItsKey(t *testing.T) {
	suite := gatedX25519(t)
	for _, tc := range []struct {
		name  string
		pol   policy.Policy
		first bool // send one request before the one that must rotate
		due   func(c *client.Client)
	}{
		{"RotateNow", policy.Manual(), false, func(c *client.Client) { c.RotateNow() }},
		{"policy", policy.MaxMessages(1), true, func(*client.Client) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				m, err := middleware.New(middleware.Options{Suite: suite.Name(), Store: memory.New(), Authenticator: newUsers(t),
					KeyEncryptionKey: testKEK, MaintainInterval: -1, Logger: quietLog})
				require.NoError(t, err)
				defer m.Close()
				var rotated atomic.Int64
				var sent atomic.Int64
				mux := http.NewServeMux()
				mux.Handle("/dynkey/", m.Endpoints())
				mux.Handle("/.well-known/dynkey/", m.Endpoints())
				mux.Handle("/api/", m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if s, _ := middleware.FromContext(r.Context()); s.Rotated {
						rotated.Add(1)
					}
				})))
				countAPI := roundTripFunc(func(r *http.Request) (*http.Response, error) {
					if strings.HasPrefix(r.URL.Path, "/api/") {
						sent.Add(1)
					}
					return handlerTransport{mux}.RoundTrip(r)
				})
				c, err := client.New(client.Config{BaseURL: "http://dynkey.test", Username: "alice", Password: testUsers["alice"],
					Suite: suite.Name(), IdentityKey: m.IdentityPublicKey(), Policy: tc.pol, HeartbeatInterval: -1,
					Transport: countAPI, Logger: quietLog})
				require.NoError(t, err)
				defer c.Close()
				synctest.Wait() // the first key (for the login) is ready

				suite.arm() // holds the next key, generated after login
				defer suite.disarm()
				require.NoError(t, c.Login(context.Background()))
				hc := c.HTTPClient()
				if tc.first {
					// MaxMessages(1): the first request under the key is
					// counted, the next one is due to rotate.
					resp, err := hc.Get("http://dynkey.test/api/first")
					require.NoError(t, err)
					resp.Body.Close()
					require.Zero(t, rotated.Load())
				}
				before := sent.Load()
				tc.due(c)
				done := make(chan error, 1)
				go func() {
					resp, err := hc.Get("http://dynkey.test/api/rotate")
					if err == nil {
						resp.Body.Close()
					}
					done <- err
				}()
				synctest.Wait() // the request goes as far as it can
				require.Equal(t, before, sent.Load(), "the request waits for its rotation's key")
				suite.disarm()
				require.NoError(t, <-done)
				require.Equal(t, int64(1), rotated.Load(), "the request carried the rotation")
				require.Equal(t, uint64(1), c.Stats().ClientRotations)
			})
		})
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
