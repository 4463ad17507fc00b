package middleware

// Package-level tests that kill mutants which survived mutation testing of
// the middleware (docs/SECURITY.md, "Mutation testing"): the end-to-end
// tests in internal/e2e cover much of the same ground, but gremlins counts
// only a package's own tests. They drive the real open path over loopback
// with envelopes built by hand (timeEnv, timecheck_test.go).

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/crypto"
	"github.com/dynkey/dynkey/store"
	"github.com/dynkey/dynkey/store/memory"
	"github.com/dynkey/dynkey/wire"

	_ "github.com/dynkey/dynkey/crypto/pq"
)

// newMutEnv is newTimeEnv with options changed by mod and, if st is not
// nil, that store.
func newMutEnv(t *testing.T, st store.Store, mod func(*Options)) *timeEnv {
	t.Helper()
	clk := newMTClock()
	if st == nil {
		st = memory.New()
	}
	o := Options{Store: st, Authenticator: mtUsers(t), KeyEncryptionKey: mtKEK(7),
		MaintainInterval: -1, Now: clk.Now, Logger: mtQuiet}
	if mod != nil {
		mod(&o)
	}
	m, err := New(o)
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	e := &timeEnv{t: t, m: m, clk: clk}
	e.suite, err = crypto.Lookup(m.Suite())
	require.NoError(t, err)
	srv := httptest.NewServer(m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.calls.Add(1)
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "ok")
	})))
	t.Cleanup(srv.Close)
	e.url = srv.URL
	return e
}

// mutReq is one hand-built request of a stored session.
type mutReq struct {
	suite    string // header suite; default the server's
	body     []byte // inner body; default "hi"
	newKey   crypto.PrivateKey
	inHeader bool // envelope in the Dynkey-Envelope header
}

// envelope seals r from key `from` with token tok at the server's now.
func (e *timeEnv) envelope(tok []byte, from crypto.PrivateKey, r mutReq) []byte {
	t := e.t
	suite := r.suite
	if suite == "" {
		suite = e.suite.Name()
	}
	k := e.m.ring.Load().primaries[e.suite.Name()] // the primary of the sealing suite
	if k == nil {
		k = e.m.ring.Load().primary
	}
	h := wire.RequestHeader{Type: wire.TypeRequest, Suite: suite, ServerKeyID: k.id, Token: tok, STime: uint64(e.now())}
	id := wire.ComputeKeyID(suite, from.Public().Bytes())
	h.ClientKey = id[:]
	_, _ = rand.Read(h.MessageID[:])
	in := wire.Inner{ContentType: "text/plain", Body: []byte("hi")}
	if r.body != nil {
		in.Body = r.body
	}
	if r.newKey != nil {
		proof, _, err := e.suite.Seal(nil, k.public, r.newKey, []byte(wire.InfoProof), wire.ProofAAD(h.MessageID, id, r.newKey.Public().Bytes()), nil)
		require.NoError(t, err)
		in.NewClientKey, in.Proof, in.HasOffset = r.newKey.Public().Bytes(), proof, true
	}
	header, err := wire.AppendRequestHeader(nil, &h)
	require.NoError(t, err)
	pt, err := wire.AppendInner(nil, &in)
	require.NoError(t, err)
	ct, _, err := e.suite.Seal(nil, k.public, from, []byte(wire.InfoRequest), wire.RequestAAD(http.MethodPut, "/api/x", "", header), pt)
	require.NoError(t, err)
	return append(header, ct...)
}

// post sends a raw PUT to /api/x (envelope in the body, or in the header if
// hdr is set) and returns the status and problem code ("" for a success).
func (e *timeEnv) post(body io.Reader, contentLength int64, hdr string) (int, wire.Code) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPut, e.url+"/api/x", body)
	require.NoError(e.t, err)
	req.ContentLength = contentLength
	if hdr != "" {
		req.Header.Set(wire.EnvelopeHeader, hdr)
	} else {
		req.Header.Set("Content-Type", wire.MediaType)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	if resp.StatusCode == http.StatusOK {
		return resp.StatusCode, ""
	}
	p, ok := wire.ParseProblem(b)
	require.True(e.t, ok, "status %d: %s", resp.StatusCode, b)
	return resp.StatusCode, p.Code
}

