// Command cmd is the temporary entry point of dynkey's benchmark, until the
// dynkey command's "bench" subcommand wraps the same library:
//
//	go run ./internal/bench/cmd -duration 10s -c 32 -json bench.json
//
// It prints a table of the cases and, last, the ratios line.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/dynkey/dynkey/internal/bench"
)

func main() {
	var cfg bench.Config
	fs := flag.NewFlagSet("dynkey bench", flag.ExitOnError)
	jsonPath := bench.Flags(fs, &cfg)
	_ = fs.Parse(os.Args[1:])
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := bench.Main(ctx, cfg, *jsonPath, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
