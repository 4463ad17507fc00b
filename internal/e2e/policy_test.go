package e2e

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/client"
	"github.com/dynkey/dynkey/policy"
	"github.com/dynkey/dynkey/store/memory"
	"github.com/dynkey/dynkey/wire"
)

// TestServerDrivenClientRotation: the server's ClientPolicy first asks a
// client to rotate (heartbeat hint), then, past the hard limit, refuses
// the key with "client-key-expired"; the SDK rotates on a heartbeat and
// retries by itself, and the handler runs exactly once.
func TestServerDrivenClientRotation(t *testing.T) {
	clk := newClock()
	o := baseOptions(t, clk, memory.New())
	o.ClientPolicy = policy.MustParse("age>=1m or reject(age>=2m)")
	s := startServer(t, o)
	manual := func(c *client.Config) { c.Policy = policy.Manual() }

	t.Run("hint", func(t *testing.T) {
		c := newSDK(t, s.URL, clk.Now, "alice", nil, manual)
		mustCall(t, c.HTTPClient(), http.MethodPost, s.URL+"/api/echo", "x")
		clk.Advance(90 * time.Second)
		require.NoError(t, c.Heartbeat(context.Background())) // says: rotate
		require.Eventually(t, func() bool {
			return c.Heartbeat(context.Background()) == nil && c.Stats().ClientRotations == 1
		}, 5*time.Second, 10*time.Millisecond)
	})

	t.Run("hard limit", func(t *testing.T) {
		c := newSDK(t, s.URL, clk.Now, "bob", newMITM(), manual)
		hc := c.HTTPClient()
		mustCall(t, hc, http.MethodPost, s.URL+"/api/echo", "x")
		before, _ := c.ClientKeyID()
		calls := s.app.calls.Load()
		clk.Advance(3 * time.Minute) // past reject(age>=2m), no heartbeat heard
		require.Equal(t, "after the hard limit", mustCall(t, hc, http.MethodPost, s.URL+"/api/echo", "after the hard limit").Body)
		require.Equal(t, calls+1, s.app.calls.Load(), "the handler ran exactly once")
		after, _ := c.ClientKeyID()
		require.NotEqual(t, before, after)
		st := c.Stats()
		require.Equal(t, uint64(1), st.ClientRotations)
		require.Equal(t, uint64(1), st.Logins)
	})

	t.Run("an expired key is refused without a rotation", func(t *testing.T) {
		rc := newRawClient(t, s.URL, clk.Now).mustLogin("alice")
		rc.post("/api/x", "").echo(t)
		clk.Advance(3 * time.Minute)
		calls := s.app.calls.Load()
		require.Equal(t, wire.CodeClientKeyExpired, rc.post("/api/x", "").code())
		hb := rc.newMsg(http.MethodPost, wire.PathHeartbeat, nil)
		require.Equal(t, wire.CodeClientKeyExpired, hb.seal(t).send(t, s.URL).code())
		require.Equal(t, calls, s.app.calls.Load())
		// A heartbeat carrying the rotation is accepted, and then the new
		// key works.
		nk := rc.genKey()
		r := rc.newMsg(http.MethodPost, wire.PathHeartbeat, nil).honestRotation(t, nk).seal(t).send(t, s.URL)
		require.Equal(t, http.StatusOK, r.Status, string(r.Body))
		rc.key, rc.keyID = nk, wire.ComputeKeyID(rc.suite.Name(), nk.Public().Bytes())
		rc.post("/api/x", "").echo(t)
		require.Equal(t, calls+1, s.app.calls.Load())
	})
}
