package middleware

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dynkey/dynkey/store"
)

// Login throttling (hole 8; docs/PROTOCOL.md §9 "login-throttled").
//
// A failed login counts against three budgets, each over a fixed window
// that starts at the first failure it counts:
//
//   - (client address, canonical user): LimiterOptions.PerAddressUser,
//     default Options.MaxFailedLogins (10). This is the one a single
//     guesser meets: a stranger guessing alice's password from one address
//     is refused after 10 failures, from that address only; alice, from
//     any other address, still logs in. A correct password clears it.
//   - canonical user, from every address: PerUser, default 10× the first
//     (100). It bounds the online guesses against one account however many
//     addresses the attacker has (~9,600 a day with the defaults). The
//     price, inherent in any such bound: an attacker with more than ten
//     addresses can lock the user out for one window. A correct password
//     does not clear it (it proves nothing about the other addresses'
//     failures). Set it negative to disable it.
//
// Every attempt is counted against all three before its password is
// checked; a correct password takes its own count back (and clears the
// (address, user) budget), as does a check that could not be made.
//   - client address, for every user: PerAddress, default 10× the first
//     (100). It bounds password spraying (one guess against many users)
//     from one address. Set it negative to disable it (e.g. when many
//     users share one NAT address).
//
// The throttle is keyed by the authenticator's canonical username
// (auth.Canonicalizer), so that spellings one account accepts share its
// budgets, and by the client address found as Options.TrustedProxies
// says, with IPv6 addresses counted per /64 (one subscriber's prefix).

// LoginAttempt is one login attempt, as a LoginLimiter sees it.
type LoginAttempt struct {
	// Address is the client's address (see Options.TrustedProxies): an IP
	// address, or an IPv6 /64 prefix, in text form.
	Address string
	// User is the canonical username (auth.Canonicalizer).
	User string
	// At is the middleware's clock at the attempt (Options.Now).
	At time.Time
}

// LoginOutcome is what became of a login attempt a LoginLimiter allowed.
type LoginOutcome int

const (
	// LoginFailed: a wrong password or an unknown user. The attempt stays
	// counted.
	LoginFailed LoginOutcome = iota
	// LoginSucceeded: the password was right.
	LoginSucceeded
	// LoginNotChecked: the password could not be checked (the
	// Authenticator failed). The attempt is taken back.
	LoginNotChecked
)

// LoginLimiter throttles password guessing. The middleware calls Allow
// before each password check and Done after it. Implementations must be
// safe for concurrent use; the built-ins are [NewMemoryLimiter] (one
// instance) and [NewStoreLimiter] (a cluster sharing a store).
type LoginLimiter interface {
	// Allow reports whether the attempt may have its password checked.
	// It counts the attempt as a failure in advance, so that guesses sent
	// at once cannot all pass before any of them is counted; when it
	// reports false nothing is counted and the login is refused with
	// "login-throttled". An error means it could not decide: the login is
	// refused as "unavailable".
	Allow(ctx context.Context, a LoginAttempt) (bool, error)
	// Done reports the outcome of an attempt that Allow let through. It is
	// best effort and returns nothing.
	Done(ctx context.Context, a LoginAttempt, o LoginOutcome)
}

// LimiterOptions are the budgets of the built-in limiters (see the
// comment at the top of limiter.go for why three). A zero field takes its
// default; a negative budget disables that budget.
type LimiterOptions struct {
	// PerAddressUser is the failures allowed per (client address,
	// canonical user) within Window. Default 10.
	PerAddressUser int
	// PerUser is the failures allowed per canonical user, from all
	// addresses, within Window. Default 10 × PerAddressUser.
	PerUser int
	// PerAddress is the failures allowed per client address, for all
	// users, within Window. Default 10 × PerAddressUser.
	PerAddress int
	// Window is how long failures are counted, from the first one.
	// Default 15m.
	Window time.Duration
}

