package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/client"
	"github.com/dynkey/dynkey/crypto"
	"github.com/dynkey/dynkey/middleware"
	"github.com/dynkey/dynkey/policy"
	"github.com/dynkey/dynkey/store/memory"
	"github.com/dynkey/dynkey/wire"

	// Every built-in suite.
	_ "github.com/dynkey/dynkey/crypto/pq"
	_ "github.com/dynkey/dynkey/crypto/rsa"
	_ "github.com/dynkey/dynkey/crypto/tink"
)

var builtinSuites = []string{
	"ecies-x25519", "ecies-p256", "rsa-2048", "rsa-3072", "rsa-4096",
	"tink-hpke-x25519", "tink-ecies-p256", "pq-xwing",
}

func withSuite(s string) func(*client.Config) {
	return func(c *client.Config) { c.Suite = s }
}

// TestEveryBuiltinIsRegistered: the names in docs/SUITES.md are exactly
// what the registry knows (the registry also holds test-only suites).
func TestEveryBuiltinIsRegistered(t *testing.T) {
	for _, n := range builtinSuites {
		_, err := crypto.Lookup(n)
		require.NoError(t, err, n)
	}
}

// TestFoundationFlowEverySuite runs the foundation's end-to-end flow for
// every suite over loopback HTTP: login, encrypted calls, a client key
// rotation, a server key rotation learned from a heartbeat, the old server
// key destroyed after its grace window, and recovery of a client that
// missed the announcement. rsa-4096 runs the same flow; its key generation
// (seconds) happens off the request path, and under -short it is skipped.
func TestFoundationFlowEverySuite(t *testing.T) {
	for _, suite := range builtinSuites {
		t.Run(suite, func(t *testing.T) {
			if suite == "rsa-4096" && testing.Short() {
				t.Skip("rsa-4096 key generation takes seconds; skipped with -short")
			}
			clk := newClock()
			o := baseOptions(t, clk, memory.New())
			o.Suite = suite
			s := startServer(t, o)
			c := newSDK(t, s.URL, clk.Now, "alice", nil, withSuite(suite))
			hc := c.HTTPClient()

			require.Equal(t, "hello", mustCall(t, hc, http.MethodPost, s.URL+"/api/echo", "hello").Body)
			require.Equal(t, suite, s.app.lastSession().Suite)

			rotateSDK(t, c, s.URL+"/api/echo")
			require.Equal(t, "after client rotation", mustCall(t, hc, http.MethodPost, s.URL+"/api/echo", "after client rotation").Body)

			require.NoError(t, s.m.Rotate(context.Background()))
			require.NoError(t, c.Heartbeat(context.Background()))
			require.Equal(t, uint64(1), c.Stats().ServerKeyChanges)
			require.Equal(t, "after server rotation", mustCall(t, hc, http.MethodPost, s.URL+"/api/echo", "after server rotation").Body)

			// A second server rotation the client does not hear about,
			// and the grace window passes: the client recovers by itself.
			require.NoError(t, s.m.Rotate(context.Background()))
			clk.Advance(11 * time.Minute)
			require.NoError(t, s.m.Maintain(context.Background()))
			require.Equal(t, "after recovery", mustCall(t, hc, http.MethodPost, s.URL+"/api/echo", "after recovery").Body)
			st := c.Stats()
			require.Equal(t, uint64(1), st.Logins)
			require.GreaterOrEqual(t, st.Recoveries, uint64(1))
		})
	}
}

// TestChangingTheSuite: a running deployment switches from ecies-x25519 to
// pq-xwing (same store and key-encryption key, new configuration, same
// URL). New logins use the new suite; a session of the old suite keeps
// working — calls, heartbeats, its own key rotations, server rotations of its
// suite — until TokenTTL after the switch; a client configured for the old
// suite never silently moves to the new one, and a client of the new suite
// is never handed the old one.
func TestChangingTheSuite(t *testing.T) {
	clk := newClock()
	st := memory.New()
	var front atomic.Value // the deployment behind the one URL
	lb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		front.Load().(http.Handler).ServeHTTP(w, r)
	}))
	t.Cleanup(lb.Close)
	url := lb.URL + "/api/echo"

	v1 := startServer(t, baseOptions(t, clk, st)) // ecies-x25519
	front.Store(v1.srv.Config.Handler)
	pinIdentity(t, lb.URL, v1.m.IdentityPublicKey())  // one store, one identity
	alice := newSDK(t, lb.URL, clk.Now, "alice", nil) // x25519, the default
	mustCall(t, alice.HTTPClient(), http.MethodPost, url, "before the switch")

	o := baseOptions(t, clk, st)
	o.Suite = "pq-xwing"
	o.ServerPolicy = policy.Uptime(time.Hour)
	v2 := startServer(t, o)
	front.Store(v2.srv.Config.Handler) // the redeploy

	// The existing x25519 session keeps working on the new deployment.
	require.Equal(t, "still x25519", mustCall(t, alice.HTTPClient(), http.MethodPost, url, "still x25519").Body)
	require.Equal(t, "ecies-x25519", v2.app.lastSession().Suite)
	rotateSDK(t, alice, url)
	// The old suite's key pair still rotates by policy, and the session
	// learns the new key from a heartbeat.
	oldKey, _ := alice.ServerKeyID()
	clk.Advance(2 * time.Hour)
	require.NoError(t, v2.m.Maintain(context.Background()))
	require.NoError(t, alice.Heartbeat(context.Background()))
	newKey, _ := alice.ServerKeyID()
	require.NotEqual(t, oldKey, newKey)
	require.Equal(t, "after the rotation", mustCall(t, alice.HTTPClient(), http.MethodPost, url, "after the rotation").Body)
	require.Equal(t, uint64(1), alice.Stats().Logins)

	// New logins use pq-xwing.
	bob := newSDK(t, lb.URL, clk.Now, "bob", nil, withSuite("pq-xwing"))
	mustCall(t, bob.HTTPClient(), http.MethodPost, url, "pq")
	require.Equal(t, "pq-xwing", v2.app.lastSession().Suite)

	// A fresh x25519 client cannot log in: no silent switch to pq-xwing.
	carol := newSDK(t, lb.URL, clk.Now, "carol", nil)
	err := carol.Login(context.Background())
	require.Error(t, err)
	var p *wire.Problem
	require.ErrorAs(t, err, &p)
	require.Equal(t, wire.CodeUnsupportedSuite, p.Code)

	// TokenTTL (12h) after the switch, the old suite is retired: alice's
	// session ends, and her client, configured for x25519, refuses to
	// continue in another suite rather than being downgraded or switched.
	clk.Advance(11 * time.Hour)
	require.NoError(t, v2.m.Maintain(context.Background()))
	calls := v2.app.calls.Load()
	status, body, err := call(alice.HTTPClient(), http.MethodPost, url, "too late")
	if err == nil {
		require.NotEqual(t, http.StatusOK, status, body)
	}
	require.Equal(t, calls, v2.app.calls.Load(), "the handler never ran")
	require.Equal(t, "pq", mustCall(t, bob.HTTPClient(), http.MethodPost, url, "pq").Body)
}

