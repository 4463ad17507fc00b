package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dynkey/dynkey/auth"
	"github.com/dynkey/dynkey/middleware"
	dkprom "github.com/dynkey/dynkey/observe/prometheus"
	"github.com/dynkey/dynkey/policy"
)

// echoPath is the demo server's protected route.
const echoPath = "/api/echo"

func runServe(e *env, args []string) error {
	fs := newFlags(e, "dynkey serve", "[-addr HOST:PORT] [-store URL] [-kek-file FILE|-kek-env VAR] [-suite NAME] [-server-policy P] [-client-policy P] -user NAME:PASSWORD… [-tls-cert FILE -tls-key FILE] [-metrics HOST:PORT]", `
Runs a demo dynkey server: the key directory, login and heartbeat endpoints,
and one protected route, POST/PUT/GET `+echoPath+`, which answers with the
request's body and content type (sealed, like every protected response).
Prints the identity key to pin in clients and the address it listens on, then
serves until interrupted (SIGINT/SIGTERM), and closes the store cleanly.

A durable store (sqlite:…) needs a key-encryption key (-kek-file or
-kek-env) so that later runs, and "dynkey keys list", can open it. The users'
passwords are hashed with moderate Argon2id parameters (1 pass, 19 MiB) so
that the demo logs in quickly; a production server uses auth.DefaultParams.
A port of 0 picks a free one; the line "listening on URL" says which.`)
	addr := fs.String("addr", "127.0.0.1:8080", "listen address")
	sf := addStoreFlags(fs)
	fs.Lookup("store").DefValue = "memory:"
	suite := fs.String("suite", "ecies-x25519", "algorithm suite of new keys and sessions (see docs/SUITES.md)")
	serverPolicy := fs.String("server-policy", "uptime>=24h", "when the server key pair rotates (docs/POLICIES.md)")
	clientPolicy := fs.String("client-policy", "", "the server's policy for client keys, e.g. \"age>=1h or reject(age>=2h)\"; default none")
	maintain := fs.Duration("maintain", 10*time.Second, "how often the server checks its policy and key lifecycle")
	grace := fs.Duration("server-key-grace", 10*time.Minute, "how long a retired server key still opens messages")
	tokenTTL := fs.Duration("token-ttl", 12*time.Hour, "lifetime of a login token and its session")
	var users stringList
	fs.Var(&users, "user", "a user NAME:PASSWORD (repeatable)")
	tlsCert := fs.String("tls-cert", "", "TLS certificate file (PEM); with -tls-key, serve https")
	tlsKey := fs.String("tls-key", "", "TLS private key file (PEM)")
	requireRing := fs.Bool("require-key-ring", false, "refuse to start on a store that holds no key ring (instead of creating one)")
	logLevel := fs.String("log-level", "info", "log level on stderr: debug, info, warn, error")
	metricsAddr := fs.String("metrics", "", "serve Prometheus /metrics, /livez, /readyz and /keys on this separate address (e.g. 127.0.0.1:9090); default off")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos, 0, 0, ""); err != nil {
		return err
	}
	if sf.url == "" {
		sf.url = "memory:"
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return usagef("bad -log-level %q: debug, info, warn or error", *logLevel)
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		return usagef("-tls-cert and -tls-key go together")
	}
	sp, err := policy.Parse(*serverPolicy)
	if err != nil {
		return usagef("bad -server-policy %q: %v", *serverPolicy, err)
	}
	var cp policy.Policy
	if *clientPolicy != "" {
		if cp, err = policy.Parse(*clientPolicy); err != nil {
			return usagef("bad -client-policy %q: %v", *clientPolicy, err)
		}
	}
	if len(users) == 0 {
		return usagef("dynkey serve: give at least one -user NAME:PASSWORD")
	}
	authn := auth.NewArgon2id(auth.Params{Time: 1, MemoryKiB: 19 * 1024, Threads: 1, SaltLen: 16, KeyLen: 32})
	for _, u := range users {
		name, pw, ok := strings.Cut(u, ":")
		if !ok || name == "" || pw == "" {
			return usagef("bad -user %q: NAME:PASSWORD expected", redactUser(u))
		}
		if err := authn.AddUser(name, pw); err != nil {
			return fmt.Errorf("adding user %q: %w", name, err)
		}
	}
	var kek []byte
	switch {
	case sf.kek.set():
		if kek, err = sf.kek.load(e); err != nil {
			return err
		}
	case durable(sf.url):
		return usagef("a durable store (%s) needs -kek-file or -kek-env, or its keys could never be read again (make one: dynkey kek new -o FILE)", sf.url)
	default:
		kek = make([]byte, kekSize)
		if _, err := rand.Read(kek); err != nil {
			return err
		}
	}

	st, err := openStore(e.ctx, sf.url, true)
	if err != nil {
		return err
	}
	defer st.Close()
	log := stderrLogger(e, level)
	// With -metrics, an Observer counts into a registry of our own
	// (nothing global), served on its own listener.
	reg := prometheus.NewRegistry()
	var observer middleware.Observer
	if *metricsAddr != "" {
		if observer, err = dkprom.New(reg, dkprom.Options{}); err != nil {
			return err
		}
	}
	m, err := middleware.New(middleware.Options{
		Observer:         observer,
		Suite:            *suite,
		Store:            st,
		Authenticator:    authn,
		KeyEncryptionKey: kek,
		ServerPolicy:     sp,
		ClientPolicy:     cp,
		MaintainInterval: *maintain,
		ServerKeyGrace:   *grace,
		TokenTTL:         *tokenTTL,
		RequireKeyRing:   *requireRing,
		Logger:           log,
	})
	if err != nil {
		return fmt.Errorf("starting the middleware: %w", err)
	}
	defer m.Close()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", *addr, err)
	}
	scheme := "http"
	if *tlsCert != "" {
		scheme = "https"
	}
	// The settings docs/PROTOCOL.md §4 recommends; the middleware bounds
	// the time to read an envelope itself (Options.ReadTimeout).
	srv := &http.Server{
		Handler:           demoMux(m),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       60 * time.Second,
		WriteTimeout:      30 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if *metricsAddr != "" {
		if err := dkprom.RegisterKeys(reg, m, dkprom.Options{}); err != nil {
			return err
		}
		ops := http.NewServeMux()
		ops.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		ops.Handle("/livez", middleware.LivenessHandler())
		ops.Handle("/readyz", m.ReadinessHandler())
		ops.Handle("/keys", m.KeysHandler())
		oln, err := net.Listen("tcp", *metricsAddr)
		if err != nil {
			return fmt.Errorf("-metrics: %w", err)
		}
		osrv := &http.Server{Handler: ops, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = osrv.Serve(oln) }()
		defer osrv.Close()
		fmt.Fprintf(e.stdout, "operations on http://%s: /metrics, /livez, /readyz, /keys\n", oln.Addr())
	}
	printIdentity(e, m)
	fmt.Fprintf(e.stdout, "suite: %s\nstore: %s\n", m.Suite(), redactURL(sf.url))
	fmt.Fprintf(e.stdout, "listening on %s://%s (protected route %s)\n", scheme, ln.Addr(), echoPath)

	errc := make(chan error, 1)
	go func() {
		if *tlsCert != "" {
			errc <- srv.ServeTLS(ln, *tlsCert, *tlsKey)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("serving: %w", err)
	case <-e.ctx.Done():
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	fmt.Fprintln(e.stdout, "stopped")
	return nil
}

// demoMux routes the dynkey endpoints and the protected echo route.
func demoMux(m *middleware.Middleware) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/dynkey/", m.Endpoints())
	mux.Handle("/.well-known/dynkey/", m.Endpoints())
	mux.Handle(echoPath, m.Handler(http.HandlerFunc(echo)))
	return mux
}

// echo answers with the request's body and content type.
func echo(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "reading the body", http.StatusBadRequest)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		w.Header().Set("Content-Type", ct)
	} else {
		w.Header().Set("Content-Type", "application/octet-stream")
	}
	w.Write(body)
}

// redactUser hides the password of NAME:PASSWORD.
func redactUser(u string) string {
	if name, _, ok := strings.Cut(u, ":"); ok {
		return name + ":***"
	}
	return u
}