// sendMut seals r for a fresh session (changed by mod) and sends it.
func (e *timeEnv) sendMut(mod func(*sessionRecord), r mutReq, fromPrev bool) wire.Code {
	e.t.Helper()
	sid, cur, prev := e.session(mod)
	now := uint64(e.now())
	tok := e.token(sid, now, now, now+3_600_000)
	from := cur
	if fromPrev {
		from = prev
	}
	env := e.envelope(tok, from, r)
	var code wire.Code
	if r.inHeader {
		_, code = e.post(nil, 0, wire.EncodeHeaderEnvelope(env))
	} else {
		_, code = e.post(bytes.NewReader(env), int64(len(env)), "")
	}
	return code
}

// chunked hides a reader's length, so the request goes out chunked.
type chunked struct{ r io.Reader }

func (c chunked) Read(p []byte) (int, error) { return c.r.Read(p) }

// TestEnvelopeSizeBounds: the size limits of readEnvelope at their exact
// boundaries, declared (Content-Length) and undeclared (chunked), in the
// body and in the Dynkey-Envelope header.
func TestEnvelopeSizeBounds(t *testing.T) {
	const max = 4096
	e := newMutEnv(t, nil, func(o *Options) { o.MaxBodySize = max })
	limit := int64(max + envelopeOverhead)
	junk := func(n int64) []byte {
		b := bytes.Repeat([]byte{'x'}, int(n))
		if n >= 2 {
			b[0], b[1] = 'D', 'K'
		}
		return b
	}
	tests := []struct {
		name    string
		body    []byte
		chunked bool
		want    wire.Code
	}{
		{"declared, at the limit", junk(limit), false, wire.CodeBadFormat},
		{"declared, one over", junk(limit + 1), false, wire.CodeTooLarge},
		{"chunked, at the limit", junk(limit), true, wire.CodeBadFormat},
		{"chunked, one over", junk(limit + 1), true, wire.CodeTooLarge},
		{"chunked, empty", nil, true, wire.CodeNotEncrypted},
		{"one byte", []byte("D"), false, wire.CodeNotEncrypted},
		{"not DK", []byte("DXxxxxxx"), false, wire.CodeNotEncrypted},
		{"not DK (first byte)", []byte("XKxxxxxx"), false, wire.CodeNotEncrypted},
		{"DK junk", []byte("DKxxxxxx"), false, wire.CodeBadFormat},
		{"just DK", []byte("DK"), false, wire.CodeBadFormat},
		{"no body", nil, false, wire.CodeNotEncrypted},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			var body io.Reader = bytes.NewReader(tc.body)
			n := int64(len(tc.body))
			if tc.chunked {
				body, n = chunked{bytes.NewReader(tc.body)}, -1
			}
			_, code := e.post(body, n, "")
			require.Equal(t, tc.want, code)
		})
	}

	// A genuine envelope whose plaintext body is exactly MaxBodySize opens;
	// one byte more is refused after the open.
	t.Run("inner body at MaxBodySize", func(t *testing.T) {
		e.t = t
		require.Equal(t, wire.Code(""), e.sendMut(nil, mutReq{body: make([]byte, max)}, false))
		require.Equal(t, wire.CodeTooLarge, e.sendMut(nil, mutReq{body: make([]byte, max+1)}, false))
	})

	// The Dynkey-Envelope header: an envelope whose encoding is exactly
	// MaxEnvelopeHeaderSize characters opens; one that is longer is refused
	// as too large.
	t.Run("header envelope bounds", func(t *testing.T) {
		e := newMutEnv(t, nil, nil) // MaxBodySize 1 MiB: the header's bound decides
		sid, cur, _ := e.session(nil)
		now := uint64(e.now())
		tok := e.token(sid, now, now, now+3_600_000)
		// The envelope grows by one byte per body byte: find the body size
		// whose envelope encodes to exactly the bound.
		want := wire.MaxEnvelopeHeaderSize * 3 / 4 // 6144 bytes encode to 8192 chars
		base := len(e.envelope(tok, cur, mutReq{body: []byte{}}))
		body := make([]byte, want-base)
		env := e.envelope(tok, cur, mutReq{body: body})
		require.Len(t, env, want)
		hdr := wire.EncodeHeaderEnvelope(env)
		require.Len(t, hdr, wire.MaxEnvelopeHeaderSize)
		_, code := e.post(nil, 0, hdr)
		require.Equal(t, wire.Code(""), code)
		_, code = e.post(nil, 0, hdr+"A")
		require.Equal(t, wire.CodeTooLarge, code)
		// A valid header envelope with a body as well: refused, whether the
		// body's length is declared or not; with an empty body it opens.
		calls := e.calls.Load()
		small := wire.EncodeHeaderEnvelope(e.envelope(tok, cur, mutReq{}))
		_, code = e.post(strings.NewReader("x"), 1, small)
		require.Equal(t, wire.CodeBadFormat, code)
		_, code = e.post(chunked{strings.NewReader("x")}, -1, small)
		require.Equal(t, wire.CodeBadFormat, code)
		require.Equal(t, calls, e.calls.Load())
		_, code = e.post(chunked{strings.NewReader("")}, -1, small)
		require.Equal(t, wire.Code(""), code)
	})
}

