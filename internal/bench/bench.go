package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	// Every built-in suite, for -suite.
	_ "github.com/dynkey/dynkey/crypto/ecies"
	_ "github.com/dynkey/dynkey/crypto/pq"
	_ "github.com/dynkey/dynkey/crypto/rsa"
	_ "github.com/dynkey/dynkey/crypto/tink"
)

// Config configures a run. The zero value runs every case with the
// defaults below.
type Config struct {
	// Duration is each case's total measuring time, split over the rounds.
	// Default 10s.
	Duration time.Duration

	// Concurrency is the number of concurrent requests (and connections)
	// of the HTTP cases. Default 32.
	Concurrency int

	// Rounds is the number of interleaved rounds. Default 5.
	Rounds int

	// BodySize is the size in bytes of the JSON request body every case
	// echoes. Default 1024.
	BodySize int

	// Sessions is the number of other sessions the dynkey servers' stores
	// hold before the run (session-sized records under session keys, written
	// through the store), to show how cost grows with the store's size.
	// Default 0.
	Sessions int

	// Suite is the dynkey suite of the dynkey, floor and server cases.
	// Default "ecies-x25519".
	Suite string

	// Cases selects cases by name (see [CaseNames]). Default: all.
	Cases []string

	// NoPin disables CPU pinning. Default false: on a machine with at least
	// two allowed CPUs, servers run on the upper half and the load
	// generator on the lower half.
	NoPin bool

	// ProfileDir, if set, receives a CPU profile per case
	// (<case>.pprof; in-process cases one per round, <case>.<round>.pprof).
	// Default "": no profiles.
	ProfileDir string

	// Log receives progress lines. Default: none.
	Log io.Writer
}

// Case names. The suite is part of the dynkey names.
const (
	CasePlain = "plain-gin"
	CaseJose  = "jose"
)

// caseNames returns the names of the cases of suite, in the default order.
func caseNames(suite string) []string {
	names := []string{CasePlain, "dynkey-" + suite, "dynkey-" + suite + "-sqlite", CaseJose}
	if _, ok := hpkeSuites[suite]; ok {
		names = append(names, "floor-"+suite)
	}
	return append(names, "server-"+suite)
}

// CaseNames returns the names of every case for suite: plain-gin,
// dynkey-<suite> (memory store), dynkey-<suite>-sqlite, jose,
// floor-<suite> (HPKE suites only: ecies-x25519, ecies-p256) and
// server-<suite> (in process). The case server-<suite>-sqlite (the server
// path on SQLite, in process) exists but is not in the default set.
func CaseNames(suite string) []string { return caseNames(suite) }

// Result is one case's measurements, summed over the rounds.
type Result struct {
	Name string `json:"name"`
	// InProcess: measured in this process without HTTP, one request at a
	// time; otherwise over HTTP from the load generator.
	InProcess bool    `json:"in_process"`
	Requests  int     `json:"requests"`
	Errors    int     `json:"errors"`
	FirstErr  string  `json:"first_error,omitempty"`
	Seconds   float64 `json:"seconds"`
	ReqPerSec float64 `json:"req_per_s"`
	P50Micros float64 `json:"p50_us"`
	P99Micros float64 `json:"p99_us"`
	// ServerCPUMicros is the server process's CPU time (user + system,
	// getrusage) per request; for in-process cases, this process's.
	ServerCPUMicros float64 `json:"server_cpu_us_per_req"`
	AllocsPerReq    float64 `json:"allocs_per_req"`
	BytesPerReq     float64 `json:"bytes_per_req"`
	// IDsPerCommit is the mean number of replay ids one SQLite commit
	// (one fsync) recorded: the group commit's group size.
	IDsPerCommit float64 `json:"ids_per_commit,omitempty"`
	// MaxRSSKiB is the server process's peak resident set (HTTP cases).
	MaxRSSKiB int64 `json:"max_rss_kib,omitempty"`
	// ServerCPUs are the CPUs the server was pinned to (none: not pinned).
	ServerCPUs []int `json:"server_cpus,omitempty"`
}

// Ratios are the headline comparisons; 0 when a case is missing.
type Ratios struct {
	// ServerPathVsFloor: server-<suite> CPU ns per request ÷ floor-<suite>.
	ServerPathVsFloor float64 `json:"server_path_vs_floor"`
	// PerMessageVsJose: dynkey-<suite>-sqlite req/s ÷ jose req/s.
	PerMessageVsJose float64 `json:"per_message_vs_jose"`
	// SQLiteVsMemory: dynkey-<suite>-sqlite req/s ÷ dynkey-<suite> req/s.
	SQLiteVsMemory float64 `json:"sqlite_vs_memory"`
	// EpochVsPlain: dynkey-epoch-<suite> req/s ÷ plain-gin req/s. The
	// epoch case does not exist yet: always 0.
	EpochVsPlain float64 `json:"epoch_vs_plain"`
}

