package policy_test

// Property tests: random policies built from the grammar of Parse (a random
// tree of rules and combinators) and random facts, from a seeded PCG. The
// seed is logged; replay a failure with
//
//	go test ./policy -run TestProperties -seed=N   (or DYNKEY_SEED=N)

import (
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/policy"
)

var seedFlag = flag.Uint64("seed", 0, "seed of the property tests (0: DYNKEY_SEED, else the default seed)")

// propSeed is the seed of this run: -seed, else $DYNKEY_SEED, else a fixed
// default, so that a plain `go test` is reproducible.
func propSeed(t *testing.T, def uint64) uint64 {
	t.Helper()
	seed := *seedFlag
	if seed == 0 {
		if s := os.Getenv("DYNKEY_SEED"); s != "" {
			v, err := strconv.ParseUint(s, 10, 64)
			require.NoError(t, err, "DYNKEY_SEED")
			seed = v
		}
	}
	if seed == 0 {
		seed = def
	}
	t.Logf("seed %d (replay: go test ./policy -run '%s' -seed=%d)", seed, t.Name(), seed)
	return seed
}

// node is one policy of a generated tree, with what the checks need to
// know about it.
type node struct {
	p    policy.Policy
	kind string // "rule", "any", "all", "reject", "jitter"
	kids []*node
	frac float64 // jitter
}

type gen struct{ r *rand.Rand }

func (g gen) duration() time.Duration {
	switch g.r.IntN(5) {
	case 0:
		return time.Duration(1+g.r.IntN(3600)) * time.Second
	case 1:
		return time.Duration(1+g.r.IntN(72)) * time.Hour
	case 2:
		return time.Duration(1+g.r.IntN(1000)) * time.Minute
	case 3:
		return time.Duration(1 + g.r.Int64N(int64(1000*time.Hour))) // any nanosecond count
	default:
		return time.Duration(1+g.r.IntN(999)) * time.Millisecond
	}
}

func (g gen) count() uint64 {
	switch g.r.IntN(3) {
	case 0:
		return 1 + g.r.Uint64N(1000)
	case 1:
		return 1 + g.r.Uint64N(1<<40)
	default:
		return 1 + g.r.Uint64N(math.MaxUint64-1)
	}
}

func (g gen) size() uint64 {
	units := []uint64{1, 1e3, 1e6, 1e9, 1e12, 1 << 10, 1 << 20, 1 << 30, 1 << 40}
	switch g.r.IntN(3) {
	case 0:
		return (1 + g.r.Uint64N(4096)) * units[g.r.IntN(len(units))]
	case 1:
		return 1 + g.r.Uint64N(1<<50)
	default:
		return 1 + g.r.Uint64N(math.MaxUint64-1)
	}
}

// percent is a jitter fraction in (0, 1]: whole and decimal percentages,
// and arbitrary floats (policies built with Jitter, not only parsed ones).
func (g gen) frac() float64 {
	switch g.r.IntN(4) {
	case 0:
		return float64(1+g.r.IntN(100)) / 100
	case 1:
		return float64(1+g.r.IntN(1000)) / 1000
	case 2:
		return 1
	default:
		return 1 - g.r.Float64() // (0, 1]
	}
}

func (g gen) rule() *node {
	var p policy.Policy
	switch g.r.IntN(9) {
	case 0:
		p = policy.Uptime(g.duration())
	case 1:
		p = policy.OffsetGrowth(g.duration())
	case 2, 3:
		p = policy.MaxAge(g.duration())
	case 4:
		p = policy.MaxMessages(g.count())
	case 5:
		p = policy.MaxBytes(g.size())
	case 6:
		p = policy.Manual()
	default:
		p = policy.Daily(g.r.IntN(24), g.r.IntN(60))
	}
	return &node{p: p, kind: "rule"}
}

// tree generates a random policy of at most depth levels of combinators.
func (g gen) tree(depth int) *node {
	if depth == 0 || g.r.IntN(3) == 0 {
		return g.rule()
	}
	switch g.r.IntN(4) {
	case 0, 1:
		n := &node{kind: "any"}
		if g.r.IntN(2) == 0 {
			n.kind = "all"
		}
		ps := make([]policy.Policy, 1+g.r.IntN(4))
		for i := range ps {
			k := g.tree(depth - 1)
			n.kids = append(n.kids, k)
			ps[i] = k.p
		}
		if n.kind == "any" {
			n.p = policy.AnyOf(ps...)
		} else {
			n.p = policy.AllOf(ps...)
		}
		return n
	case 2:
		k := g.tree(depth - 1)
		return &node{p: policy.RejectAfter(k.p), kind: "reject", kids: []*node{k}}
	default:
		k := g.tree(depth - 1)
		f := g.frac()
		return &node{p: policy.Jitter(f, k.p), kind: "jitter", kids: []*node{k}, frac: f}
	}
}

// facts draws facts near the policy's scales, with the extremes now and
// then.
func (g gen) facts() policy.Facts {
	d := func() time.Duration {
		switch g.r.IntN(8) {
		case 0:
			return 0
		case 1:
			return math.MaxInt64 - time.Duration(g.r.Int64N(int64(time.Hour)))
		case 2:
			return time.Duration(g.r.Int64N(math.MaxInt64))
		default:
			return g.duration()
		}
	}
	n := func(x func() uint64) uint64 {
		switch g.r.IntN(8) {
		case 0:
			return 0
		case 1:
			return math.MaxUint64 - g.r.Uint64N(1<<20)
		default:
			return x()
		}
	}
	id := make([]byte, 8)
	for i := range id {
		id[i] = byte(g.r.Uint32())
	}
	now := time.Unix(1_700_000_000+g.r.Int64N(100*365*86400), g.r.Int64N(1e9)).UTC()
	return policy.Facts{Now: now, Age: d(), OffsetGrowth: d(), Messages: n(g.count), Bytes: n(g.size), KeyID: id}
}

