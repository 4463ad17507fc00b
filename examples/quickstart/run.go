package main

import (
	"bytes"
	"context"
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
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	dynkeygin "github.com/dynkey/dynkey/adapters/gin"
	"github.com/dynkey/dynkey/auth"
	"github.com/dynkey/dynkey/client"
	"github.com/dynkey/dynkey/middleware"
	dkprom "github.com/dynkey/dynkey/observe/prometheus"
	"github.com/dynkey/dynkey/policy"
	"github.com/dynkey/dynkey/store/sqlite"
	"github.com/dynkey/dynkey/wire"

	// Every built-in suite, so that -suite can name any of them.
	_ "github.com/dynkey/dynkey/crypto/pq"
	_ "github.com/dynkey/dynkey/crypto/rsa"
	_ "github.com/dynkey/dynkey/crypto/tink"
)

// errDemoFailed is returned by run after the summary line when a request
// failed or a side rotated fewer than twice.
var errDemoFailed = errors.New("the demo failed; see the summary line")

type config struct {
	suite        string
	duration     time.Duration
	clientRotate time.Duration
	serverRotate time.Duration
	workers      int
	pace         time.Duration
	verbose      bool
	metrics      string
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("quickstart", flag.ContinueOnError)
	fs.StringVar(&c.suite, "suite", "ecies-x25519", "algorithm suite of the server and the client")
	fs.DurationVar(&c.duration, "duration", 6*time.Second, "how long the client makes requests (up to twice that on a machine too busy to show two rotations of each key sooner)")
	fs.DurationVar(&c.clientRotate, "client-rotate", 1500*time.Millisecond, "client key policy: rotate once time_offset grew by this (claim 5)")
	fs.DurationVar(&c.serverRotate, "server-rotate", 2*time.Second, "server key policy: rotate the key pair after this uptime (claim 6)")
	fs.IntVar(&c.workers, "workers", 1, "concurrent request loops in the client")
	fs.DurationVar(&c.pace, "pace", 10*time.Millisecond, "pause between two requests of a loop")
	fs.BoolVar(&c.verbose, "v", false, "also print every heartbeat")
	fs.StringVar(&c.metrics, "metrics", "", "serve Prometheus /metrics, /livez, /readyz and /keys on this address (e.g. 127.0.0.1:9090); default off")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.duration <= 0 || c.clientRotate <= 0 || c.serverRotate <= 0 || c.workers < 1 || c.pace < 0 {
		return c, errors.New("-duration, -client-rotate, -server-rotate and -workers must be positive")
	}
	return c, nil
}

// demo is one run: a server, a client and what they did.
type demo struct {
	cfg  config
	p    *printer
	base string
	m    *middleware.Middleware
	c    *client.Client
	// plain is an ordinary HTTP client, for the key directory and for the
	// refused plain request.
	plain *http.Client

	requests atomic.Uint64 // protected calls that returned 2xx and verified
	failed   atomic.Uint64 // protected calls that errored, were not 2xx or did not verify
	printed  atomic.Int64  // unix ns of the last request line printed
}

