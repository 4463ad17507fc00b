package middleware

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/crypto"
	_ "github.com/dynkey/dynkey/crypto/tink"
	"github.com/dynkey/dynkey/store/memory"
)

// TestSuiteKeyRingMirrorsLifecycle: for a suite that keeps its own key ring
// (tink's keyset manager), the server key lifecycle is mirrored onto it —
// add and set primary on rotation, disable and delete on destruction — and
// messages are opened through it, so a destroyed key opens nothing even if
// a copy of its private key were still in the snapshot.
func TestSuiteKeyRingMirrorsLifecycle(t *testing.T) {
	clk := newMTClock()
	m, err := New(Options{Authenticator: mtNoUsers, Suite: "tink-hpke-x25519", Store: memory.New(), KeyEncryptionKey: mtKEK(3),
		MaintainInterval: -1, Now: clk.Now, Logger: mtQuiet})
	require.NoError(t, err)
	defer m.Close()
	ids := func() []crypto.KeyID {
		kr := m.ring.Load().keyRings["tink-hpke-x25519"]
		require.NotNil(t, kr)
		return kr.IDs()
	}
	first := m.ring.Load().primary
	require.Equal(t, []crypto.KeyID{first.id}, ids())

	// A message sealed to the first key, from some client key.
	s := first.suite
	ck, err := s.GenerateKey(nil)
	require.NoError(t, err)
	ct, secret, err := s.Seal(nil, first.public, ck, []byte("info"), []byte("aad"), []byte("hello"))
	require.NoError(t, err)

	require.NoError(t, m.Rotate(context.Background()))
	second := m.ring.Load().primary
	require.ElementsMatch(t, []crypto.KeyID{first.id, second.id}, ids(), "decrypt-only keys stay in the ring")
	pt, got, err := m.openMessage(first, ck.Public(), "info", []byte("aad"), ct)
	require.NoError(t, err, "opens during the grace window, through the suite's ring")
	require.Equal(t, "hello", string(pt))
	require.Equal(t, secret, got)

	clk.Advance(11 * time.Minute) // past the default 10 min grace
	require.NoError(t, m.Maintain(context.Background()))
	require.Equal(t, []crypto.KeyID{second.id}, ids(), "destroyed keys are disabled and deleted")
	require.False(t, slices.Contains(ids(), first.id))
	// Even with the old private key object in hand, the ring opens nothing.
	_, _, err = m.openMessage(first, ck.Public(), "info", []byte("aad"), ct)
	require.ErrorIs(t, err, crypto.ErrOpen)
}
