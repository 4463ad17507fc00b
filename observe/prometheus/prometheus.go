// Package prometheus exports what a dynkey server does as Prometheus
// metrics: an [Observer] that implements [middleware.Observer] and
// [middleware.StoreObserver], registered on a registry the caller passes
// (nothing global).
//
//	reg := prometheus.NewRegistry()
//	obs, err := dkprom.New(reg, dkprom.Options{})
//	m, err := middleware.New(middleware.Options{Observer: obs, …})
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// # Metrics
//
// Every label value is bounded: problem codes (unknown ones are "other"),
// suite names of the registered suites, rotation sides and reasons, store
// operations. No username, key id, message id or path is ever a label.
//
//   - dynkey_requests_total{outcome,code}: outcome "opened" (code "") for
//     every envelope that opened (login, heartbeat, protected route), or
//     "refused" with the problem code. A login whose envelope opened and
//     whose password was wrong counts once in each.
//   - dynkey_rotations_total{side,reason,suite}: key rotations this
//     instance made: side "server" (reason "policy" or "manual") or
//     "client" ("request" or "heartbeat").
//   - dynkey_open_seconds{suite}, dynkey_seal_seconds{suite}: histograms
//     of the time to open a request envelope (all checks, store reads, the
//     public-key operation) and to seal a response.
//   - dynkey_sessions_created_total{suite}: sessions created (successful
//     logins). Sessions end silently when their token expires, and the
//     store cannot count them cheaply, so there is no gauge: the number
//     of live sessions is at most
//     sum(increase(dynkey_sessions_created_total[<TokenTTL>])) over all
//     instances.
//   - dynkey_replay_ids_recorded_total: message ids recorded in the replay
//     set (one per opened envelope). The set holds each for the replay
//     window (2×FreshnessWindow + 1m), so its size is about
//     sum(increase(dynkey_replay_ids_recorded_total[<window>])).
//   - dynkey_login_attempts_total{outcome}: password checks and the logins
//     refused before one: "success", "failed", "throttled", "busy".
//   - dynkey_store_operation_seconds{op}: histogram of store operations
//     ("get", "compare_and_swap", "delete", "mark_seen", "list_keys",
//     "scrub"); dynkey_store_errors_total{op}: those that failed
//     (not-found and version conflicts are answers, not failures).
//
// [RegisterKeys] adds gauges read from the key ring at each scrape:
// dynkey_server_keys{suite,state}, dynkey_server_key_primary_age_seconds
// and dynkey_key_ring_epoch.
//
// docs/OPERATIONS.md "Metrics" has example alerts.
package prometheus

import (
	"errors"
	"fmt"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"

	"github.com/dynkey/dynkey/middleware"
	"github.com/dynkey/dynkey/wire"
)

// Options configures an [Observer]. The zero value is the default.
type Options struct {
	// Namespace prefixes every metric name. Default "dynkey".
	Namespace string
	// ConstLabels are added to every metric (e.g. {"instance_role":
	// "api"}). Default none.
	ConstLabels prom.Labels
	// Buckets are the histogram buckets of open, seal and store latency,
	// in seconds. Default [DefaultBuckets].
	Buckets []float64
}

// DefaultBuckets are the latency buckets: 50 µs (an AEAD-only message) to
// 2.5 s (an RSA key, a slow store).
var DefaultBuckets = []float64{50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1, 2.5}

// Observer counts what a dynkey middleware does. Safe for concurrent use.
// Set it as middleware.Options.Observer.
type Observer struct {
	requests   *prom.CounterVec
	rotations  *prom.CounterVec
	open, seal *prom.HistogramVec
	sessions   *prom.CounterVec
	replayIDs  prom.Counter
	logins     *prom.CounterVec
	storeOps   *prom.HistogramVec
	storeErrs  *prom.CounterVec
	codes      map[wire.Code]bool
}

var (
	_ middleware.Observer      = (*Observer)(nil)
	_ middleware.StoreObserver = (*Observer)(nil)
)

// ErrNoRegistry is returned by [New] without a registry.
var ErrNoRegistry = errors.New("dynkey/observe/prometheus: a Registerer is required (nothing is registered globally)")