// TestSessionSuiteNoDowngrade: a deployment that switched suites (here
// from ecies-x25519 to pq-xwing, on the same store) keeps serving the
// sessions of the old suite, in the old suite only: a message must use its
// session's suite, and a suite with no primary key is refused up front.
func TestSessionSuiteNoDowngrade(t *testing.T) {
	st := memory.New()
	old := newMutEnv(t, st, nil)
	require.Equal(t, "ecies-x25519", old.suite.Name())
	cur := newMutEnv(t, st, func(o *Options) { o.Suite = "pq-xwing" })
	require.NotNil(t, cur.m.ring.Load().primaries["ecies-x25519"], "the old suite's primary stays")
	// An env that seals in the old suite against the new deployment.
	e := &timeEnv{t: t, m: cur.m, clk: cur.clk, url: cur.url, suite: old.suite}
	calls := cur.calls.Load()
	tests := []struct {
		name  string
		sess  func(*sessionRecord)
		suite string
		want  wire.Code
	}{
		{"old-suite session in its suite", nil, "", ""},
		{"new-suite session sending in the old suite", func(sr *sessionRecord) { sr.Suite = "pq-xwing" }, "", wire.CodeUnsupportedSuite},
		{"a suite without a primary", nil, "no-such-suite", wire.CodeUnsupportedSuite},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			require.Equal(t, tc.want, e.sendMut(tc.sess, mutReq{suite: tc.suite}, false))
		})
	}
	require.Equal(t, calls+1, cur.calls.Load(), "only the accepted request ran")
}