// Report is the outcome of a run.
type Report struct {
	Config struct {
		Duration    string   `json:"duration"`
		Concurrency int      `json:"concurrency"`
		Rounds      int      `json:"rounds"`
		BodySize    int      `json:"body_size"`
		Sessions    int      `json:"sessions"`
		Suite       string   `json:"suite"`
		Cases       []string `json:"cases"`
	} `json:"config"`
	Machine struct {
		NumCPU    int    `json:"num_cpu"`
		GoVersion string `json:"go_version"`
		GOOS      string `json:"goos"`
		GOARCH    string `json:"goarch"`
		LoadCPUs  []int  `json:"load_cpus,omitempty"`
		Started   string `json:"started"`
	} `json:"machine"`
	Results []Result `json:"results"`
	Ratios  Ratios   `json:"ratios"`
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the results table and, last, the ratios line.
func (r *Report) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "%-30s %10s %9s %9s %13s %10s %12s %10s %6s\n", "case", "req/s", "p50 µs", "p99 µs", "server µs/req", "allocs/req", "bytes/req", "ids/commit", "errors")
	for _, c := range r.Results {
		idsPerCommit := "-"
		if c.IDsPerCommit > 0 {
			idsPerCommit = fmt.Sprintf("%.1f", c.IDsPerCommit)
		}
		fmt.Fprintf(bw, "%-30s %10.0f %9.0f %9.0f %13.1f %10.0f %12.0f %10s %6d\n", c.Name, c.ReqPerSec, c.P50Micros, c.P99Micros, c.ServerCPUMicros, c.AllocsPerReq, c.BytesPerReq, idsPerCommit, c.Errors)
	}
	fmt.Fprintln(bw, r.Ratios.Line())
	return bw.Flush()
}

// Line is the ratios line exactly as the benchmark prints it last.
func (x Ratios) Line() string {
	return fmt.Sprintf("ratios: server_path_vs_floor=%.2f per_message_vs_jose=%.2f sqlite_vs_memory=%.2f epoch_vs_plain=%.2f",
		x.ServerPathVsFloor, x.PerMessageVsJose, x.SQLiteVsMemory, x.EpochVsPlain)
}

// ErrUnknownCase is returned by Run for a case name it does not know.
var ErrUnknownCase = errors.New("dynkey/bench: unknown case")

// runner is one case's state across rounds.
type runner interface {
	name() string
	// prepare readies n requests (0: as many as the runner thinks a slice
	// of d needs).
	prepare(d time.Duration) error
	// slice measures for d.
	slice(ctx context.Context, d time.Duration, round int) error
	result() Result
	close()
}

// Run runs the benchmark. It fails only if a case cannot be set up; a case
// whose requests fail reports its errors in its Result.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Duration <= 0 {
		cfg.Duration = 10 * time.Second
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 32
	}
	if cfg.Rounds <= 0 {
		cfg.Rounds = 5
	}
	if cfg.BodySize <= 0 {
		cfg.BodySize = 1024
	}
	if cfg.Suite == "" {
		cfg.Suite = "ecies-x25519"
	}
	if len(cfg.Cases) == 0 {
		cfg.Cases = caseNames(cfg.Suite)
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	rep := &Report{}
	rep.Config.Duration = cfg.Duration.String()
	rep.Config.Concurrency = cfg.Concurrency
	rep.Config.Rounds = cfg.Rounds
	rep.Config.BodySize = cfg.BodySize
	rep.Config.Sessions = cfg.Sessions
	rep.Config.Suite = cfg.Suite
	rep.Config.Cases = cfg.Cases
	rep.Machine.NumCPU = runtime.NumCPU()
	rep.Machine.GoVersion = runtime.Version()
	rep.Machine.GOOS, rep.Machine.GOARCH = runtime.GOOS, runtime.GOARCH
	rep.Machine.Started = time.Now().UTC().Format(time.RFC3339)

	var loadCPUs, serverCPUs []int
	if cpus := allowedCPUs(); !cfg.NoPin && len(cpus) >= 2 {
		loadCPUs, serverCPUs = cpus[:len(cpus)/2], cpus[len(cpus)/2:]
	}
	rep.Machine.LoadCPUs = loadCPUs

	dir, err := os.MkdirTemp("", "dynkey-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if cfg.ProfileDir != "" {
		if err := os.MkdirAll(cfg.ProfileDir, 0o755); err != nil {
			return nil, err
		}
	}
	e := &env{cfg: cfg, dir: dir, serverCPUs: serverCPUs, body: jsonBody(cfg.BodySize)}
	var runners []runner
	defer func() {
		for _, r := range runners {
			r.close()
		}
	}()
	for _, name := range cfg.Cases {
		fmt.Fprintf(cfg.Log, "setting up %s\n", name)
		r, err := e.newRunner(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("dynkey/bench: case %s: %w", name, err)
		}
		runners = append(runners, r)
	}
	sliceD := cfg.Duration / time.Duration(cfg.Rounds)
	for round := range cfg.Rounds {
		for i := range runners {
			r := runners[(i+round)%len(runners)]
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if err := r.prepare(sliceD); err != nil {
				return nil, fmt.Errorf("dynkey/bench: case %s: %w", r.name(), err)
			}
			runtime.GC()
			restore := pinProcess(loadCPUs)
			err := r.slice(ctx, sliceD, round)
			restore()
			if err != nil {
				return nil, fmt.Errorf("dynkey/bench: case %s: %w", r.name(), err)
			}
			res := r.result()
			fmt.Fprintf(cfg.Log, "round %d/%d %-28s %8.0f req/s %7.1f µs/req\n", round+1, cfg.Rounds, r.name(), res.ReqPerSec, res.ServerCPUMicros)
		}
	}
	byName := map[string]Result{}
	for _, r := range runners {
		res := r.result()
		rep.Results = append(rep.Results, res)
		byName[res.Name] = res
	}
	rps := func(n string) float64 { return byName[n].ReqPerSec }
	div := func(a, b float64) float64 {
		if a == 0 || b == 0 {
			return 0
		}
		return a / b
	}
	s := cfg.Suite
	rep.Ratios = Ratios{
		ServerPathVsFloor: div(byName["server-"+s].ServerCPUMicros, byName["floor-"+s].ServerCPUMicros),
		PerMessageVsJose:  div(rps("dynkey-"+s+"-sqlite"), rps(CaseJose)),
		SQLiteVsMemory:    div(rps("dynkey-"+s+"-sqlite"), rps("dynkey-"+s)),
		EpochVsPlain:      div(rps("dynkey-epoch-"+s), rps(CasePlain)),
	}
	return rep, nil
}