// New creates the metrics and registers them on reg. It fails if reg is
// nil or a metric of the same name is already registered there (two
// middlewares sharing a registry need distinct ConstLabels or Namespace).
func New(reg prom.Registerer, o Options) (*Observer, error) {
	if reg == nil {
		return nil, ErrNoRegistry
	}
	if o.Namespace == "" {
		o.Namespace = "dynkey"
	}
	if o.Buckets == nil {
		o.Buckets = DefaultBuckets
	}
	copts := func(name, help string) prom.CounterOpts {
		return prom.CounterOpts{Namespace: o.Namespace, Name: name, Help: help, ConstLabels: o.ConstLabels}
	}
	hopts := func(name, help string) prom.HistogramOpts {
		return prom.HistogramOpts{Namespace: o.Namespace, Name: name, Help: help, ConstLabels: o.ConstLabels, Buckets: o.Buckets}
	}
	x := &Observer{
		requests: prom.NewCounterVec(copts("requests_total",
			"Requests by outcome: opened (an envelope opened) or refused, with the problem code."), []string{"outcome", "code"}),
		rotations: prom.NewCounterVec(copts("rotations_total",
			"Key rotations made by this instance, by side (server, client), reason and suite."), []string{"side", "reason", "suite"}),
		open: prom.NewHistogramVec(hopts("open_seconds",
			"Time to open a request envelope, by suite."), []string{"suite"}),
		seal: prom.NewHistogramVec(hopts("seal_seconds",
			"Time to seal a response, by suite."), []string{"suite"}),
		sessions: prom.NewCounterVec(copts("sessions_created_total",
			"Sessions created by successful logins, by suite."), []string{"suite"}),
		replayIDs: prom.NewCounter(copts("replay_ids_recorded_total",
			"Message ids recorded in the replay set.")),
		logins: prom.NewCounterVec(copts("login_attempts_total",
			"Login attempts by outcome: success, failed, throttled, busy."), []string{"outcome"}),
		storeOps: prom.NewHistogramVec(hopts("store_operation_seconds",
			"Store operations by operation."), []string{"op"}),
		storeErrs: prom.NewCounterVec(copts("store_errors_total",
			"Failed store operations by operation."), []string{"op"}),
		codes: map[wire.Code]bool{},
	}
	for _, c := range []prom.Collector{x.requests, x.rotations, x.open, x.seal, x.sessions, x.replayIDs, x.logins, x.storeOps, x.storeErrs} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("dynkey/observe/prometheus: %w", err)
		}
	}
	// Every series an alert may rate() exists from the start, at 0.
	for _, c := range wire.Codes() {
		x.codes[c] = true
		x.requests.WithLabelValues("refused", string(c))
	}
	x.requests.WithLabelValues("opened", "")
	for _, oc := range []string{"success", "failed", "throttled", "busy"} {
		x.logins.WithLabelValues(oc)
	}
	for _, op := range storeOps {
		x.storeErrs.WithLabelValues(op)
	}
	return x, nil
}

var storeOps = []string{middleware.StoreGet, middleware.StoreCompareAndSwap, middleware.StoreDelete,
	middleware.StoreMarkSeen, middleware.StoreListKeys, middleware.StoreScrub}

// Refused counts a refusal by code, and a refused login attempt.
func (x *Observer) Refused(code wire.Code) {
	c := string(code)
	if !x.codes[code] {
		c = "other"
	}
	x.requests.WithLabelValues("refused", c).Inc()
	switch code {
	case wire.CodeLoginFailed:
		x.logins.WithLabelValues("failed").Inc()
	case wire.CodeLoginThrottled:
		x.logins.WithLabelValues("throttled").Inc()
	case wire.CodeLoginBusy:
		x.logins.WithLabelValues("busy").Inc()
	}
}

// Rotated counts a rotation.
func (x *Observer) Rotated(e middleware.Rotation) {
	x.rotations.WithLabelValues(bounded(e.Side), bounded(e.Reason), bounded(e.Suite)).Inc()
}

// Opened observes the time to open an envelope and counts its id.
func (x *Observer) Opened(suite string, d time.Duration) {
	x.requests.WithLabelValues("opened", "").Inc()
	x.open.WithLabelValues(bounded(suite)).Observe(d.Seconds())
	x.replayIDs.Inc()
}

// Sealed observes the time to seal a response.
func (x *Observer) Sealed(suite string, d time.Duration) {
	x.seal.WithLabelValues(bounded(suite)).Observe(d.Seconds())
}

// LoggedIn counts a successful login and the session it created.
func (x *Observer) LoggedIn(suite string) {
	x.logins.WithLabelValues("success").Inc()
	x.sessions.WithLabelValues(bounded(suite)).Inc()
}

// StoreDone observes a store operation, and counts it if it failed.
func (x *Observer) StoreDone(op string, d time.Duration, err error) {
	op = bounded(op)
	x.storeOps.WithLabelValues(op).Observe(d.Seconds())
	if middleware.StoreFailed(err) {
		x.storeErrs.WithLabelValues(op).Inc()
	}
}

// bounded keeps a label value the middleware passes (a suite, a side, a
// reason, an operation: names from a fixed set) but cuts anything that
// does not look like one, so a bug cannot explode the series count.
func bounded(s string) string {
	if len(s) == 0 || len(s) > 32 {
		return "other"
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return "other"
		}
	}
	return s
}