// TestTinkKeysetsStoredEncrypted: server keys of the tink suites reach the
// store written encrypted by tink itself (crypto.PrivateKeyEncrypter) under
// the key-encryption key — never a cleartext keyset — and come back after a
// restart with the same KEK; a wrong KEK cannot read them.
func TestTinkKeysetsStoredEncrypted(t *testing.T) {
	for _, suite := range []string{"tink-hpke-x25519", "tink-ecies-p256"} {
		t.Run(suite, func(t *testing.T) {
			clk := newClock()
			st := memory.New()
			o := baseOptions(t, clk, st)
			o.Suite = suite
			s := startServer(t, o)
			c := newSDK(t, s.URL, clk.Now, "alice", nil, withSuite(suite))
			mustCall(t, c.HTTPClient(), http.MethodPost, s.URL+"/api/echo", "tink")

			e, err := st.Get(context.Background(), "dynkey/ring")
			require.NoError(t, err)
			var raw struct {
				Keys []map[string]any `json:"keys"`
			}
			require.NoError(t, json.Unmarshal(e.Value, &raw))
			require.Len(t, raw.Keys, 1)
			require.Equal(t, true, raw.Keys[0]["sealed_by_suite"])
			// The sealed record carries the public keysets in the clear (so
			// a store shows key ids), but no private keyset: tink's private
			// key type URLs never appear in it.
			sealed := string(readRing(t, st).Keys[0].SealedPrivate)
			require.Contains(t, sealed, "PublicKey")
			require.NotContains(t, sealed, "PrivateKey")

			// A restart with the same KEK reads the key and the session
			// goes on; another KEK cannot.
			require.NoError(t, s.m.Close())
			s2 := startServer(t, o)
			c2 := newSDK(t, s2.URL, clk.Now, "alice", nil, withSuite(suite))
			mustCall(t, c2.HTTPClient(), http.MethodPost, s2.URL+"/api/echo", "after restart")
			bad := o
			bad.KeyEncryptionKey = bytes.Repeat([]byte{7}, 32)
			_, err = middleware.New(bad)
			require.Error(t, err)
		})
	}
}

// TestSwitchingBackToALegacySuite: x25519 → p256 → x25519 within TokenTTL:
// the x25519 primary becomes current again (not retired with the legacy
// suites), p256 becomes legacy, and sessions of both keep working.
func TestSwitchingBackToALegacySuite(t *testing.T) {
	clk := newClock()
	st := memory.New()
	a := startServer(t, baseOptions(t, clk, st))
	alice := newSDK(t, a.URL, clk.Now, "alice", nil)
	mustCall(t, alice.HTTPClient(), http.MethodPost, a.URL+"/api/echo", "x25519")

	o := baseOptions(t, clk, st)
	o.Suite = "ecies-p256"
	b := startServer(t, o)
	bob := newSDK(t, b.URL, clk.Now, "bob", nil, withSuite("ecies-p256"))
	mustCall(t, bob.HTTPClient(), http.MethodPost, b.URL+"/api/echo", "p256")

	c := startServer(t, baseOptions(t, clk, st)) // back to ecies-x25519
	legacy := map[string]bool{}
	e, err := st.Get(context.Background(), "dynkey/ring")
	require.NoError(t, err)
	var raw struct {
		Keys []struct {
			Suite       string `json:"suite"`
			State       string `json:"state"`
			LegacySince int64  `json:"legacy_since"`
		} `json:"keys"`
	}
	require.NoError(t, json.Unmarshal(e.Value, &raw))
	for _, k := range raw.Keys {
		require.Equal(t, "primary", k.State)
		legacy[k.Suite] = k.LegacySince != 0
	}
	require.Equal(t, map[string]bool{"ecies-x25519": false, "ecies-p256": true}, legacy)

	// Past TokenTTL, only the legacy suite is retired.
	clk.Advance(12*time.Hour + time.Second)
	require.NoError(t, c.m.Maintain(context.Background()))
	var primaries []string
	for _, k := range readRing(t, st).Keys {
		if k.State == "primary" {
			primaries = append(primaries, k.Suite)
		}
	}
	require.Equal(t, []string{"ecies-x25519"}, primaries)
}
