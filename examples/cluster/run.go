package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dynkey/dynkey/client"
	"github.com/dynkey/dynkey/policy"
	"github.com/dynkey/dynkey/wire"
)

// errFailed is returned by run after the summary line when the run failed.
var errFailed = errors.New("the cluster run failed; see the summary line")

type config struct {
	store        string
	duration     time.Duration
	clients      int
	instances    int
	serverRotate time.Duration
	clientRotate time.Duration
	killEvery    time.Duration
}

func parseFlags(args []string, out io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("cluster", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.store, "store", "", "store URL (redis://…, redis+cluster://…, postgres://…, sqlite:///…); default: a SQLite file in a temporary directory")
	fs.DurationVar(&c.duration, "duration", 20*time.Second, "how long the clients make requests")
	fs.IntVar(&c.clients, "clients", 20, "concurrent clients, one user each")
	fs.IntVar(&c.instances, "instances", 3, "server instances (processes)")
	fs.DurationVar(&c.serverRotate, "server-rotate", 2*time.Second, "the server key pair rotates after this age")
	fs.DurationVar(&c.clientRotate, "client-rotate", 3*time.Second, "each client key rotates once the server clock advanced this much (claim 5)")
	fs.DurationVar(&c.killEvery, "kill-every", 0, "fault injection: kill -9 one instance this often and restart it a second later (0: never)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.duration <= 0 || c.clients < 1 || c.instances < 1 || c.serverRotate <= 0 || c.clientRotate <= 0 || c.killEvery < 0 {
		return c, errors.New("-duration, -clients, -instances, -server-rotate and -client-rotate must be positive")
	}
	return c, nil
}

