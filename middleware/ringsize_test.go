package middleware

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/policy"
	"github.com/dynkey/dynkey/store/memory"
)

// TestRingSizeBoundedAtFastRotation rotates the server key every 2s for a
// simulated 12h (fake clock, Maintain every 2s) with a 12h TokenTTL and
// hourly token keys, and checks that the ring never holds more server keys
// than the grace window needs (ServerKeyGrace / 2s + 2) nor more token keys
// than TokenTTL needs (TokenTTL / TokenKeyRotation + 2), whatever the
// rotation rate. Before token keys had their own ring, every retired server
// key stayed for TokenTTL: 21,600 keys (~7 MB) at this rate.
//
// Verified: with retired server keys given a TokenUntil and destroyed
// records kept until it, as before, the test fails at 22s of simulated
// time (12 server keys).
func TestRingSizeBoundedAtFastRotation(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates 21,600 rotations")
	}
	const (
		step  = 2 * time.Second
		grace = 20 * time.Second
		ttl   = 12 * time.Hour
		tkRot = time.Hour
	)
	clk := newMTClock()
	st := memory.New()
	m, err := New(Options{Authenticator: mtUsers(t), Store: st, KeyEncryptionKey: mtKEK(9), ServerPolicy: policy.MaxAge(step),
		ServerKeyGrace: grace, TokenTTL: ttl, TokenKeyRotation: tkRot,
		MaintainInterval: -1, RingPollInterval: -1, Now: clk.Now, Logger: mtQuiet})
	require.NoError(t, err)
	defer m.Close()
	ctx := context.Background()
	maxServer, maxToken, maxBytes := 0, 0, 0
	rotations := 0
	last := m.ring.Load().primary.id
	for elapsed := time.Duration(0); elapsed < ttl; elapsed += step {
		clk.Advance(step)
		require.NoError(t, m.Maintain(ctx))
		r := m.ring.Load()
		if r.primary.id != last {
			rotations++
			last = r.primary.id
		}
		maxServer = max(maxServer, len(r.rec.Keys))
		maxToken = max(maxToken, len(r.rec.TokenKeys))
		if e, err := st.Get(ctx, ringKey); err == nil {
			maxBytes = max(maxBytes, len(e.Value))
		}
		require.LessOrEqual(t, len(r.rec.Keys), int(grace/step)+2, "server keys at %v", elapsed)
		require.LessOrEqual(t, len(r.rec.TokenKeys), int(ttl/tkRot)+2, "token keys at %v", elapsed)
	}
	require.GreaterOrEqual(t, rotations, int(ttl/step)-1, "the server key did not rotate every 2s")
	t.Logf("12h at one rotation per 2s: %d rotations; ring at most %d server keys, %d token keys, %d bytes",
		rotations, maxServer, maxToken, maxBytes)
}