// jsonBody returns a JSON object of exactly n bytes (at least 16).
func jsonBody(n int) []byte {
	const head, tail = `{"data":"`, `"}`
	fill := max(n-len(head)-len(tail), 0)
	return []byte(head + strings.Repeat("x", fill) + tail)
}

// env is what every case of a run shares.
type env struct {
	cfg        Config
	dir        string
	serverCPUs []int
	body       []byte
}

func (e *env) profile(name string) string {
	if e.cfg.ProfileDir == "" {
		return ""
	}
	return filepath.Join(e.cfg.ProfileDir, name+".pprof")
}

func (e *env) newRunner(ctx context.Context, name string) (runner, error) {
	s := e.cfg.Suite
	switch name {
	case CasePlain:
		return e.newHTTPRunner(name, &childSpec{Kind: kindPlain})
	case "dynkey-" + s:
		return e.newHTTPRunner(name, &childSpec{Kind: kindDynkey, Suite: s, Store: "memory"})
	case "dynkey-" + s + "-sqlite":
		return e.newHTTPRunner(name, &childSpec{Kind: kindDynkey, Suite: s, Store: "sqlite", StorePath: tempPath(e.dir, name)})
	case CaseJose:
		return e.newHTTPRunner(name, &childSpec{Kind: kindJose})
	case "floor-" + s:
		f, err := newFloor(s, e.cfg.BodySize)
		if err != nil {
			return nil, err
		}
		r := &inprocRunner{e: e, n: name, op: func(i int) (bool, error) { return false, f.op(i) }}
		r.a.res = Result{Name: name}
		return r, nil
	case "server-" + s, "server-" + s + "-sqlite":
		return e.newServerRunner(name, strings.HasSuffix(name, "-sqlite"))
	}
	return nil, fmt.Errorf("%w %q (known: %s)", ErrUnknownCase, name, strings.Join(caseNames(s), ", "))
}

// acc accumulates a case's slices.
type acc struct {
	res     Result
	lat     []time.Duration
	elapsed time.Duration
	cpu     int64
	mallocs uint64
	bytes   uint64
	groups  uint64
	ids     uint64
}

func (a *acc) add(requests, errs int, firstErr error, elapsed time.Duration, lat []time.Duration, before, after usage) {
	a.res.Requests += requests
	a.res.Errors += errs
	if firstErr != nil && a.res.FirstErr == "" {
		a.res.FirstErr = firstErr.Error()
	}
	a.elapsed += elapsed
	a.lat = append(a.lat, lat...)
	a.cpu += after.CPUNanos - before.CPUNanos
	a.mallocs += after.Mallocs - before.Mallocs
	a.bytes += after.TotalAlloc - before.TotalAlloc
	a.res.MaxRSSKiB = max(a.res.MaxRSSKiB, after.MaxRSSKiB)
	a.groups += after.SeenGroups - before.SeenGroups
	a.ids += after.SeenIDs - before.SeenIDs
}

func (a *acc) result() Result {
	r := a.res
	r.Seconds = a.elapsed.Seconds()
	if n := float64(r.Requests); n > 0 {
		r.ReqPerSec = n / a.elapsed.Seconds()
		r.ServerCPUMicros = float64(a.cpu) / 1e3 / n
		r.AllocsPerReq = float64(a.mallocs) / n
		r.BytesPerReq = float64(a.bytes) / n
	}
	if a.groups > 0 {
		r.IDsPerCommit = float64(a.ids) / float64(a.groups)
	}
	r.P50Micros = float64(percentile(a.lat, 0.50)) / 1e3
	r.P99Micros = float64(percentile(a.lat, 0.99)) / 1e3
	return r
}