// instance is one server process.
type instance struct {
	name string
	addr string
	env  []string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// start starts the process and waits until it serves.
func (in *instance) start(ctx context.Context, exe string) error {
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), in.env...)
	cmd.Stderr = os.Stderr
	// The instance dies with this process, whatever happens to it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() && sc.Text() == "ready" {
			ready <- nil
		} else {
			ready <- fmt.Errorf("instance %s did not start", in.name)
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	in.mu.Lock()
	in.cmd, in.done = cmd, done
	in.mu.Unlock()
	select {
	case err := <-ready:
		return err
	case <-done:
		return fmt.Errorf("instance %s exited at start", in.name)
	case <-time.After(60 * time.Second):
		return fmt.Errorf("instance %s: not ready after 60s", in.name)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// signal sends sig and waits for the process to exit.
func (in *instance) signal(sig syscall.Signal) {
	in.mu.Lock()
	cmd, done := in.cmd, in.done
	in.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// namespaced gives the run its own key prefix (Redis) or schema
// (PostgreSQL), unless the URL names one.
func namespaced(storeURL, tag string) string {
	add := func(param string) string {
		if strings.Contains(storeURL, param+"=") {
			return storeURL
		}
		sep := "?"
		if strings.Contains(storeURL, "?") {
			sep = "&"
		}
		return storeURL + sep + param
	}
	switch {
	case strings.HasPrefix(storeURL, "redis"):
		return add("prefix=dynkey-cluster-" + tag + ":")
	case strings.HasPrefix(storeURL, "postgres"):
		return add("schema=dynkey_cluster_" + tag)
	}
	return storeURL
}

// run is the whole demo; it prints progress and, last, the summary line.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	cfg, err := parseFlags(args, stdout)
	if err != nil {
		return err
	}
	say := func(format string, a ...any) { fmt.Fprintf(stdout, format+"\n", a...) }
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "dynkey-cluster-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	tagBytes := make([]byte, 4)
	_, _ = rand.Read(tagBytes)
	tag := hex.EncodeToString(tagBytes)
	storeURL := cfg.store
	if storeURL == "" {
		storeURL = "sqlite://" + filepath.Join(dir, "dynkey.db")
	}
	storeURL = namespaced(storeURL, tag)
	say("[cluster] store %s", redactURL(storeURL))

	kek := make([]byte, 32)
	_, _ = rand.Read(kek)
	pub, identity, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	handled := filepath.Join(dir, "handled.log")
	var insts []*instance
	defer func() {
		for _, in := range insts {
			in.signal(syscall.SIGTERM)
		}
	}()
	for i := range cfg.instances {
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		in := &instance{name: fmt.Sprintf("i%d", i+1), addr: addr, env: []string{
			envInstance + "=" + fmt.Sprintf("i%d", i+1),
			envStore + "=" + storeURL,
			envAddr + "=" + addr,
			envIdentity + "=" + hex.EncodeToString(identity.Seed()),
			envServerRotate + "=" + cfg.serverRotate.String(),
			envUsers + "=" + fmt.Sprint(cfg.clients),
			envHandled + "=" + handled,
			envKEK + "=" + hex.EncodeToString(kek),
		}}
		if err := in.start(ctx, exe); err != nil {
			return err
		}
		insts = append(insts, in)
		say("[cluster] instance %s (pid %d) serving on %s", in.name, in.cmd.Process.Pid, addr)
	}

	// The round-robin reverse proxy. A backend that refuses the connection
	// never saw the request: it goes to the next one. A backend that fails
	// after the request was sent may have run it: that is a 502 for the
	// caller, never a silent second run.
	backends := make([]*url.URL, len(insts))
	for i, in := range insts {
		backends[i] = &url.URL{Scheme: "http", Host: in.addr}
	}
	var next atomic.Uint64
	bt := &http.Transport{MaxIdleConnsPerHost: 64, ResponseHeaderTimeout: 15 * time.Second}
	defer bt.CloseIdleConnections()
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(backends[next.Add(1)%uint64(len(backends))])
		},
		Transport: &failover{next: bt, backends: backends},
		ErrorLog:  nil,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	pln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	psrv := &http.Server{Handler: proxy, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = psrv.Serve(pln) }()
	defer psrv.Close()
	base := "http://" + pln.Addr().String()
	say("[cluster] round-robin proxy on %s", base)

	plain := &http.Client{Timeout: 10 * time.Second}
	dirOf := func(b string) (*wire.Directory, error) {
		resp, err := plain.Get(b + wire.PathKeys)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("directory: %s", resp.Status)
		}
		var sd wire.SignedDirectory
		if err := json.NewDecoder(resp.Body).Decode(&sd); err != nil {
			return nil, err
		}
		return sd.Verify(pub)
	}
	d0, err := dirOf(base)
	if err != nil {
		return err
	}

	// Clients.
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	clients := make([]*client.Client, cfg.clients)
	for i := range clients {
		clients[i], err = client.New(client.Config{
			BaseURL: base, Username: userName(i), Password: password(i), IdentityKey: pub,
			Policy: policy.OffsetGrowth(cfg.clientRotate), HeartbeatInterval: time.Second,
			Transport: &http.Transport{MaxIdleConnsPerHost: 4}, Logger: quiet,
		})
		if err != nil {
			return err
		}
		defer clients[i].Close()
	}
	say("[cluster] %d clients for %v; server keys rotate every %v, client keys every %v", cfg.clients, cfg.duration, cfg.serverRotate, cfg.clientRotate)

	var requests, failed, unknown, retried atomic.Uint64
	stopFaults := make(chan struct{})
	var faults sync.WaitGroup
	if cfg.killEvery > 0 {
		faults.Go(func() {
			for k := 0; ; k++ {
				select {
				case <-stopFaults:
					return
				case <-time.After(cfg.killEvery):
				}
				in := insts[k%len(insts)]
				in.signal(syscall.SIGKILL)
				say("[fault] kill -9 %s", in.name)
				time.Sleep(time.Second)
				if err := in.start(ctx, exe); err != nil {
					say("[fault] restarting %s: %v", in.name, err)
					continue
				}
				say("[fault] %s restarted (pid %d)", in.name, in.cmd.Process.Pid)
			}
		})
	}
	deadline := time.Now().Add(cfg.duration)
	var wg sync.WaitGroup
	for i, c := range clients {
		hc := c.HTTPClient()
		hc.Timeout = 20 * time.Second
		wg.Go(func() {
			for n := 0; time.Now().Before(deadline) && ctx.Err() == nil; n++ {
				method := http.MethodPut
				if n%2 == 1 {
					method = http.MethodPost
				}
				ok, outcomeUnknown, tries := call(ctx, hc, base, method, i)
				requests.Add(1)
				if tries > 1 {
					retried.Add(1)
				}
				if !ok {
					failed.Add(1)
					if outcomeUnknown {
						unknown.Add(1)
					}
				}
			}
		})
	}
	wg.Wait()
	close(stopFaults)
	faults.Wait()

	var clientRotations uint64
	for _, c := range clients {
		c.Close()
		clientRotations += c.Stats().ClientRotations
	}
	d1, err := dirOf(base)
	if err != nil {
		return err
	}
	// Every instance must serve the same single primary: give the last
	// rotation the time to propagate (a poll interval), then compare.
	primaries := map[string]bool{}
	for try := 0; try < 20; try++ {
		clear(primaries)
		for _, in := range insts {
			d, err := dirOf("http://" + in.addr)
			if err != nil {
				return err
			}
			for _, k := range d.Keys {
				if k.Status == wire.StatusPrimary {
					primaries[k.ID] = true
				}
			}
		}
		if len(primaries) == 1 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, in := range insts {
		in.signal(syscall.SIGTERM)
	}
	insts = nil
	twice, ranUnknown, err := handledTwice(handled)
	if err != nil {
		return err
	}
	serverRotations := d1.Epoch - d0.Epoch
	say("[cluster] retried idempotent PUTs: %d; failed with an unknown outcome (POST cut off by a fault, not re-run): %d (handler ran for %d); POST handlers run twice: %d",
		retried.Load(), unknown.Load(), ranUnknown, twice)
	if failed.Load() > 0 {
		say("[cluster] failures: %s", &failures)
	}
	fmt.Fprintf(stdout, "summary: requests=%d failed=%d client_rotations=%d server_rotations=%d primaries=%d\n",
		requests.Load(), failed.Load(), clientRotations, serverRotations, len(primaries))
	if failed.Load() > 0 || twice > 0 || len(primaries) != 1 || serverRotations < 2 || clientRotations < 2 {
		return errFailed
	}
	return nil
}

// call makes one logical request and checks the echo. A request whose
// client could not log in was never sent and is sent again. An idempotent PUT
// that failed in transit (transport error, 502, or 503 "unavailable") is
// sent again — a new message, the same request id — up to 3 times; a POST
// never is: its outcome is unknown and it is reported as failed.
func call(ctx context.Context, hc *http.Client, base, method string, i int) (ok, outcomeUnknown bool, tries int) {
	idb := make([]byte, 12)
	_, _ = rand.Read(idb)
	id := hex.EncodeToString(idb)
	ok, outcomeUnknown, tries, why := call1(ctx, hc, base, method, i, id)
	if !ok {
		failures.note(method + " " + why)
		if outcomeUnknown && method == http.MethodPost {
			unknownMu.Lock()
			unknownIDs = append(unknownIDs, id)
			unknownMu.Unlock()
		}
	}
	return ok, outcomeUnknown, tries
}

// unknownIDs are the request ids of the POSTs whose outcome is unknown.
var (
	unknownMu  sync.Mutex
	unknownIDs []string
)

// failures counts the failed requests by reason, for the report.
var failures reasons

type reasons struct {
	mu sync.Mutex
	m  map[string]int
}

func (r *reasons) note(why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string]int{}
	}
	r.m[why]++
}