func (o LimiterOptions) withDefaults() LimiterOptions {
	if o.PerAddressUser == 0 {
		o.PerAddressUser = 10
	}
	if o.PerUser == 0 {
		o.PerUser = 10 * o.PerAddressUser
	}
	if o.PerAddress == 0 {
		o.PerAddress = 10 * o.PerAddressUser
	}
	if o.Window <= 0 {
		o.Window = 15 * time.Minute
	}
	return o
}

// budget is one counter an attempt is charged to.
type budget struct {
	key   string
	limit int
}

// budgets returns the counters of a, keyed by hashes (no usernames or
// addresses in the store), the ones with a negative limit left out.
func (o LimiterOptions) budgets(a LoginAttempt) []budget {
	h := func(kind string, parts ...string) string {
		s := sha256.Sum256([]byte("dynkey/v1 throttle\x00" + kind + "\x00" + strings.Join(parts, "\x00")))
		return "dynkey/throttle/" + kind + "-" + hex.EncodeToString(s[:16])
	}
	all := []budget{
		{h("au", a.Address, a.User), o.PerAddressUser},
		{h("u", a.User), o.PerUser},
		{h("a", a.Address), o.PerAddress},
	}
	out := all[:0]
	for _, b := range all {
		if b.limit >= 0 {
			out = append(out, b)
		}
	}
	return out
}

// pairKey is the key of a's (address, user) budget ("" if disabled).
func pairKey(o LimiterOptions, a LoginAttempt) string {
	if o.PerAddressUser < 0 {
		return ""
	}
	return o.budgets(a)[0].key
}

// ---------------------------------------------------------------------------
// In-process limiter

// NewMemoryLimiter returns a LoginLimiter that keeps its counters in this
// process: right for a single instance (each instance of a cluster would
// grant the budgets anew). It holds at most maxMemoryLimiterEntries
// counters; when that many are live it refuses new ones (fails closed)
// until some expire.
func NewMemoryLimiter(o LimiterOptions) LoginLimiter {
	return &memoryLimiter{o: o.withDefaults(), counts: map[string]*memCount{}, max: maxMemoryLimiterEntries}
}

// maxMemoryLimiterEntries bounds the memory limiter (about 100 bytes each).
const maxMemoryLimiterEntries = 1 << 20

type memoryLimiter struct {
	o      LimiterOptions
	mu     sync.Mutex
	counts map[string]*memCount
	max    int // maxMemoryLimiterEntries; smaller in tests
}

type memCount struct {
	n     int
	until time.Time
}

func (l *memoryLimiter) live(key string, now time.Time) *memCount {
	c := l.counts[key]
	if c != nil && !now.Before(c.until) {
		delete(l.counts, key)
		return nil
	}
	return c
}

func (l *memoryLimiter) Allow(_ context.Context, a LoginAttempt) (bool, error) {
	bs := l.o.budgets(a)
	l.mu.Lock()
	defer l.mu.Unlock()
	fresh := 0
	for _, b := range bs {
		c := l.live(b.key, a.At)
		if c == nil {
			fresh++
		} else if c.n >= b.limit {
			return false, nil
		}
	}
	if fresh > 0 && len(l.counts)+fresh > l.max {
		for k, c := range l.counts {
			if !a.At.Before(c.until) {
				delete(l.counts, k)
			}
		}
		if len(l.counts)+fresh > l.max {
			return false, nil
		}
	}
	for _, b := range bs {
		if c := l.live(b.key, a.At); c != nil {
			c.n++
		} else {
			l.counts[b.key] = &memCount{n: 1, until: a.At.Add(l.o.Window)}
		}
	}
	return true, nil
}

