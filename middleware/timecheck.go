package middleware

import (
	"math"
	"time"
)

// Protocol time arithmetic (docs/PROTOCOL.md §11, item "time cannot wrap").
//
// Every time that comes off the wire, out of a token or out of a session
// record is an integer count of milliseconds since the Unix epoch, and every
// sum or difference of them is computed here, on int64 milliseconds, with
// overflow reported rather than wrapped or saturated. time.Time and
// time.Duration are not used for them: Time.Sub saturates at ±292 years and
// the absolute value of math.MinInt64 is negative, so an s_time some 300
// years ahead used to pass the freshness check.

// msTime is a protocol time or duration in milliseconds.
type msTime = int64

// unixMs returns t in ms since the Unix epoch.
func unixMs(t time.Time) msTime { return t.UnixMilli() }

// durMs returns d in whole milliseconds.
func durMs(d time.Duration) msTime { return d.Milliseconds() }

// u64ms converts a u64 from the wire; ok is false above math.MaxInt64.
func u64ms(v uint64) (msTime, bool) {
	if v > math.MaxInt64 {
		return 0, false
	}
	return int64(v), true
}

// addMs returns a+b; ok is false if the sum overflows int64.
func addMs(a, b msTime) (msTime, bool) {
	s := a + b
	if (b > 0 && s < a) || (b < 0 && s > a) {
		return 0, false
	}
	return s, true
}

// subMs returns a−b; ok is false if the difference overflows int64.
func subMs(a, b msTime) (msTime, bool) {
	d := a - b
	if (b < 0 && d < a) || (b > 0 && d > a) {
		return 0, false
	}
	return d, true
}

// absMs returns |a|; ok is false for math.MinInt64, whose absolute value
// has no int64.
func absMs(a msTime) (msTime, bool) {
	if a == math.MinInt64 {
		return 0, false
	}
	if a < 0 {
		return -a, true
	}
	return a, true
}

// withinMs reports whether |a−b| ≤ limit, with no overflow: a difference
// that cannot be represented is not within any limit.
func withinMs(a, b, limit msTime) bool {
	d, ok := subMs(a, b)
	if !ok {
		return false
	}
	d, ok = absMs(d)
	return ok && d <= limit
}

// fresh is the freshness check of hole 4: the client's estimate of the
// server clock, s_time + elapsed, must be within window of now, and s_time
// itself (a server time the client was given) cannot be later than now plus
// the window. Any field past int64, or a sum that overflows, is stale.
func fresh(sTime, elapsed uint64, now, window msTime) bool {
	st, ok1 := u64ms(sTime)
	el, ok2 := u64ms(elapsed)
	if !ok1 || !ok2 {
		return false
	}
	latest, ok := addMs(now, window)
	if !ok || st > latest {
		return false
	}
	est, ok := addMs(st, el)
	return ok && withinMs(now, est, window)
}

// ageDuration returns now − since as a time.Duration for a policy, clamped
// to [0, math.MaxInt64 ns]: a time in the future is age 0, and an age past
// the Duration range (292 years), or one whose difference overflows int64
// ms (since near math.MinInt64: a corrupt record), is the largest Duration,
// past any age limit.
func ageDuration(now, since msTime) time.Duration {
	d, ok := subMs(now, since)
	if !ok || d > math.MaxInt64/int64(time.Millisecond) {
		return time.Duration(math.MaxInt64)
	}
	if d <= 0 {
		return 0
	}
	return time.Duration(d) * time.Millisecond
}
