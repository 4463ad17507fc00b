package e2e

// Property tests of the key lifecycle: random sequences of operations over
// simulated time (the fake clock; nothing sleeps) against one or two
// middleware instances sharing one store, with random policies, grace
// windows and token lifetimes drawn from a seeded PCG. After every step the
// properties below are checked against a model that the test keeps on its
// own (when each server key was created and retired, when each client key
// was installed, when each token expires):
//
//	P1 one primary: the stored ring has exactly one primary key per suite,
//	   and the key directory of every instance exactly one primary.
//	P2 hard limits: the handler never runs for a request authenticated by a
//	   client key at or past its ClientPolicy hard limit (reject(age>=B)),
//	   current or previous, except a heartbeat carrying the key's rotation
//	   (which never reaches the handler); a server key past its grace window
//	   never opens a message (server-key-unknown, on every instance).
//	P3 grace: a request sealed to a key retired less than ServerKeyGrace ago
//	   is accepted, at random points of the window and just before its end.
//	P4 forward secrecy: once a key is destroyed, nothing in the store (every
//	   sealed secret unsealed with the KEK and tried as a private key) nor
//	   any instance opens an envelope captured under it.
//	P5 tokens: a session works across random rotations until its token
//	   expires, and is refused from TokenTTL on (token-expired).
//
// Every request the test builds by hand has its outcome predicted exactly
// (the order of checks of docs/PROTOCOL.md §11); the only tolerance is for
// an instance that has never loaded a key another instance created (its
// reload on an unknown id is rate-limited), which the test
// sees through a store wrapper recording the newest ring each instance read.
//
// Replay a failure with the seed it logs:
//
//	go test ./internal/e2e -run 'TestPropertiesKeyLifecycle/memory-2$' -seed=N
//
// (or DYNKEY_SEED=N); -steps (or DYNKEY_STEPS) changes the length of a run.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/client"
	"github.com/dynkey/dynkey/crypto"
	"github.com/dynkey/dynkey/middleware"
	"github.com/dynkey/dynkey/policy"
	"github.com/dynkey/dynkey/store"
	"github.com/dynkey/dynkey/store/memory"
	"github.com/dynkey/dynkey/store/sqlite"
	"github.com/dynkey/dynkey/wire"
)

var (
	propSeedFlag  = flag.Uint64("seed", 0, "seed of the property tests (0: $DYNKEY_SEED, else a fixed default)")
	propStepsFlag = flag.Int("steps", 0, "steps of each property run (0: $DYNKEY_STEPS, else the defaults)")
)

// propDefaultSeed makes a plain `go test` reproducible; explore with -seed.
const propDefaultSeed = 1

func propEnvUint(t *testing.T, name string) uint64 {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return 0
	}
	v, err := strconv.ParseUint(s, 10, 64)
	require.NoError(t, err, name)
	return v
}

func propSeed(t *testing.T) uint64 {
	t.Helper()
	if *propSeedFlag != 0 {
		return *propSeedFlag
	}
	if v := propEnvUint(t, "DYNKEY_SEED"); v != 0 {
		return v
	}
	return propDefaultSeed
}

func propSteps(t *testing.T, def int) int {
	t.Helper()
	if *propStepsFlag > 0 {
		return *propStepsFlag
	}
	if v := propEnvUint(t, "DYNKEY_STEPS"); v != 0 {
		return int(v)
	}
	return def
}

// TestPropertiesKeyLifecycle runs the random walks: two instances on a
// memory store, one instance, and two instances on one SQLite database.
func TestPropertiesKeyLifecycle(t *testing.T) {
	seed := propSeed(t)
	for i, c := range []struct {
		name      string
		instances int
		sqlite    bool
		steps     int
	}{
		{"memory-2", 2, false, 300},
		{"memory-1", 1, false, 200},
		{"sqlite-2", 2, true, 100},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			t.Logf("seed %d (replay: go test ./internal/e2e -run 'TestPropertiesKeyLifecycle/%s$' -seed=%d)", seed, c.name, seed)
			r := mrand.New(mrand.NewPCG(seed, uint64(i+1)))
			pr := newPropRun(t, r, c.instances, c.sqlite)
			pr.run(propSteps(t, c.steps))
		})
	}
}

// ---------------------------------------------------------------------------
// The application: counts handler calls per client key.

type propCall struct {
	key     wire.KeyID
	rotated bool
	at      time.Time
}

type propApp struct {
	now    func() time.Time
	mu     sync.Mutex
	calls  []propCall
	perKey map[wire.KeyID]int
}

func (a *propApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s, ok := middleware.FromContext(r.Context())
	if !ok {
		http.Error(w, "no dynkey session", http.StatusInternalServerError)
		return
	}
	a.mu.Lock()
	a.calls = append(a.calls, propCall{s.ClientKeyID, s.Rotated, a.now()})
	a.perKey[s.ClientKeyID]++
	a.mu.Unlock()
	b, _ := io.ReadAll(r.Body)
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write(b)
}

// take returns the calls since the last take.
func (a *propApp) take() []propCall {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := a.calls
	a.calls = nil
	return c
}

// ---------------------------------------------------------------------------
// What an instance knows: the newest ring it read from the store. An
// instance's in-memory ring is exactly that (it keeps the highest version it
// loaded, and every load is a Get of the ring).

type propViewStore struct {
	store.Store
	now     func() time.Time
	mu      sync.Mutex
	version uint64
	ring    []byte
	readAt  time.Time // the last read of the ring
}

func (s *propViewStore) Get(ctx context.Context, key string) (store.Entry, error) {
	e, err := s.Store.Get(ctx, key)
	if err == nil && key == "dynkey/ring" {
		s.mu.Lock()
		if e.Version > s.version {
			s.version, s.ring = e.Version, bytes.Clone(e.Value)
		}
		s.readAt = s.now()
		s.mu.Unlock()
	}
	return e, err
}

// propRingKey is a stored server key with its lifecycle fields
// (middleware/ring.go keyRecord).
type propRingKey struct {
	ID             string `json:"id"`
	Suite          string `json:"suite"`
	Public         []byte `json:"public"`
	SealedPrivate  []byte `json:"sealed_private"`
	SealedTokenKey []byte `json:"sealed_token_key"`
	State          string `json:"state"`
	DecryptUntil   int64  `json:"decrypt_until"`
	TokenUntil     int64  `json:"token_until"`
}