// TestRotationTargets: a rotation must go to a key that is neither the
// current one nor the previous one; a session without a previous key
// rotates to a fresh one.
func TestRotationTargets(t *testing.T) {
	e := newMutEnv(t, nil, nil)
	gen := func() crypto.PrivateKey {
		k, err := e.suite.GenerateKey(nil)
		require.NoError(t, err)
		return k
	}
	t.Run("to the current key", func(t *testing.T) {
		e.t = t
		sid, cur, _ := e.session(nil)
		now := uint64(e.now())
		env := e.envelope(e.token(sid, now, now, now+3_600_000), cur, mutReq{newKey: cur})
		_, code := e.post(bytes.NewReader(env), int64(len(env)), "")
		require.Equal(t, wire.CodeRotationRefused, code)
	})
	t.Run("to the previous key", func(t *testing.T) {
		e.t = t
		sid, cur, prev := e.session(nil)
		now := uint64(e.now())
		env := e.envelope(e.token(sid, now, now, now+3_600_000), cur, mutReq{newKey: prev})
		_, code := e.post(bytes.NewReader(env), int64(len(env)), "")
		require.Equal(t, wire.CodeRotationRefused, code)
	})
	t.Run("from the previous key", func(t *testing.T) {
		e.t = t
		require.Equal(t, wire.CodeRotationRefused, e.sendMut(nil, mutReq{newKey: gen()}, true))
	})
	t.Run("no previous key, to a fresh key", func(t *testing.T) {
		e.t = t
		require.Equal(t, wire.Code(""), e.sendMut(func(sr *sessionRecord) { sr.PrevKey, sr.PrevUntil = nil, 0 }, mutReq{newKey: gen()}, false))
	})
	t.Run("to a fresh key, then the grace window holds the old key", func(t *testing.T) {
		e.t = t
		sid, cur, _ := e.session(nil)
		now := uint64(e.now())
		tok := e.token(sid, now, now, now+3_600_000)
		nk := gen()
		env := e.envelope(tok, cur, mutReq{newKey: nk})
		_, code := e.post(bytes.NewReader(env), int64(len(env)), "")
		require.Equal(t, wire.Code(""), code)
		sr, _, err := e.m.loadSession(context.Background(), sid)
		require.NoError(t, err)
		require.Equal(t, nk.Public().Bytes(), sr.ClientKey)
		require.Equal(t, cur.Public().Bytes(), sr.PrevKey)
		require.Equal(t, e.now(), sr.KeyInstalled)
		require.Equal(t, e.now()+int64(e.m.o.ClientKeyGrace/time.Millisecond), sr.PrevUntil)
		// Both keys open requests now; the old one until PrevUntil.
		for _, k := range []crypto.PrivateKey{nk, cur} {
			env := e.envelope(tok, k, mutReq{})
			_, code := e.post(bytes.NewReader(env), int64(len(env)), "")
			require.Equal(t, wire.Code(""), code)
		}
	})
}

// casRaceStore lets another writer change a session right after the
// rotation loaded it, as a second instance rotating the same session
// concurrently would: the rotation's compare-and-swap must then fail, even
// if the code re-read the session's version before it.
type casRaceStore struct {
	store.Store
	armed atomic.Bool
}

func (s *casRaceStore) Get(ctx context.Context, key string) (store.Entry, error) {
	e, err := s.Store.Get(ctx, key)
	if err == nil && strings.HasPrefix(key, "dynkey/session/") && s.armed.CompareAndSwap(true, false) {
		if _, err := s.Store.CompareAndSwap(ctx, key, e.Version, e.Value, time.Now().Add(time.Hour)); err != nil {
			return store.Entry{}, err
		}
	}
	return e, err
}

// TestConcurrentRotationLoses: a rotation whose compare-and-swap finds the
// session changed since it was loaded is refused, the handler does not
// run, and the message id stays unused.
func TestConcurrentRotationLoses(t *testing.T) {
	st := &casRaceStore{Store: memory.New()}
	e := newMutEnv(t, st, nil)
	sid, cur, _ := e.session(nil)
	now := uint64(e.now())
	nk, err := e.suite.GenerateKey(nil)
	require.NoError(t, err)
	env := e.envelope(e.token(sid, now, now, now+3_600_000), cur, mutReq{newKey: nk})
	st.armed.Store(true)
	calls := e.calls.Load()
	_, code := e.post(bytes.NewReader(env), int64(len(env)), "")
	require.False(t, st.armed.Load(), "the race was staged")
	require.Equal(t, wire.CodeRotationRefused, code)
	require.Equal(t, calls, e.calls.Load())
}

// seenStore records the expiry of every message id marked seen.
type seenStore struct {
	store.Store
	exp atomic.Int64 // ms
}

