package middleware

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/store"
	"github.com/dynkey/dynkey/store/memory"
)

func TestLogRoute(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    Request
		want string
	}{
		{"pattern wins", Request{Route: "/users/{id}", EscapedPath: "/users/42"}, "/users/{id}"},
		{"words stay", Request{EscapedPath: "/api/orders"}, "/api/orders"},
		{"numbers redacted", Request{EscapedPath: "/api/users/12345/orders"}, "/api/users/:id/orders"},
		{"hex redacted", Request{EscapedPath: "/files/9f86d081884c7d65"}, "/files/:id"},
		{"uuid redacted", Request{EscapedPath: "/o/3fa85f64-5717-4562-b3fc-2c963f66afa6"}, "/o/:id"},
		{"escapes redacted", Request{EscapedPath: "/u/alice%40example.com"}, "/u/:id"},
		{"long words redacted", Request{EscapedPath: "/u/" + strings.Repeat("a", 40)}, "/u/:id"},
		{"depth bounded", Request{EscapedPath: "/a/b/c/d/e/f"}, "/a/b/c/d/…"},
		{"root", Request{EscapedPath: "/"}, "/"},
		{"long pattern cut", Request{Route: strings.Repeat("p", 300)}, strings.Repeat("p", maxRouteLen) + "…"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, logRoute(&tc.r))
		})
	}
}

// A flood of refusals writes logBurst lines, then one per second; the
// next line says how many were dropped. On a fake clock.
func TestRefusalLogIsRateLimited(t *testing.T) {
	clk := newMTClock()
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	m, err := New(Options{Authenticator: mtNoUsers, MaintainInterval: -1, Logger: logger, Now: clk.Now})
	require.NoError(t, err)
	defer m.Close()
	h := m.Handler(http.NotFoundHandler())
	flood := func(n int) {
		for range n {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/api/orders/123", strings.NewReader("plain")))
			require.Equal(t, http.StatusUnsupportedMediaType, w.Code)
		}
	}
	refusals := func() []map[string]any {
		var out []map[string]any
		for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			var e map[string]any
			require.NoError(t, json.Unmarshal([]byte(l), &e))
			if e["msg"] == "dynkey: request refused" {
				out = append(out, e)
			}
		}
		return out
	}
	buf.Reset()
	flood(1000)
	lines := refusals()
	require.Len(t, lines, logBurst)
	require.Equal(t, "/api/orders/:id", lines[0]["route"])
	clk.Advance(3 * time.Second) // three tokens
	flood(5)
	lines = refusals()
	require.Len(t, lines, logBurst+3)
	require.EqualValues(t, 1000-logBurst, lines[logBurst]["suppressed"])
	require.Nil(t, lines[logBurst+1]["suppressed"])
	require.EqualValues(t, "not-encrypted", lines[logBurst+2]["code"])
}

// The limiter keeps a bounded number of buckets.
func TestLogLimiterBounded(t *testing.T) {
	var l logLimiter
	now := time.Now()
	for i := range 10 * logKinds {
		l.allow(strings.Repeat("k", i+1), now)
	}
	require.LessOrEqual(t, len(l.buckets), logKinds+1)
}

// The observed store keeps the optional interfaces the store has, and
// only those, in every combination.
func TestObservedStoreKeepsOptionalInterfaces(t *testing.T) {
	base := mtFailingStore{errors.New("x")}
	type (
		ls  struct{ store.Lister }
		sc  struct{ store.Scrubber }
		wa  struct{ store.Watcher }
		lsc struct {
			store.Store
			store.Lister
			store.Scrubber
		}
	)
	var (
		l = memory.New()
		s = scrubberFunc(func(context.Context) error { return nil })
		w = watcherFunc(func(context.Context, string) <-chan struct{} { return nil })
	)
	for _, tc := range []struct {
		name          string
		st            store.Store
		lister, scrub bool
		watch         bool
	}{
		{"none", base, false, false, false},
		{"memory: lister", l, true, false, false},
		{"scrubber", struct {
			store.Store
			sc
		}{base, sc{s}}, false, true, false},
		{"watcher", struct {
			store.Store
			wa
		}{base, wa{w}}, false, false, true},
		{"lister scrubber", lsc{base, l, s}, true, true, false},
		{"lister watcher", struct {
			store.Store
			ls
			wa
		}{base, ls{l}, wa{w}}, true, false, true},
		{"scrubber watcher", struct {
			store.Store
			sc
			wa
		}{base, sc{s}, wa{w}}, false, true, true},
		{"all", struct {
			store.Store
			ls
			sc
			wa
		}{base, ls{l}, sc{s}, wa{w}}, true, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := observeStore(tc.st, nil, &Middleware{})
			_, isLister := o.(store.Lister)
			_, isScrubber := o.(store.Scrubber)
			_, isWatcher := o.(store.Watcher)
			require.Equal(t, tc.lister, isLister, "Lister")
			require.Equal(t, tc.scrub, isScrubber, "Scrubber")
			require.Equal(t, tc.watch, isWatcher, "Watcher")
			require.Equal(t, fmt.Sprintf("%T", tc.st), fmt.Sprintf("%T", unwrapStore(o)))
		})
	}
}

type scrubberFunc func(context.Context) error

func (f scrubberFunc) Scrub(ctx context.Context) error { return f(ctx) }

type watcherFunc func(context.Context, string) <-chan struct{}

func (f watcherFunc) Watch(ctx context.Context, key string) <-chan struct{} { return f(ctx, key) }

type recordingStoreObserver struct {
	NopObserver
	ops []string
	err []error
}

func (r *recordingStoreObserver) StoreDone(op string, _ time.Duration, err error) {
	r.ops, r.err = append(r.ops, op), append(r.err, err)
}

// A StoreObserver sees every store operation, the store failures are
// logged at Error and the store's answers (not found) are not.
func TestStoreObserverAndStoreErrorLog(t *testing.T) {
	var buf bytes.Buffer
	rec := &recordingStoreObserver{}
	st := &mtFlakyStore{Store: memory.New()}
	m, err := New(Options{Authenticator: mtNoUsers, MaintainInterval: -1, Store: st, KeyEncryptionKey: mtKEK(3),
		Observer: rec, Logger: slog.New(slog.NewJSONHandler(&buf, nil))})
	require.NoError(t, err)
	defer m.Close()
	require.Contains(t, rec.ops, StoreGet)
	require.Contains(t, rec.ops, StoreCompareAndSwap)
	require.NotContains(t, buf.String(), "store operation failed", "not-found is an answer")
	st.down.Store(true)
	require.ErrorIs(t, m.Ready(context.Background()), ErrNotReady)
	require.Contains(t, buf.String(), `"msg":"dynkey: store operation failed","op":"get","err":"flaky: down"`)
	require.True(t, StoreFailed(rec.err[len(rec.err)-1]))
}

// BenchmarkRefusalLogFlood is the cost of a refusal's log line during a
// flood, once the bucket is empty (the line is dropped and counted).
func BenchmarkRefusalLogFlood(b *testing.B) {
	m, err := New(Options{Authenticator: mtNoUsers, MaintainInterval: -1, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	p := NewProblem("replay", "x")
	r := &Request{Method: "POST", EscapedPath: "/api/orders/123"}
	b.ReportAllocs()
	for b.Loop() {
		m.logRefusal(context.Background(), r, p)
	}
}
