package main

import "github.com/dynkey/dynkey/internal/bench"

// runBench is `dynkey bench`: the side-by-side benchmark of
// docs/PERFORMANCE.md (package internal/bench does the work; its init runs
// the benchmark's server children when this binary is re-executed as one).
func runBench(e *env, args []string) error {
	var cfg bench.Config
	fs := newFlags(e, "dynkey bench", "[-duration D] [-c N] [-rounds N] [-body BYTES] [-suite NAME] [-cases LIST] [-json FILE]", `
Measures, on loopback in one process tree, interleaved in rounds: plain Gin,
dynkey per message on the memory and SQLite stores, a go-jose JWE(JWS)
equivalent, and in process the crypto floor and dynkey's server path. Prints
a table, then last the line
  ratios: server_path_vs_floor=… per_message_vs_jose=… sqlite_vs_memory=… epoch_vs_plain=…
See docs/PERFORMANCE.md for what each number means.`)
	jsonPath := bench.Flags(fs, &cfg)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	return bench.Main(e.ctx, cfg, *jsonPath, e.stdout)
}