type propRing struct {
	Epoch          uint64        `json:"epoch"`
	SealedIdentity []byte        `json:"sealed_identity"`
	Keys           []propRingKey `json:"keys"`
	// TokenKeys seal tokens (middleware/tokenkeys.go), apart from server
	// keys.
	TokenKeys []struct {
		ID     string `json:"id"`
		Sealed []byte `json:"sealed"`
		Until  int64  `json:"until"`
	} `json:"token_keys"`
}

func parsePropRing(t *testing.T, b []byte) propRing {
	t.Helper()
	var r propRing
	require.NoError(t, json.Unmarshal(b, &r))
	return r
}

func (r propRing) byID() map[string]propRingKey {
	m := make(map[string]propRingKey, len(r.Keys))
	for _, k := range r.Keys {
		m[k.ID] = k
	}
	return m
}

// ---------------------------------------------------------------------------
// The model.

// propSrvKey is a server key as the test tracks it.
type propSrvKey struct {
	id      string
	kid     wire.KeyID
	pub     crypto.PublicKey
	created time.Time
	retired time.Time // zero while primary
	state   string
	gone    bool // the record was deleted
	// graceChecked and destroyChecked: the checks at the end of the grace
	// window and after destruction ran.
	graceChecked, destroyChecked bool
}

// propClientKey is a client key: when the server installed it and the key
// it replaced (for a rotation).
type propClientKey struct {
	installed time.Time
	pred      *wire.KeyID
}

// propSess is a session of the raw client, whose keys the test holds.
type propSess struct {
	user      string
	token     []byte
	tokenKey  string
	tokenExp  time.Time
	cur, prev crypto.PrivateKey
	curID     wire.KeyID
	prevID    wire.KeyID
	prevUntil time.Time
	ringAt    time.Time // when the instance that minted the token last read the ring
	// expiredUses counts the requests sent after the token expired; the
	// session leaves the pool after a few.
	expiredUses int
}

// propCapture is a request envelope kept for replay after its key dies.
type propCapture struct {
	m      *msg
	key    *propSrvKey
	sess   *propSess
	sender crypto.PublicKey
	body   string
}

type propInst struct {
	name string
	m    *middleware.Middleware
	url  string
	view *propViewStore
}

type propRun struct {
	t   *testing.T
	r   *mrand.Rand
	clk *fakeClock
	ctx context.Context

	suite    crypto.Suite
	st       store.Store // the shared store (first handle for SQLite)
	dbPath   string      // SQLite only
	inst     []*propInst
	app      *propApp
	identity ed25519.PublicKey

	grace, ttl, clientGrace, hard time.Duration

	keys     map[string]*propSrvKey
	keyOrder []string
	ckeys    map[wire.KeyID]*propClientKey
	sessions []*propSess
	caps     []*propCapture
	recorded map[[wire.MessageIDSize]byte]bool
	// expectCalls is how many handler calls the current step should make;
	// calls counts them all.
	expectCalls, calls int

	// The SDK session (on the first instance).
	sdk        *client.Client
	hc         *http.Client
	tr         *mitm
	evMu       sync.Mutex
	sdkKey     wire.KeyID
	sdkHasKey  bool
	sdkLoginAt time.Time
	sdkExp     time.Time
	sdkErr     error

	step  int
	trail []string
	stats map[string]int
}

func (pr *propRun) durMs(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(pr.r.Int64N(int64((hi-lo)/time.Millisecond)+1))*time.Millisecond
}

// serverPolicy draws a server policy in the syntax of policy.Parse.
func (pr *propRun) serverPolicy() string {
	x := 60 + pr.r.IntN(4*3600)
	switch pr.r.IntN(6) {
	case 0:
		return fmt.Sprintf("uptime>=%dm or daily@%02d:%02d", 1+x/60, pr.r.IntN(24), pr.r.IntN(60))
	case 1:
		return fmt.Sprintf("jitter(%d%%, uptime>=%ds)", 1+pr.r.IntN(50), x)
	case 2:
		return "manual"
	default:
		return fmt.Sprintf("uptime>=%ds", x)
	}
}

func newPropRun(t *testing.T, r *mrand.Rand, n int, useSQLite bool) *propRun {
	// Whole seconds, and every step a whole number of milliseconds: the
	// middleware stores times in ms, so boundaries are exact.
	clk := &fakeClock{t: time.Now().Truncate(time.Second)}
	pr := &propRun{
		t: t, r: r, clk: clk, ctx: context.Background(),
		app:   &propApp{now: clk.Now, perKey: map[wire.KeyID]int{}},
		keys:  map[string]*propSrvKey{},
		ckeys: map[wire.KeyID]*propClientKey{}, recorded: map[[wire.MessageIDSize]byte]bool{},
		stats: map[string]int{},
	}
	pr.grace = pr.durMs(time.Minute, 90*time.Minute).Truncate(time.Second)
	pr.ttl = pr.durMs(30*time.Minute, 8*time.Hour).Truncate(time.Second)
	pr.clientGrace = pr.durMs(30*time.Second, 5*time.Minute).Truncate(time.Second)
	soft := 1 + r.IntN(30)
	hard := soft + 1 + r.IntN(60)
	pr.hard = time.Duration(hard) * time.Minute
	clientPolicy := fmt.Sprintf("age>=%dm or reject(age>=%dm)", soft, hard)
	if r.IntN(3) == 0 {
		clientPolicy = fmt.Sprintf("jitter(%d%%, age>=%dm) or reject(age>=%dm)", 1+r.IntN(50), soft, hard)
	}
	shared := pr.serverPolicy()

	var stores []store.Store
	if useSQLite {
		pr.dbPath = filepath.Join(t.TempDir(), "dynkey.db")
		for range n {
			st, err := sqlite.Open(pr.dbPath) // one database, one handle per instance
			require.NoError(t, err)
			t.Cleanup(func() { _ = st.Close() })
			stores = append(stores, st)
		}
	} else {
		st := memory.New()
		for range n {
			stores = append(stores, st)
		}
	}
	pr.st = stores[0]
	var desc []string
	for i := range n {
		sp := shared
		if i > 0 && r.IntN(3) == 0 {
			sp = pr.serverPolicy() // instances may disagree
		}
		vs := &propViewStore{Store: stores[i], now: clk.Now}
		o := baseOptions(t, clk, vs)
		o.ServerPolicy = policy.MustParse(sp)
		o.ClientPolicy = policy.MustParse(clientPolicy)
		o.ServerKeyGrace, o.TokenTTL, o.ClientKeyGrace = pr.grace, pr.ttl, pr.clientGrace
		m, err := middleware.New(o)
		require.NoError(t, err)
		t.Cleanup(func() { _ = m.Close() })
		mux := http.NewServeMux()
		mux.Handle("/dynkey/", m.Endpoints())
		mux.Handle("/.well-known/dynkey/", m.Endpoints())
		mux.Handle("/api/", m.Handler(pr.app))
		srv := httptest.NewServer(mux)
		t.Cleanup(srv.Close)
		name := string(rune('A' + i))
		pr.inst = append(pr.inst, &propInst{name: name, m: m, url: srv.URL, view: vs})
		desc = append(desc, fmt.Sprintf("%s: ServerPolicy %q", name, sp))
	}
	s, err := crypto.Lookup(pr.inst[0].m.Suite())
	require.NoError(t, err)
	pr.suite, pr.identity = s, pr.inst[0].m.IdentityPublicKey()
	t.Logf("%s; ClientPolicy %q, ServerKeyGrace %v, TokenTTL %v, ClientKeyGrace %v",
		strings.Join(desc, "; "), clientPolicy, pr.grace, pr.ttl, pr.clientGrace)

	pr.tr = newMITM()
	pr.sdk = newSDK(t, pr.inst[0].url, clk.Now, "alice", pr.tr, func(c *client.Config) {
		c.Policy = policy.Manual() // rotations only when the test or the server asks
		c.IdentityKey = pr.identity
		c.OnEvent = pr.sdkEvent
	})
	pr.hc = pr.sdk.HTTPClient()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last steps (clock relative to the start):\n%s", strings.Join(pr.trail, "\n"))
		}
	})
	return pr
}

