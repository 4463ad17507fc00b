package prometheus_test

import (
	"errors"
	"testing"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/middleware"
	dkprom "github.com/dynkey/dynkey/observe/prometheus"
	"github.com/dynkey/dynkey/store"
	"github.com/dynkey/dynkey/wire"
)

func TestNewNeedsARegistry(t *testing.T) {
	_, err := dkprom.New(nil, dkprom.Options{})
	require.ErrorIs(t, err, dkprom.ErrNoRegistry)
}

func TestNewRefusesADuplicate(t *testing.T) {
	reg := prom.NewRegistry()
	_, err := dkprom.New(reg, dkprom.Options{})
	require.NoError(t, err)
	_, err = dkprom.New(reg, dkprom.Options{})
	require.Error(t, err, "a second observer on the same registry")
	_, err = dkprom.New(reg, dkprom.Options{Namespace: "other"})
	require.NoError(t, err, "another namespace")
}

func TestCounts(t *testing.T) {
	reg := prom.NewRegistry()
	o, err := dkprom.New(reg, dkprom.Options{ConstLabels: prom.Labels{"role": "api"}})
	require.NoError(t, err)
	boom := errors.New("down")
	for _, tc := range []struct {
		name   string
		do     func()
		metric string
		want   float64 // series count after the call, labels ignored: sum below
	}{
		{"refusal", func() { o.Refused(wire.CodeReplay) }, "dynkey_requests_total", 1},
		{"unknown code is other", func() { o.Refused(wire.Code("x-" + string(make([]byte, 40)))) }, "dynkey_requests_total", 2},
		{"login failed", func() { o.Refused(wire.CodeLoginFailed) }, "dynkey_login_attempts_total", 1},
		{"login throttled", func() { o.Refused(wire.CodeLoginThrottled) }, "dynkey_login_attempts_total", 2},
		{"login ok", func() { o.LoggedIn("ecies-x25519") }, "dynkey_sessions_created_total", 1},
		{"rotation", func() {
			o.Rotated(middleware.Rotation{Side: middleware.SideClient, Suite: "ecies-x25519", Reason: "request"})
		}, "dynkey_rotations_total", 1},
		{"opened", func() { o.Opened("ecies-x25519", time.Millisecond) }, "dynkey_replay_ids_recorded_total", 1},
		{"store not found is no error", func() { o.StoreDone(middleware.StoreGet, time.Millisecond, store.ErrNotFound) }, "dynkey_store_errors_total", 0},
		{"store conflict is no error", func() { o.StoreDone(middleware.StoreCompareAndSwap, time.Millisecond, store.ErrConflict) }, "dynkey_store_errors_total", 0},
		{"store failure", func() { o.StoreDone(middleware.StoreMarkSeen, time.Millisecond, boom) }, "dynkey_store_errors_total", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.do()
			fams, err := reg.Gather()
			require.NoError(t, err)
			sum := 0.0
			for _, f := range fams {
				if f.GetName() != tc.metric {
					continue
				}
				for _, m := range f.GetMetric() {
					sum += m.GetCounter().GetValue()
					for _, l := range m.GetLabel() {
						require.LessOrEqual(t, len(l.GetValue()), 32, "bounded label %s", l.GetName())
					}
				}
			}
			require.Equal(t, tc.want, sum)
		})
	}
	n, err := testutil.GatherAndCount(reg, "dynkey_requests_total")
	require.NoError(t, err)
	require.Equal(t, len(wire.Codes())+2, n, "every code's series exists from the start, plus opened and other")
}

// BenchmarkRequestObservations is what one protected request costs the
// observer: an open, a seal and two store operations (session read, replay
// id).
func BenchmarkRequestObservations(b *testing.B) {
	o, err := dkprom.New(prom.NewRegistry(), dkprom.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		o.StoreDone(middleware.StoreGet, time.Microsecond, nil)
		o.StoreDone(middleware.StoreMarkSeen, time.Microsecond, nil)
		o.Opened("ecies-x25519", 100*time.Microsecond)
		o.Sealed("ecies-x25519", 20*time.Microsecond)
	}
}

type fixedKeys []middleware.KeyInfo

func (f fixedKeys) Keys() []middleware.KeyInfo { return f }

func TestRegisterKeys(t *testing.T) {
	require.ErrorIs(t, dkprom.RegisterKeys(nil, fixedKeys{}, dkprom.Options{}), dkprom.ErrNoRegistry)
	reg := prom.NewRegistry()
	now := time.Now()
	keys := fixedKeys{
		{ID: "a", Suite: "ecies-x25519", State: middleware.StatePrimary, Epoch: 7, PrimarySince: now.Add(-time.Hour)},
		{ID: "b", Suite: "ecies-x25519", State: middleware.StateDecryptOnly, Epoch: 7, PrimarySince: now.Add(-25 * time.Hour)},
		{ID: "c", Suite: "ecies-x25519", State: middleware.StateDestroyed, Epoch: 7, PrimarySince: now.Add(-49 * time.Hour)},
		{ID: "d", Suite: "ecies-x25519", State: middleware.StateDestroyed, Epoch: 7, PrimarySince: now.Add(-73 * time.Hour)},
	}
	require.NoError(t, dkprom.RegisterKeys(reg, keys, dkprom.Options{}))
	require.Error(t, dkprom.RegisterKeys(reg, keys, dkprom.Options{}), "registered twice")
	fams, err := reg.Gather()
	require.NoError(t, err)
	got := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			name := f.GetName()
			for _, l := range m.GetLabel() {
				if l.GetName() == "state" {
					name += "/" + l.GetValue()
				}
			}
			got[name] = m.GetGauge().GetValue()
		}
	}
	require.Equal(t, 1.0, got["dynkey_server_keys/primary"])
	require.Equal(t, 1.0, got["dynkey_server_keys/decrypt-only"])
	require.Equal(t, 2.0, got["dynkey_server_keys/destroyed"])
	require.Equal(t, 7.0, got["dynkey_key_ring_epoch"])
	require.InDelta(t, 3600, got["dynkey_server_key_primary_age_seconds"], 60)
}
