// Command quickstart shows dynkey end to end on one machine, with nothing to
// set up:
//
//	go run ./examples/quickstart
//
// It starts a Gin server protected by dynkey (state in an SQLite file in a
// temporary directory), logs a client in, and makes encrypted calls for a few
// seconds while the client rotates its own key (patent claim 5) and the
// server rotates its key pair (claim 6) and announces the new key in
// heartbeat responses. It prints each step, shows that a plain request to a
// protected route is refused, and ends with one line:
//
//	summary: requests=<n> failed=<n> client_rotations=<n> server_rotations=<n>
//
// The exit status is 0 only if no request failed and both sides rotated at
// least twice. Flags shorten or lengthen the demo; see -help. With
// -metrics 127.0.0.1:9090 it also serves Prometheus metrics (/metrics),
// liveness, readiness and the key list (/livez, /readyz, /keys) on that
// address while it runs (off by default).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout)
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errDemoFailed):
		os.Exit(1) // the summary line, already printed, says why
	default:
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}