func (pr *propRun) logStep(format string, a ...any) {
	pr.trail = append(pr.trail, fmt.Sprintf("#%d %s", pr.step, fmt.Sprintf(format, a...)))
	if len(pr.trail) > 40 {
		pr.trail = pr.trail[1:]
	}
}

func (pr *propRun) pick(n int) int { return pr.r.IntN(n) }

func (pr *propRun) pickInst() *propInst { return pr.inst[pr.pick(len(pr.inst))] }

// ---------------------------------------------------------------------------
// The walk.

func (pr *propRun) run(steps int) {
	t := pr.t
	ops := []struct {
		name string
		w    int
		fn   func()
	}{
		{"advance", 18, pr.opAdvance},
		{"maintain", 10, pr.opMaintain},
		{"rotate", 6, pr.opRotate},
		{"concurrent", 3, pr.opConcurrent},
		{"login", 4, pr.opLogin},
		{"request", 20, pr.opRequest},
		{"client-rotation", 6, pr.opClientRotation},
		{"sdk-request", 8, pr.opSDKRequest},
		{"sdk-rotation", 3, pr.opSDKRotation},
		{"capture", 5, pr.opCapture},
		{"probe", 8, pr.opProbe},
		{"resend", 4, pr.opResend},
	}
	total := 0
	for _, o := range ops {
		total += o.w
	}
	start := pr.clk.Now()
	pr.observe()
	for pr.step = 1; pr.step <= steps; pr.step++ {
		n := pr.r.IntN(total)
		for _, o := range ops {
			if n -= o.w; n < 0 {
				pr.logStep("+%v %s", pr.clk.Now().Sub(start), o.name)
				pr.stats["op "+o.name]++
				o.fn()
				break
			}
		}
		pr.check()
		if t.Failed() {
			return
		}
	}
	pr.finale()
	keys := make([]string, 0, len(pr.stats))
	for k := range pr.stats {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "\n  %-44s %d", k, pr.stats[k])
	}
	t.Logf("%d steps over %v of simulated time, %d server keys; counts:%s", steps, pr.clk.Now().Sub(start), len(pr.keys), b.String())
}

// finale retires and destroys every key that has captures, so that P4 is
// checked in every run, then lets every token expire (P5).
func (pr *propRun) finale() {
	t := pr.t
	pr.step++
	pr.logStep("finale: rotate, advance past grace, maintain")
	require.NoError(t, pr.inst[0].m.Rotate(pr.ctx))
	pr.check()
	pr.clk.Advance(pr.grace + time.Millisecond)
	for _, x := range pr.inst {
		require.NoError(t, x.m.Maintain(pr.ctx))
	}
	pr.check()
	for _, c := range pr.caps {
		require.True(t, c.key.destroyChecked, "capture under %s not checked after destruction", c.key.id)
	}
	pr.step++
	pr.logStep("finale: advance past TokenTTL, sdk request")
	pr.clk.Advance(pr.ttl)
	pr.opSDKRequest()
	pr.check()
	for _, s := range pr.sessions {
		x := pr.pickInst()
		pr.requestWith(s, x, pr.primaryOf(x), false, false)
		pr.check()
	}
	total := 0
	pr.app.mu.Lock()
	for _, n := range pr.app.perKey {
		total += n
	}
	keys := len(pr.app.perKey)
	pr.app.mu.Unlock()
	require.Equal(t, pr.calls, total, "handler calls counted per client key")
	pr.stats["client keys that reached the handler"] = keys
}

// check verifies the properties after a step and advances the model.
func (pr *propRun) check() {
	t := pr.t
	pr.observe()
	pr.checkPrimaries()
	pr.checkCalls()
	pr.evMu.Lock()
	err := pr.sdkErr
	pr.evMu.Unlock()
	require.NoError(t, err)
	now := pr.clk.Now()
	for _, id := range pr.keyOrder {
		k := pr.keys[id]
		if !k.retired.IsZero() && !k.graceChecked && !now.Before(k.retired.Add(pr.grace)) {
			k.graceChecked = true
			pr.pastGrace(k)
		}
		if (k.state == string(middleware.StateDestroyed) || k.gone) && !k.destroyChecked {
			k.destroyChecked = true
			pr.destroyed(k)
		}
	}
}