// run is the whole quickstart. It prints every step to stdout and, last, the
// summary line; it returns errDemoFailed after the summary if the demo
// failed, and any other error (before the summary) if it could not start.
func run(ctx context.Context, args []string, stdout io.Writer) (err error) {
	cfg, err := parseFlags(args)
	if err != nil {
		return err
	}
	d := &demo{cfg: cfg, p: &printer{w: stdout}}
	p := d.p
	plainTransport := &http.Transport{}
	d.plain = &http.Client{Transport: plainTransport, Timeout: 10 * time.Second}

	// Everything started is stopped, in reverse order, before the summary
	// (or on an early error), so nothing prints after the summary line.
	var closers []func()
	cleanup := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
		closers = nil
	}
	defer cleanup()

	// --- Server ---------------------------------------------------------

	dir, err := os.MkdirTemp("", "dynkey-quickstart-")
	if err != nil {
		return err
	}
	closers = append(closers, func() { os.RemoveAll(dir) })
	st, err := sqlite.Open(filepath.Join(dir, "dynkey.db"))
	if err != nil {
		return err
	}
	closers = append(closers, func() { st.Close() })
	p.printf("[server] state store: SQLite at %s", filepath.Join(dir, "dynkey.db"))

	// Moderate argon2id parameters (1 pass over 19 MiB, 1 lane) so the demo
	// logs in quickly; production servers use auth.DefaultParams.
	users := auth.NewArgon2id(auth.Params{Time: 1, MemoryKiB: 19 * 1024, Threads: 1, SaltLen: 16, KeyLen: 32})
	const username, password = "alice", "correct horse battery staple"
	if err := users.AddUser(username, password); err != nil {
		return err
	}
	p.printf("[server] user %q added (password stored as an argon2id hash)", username)

	// The key-encryption key seals the server's private keys in the store.
	// A real deployment loads the same 32 bytes on every instance from its
	// secret manager; the demo makes a random one.
	kek := make([]byte, 32)
	if _, err := rand.Read(kek); err != nil {
		return err
	}
	// With -metrics, an Observer counts into a registry of our own
	// (nothing global), served on a separate operations listener.
	var reg *prometheus.Registry
	var observer middleware.Observer
	if cfg.metrics != "" {
		reg = prometheus.NewRegistry()
		if observer, err = dkprom.New(reg, dkprom.Options{}); err != nil {
			return err
		}
	}
	d.m, err = middleware.New(middleware.Options{
		Observer:         observer,
		Suite:            cfg.suite,
		Store:            st,
		Authenticator:    users,
		KeyEncryptionKey: kek,
		ServerPolicy:     policy.Uptime(cfg.serverRotate),
		// A retired server key still opens requests for this long: longer
		// than the client's heartbeat interval, so requests sealed to it
		// before the client heard of the new key still go through.
		ServerKeyGrace:   5 * time.Second,
		MaintainInterval: min(250*time.Millisecond, cfg.serverRotate/4),
		// The server's log is part of the demo's output: its key rotations
		// are logged at Info level.
		Logger: slog.New(&lineHandler{p: p, prefix: "[server] ", level: slog.LevelInfo}),
	})
	if err != nil {
		return err
	}
	closers = append(closers, func() { d.m.Close() })

	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(gin.Recovery())
	dynkeygin.Mount(r, d.m) // key directory, login, heartbeat
	r.GET("/health", func(c *gin.Context) { c.String(http.StatusOK, "ok") })
	api := r.Group("/api", dynkeygin.Middleware(d.m)) // every /api route is encrypted
	api.POST("/echo", func(c *gin.Context) {
		s, _ := middleware.FromContext(c.Request.Context())
		var in json.RawMessage
		if err := c.ShouldBindJSON(&in); err != nil {
			c.JSON(http.StatusBadRequest, gin.H{"error": err.Error()})
			return
		}
		c.JSON(http.StatusOK, gin.H{"user": s.Username, "echo": in})
	})
	api.GET("/time", func(c *gin.Context) {
		s, _ := middleware.FromContext(c.Request.Context())
		loc, err := time.LoadLocation(c.DefaultQuery("tz", "UTC"))
		if err != nil {
			c.JSON(http.StatusBadRequest, gin.H{"error": err.Error()})
			return
		}
		c.JSON(http.StatusOK, gin.H{"user": s.Username, "time": time.Now().In(loc).Format(time.RFC3339Nano)})
	})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln)
	}()
	closers = append(closers, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-served
	})
	d.base = "http://" + ln.Addr().String()
	p.printf("[server] Gin listening on %s: /dynkey/* and /.well-known/dynkey/keys are dynkey's, /api/* is encrypted, /health is plain", d.base)
	p.printf("[server] suite %s; server key pair rotates after %v of uptime (claim 6), retired keys still open requests for %v",
		cfg.suite, cfg.serverRotate, 5*time.Second)

	closers = append(closers, plainTransport.CloseIdleConnections)

	if cfg.metrics != "" {
		if err := dkprom.RegisterKeys(reg, d.m, dkprom.Options{}); err != nil {
			return err
		}
		ops := http.NewServeMux()
		ops.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		ops.Handle("/livez", middleware.LivenessHandler())
		ops.Handle("/readyz", d.m.ReadinessHandler())
		ops.Handle("/keys", d.m.KeysHandler())
		oln, err := net.Listen("tcp", cfg.metrics)
		if err != nil {
			return fmt.Errorf("-metrics: %w", err)
		}
		osrv := &http.Server{Handler: ops, ReadHeaderTimeout: 10 * time.Second}
		oserved := make(chan struct{})
		go func() {
			defer close(oserved)
			_ = osrv.Serve(oln)
		}()
		closers = append(closers, func() {
			_ = osrv.Close()
			<-oserved
		})
		p.printf("[server] operations on http://%s: /metrics (Prometheus), /livez, /readyz, /keys", oln.Addr())
	}

	// The signed key directory's epoch grows by one with every server key
	// rotation: the demo counts rotations by it.
	startEpoch, err := d.epoch(ctx)
	if err != nil {
		return err
	}

	// --- Client ---------------------------------------------------------

	transport := &http.Transport{}
	closers = append(closers, transport.CloseIdleConnections)
	d.c, err = client.New(client.Config{
		BaseURL:  d.base,
		Username: username,
		Password: password,
		Suite:    cfg.suite,
		// The app ships with the server's identity public key, so the
		// client accepts only key directories that server signed.
		IdentityKey:       d.m.IdentityPublicKey(),
		Policy:            policy.OffsetGrowth(cfg.clientRotate),
		HeartbeatInterval: min(500*time.Millisecond, cfg.serverRotate/2),
		Transport:         &wireTap{p: p, next: transport},
		OnEvent:           d.onEvent,
		Logger:            slog.New(&lineHandler{p: p, prefix: "[client] ", level: slog.LevelWarn}),
	})
	if err != nil {
		return err
	}
	closers = append(closers, func() { d.c.Close() })
	p.printf("[client] client key rotates once the server clock advanced %v since it was installed (claim 5); heartbeat every %v",
		cfg.clientRotate, min(500*time.Millisecond, cfg.serverRotate/2))

	// --- Encrypted calls ------------------------------------------------

	p.printf("[demo] making encrypted calls for %v (printing the first 3, then about one a second)", cfg.duration)
	start := time.Now()
	var extended atomic.Bool
	more := func() bool {
		if time.Since(start) < cfg.duration {
			return true
		}
		// On a machine so busy that a side has not rotated twice yet, go
		// on for up to another -duration rather than fail the demo.
		s := d.c.Stats()
		if s.ClientRotations >= 2 && s.ServerKeyChanges >= 2 || time.Since(start) >= 2*cfg.duration {
			return false
		}
		if extended.CompareAndSwap(false, true) {
			p.printf("[demo] not yet two rotations of each key (client %d, server %d): going on for up to %v more",
				s.ClientRotations, s.ServerKeyChanges, cfg.duration)
		}
		return true
	}
	var wg sync.WaitGroup
	var seq atomic.Uint64
	for range cfg.workers {
		wg.Go(func() {
			for ctx.Err() == nil && more() {
				d.call(ctx, seq.Add(1))
				if cfg.pace > 0 {
					select {
					case <-ctx.Done():
					case <-time.After(cfg.pace):
					}
				}
			}
		})
	}
	wg.Wait()

	// --- A refusal ------------------------------------------------------

	d.plainRequest(ctx)

	// --- Summary --------------------------------------------------------

	// Stop the client (its heartbeats) and the server's key maintenance
	// first, so that the counts below are final.
	d.c.Close()
	d.m.Close()
	stats := d.c.Stats()
	endEpoch, err := d.epoch(ctx)
	if err != nil {
		p.printf("[demo] FAILED: reading the key directory: %v", err)
		d.failed.Add(1)
		endEpoch = startEpoch
	}
	serverRotations := endEpoch - startEpoch
	cleanup()
	p.printf("[demo] client: %d sealed requests (heartbeats and retries included), %d login(s), %d key rotation(s), learned %d new server key(s), %d recoveries",
		stats.Requests, stats.Logins, stats.ClientRotations, stats.ServerKeyChanges, stats.Recoveries)
	p.printf("[demo] server: %d key rotation(s), key directory epoch %d -> %d; all stopped, temporary directory removed",
		serverRotations, startEpoch, endEpoch)
	failed := d.failed.Load()
	p.printf("summary: requests=%d failed=%d client_rotations=%d server_rotations=%d",
		d.requests.Load(), failed, stats.ClientRotations, serverRotations)
	if failed > 0 || stats.ClientRotations < 2 || serverRotations < 2 {
		return errDemoFailed
	}
	return nil
}

