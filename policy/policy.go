// Package policy decides when keys rotate.
//
// A [Policy] looks at the [Facts] about one key and returns a [Decision]. The
// same interface serves both sides: the server asks it about its primary key
// pair (patent claim 6: rotate by uptime) and about each client's key (to
// hint or force a rotation), and the client asks it about its own key (claim
// 5: rotate by the growth of time_offset).
//
// # Built-ins
//
// [Uptime], [OffsetGrowth], [MaxAge], [MaxMessages], [MaxBytes], [Daily],
// [Manual]; [RejectAfter] turns a rule into a hard limit (WireGuard's
// reject-after), [Jitter] spreads the rotations of many keys, and [AnyOf] and
// [AllOf] combine rules.
//
// # Configuration
//
// [Parse] reads the short syntax, and every Policy's String returns it:
//
//	uptime>=24h
//	offset_growth>=1h or messages>=100000
//	age>=2m or reject(age>=3m)
//	jitter(10%, age>=24h) or daily@03:00
//
// Terms are joined with "or" and "and" ("and" binds tighter); parentheses
// group. Durations use Go's syntax (90s, 1h30m); sizes take a unit
// (bytes>=1GiB, bytes>=500MB). Writing your own policy is implementing the
// two methods of [Policy].
package policy

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"time"
)

// Decision is what a policy wants done with a key.
type Decision int

const (
	// Keep: keep using the key.
	Keep Decision = iota
	// Rotate: replace the key soon (the next message or tick). The key
	// still works.
	Rotate
	// Reject: the key is past a hard limit and must not be used at all; a
	// server refuses messages under it until the client rotates.
	Reject
)

// String returns "keep", "rotate" or "reject".
func (d Decision) String() string {
	switch d {
	case Rotate:
		return "rotate"
	case Reject:
		return "reject"
	}
	return "keep"
}

// Facts describe one key at one moment. A fact a side does not know is zero.
type Facts struct {
	// Now is the decision time.
	Now time.Time
	// Age is how long the key has been in service: for a server key, the
	// time since it became primary (its uptime, claim 6); for a client key,
	// the time since it was installed.
	Age time.Duration
	// OffsetGrowth is, for a client key, how much the server clock has
	// advanced since the key was installed, measured as s_time plus the
	// client's monotonic elapsed time (claim 5's time_offset growth). It is
	// immune to a wrong client wall clock.
	OffsetGrowth time.Duration
	// Messages and Bytes count the messages and plaintext bytes sent or
	// received under the key.
	Messages uint64
	Bytes    uint64
	// KeyID identifies the key; Jitter derives each key's spread from it.
	KeyID []byte
}

// Policy decides whether a key must rotate. Implementations must be safe for
// concurrent use and fast: Decide runs before every client request.
type Policy interface {
	// Decide returns what to do with the key described by f.
	Decide(f Facts) Decision
	// String describes the policy in the syntax Parse reads.
	String() string
}

func when(b bool) Decision {
	if b {
		return Rotate
	}
	return Keep
}

type uptime time.Duration

// Uptime rotates a server key pair once it has been primary for d (claim 6).
func Uptime(d time.Duration) Policy { return uptime(d) }

func (p uptime) Decide(f Facts) Decision { return when(f.Age >= time.Duration(p)) }
func (p uptime) String() string          { return "uptime>=" + fmtDuration(time.Duration(p)) }

type offsetGrowth time.Duration

// OffsetGrowth rotates a client key once time_offset has grown by d since
// the key was installed (claim 5).
func OffsetGrowth(d time.Duration) Policy { return offsetGrowth(d) }

func (p offsetGrowth) Decide(f Facts) Decision { return when(f.OffsetGrowth >= time.Duration(p)) }
func (p offsetGrowth) String() string {
	return "offset_growth>=" + fmtDuration(time.Duration(p))
}

type maxAge time.Duration

// MaxAge rotates a key once it has been in service for d.
func MaxAge(d time.Duration) Policy { return maxAge(d) }

func (p maxAge) Decide(f Facts) Decision { return when(f.Age >= time.Duration(p)) }
func (p maxAge) String() string          { return "age>=" + fmtDuration(time.Duration(p)) }

type maxMessages uint64

// MaxMessages rotates a key after n messages.
func MaxMessages(n uint64) Policy { return maxMessages(n) }

func (p maxMessages) Decide(f Facts) Decision { return when(f.Messages >= uint64(p)) }
func (p maxMessages) String() string          { return fmt.Sprintf("messages>=%d", uint64(p)) }

type maxBytes uint64

// MaxBytes rotates a key after n bytes of plaintext (SSH rekeys after 1 GB).
func MaxBytes(n uint64) Policy { return maxBytes(n) }

func (p maxBytes) Decide(f Facts) Decision { return when(f.Bytes >= uint64(p)) }
func (p maxBytes) String() string          { return "bytes>=" + fmtSize(uint64(p)) }

type manual struct{}

// Manual never rotates: rotation happens only when asked for explicitly
// (Middleware.Rotate, Client.RotateNow).
func Manual() Policy { return manual{} }

func (manual) Decide(Facts) Decision { return Keep }
func (manual) String() string        { return "manual" }

type daily struct{ h, m int }