func (s *seenStore) MarkSeen(ctx context.Context, key string, exp time.Time) (bool, error) {
	s.exp.Store(exp.UnixMilli())
	return s.Store.MarkSeen(ctx, key, exp)
}

// TestReplayWindowCoversFreshness: a message id is remembered for twice
// the freshness window plus the margin (a message is fresh from window
// before to window after the server's now), and a replay inside it does
// not run the handler again.
func TestReplayWindowCoversFreshness(t *testing.T) {
	st := &seenStore{Store: memory.New()}
	e := newMutEnv(t, st, func(o *Options) { o.FreshnessWindow = 90 * time.Second })
	require.Equal(t, 3*time.Minute+time.Minute, e.m.replayWindow())
	sid, cur, _ := e.session(nil)
	now := uint64(e.now())
	env := e.envelope(e.token(sid, now, now, now+3_600_000), cur, mutReq{})
	_, code := e.post(bytes.NewReader(env), int64(len(env)), "")
	require.Equal(t, wire.Code(""), code)
	require.Equal(t, e.now()+(4*time.Minute).Milliseconds(), st.exp.Load())
	calls := e.calls.Load()
	_, code = e.post(bytes.NewReader(env), int64(len(env)), "")
	require.Equal(t, wire.Code(""), code, "a replay gets the stored response")
	require.Equal(t, calls, e.calls.Load(), "the handler does not run again")
}

// TestKEKSealedLengths: a sealed secret is refused, never sliced out of
// range, however short; an empty secret round-trips.
func TestKEKSealedLengths(t *testing.T) {
	ks, err := newKEKSet(mtKEK(9), nil)
	require.NoError(t, err)
	sealed, err := ks.seal(rand.Reader, "p", "id", nil)
	require.NoError(t, err)
	pt, err := ks.open("p", "id", sealed)
	require.NoError(t, err)
	require.Empty(t, pt)
	for n := 0; n < len(sealed); n++ {
		_, err := ks.open("p", "id", sealed[:n])
		require.Error(t, err, "%d bytes", n)
	}
	_, err = ks.open("p", "other id", sealed)
	require.Error(t, err)
}

// TestTokenBounds: tokens at the bounds of their fields are minted and
// opened exactly; short or malformed ones are invalid, never a panic.
func TestTokenBounds(t *testing.T) {
	e := newMutEnv(t, nil, nil)
	ctx := context.Background()
	now := e.clk.Now()
	ms := now.UnixMilli()
	var sid [16]byte
	_, _ = rand.Read(sid[:])
	mint := func(c claims) ([]byte, error) { return e.m.mintToken(&c) }

	// The shortest valid token: empty username, times 0 except expires.
	tok, err := mint(claims{SessionID: sid, Expires: ms + 1})
	require.NoError(t, err)
	require.Len(t, tok, tokenHeader+tokenNonceSize+16+claimsFixed)
	c, err := e.m.openToken(ctx, tok, now)
	require.NoError(t, err)
	require.Equal(t, sid, c.SessionID)
	require.Equal(t, int64(0), c.STime)
	require.Empty(t, c.Username)
	for n := 0; n < len(tok); n++ {
		_, err := e.m.openToken(ctx, tok[:n], now)
		require.ErrorIs(t, err, errTokenInvalid, "%d bytes", n)
	}
	// All times 0 are valid (the token is expired, not invalid).
	tok, err = mint(claims{SessionID: sid})
	require.NoError(t, err)
	_, err = e.m.openToken(ctx, tok, now)
	require.ErrorIs(t, err, errTokenExpired)
	for _, c := range []claims{{STime: -1}, {Issued: -1}, {Expires: -1}} {
		_, err := mint(c)
		require.Error(t, err, "%+v", c)
	}
	// Username length: 256 bytes is the limit.
	long := strings.Repeat("u", maxUsername)
	tok, err = mint(claims{SessionID: sid, Expires: ms + 1, Username: long})
	require.NoError(t, err)
	c, err = e.m.openToken(ctx, tok, now)
	require.NoError(t, err)
	require.Equal(t, long, c.Username)
	_, err = mint(claims{SessionID: sid, Expires: ms + 1, Username: long + "u"})
	require.Error(t, err)
	// Wrong version byte.
	tok, err = mint(claims{SessionID: sid, Expires: ms + 1})
	require.NoError(t, err)
	tok[0]++
	_, err = e.m.openToken(ctx, tok, now)
	require.ErrorIs(t, err, errTokenInvalid)
}