// call makes one protected call, alternating between the two routes, and
// checks the answer.
func (d *demo) call(ctx context.Context, n uint64) {
	var (
		req  *http.Request
		err  error
		want func(map[string]any) bool
	)
	if n%2 == 1 {
		body := fmt.Sprintf(`{"n":%d,"msg":"hello"}`, n)
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, d.base+"/api/echo", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		want = func(v map[string]any) bool {
			e, _ := v["echo"].(map[string]any)
			return e != nil && e["n"] == float64(n) && e["msg"] == "hello"
		}
	} else {
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, d.base+"/api/time?tz=UTC", nil)
		want = func(v map[string]any) bool {
			s, _ := v["time"].(string)
			_, err := time.Parse(time.RFC3339Nano, s)
			return err == nil
		}
	}
	if err != nil {
		panic(err) // a constant URL
	}
	what := req.Method + " " + req.URL.RequestURI()
	resp, err := d.c.HTTPClient().Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return // interrupted: not a failure of dynkey
		}
		d.failed.Add(1)
		d.p.printf("[client] FAILED: %s: %v", what, err)
		return
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	var v map[string]any
	ok := err == nil && resp.StatusCode/100 == 2 &&
		strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") &&
		json.Unmarshal(b, &v) == nil && v["user"] == "alice" && want(v)
	if !ok {
		d.failed.Add(1)
		d.p.printf("[client] FAILED: %s -> %d %s %s", what, resp.StatusCode, resp.Header.Get("Content-Type"), b)
		return
	}
	i := d.requests.Add(1)
	now := time.Now().UnixNano()
	if last := d.printed.Load(); i <= 3 || (now-last >= int64(time.Second) && d.printed.CompareAndSwap(last, now)) {
		if i <= 3 {
			d.printed.Store(now)
		}
		d.p.printf("[client] %s -> %d %s (request #%d)", what, resp.StatusCode, b, i)
	}
}

