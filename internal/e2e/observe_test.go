package e2e

// Observability leaks nothing (issue 12 item 3): every refusal code, every
// rotation and every store error is driven through a real server, the Go
// client and hand-built envelopes, with the server's and the client's logs
// captured and the Prometheus registry scraped; no password, token, private
// key or plaintext may appear in any log line or metric, in any encoding.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/auth"
	"github.com/dynkey/dynkey/client"
	"github.com/dynkey/dynkey/middleware"
	dkprom "github.com/dynkey/dynkey/observe/prometheus"
	"github.com/dynkey/dynkey/policy"
	"github.com/dynkey/dynkey/store"
	"github.com/dynkey/dynkey/store/memory"
	"github.com/dynkey/dynkey/wire"
)

// lockedBuffer is a log sink safe for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// lines returns the JSON log lines.
func (l *lockedBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(l.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m), sc.Text())
		out = append(out, m)
	}
	return out
}

// faultStore fails the operations a test names (for keys with the given
// prefix), and is a Lister and a Scrubber.
type faultStore struct {
	*memory.Store
	mu   sync.Mutex
	fail map[string]string // op → key prefix ("" = every key)
}

var errStoreDown = errors.New("faultstore: connection refused")

func (s *faultStore) failing(op, key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.fail[op]
	return ok && strings.HasPrefix(key, p)
}

func (s *faultStore) setFail(op, prefix string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail == nil {
		s.fail = map[string]string{}
	}
	s.fail[op] = prefix
}

func (s *faultStore) heal() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = nil
}

func (s *faultStore) Get(ctx context.Context, key string) (store.Entry, error) {
	if s.failing(middleware.StoreGet, key) {
		return store.Entry{}, errStoreDown
	}
	return s.Store.Get(ctx, key)
}

func (s *faultStore) CompareAndSwap(ctx context.Context, key string, old uint64, v []byte, exp time.Time) (uint64, error) {
	if s.failing(middleware.StoreCompareAndSwap, key) {
		return 0, errStoreDown
	}
	return s.Store.CompareAndSwap(ctx, key, old, v, exp)
}

func (s *faultStore) Delete(ctx context.Context, key string) error {
	if s.failing(middleware.StoreDelete, key) {
		return errStoreDown
	}
	return s.Store.Delete(ctx, key)
}

func (s *faultStore) MarkSeen(ctx context.Context, id string, exp time.Time) (bool, error) {
	if s.failing(middleware.StoreMarkSeen, id) {
		return false, errStoreDown
	}
	return s.Store.MarkSeen(ctx, id, exp)
}

func (s *faultStore) ListKeys(ctx context.Context, prefix, after string, limit int) ([]string, error) {
	if s.failing(middleware.StoreListKeys, prefix) {
		return nil, errStoreDown
	}
	return s.Store.ListKeys(ctx, prefix, after, limit)
}

func (s *faultStore) Scrub(ctx context.Context) error {
	if s.failing(middleware.StoreScrub, "") {
		return errStoreDown
	}
	return nil
}

// secrets are byte strings that must never be logged or exported, in any
// of the encodings a logger or a bug could use.
type secrets struct {
	named map[string][]byte
}

func (s *secrets) add(name string, b []byte) {
	if s.named == nil {
		s.named = map[string][]byte{}
	}
	s.named[name] = append([]byte(nil), b...)
}

// find returns the name and encoding of the first secret found in text.
func (s *secrets) find(text string) (string, bool) {
	for name, b := range s.named {
		encs := map[string]string{
			"raw":          string(b),
			"hex":          hex.EncodeToString(b),
			"HEX":          strings.ToUpper(hex.EncodeToString(b)),
			"base64":       base64.StdEncoding.EncodeToString(b),
			"base64-raw":   base64.RawStdEncoding.EncodeToString(b),
			"base64url":    base64.URLEncoding.EncodeToString(b),
			"base64url-nr": base64.RawURLEncoding.EncodeToString(b),
			"go-bytes":     strings.Trim(fmt.Sprint(b), "[]"),
		}
		for enc, v := range encs {
			// A long secret may be cut by a bounded log field: its first
			// 12 bytes' encoding is enough to count as a leak.
			if len(v) > 16 {
				v = v[:16]
			}
			if v != "" && strings.Contains(text, v) {
				return name + " (" + enc + ")", true
			}
		}
	}
	return "", false
}