// TestAgeDurationLargest: the largest age in whole ms that a Duration holds
// is exact; one more is clamped to the largest Duration.
func TestAgeDurationLargest(t *testing.T) {
	lim := int64(math.MaxInt64 / int64(time.Millisecond))
	require.Equal(t, time.Duration(lim)*time.Millisecond, ageDuration(lim, 0))
	require.Equal(t, time.Duration(math.MaxInt64), ageDuration(lim+1, 0))
	require.Equal(t, time.Duration(0), ageDuration(5, 5))
	require.Equal(t, time.Duration(0), ageDuration(5, 6))
	require.Equal(t, time.Millisecond, ageDuration(6, 5))
}

// TestValidHeaderFieldBounds: the characters at the edges of what a header
// name and value may hold.
func TestValidHeaderFieldBounds(t *testing.T) {
	tests := []struct {
		name, n, v string
		ok         bool
	}{
		{"plain", "X-A", "b c", true},
		{"space in name", "X A", "b", false},
		{"! in name", "X!", "b", true},
		{"~ in name", "X~", "b", true},
		{"DEL in name", "X\x7f", "b", false},
		{"colon in name", "X:", "b", false},
		{"empty name", "", "b", false},
		{"space in value", "X", " ", true},
		{"tab in value", "X", "a\tb", true},
		{"0x1f in value", "X", "a\x1fb", false},
		{"newline in value", "X", "a\nb", false},
		{"DEL in value", "X", "a\x7fb", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.ok, validHeaderField(tc.n, tc.v))
		})
	}
}

// TestRotateKEKResealsEveryTokenKey: after RotateKEK, every token key of
// the ring — the primary and each retired one — opens under the new KEK
// alone.
func TestRotateKEKResealsEveryTokenKey(t *testing.T) {
	ctx := context.Background()
	clk := newMTClock()
	st := memory.New()
	m, err := New(Options{Store: st, KeyEncryptionKey: mtKEK(4), Authenticator: mtUsers(t), TokenKeyRotation: time.Hour,
		TokenTTL: 3 * time.Hour, MaintainInterval: -1, RingPollInterval: -1, Now: clk.Now, Logger: mtQuiet})
	require.NoError(t, err)
	defer m.Close()
	for range 3 {
		clk.Advance(61 * time.Minute)
		require.NoError(t, m.Rotate(ctx))
		require.NoError(t, m.Maintain(ctx))
	}
	require.GreaterOrEqual(t, len(mtRing(t, st).TokenKeys), 3, "two retired token keys or more")
	require.NoError(t, m.RotateKEK(ctx, mtKEK(5)))

	m2, err := New(Options{Store: st, KeyEncryptionKey: mtKEK(5), Authenticator: mtUsers(t), TokenKeyRotation: time.Hour,
		TokenTTL: 3 * time.Hour, MaintainInterval: -1, RingPollInterval: -1, Now: clk.Now, Logger: mtQuiet})
	require.NoError(t, err, "the ring opens under the new KEK alone")
	m2.Close()
}