// plainRequest shows a newcomer what a client without dynkey gets from a
// protected route. The refusal is expected and not counted as a failure.
func (d *demo) plainRequest(ctx context.Context) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, d.base+"/api/echo", strings.NewReader(`{"msg":"hello"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.plain.Do(req)
	if err != nil {
		d.failed.Add(1)
		d.p.printf("[demo] FAILED: plain POST /api/echo: %v", err)
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	prob, ok := wire.ParseProblem(b)
	if resp.StatusCode != http.StatusUnsupportedMediaType || !ok || prob.Code != wire.CodeNotEncrypted {
		d.failed.Add(1)
		d.p.printf("[demo] FAILED: a plain POST /api/echo was not refused: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
		return
	}
	d.p.printf("[demo] a plain (unencrypted) POST /api/echo -> %d %s code=%q %q: refused before the handler ran, as expected (not a failure)",
		resp.StatusCode, resp.Header.Get("Content-Type"), prob.Code, prob.Detail)
}

// epoch fetches the signed key directory, checks its signature with the
// server's identity key and returns its epoch.
func (d *demo) epoch(ctx context.Context) (uint64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, d.base+wire.PathKeys, nil)
	resp, err := d.plain.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var sd wire.SignedDirectory
	if err := json.NewDecoder(resp.Body).Decode(&sd); err != nil {
		return 0, fmt.Errorf("key directory: %w", err)
	}
	dir, err := sd.Verify(d.m.IdentityPublicKey())
	if err != nil {
		return 0, err
	}
	return dir.Epoch, nil
}

func (d *demo) onEvent(e client.Event) {
	switch e.Kind {
	case client.EventLogin:
		d.p.printf("[client] %s", e.Detail)
	case client.EventClientKeyRotated:
		d.p.printf("[client] rotated its own key in-band, with proof of both keys (claim 5): %s", e.Detail)
	case client.EventServerKeyChanged:
		d.p.printf("[client] learned the new server key: %s", e.Detail)
	case client.EventHeartbeat:
		if d.cfg.verbose {
			d.p.printf("[client] heartbeat: %s", e.Detail)
		}
	default:
		d.p.printf("[client] %s: %s", e.Kind, e.Detail)
	}
}

// wireTap shows, once, what the first protected request and its response
// look like on the wire.
type wireTap struct {
	p    *printer
	next http.RoundTripper
	once sync.Once
}

func (t *wireTap) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil || !strings.HasPrefix(req.URL.Path, "/api/") || req.GetBody == nil {
		return resp, err
	}
	t.once.Do(func() {
		body, _ := req.GetBody()
		env, _ := io.ReadAll(body)
		t.p.printf("[wire] %s %s went out as %s, %d bytes: %s… (plaintext visible: %v)",
			req.Method, req.URL.Path, req.Header.Get("Content-Type"), len(env), hex.EncodeToString(env[:min(16, len(env))]),
			bytes.Contains(env, []byte("hello")))
		t.p.printf("[wire] the answer came back as %d %s, %d bytes, sealed for this request only",
			resp.StatusCode, resp.Header.Get("Content-Type"), resp.ContentLength)
	})
	return resp, err
}
