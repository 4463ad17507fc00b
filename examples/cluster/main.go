// Command cluster runs dynkey as a cluster on this machine: three server
// instances as separate processes on one shared store, behind a round-robin
// reverse proxy on loopback, with twenty concurrent clients, while the
// server key rotates every 2 s and every client key every 3 s. It ends with
// one line:
//
//	summary: requests=<n> failed=0 client_rotations=<n> server_rotations=<n> primaries=1
//
// and exits 0 when no request failed, every instance serves the same single
// primary key and both sides rotated.
//
//	go run ./examples/cluster                          # SQLite file in a temp dir
//	go run ./examples/cluster -store redis://127.0.0.1:6379/0
//	go run ./examples/cluster -store 'redis+cluster://127.0.0.1:7000,127.0.0.1:7001'
//	go run ./examples/cluster -store postgres://user@127.0.0.1/db
//	go run ./examples/cluster -kill-every 4s           # kill -9 an instance every 4s and restart it
//
// On Redis and PostgreSQL the run uses its own key prefix or schema (the
// store URL's own prefix= or schema= when it names one), so it never touches
// other data. The instances get the key-encryption key from the environment
// variable DYNKEY_KEK (middleware.KEKFromEnv), as a deployment would.
//
// The program re-executes itself for each instance (the environment variable
// DYNKEY_CLUSTER_INSTANCE set).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if os.Getenv(envInstance) != "" {
		if err := serve(); err != nil {
			fmt.Fprintln(os.Stderr, "instance:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout)
	switch {
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errFailed):
		os.Exit(1)
	case err != nil:
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(2)
	}
}
