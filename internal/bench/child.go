package bench

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"

	dynkeygin "github.com/dynkey/dynkey/adapters/gin"
	"github.com/dynkey/dynkey/auth"
	"github.com/dynkey/dynkey/middleware"
	"github.com/dynkey/dynkey/store"
	"github.com/dynkey/dynkey/store/memory"
	"github.com/dynkey/dynkey/store/sqlite"
)

// childEnv names the environment variable that turns a process into a
// benchmark server (see the package documentation).
const childEnv = "DYNKEY_BENCH_CHILD"

// Server kinds.
const (
	kindPlain  = "plain-gin"
	kindDynkey = "dynkey"
	kindJose   = "jose"
)

// echoPath is the route every server echoes the request body on.
const echoPath = "/api/echo"

// benchUser and benchPassword log the dynkey clients in.
const (
	benchUser     = "bench"
	benchPassword = "bench-password"
)

// childSpec tells a child process what to serve.
type childSpec struct {
	Kind       string `json:"kind"`
	Suite      string `json:"suite,omitempty"`
	Store      string `json:"store,omitempty"` // "memory" or "sqlite"
	StorePath  string `json:"store_path,omitempty"`
	KEK        []byte `json:"kek,omitempty"`
	MaxBody    int64  `json:"max_body,omitempty"`
	CPUProfile string `json:"cpu_profile,omitempty"`
	Sessions   int    `json:"sessions,omitempty"`
	// jose: the client's public keys (PKIX DER).
	JoseClientSig []byte `json:"jose_client_sig,omitempty"`
	JoseClientEnc []byte `json:"jose_client_enc,omitempty"`
}

// childReady is the child's first line on stdout.
type childReady struct {
	Addr     string `json:"addr"`
	Identity []byte `json:"identity,omitempty"` // dynkey identity public key
	// jose: the server's public keys.
	JoseServerSig []byte `json:"jose_server_sig,omitempty"`
	JoseServerEnc []byte `json:"jose_server_enc,omitempty"`
	Err           string `json:"err,omitempty"`
}

// usage is a process's resource counters at one instant.
type usage struct {
	CPUNanos   int64  `json:"cpu_ns"` // user + system
	Mallocs    uint64 `json:"mallocs"`
	TotalAlloc uint64 `json:"total_alloc"`
	MaxRSSKiB  int64  `json:"max_rss_kib"`
	HeapInuse  uint64 `json:"heap_inuse"`
	// SeenGroups and SeenIDs: the SQLite store's group commit counters.
	SeenGroups uint64 `json:"seen_groups,omitempty"`
	SeenIDs    uint64 `json:"seen_ids,omitempty"`
}

func readUsage() usage {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	cpu, maxRSS := processCPU()
	return usage{
		CPUNanos:   cpu,
		Mallocs:    ms.Mallocs,
		TotalAlloc: ms.TotalAlloc,
		MaxRSSKiB:  maxRSS,
		HeapInuse:  ms.HeapInuse,
	}
}

