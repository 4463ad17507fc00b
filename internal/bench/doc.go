// Package bench is dynkey's side-by-side benchmark: plain Gin, dynkey per
// message on the memory and SQLite stores, and a go-jose JWE(JWS)
// equivalent, all over HTTP on loopback in one process tree, interleaved in
// rounds; and, in process in the same run, the crypto floor (exactly the
// public-key and AEAD operations the dynkey server performs for one request,
// called straight through circl and the standard library) and dynkey's
// whole server-side handling without HTTP.
//
// # Use
//
//	rep, err := bench.Run(ctx, bench.Config{Duration: 10 * time.Second, Concurrency: 32})
//	rep.WriteText(os.Stdout) // the table, then the "ratios:" line last
//	rep.WriteJSON(f)
//
// The `dynkey bench` command is a thin wrapper around [Run]; until it
// lands, `go run ./internal/bench/cmd` is the same command. The whole
// subcommand is:
//
//	var cfg bench.Config
//	fs := flag.NewFlagSet("dynkey bench", flag.ContinueOnError)
//	jsonPath := bench.Flags(fs, &cfg)
//	if err := fs.Parse(args); err != nil {
//		return err
//	}
//	return bench.Main(ctx, cfg, *jsonPath, os.Stdout)
//
// # How it measures
//
// Each HTTP server runs in a child process: the running executable started
// again with the environment variable DYNKEY_BENCH_CHILD set, which this
// package's init function recognizes (so any program importing the package
// can serve as its own child; nothing else changes its behaviour). Servers
// are pinned to one half of the CPUs and the load generator to the other
// (sched_setaffinity, Linux only); the child reports its own CPU time
// (getrusage) and allocation counters (runtime.MemStats) before and after
// every slice, so the server's CPU µs, allocations and bytes per request
// exclude the load generator.
//
// Requests are sealed before a slice starts, by the real client code paths
// (client.Client for dynkey, go-jose for jose), so the load generator only
// sends bytes and checks statuses during the slice: the server is what
// saturates. Each envelope is sent once (message ids are single-use); a
// slice ends when its time is up or its envelopes run out. The run is split
// into rounds, each running every case for Duration/Rounds, in a rotated
// order, so that a noisy neighbour hits every case alike.
package bench