func (r *reasons) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var parts []string
	for why, n := range r.m {
		parts = append(parts, fmt.Sprintf("%d× %s", n, why))
	}
	slices.Sort(parts)
	return strings.Join(parts, "; ")
}

func call1(ctx context.Context, hc *http.Client, base, method string, i int, id string) (ok, outcomeUnknown bool, tries int, why string) {
	in := echoRequest{ID: id, Client: i}
	body, _ := json.Marshal(in)
	for tries = 1; ; tries++ {
		req, err := http.NewRequestWithContext(ctx, method, base+"/api/echo", bytes.NewReader(body))
		if err != nil {
			return false, false, tries, err.Error()
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		var b []byte
		transient := err != nil
		if err != nil && os.Getenv("DYNKEY_CLUSTER_DEBUG") != "" {
			fmt.Fprintf(os.Stderr, "debug: %s try %d: %v\n", method, tries, err)
		}
		if p, isProblem := errors.AsType[*wire.Problem](err); isProblem && tries < 10 {
			// The client's login was refused (login-busy while twenty
			// clients log in at once): the request itself was never
			// sent, so sending it is safe whatever the method.
			_ = p
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if err == nil {
			var rerr error
			b, rerr = io.ReadAll(resp.Body)
			resp.Body.Close()
			if rerr == nil && resp.StatusCode == http.StatusOK {
				var out echoResponse
				if json.Unmarshal(b, &out) == nil && out.Echo == in && out.User == userName(i) {
					return true, false, tries, ""
				}
				return false, false, tries, "wrong echo"
			}
			if os.Getenv("DYNKEY_CLUSTER_DEBUG") != "" {
				fmt.Fprintf(os.Stderr, "debug: %s try %d: %d %s\n", method, tries, resp.StatusCode, b)
			}
			transient = rerr != nil || resp.StatusCode == http.StatusBadGateway || resp.StatusCode == http.StatusServiceUnavailable
		}
		if !transient {
			return false, false, tries, reason(resp, b, err)
		}
		if method != http.MethodPut || tries >= 3 {
			return false, true, tries, reason(resp, b, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// reason names why a request failed: its error, or its status and problem
// code.
func reason(resp *http.Response, body []byte, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	if resp == nil {
		return "no response"
	}
	if p, ok := wire.ParseProblem(body); ok {
		return fmt.Sprintf("%d %s", resp.StatusCode, p.Code)
	}
	return resp.Status
}

// failover sends a request to the next backend when its backend refused
// the connection (it never saw the request).
type failover struct {
	next     http.RoundTripper
	backends []*url.URL
}

func (f *failover) RoundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		b, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return nil, err
		}
		body = b
	}
	host := r.URL.Host
	start := 0
	for i, b := range f.backends {
		if b.Host == host {
			start = i
		}
	}
	var err error
	for k := range f.backends {
		rr := r.Clone(r.Context())
		rr.URL.Host = f.backends[(start+k)%len(f.backends)].Host
		rr.Host = ""
		if body != nil {
			rr.Body = io.NopCloser(bytes.NewReader(body))
		}
		var resp *http.Response
		resp, err = f.next.RoundTrip(rr)
		if err == nil {
			return resp, nil
		}
		var op *net.OpError
		if !errors.As(err, &op) || op.Op != "dial" {
			return nil, err // sent, or partly: the outcome is unknown
		}
	}
	return nil, err
}

// handledTwice counts the POST request ids that a handler ran for more than
// once, and, of the POSTs whose outcome was unknown to their caller, those
// whose handler did run.
func handledTwice(path string) (twice, ranUnknown int, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	seen := map[string]int{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == http.MethodPost {
			seen[f[1]]++
		}
	}
	for _, c := range seen {
		if c > 1 {
			twice++
		}
	}
	unknownMu.Lock()
	defer unknownMu.Unlock()
	for _, id := range unknownIDs {
		if seen[id] > 0 {
			ranUnknown++
		}
	}
	return twice, ranUnknown, nil
}

// redactURL hides a password in a store URL.
func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		return u.Redacted()
	}
	return s
}
