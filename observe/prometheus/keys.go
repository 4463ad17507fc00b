package prometheus

import (
	"fmt"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"

	"github.com/dynkey/dynkey/middleware"
)

// KeyLister is what [RegisterKeys] reads: *middleware.Middleware.
type KeyLister interface {
	Keys() []middleware.KeyInfo
}

// RegisterKeys registers on reg a collector that reads m.Keys() at every
// scrape (no store access: the instance's snapshot of the key ring) and
// exports, with the same Namespace and ConstLabels as [New]:
//
//   - dynkey_server_keys{suite,state}: the number of server keys by state
//     (primary, decrypt-only, destroyed);
//   - dynkey_server_key_primary_age_seconds{suite}: how long each suite's
//     primary key has been primary (alert when it outgrows the server
//     policy: rotation is stuck);
//   - dynkey_key_ring_epoch: the epoch of the ring (grows with every
//     change; instances that disagree for long do not share a store).
//
// It fails if reg is nil or the names are taken.
func RegisterKeys(reg prom.Registerer, m KeyLister, o Options) error {
	if reg == nil {
		return ErrNoRegistry
	}
	if o.Namespace == "" {
		o.Namespace = "dynkey"
	}
	c := &keysCollector{
		m: m,
		keys: prom.NewDesc(prom.BuildFQName(o.Namespace, "", "server_keys"),
			"Server keys in this instance's key ring, by suite and state.", []string{"suite", "state"}, o.ConstLabels),
		age: prom.NewDesc(prom.BuildFQName(o.Namespace, "", "server_key_primary_age_seconds"),
			"How long each suite's primary server key has been primary.", []string{"suite"}, o.ConstLabels),
		epoch: prom.NewDesc(prom.BuildFQName(o.Namespace, "", "key_ring_epoch"),
			"Epoch of this instance's key ring.", nil, o.ConstLabels),
	}
	if err := reg.Register(c); err != nil {
		return fmt.Errorf("dynkey/observe/prometheus: %w", err)
	}
	return nil
}

type keysCollector struct {
	m                KeyLister
	keys, age, epoch *prom.Desc
}

func (c *keysCollector) Describe(ch chan<- *prom.Desc) {
	ch <- c.keys
	ch <- c.age
	ch <- c.epoch
}

func (c *keysCollector) Collect(ch chan<- prom.Metric) {
	keys := c.m.Keys()
	type sk struct{ suite, state string }
	counts := map[sk]int{}
	var epoch uint64
	now := time.Now()
	for _, k := range keys {
		suite := bounded(k.Suite)
		counts[sk{suite, bounded(string(k.State))}]++
		epoch = max(epoch, k.Epoch)
		if k.State == middleware.StatePrimary {
			ch <- prom.MustNewConstMetric(c.age, prom.GaugeValue, max(0, now.Sub(k.PrimarySince).Seconds()), suite)
		}
	}
	for k, n := range counts {
		ch <- prom.MustNewConstMetric(c.keys, prom.GaugeValue, float64(n), k.suite, k.state)
	}
	ch <- prom.MustNewConstMetric(c.epoch, prom.GaugeValue, float64(epoch))
}
