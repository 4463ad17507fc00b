package bench

// The cases: server processes driven over HTTP, and in-process loops.

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/dynkey/dynkey/middleware"
	"github.com/dynkey/dynkey/store"
	"github.com/dynkey/dynkey/store/memory"
	"github.com/dynkey/dynkey/store/sqlite"
	"github.com/dynkey/dynkey/wire"
)

// child is a server process.
type child struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	out   *bufio.Reader
	ready childReady
}

func (e *env) startChild(spec *childSpec) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), childEnv+"="+string(b))
	if len(e.serverCPUs) > 0 {
		cmd.Env = append(cmd.Env, fmt.Sprintf("GOMAXPROCS=%d", len(e.serverCPUs)))
	}
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := startPinned(cmd, e.serverCPUs); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, in: in, out: bufio.NewReader(outPipe)}
	line, err := c.out.ReadBytes('\n')
	if err == nil {
		err = json.Unmarshal(line, &c.ready)
	}
	if err == nil && c.ready.Err != "" {
		err = errors.New(c.ready.Err)
	}
	if err != nil {
		c.close()
		return nil, fmt.Errorf("starting the server process: %w", err)
	}
	return c, nil
}

func (c *child) usage() (usage, error) {
	var u usage
	if _, err := io.WriteString(c.in, "usage\n"); err != nil {
		return u, err
	}
	line, err := c.out.ReadBytes('\n')
	if err != nil {
		return u, err
	}
	return u, json.Unmarshal(line, &u)
}

func (c *child) close() {
	_, _ = io.WriteString(c.in, "quit\n")
	c.in.Close()
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
	}
}

// httpRunner is a case served by a child process over HTTP.
type httpRunner struct {
	e           *env
	n           string
	ch          *child
	hc          *http.Client
	url         string
	contentType string
	check       check
	// seal returns a fresh sealed request; nil: the plain body, reused.
	seal   func() ([]byte, error)
	closer func()
	rate   float64 // estimated req/s, to size the next batch
	reqs   []prepared
	a      acc
}

func (e *env) newHTTPRunner(name string, spec *childSpec) (*httpRunner, error) {
	spec.MaxBody = int64(max(e.cfg.BodySize, 1<<20))
	spec.CPUProfile = e.profile(name)
	var jk *joseKeys
	if spec.Kind == kindJose {
		var err error
		if jk, err = newJoseKeys(); err != nil {
			return nil, err
		}
		spec.JoseClientSig, spec.JoseClientEnc = jk.public()
	}
	if spec.Kind == kindDynkey {
		spec.Sessions = e.cfg.Sessions
		spec.KEK = make([]byte, 32)
		_, _ = rand.Read(spec.KEK)
	}
	ch, err := e.startChild(spec)
	if err != nil {
		return nil, err
	}
	r := &httpRunner{e: e, n: name, ch: ch, hc: newHTTPClient(e.cfg.Concurrency), url: "http://" + ch.ready.Addr + echoPath, rate: 8000, closer: func() {}}
	r.a.res = Result{Name: name, ServerCPUs: e.serverCPUs}
	body := e.body
	switch spec.Kind {
	case kindPlain:
		r.contentType = "application/json"
		r.check = func(resp *http.Response, b []byte) error {
			if resp.StatusCode != http.StatusOK || len(b) != len(body) {
				return fmt.Errorf("%w: HTTP %d, %d bytes", errBadResponse, resp.StatusCode, len(b))
			}
			return nil
		}
		r.reqs = []prepared{{body: body}}
	case kindDynkey:
		base := "http://" + ch.ready.Addr
		s, err := newDynkeySealer(base, spec.Suite, ed25519.PublicKey(ch.ready.Identity), http.DefaultTransport, spec.MaxBody)
		if err != nil {
			ch.close()
			return nil, err
		}
		r.closer = func() { s.Close() }
		r.contentType = wire.MediaType
		r.check = dynkeyCheck
		r.seal = func() ([]byte, error) { return s.seal(body) }
		if err := verifyDynkey(base, spec.Suite, ed25519.PublicKey(ch.ready.Identity), body); err != nil {
			r.close()
			return nil, err
		}
	case kindJose:
		sig, enc, err := parseJosePublic(ch.ready.JoseServerSig, ch.ready.JoseServerEnc)
		if err != nil {
			ch.close()
			return nil, err
		}
		sealer, err := newJoseSealer(jk.sig, enc)
		if err != nil {
			ch.close()
			return nil, err
		}
		r.contentType = joseMediaType
		r.check = func(resp *http.Response, b []byte) error {
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != joseMediaType {
				return fmt.Errorf("%w: HTTP %d", errBadResponse, resp.StatusCode)
			}
			return nil
		}
		r.seal = func() ([]byte, error) { return sealer.seal(body) }
		// One full round trip, the response opened and verified.
		req, err := sealer.seal(body)
		if err == nil {
			err = verifyJose(r.hc, r.url, req, jk, sig, body)
		}
		if err != nil {
			r.close()
			return nil, err
		}
	}
	return r, nil
}

func (r *httpRunner) name() string { return r.n }

// maxBatchBytes bounds the memory of one slice's sealed requests.
const maxBatchBytes = 512 << 20

func (r *httpRunner) prepare(d time.Duration) error {
	if r.seal == nil {
		return nil
	}
	n := int(r.rate*d.Seconds()*1.3) + r.e.cfg.Concurrency
	if sz := len(r.e.body) + 1024; n*sz > maxBatchBytes {
		n = maxBatchBytes / sz
	}
	r.reqs = nil
	reqs, err := sealMany(n, runtime.GOMAXPROCS(0), r.seal)
	if err != nil {
		return err
	}
	r.reqs = reqs
	return nil
}

