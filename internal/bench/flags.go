package bench

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// Flags registers the benchmark's command-line flags on fs, filling cfg,
// and returns the -json path. The dynkey command's "bench" subcommand and
// the temporary internal/bench/cmd both use it:
//
//	-duration 10s  -c 32  -rounds 5  -body 1024  -suite ecies-x25519
//	-sessions 0    -cases a,b,c   -json FILE  -cpuprofile DIR  -nopin  -v
func Flags(fs *flag.FlagSet, cfg *Config) (jsonPath *string) {
	fs.DurationVar(&cfg.Duration, "duration", 0, "measuring time per case, split over the rounds (default 10s)")
	fs.IntVar(&cfg.Concurrency, "c", 0, "concurrent requests of the HTTP cases (default 32)")
	fs.IntVar(&cfg.Rounds, "rounds", 0, "interleaved rounds (default 5)")
	fs.IntVar(&cfg.BodySize, "body", 0, "JSON body size in bytes (default 1024)")
	fs.StringVar(&cfg.Suite, "suite", "", "dynkey suite (default ecies-x25519)")
	fs.IntVar(&cfg.Sessions, "sessions", 0, "other sessions in the dynkey servers' stores before the run")
	fs.Func("cases", "comma-separated cases (default all: "+strings.Join(CaseNames("ecies-x25519"), ",")+")", func(s string) error {
		cfg.Cases = strings.Split(s, ",")
		return nil
	})
	fs.StringVar(&cfg.ProfileDir, "cpuprofile", "", "directory for a CPU profile per case")
	fs.BoolVar(&cfg.NoPin, "nopin", false, "do not pin servers and load generator to separate CPUs")
	fs.BoolFunc("v", "print progress to stderr", func(string) error { cfg.Log = os.Stderr; return nil })
	return fs.String("json", "", "write the report as JSON to this file")
}

// Main runs the benchmark, writes the JSON report to jsonPath (if not
// empty) and the text report to out, the ratios line last.
func Main(ctx context.Context, cfg Config, jsonPath string, out io.Writer) error {
	rep, err := Run(ctx, cfg)
	if err != nil {
		return err
	}
	if jsonPath != "" {
		f, err := os.Create(jsonPath)
		if err != nil {
			return err
		}
		if err := rep.WriteJSON(f); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("dynkey/bench: writing %s: %w", jsonPath, err)
		}
	}
	return rep.WriteText(out)
}