// metricValue sums the samples of a metric family whose labels include
// want.
func metricValue(t *testing.T, reg *prom.Registry, name string, want map[string]string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	require.NoError(t, err)
	sum := 0.0
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if have[k] != v {
					continue metrics
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Histogram != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}

// gateAuth blocks the password check of one user until released, so a
// test can hold the only login slot.
type gateAuth struct {
	auth.Authenticator
	user    string
	entered chan struct{}
	release chan struct{}
}

func (g *gateAuth) Authenticate(ctx context.Context, user, password string) error {
	if user == g.user {
		g.entered <- struct{}{}
		<-g.release
	}
	return g.Authenticator.Authenticate(ctx, user, password)
}

func refreshDirectory(t *testing.T, rc *rawClient) {
	t.Helper()
	sd := fetchDirectory(t, rc.base)
	d, err := sd.Verify(ed25519.PublicKey(sd.Identity))
	require.NoError(t, err)
	rc.useDirectory(d)
	rc.sTime, rc.sTimeAt = uint64(d.STime), rc.now()
}

func TestObservabilityLeaksNoSecrets(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	st := &faultStore{Store: memory.New()}
	var serverLog, clientLog lockedBuffer
	logger := slog.New(slog.NewJSONHandler(&serverLog, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg := prom.NewRegistry()
	obs, err := dkprom.New(reg, dkprom.Options{})
	require.NoError(t, err)
	gate := &gateAuth{Authenticator: newUsers(t), user: "mallory", entered: make(chan struct{}, 1), release: make(chan struct{})}

	o := baseOptions(t, clk, st)
	o.Authenticator = gate
	o.Logger = logger
	o.Observer = obs
	o.MaxBodySize = 1024
	o.MaxFailedLogins = 2
	o.MaxConcurrentLogins = 1
	o.LoginQueueWait = -1
	o.TokenTTL = 8 * time.Hour
	o.ServerPolicy = policy.Uptime(6 * time.Hour)
	o.ClientPolicy = policy.MustParse("reject(age>=2h)")
	s := startServer(t, o)
	metricsSrv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(metricsSrv.Close)

	var sec secrets
	for u, pw := range testUsers {
		sec.add("password of "+u, []byte(pw))
	}
	const wrongPassword = "wrong-password-q8Zr2"
	sec.add("wrong password", []byte(wrongPassword))
	sec.add("key-encryption key", testKEK)
	plain := func(tag string) string {
		b := make([]byte, 12)
		_, _ = rand.Read(b)
		p := "PLAINTEXT-" + tag + "-" + hex.EncodeToString(b)
		sec.add("plaintext "+tag, []byte(p))
		return p
	}
	holdKeys := func(rc *rawClient) {
		sec.add("private key", rc.key.Bytes())
		if rc.token != nil {
			sec.add("token", rc.token)
		}
	}

	// The Go client: log in, call, rotate on a request and on a heartbeat.
	sdk := newSDK(t, s.URL, clk.Now, "alice", nil, func(c *client.Config) {
		c.Logger = slog.New(slog.NewJSONHandler(&clientLog, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	hc := sdk.HTTPClient()
	mustCall(t, hc, http.MethodPost, s.URL+"/api/echo", plain("sdk"))
	rotateSDK(t, sdk, s.URL+"/api/echo")
	before := sdk.Stats().ClientRotations
	require.Eventually(t, func() bool {
		sdk.RotateNow()
		return sdk.Heartbeat(ctx) == nil && sdk.Stats().ClientRotations > before
	}, 10*time.Second, 2*time.Millisecond)

	// Hand-built envelopes for every refusal a client can cause.
	rc := newRawClient(t, s.URL, clk.Now).mustLogin("alice")
	holdKeys(rc)
	codes := []struct {
		code wire.Code
		f    func()
	}{
		{wire.CodeBadFormat, func() {
			sendRaw(t, http.MethodPost, s.URL+"/api/x", wire.MediaType, []byte("DK-not-an-envelope "+plain("bad")))
		}},
		{wire.CodeNotEncrypted, func() { sendRaw(t, http.MethodPost, s.URL+"/api/x", "text/plain", []byte(plain("plain"))) }},
		{wire.CodeTooLarge, func() { rc.post("/api/x", strings.Repeat(plain("large"), 40)) }},
		{wire.CodeUnsupportedSuite, func() {
			m := rc.newMsg(http.MethodPost, "/api/x", []byte(plain("suite")))
			m.Header.Suite = "ecies-p256"
			m.seal(t).send(t, s.URL)
		}},
		{wire.CodeServerKeyUnknown, func() {
			m := rc.newMsg(http.MethodPost, "/api/x", []byte(plain("srvkey")))
			_, _ = rand.Read(m.Header.ServerKeyID[:])
			m.seal(t).send(t, s.URL)
		}},
		{wire.CodeDecryptFailed, func() {
			m := rc.newMsg(http.MethodPost, "/api/x", []byte(plain("decrypt"))).seal(t)
			m.env[len(m.env)-1] ^= 1
			sendRaw(t, http.MethodPost, s.URL+"/api/x", wire.MediaType, m.env)
		}},
		{wire.CodeTokenInvalid, func() {
			m := rc.newMsg(http.MethodPost, "/api/x", []byte(plain("token")))
			m.Header.Token = append([]byte(nil), m.Header.Token...)
			m.Header.Token[len(m.Header.Token)-1] ^= 1
			m.seal(t).send(t, s.URL)
		}},
		{wire.CodeClientKeyUnknown, func() {
			m := rc.newMsg(http.MethodPost, "/api/x", []byte(plain("clientkey")))
			_, _ = rand.Read(m.Header.ClientKey)
			m.seal(t).send(t, s.URL)
		}},
		{wire.CodeStale, func() {
			m := rc.newMsg(http.MethodPost, "/api/x", []byte(plain("stale")))
			m.Header.Elapsed += uint64(time.Hour.Milliseconds())
			m.seal(t).send(t, s.URL)
		}},
		{wire.CodeReplay, func() {
			m := rc.newMsg(http.MethodPost, "/api/x", []byte(plain("replay"))).seal(t)
			require.Equal(t, http.StatusOK, m.send(t, s.URL).Status)
			m.send(t, s.URL)
		}},
		{wire.CodeOutcomeUnknown, func() {
			// The answer could not be recorded (as when the instance dies
			// after the handler): the resend's outcome is unknown.
			st.setFail(middleware.StoreCompareAndSwap, "dynkey/rsp/")
			m := rc.newMsg(http.MethodPost, "/api/x", []byte(plain("unknown"))).seal(t)
			require.Equal(t, http.StatusOK, m.send(t, s.URL).Status)
			st.heal()
			require.Equal(t, wire.CodeOutcomeUnknown, m.send(t, s.URL).code())
		}},
		{wire.CodeRotationRefused, func() {
			nk := rc.genKey()
			sec.add("new private key", nk.Bytes())
			rc.newMsg(http.MethodPut, "/api/x", []byte(plain("rotation"))).rotate(t, nk, nk, [wire.MessageIDSize]byte{}, 10*time.Minute).seal(t).send(t, s.URL)
		}},
		{wire.CodeLoginFailed, func() { rc2 := newRawClient(t, s.URL, clk.Now); rc2.login("alice", wrongPassword) }},
		{wire.CodeLoginThrottled, func() {
			rc2 := newRawClient(t, s.URL, clk.Now)
			for i := 0; i < 4; i++ {
				if rc2.login("bob", wrongPassword).code() == wire.CodeLoginThrottled {
					return
				}
			}
		}},
		{wire.CodeLoginBusy, func() {
			rm := newRawClient(t, s.URL, clk.Now)
			m := rm.loginMsg("mallory", testUsers["mallory"]).seal(t)
			done := make(chan struct{})
			go func() {
				defer close(done)
				_, _, _ = postEnvelope(s.URL+wire.PathLogin, m.env)
			}()
			<-gate.entered
			newRawClient(t, s.URL, clk.Now).login("alice", testUsers["alice"])
			close(gate.release)
			<-done
		}},
		{wire.CodeMethod, func() { sendRaw(t, http.MethodGet, s.URL+wire.PathLogin, "", nil) }},
		{wire.CodeUnavailable, func() {
			st.setFail(middleware.StoreMarkSeen, "")
			defer st.heal()
			rc.post("/api/x", plain("unavailable"))
		}},
	}
	for _, c := range codes {
		c.f()
		require.GreaterOrEqual(t, metricValue(t, reg, "dynkey_requests_total", map[string]string{"outcome": "refused", "code": string(c.code)}), 1.0, "refusals of %s", c.code)
	}

	// Every store operation fails once, each through the path that uses it.
	storeFaults := []struct {
		op string
		f  func()
	}{
		{middleware.StoreGet, func() {
			st.setFail(middleware.StoreGet, "dynkey/session/")
			rc.post("/api/x", plain("get"))
		}},
		{middleware.StoreMarkSeen, func() {
			st.setFail(middleware.StoreMarkSeen, "")
			rc.post("/api/x", plain("markseen"))
		}},
		{middleware.StoreCompareAndSwap, func() {
			st.setFail(middleware.StoreCompareAndSwap, "dynkey/session/")
			newRawClient(t, s.URL, clk.Now).login("alice", testUsers["alice"])
		}},
		{middleware.StoreDelete, func() {
			st.setFail(middleware.StoreDelete, "")
			rc3 := newRawClient(t, s.URL, clk.Now).mustLogin("alice") // a success deletes the throttle counter
			holdKeys(rc3)
		}},
		{middleware.StoreListKeys, func() {
			st.setFail(middleware.StoreListKeys, "")
			require.Error(t, s.m.RotateKEK(ctx, bytes.Repeat([]byte{0x43}, 32)))
		}},
		{middleware.StoreScrub, func() {
			// A manual rotation, then its old key's grace window ends:
			// maintenance destroys it and asks the store to scrub.
			require.NoError(t, s.m.Rotate(ctx))
			clk.Advance(11 * time.Minute)
			st.setFail(middleware.StoreScrub, "")
			_ = s.m.Maintain(ctx)
		}},
	}
	for _, sf := range storeFaults {
		op := sf.op
		sf.f()
		st.heal()
		require.GreaterOrEqual(t, metricValue(t, reg, "dynkey_store_errors_total", map[string]string{"op": op}), 1.0, "store errors of %s\n%s", op, serverLog.String())
	}

	// A client key past the hard limit, a rotation by policy, an expired
	// token.
	rc4 := newRawClient(t, s.URL, clk.Now).mustLogin("alice")
	holdKeys(rc4)
	clk.Advance(3 * time.Hour)
	require.Equal(t, wire.CodeClientKeyExpired, rc4.post("/api/x", plain("expired")).code())
	clk.Advance(4 * time.Hour) // the primary is 7 h old: the policy rotates it
	require.NoError(t, s.m.Maintain(ctx))
	clk.Advance(2 * time.Hour)
	refreshDirectory(t, rc4)
	require.Equal(t, wire.CodeTokenExpired, rc4.post("/api/x", plain("tokenexp")).code())

	// Every code was counted and logged.
	lines := serverLog.lines(t)
	logged := func(msg string, kv map[string]string) bool {
	next:
		for _, l := range lines {
			if l["msg"] != msg {
				continue
			}
			for k, v := range kv {
				if l[k] != v {
					continue next
				}
			}
			return true
		}
		return false
	}
	for _, code := range wire.Codes() {
		require.GreaterOrEqual(t, metricValue(t, reg, "dynkey_requests_total", map[string]string{"outcome": "refused", "code": string(code)}), 1.0, "refusals of %s", code)
		require.True(t, logged("dynkey: request refused", map[string]string{"code": string(code)}), "no log line for %s", code)
	}
	for _, r := range []struct{ side, reason string }{
		{"client", "request"}, {"client", "heartbeat"}, {"server", "manual"}, {"server", "policy"},
	} {
		require.GreaterOrEqual(t, metricValue(t, reg, "dynkey_rotations_total", map[string]string{"side": r.side, "reason": r.reason}), 1.0, "rotations %v", r)
		if r.side == "server" && r.reason == "policy" {
			require.True(t, logged("dynkey: server key rotated", nil), "no log line for %v", r)
			continue
		}
		require.True(t, logged("dynkey: key rotated", map[string]string{"side": r.side, "reason": r.reason}), "no log line for %v", r)
	}
	for _, sf := range storeFaults {
		require.True(t, logged("dynkey: store operation failed", map[string]string{"op": sf.op}), "no log line for store %s", sf.op)
	}
	// The refusals of parsed envelopes name the suite and key ids.
	require.True(t, logged("dynkey: request refused", map[string]string{"code": "replay", "suite": "ecies-x25519", "client_key_id": rc.keyID.String()}), "%s", serverLog.String())
	require.True(t, logged("dynkey: request refused", map[string]string{"code": "not-encrypted", "route": "/api/", "method": "POST"}), "the route pattern")
	for name, want := range map[string]float64{
		"dynkey_login_attempts_total":      1,
		"dynkey_sessions_created_total":    3,
		"dynkey_replay_ids_recorded_total": 3,
		"dynkey_open_seconds":              3,
		"dynkey_seal_seconds":              3,
		"dynkey_store_operation_seconds":   10,
	} {
		require.GreaterOrEqual(t, metricValue(t, reg, name, nil), want, name)
	}

	// Every label is one of the bounded ones, with a short name-like value:
	// no username, id or path.
	fams, err := reg.Gather()
	require.NoError(t, err)
	allowed := map[string]bool{"code": true, "outcome": true, "side": true, "reason": true, "suite": true, "op": true}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				require.True(t, allowed[l.GetName()], "label %s of %s", l.GetName(), f.GetName())
				require.Regexp(t, `^[a-z0-9_-]{0,32}$`, l.GetValue(), "label %s of %s", l.GetName(), f.GetName())
				require.NotContains(t, []string{"alice", "bob", "mallory"}, l.GetValue())
			}
		}
	}

	// Nothing secret anywhere: the detector finds a planted secret, then
	// none in the logs or the scraped metrics.
	resp, err := http.Get(metricsSrv.URL)
	require.NoError(t, err)
	scraped, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Contains(t, string(scraped), `dynkey_requests_total{code="replay",outcome="refused"}`)
	for name, b := range sec.named {
		planted := `{"msg":"x","token":"` + base64.StdEncoding.EncodeToString(b) + `","hex":"` + hex.EncodeToString(b) + `"}`
		_, found := sec.find(planted)
		require.True(t, found, "the detector misses %s", name)
	}
	require.GreaterOrEqual(t, len(sec.named), 20)
	for what, text := range map[string]string{"server log": serverLog.String(), "client log": clientLog.String(), "metrics": string(scraped)} {
		if name, leaked := sec.find(text); leaked {
			t.Errorf("%s holds the %s", what, name)
		}
	}
	if testing.Verbose() {
		t.Log(serverLog.String())
	}
	t.Logf("%d server log lines, %d bytes of metrics, %d secrets searched", len(lines), len(scraped), len(sec.named))
}