func (r *httpRunner) slice(ctx context.Context, d time.Duration, round int) error {
	before, err := r.ch.usage()
	if err != nil {
		return err
	}
	lr := runLoad(ctx, r.hc, r.url, r.contentType, r.reqs, r.seal == nil, r.e.cfg.Concurrency, d, r.check)
	after, err := r.ch.usage()
	if err != nil {
		return err
	}
	r.a.add(lr.requests, lr.errors, lr.firstErr, lr.elapsed, lr.lat, before, after)
	if lr.requests > 0 {
		rate := float64(lr.requests) / lr.elapsed.Seconds()
		if lr.elapsed < d*9/10 {
			rate = max(rate, r.rate) * 2 // ran out: more next time
		}
		r.rate = rate
	}
	if r.seal != nil {
		r.reqs = nil // sent; free them before the next case runs
	}
	return nil
}

func (r *httpRunner) result() Result { return r.a.result() }

func (r *httpRunner) close() {
	r.closer()
	r.ch.close()
	r.hc.CloseIdleConnections()
}

// verifyDynkey sends one request with a real client and checks the echo.
func verifyDynkey(base, suite string, identity ed25519.PublicKey, body []byte) error {
	c, err := newRealClient(base, suite, identity)
	if err != nil {
		return err
	}
	defer c.Close()
	resp, err := c.HTTPClient().Post(base+echoPath, "application/json", strings.NewReader(string(body)))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || string(got) != string(body) {
		return fmt.Errorf("%w: the echo came back as HTTP %d with %d bytes", errBadResponse, resp.StatusCode, len(got))
	}
	return nil
}

// verifyJose sends one sealed request and opens and checks the response.
func verifyJose(hc *http.Client, url string, req []byte, jk *joseKeys, serverSig ed25519.PublicKey, body []byte) error {
	resp, err := hc.Post(url, joseMediaType, strings.NewReader(string(req)))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	got, err := joseOpen(b, jk.enc, serverSig)
	if err != nil {
		return fmt.Errorf("jose response: %w", err)
	}
	if string(got) != string(body) {
		return fmt.Errorf("%w: jose echo differs", errBadResponse)
	}
	return nil
}

// inprocRunner is a case measured in this process.
type inprocRunner struct {
	e  *env
	n  string
	op func(i int) (done bool, err error)
	// prep, if set, readies the requests of a slice of d.
	prep   func(d time.Duration) error
	after  func(res opResult, d time.Duration)
	closer func()
	a      acc
}

func (r *inprocRunner) name() string { return r.n }

func (r *inprocRunner) prepare(d time.Duration) error {
	if r.prep == nil {
		return nil
	}
	return r.prep(d)
}

func (r *inprocRunner) slice(ctx context.Context, d time.Duration, round int) error {
	if r.e.cfg.ProfileDir != "" {
		f, err := os.Create(filepath.Join(r.e.cfg.ProfileDir, fmt.Sprintf("%s.%d.pprof", r.n, round)))
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	res := runOps(d, r.op)
	r.a.add(res.ops, res.errors, res.err, res.elapsed, res.lat, res.before, res.after)
	if r.after != nil {
		r.after(res, d)
	}
	return nil
}

func (r *inprocRunner) result() Result {
	res := r.a.result()
	res.InProcess = true
	return res
}

func (r *inprocRunner) close() {
	if r.closer != nil {
		r.closer()
	}
}

// newServerRunner is dynkey's server path in process, on the memory store
// or on SQLite.
func (e *env) newServerRunner(name string, onSQLite bool) (runner, error) {
	var st store.Store = memory.New()
	if onSQLite {
		s, err := sqlite.Open(tempPath(e.dir, name))
		if err != nil {
			return nil, err
		}
		st = s
	}
	m, err := middleware.New(middleware.Options{
		Suite: e.cfg.Suite, Store: st, Authenticator: benchAuth,
		MaxBodySize: int64(max(e.cfg.BodySize, 1<<20)),
		Logger:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		st.Close()
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/dynkey/", m.Endpoints())
	mux.Handle("/.well-known/dynkey/", m.Endpoints())
	const base = "http://bench.invalid"
	sealer, err := newDynkeySealer(base, e.cfg.Suite, m.IdentityPublicKey(), handlerTransport{mux}, int64(max(e.cfg.BodySize, 1<<20)))
	if err != nil {
		m.Close()
		st.Close()
		return nil, err
	}
	p := newServerPath(m)
	r := &inprocRunner{e: e, n: name, closer: func() { sealer.Close(); m.Close(); st.Close() }}
	r.a.res = Result{Name: name}
	rate := 5000.0
	var envs []prepared
	r.prep = func(d time.Duration) error {
		n := int(rate*d.Seconds()*1.3) + 16
		if sz := len(e.body) + 1024; n*sz > maxBatchBytes {
			n = maxBatchBytes / sz
		}
		var err error
		envs, err = sealMany(n, runtime.GOMAXPROCS(0), func() ([]byte, error) { return sealer.seal(e.body) })
		return err
	}
	r.op = func(i int) (bool, error) {
		if i >= len(envs) {
			return true, nil
		}
		return false, p.op(envs[i].body)
	}
	r.after = func(res opResult, d time.Duration) {
		if res.ops > 0 {
			obs := float64(res.ops) / res.elapsed.Seconds()
			if res.elapsed < d*9/10 {
				obs = max(obs, rate) * 2
			}
			rate = obs
		}
		envs = nil
	}
	return r, nil
}
