package middleware

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"io"
	"math"
	"math/big"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/crypto"
	"github.com/dynkey/dynkey/policy"
	"github.com/dynkey/dynkey/store/memory"
	"github.com/dynkey/dynkey/wire"
)

// The checked arithmetic agrees with exact (big.Int) arithmetic on the
// int64 extremes and on random values: a result is reported ok exactly when
// it fits in int64, and then it is exact.
func TestCheckedMsArithmetic(t *testing.T) {
	edges := []int64{math.MinInt64, math.MinInt64 + 1, -1 << 62, -1, 0, 1, 1 << 62, math.MaxInt64 - 1, math.MaxInt64,
		time.Now().UnixMilli(), -time.Now().UnixMilli()}
	rng := mrand.New(mrand.NewPCG(4, 4))
	vals := append([]int64(nil), edges...)
	for range 200 {
		vals = append(vals, int64(rng.Uint64()))
	}
	fits := func(z *big.Int) bool { return z.IsInt64() }
	for _, a := range vals {
		for _, b := range vals {
			sum := new(big.Int).Add(big.NewInt(a), big.NewInt(b))
			s, ok := addMs(a, b)
			require.Equal(t, fits(sum), ok, "add %d %d", a, b)
			if ok {
				require.Equal(t, sum.Int64(), s)
			}
			diff := new(big.Int).Sub(big.NewInt(a), big.NewInt(b))
			d, ok := subMs(a, b)
			require.Equal(t, fits(diff), ok, "sub %d %d", a, b)
			if ok {
				require.Equal(t, diff.Int64(), d)
			}
			for _, limit := range []int64{0, 1, 120_000, math.MaxInt64} {
				want := new(big.Int).Abs(diff).Cmp(big.NewInt(limit)) <= 0 && fits(diff) && fits(new(big.Int).Abs(diff))
				require.Equal(t, want, withinMs(a, b, limit), "within %d %d %d", a, b, limit)
			}
		}
	}
	_, ok := absMs(math.MinInt64)
	require.False(t, ok, "|MinInt64| has no int64")
	require.Equal(t, time.Duration(math.MaxInt64), ageDuration(0, math.MinInt64))
	require.Equal(t, time.Duration(math.MaxInt64), ageDuration(math.MaxInt64, 0))
	require.Equal(t, time.Duration(0), ageDuration(0, math.MaxInt64))
	require.Equal(t, 3*time.Millisecond, ageDuration(5, 2))
}

// fresh over every extreme of s_time and elapsed, against exact arithmetic.
func TestFreshExtremes(t *testing.T) {
	now := time.Now().UnixMilli()
	const w = int64(120_000)
	u := func(v int64) uint64 { return uint64(v) }
	vals := []uint64{0, 1, u(now - w - 1), u(now - w), u(now), u(now + w), u(now + w + 1),
		u(now + 300*365*24*3600*1000), math.MaxInt64 - 1, math.MaxInt64, math.MaxInt64 + 1, math.MaxUint64 - 1, math.MaxUint64,
		u(w), u(w + 1)}
	for _, st := range vals {
		for _, el := range vals {
			est := new(big.Int).Add(new(big.Int).SetUint64(st), new(big.Int).SetUint64(el))
			diff := new(big.Int).Abs(new(big.Int).Sub(est, big.NewInt(now)))
			want := diff.Cmp(big.NewInt(w)) <= 0 && st <= uint64(now+w)
			require.Equal(t, want, fresh(st, el, now, w), "s_time %d elapsed %d", st, el)
		}
	}
}

// timeEnv is a middleware on loopback whose sessions and tokens a test
// writes itself, so that every time field can take any value and still
// travel through the real open path (envelope, token, session, policy,
// HPKE open, rotation).
type timeEnv struct {
	t     *testing.T
	m     *Middleware
	clk   *mtClock
	url   string
	suite crypto.Suite
	calls atomic.Int64
}