// TestTokenFromAnInstanceThatRotatedFirst: a token sealed under a token key
// this instance has not loaded yet (another instance rotated it) makes it
// reload the ring, and opens.
func TestTokenFromAnInstanceThatRotatedFirst(t *testing.T) {
	ctx := context.Background()
	clk := newMTClock()
	st := memory.New()
	opts := func() Options {
		return Options{Store: st, KeyEncryptionKey: mtKEK(4), Authenticator: mtUsers(t), TokenKeyRotation: time.Hour,
			TokenTTL: 3 * time.Hour, MaintainInterval: -1, RingPollInterval: -1, Now: clk.Now, Logger: mtQuiet}
	}
	a, err := New(opts())
	require.NoError(t, err)
	defer a.Close()
	b, err := New(opts())
	require.NoError(t, err)
	defer b.Close()
	before := b.ring.Load().tokenPrimary.id
	clk.Advance(61 * time.Minute)
	require.NoError(t, a.Rotate(ctx))
	require.NoError(t, a.Maintain(ctx))
	require.NotEqual(t, before, a.ring.Load().tokenPrimary.id, "a rotated its token key")
	ms := clk.Now().UnixMilli()
	tok, err := a.mintToken(&claims{Username: "alice", Issued: ms, Expires: ms + 60_000})
	require.NoError(t, err)
	_, err = b.openToken(ctx, tok, clk.Now())
	require.NoError(t, err)
}

// TestLimiterBudgetEdges: both limiters allow exactly the budget of
// failures within the window, refuse the next one, and count afresh from
// the exact end of the window.
func TestLimiterBudgetEdges(t *testing.T) {
	ctx := context.Background()
	const w = time.Minute
	o := LimiterOptions{PerAddressUser: 2, Window: w}
	for _, tc := range []struct {
		name string
		l    func() LoginLimiter
	}{
		{"store", func() LoginLimiter { return NewStoreLimiter(memory.New(), o) }},
		{"memory", func() LoginLimiter { return NewMemoryLimiter(o) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := tc.l()
			t0 := time.Now().Round(time.Millisecond)
			at := func(d time.Duration) LoginAttempt {
				return LoginAttempt{Address: "192.0.2.1", User: "alice", At: t0.Add(d)}
			}
			for i := range 2 {
				ok, err := l.Allow(ctx, at(0))
				require.NoError(t, err)
				require.True(t, ok, "failure %d within the budget", i+1)
				l.Done(ctx, at(0), LoginFailed)
			}
			ok, err := l.Allow(ctx, at(w-time.Millisecond))
			require.NoError(t, err)
			require.False(t, ok, "over the budget, inside the window")
			ok, err = l.Allow(ctx, at(w))
			require.NoError(t, err)
			require.True(t, ok, "the window ended exactly")
		})
	}
}

// TestMemoryLimiterFailsClosedWhenFull: past its bound on live counters the
// in-process limiter refuses new attempts (a flood of distinct addresses
// and users cannot grow it without bound), and takes them again once old
// counters have expired.
func TestMemoryLimiterFailsClosedWhenFull(t *testing.T) {
	l := NewMemoryLimiter(LimiterOptions{Window: time.Minute}).(*memoryLimiter)
	l.max = 6 // each attempt below needs 3 counters: (address, user), user, address
	ctx := context.Background()
	t0 := time.Unix(1_800_000_000, 0)
	for i, a := range []LoginAttempt{{"10.0.0.1", "u1", t0}, {"10.0.0.2", "u2", t0}} {
		ok, err := l.Allow(ctx, a)
		if err != nil || !ok {
			t.Fatalf("attempt %d under the bound: ok=%v err=%v", i, ok, err)
		}
	}
	if ok, err := l.Allow(ctx, LoginAttempt{"10.0.0.3", "u3", t0.Add(time.Second)}); err != nil || ok {
		t.Fatalf("attempt past the bound: ok=%v err=%v, want refused", ok, err)
	}
	if n := len(l.counts); n > l.max {
		t.Fatalf("%d counters, bound %d", n, l.max)
	}
	if ok, err := l.Allow(ctx, LoginAttempt{"10.0.0.3", "u3", t0.Add(2 * time.Minute)}); err != nil || !ok {
		t.Fatalf("attempt after the old counters expired: ok=%v err=%v", ok, err)
	}
}
