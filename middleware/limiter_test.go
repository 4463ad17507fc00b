package middleware

import (
	"context"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/store/memory"
)

func TestClientAddress(t *testing.T) {
	m := &Middleware{o: Options{TrustedProxies: []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8:ffff::/48")}}}
	for _, tc := range []struct {
		name, remote string
		hdr          map[string][]string
		want         string
	}{
		{"untrusted peer", "203.0.113.5:4444", nil, "203.0.113.5"},
		{"untrusted peer with XFF", "203.0.113.5:4444", map[string][]string{"X-Forwarded-For": {"1.2.3.4"}}, "203.0.113.5"},
		{"untrusted peer with Forwarded", "203.0.113.5:4444", map[string][]string{"Forwarded": {"for=1.2.3.4"}}, "203.0.113.5"},
		{"trusted peer, no header", "10.0.0.1:1", nil, "10.0.0.1"},
		{"trusted peer, XFF", "10.0.0.1:1", map[string][]string{"X-Forwarded-For": {"198.51.100.7"}}, "198.51.100.7"},
		{"spoofed left part ignored", "10.0.0.1:1", map[string][]string{"X-Forwarded-For": {"6.6.6.6, 198.51.100.7, 10.9.9.9"}}, "198.51.100.7"},
		{"several XFF lines", "10.0.0.1:1", map[string][]string{"X-Forwarded-For": {"6.6.6.6", "198.51.100.7"}}, "198.51.100.7"},
		{"all trusted: leftmost", "10.0.0.1:1", map[string][]string{"X-Forwarded-For": {"10.1.1.1, 10.2.2.2"}}, "10.1.1.1"},
		{"unparsable hop stops at the last trusted", "10.0.0.1:1", map[string][]string{"X-Forwarded-For": {"198.51.100.7, unknown"}}, "10.0.0.1"},
		{"Forwarded wins over XFF", "10.0.0.1:1", map[string][]string{"Forwarded": {`for="[2001:db8:1:2::3]:80";proto=https`}, "X-Forwarded-For": {"198.51.100.7"}}, "2001:db8:1:2::/64"},
		{"Forwarded obfuscated", "10.0.0.1:1", map[string][]string{"Forwarded": {"for=_hidden, for=198.51.100.9"}}, "198.51.100.9"},
		{"Forwarded element without for", "10.0.0.1:1", map[string][]string{"Forwarded": {"proto=https"}}, "10.0.0.1"},
		{"IPv6 peer as /64", "[2001:db8:1:2:3:4:5:6]:443", nil, "2001:db8:1:2::/64"},
		{"IPv4-mapped IPv6 peer", "[::ffff:192.0.2.1]:443", nil, "192.0.2.1"},
		{"trusted IPv6 proxy", "[2001:db8:ffff::1]:443", map[string][]string{"X-Forwarded-For": {"192.0.2.44"}}, "192.0.2.44"},
		{"not an address", "@unix", nil, "@unix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &http.Request{RemoteAddr: tc.remote, Header: http.Header{}}
			for k, vs := range tc.hdr {
				for _, v := range vs {
					r.Header.Add(k, v)
				}
			}
			require.Equal(t, tc.want, m.clientAddress(RequestFromHTTP(r)))
		})
	}
}

// The built-in limiters obey the same rules: per-(address, user),
// per-user and per-address budgets, negative disables, a fixed window, a
// success takes back its own count and clears its pair, a check not made
// takes back its count.
func TestLimiters(t *testing.T) {
	ctx := context.Background()
	t0 := time.Now()
	lo := LimiterOptions{PerAddressUser: 2, PerUser: 3, PerAddress: 4, Window: time.Minute}
	for _, tc := range []struct {
		name string
		new  func() LoginLimiter
	}{
		{"memory", func() LoginLimiter { return NewMemoryLimiter(lo) }},
		{"store", func() LoginLimiter { return NewStoreLimiter(memory.New(), lo) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := tc.new()
			at := func(addr, user string, d time.Duration) LoginAttempt {
				return LoginAttempt{Address: addr, User: user, At: t0.Add(d)}
			}
			try := func(a LoginAttempt) bool {
				ok, err := l.Allow(ctx, a)
				require.NoError(t, err)
				return ok
			}
			require.True(t, try(at("a", "u", 0)))
			require.True(t, try(at("a", "u", time.Second)))
			require.False(t, try(at("a", "u", 2*time.Second)), "pair budget")
			require.True(t, try(at("b", "u", 0)), "another address")
			require.False(t, try(at("c", "u", 0)), "user budget (3)")
			// A check that could not be made is taken back.
			l.Done(ctx, at("b", "u", 0), LoginNotChecked)
			require.True(t, try(at("c", "u", 0)))
			// A success takes back its own count (the user's failures are
			// then a's two) and clears its pair.
			l.Done(ctx, at("c", "u", 0), LoginSucceeded)
			require.False(t, try(at("a", "u", 3*time.Second)), "a's pair is still exhausted")
			require.True(t, try(at("e", "u", 3*time.Second)))
			require.False(t, try(at("e", "u", 3*time.Second)), "the user budget holds a's two and e's one")
			// Per address, across users.
			for _, u := range []string{"v", "w", "x"} {
				require.True(t, try(at("d", u, 0)), u)
			}
			require.True(t, try(at("d", "y", 0)))
			require.False(t, try(at("d", "z", 0)), "address budget (4)")
			// The window is fixed from the first failure.
			require.False(t, try(at("a", "u", time.Minute-time.Millisecond)))
			require.True(t, try(at("a", "u", time.Minute)), "the window has passed")
		})
	}
	t.Run("success clears the pair", func(t *testing.T) {
		for _, l := range []LoginLimiter{NewMemoryLimiter(LimiterOptions{PerAddressUser: 2, PerUser: -1, PerAddress: -1}),
			NewStoreLimiter(memory.New(), LimiterOptions{PerAddressUser: 2, PerUser: -1, PerAddress: -1})} {
			a := LoginAttempt{Address: "a", User: "u", At: t0}
			ok, _ := l.Allow(ctx, a) // a failure
			require.True(t, ok)
			ok, _ = l.Allow(ctx, a)
			require.True(t, ok)
			l.Done(ctx, a, LoginSucceeded) // the right password
			for range 2 {
				ok, _ = l.Allow(ctx, a)
				require.True(t, ok)
			}
			ok, _ = l.Allow(ctx, a)
			require.False(t, ok)
		}
	})
	t.Run("negative disables", func(t *testing.T) {
		l := NewMemoryLimiter(LimiterOptions{PerAddressUser: -1, PerUser: -1, PerAddress: 1})
		ok, _ := l.Allow(ctx, LoginAttempt{Address: "a", User: "u", At: t0})
		require.True(t, ok)
		ok, _ = l.Allow(ctx, LoginAttempt{Address: "a", User: "v", At: t0})
		require.False(t, ok)
		ok, _ = l.Allow(ctx, LoginAttempt{Address: "b", User: "u", At: t0})
		require.True(t, ok)
	})
	t.Run("defaults", func(t *testing.T) {
		d := LimiterOptions{}.withDefaults()
		require.Equal(t, LimiterOptions{PerAddressUser: 10, PerUser: 100, PerAddress: 100, Window: 15 * time.Minute}, d)
	})
}