// observe reads the stored ring and updates the lifecycle model, checking
// that states only move forward, at the times the options say.
func (pr *propRun) observe() {
	t := pr.t
	e, err := pr.st.Get(pr.ctx, "dynkey/ring")
	require.NoError(t, err)
	ring := parsePropRing(t, e.Value)
	now := pr.clk.Now()
	rank := map[string]int{"primary": 0, "decrypt-only": 1, "destroyed": 2}
	seen := map[string]bool{}
	for _, rk := range ring.Keys {
		seen[rk.ID] = true
		r, ok := rank[rk.State]
		require.True(t, ok, "key %s in state %q", rk.ID, rk.State)
		k := pr.keys[rk.ID]
		if k == nil {
			kid, err := wire.ParseKeyID(rk.ID)
			require.NoError(t, err)
			pub, err := pr.suite.ParsePublicKey(rk.Public)
			require.NoError(t, err)
			require.Equal(t, kid, wire.ComputeKeyID(rk.Suite, rk.Public))
			k = &propSrvKey{id: rk.ID, kid: kid, pub: pub, created: now, state: "primary"}
			pr.keys[rk.ID] = k
			pr.keyOrder = append(pr.keyOrder, rk.ID)
		}
		require.GreaterOrEqual(t, r, rank[k.state], "key %s went back from %s to %s", k.id, k.state, rk.State)
		if rk.State != "primary" && k.retired.IsZero() {
			k.retired = now
			require.Equal(t, now.Add(pr.grace).UnixMilli(), rk.DecryptUntil, "key %s: decrypt-only until retirement + ServerKeyGrace", k.id)
			require.Zero(t, rk.TokenUntil, "key %s: server keys carry no token key", k.id)
		}
		switch rk.State {
		case "destroyed":
			require.Empty(t, rk.SealedPrivate, "P4: a destroyed key's private key is erased from the store")
			require.False(t, now.Before(k.retired.Add(pr.grace)), "key %s destroyed before the end of its grace window", k.id)
		default:
			require.NotEmpty(t, rk.SealedPrivate)
		}
		require.Empty(t, rk.SealedTokenKey, "server keys carry no token key")
		k.state = rk.State
	}
	for _, id := range pr.keyOrder {
		k := pr.keys[id]
		if seen[id] || k.gone {
			continue
		}
		k.gone = true
		require.False(t, k.retired.IsZero(), "key %s vanished while primary", id)
		require.False(t, now.Before(k.retired.Add(pr.grace)), "key %s deleted before the end of its grace window", id)
	}
	// P5: the token key of every valid token is in the ring.
	tokenKeys := map[string]bool{}
	for _, tk := range ring.TokenKeys {
		tokenKeys[tk.ID] = true
	}
	for _, s := range pr.sessions {
		if now.Before(s.tokenExp) {
			require.True(t, tokenKeys[s.tokenKey], "P5: the token key %s of a valid token (minted %v ago, on a ring read %v ago) is gone",
				s.tokenKey, now.Sub(s.tokenExp.Add(-pr.ttl)), now.Sub(s.ringAt))
		}
	}
}

// P1: one primary per suite in the store, one in every directory.
func (pr *propRun) checkPrimaries() {
	t := pr.t
	perSuite := map[string]int{}
	for _, k := range readRing(t, pr.st).Keys {
		if k.State == "primary" {
			perSuite[k.Suite]++
		}
	}
	require.Equal(t, map[string]int{pr.suite.Name(): 1}, perSuite, "P1: exactly one primary per suite in the stored ring")
	for _, x := range pr.inst {
		d := pr.directory(x)
		n := 0
		for _, k := range d.Keys {
			if k.Status == wire.StatusPrimary {
				n++
				require.Contains(t, pr.keys, k.ID)
			}
		}
		require.Equal(t, 1, n, "P1: exactly one primary in the directory of %s", x.name)
	}
}

// P2 (client keys): every handler call was made under a key younger than
// the hard limit; a rotating call under a key whose predecessor was.
func (pr *propRun) checkCalls() {
	t := pr.t
	calls := pr.app.take()
	require.Len(t, calls, pr.expectCalls, "the handler ran once per accepted request")
	pr.calls += len(calls)
	pr.expectCalls = 0
	for _, c := range calls {
		k := pr.ckeys[c.key]
		require.NotNil(t, k, "the handler ran under a client key the test never installed: %s", c.key)
		if c.rotated {
			require.NotNil(t, k.pred)
			k = pr.ckeys[*k.pred]
		}
		require.Less(t, c.at.Sub(k.installed), pr.hard, "P2: the handler ran under a client key past its hard limit")
	}
}

// pastGrace: P2 (server keys). The grace window of k has just ended: no
// instance opens a message sealed to it, whether the key is destroyed yet
// or not.
func (pr *propRun) pastGrace(k *propSrvKey) {
	pr.stats["P2 key past grace, checked on every instance"]++
	s := pr.anySession()
	for _, x := range pr.inst {
		m := pr.build(s, k, false, "/api/after-grace", []byte("late")).seal(pr.t)
		pr.exchange(x, m, s, k, "past grace")
	}
	for _, c := range pr.caps {
		if c.key == k {
			for _, x := range pr.inst {
				pr.exchange(x, c.m, c.sess, k, "capture past grace")
			}
		}
	}
}

// destroyed: P4. Nothing in the store opens what was captured under k, and
// no instance does.
func (pr *propRun) destroyed(k *propSrvKey) {
	for _, c := range pr.caps {
		if c.key != k {
			continue
		}
		pr.stats["P4 captures checked after destruction"]++
		require.Nil(pr.t, pr.storeOpens(c), "P4: a secret left in the store opens a request captured under destroyed key %s", k.id)
		if pr.dbPath != "" {
			require.Nil(pr.t, thiefOpen(pr.t, pr.dbPath, c.m.env, c.m.Method, c.m.Path), "P4: the SQLite file opens a request captured under %s", k.id)
		}
		for _, x := range pr.inst {
			pr.exchange(x, c.m, c.sess, k, "capture after destruction")
		}
	}
}

