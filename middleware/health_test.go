package middleware

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/store"
	"github.com/dynkey/dynkey/store/memory"
)

// mtFlakyStore fails every operation while down is set.
type mtFlakyStore struct {
	*memory.Store
	down atomic.Bool
}

var errFlaky = errors.New("flaky: down")

func (s *mtFlakyStore) Get(ctx context.Context, key string) (store.Entry, error) {
	if s.down.Load() {
		return store.Entry{}, errFlaky
	}
	return s.Store.Get(ctx, key)
}

func getHealth(t *testing.T, h http.Handler) (int, map[string]string) {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	var out map[string]string
	require.NoError(t, json.Unmarshal(b, &out), string(b))
	return resp.StatusCode, out
}

func TestReadiness(t *testing.T) {
	st := &mtFlakyStore{Store: memory.New()}
	m, err := New(Options{Authenticator: mtNoUsers, MaintainInterval: -1, Store: st, KeyEncryptionKey: mtKEK(4), Logger: mtQuiet})
	require.NoError(t, err)
	defer m.Close()

	status, body := getHealth(t, LivenessHandler())
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "alive", body["status"])

	status, body = getHealth(t, m.ReadinessHandler())
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, map[string]string{"status": "ready"}, body)

	for _, tc := range []struct {
		name   string
		break_ func() (undo func())
		reason string
	}{
		{"store down", func() func() {
			st.down.Store(true)
			return func() { st.down.Store(false) }
		}, ReasonStoreUnreachable},
		{"ring refused", func() func() {
			e := error(ErrRecordRefused)
			m.ringErr.Store(&e)
			return func() { m.ringErr.Store(nil) }
		}, ReasonRingRefused},
		{"no primary", func() func() {
			r := m.ring.Load()
			c := *r
			c.primaries = nil
			m.ring.Store(&c)
			return func() { m.ring.Store(r) }
		}, ReasonNoPrimary},
		{"no ring", func() func() {
			r := m.ring.Load()
			m.ring.Store(nil)
			return func() { m.ring.Store(r) }
		}, ReasonRingNotLoaded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			undo := tc.break_()
			defer undo()
			status, body := getHealth(t, m.ReadinessHandler())
			require.Equal(t, http.StatusServiceUnavailable, status)
			require.Equal(t, map[string]string{"status": "not ready", "reason": tc.reason}, body)
			var nr *NotReadyError
			require.ErrorAs(t, m.Ready(context.Background()), &nr)
			require.Equal(t, tc.reason, nr.Reason)
			require.ErrorIs(t, nr, ErrNotReady)
		})
	}
	status, _ = getHealth(t, m.ReadinessHandler())
	require.Equal(t, http.StatusOK, status, "ready again")
}

func TestKeys(t *testing.T) {
	clk := newMTClock()
	m, err := New(Options{Authenticator: mtNoUsers, MaintainInterval: -1, Logger: mtQuiet, Now: clk.Now})
	require.NoError(t, err)
	defer m.Close()
	first := m.Keys()
	require.Len(t, first, 1)
	require.Equal(t, StatePrimary, first[0].State)
	clk.Advance(time.Minute)
	require.NoError(t, m.Rotate(context.Background()))
	keys := m.Keys()
	require.Len(t, keys, 2)
	require.Equal(t, StatePrimary, keys[0].State)
	require.NotEqual(t, first[0].ID, keys[0].ID)
	require.Equal(t, first[0].ID, keys[1].ID)
	require.Equal(t, StateDecryptOnly, keys[1].State)
	require.Equal(t, keys[1].PrimarySince.Add(time.Minute), keys[0].PrimarySince)
	require.True(t, keys[1].DecryptUntil.After(keys[0].PrimarySince))
	require.Greater(t, keys[0].Epoch, first[0].Epoch)
	require.Equal(t, keys[0].Epoch, keys[1].Epoch)

	// The JSON for dashboards holds only public fields.
	srv := httptest.NewServer(m.KeysHandler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var out struct {
		Keys []map[string]any `json:"keys"`
	}
	require.NoError(t, json.Unmarshal(b, &out))
	require.Len(t, out.Keys, 2)
	for _, k := range out.Keys {
		for f := range k {
			require.Contains(t, []string{"id", "suite", "state", "epoch", "primary_since", "decrypt_until", "token_until", "legacy"}, f)
		}
	}
}