// scaled is f with every counted fact multiplied by k, saturating.
func scaled(f policy.Facts, k float64) policy.Facts {
	dur := func(d time.Duration) time.Duration {
		x := float64(d) * k
		if x >= math.MaxInt64 {
			return math.MaxInt64
		}
		return time.Duration(x)
	}
	cnt := func(n uint64) uint64 {
		x := float64(n) * k
		if x >= math.MaxUint64 {
			return math.MaxUint64
		}
		return uint64(x)
	}
	f.Age, f.OffsetGrowth = dur(f.Age), dur(f.OffsetGrowth)
	f.Messages, f.Bytes = cnt(f.Messages), cnt(f.Bytes)
	return f
}

// check verifies the decision properties of every node of the tree at f.
// (Failure messages are built only on failure: this runs millions of times.)
func check(t *testing.T, n *node, f policy.Facts) {
	t.Helper()
	fail := func(what string, args ...any) {
		t.Helper()
		t.Fatalf("%s at %+v: %s", n.p, f, fmt.Sprintf(what, args...))
	}
	got := n.p.Decide(f)
	if got < policy.Keep || got > policy.Reject {
		fail("unknown decision %d", got)
	}
	switch n.kind {
	case "any", "all":
		want := n.kids[0].p.Decide(f)
		for _, k := range n.kids[1:] {
			if n.kind == "any" {
				want = max(want, k.p.Decide(f))
			} else {
				want = min(want, k.p.Decide(f))
			}
		}
		if got != want {
			fail("decided %v, want %v: AnyOf is the max of its parts, AllOf the min", got, want)
		}
	case "reject":
		if got == policy.Rotate {
			fail("RejectAfter said rotate")
		}
		if inner := n.kids[0].p.Decide(f); (inner != policy.Keep) != (got == policy.Reject) {
			fail("RejectAfter decided %v where its policy decided %v", got, inner)
		}
	case "jitter":
		inner := n.kids[0].p
		if lo := inner.Decide(f); got < lo {
			fail("jitter decided %v, later than the policy it wraps (%v)", got, lo)
		}
		if hi := inner.Decide(scaled(f, 1+n.frac)); got > hi {
			fail("jitter decided %v, earlier than the facts scaled by 1/(1+%v) allow (%v)", got, n.frac, hi)
		}
	}
	for _, k := range n.kids {
		check(t, k, f)
	}
}

// TestPropertiesPolicy: for random policies from the grammar,
// Parse(p.String()).String() == p.String(); AnyOf decides the max of its
// parts and AllOf the min; RejectAfter never says rotate; Jitter never
// decides later than the policy it wraps at the same facts, nor earlier
// than that policy at the facts scaled by 1+frac (so a threshold t is never
// reached before t/(1+frac)).
func TestPropertiesPolicy(t *testing.T) {
	r := rand.New(rand.NewPCG(propSeed(t, 20261126), 0x706f6c696379))
	g := gen{r}
	const policies, factsEach = 2000, 10
	for range policies {
		n := g.tree(4)
		s := n.p.String()
		q, err := policy.Parse(s)
		require.NoError(t, err, "Parse(%q)", s)
		require.Equal(t, s, q.String(), "Parse(p.String()).String() == p.String()")
		for range factsEach {
			f := g.facts()
			check(t, n, f)
			if a, b := n.p.Decide(f), q.Decide(f); a != b {
				t.Fatalf("%s decides %v, its parsed string %v, at %+v", s, a, b, f)
			}
		}
		// Thresholds themselves, where off-by-one errors live.
		for _, d := range []time.Duration{time.Millisecond, time.Second, time.Minute, time.Hour} {
			f := g.facts()
			f.Age, f.OffsetGrowth = f.Age.Truncate(d), f.OffsetGrowth.Truncate(d)
			check(t, n, f)
		}
	}
}

// TestPropertiesJitterBounds: a jittered threshold rule rotates no later
// than the rule and no earlier than threshold/(1+frac), for every key.
func TestPropertiesJitterBounds(t *testing.T) {
	r := rand.New(rand.NewPCG(propSeed(t, 20261127), 0x6a6974746572))
	g := gen{r}
	for range 2000 {
		limit := g.duration()
		frac := g.frac()
		p := policy.Jitter(frac, policy.MaxAge(limit))
		f := g.facts()
		lo := time.Duration(float64(limit) / (1 + frac))
		for _, age := range []time.Duration{limit, limit + 1, max(lo-1, 0), max(lo-time.Duration(float64(lo)*1e-9)-1, 0)} {
			f.Age = age
			d := p.Decide(f)
			switch {
			case age >= limit:
				require.Equal(t, policy.Rotate, d, "%s at age %v", p, age)
			case age < lo-lo/1_000_000: // clear of float rounding at the bound
				require.Equal(t, policy.Keep, d, "%s at age %v (bound %v)", p, age, lo)
			}
		}
	}
}