// Daily rotates a key that was put in service before the latest hour:minute
// (UTC) that has passed, so every key is rotated once a day at that time.
// It needs Facts.Now and Facts.Age.
func Daily(hour, minute int) Policy {
	if hour < 0 || hour > 23 || minute < 0 || minute > 59 {
		panic(fmt.Sprintf("dynkey/policy: invalid daily time %02d:%02d", hour, minute))
	}
	return daily{hour, minute}
}

func (p daily) Decide(f Facts) Decision {
	now := f.Now.UTC()
	at := time.Date(now.Year(), now.Month(), now.Day(), p.h, p.m, 0, 0, time.UTC)
	if at.After(now) {
		at = at.AddDate(0, 0, -1)
	}
	return when(now.Add(-f.Age).Before(at))
}
func (p daily) String() string { return fmt.Sprintf("daily@%02d:%02d", p.h, p.m) }

type reject struct{ p Policy }

// RejectAfter turns p into a hard limit: where p says rotate, it says the key
// must not be used any more (WireGuard's reject-after). Combine it with a
// softer rule that rotates first: "age>=2m or reject(age>=3m)".
func RejectAfter(p Policy) Policy { return reject{p} }

func (r reject) Decide(f Facts) Decision {
	if r.p.Decide(f) != Keep {
		return Reject
	}
	return Keep
}
func (r reject) String() string { return "reject(" + r.p.String() + ")" }

type jitter struct {
	frac float64
	p    Policy
}

// Jitter spreads the rotations of many keys: each key sees its age, offset
// growth, messages and bytes scaled up by a factor in [1, 1+frac) derived
// from its KeyID, so it rotates up to frac earlier than p alone would say,
// and keys created together do not all rotate at once. frac is in (0, 1].
func Jitter(frac float64, p Policy) Policy {
	if !(frac > 0 && frac <= 1) {
		panic(fmt.Sprintf("dynkey/policy: jitter fraction %v not in (0, 1]", frac))
	}
	return jitter{frac, p}
}

func (j jitter) Decide(f Facts) Decision {
	h := sha256.Sum256(append([]byte("dynkey/v1 policy jitter\x00"), f.KeyID...))
	u := float64(binary.BigEndian.Uint64(h[:8])>>11) / (1 << 53) // [0, 1)
	k := 1 + u*j.frac
	f.Age = scaleDuration(f.Age, k)
	f.OffsetGrowth = scaleDuration(f.OffsetGrowth, k)
	f.Messages = scaleCount(f.Messages, k)
	f.Bytes = scaleCount(f.Bytes, k)
	return j.p.Decide(f)
}

// scaleDuration and scaleCount multiply a fact by k ≥ 1. They saturate
// instead of overflowing (Go leaves an out-of-range float conversion
// implementation-defined: on amd64 a huge age became negative and a huge
// count zero, so Jitter kept a key the policy it wraps rotates), and never
// return less than the fact itself (float64 rounds values above 2^53).
func scaleDuration(d time.Duration, k float64) time.Duration {
	x := float64(d) * k
	switch {
	case x >= math.MaxInt64: // float64(MaxInt64) is 2^63
		return math.MaxInt64
	case x <= math.MinInt64:
		return math.MinInt64
	case d >= 0:
		return max(time.Duration(x), d)
	}
	return time.Duration(x)
}

func scaleCount(n uint64, k float64) uint64 {
	x := float64(n) * k
	if x >= math.MaxUint64 { // 2^64
		return math.MaxUint64
	}
	return max(uint64(x), n)
}
func (j jitter) String() string {
	return fmt.Sprintf("jitter(%s%%, %s)", trimFloat(j.frac*100), j.p.String())
}

type anyOf []Policy

// AnyOf returns the strongest decision of ps (Reject over Rotate over Keep):
// the key rotates when any of them says so.
func AnyOf(ps ...Policy) Policy { return anyOf(ps) }

func (a anyOf) Decide(f Facts) Decision {
	d := Keep
	for _, p := range a {
		d = max(d, p.Decide(f))
	}
	return d
}
func (a anyOf) String() string { return join(a, " or ", false) }

type allOf []Policy

// AllOf returns the weakest decision of ps: the key rotates only when all of
// them say so.
func AllOf(ps ...Policy) Policy { return allOf(ps) }

func (a allOf) Decide(f Facts) Decision {
	if len(a) == 0 {
		return Keep
	}
	d := Reject
	for _, p := range a {
		d = min(d, p.Decide(f))
	}
	return d
}
func (a allOf) String() string { return join(a, " and ", true) }

func join(ps []Policy, sep string, parenOr bool) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
		if parenOr && len(ps) > 1 && hasOr(p) {
			s[i] = "(" + s[i] + ")"
		}
	}
	return strings.Join(s, sep)
}

// hasOr reports whether p's String has an "or" at its top level, which an
// "and" between several parts must parenthesize. A combinator of one part
// prints as that part: AnyOf(AnyOf(a, b)) and AllOf(AnyOf(a, b)) print as
// "a or b", which Parse reads back as AnyOf(a, b).
func hasOr(p Policy) bool {
	switch a := p.(type) {
	case anyOf:
		return len(a) > 1 || len(a) == 1 && hasOr(a[0])
	case allOf:
		return len(a) == 1 && hasOr(a[0])
	}
	return false
}