// storeOpens unseals every secret of the stored ring with the KEK and tries
// each as the server private key of the capture; it returns the plaintext
// if one opens it.
func (pr *propRun) storeOpens(c *propCapture) []byte {
	t := pr.t
	e, err := pr.st.Get(pr.ctx, "dynkey/ring")
	require.NoError(t, err)
	ring := parsePropRing(t, e.Value)
	secrets := [][]byte{unsealAtRest(t, testKEK, "identity", "", ring.SealedIdentity)}
	for _, k := range ring.Keys {
		if k.SealedPrivate != nil {
			secrets = append(secrets, unsealAtRest(t, testKEK, "private key", k.ID, k.SealedPrivate))
		}
		if k.SealedTokenKey != nil {
			secrets = append(secrets, unsealAtRest(t, testKEK, "token key", k.ID, k.SealedTokenKey))
		}
	}
	for _, k := range ring.TokenKeys {
		secrets = append(secrets, unsealAtRest(t, testKEK, "token key", k.ID, k.Sealed))
	}
	return openWithAny(t, pr.suite, secrets, c)
}

func openWithAny(t *testing.T, s crypto.Suite, secrets [][]byte, c *propCapture) []byte {
	t.Helper()
	req, err := wire.ParseRequest(c.m.env)
	require.NoError(t, err)
	aad := wire.RequestAAD(c.m.Method, c.m.Path, c.m.Query, req.Header)
	for _, sec := range secrets {
		priv, err := s.ParsePrivateKey(sec)
		if err != nil {
			continue
		}
		if pt, _, err := s.Open(priv, c.sender, []byte(wire.InfoRequest), aad, req.Ciphertext); err == nil {
			in, err := wire.ParseInner(pt)
			require.NoError(t, err)
			return in.Body
		}
	}
	return nil
}

// ---------------------------------------------------------------------------
// Views, directories, sessions.

func (pr *propRun) view(x *propInst) map[string]propRingKey {
	x.view.mu.Lock()
	b := x.view.ring
	x.view.mu.Unlock()
	if b == nil {
		return nil
	}
	return parsePropRing(pr.t, b).byID()
}

// viewTokenKeys returns the ids of the token keys in the ring x read last.
func (pr *propRun) viewTokenKeys(x *propInst) map[string]bool {
	x.view.mu.Lock()
	b := x.view.ring
	x.view.mu.Unlock()
	out := map[string]bool{}
	if b != nil {
		for _, tk := range parsePropRing(pr.t, b).TokenKeys {
			out[tk.ID] = true
		}
	}
	return out
}

func (pr *propRun) directory(x *propInst) *wire.Directory {
	t := pr.t
	sd := fetchDirectory(t, x.url)
	d, err := sd.Verify(pr.identity)
	require.NoError(t, err, "the directory of %s verifies against the identity key", x.name)
	require.Equal(t, pr.suite.Name(), d.Suite)
	return d
}

// primaryOf returns the primary key of x's directory.
func (pr *propRun) primaryOf(x *propInst) *propSrvKey {
	pk, ok := pr.directory(x).Primary()
	require.True(pr.t, ok)
	k := pr.keys[pk.ID]
	require.NotNil(pr.t, k, "directory of %s names an unknown key %s", x.name, pk.ID)
	return k
}

// keyValid is the model's verdict: the key may open messages now.
func (pr *propRun) keyValid(k *propSrvKey, now time.Time) bool {
	if k.gone || k.state == "destroyed" {
		return false
	}
	return k.retired.IsZero() || now.Before(k.retired.Add(pr.grace))
}

// graceKeys returns the decrypt-only keys inside their grace window.
func (pr *propRun) graceKeys() []*propSrvKey {
	var out []*propSrvKey
	now := pr.clk.Now()
	for _, id := range pr.keyOrder {
		if k := pr.keys[id]; !k.retired.IsZero() && pr.keyValid(k, now) {
			out = append(out, k)
		}
	}
	return out
}

// login makes a raw-client session on x with a fresh client key.
func (pr *propRun) login(x *propInst, user string) *propSess {
	t := pr.t
	rc := newRawClient(t, x.url, pr.clk.Now)
	k := pr.keys[rc.srvID.String()]
	require.NotNil(t, k)
	r := rc.login(user, testUsers[user])
	if r.code() == wire.CodeServerKeyUnknown {
		require.False(t, pr.keyValid(k, pr.clk.Now()), "login sealed to valid key %s refused", k.id)
		require.NotNil(t, r.Problem.Directory)
		d, err := r.Problem.Directory.Verify(pr.identity)
		require.NoError(t, err)
		rc.useDirectory(d)
		r = rc.login(user, testUsers[user])
	}
	require.Equal(t, http.StatusOK, r.Status, "login on %s: %s", x.name, r.Body)
	now := pr.clk.Now()
	s := &propSess{user: user, token: rc.token, tokenKey: hex.EncodeToString(rc.token[1:9]), tokenExp: now.Add(pr.ttl),
		cur: rc.key, curID: rc.keyID}
	x.view.mu.Lock()
	s.ringAt = x.view.readAt
	x.view.mu.Unlock()
	pr.ckeys[rc.keyID] = &propClientKey{installed: now}
	return s
}

func (pr *propRun) user() string {
	return []string{"alice", "bob", "mallory"}[pr.pick(3)]
}

// liveSession picks a session of the pool whose token is valid, logging in
// a new one if there is none.
func (pr *propRun) liveSession() *propSess {
	now := pr.clk.Now()
	var live []*propSess
	for _, s := range pr.sessions {
		if now.Before(s.tokenExp) {
			live = append(live, s)
		}
	}
	if len(live) == 0 {
		return pr.addSession(pr.pickInst())
	}
	return live[pr.pick(len(live))]
}

func (pr *propRun) addSession(x *propInst) *propSess {
	s := pr.login(x, pr.user())
	pr.sessions = append(pr.sessions, s)
	if len(pr.sessions) > 6 {
		pr.sessions = pr.sessions[1:]
	}
	return s
}

// anySession returns some session (its token only has to be well formed).
func (pr *propRun) anySession() *propSess {
	if len(pr.sessions) > 0 {
		return pr.sessions[len(pr.sessions)-1]
	}
	return pr.addSession(pr.inst[0])
}

// build prepares a request of s sealed to k, fresh: s_time is the server's
// clock and elapsed 0.
func (pr *propRun) build(s *propSess, k *propSrvKey, prev bool, path string, body []byte) *msg {
	key, id := s.cur, s.curID
	if prev {
		key, id = s.prev, s.prevID
	}
	m := &msg{
		Method: http.MethodPost, Path: path,
		Header: wire.RequestHeader{Type: wire.TypeRequest, Suite: pr.suite.Name(), ServerKeyID: k.kid,
			ClientKey: bytes.Clone(id[:]), Token: s.token, STime: uint64(pr.clk.Now().UnixMilli())},
		Inner: wire.Inner{ContentType: "text/plain", Body: body},
		From:  key, To: k.pub, Info: wire.InfoRequest, suite: pr.suite,
	}
	_, err := rand.Read(m.Header.MessageID[:])
	require.NoError(pr.t, err)
	return m
}