func newTimeEnv(t *testing.T) *timeEnv {
	t.Helper()
	clk := newMTClock()
	m, err := New(Options{Store: memory.New(), Authenticator: mtUsers(t), KeyEncryptionKey: mtKEK(7),
		MaintainInterval: -1, Now: clk.Now, Logger: mtQuiet,
		ClientPolicy: policy.MustParse("reject(age>=2h)")})
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

func (e *timeEnv) now() int64 { return e.clk.Now().UnixMilli() }

// session stores a session of alice with a current and a previous key,
// changed by mod, and returns its id and keys.
func (e *timeEnv) session(mod func(*sessionRecord)) (id [16]byte, cur, prev crypto.PrivateKey) {
	e.t.Helper()
	_, _ = rand.Read(id[:])
	var err error
	cur, err = e.suite.GenerateKey(nil)
	require.NoError(e.t, err)
	prev, err = e.suite.GenerateKey(nil)
	require.NoError(e.t, err)
	now := e.now()
	sr := sessionRecord{Username: "alice", Suite: e.suite.Name(), ClientKey: cur.Public().Bytes(), KeyInstalled: now,
		PrevKey: prev.Public().Bytes(), PrevUntil: now + 60_000, PrevInstalled: now - 60_000, Expires: now + 3_600_000}
	if mod != nil {
		mod(&sr)
	}
	require.NoError(e.t, e.m.storeSession(context.Background(), id, 0, &sr))
	return id, cur, prev
}

// token seals claims with arbitrary u64 times under the primary token key,
// exactly as mintToken lays them out.
func (e *timeEnv) token(sid [16]byte, sTime, issued, expires uint64) []byte {
	k := e.m.ring.Load().tokenPrimary
	pt := make([]byte, 16, claimsFixed+5)
	_, _ = rand.Read(pt)
	pt = append(pt, sid[:]...)
	pt = binary.BigEndian.AppendUint64(pt, sTime)
	pt = binary.BigEndian.AppendUint64(pt, issued)
	pt = binary.BigEndian.AppendUint64(pt, expires)
	pt = binary.BigEndian.AppendUint16(pt, 5)
	pt = append(pt, "alice"...)
	out := make([]byte, tokenHeader+tokenNonceSize)
	out[0] = tokenVersion
	copy(out[1:], k.id[:])
	_, _ = rand.Read(out[tokenHeader:])
	return k.token.Seal(out, out[tokenHeader:], pt, tokenAAD(out[:tokenHeader]))
}

// timeReq is one request of a test session.
type timeReq struct {
	token          []byte
	from           crypto.PrivateKey
	sTime, elapsed uint64
	rotate         bool // carry a rotation to a new key with timeOffset
	timeOffset     int64
}

// send seals r, posts it and returns the status and problem code ("" for
// a success).
func (e *timeEnv) send(r timeReq) (int, wire.Code) {
	e.t.Helper()
	t := e.t
	k := e.m.ring.Load().primary
	h := wire.RequestHeader{Type: wire.TypeRequest, Suite: e.suite.Name(), ServerKeyID: k.id, Token: r.token,
		STime: r.sTime, Elapsed: r.elapsed}
	id := wire.ComputeKeyID(e.suite.Name(), r.from.Public().Bytes())
	h.ClientKey = id[:]
	_, _ = rand.Read(h.MessageID[:])
	in := wire.Inner{ContentType: "text/plain", Body: []byte("hi")}
	if r.rotate {
		nk, err := e.suite.GenerateKey(nil)
		require.NoError(t, err)
		proof, _, err := e.suite.Seal(nil, k.public, nk, []byte(wire.InfoProof), wire.ProofAAD(h.MessageID, id, nk.Public().Bytes()), nil)
		require.NoError(t, err)
		in.NewClientKey, in.Proof, in.TimeOffset, in.HasOffset = nk.Public().Bytes(), proof, r.timeOffset, true
	}
	header, err := wire.AppendRequestHeader(nil, &h)
	require.NoError(t, err)
	pt, err := wire.AppendInner(nil, &in)
	require.NoError(t, err)
	ct, _, err := e.suite.Seal(nil, k.public, r.from, []byte(wire.InfoRequest), wire.RequestAAD(http.MethodPut, "/api/x", "", header), pt)
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPut, e.url+"/api/x", bytes.NewReader(append(header, ct...)))
	require.NoError(t, err)
	req.Header.Set("Content-Type", wire.MediaType)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if resp.StatusCode == http.StatusOK {
		return resp.StatusCode, ""
	}
	p, ok := wire.ParseProblem(b)
	require.True(t, ok, "status %d: %s", resp.StatusCode, b)
	require.Equal(t, p.Code.Status(), resp.StatusCode)
	return resp.StatusCode, p.Code
}