func init() {
	spec := os.Getenv(childEnv)
	if spec == "" {
		return
	}
	if err := runChild(spec, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "dynkey bench child:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// runChild serves spec on a loopback port until its stdin says "quit" or
// closes, answering "usage" lines with a usage JSON line.
func runChild(specJSON string, in io.Reader, out io.Writer) error {
	var spec childSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		return err
	}
	enc := json.NewEncoder(out)
	h, ready, closeFn, err := newServer(&spec)
	if err != nil {
		_ = enc.Encode(childReady{Err: err.Error()})
		return err
	}
	defer closeFn()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	if spec.CPUProfile != "" {
		f, err := os.Create(spec.CPUProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	ready.Addr = ln.Addr().String()
	if err := enc.Encode(ready); err != nil {
		return err
	}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		switch sc.Text() {
		case "usage":
			u := readUsage()
			if sqliteStore != nil {
				st := sqliteStore.Stats()
				u.SeenGroups, u.SeenIDs = st.SeenGroups, st.SeenIDs
			}
			if err := enc.Encode(u); err != nil {
				return err
			}
		case "quit":
			return nil
		}
	}
	return nil
}

// echo answers with the request body, as JSON.
func echo(c *gin.Context) {
	b, err := io.ReadAll(c.Request.Body)
	if err != nil {
		c.Status(http.StatusBadRequest)
		return
	}
	c.Data(http.StatusOK, "application/json", b)
}

// newServer builds the handler for spec.
func newServer(spec *childSpec) (http.Handler, childReady, func(), error) {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	var ready childReady
	closeFn := func() {}
	switch spec.Kind {
	case kindPlain:
		r.POST(echoPath, echo)
	case kindDynkey:
		m, st, err := newMiddleware(spec)
		if err != nil {
			return nil, ready, nil, err
		}
		closeFn = func() { m.Close(); st.Close() }
		dynkeygin.Mount(r, m)
		r.Group("/api", dynkeygin.Middleware(m)).POST("/echo", echo)
		ready.Identity = m.IdentityPublicKey()
	case kindJose:
		js, err := newJoseServer(spec)
		if err != nil {
			return nil, ready, nil, err
		}
		ready.JoseServerSig, ready.JoseServerEnc = js.publicKeys()
		r.POST(echoPath, js.serve)
	default:
		return nil, ready, nil, fmt.Errorf("unknown server kind %q", spec.Kind)
	}
	return r, ready, closeFn, nil
}

// sqliteStore is the child's SQLite store, if it has one.
var sqliteStore *sqlite.Store

// newMiddleware is the dynkey server of spec with its store.
func newMiddleware(spec *childSpec) (*middleware.Middleware, store.Store, error) {
	var st store.Store
	switch spec.Store {
	case "", "memory":
		st = memory.New()
	case "sqlite":
		s, err := sqlite.Open(spec.StorePath)
		if err != nil {
			return nil, nil, err
		}
		st, sqliteStore = s, s
	default:
		return nil, nil, fmt.Errorf("unknown store %q", spec.Store)
	}
	if err := preloadSessions(st, spec.Sessions); err != nil {
		st.Close()
		return nil, nil, err
	}
	m, err := middleware.New(middleware.Options{
		Suite:            spec.Suite,
		Store:            st,
		Authenticator:    benchAuth,
		KeyEncryptionKey: spec.KEK,
		MaxBodySize:      spec.MaxBody,
		Logger:           slog.New(slog.DiscardHandler),
	})
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return m, st, nil
}

// sessionRecordSize is about the size of a stored ecies-x25519 session
// record (docs/DEPLOYMENT.md, Sizing).
const sessionRecordSize = 285

// preloadSessions writes n session-sized records under session keys, from
// 64 goroutines (stores that share commits, like SQLite, group them).
func preloadSessions(st store.Store, n int) error {
	if n <= 0 {
		return nil
	}
	ctx := context.Background()
	exp := time.Now().Add(12 * time.Hour)
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		errs = make(chan error, 64)
	)
	for range 64 {
		wg.Go(func() {
			value := make([]byte, sessionRecordSize)
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				var id [16]byte
				_, _ = rand.Read(id[:])
				_, _ = rand.Read(value)
				if _, err := st.CompareAndSwap(ctx, "dynkey/session/"+hex.EncodeToString(id[:]), 0, value, exp); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// benchAuth accepts only benchUser with benchPassword.
var benchAuth = auth.AuthenticatorFunc(func(_ context.Context, username, password string) error {
	if subtle.ConstantTimeCompare([]byte(username), []byte(benchUser))&subtle.ConstantTimeCompare([]byte(password), []byte(benchPassword)) != 1 {
		return auth.ErrBadCredentials
	}
	return nil
})

// joseKeys is one side's go-jose key pairs: Ed25519 to sign, P-256 to
// receive ECDH-ES+A256KW.
type joseKeys struct {
	sig ed25519.PrivateKey
	enc *ecdsa.PrivateKey
}

func newJoseKeys() (*joseKeys, error) {
	_, sig, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	enc, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return &joseKeys{sig: sig, enc: enc}, nil
}

// public returns the keys' public halves: the Ed25519 key's 32 bytes and
// the P-256 key's uncompressed point.
func (k *joseKeys) public() (sig, enc []byte) {
	pub, err := k.enc.PublicKey.ECDH()
	if err != nil {
		panic(err) // a generated P-256 key always converts
	}
	return bytes32(k.sig.Public().(ed25519.PublicKey)), pub.Bytes()
}

func bytes32(b []byte) []byte { return append([]byte(nil), b...) }

// parseJosePublic parses the halves public returned.
func parseJosePublic(sig, enc []byte) (ed25519.PublicKey, *ecdsa.PublicKey, error) {
	if len(sig) != ed25519.PublicKeySize {
		return nil, nil, errors.New("bad Ed25519 public key")
	}
	epk, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), enc)
	if err != nil {
		return nil, nil, err
	}
	return ed25519.PublicKey(sig), epk, nil
}

// tempPath returns a path for the SQLite file of a case in dir.
func tempPath(dir, name string) string { return filepath.Join(dir, name+".db") }
