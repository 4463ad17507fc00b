package middleware_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/netip"
	"time"

	"github.com/dynkey/dynkey/middleware"
	"github.com/dynkey/dynkey/store/memory"
)

// A single instance behind a load balancer at 10.0.0.0/8: login throttling
// keeps its counters in process, charges failures to the client address the
// balancer forwards, and allows 5 failures per address and user, 50 per
// user, and 200 per address, in 10-minute windows. Password checks are
// bounded to 4 at once.
func ExampleNewMemoryLimiter() {
	m, err := middleware.New(middleware.Options{
		Store:            memory.New(),
		Authenticator:    exampleUsers(),
		KeyEncryptionKey: exampleKEK(),
		LoginLimiter: middleware.NewMemoryLimiter(middleware.LimiterOptions{
			PerAddressUser: 5, PerUser: 50, PerAddress: 200, Window: 10 * time.Minute}),
		TrustedProxies:      []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		MaxConcurrentLogins: 4,
		ReadTimeout:         5 * time.Second,
		MaintainInterval:    -1,
		Logger:              slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	// The limiter on its own: the sixth failure from one address is
	// refused, the same user from another address is not.
	l := middleware.NewMemoryLimiter(middleware.LimiterOptions{PerAddressUser: 5})
	ctx, now := context.Background(), time.Now()
	for range 5 {
		ok, _ := l.Allow(ctx, middleware.LoginAttempt{Address: "203.0.113.9", User: "alice", At: now})
		l.Done(ctx, middleware.LoginAttempt{Address: "203.0.113.9", User: "alice", At: now}, middleware.LoginFailed)
		fmt.Print(ok, " ")
	}
	ok, _ := l.Allow(ctx, middleware.LoginAttempt{Address: "203.0.113.9", User: "alice", At: now})
	fmt.Println(ok)
	ok, _ = l.Allow(ctx, middleware.LoginAttempt{Address: "198.51.100.4", User: "alice", At: now})
	fmt.Println(ok)
	// Output:
	// true true true true true false
	// true
}