// ---------------------------------------------------------------------------
// The oracle.

// expect predicts the answer of x to m (sent by session s, sealed to k) in
// the order of the server's checks (docs/PROTOCOL.md §11). It returns ""
// for success, and why.
func (pr *propRun) expect(x *propInst, m *msg, s *propSess, k *propSrvKey) (wire.Code, string) {
	now := pr.clk.Now()
	view := pr.view(x)
	if !pr.keyValid(k, now) {
		return wire.CodeServerKeyUnknown, "P2: a server key past its grace window never opens a message"
	}
	if _, ok := view[k.id]; !ok {
		pr.stats["tolerated: instance never loaded the server key"]++
		return wire.CodeServerKeyUnknown, "the instance never loaded this key (reload rate-limited)"
	}
	est := time.UnixMilli(int64(m.Header.STime)).Add(time.Duration(m.Header.Elapsed) * time.Millisecond)
	if d := now.Sub(est); d > 2*time.Minute || d < -2*time.Minute {
		return wire.CodeStale, "outside the freshness window"
	}
	// Tokens are sealed under token keys (observe checks P5 on them); a
	// token naming a server key is from before token keys had their own
	// ring.
	if pr.keys[s.tokenKey] == nil && !pr.viewTokenKeys(x)[s.tokenKey] {
		require.False(pr.t, now.Before(s.tokenExp), "P5: the token key of a valid token is not held by %s", x.name)
		return wire.CodeTokenInvalid, "the instance no longer holds the token key (its tokens have all expired)"
	}
	if _, ok := view[s.tokenKey]; !ok && pr.keys[s.tokenKey] != nil {
		tk := pr.keys[s.tokenKey]
		require.False(pr.t, tk.gone && now.Before(s.tokenExp), "P5: the token key of a valid token was deleted")
		if !tk.gone {
			pr.stats["tolerated: instance never loaded the token key"]++
		}
		return wire.CodeTokenInvalid, "the instance does not hold the token key"
	}
	if !now.Before(s.tokenExp) {
		return wire.CodeTokenExpired, "P5: a token is refused from its expiry on"
	}
	var id wire.KeyID
	copy(id[:], m.Header.ClientKey)
	prev := false
	switch {
	case id == s.curID:
	case s.prev != nil && id == s.prevID && now.Before(s.prevUntil):
		prev = true
	default:
		return wire.CodeClientKeyUnknown, "neither the current client key nor the previous one within ClientKeyGrace"
	}
	age := now.Sub(pr.ckeys[id].installed)
	heartbeat := m.Path == wire.PathHeartbeat
	rotating := m.Inner.Rotating()
	if age >= pr.hard && (prev || !heartbeat || !rotating) {
		// Refused before the message id is recorded (docs/PROTOCOL.md §9).
		return wire.CodeClientKeyExpired, "P2: a client key past its hard limit is refused (current or previous), except on a heartbeat carrying its rotation"
	}
	if pr.recorded[m.Header.MessageID] {
		return wire.CodeReplay, "message id already recorded"
	}
	pr.recorded[m.Header.MessageID] = true
	if rotating && prev {
		return wire.CodeRotationRefused, "a rotation must be authenticated by the current key"
	}
	return "", "everything valid: P3/P5 say accepted"
}

// exchange sends m to x and requires the predicted answer.
func (pr *propRun) exchange(x *propInst, m *msg, s *propSess, k *propSrvKey, what string) *reply {
	t := pr.t
	r := m.send(t, x.url)
	want, why := pr.expect(x, m, s, k)
	got := r.code()
	if r.Status == http.StatusOK {
		require.Nil(t, r.Problem)
	} else {
		require.NotNil(t, r.Problem, "%s: status %d without a problem: %s", what, r.Status, r.Body)
	}
	state := k.state
	if !k.retired.IsZero() {
		state += fmt.Sprintf(", retired %v ago (grace %v)", pr.clk.Now().Sub(k.retired), pr.grace)
	}
	answer := string(r.Body)
	if r.Problem == nil {
		answer = "(sealed response)"
	}
	require.Equal(t, want, got, "%s on %s, sealed to %s (%s): want %q because %s; got %d %s",
		what, x.name, k.id, state, want, why, r.Status, answer)
	pr.stats[fmt.Sprintf("answer %s", cmpOr(string(got), "200"))]++
	if got == "" && strings.HasPrefix(m.Path, "/api/") {
		pr.expectCalls++
		require.Equal(t, string(m.Inner.Body), string(r.Plain), "the handler saw the plaintext")
	}
	if got == wire.CodeClientKeyExpired {
		// Refused before its id was recorded: the same envelope again is
		// refused the same way, not as a replay (the SDK retries with it).
		r2 := m.send(t, x.url)
		require.Equal(t, wire.CodeClientKeyExpired, r2.code(), "%s: client-key-expired again, not %s", what, r2.Body)
	}
	return r
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// ---------------------------------------------------------------------------
// Operations.

func (pr *propRun) opAdvance() {
	var d time.Duration
	switch n := pr.pick(10); {
	case n < 5:
		d = pr.durMs(time.Second, 2*time.Minute)
	case n < 8:
		d = pr.durMs(2*time.Minute, time.Hour)
	default:
		d = pr.durMs(time.Hour, 6*time.Hour)
	}
	pr.logStep("  advance %v", d)
	pr.clk.Advance(d)
}

func (pr *propRun) opMaintain() {
	x := pr.pickInst()
	pr.logStep("  maintain %s", x.name)
	require.NoError(pr.t, x.m.Maintain(pr.ctx))
}

func (pr *propRun) opRotate() {
	x := pr.pickInst()
	pr.logStep("  rotate %s", x.name)
	require.NoError(pr.t, x.m.Rotate(pr.ctx))
}

// opConcurrent runs two ring updates at once, on two instances or one.
func (pr *propRun) opConcurrent() {
	t := pr.t
	a, b := pr.pickInst(), pr.pickInst()
	bothRotate := pr.pick(2) == 0
	jobs := []func() error{func() error { return a.m.Rotate(pr.ctx) }, func() error { return b.m.Rotate(pr.ctx) }}
	if !bothRotate {
		jobs[1] = func() error { return b.m.Maintain(pr.ctx) }
	}
	pr.logStep("  concurrently: rotate %s, %s %s", a.name, map[bool]string{true: "rotate", false: "maintain"}[bothRotate], b.name)
	before := readRing(t, pr.st)
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = j() }()
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	if bothRotate {
		after := readRing(t, pr.st)
		require.Equal(t, before.Epoch+2, after.Epoch, "both concurrent rotations counted")
		require.Len(t, after.Keys, len(before.Keys)+2, "no concurrent rotation lost")
	}
}