func (l *memoryLimiter) Done(_ context.Context, a LoginAttempt, o LoginOutcome) {
	bs := l.o.budgets(a)
	l.mu.Lock()
	defer l.mu.Unlock()
	if o == LoginFailed {
		return
	}
	for _, b := range bs {
		if o == LoginSucceeded && b.key == pairKey(l.o, a) {
			delete(l.counts, b.key)
		} else if c := l.live(b.key, a.At); c != nil && c.n > 0 {
			c.n-- // take back this attempt's advance count
		}
	}
}

// ---------------------------------------------------------------------------
// Store-backed limiter

// NewStoreLimiter returns a LoginLimiter that keeps its counters in st,
// shared by every instance of a cluster, each changed with a
// compare-and-swap so that concurrent attempts on several instances are
// all counted. It is the default (Options.LoginLimiter). Under persistent
// contention on a counter it refuses rather than let a guess through
// uncounted.
func NewStoreLimiter(st store.Store, o LimiterOptions) LoginLimiter {
	return &storeLimiter{st: st, o: o.withDefaults()}
}

type storeLimiter struct {
	st store.Store
	o  LimiterOptions
}

// A counter is stored as "<failures> <end of its window, ms>". The window
// is judged by LoginAttempt.At; the store's expiry only cleans up.

func (l *storeLimiter) read(ctx context.Context, key string, now time.Time) (n int, until int64, version uint64, err error) {
	e, err := l.st.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return 0, 0, 0, nil
	}
	if err != nil {
		return 0, 0, 0, err
	}
	count, end, _ := strings.Cut(string(e.Value), " ")
	n, err1 := strconv.Atoi(count)
	until, err2 := strconv.ParseInt(end, 10, 64)
	if err1 != nil || err2 != nil || unixMs(now) >= until || n < 0 {
		return 0, 0, e.Version, nil // the window has passed (or a corrupt record)
	}
	return n, until, e.Version, nil
}

// add changes the counter at key by delta (+1 or −1) with a
// compare-and-swap. For +1 it reports false, changing nothing, when the
// counter is at limit. The window starts with the first failure and is
// not extended by later ones.
func (l *storeLimiter) add(ctx context.Context, key string, delta, limit int, now time.Time) (bool, error) {
	for range 8 {
		n, until, v, err := l.read(ctx, key, now)
		if err != nil {
			return false, err
		}
		if delta > 0 && n >= limit {
			return false, nil
		}
		if delta < 0 && n == 0 {
			return true, nil
		}
		if n == 0 {
			var ok bool
			if until, ok = addMs(unixMs(now), durMs(l.o.Window)); !ok {
				return false, errors.New("dynkey/middleware: throttle window overflows the clock")
			}
		}
		val := strconv.Itoa(n+delta) + " " + strconv.FormatInt(until, 10)
		_, err = l.st.CompareAndSwap(ctx, key, v, []byte(val), time.UnixMilli(until))
		if !errors.Is(err, store.ErrConflict) {
			return err == nil, err
		}
	}
	return false, nil
}

func (l *storeLimiter) Allow(ctx context.Context, a LoginAttempt) (bool, error) {
	bs := l.o.budgets(a)
	for i, b := range bs {
		ok, err := l.add(ctx, b.key, +1, b.limit, a.At)
		if err != nil || !ok {
			for _, done := range bs[:i] { // take back what was counted
				_, _ = l.add(ctx, done.key, -1, done.limit, a.At)
			}
			return false, err
		}
	}
	return true, nil
}

func (l *storeLimiter) Done(ctx context.Context, a LoginAttempt, o LoginOutcome) {
	bs := l.o.budgets(a)
	if o == LoginFailed {
		return
	}
	for _, b := range bs {
		if o == LoginSucceeded && b.key == pairKey(l.o, a) {
			_ = l.st.Delete(ctx, b.key)
		} else {
			_, _ = l.add(ctx, b.key, -1, b.limit, a.At) // take back this attempt's advance count
		}
	}
}

var (
	_ LoginLimiter = (*memoryLimiter)(nil)
	_ LoginLimiter = (*storeLimiter)(nil)
)
