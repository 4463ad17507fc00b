package main

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/dynkey/dynkey/auth"
	"github.com/dynkey/dynkey/middleware"
	"github.com/dynkey/dynkey/policy"
	"github.com/dynkey/dynkey/store/storeurl"
)

// The environment of an instance process.
const (
	envInstance     = "DYNKEY_CLUSTER_INSTANCE" // its name; set: run as an instance
	envStore        = "DYNKEY_CLUSTER_STORE"    // store URL
	envAddr         = "DYNKEY_CLUSTER_ADDR"     // loopback address to listen on
	envIdentity     = "DYNKEY_CLUSTER_IDENTITY" // identity key seed, hex
	envServerRotate = "DYNKEY_CLUSTER_SERVER_ROTATE"
	envUsers        = "DYNKEY_CLUSTER_USERS"   // number of users
	envHandled      = "DYNKEY_CLUSTER_HANDLED" // file the handler appends request ids to
	envKEK          = "DYNKEY_KEK"             // the key-encryption key, hex or base64
)

// userName and password of client i.
func userName(i int) string { return fmt.Sprintf("user%02d", i) }
func password(i int) string { return fmt.Sprintf("password of user %02d", i) }

// echoRequest is the body of a call to /api/echo; id is unique per logical
// request (a retry of an idempotent PUT reuses it).
type echoRequest struct {
	ID     string `json:"id"`
	Client int    `json:"client"`
}

type echoResponse struct {
	User     string      `json:"user"`
	Instance string      `json:"instance"`
	Echo     echoRequest `json:"echo"`
}

// serve runs one instance until SIGTERM.
func serve() error {
	name := os.Getenv(envInstance)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("instance", name)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	kek, err := middleware.KEKFromEnv(envKEK)
	if err != nil {
		return err
	}
	seed, err := hex.DecodeString(os.Getenv(envIdentity))
	if err != nil || len(seed) != ed25519.SeedSize {
		return fmt.Errorf("%s: want a hex Ed25519 seed", envIdentity)
	}
	rotate, err := time.ParseDuration(os.Getenv(envServerRotate))
	if err != nil {
		return fmt.Errorf("%s: %w", envServerRotate, err)
	}
	n, err := strconv.Atoi(os.Getenv(envUsers))
	if err != nil {
		return fmt.Errorf("%s: %w", envUsers, err)
	}
	// Cheap argon2id parameters so that twenty logins are quick; production
	// servers use auth.DefaultParams.
	users := auth.NewArgon2id(auth.Params{Time: 1, MemoryKiB: 4 * 1024, Threads: 1, SaltLen: 16, KeyLen: 32})
	for i := range n {
		if err := users.AddUser(userName(i), password(i)); err != nil {
			return err
		}
	}
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	st, err := storeurl.Open(octx, os.Getenv(envStore))
	cancel()
	if err != nil {
		return err
	}
	defer st.Close()
	m, err := middleware.New(middleware.Options{
		Store:            st,
		Authenticator:    users,
		KeyEncryptionKey: kek,
		IdentityKey:      ed25519.NewKeyFromSeed(seed),
		ServerPolicy:     policy.MaxAge(rotate),
		// Longer than the clients' heartbeat interval plus their retries.
		ServerKeyGrace:   10 * time.Second,
		MaintainInterval: 200 * time.Millisecond,
		RingPollInterval: 500 * time.Millisecond,
		Logger:           log,
	})
	if err != nil {
		return err
	}
	defer m.Close()

	handled, err := os.OpenFile(os.Getenv(envHandled), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer handled.Close()
	var hmu sync.Mutex

	mux := http.NewServeMux()
	mux.Handle("/dynkey/", m.Endpoints())
	mux.Handle("/.well-known/dynkey/", m.Endpoints())
	mux.Handle("/api/echo", m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := middleware.FromContext(r.Context())
		var in echoRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&in); err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		// One line per handler run, written before answering: the parent
		// checks that no POST ran twice.
		hmu.Lock()
		_, err := fmt.Fprintf(handled, "%s %s %s\n", r.Method, in.ID, name)
		hmu.Unlock()
		if err != nil {
			http.Error(w, "log", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(echoResponse{User: s.Username, Instance: name, Echo: in})
	})))

	ln, err := net.Listen("tcp", os.Getenv(envAddr))
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Println("ready")
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}