func (pr *propRun) opLogin() {
	x := pr.pickInst()
	pr.logStep("  raw login on %s", x.name)
	pr.addSession(x)
}

// opRequest sends a request of a pool session (its token maybe expired),
// with its current or previous key, to any key the test knows of.
func (pr *propRun) opRequest() {
	if len(pr.sessions) == 0 {
		pr.addSession(pr.pickInst())
	}
	s := pr.sessions[pr.pick(len(pr.sessions))]
	x := pr.pickInst()
	prev := s.prev != nil && pr.pick(3) == 0
	heartbeat := pr.pick(5) == 0
	var k *propSrvKey
	switch n := pr.pick(20); {
	case n < 12:
		k = pr.primaryOf(x)
	case n < 16:
		k = pr.keys[pr.keyOrder[pr.pick(len(pr.keyOrder))]]
	default:
		if g := pr.graceKeys(); len(g) > 0 {
			k = g[pr.pick(len(g))]
		} else {
			k = pr.primaryOf(x)
		}
	}
	pr.requestWith(s, x, k, prev, heartbeat)
}

// requestWith sends a request of s to x sealed to k.
func (pr *propRun) requestWith(s *propSess, x *propInst, k *propSrvKey, prev, heartbeat bool) {
	path := "/api/req"
	if heartbeat {
		path = wire.PathHeartbeat
	}
	if !pr.clk.Now().Before(s.tokenExp) {
		if s.expiredUses++; s.expiredUses > 2 {
			pr.dropSession(s)
		}
	}
	pr.logStep("  request %s on %s prev=%v to %s", path, x.name, prev, k.id)
	m := pr.build(s, k, prev, path, []byte(fmt.Sprintf("request %d", pr.step))).seal(pr.t)
	pr.exchange(x, m, s, k, "request")
}

func (pr *propRun) dropSession(s *propSess) {
	for i, o := range pr.sessions {
		if o == s {
			pr.sessions = append(pr.sessions[:i:i], pr.sessions[i+1:]...)
			return
		}
	}
}

// opClientRotation rotates a session's client key, on a heartbeat or on an
// ordinary request (refused if the key is past its hard limit).
func (pr *propRun) opClientRotation() {
	t := pr.t
	s := pr.liveSession()
	x := pr.pickInst()
	k := pr.primaryOf(x)
	path := "/api/rotate"
	if pr.pick(2) == 0 {
		path = wire.PathHeartbeat
	}
	nk, err := pr.suite.GenerateKey(nil)
	require.NoError(t, err)
	pr.logStep("  client rotation via %s on %s (key age %v)", path, x.name, pr.clk.Now().Sub(pr.ckeys[s.curID].installed))
	m := pr.build(s, k, false, path, nil).honestRotation(t, nk).seal(t)
	r := pr.exchange(x, m, s, k, "client rotation")
	if r.Status != http.StatusOK {
		return
	}
	now := pr.clk.Now()
	old := s.curID
	newID := wire.ComputeKeyID(pr.suite.Name(), nk.Public().Bytes())
	s.prev, s.prevID, s.prevUntil = s.cur, s.curID, now.Add(pr.clientGrace)
	s.cur, s.curID = nk, newID
	pr.ckeys[newID] = &propClientKey{installed: now, pred: &old}
	if pr.pick(2) == 0 {
		// A request sealed before the rotation, under the previous key,
		// arrives within ClientKeyGrace (or just after it).
		var d time.Duration
		if pr.pick(4) == 0 {
			d = pr.clientGrace - pr.durMs(0, time.Second)
		} else {
			d = pr.durMs(0, pr.clientGrace-time.Millisecond)
		}
		pr.clk.Advance(d)
		prevPast := pr.clk.Now().Sub(pr.ckeys[old].installed) >= pr.hard
		pr.logStep("  in flight under the previous key, %v later (past its hard limit: %v)", d, prevPast)
		m := pr.build(s, k, true, "/api/in-flight", []byte("in flight")).seal(t)
		r := pr.exchange(x, m, s, k, "in-flight request under the previous key")
		pr.stats[fmt.Sprintf("P2 in-flight under the previous key (past hard limit %v): %s", prevPast, cmpOr(string(r.code()), "200"))]++
	}
}

// opCapture seals a request that a man in the middle keeps, and checks
// that, for now, the store's copy of the key opens it (so that P4's check
// has teeth).
func (pr *propRun) opCapture() {
	t := pr.t
	s := pr.liveSession()
	x := pr.pickInst()
	k := pr.primaryOf(x)
	if g := pr.graceKeys(); len(g) > 0 && pr.pick(3) == 0 {
		k = g[pr.pick(len(g))]
	}
	body := fmt.Sprintf("captured secret %d", pr.step)
	m := pr.build(s, k, false, "/api/capture", []byte(body)).seal(t)
	c := &propCapture{m: m, key: k, sess: s, sender: s.cur.Public(), body: body}
	require.Equal(t, body, string(pr.storeOpens(c)), "control: the store still holds the key of a fresh capture")
	pr.caps = append(pr.caps, c)
	pr.logStep("  capture under %s", k.id)
	if pr.pick(3) == 0 {
		pr.exchange(x, m, s, k, "captured request, delivered")
	}
}

// opResend delivers a captured request (again) to any instance.
func (pr *propRun) opResend() {
	if len(pr.caps) == 0 {
		return
	}
	c := pr.caps[pr.pick(len(pr.caps))]
	x := pr.pickInst()
	pr.logStep("  resend capture under %s to %s", c.key.id, x.name)
	pr.exchange(x, c.m, c.sess, c.key, "resent capture")
}

