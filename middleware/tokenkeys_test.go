package middleware

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/store/memory"
)

// TestTokenOutlivesTokenKeyRotation: a session's token stays valid across
// token key rotations (the retired token key is kept TokenTTL + grace) and
// across any number of server key rotations; the retired token key is
// dropped once its last token has expired.
func TestTokenOutlivesTokenKeyRotation(t *testing.T) {
	ctx := context.Background()
	clk := newMTClock()
	st := memory.New()
	m, err := New(Options{Store: st, KeyEncryptionKey: mtKEK(4), Authenticator: mtUsers(t), TokenKeyRotation: time.Hour,
		ServerKeyGrace: time.Minute, TokenTTL: 3 * time.Hour, MaintainInterval: -1, RingPollInterval: -1, Now: clk.Now, Logger: mtQuiet})
	require.NoError(t, err)
	defer m.Close()
	s := newMTServer(t)
	s.serve(m)
	c, hc := mtClient(t, s, clk.Now)
	mtEcho(t, s, hc, "login")
	first := mtRing(t, st).TokenKeys
	require.Len(t, first, 1)

	for range 2 * 60 { // two hours, a server key rotation a minute
		clk.Advance(time.Minute)
		require.NoError(t, m.Rotate(ctx))
		require.NoError(t, m.Maintain(ctx))
	}
	rec := mtRing(t, st)
	require.Len(t, rec.TokenKeys, 3, "two rotations of the token key, both retired keys kept")
	require.LessOrEqual(t, len(rec.Keys), 3, "server keys are dropped once destroyed")
	mtEcho(t, s, hc, "two hours later")
	require.Equal(t, uint64(1), c.Stats().Logins, "the token sealed under the first token key still opens")

	// Past TokenTTL + grace after its retirement, the first token key goes.
	clk.Advance(3*time.Hour + time.Minute)
	require.NoError(t, m.Maintain(ctx))
	for _, tk := range mtRing(t, st).TokenKeys {
		require.NotEqual(t, first[0].ID, tk.ID)
	}
}

// TestLegacyTokenKey: a ring written before token keys had their own ring
// holds a token key in each server key record, and tokens name the server
// key. Such a token still opens until TokenTTL after that key's retirement
// (plus grace), the record being kept destroyed until then; then it is
// token-invalid (the client logs in again).
func TestLegacyTokenKey(t *testing.T) {
	ctx := context.Background()
	clk := newMTClock()
	st := memory.New()
	kek := mtKEK(5)
	const ttl = 2 * time.Hour
	m, err := New(Options{Authenticator: mtUsers(t), Store: st, KeyEncryptionKey: kek, ServerKeyGrace: time.Minute, TokenTTL: ttl,
		MaintainInterval: -1, RingPollInterval: -1, Now: clk.Now, Logger: mtQuiet})
	require.NoError(t, err)
	defer m.Close()
	legacyID := m.ring.Load().primary.id
	rtForge(t, st, kek, func(ks *kekSet, rec *ringRecord) {
		var err error
		rec.Keys[0].SealedTokenKey, err = ks.seal(m.o.Rand, "token key", rec.Keys[0].ID, bytes.Repeat([]byte{7}, 32))
		require.NoError(t, err)
	})
	require.NoError(t, m.reload(ctx))
	lk := m.ring.Load().tokenKeys[legacyID]
	require.NotNil(t, lk, "the legacy token key is not loaded")

	// A token as the previous version minted it: the server key's id.
	saved := *m.ring.Load()
	r := saved
	r.tokenPrimary = lk
	m.ring.Store(&r)
	now := clk.Now()
	tok, err := m.mintToken(&claims{Issued: now.UnixMilli(), STime: now.UnixMilli(), Expires: now.Add(ttl).UnixMilli(), Username: "alice"})
	require.NoError(t, err)
	require.Equal(t, legacyID[:], tok[1:tokenHeader])
	m.ring.Store(&saved)

	require.NoError(t, m.Rotate(ctx))
	clk.Advance(2 * time.Minute)
	require.NoError(t, m.Maintain(ctx))
	k, ok := mtFind(mtRing(t, st), legacyID.String())
	require.True(t, ok, "the legacy record stays for its token key")
	require.Equal(t, StateDestroyed, k.State)
	_, err = m.openToken(ctx, tok, clk.Now())
	require.NoError(t, err, "a legacy token stopped opening before it expired")

	clk.Advance(ttl)
	require.NoError(t, m.Maintain(ctx))
	_, ok = mtFind(mtRing(t, st), legacyID.String())
	require.False(t, ok)
	_, err = m.openToken(ctx, tok, clk.Now())
	require.ErrorIs(t, err, errTokenInvalid)
}