// TestTimeFieldsThroughOpen: every protocol time field — s_time, elapsed,
// time_offset, the token's s_time, issued and expires, and the session's
// key_installed, prev_until and prev_installed — at the int64/uint64
// extremes and around its limits, through the real open path. Nothing
// wraps: each value is accepted or refused exactly as its true value says,
// never with a 500, and the handler runs only for accepted ones.
//
// Defense exercised: timecheck.go (checked int64 ms) as used by
// parseAndCheck, openToken, rotateClientKey and clientKeyDecision.
// Verified: with the old time.Time arithmetic, s_time 300 years ahead was
// accepted (now.Sub saturates, absDuration(MinInt64) < 0), and time_offset
// ±2^58 passed the rotation threshold (2^58 ms × 1e6 wraps to 0 ns).
func TestTimeFieldsThroughOpen(t *testing.T) {
	e := newTimeEnv(t)
	const (
		window    = int64(2 * 60_000) // default FreshnessWindow
		threshold = int64(30_000)     // default RotationOffsetThreshold
		u63       = uint64(math.MaxInt64)
	)
	future300y := int64(300 * 365 * 24 * 3600 * 1000)
	u := func(v int64) uint64 { return uint64(v) }
	ok := wire.Code("")

	type tc struct {
		name    string
		session func(*sessionRecord)
		token   func(sid [16]byte, now int64) []byte
		prev    bool // sent from the previous key
		sTime   func(now int64) uint64
		elapsed uint64
		rotate  bool
		offset  int64
		want    wire.Code
	}
	nowS := func(d int64) func(int64) uint64 { return func(now int64) uint64 { return u(now + d) } }
	abs := func(v uint64) func(int64) uint64 { return func(int64) uint64 { return v } }
	tok := func(st, is, ex func(now int64) uint64) func([16]byte, int64) []byte {
		return func(sid [16]byte, now int64) []byte { return e.token(sid, st(now), is(now), ex(now)) }
	}
	good := nowS(0)
	var cases []tc
	// s_time (elapsed 0).
	for _, c := range []struct {
		name string
		v    func(int64) uint64
		want wire.Code
	}{
		{"0", abs(0), wire.CodeStale},
		{"1", abs(1), wire.CodeStale},
		{"now-window-1", nowS(-window - 1), wire.CodeStale},
		{"now-window", nowS(-window), ok},
		{"now", nowS(0), ok},
		{"now+window", nowS(window), ok},
		{"now+window+1", nowS(window + 1), wire.CodeStale},
		{"now+300y", nowS(future300y), wire.CodeStale},
		{"MaxInt64", abs(u63), wire.CodeStale},
		{"MaxInt64+1", abs(u63 + 1), wire.CodeStale},
		{"MaxUint64", abs(math.MaxUint64), wire.CodeStale},
	} {
		cases = append(cases, tc{name: "s_time=" + c.name, sTime: c.v, want: c.want})
	}
	// elapsed (s_time chosen so that only elapsed decides).
	for _, c := range []struct {
		name  string
		sTime func(int64) uint64
		v     uint64
		want  wire.Code
	}{
		{"0", good, 0, ok},
		{"window", nowS(-window * 2), u(window), ok},
		{"window+1 past now", good, u(window + 1), wire.CodeStale},
		{"now (s_time 0)", abs(0), 0, wire.CodeStale},
		{"MaxInt64", good, u63, wire.CodeStale},
		{"MaxInt64 (s_time 0)", abs(0), u63, wire.CodeStale},
		{"MaxInt64+1", abs(0), u63 + 1, wire.CodeStale},
		{"MaxUint64", good, math.MaxUint64, wire.CodeStale},
	} {
		cases = append(cases, tc{name: "elapsed=" + c.name, sTime: c.sTime, elapsed: c.v, want: c.want})
	}
	// s_time+elapsed that wraps around 2^64 to exactly now.
	cases = append(cases, tc{name: "s_time 2^63+now with elapsed 2^63 (u64 sum wraps to now)",
		sTime: func(now int64) uint64 { return 1<<63 + u(now) }, elapsed: 1 << 63, want: wire.CodeStale})
	// time_offset on a rotation (s_time now, elapsed 0: the server's offset is 0).
	for _, c := range []struct {
		name string
		v    int64
		want wire.Code
	}{
		{"0", 0, ok},
		{"threshold", threshold, ok},
		{"-threshold", -threshold, ok},
		{"threshold+1", threshold + 1, wire.CodeRotationRefused},
		{"-threshold-1", -threshold - 1, wire.CodeRotationRefused},
		{"2^58 (wraps to 0 in ns)", 1 << 58, wire.CodeRotationRefused},
		{"-2^58", -1 << 58, wire.CodeRotationRefused},
		{"MaxInt64", math.MaxInt64, wire.CodeRotationRefused},
		{"MinInt64", math.MinInt64, wire.CodeRotationRefused},
		{"MinInt64+1", math.MinInt64 + 1, wire.CodeRotationRefused},
	} {
		cases = append(cases, tc{name: "time_offset=" + c.name, sTime: good, rotate: true, offset: c.v, want: c.want})
	}
	// Token times.
	exp := nowS(3_600_000)
	for _, c := range []struct {
		name       string
		st, is, ex func(int64) uint64
		want       wire.Code
	}{
		{"expires=0", good, abs(0), abs(0), wire.CodeTokenExpired},
		{"expires=now", good, nowS(-1), good, wire.CodeTokenExpired},
		{"expires=now+1", good, good, nowS(1), ok},
		{"expires=MaxInt64", good, good, abs(u63), ok},
		{"expires=MaxInt64+1", good, good, abs(u63 + 1), wire.CodeTokenInvalid},
		{"expires=MaxUint64", good, good, abs(math.MaxUint64), wire.CodeTokenInvalid},
		{"issued=MaxInt64+1", good, abs(u63 + 1), exp, wire.CodeTokenInvalid},
		{"issued=MaxUint64", good, abs(math.MaxUint64), exp, wire.CodeTokenInvalid},
		{"issued after expires", good, nowS(3_600_001), exp, wire.CodeTokenInvalid},
		{"issued=0", good, abs(0), exp, ok},
		{"s_time=MaxInt64+1", abs(u63 + 1), good, exp, wire.CodeTokenInvalid},
		{"s_time=MaxUint64", abs(math.MaxUint64), good, exp, wire.CodeTokenInvalid},
		{"s_time=MaxInt64", abs(u63), good, exp, ok},
		{"s_time=0", abs(0), good, exp, ok},
	} {
		cases = append(cases, tc{name: "token " + c.name, token: tok(c.st, c.is, c.ex), sTime: good, want: c.want})
	}
	// Session times (ClientPolicy reject(age>=2h)).
	sess := func(f func(sr *sessionRecord, now int64)) func(*sessionRecord) {
		return func(sr *sessionRecord) { f(sr, sr.KeyInstalled) }
	}
	for _, c := range []struct {
		name string
		f    func(sr *sessionRecord, now int64)
		prev bool
		want wire.Code
	}{
		{"key_installed=MinInt64", func(sr *sessionRecord, now int64) { sr.KeyInstalled = math.MinInt64 }, false, wire.CodeClientKeyExpired},
		{"key_installed=0", func(sr *sessionRecord, now int64) { sr.KeyInstalled = 0 }, false, wire.CodeClientKeyExpired},
		{"key_installed=now-2h", func(sr *sessionRecord, now int64) { sr.KeyInstalled = now - 7_200_000 }, false, wire.CodeClientKeyExpired},
		{"key_installed=now-2h+1", func(sr *sessionRecord, now int64) { sr.KeyInstalled = now - 7_199_999 }, false, ok},
		{"key_installed=MaxInt64", func(sr *sessionRecord, now int64) { sr.KeyInstalled = math.MaxInt64 }, false, ok},
		{"prev_until=MinInt64", func(sr *sessionRecord, now int64) { sr.PrevUntil = math.MinInt64 }, true, wire.CodeClientKeyUnknown},
		{"prev_until=now", func(sr *sessionRecord, now int64) { sr.PrevUntil = now }, true, wire.CodeClientKeyUnknown},
		{"prev_until=now+1", func(sr *sessionRecord, now int64) { sr.PrevUntil = now + 1 }, true, ok},
		{"prev_until=MaxInt64", func(sr *sessionRecord, now int64) { sr.PrevUntil = math.MaxInt64 }, true, ok},
		{"prev_installed=MinInt64", func(sr *sessionRecord, now int64) { sr.PrevInstalled = math.MinInt64 }, true, wire.CodeClientKeyExpired},
		{"prev_installed=MaxInt64", func(sr *sessionRecord, now int64) { sr.PrevInstalled = math.MaxInt64 }, true, ok},
	} {
		cases = append(cases, tc{name: "session " + c.name, session: sess(c.f), prev: c.prev, sTime: good, want: c.want})
	}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.t = t
			sid, cur, prev := e.session(c.session)
			now := e.now()
			token := e.token(sid, u(now), u(now), u(now+3_600_000))
			if c.token != nil {
				token = c.token(sid, now)
			}
			from := cur
			if c.prev {
				from = prev
			}
			calls := e.calls.Load()
			status, code := e.send(timeReq{token: token, from: from, sTime: c.sTime(now), elapsed: c.elapsed, rotate: c.rotate, timeOffset: c.offset})
			require.Equal(t, c.want, code, "status %d", status)
			require.Less(t, status, 500)
			ran := e.calls.Load() - calls
			if c.want == ok {
				require.Equal(t, int64(1), ran, "accepted: the handler ran")
			} else {
				require.Zero(t, ran, "refused before the handler")
			}
		})
	}
}