// opProbe is P3: a request sealed to a key in its grace window, at a random
// point of the window, often just before its end, and now and then at the
// end itself (refused).
func (pr *propRun) opProbe() {
	g := pr.graceKeys()
	if len(g) == 0 {
		pr.stats["P3 probe skipped: no key in its grace window"]++
		return
	}
	k := g[pr.pick(len(g))]
	now := pr.clk.Now()
	end := k.retired.Add(pr.grace)
	left := end.Sub(now)
	var at time.Duration
	label := "P3 probe inside the window"
	switch pr.pick(5) {
	case 0:
	case 1:
		at = pr.durMs(0, left-time.Millisecond)
	case 2, 3:
		at = left - pr.durMs(time.Millisecond, min(2*time.Second, left))
		label = "P3 probe just before the end (≤2s)"
	default:
		at = left
		label = "P2 probe at the end of the window"
	}
	pr.clk.Advance(at)
	// Prefer an instance that loaded the key, so the probe is strict.
	var knows []*propInst
	for _, x := range pr.inst {
		if _, ok := pr.view(x)[k.id]; ok {
			knows = append(knows, x)
		}
	}
	x := pr.pickInst()
	if len(knows) > 0 && pr.pick(5) > 0 {
		x = knows[pr.pick(len(knows))]
	}
	pr.logStep("  probe %s on %s, %v before the end of its window", k.id, x.name, end.Sub(pr.clk.Now()))
	s := pr.addSession(x)
	m := pr.build(s, k, false, "/api/probe", []byte("probe")).seal(pr.t)
	r := pr.exchange(x, m, s, k, label)
	if r.Status == http.StatusOK {
		pr.stats[label+", accepted"]++
	} else {
		pr.stats[label+", refused"]++
	}
}

// opSDKRequest: P5 with the real client. A POST through the SDK (on the
// first instance) always succeeds; it logs in again only once its token
// has expired, and the refusals it recovered from are only those the model
// allows.
func (pr *propRun) opSDKRequest() {
	t := pr.t
	before := pr.sdkBefore()
	body := fmt.Sprintf("sdk %d", pr.step)
	pr.logStep("  sdk request")
	status, got, err := call(pr.hc, http.MethodPost, pr.inst[0].url+"/api/sdk", body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status, got)
	require.Equal(t, body, got)
	pr.expectCalls++
	pr.sdkAfter(before)
}

// opSDKRotation rotates the SDK's key on one of its idempotent requests
// (the next key is generated in the background, so it may take a few).
func (pr *propRun) opSDKRotation() {
	t := pr.t
	before := pr.sdkBefore()
	pr.logStep("  sdk rotation")
	n := pr.sdk.Stats().ClientRotations
	for i := 0; pr.sdk.Stats().ClientRotations == n; i++ {
		require.Less(t, i, 10000, "the SDK never rotated")
		pr.sdk.RotateNow()
		body := fmt.Sprintf("sdk rotation %d.%d", pr.step, i)
		status, got, err := call(pr.hc, http.MethodPut, pr.inst[0].url+"/api/sdk", body)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, status, got)
		require.Equal(t, body, got)
		pr.expectCalls++
		runtime.Gosched()
	}
	pr.sdkAfter(before)
}

type propSDKState struct {
	flights   int
	logins    uint64
	expired   bool // the token has expired
	keyPast   bool // the client key is past its hard limit
	srvKeyBad bool // the server key it seals to can no longer open
}

func (pr *propRun) sdkBefore() propSDKState {
	now := pr.clk.Now()
	pr.evMu.Lock()
	st := propSDKState{expired: !now.Before(pr.sdkExp)}
	if pr.sdkHasKey {
		st.keyPast = now.Sub(pr.ckeys[pr.sdkKey].installed) >= pr.hard
	}
	pr.evMu.Unlock()
	if id, ok := pr.sdk.ServerKeyID(); ok {
		st.srvKeyBad = !pr.keyValid(pr.keys[id.String()], now)
	}
	pr.tr.mu.Lock()
	st.flights = len(pr.tr.flights)
	pr.tr.mu.Unlock()
	st.logins = pr.sdk.Stats().Logins
	return st
}

func (pr *propRun) sdkAfter(b propSDKState) {
	t := pr.t
	pr.tr.mu.Lock()
	flights := pr.tr.flights[b.flights:]
	pr.tr.mu.Unlock()
	allowed := map[wire.Code]bool{
		wire.CodeServerKeyUnknown: b.srvKeyBad,
		wire.CodeTokenExpired:     b.expired,
		wire.CodeTokenInvalid:     b.expired,
		wire.CodeClientKeyExpired: b.keyPast,
	}
	for _, f := range flights {
		p, ok := wire.ParseProblem(f.resp)
		if !ok || !strings.HasPrefix(f.respCT, wire.ProblemMediaType) {
			continue
		}
		pr.stats["sdk recovered from "+string(p.Code)]++
		require.True(t, allowed[p.Code], "the SDK was refused with %s (%s) on %s; the model allows %v", p.Code, p.Detail, f.req.URL.Path, allowed)
	}
	logins := pr.sdk.Stats().Logins - b.logins
	if b.expired {
		require.Equal(t, uint64(1), logins, "P5: the SDK logs in once when its token has expired")
	} else {
		require.Zero(t, logins, "P5: the SDK's token still works across server key rotations")
	}
}

// sdkEvent tracks the SDK's client keys: when each was installed and the
// key it replaced.
func (pr *propRun) sdkEvent(e client.Event) {
	if e.Kind != client.EventLogin && e.Kind != client.EventClientKeyRotated {
		return
	}
	now := pr.clk.Now()
	f := strings.Fields(e.Detail)
	id, err := wire.ParseKeyID(f[len(f)-1])
	pr.evMu.Lock()
	defer pr.evMu.Unlock()
	if err != nil {
		pr.sdkErr = fmt.Errorf("event %q: %w", e.Detail, err)
		return
	}
	ck := &propClientKey{installed: now}
	if e.Kind == client.EventLogin {
		pr.sdkLoginAt, pr.sdkExp = now, now.Add(pr.ttl)
	} else {
		old := pr.sdkKey
		ck.pred = &old
	}
	pr.ckeys[id] = ck
	pr.sdkKey, pr.sdkHasKey = id, true
}
