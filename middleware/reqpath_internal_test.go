package middleware

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/store/memory"
	"github.com/dynkey/dynkey/wire"
)

// TestLoginWithoutPrimaryIsUnavailable: when the ring holds no primary key
// of the configured suite (a mixed-suite cluster before this instance's
// suite is adopted), a login that got past the open is refused with
// "unavailable" instead of panicking in mintToken. Verified: without the
// nil check in mintToken the handler panicked and the client saw the
// connection drop, not a problem.
func TestLoginWithoutPrimaryIsUnavailable(t *testing.T) {
	clk := newMTClock()
	m, err := New(Options{Store: memory.New(), Authenticator: mtUsers(t), KeyEncryptionKey: mtKEK(3),
		MaintainInterval: -1, Now: clk.Now, Logger: mtQuiet})
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	s := newMTServer(t)
	s.serve(m)
	c, _ := mtClient(t, s, clk.Now)
	require.NoError(t, c.Login(context.Background()))

	r := *m.ring.Load()
	r.primary, r.tokenPrimary = nil, nil // the directory and keys are still served
	m.ring.Store(&r)
	c2, _ := mtClient(t, s, clk.Now)
	err = c2.Login(context.Background())
	var p *wire.Problem
	require.ErrorAs(t, err, &p)
	require.Equal(t, wire.CodeUnavailable, p.Code)
}
