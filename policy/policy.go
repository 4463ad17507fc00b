// Package policy decides when keys rotate.
//
// A [Policy] looks at the [Facts] about one key and returns a [Decision]. The
// same interface serves both sides: the server asks it about its primary key
// pair (patent claim 6: rotate by uptime) and the client asks it about its own
// key (claim 5: rotate by the growth of time_offset). Built-ins combine with
// [AnyOf].
package policy

import (
	"fmt"
	"strings"
	"time"
)

// Decision is what a policy wants done with a key.
type Decision int

const (
	Keep   Decision = iota // keep using the key
	Rotate                 // replace the key soon (the next message or tick)
)

// String returns "keep" or "rotate".
func (d Decision) String() string {
	if d == Rotate {
		return "rotate"
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
	// Messages is the number of messages sent or received under the key.
	Messages uint64
}

// Policy decides whether a key must rotate. Implementations must be safe for
// concurrent use and fast: Decide runs before every client request.
type Policy interface {
	Decide(f Facts) Decision
	// String describes the policy in the configuration syntax, such as
	// "uptime>=24h".
	String() string
}

type uptime time.Duration

// Uptime rotates a server key pair once it has been primary for d (claim 6).
func Uptime(d time.Duration) Policy { return uptime(d) }

func (p uptime) Decide(f Facts) Decision { return when(f.Age >= time.Duration(p)) }
func (p uptime) String() string          { return "uptime>=" + time.Duration(p).String() }

type offsetGrowth time.Duration

// OffsetGrowth rotates a client key once time_offset has grown by d since
// the key was installed (claim 5).
func OffsetGrowth(d time.Duration) Policy { return offsetGrowth(d) }

func (p offsetGrowth) Decide(f Facts) Decision { return when(f.OffsetGrowth >= time.Duration(p)) }
func (p offsetGrowth) String() string          { return "offset_growth>=" + time.Duration(p).String() }

type maxMessages uint64

// MaxMessages rotates a key after n messages.
func MaxMessages(n uint64) Policy { return maxMessages(n) }

func (p maxMessages) Decide(f Facts) Decision { return when(f.Messages >= uint64(p)) }
func (p maxMessages) String() string          { return fmt.Sprintf("messages>=%d", uint64(p)) }

type never struct{}

// Never never rotates: rotation is manual only.
func Never() Policy { return never{} }

func (never) Decide(Facts) Decision { return Keep }
func (never) String() string        { return "manual" }

type anyOf []Policy

// AnyOf rotates when any of ps says so.
func AnyOf(ps ...Policy) Policy { return anyOf(ps) }

func (a anyOf) Decide(f Facts) Decision {
	for _, p := range a {
		if p.Decide(f) == Rotate {
			return Rotate
		}
	}
	return Keep
}

func (a anyOf) String() string {
	s := make([]string, len(a))
	for i, p := range a {
		s[i] = p.String()
	}
	return strings.Join(s, " or ")
}

func when(b bool) Decision {
	if b {
		return Rotate
	}
	return Keep
}

type maxAge time.Duration

// MaxAge rotates a key once it has been in service for d.
func MaxAge(d time.Duration) Policy { return maxAge(d) }

func (p maxAge) Decide(f Facts) Decision { return when(f.Age >= time.Duration(p)) }
func (p maxAge) String() string          { return "age>=" + time.Duration(p).String() }
