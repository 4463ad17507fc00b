package main

// These tests run the built dynkey binary, as an operator would, on real
// inputs: a served SQLite store, live HTTP on loopback, the protocol's test
// vectors. Each checks the exit status and what is printed, bad inputs
// included.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dynkey/dynkey/internal/testservers"
	"github.com/dynkey/dynkey/middleware"
	"github.com/dynkey/dynkey/store"
	"github.com/dynkey/dynkey/store/sqlite"
	"github.com/dynkey/dynkey/store/storeurl"
	"github.com/dynkey/dynkey/wire"
)

// bin is the dynkey binary built once for every test.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dynkey-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "dynkey")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building dynkey: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	stdout, stderr string
	code           int
}

// runOpts are extra inputs of one run.
type runOpts struct {
	stdin string
	env   []string
	dir   string
}

// dk runs the binary and returns what it printed and its exit status.
func dk(t *testing.T, o runOpts, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = strings.NewReader(o.stdin)
	cmd.Env = append(os.Environ(), o.env...)
	cmd.Dir = o.dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("dynkey %v: %v", args, err)
	}
	return result{out.String(), errb.String(), code}
}

// ok runs the binary and fails the test unless it exits 0.
func ok(t *testing.T, o runOpts, args ...string) result {
	t.Helper()
	r := dk(t, o, args...)
	if r.code != 0 {
		t.Fatalf("dynkey %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// fails runs the binary and checks its exit status and that stderr
// contains want.
func fails(t *testing.T, o runOpts, code int, want string, args ...string) result {
	t.Helper()
	r := dk(t, o, args...)
	if r.code != code || !strings.Contains(r.stderr, want) {
		t.Fatalf("dynkey %s: exit %d, stderr %q; want exit %d and %q\nstdout: %s", strings.Join(args, " "), r.code, r.stderr, code, want, r.stdout)
	}
	return r
}

func TestUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no command", nil, 2, "missing command"},
		{"unknown command", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"unknown subcommand", []string{"keys", "burn"}, 2, `dynkey keys: unknown command "burn"`},
		{"group without subcommand", []string{"inspect"}, 2, "dynkey inspect: missing command"},
		{"unknown flag", []string{"kek", "new", "-frobnicate"}, 2, "flag provided but not defined: -frobnicate"},
		{"unexpected argument", []string{"kek", "new", "extra"}, 2, `unexpected argument "extra"`},
		{"bad flag value", []string{"policy", "check", "age>=1h", "-age", "soon"}, 2, "invalid value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fails(t, runOpts{}, tt.code, tt.want, tt.args...)
		})
	}
}

// TestHelp runs -help on every command of the table: exit 0 and a usage
// text on stdout.
func TestHelp(t *testing.T) {
	var paths [][]string
	for _, c := range commandTable() {
		if c.sub == nil {
			paths = append(paths, []string{c.name})
		}
		for _, s := range c.sub {
			paths = append(paths, []string{c.name, s.name})
		}
	}
	for _, p := range paths {
		t.Run(strings.Join(p, "_"), func(t *testing.T) {
			r := ok(t, runOpts{}, append(p, "-help")...)
			if !strings.HasPrefix(r.stdout, "Usage: dynkey "+strings.Join(p, " ")) {
				t.Fatalf("-help printed %q", r.stdout)
			}
			r2 := ok(t, runOpts{}, append([]string{"help"}, p...)...)
			if r2.stdout != r.stdout {
				t.Fatalf("help %v differs from -help", p)
			}
		})
	}
	r := ok(t, runOpts{}, "help")
	for _, c := range commandTable() {
		if !strings.Contains(r.stdout, c.name) {
			t.Errorf("dynkey help does not list %s", c.name)
		}
	}
}

func TestKEKNew(t *testing.T) {
	dir := t.TempDir()
	r := ok(t, runOpts{}, "kek", "new")
	if !regexp.MustCompile(`^[0-9a-f]{64}\n$`).MatchString(r.stdout) {
		t.Fatalf("hex key: %q", r.stdout)
	}
	r2 := ok(t, runOpts{}, "kek", "new", "-format", "base64")
	if b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(r2.stdout)); err != nil || len(b) != 32 {
		t.Fatalf("base64 key %q: %v", r2.stdout, err)
	}
	if r.stdout == ok(t, runOpts{}, "kek", "new").stdout {
		t.Fatal("two keys are equal")
	}

	file := filepath.Join(dir, "kek")
	ok(t, runOpts{}, "kek", "new", "-o", file)
	checkMode := func() []byte {
		t.Helper()
		fi, err := os.Stat(file)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
		}
		b, _ := os.ReadFile(file)
		if k, err := decodeKEK(b); err != nil || len(k) != 32 {
			t.Fatalf("written key %q: %v", b, err)
		}
		return b
	}
	first := checkMode()
	fails(t, runOpts{}, 1, "already exists", "kek", "new", "-o", file)
	if b, _ := os.ReadFile(file); !bytes.Equal(b, first) {
		t.Fatal("the refused write changed the file")
	}
	// -force replaces it, and a world-readable file becomes 0600.
	if err := os.Chmod(file, 0o644); err != nil {
		t.Fatal(err)
	}
	ok(t, runOpts{}, "kek", "new", "-o", file, "-force", "-format", "base64")
	if b := checkMode(); bytes.Equal(b, first) {
		t.Fatal("-force did not replace the key")
	}
	fails(t, runOpts{}, 2, "-format must be hex or base64", "kek", "new", "-format", "pem")
	fails(t, runOpts{}, 1, "no such file or directory", "kek", "new", "-o", filepath.Join(dir, "missing", "kek"))
}

// TestDecodeKEK: the command reads a key-encryption key in the forms the
// servers read (middleware.ParseKEK), and only those.
func TestDecodeKEK(t *testing.T) {
	key := bytes.Repeat([]byte{0xab}, 32)
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"hex", hex.EncodeToString(key) + "\n", true},
		{"base64", base64.StdEncoding.EncodeToString(key), true},
		{"base64url raw", base64.RawURLEncoding.EncodeToString(key) + "\n", true},
		{"raw bytes", string(key), false},
		{"32 printable characters", strings.Repeat("k", 32), false},
		{"short hex", hex.EncodeToString(key[:16]), false},
		{"junk", "not a key", false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := decodeKEK([]byte(tt.in))
			if (err == nil) != tt.ok || (tt.ok && !bytes.Equal(k, key)) {
				t.Fatalf("decodeKEK(%q) = %x, %v", tt.in, k, err)
			}
		})
	}
}

// TestClientActionEveryCode: inspect problem knows what the client does
// about every problem code of the wire package.
func TestClientActionEveryCode(t *testing.T) {
	for _, c := range wire.Codes() {
		if clientAction[c] == "" {
			t.Errorf("no client action for %s (docs/PROTOCOL.md §9)", c)
		}
	}
	if len(clientAction) != len(wire.Codes()) {
		t.Errorf("%d actions for %d codes", len(clientAction), len(wire.Codes()))
	}
}

func TestPolicyCheck(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		norm     string
		decision string
	}{
		{"keep", []string{"age>=1h or reject(age>=2h)", "-age", "30m"}, "age>=1h or reject(age>=2h)", "keep"},
		{"rotate", []string{"age>=1h or reject(age>=2h)", "-age", "90m"}, "age>=1h or reject(age>=2h)", "rotate"},
		{"reject", []string{"age>=1h or reject(age>=2h)", "-age", "3h"}, "age>=1h or reject(age>=2h)", "reject"},
		{"uptime", []string{"uptime>=24h", "-uptime", "25h"}, "uptime>=24h", "rotate"},
		{"messages and bytes", []string{"messages>=1000 and bytes>=1MiB", "-messages", "1000", "-bytes", "1048576"}, "messages>=1000 and bytes>=1MiB", "rotate"},
		{"messages not bytes", []string{"messages>=1000 and bytes>=1MiB", "-messages", "1000"}, "messages>=1000 and bytes>=1MiB", "keep"},
		{"offset growth, flags first", []string{"-offset-growth", "2h", "offset_growth>=1h"}, "offset_growth>=1h", "rotate"},
		{"normalized spacing", []string{"  age>=60m   or  messages>=5 ", "-messages", "5"}, "age>=1h or messages>=5", "rotate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ok(t, runOpts{}, append([]string{"policy", "check"}, tt.args...)...)
			if !strings.Contains(r.stdout, "policy:   "+tt.norm+"\n") || !strings.Contains(r.stdout, "decision: "+tt.decision+"\n") {
				t.Fatalf("got:\n%s\nwant policy %q, decision %q", r.stdout, tt.norm, tt.decision)
			}
		})
	}
	bad := []struct {
		name string
		args []string
		want string
	}{
		{"syntax", []string{"age>=1h or"}, "syntax error"},
		{"unknown fact", []string{"temperature>=3"}, "bad policy"},
		{"no policy", nil, "missing POLICY"},
		{"two policies", []string{"age>=1h", "age>=2h"}, "unexpected argument"},
		{"age and uptime disagree", []string{"age>=1h", "-age", "1h", "-uptime", "2h"}, "same fact"},
		{"bad now", []string{"daily@03:00", "-now", "tomorrow"}, "bad -now"},
	}
	for _, tt := range bad {
		t.Run("bad "+tt.name, func(t *testing.T) {
			fails(t, runOpts{}, 2, tt.want, append([]string{"policy", "check"}, tt.args...)...)
		})
	}
}

// vectors returns the ecies-x25519 protocol test vectors.
func vectors(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile("../../testdata/protocol-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct{ Vectors []map[string]any }
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	for _, v := range f.Vectors {
		if v["suite"] == "ecies-x25519" {
			return v
		}
	}
	t.Fatal("no ecies-x25519 vectors")
	return nil
}

// field walks a path of map keys in decoded JSON and returns a hex string
// as bytes.
func field(t *testing.T, v any, path ...string) []byte {
	t.Helper()
	for _, p := range path {
		v = v.(map[string]any)[p]
	}
	b, err := hex.DecodeString(v.(string))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestInspectVectors(t *testing.T) {
	v := vectors(t)
	dir := t.TempDir()
	request := field(t, v, "request", "envelope")
	login := field(t, v, "login", "envelope")
	response := field(t, v, "request", "response", "envelope")
	document := field(t, v, "directory", "document")
	identity := hex.EncodeToString(field(t, v, "identity", "public_key"))
	serverKeyID := v["keys"].(map[string]any)["server"].(map[string]any)["key_id"].(string)
	messageID := hex.EncodeToString(field(t, v, "request", "header", "message_id"))
	docFile := writeFile(t, dir, "directory.json", document)
	reqFile := writeFile(t, dir, "request.bin", request)

	t.Run("request raw file", func(t *testing.T) {
		r := ok(t, runOpts{}, "inspect", "envelope", reqFile)
		for _, want := range []string{"request (type 2)", "ecies-x25519", serverKeyID, messageID} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("missing %q in:\n%s", want, r.stdout)
			}
		}
	})
	t.Run("request hex on stdin, checked against the directory", func(t *testing.T) {
		r := ok(t, runOpts{stdin: hex.EncodeToString(request) + "\n"}, "inspect", "envelope", "-directory", docFile, "-identity", identity)
		if !strings.Contains(r.stdout, "server key "+serverKeyID+" is in the directory") {
			t.Fatalf("no check line:\n%s", r.stdout)
		}
	})
	t.Run("login base64", func(t *testing.T) {
		r := ok(t, runOpts{stdin: base64.StdEncoding.EncodeToString(login)}, "inspect", "envelope", "-in", "base64", "-")
		clientKeyID := v["keys"].(map[string]any)["client"].(map[string]any)["key_id"].(string)
		if !strings.Contains(r.stdout, "login (type 1)") || !strings.Contains(r.stdout, clientKeyID+" (computed from the key)") {
			t.Fatalf("got:\n%s", r.stdout)
		}
	})
	t.Run("response", func(t *testing.T) {
		r := ok(t, runOpts{stdin: hex.EncodeToString(response)}, "inspect", "envelope")
		nonce := hex.EncodeToString(field(t, v, "request", "response", "nonce"))
		if !strings.Contains(r.stdout, "response (type 3)") || !strings.Contains(r.stdout, nonce) {
			t.Fatalf("got:\n%s", r.stdout)
		}
	})
	t.Run("directory", func(t *testing.T) {
		r := ok(t, runOpts{}, "inspect", "directory", docFile, "-identity", identity)
		for _, want := range []string{"valid, by the pinned identity", identity, serverKeyID + " primary", "ecies-x25519"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("missing %q in:\n%s", want, r.stdout)
			}
		}
		r = ok(t, runOpts{stdin: string(document)}, "inspect", "directory")
		if !strings.Contains(r.stdout, "not pinned") {
			t.Errorf("unpinned verification not said:\n%s", r.stdout)
		}
	})
	t.Run("problems", func(t *testing.T) {
		for _, p := range v["problems"].([]any) {
			pm := p.(map[string]any)
			r := ok(t, runOpts{stdin: string(field(t, pm, "json"))}, "inspect", "problem", "-identity", identity)
			if !strings.Contains(r.stdout, pm["code"].(string)) || !strings.Contains(r.stdout, "client action") {
				t.Errorf("%s:\n%s", pm["code"], r.stdout)
			}
			if pm["with_directory"].(bool) && !strings.Contains(r.stdout, "valid, by the pinned identity") {
				t.Errorf("%s: carried directory not verified:\n%s", pm["code"], r.stdout)
			}
		}
	})

	// Bad inputs.
	var sd wire.SignedDirectory
	if err := json.Unmarshal(document, &sd); err != nil {
		t.Fatal(err)
	}
	tampered := sd
	tampered.Signature = append([]byte(nil), sd.Signature...)
	tampered.Signature[0] ^= 1
	tamperedDoc, _ := json.Marshal(tampered)
	otherKey := strings.Repeat("11", 32)
	bad := []struct {
		name  string
		stdin []byte
		args  []string
		code  int
		want  string
	}{
		{"truncated envelope", request[:40], []string{"inspect", "envelope", "-in", "raw"}, 1, "malformed envelope"},
		{"not an envelope", []byte("hello"), []string{"inspect", "envelope", "-in", "raw"}, 1, `must start with "DK"`},
		{"unknown type", append([]byte{'D', 'K', 1, 9}, request[4:]...), []string{"inspect", "envelope", "-in", "raw"}, 1, "unknown envelope type 9"},
		{"empty input", nil, []string{"inspect", "envelope"}, 1, "stdin is empty"},
		{"bad -in", request, []string{"inspect", "envelope", "-in", "pem"}, 2, "-in must be"},
		{"tampered directory signature", tamperedDoc, []string{"inspect", "directory", "-identity", identity}, 1, "directory REJECTED"},
		{"tampered directory unpinned", tamperedDoc, []string{"inspect", "directory"}, 1, "directory REJECTED"},
		{"directory under another identity", document, []string{"inspect", "directory", "-identity", otherKey}, 1, "not the pinned"},
		{"bad identity", document, []string{"inspect", "directory", "-identity", "xyz"}, 2, "neither hex nor base64"},
		{"not a directory", []byte(`{"a":1}`), []string{"inspect", "directory"}, 1, "not a signed key directory"},
		{"envelope vs other directory", request, []string{"inspect", "envelope", "-in", "raw", "-directory", docFile, "-identity", otherKey}, 1, "not the pinned"},
		{"not a problem", []byte(`{"title":"x"}`), []string{"inspect", "problem"}, 1, "not a dynkey problem"},
		{"problem with wrong status", []byte(`{"type":"urn:dynkey:problem:replay","title":"t","status":200,"code":"replay"}`), []string{"inspect", "problem"}, 1, "replay is always 400"},
		{"problem with unknown code", []byte(`{"type":"urn:dynkey:problem:nope","title":"t","status":400,"code":"nope"}`), []string{"inspect", "problem"}, 1, "unknown code"},
		{"short token", []byte("AAAA"), []string{"inspect", "token"}, 1, "not a token"},
		{"missing file", nil, []string{"inspect", "directory", filepath.Join(dir, "nope.json")}, 1, "no such file"},
	}
	for _, tt := range bad {
		t.Run("bad "+tt.name, func(t *testing.T) {
			fails(t, runOpts{stdin: string(tt.stdin)}, tt.code, tt.want, tt.args...)
		})
	}
}

// server is a running "dynkey serve" process.
type server struct {
	cmd      *exec.Cmd
	url      string
	identity string
	stdout   *syncBuffer
	stderr   *syncBuffer
	done     chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startServe starts "dynkey serve" on a free loopback port and waits for
// its "listening on" line.
func startServe(t *testing.T, args ...string) *server {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve", "-addr", "127.0.0.1:0"}, args...)...)
	pr, pw := io.Pipe()
	s := &server{cmd: cmd, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stdout = io.MultiWriter(pw, s.stdout)
	cmd.Stderr = s.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- cmd.Wait(); pw.Close() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-s.done
		}
	})
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		io.Copy(io.Discard, pr)
	}()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case line, more := <-lines:
			if !more {
				t.Fatalf("serve exited before listening:\nstdout: %s\nstderr: %s", s.stdout, s.stderr)
			}
			if id, found := strings.CutPrefix(line, "identity (hex):"); found {
				s.identity = strings.TrimSpace(id)
			}
			if rest, found := strings.CutPrefix(line, "listening on "); found {
				s.url = strings.Fields(rest)[0]
				go func() {
					for range lines {
					}
				}()
				return s
			}
		case <-timeout:
			t.Fatalf("serve did not listen in time:\nstdout: %s\nstderr: %s", s.stdout, s.stderr)
		}
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (s *server) stop(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("serve exited with %v\nstderr: %s", err, s.stderr)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop on SIGTERM")
	}
	if !strings.Contains(s.stdout.String(), "stopped") {
		t.Fatalf("serve did not say it stopped:\n%s", s.stdout)
	}
}

// recorder is a reverse proxy on loopback in front of the server that
// keeps the request envelopes sent to the echo route, so that the tests
// inspect real envelopes and tokens. It does not change the path.
type recorder struct {
	mu        sync.Mutex
	envelopes [][]byte
}

func (rc *recorder) proxy(t *testing.T, target string) string {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == echoPath {
			b, _ := io.ReadAll(r.Body)
			rc.mu.Lock()
			rc.envelopes = append(rc.envelopes, b)
			rc.mu.Unlock()
			r.Body = io.NopCloser(bytes.NewReader(b))
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestServeCallKeys is the operator's path end to end: make a KEK, serve
// on a SQLite file, call the echo route (pinned, trust on first use, bad
// passwords, a wrong pinned identity, a plain request), inspect what went
// over the wire, stop the server, then list, rotate and destroy keys and
// check a token on the same file.
func TestServeCallKeys(t *testing.T) {
	dir := t.TempDir()
	kek := filepath.Join(dir, "kek")
	ok(t, runOpts{}, "kek", "new", "-o", kek)
	db := filepath.Join(dir, "dynkey.db")
	storeURL := "sqlite://" + db
	s := startServe(t, "-store", storeURL, "-kek-file", kek, "-user", "alice:correct horse", "-user", "bob:pw2",
		"-server-policy", "uptime>=1h", "-client-policy", "age>=1h or reject(age>=2h)")
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(s.identity) {
		t.Fatalf("identity %q", s.identity)
	}

	rec := &recorder{}
	proxied := rec.proxy(t, s.url)
	echo := proxied + echoPath

	t.Run("call pinned, flags after the URL", func(t *testing.T) {
		r := ok(t, runOpts{}, "call", "-u", "alice:correct horse", echo, "-identity", s.identity, "-d", `{"hello":"world"}`)
		if r.stdout != "{\"hello\":\"world\"}\n" {
			t.Fatalf("stdout %q", r.stdout)
		}
	})
	t.Run("call -v, password from the environment, body from a file", func(t *testing.T) {
		body := writeFile(t, dir, "body.txt", []byte("a body from a file"))
		r := ok(t, runOpts{env: []string{"DYNKEY_PASSWORD=pw2"}}, "call", "-v", "-u", "bob", "-identity", s.identity, "-X", "PUT", "-d", "@"+body, echo)
		if r.stdout != "a body from a file\n" {
			t.Fatalf("stdout %q", r.stdout)
		}
		for _, want := range []string{
			"(directory fetch)", "signed by the pinned identity", "(login)", "event login: logged in as bob",
			"> PUT /api/echo (request): envelope suite ecies-x25519", "< 200 application/dynkey",
			"server key in use:", "client key in use:", "logins=1",
		} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("-v output lacks %q:\n%s", want, r.stderr)
			}
		}
		if strings.Contains(r.stderr, "pw2") {
			t.Error("-v printed the password")
		}
	})
	t.Run("call -v -rotate shows the client key rotation", func(t *testing.T) {
		r := ok(t, runOpts{}, "call", "-v", "-rotate", "-u", "alice:correct horse", "-identity", s.identity, "-X", "DELETE", echo)
		rotated := regexp.MustCompile(`event client-key-rotated: client key rotated to ([0-9a-f]{16})`).FindStringSubmatch(r.stderr)
		if rotated == nil || !strings.Contains(r.stderr, "(heartbeat)") || !strings.Contains(r.stderr, "client_rotations=1") ||
			!strings.Contains(r.stderr, "> DELETE /api/echo (request): envelope suite ecies-x25519, sealed to server key") ||
			!strings.Contains(r.stderr, "client key in use: "+rotated[1]) {
			t.Fatalf("-v -rotate:\n%s", r.stderr)
		}
	})
	t.Run("call -v HEAD: envelopes in headers", func(t *testing.T) {
		r := ok(t, runOpts{}, "call", "-v", "-i", "-X", "HEAD", "-u", "alice:correct horse", "-identity", s.identity, echo)
		if !strings.HasPrefix(r.stdout, "HTTP/1.1 200 OK\n") ||
			!strings.Contains(r.stderr, "> HEAD /api/echo (request): envelope suite ecies-x25519") ||
			!strings.Contains(r.stderr, "in the Dynkey-Envelope header") ||
			!strings.Contains(r.stderr, "sealed response in the Dynkey-Response header") {
			t.Fatalf("stdout %q\nstderr:\n%s", r.stdout, r.stderr)
		}
	})
	t.Run("call from stdin with trust on first use", func(t *testing.T) {
		r := ok(t, runOpts{stdin: "from stdin"}, "call", "-insecure-tofu", "-u", "alice:correct horse", "-d", "@-", echo)
		if r.stdout != "from stdin\n" {
			t.Fatalf("stdout %q", r.stdout)
		}
	})
	t.Run("call -i prints the status", func(t *testing.T) {
		r := ok(t, runOpts{}, "call", "-i", "-identity", s.identity, "-u", "alice:correct horse", "-d", "x", echo)
		if !strings.HasPrefix(r.stdout, "HTTP/1.1 200 OK\n") {
			t.Fatalf("stdout %q", r.stdout)
		}
	})
	bad := []struct {
		name string
		opts runOpts
		args []string
		code int
		want string
	}{
		{"wrong password", runOpts{}, []string{"-u", "alice:wrong", "-identity", s.identity, "-d", "x", echo}, 1, "login-failed"},
		{"unknown user", runOpts{}, []string{"-u", "mallory:x", "-identity", s.identity, "-d", "x", echo}, 1, "login-failed"},
		{"no pin over http", runOpts{}, []string{"-u", "alice:correct horse", "-d", "x", echo}, 1, "-insecure-tofu"},
		{"wrong pinned identity", runOpts{}, []string{"-u", "alice:correct horse", "-identity", strings.Repeat("22", 32), echo}, 1, "directory"},
		{"no password", runOpts{env: []string{"DYNKEY_PASSWORD="}}, []string{"-u", "alice", "-identity", s.identity, echo}, 2, "DYNKEY_PASSWORD"},
		{"no user", runOpts{}, []string{"-identity", s.identity, echo}, 2, "missing -u"},
		{"no URL", runOpts{}, []string{"-u", "alice:x"}, 2, "missing URL"},
		{"bad URL", runOpts{}, []string{"-u", "alice:x", "ftp://host/x"}, 2, "bad URL"},
		{"pin and tofu", runOpts{}, []string{"-u", "alice:x", "-identity", s.identity, "-insecure-tofu", echo}, 2, "exclude each other"},
		{"unprotected path", runOpts{}, []string{"-u", "alice:correct horse", "-identity", s.identity, proxied + "/nowhere"}, 1, "404"},
		{"bad header", runOpts{}, []string{"-u", "alice:x", "-identity", s.identity, "-H", "nocolon", echo}, 2, "bad -H"},
	}
	for _, tt := range bad {
		t.Run("call "+tt.name, func(t *testing.T) {
			fails(t, tt.opts, tt.code, tt.want, append([]string{"call"}, tt.args...)...)
		})
	}
	if strings.Contains(s.stdout.String()+s.stderr.String(), "correct horse") {
		t.Error("the server printed a password")
	}

	// What went over the wire, inspected.
	resp, err := http.Get(s.url + wire.PathKeys)
	if err != nil {
		t.Fatal(err)
	}
	dirDoc, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	dirFile := writeFile(t, dir, "directory.json", dirDoc)
	r := ok(t, runOpts{}, "inspect", "directory", "-identity", s.identity, dirFile)
	primary := regexp.MustCompile(`([0-9a-f]{16}) primary`).FindStringSubmatch(r.stdout)
	if primary == nil {
		t.Fatalf("no primary key in:\n%s", r.stdout)
	}
	resp, err = http.Post(s.url+echoPath, "text/plain", strings.NewReader("not encrypted"))
	if err != nil {
		t.Fatal(err)
	}
	probDoc, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	r = ok(t, runOpts{stdin: string(probDoc)}, "inspect", "problem")
	if !strings.Contains(r.stdout, "not-encrypted") || !strings.Contains(r.stdout, "415") {
		t.Fatalf("problem:\n%s", r.stdout)
	}
	rec.mu.Lock()
	envelopes := rec.envelopes
	rec.mu.Unlock()
	if len(envelopes) == 0 {
		t.Fatal("the recorder saw no envelope")
	}
	envFile := writeFile(t, dir, "envelope.bin", envelopes[0])
	r = ok(t, runOpts{}, "inspect", "envelope", envFile, "-directory", dirFile, "-identity", s.identity)
	if !strings.Contains(r.stdout, "server key "+primary[1]+" is in the directory") {
		t.Fatalf("live envelope:\n%s", r.stdout)
	}
	req, err := wire.ParseRequest(envelopes[0])
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := writeFile(t, dir, "token", []byte(base64.RawURLEncoding.EncodeToString(req.Token)+"\n"))
	forged := append([]byte(nil), req.Token...)
	forged[1] ^= 0xff // another key id
	forgedFile := writeFile(t, dir, "forged", []byte(hex.EncodeToString(forged)))

	s.stop(t)

	// The same SQLite file, after the server stopped.
	st := []string{"-store", storeURL, "-kek-file", kek}
	r = ok(t, runOpts{}, append([]string{"keys", "list"}, st...)...)
	if !regexp.MustCompile(primary[1] + `\s+ecies-x25519\s+primary`).MatchString(r.stdout) {
		t.Fatalf("keys list:\n%s", r.stdout)
	}
	// No secret, not even sealed, in any listing.
	listJSON := ok(t, runOpts{}, append([]string{"keys", "list", "-json"}, st...)...).stdout
	secrets := sealedSecrets(t, rawRing(t, db))
	if len(secrets) < 3 {
		t.Fatalf("found %d sealed secrets in the ring", len(secrets))
	}
	for _, sec := range secrets {
		for _, enc := range []string{base64.StdEncoding.EncodeToString(sec), base64.RawURLEncoding.EncodeToString(sec), hex.EncodeToString(sec)} {
			if strings.Contains(r.stdout, enc[:16]) || strings.Contains(listJSON, enc[:16]) {
				t.Fatalf("keys list shows sealed material %s", enc)
			}
		}
	}
	r = ok(t, runOpts{}, append([]string{"identity"}, st...)...)
	if !strings.Contains(r.stdout, s.identity) {
		t.Fatalf("identity %q, served %s", r.stdout, s.identity)
	}
	tokenKeys := keysList(t, st).TokenKeys
	if len(tokenKeys) != 1 || tokenKeys[0].Until != 0 {
		t.Fatalf("token keys: %+v", tokenKeys)
	}
	tokenKeyID := tokenKeys[0].ID
	if req.Token[0] != 1 || hex.EncodeToString(req.Token[1:9]) != tokenKeyID {
		t.Fatalf("the token names key %x, the ring's token key is %s", req.Token[1:9], tokenKeyID)
	}
	r = ok(t, runOpts{}, append([]string{"inspect", "envelope", envFile}, st...)...)
	if !strings.Contains(r.stdout, "server key "+primary[1]+" is in the store's ring (primary)") ||
		!strings.Contains(r.stdout, "the token's key "+tokenKeyID+" is in the store's ring (primary token key)") {
		t.Fatalf("inspect envelope -store:\n%s", r.stdout)
	}
	r = ok(t, runOpts{}, append([]string{"inspect", "token", tokenFile}, st...)...)
	if !strings.Contains(r.stdout, "key "+tokenKeyID+" is in the ring (primary token key)") {
		t.Fatalf("inspect token:\n%s", r.stdout)
	}
	fails(t, runOpts{}, 1, "not in the store's key ring", append([]string{"inspect", "token", forgedFile}, st...)...)

	// Rotate, then destroy the retired key.
	fails(t, runOpts{}, 2, "must be positive", append([]string{"keys", "rotate", "-server-key-grace", "0"}, st...)...)
	start := time.Now()
	ok(t, runOpts{}, append([]string{"keys", "rotate", "-server-key-grace", "30m", "-token-ttl", "2h"}, st...)...)
	list := keysList(t, st)
	states := map[string]string{}
	for _, k := range list.Keys {
		states[k.ID] = k.State
		if k.State != "decrypt-only" {
			continue
		}
		// The grace given, not the default.
		if d := time.UnixMilli(k.DecryptUntil).Sub(start); d < 30*time.Minute || d > 31*time.Minute {
			t.Errorf("grace ends %v after the rotation, want 30m", d)
		}
	}
	if len(list.Keys) != 2 || states[primary[1]] != "decrypt-only" || list.Identity != s.identity {
		t.Fatalf("after rotate: %+v", list)
	}
	var newPrimary string
	for id, state := range states {
		if state == "primary" {
			newPrimary = id
		}
	}
	fails(t, runOpts{}, 1, "is primary", append([]string{"keys", "destroy", newPrimary}, st...)...)
	r = ok(t, runOpts{}, append([]string{"keys", "destroy", primary[1]}, st...)...)
	if !strings.Contains(r.stdout, "destroyed "+primary[1]) || strings.Contains(r.stdout, primary[1]+"  ecies-x25519") {
		t.Fatalf("keys destroy:\n%s", r.stdout)
	}
	if ringKeyHasPrivate(t, rawRing(t, db), primary[1]) {
		t.Fatal("the destroyed key's sealed private key is still in the ring")
	}
	fails(t, runOpts{}, 1, "no key "+primary[1], append([]string{"keys", "destroy", primary[1]}, st...)...)
	fails(t, runOpts{}, 1, "server key "+primary[1]+" is not in the store's key ring", append([]string{"inspect", "envelope", envFile}, st...)...)
	fails(t, runOpts{}, 1, "no key 0000000000000000", append([]string{"keys", "destroy", "0000000000000000"}, st...)...)
	fails(t, runOpts{}, 2, "bad key id", append([]string{"keys", "destroy", "zz"}, st...)...)
	fails(t, runOpts{}, 2, "missing KEY_ID", append([]string{"keys", "destroy"}, st...)...)
	// The token's key still holds its token key: the token still opens.
	ok(t, runOpts{}, append([]string{"inspect", "token", tokenFile}, st...)...)

	// Destroying a key destroys the keys retired before it too: only with
	// -force.
	ok(t, runOpts{}, append([]string{"keys", "rotate"}, st...)...)
	ok(t, runOpts{}, append([]string{"keys", "rotate"}, st...)...)
	older, newer := newPrimary, ""
	for _, k := range keysList(t, st).Keys {
		if k.State == "decrypt-only" && k.ID != older {
			newer = k.ID
		}
	}
	fails(t, runOpts{}, 1, "also destroys what is due before its grace ends: "+older, append([]string{"keys", "destroy", newer}, st...)...)
	if got := keyStates(t, st); got[older] != "decrypt-only" || got[newer] != "decrypt-only" {
		t.Fatalf("the refused destroy changed the ring: %v", got)
	}
	ok(t, runOpts{}, append([]string{"keys", "destroy", newer, "-force"}, st...)...)
	if got := keyStates(t, st); got[older] != "" || got[newer] != "" || len(got) != 1 {
		t.Fatalf("after destroy -force: %v", got)
	}

	// The server starts again on the same file with the same KEK, and the
	// pinned identity still holds.
	s2 := startServe(t, "-store", storeURL, "-kek-file", kek, "-user", "alice:correct horse")
	if s2.identity != s.identity {
		t.Fatalf("identity changed across a restart: %s, then %s", s.identity, s2.identity)
	}
	ok(t, runOpts{}, "call", "-u", "alice:correct horse", "-identity", s.identity, "-d", "again", s2.url+echoPath)
	s2.stop(t)

	// Rotate the KEK: afterwards the store opens with the new key only,
	// and a server on the new key serves the same identity.
	other := filepath.Join(dir, "other-kek")
	ok(t, runOpts{}, "kek", "new", "-o", other)
	third := filepath.Join(dir, "third-kek")
	ok(t, runOpts{}, "kek", "new", "-o", third)
	fails(t, runOpts{}, 1, "wrong KeyEncryptionKey", "kek", "rotate", "-store", storeURL, "-old-kek-file", third, "-new-kek-file", other)
	fails(t, runOpts{}, 2, "the same key", "kek", "rotate", "-store", storeURL, "-old-kek-file", kek, "-new-kek-file", kek)
	fails(t, runOpts{}, 2, "missing -new-kek-file or -new-kek-env", "kek", "rotate", "-store", storeURL, "-old-kek-file", kek)
	before := keyStates(t, st)
	r = ok(t, runOpts{}, "kek", "rotate", "-store", storeURL, "-old-kek-file", kek, "-new-kek-file", other)
	if !strings.Contains(r.stdout, "re-sealed") {
		t.Fatalf("kek rotate: %s", r.stdout)
	}
	fails(t, runOpts{}, 1, "opening the key ring", append([]string{"keys", "list"}, st...)...)
	kek, other = other, kek
	st = []string{"-store", storeURL, "-kek-file", kek}
	if after := keyStates(t, st); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("the ring changed in the KEK rotation: %v, then %v", before, after)
	}
	s3 := startServe(t, "-store", storeURL, "-kek-file", kek, "-user", "alice:correct horse")
	if s3.identity != s.identity {
		t.Fatalf("identity changed across the KEK rotation: %s, then %s", s.identity, s3.identity)
	}
	ok(t, runOpts{}, "call", "-u", "alice:correct horse", "-identity", s.identity, "-d", "again", s3.url+echoPath)
	s3.stop(t)

	// Bad stores and keys.
	badStore := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"wrong KEK", []string{"keys", "list", "-store", storeURL, "-kek-file", other}, 1, "wrong KeyEncryptionKey"},
		{"missing file", []string{"keys", "list", "-store", "sqlite://" + filepath.Join(dir, "nope.db"), "-kek-file", kek}, 1, "no such file"},
		{"empty store", []string{"keys", "list", "-store", "memory:", "-kek-file", kek}, 1, "holds no key ring"},
		{"unknown scheme", []string{"keys", "list", "-store", "mysql://x", "-kek-file", kek}, 2, "bad store URL"},
		{"no store", []string{"identity", "-kek-file", kek}, 2, "missing -store"},
		{"no KEK", []string{"identity", "-store", storeURL}, 2, "missing -kek-file or -kek-env"},
		{"KEK env empty", []string{"identity", "-store", storeURL, "-kek-env", "DYNKEY_TEST_UNSET_KEK"}, 1, "is empty or not set"},
		{"KEK file malformed", []string{"identity", "-store", storeURL, "-kek-file", tokenFile}, 1, "must be 32 bytes"},
		{"serve durable without KEK", []string{"serve", "-store", storeURL, "-user", "a:b"}, 2, "needs -kek-file or -kek-env"},
		{"serve without users", []string{"serve"}, 2, "at least one -user"},
		{"serve requiring a ring on an empty store", []string{"serve", "-user", "a:b", "-require-key-ring"}, 1, "holds no key ring"},
		{"serve bad user", []string{"serve", "-user", "alice"}, 2, "NAME:PASSWORD"},
		{"serve bad policy", []string{"serve", "-user", "a:b", "-server-policy", "uptime>="}, 2, "bad -server-policy"},
		{"serve bad suite", []string{"serve", "-user", "a:b", "-suite", "rot13"}, 1, "rot13"},
		{"serve port taken", []string{"serve", "-user", "a:b", "-addr", strings.TrimPrefix(proxied, "http://")}, 1, "address already in use"},
		{"serve tls half", []string{"serve", "-user", "a:b", "-tls-cert", "c.pem"}, 2, "go together"},
	}
	for _, tt := range badStore {
		t.Run(tt.name, func(t *testing.T) {
			fails(t, runOpts{}, tt.code, tt.want, tt.args...)
		})
	}
	// The KEK from an environment variable works like the file.
	kb, _ := os.ReadFile(kek)
	r = ok(t, runOpts{env: []string{"DYNKEY_KEK=" + strings.TrimSpace(string(kb))}}, "identity", "-store", storeURL, "-kek-env", "DYNKEY_KEK")
	if !strings.Contains(r.stdout, s.identity) {
		t.Fatalf("identity via env: %s", r.stdout)
	}
}

func keysList(t *testing.T, st []string) keysListJSON {
	t.Helper()
	r := ok(t, runOpts{}, append([]string{"keys", "list", "-json"}, st...)...)
	var list keysListJSON
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
		t.Fatalf("%v: %s", err, r.stdout)
	}
	return list
}

// keyStates returns the state of every key of the ring by id.
func keyStates(t *testing.T, st []string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, k := range keysList(t, st).Keys {
		out[k.ID] = k.State
	}
	return out
}

// rawRing returns the stored ring record of a SQLite file as text.
func rawRing(t *testing.T, db string) string {
	t.Helper()
	st, err := openStore(context.Background(), "sqlite://"+db, false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	e, err := st.Get(context.Background(), ringStoreKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(e.Value)
}

// sealedSecrets returns every sealed secret of a stored ring.
func sealedSecrets(t *testing.T, raw string) [][]byte {
	t.Helper()
	var rec struct {
		SealedIdentity []byte `json:"sealed_identity"`
		Keys           []struct {
			SealedPrivate  []byte `json:"sealed_private"`
			SealedTokenKey []byte `json:"sealed_token_key"`
		} `json:"keys"`
		TokenKeys []struct {
			Sealed []byte `json:"sealed"`
		} `json:"token_keys"`
	}
	if err := json.Unmarshal([]byte(raw), &rec); err != nil {
		t.Fatal(err)
	}
	out := [][]byte{rec.SealedIdentity}
	for _, k := range rec.Keys {
		out = append(out, k.SealedPrivate, k.SealedTokenKey)
	}
	for _, tk := range rec.TokenKeys {
		out = append(out, tk.Sealed)
	}
	return slices.DeleteFunc(out, func(b []byte) bool { return len(b) == 0 })
}

func ringKeyHasPrivate(t *testing.T, raw, id string) bool {
	t.Helper()
	var rec struct {
		Keys []struct {
			ID            string `json:"id"`
			SealedPrivate []byte `json:"sealed_private"`
		} `json:"keys"`
	}
	if err := json.Unmarshal([]byte(raw), &rec); err != nil {
		t.Fatal(err)
	}
	for _, k := range rec.Keys {
		if k.ID == id {
			return len(k.SealedPrivate) > 0
		}
	}
	return false // deleted with its private key
}

func TestVersion(t *testing.T) {
	r := ok(t, runOpts{}, "version")
	if !regexp.MustCompile(`^dynkey \S+, go1\.\d+`).MatchString(r.stdout) {
		t.Fatalf("version: %q", r.stdout)
	}
}

func TestCompletion(t *testing.T) {
	r := ok(t, runOpts{}, "completion", "bash")
	for _, want := range []string{"complete -F _dynkey dynkey", "kek", `keys) words="destroy list rotate"`} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("bash completion lacks %q", want)
		}
	}
	if sh, err := exec.LookPath("bash"); err == nil {
		// The script is valid bash.
		cmd := exec.Command(sh, "-n")
		cmd.Stdin = strings.NewReader(r.stdout)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("bash -n: %v\n%s", err, out)
		}
	}
	fails(t, runOpts{}, 2, "unsupported shell", "completion", "fish")
}

// TestServeTLS serves https with a self-signed certificate on the memory
// store: call trusts the server's identity on first use over TLS (no
// -identity needed), and refuses a certificate it cannot verify.
func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := selfSigned(t, dir)
	s := startServe(t, "-user", "alice:pw", "-tls-cert", certFile, "-tls-key", keyFile)
	if !strings.HasPrefix(s.url, "https://") {
		t.Fatalf("url %s", s.url)
	}
	r := ok(t, runOpts{}, "call", "-v", "-u", "alice:pw", "-cacert", certFile, "-d", "over tls", s.url+echoPath)
	if r.stdout != "over tls\n" || !strings.Contains(r.stderr, "(not pinned)") {
		t.Fatalf("stdout %q\nstderr %s", r.stdout, r.stderr)
	}
	ok(t, runOpts{}, "call", "-u", "alice:pw", "-cacert", certFile, "-identity", s.identity, "-d", "x", s.url+echoPath)
	fails(t, runOpts{}, 1, "certificate", "call", "-u", "alice:pw", "-d", "x", s.url+echoPath)
	fails(t, runOpts{}, 1, "no PEM certificate", "call", "-u", "alice:pw", "-cacert", writeFile(t, dir, "junk.pem", []byte("junk")), "-d", "x", s.url+echoPath)
	s.stop(t)
}

// selfSigned writes a certificate for 127.0.0.1 and its key, as PEM.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "dynkey test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = writeFile(t, dir, "cert.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	keyFile = writeFile(t, dir, "key.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}))
	return certFile, keyFile
}

// TestTamperedRing: someone who can write the store but has no KEK changes
// the ring (here: a key's primary_since, which keys list prints). Every
// command that reads the ring refuses it instead of printing or using it.
func TestTamperedRing(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "dynkey.db")
	kekFile := filepath.Join(dir, "kek")
	ok(t, runOpts{}, "kek", "new", "-o", kekFile)
	kb, _ := os.ReadFile(kekFile)
	kek, err := decodeKEK(kb)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := sqlite.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	m, err := middleware.New(middleware.Options{Store: st, Authenticator: refuseLogins, KeyEncryptionKey: kek, MaintainInterval: -1, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	st.Close()
	args := []string{"-store", "sqlite://" + db, "-kek-file", kekFile}
	ok(t, runOpts{}, append([]string{"keys", "list"}, args...)...)

	st, err = sqlite.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	e, err := st.Get(ctx, ringStoreKey)
	if err != nil {
		t.Fatal(err)
	}
	tampered := regexp.MustCompile(`"primary_since":\d+`).ReplaceAll(e.Value, []byte(`"primary_since":1000`))
	if bytes.Equal(tampered, e.Value) {
		t.Fatal("nothing to tamper with")
	}
	if _, err := st.CompareAndSwap(ctx, ringStoreKey, e.Version, tampered, e.Expires); err != nil {
		t.Fatal(err)
	}
	st.Close()

	for _, cmd := range [][]string{{"keys", "list"}, {"keys", "list", "-json"}, {"identity"}, {"keys", "rotate"}} {
		r := fails(t, runOpts{}, 1, "stored record refused", append(cmd, args...)...)
		if strings.Contains(r.stdout, "1970-01-01") || strings.Contains(r.stdout, `"primary_since": 1000`) {
			t.Fatalf("%v printed the tampered ring:\n%s", cmd, r.stdout)
		}
	}
	if got := rawRing(t, db); got != string(tampered) {
		t.Fatal("a refused command changed the ring")
	}
}

// TestServeSuite: serve and call agree on a suite other than the default;
// a client expecting another suite refuses the server's (no downgrade).
func TestServeSuite(t *testing.T) {
	s := startServe(t, "-user", "alice:pw", "-suite", "pq-xwing")
	r := ok(t, runOpts{}, "call", "-v", "-suite", "pq-xwing", "-u", "alice:pw", "-identity", s.identity, "-d", "post-quantum", s.url+echoPath)
	if r.stdout != "post-quantum\n" || !strings.Contains(r.stderr, "envelope suite pq-xwing") {
		t.Fatalf("stdout %q\nstderr %s", r.stdout, r.stderr)
	}
	fails(t, runOpts{}, 1, "suite", "call", "-u", "alice:pw", "-identity", s.identity, "-d", "x", s.url+echoPath)
	s.stop(t)
}

// canList reports whether the store at url implements store.Lister, which
// kek rotate needs.
func canList(t *testing.T, url string) bool {
	t.Helper()
	st, err := storeurl.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	_, ok := st.(store.Lister)
	return ok
}

// withParam adds a query parameter to a URL.
func withParam(u, kv string) string {
	if strings.Contains(u, "?") {
		return u + "&" + kv
	}
	return u + "?" + kv
}

// TestServerStores: the same operator's path on Redis and PostgreSQL, named
// by URL: serve, call, stop, then list and rotate keys on the same store.
// Their stores cannot list their records, so kek rotate says so and changes
// nothing.
func TestServerStores(t *testing.T) {
	name := fmt.Sprintf("cli%d", time.Now().UnixNano())
	stores := []struct {
		name string
		url  func(t *testing.T) string
	}{
		{"redis", func(t *testing.T) string { return withParam(testservers.RedisURL(t), "prefix="+name+":") }},
		{"postgres", func(t *testing.T) string { return withParam(testservers.PostgresURL(t), "schema="+name) }},
	}
	for _, tt := range stores {
		t.Run(tt.name, func(t *testing.T) {
			storeURL := tt.url(t)
			dir := t.TempDir()
			kek := filepath.Join(dir, "kek")
			ok(t, runOpts{}, "kek", "new", "-o", kek)
			st := []string{"-store", storeURL, "-kek-file", kek}
			fails(t, runOpts{}, 1, "holds no key ring", append([]string{"keys", "list"}, st...)...)

			s := startServe(t, append([]string{"-user", "alice:pw"}, st...)...)
			r := ok(t, runOpts{}, "call", "-u", "alice:pw", "-identity", s.identity, "-d", "on "+tt.name, s.url+echoPath)
			if r.stdout != "on "+tt.name+"\n" {
				t.Fatalf("stdout %q", r.stdout)
			}
			s.stop(t)

			if r := ok(t, runOpts{}, append([]string{"identity"}, st...)...); !strings.Contains(r.stdout, s.identity) {
				t.Fatalf("identity: %s", r.stdout)
			}
			ok(t, runOpts{}, append([]string{"keys", "rotate"}, st...)...)
			states := keyStates(t, st)
			if len(states) != 2 {
				t.Fatalf("after rotate: %v", states)
			}
			other := filepath.Join(dir, "other")
			ok(t, runOpts{}, "kek", "new", "-o", other)
			rotate := []string{"kek", "rotate", "-store", storeURL, "-old-kek-file", kek, "-new-kek-file", other}
			if !canList(t, storeURL) {
				fails(t, runOpts{}, 1, "cannot list", rotate...)
				if got := keyStates(t, st); fmt.Sprint(got) != fmt.Sprint(states) {
					t.Fatalf("the refused kek rotate changed the ring: %v, then %v", states, got)
				}
				return
			}
			ok(t, runOpts{}, rotate...)
			fails(t, runOpts{}, 1, "opening the key ring", append([]string{"keys", "list"}, st...)...)
			if got := keyStates(t, []string{"-store", storeURL, "-kek-file", other}); fmt.Sprint(got) != fmt.Sprint(states) {
				t.Fatalf("the ring changed in the KEK rotation: %v, then %v", states, got)
			}
		})
	}
	kek := filepath.Join(t.TempDir(), "kek")
	ok(t, runOpts{}, "kek", "new", "-o", kek)
	fails(t, runOpts{}, 2, "bad store URL", "keys", "list", "-store", "redis://[::1", "-kek-file", kek)
	r := fails(t, runOpts{}, 1, "opening the store", "keys", "list", "-store", "postgres://alice:hunter2@127.0.0.1:1/db?connect_timeout=2", "-kek-file", kek)
	if strings.Contains(r.stderr, "hunter2") {
		t.Fatalf("the error shows the password: %s", r.stderr)
	}
}

// TestBench runs `dynkey bench` for a short, bounded run of two cases: the
// report ends with the ratios line in its fixed format, and -json writes a
// report. A bad case name is a clear error.
func TestBench(t *testing.T) {
	if testing.Short() {
		t.Skip("runs servers under load")
	}
	dir := t.TempDir()
	js := filepath.Join(dir, "bench.json")
	r := ok(t, runOpts{}, "bench", "-duration", "1s", "-rounds", "1", "-c", "2", "-nopin",
		"-cases", "plain-gin,floor-ecies-x25519", "-json", js)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	last := lines[len(lines)-1]
	if !regexp.MustCompile(`^ratios: server_path_vs_floor=[0-9]+\.[0-9]{2} per_message_vs_jose=[0-9]+\.[0-9]{2} sqlite_vs_memory=[0-9]+\.[0-9]{2} epoch_vs_plain=[0-9]+\.[0-9]{2}$`).MatchString(last) {
		t.Fatalf("last line %q is not the ratios line\n%s", last, r.stdout)
	}
	if !strings.Contains(r.stdout, "plain-gin") || !strings.Contains(r.stdout, "floor-ecies-x25519") {
		t.Fatalf("cases missing from the report:\n%s", r.stdout)
	}
	if b, err := os.ReadFile(js); err != nil || !json.Valid(b) {
		t.Fatalf("-json: %v, valid=%v", err, json.Valid(b))
	}
	fails(t, runOpts{}, 1, "no-such-case", "bench", "-duration", "1s", "-cases", "no-such-case")
}

// TestServeMetrics: with -metrics, serve exposes Prometheus metrics and the
// health endpoints on their own address; a call shows up in the counters.
func TestServeMetrics(t *testing.T) {
	s := startServe(t, "-store", "memory:", "-user", "alice:pw", "-metrics", "127.0.0.1:0")
	m := regexp.MustCompile(`operations on (http://\S+):`).FindStringSubmatch(s.stdout.String())
	if m == nil {
		t.Fatalf("no operations address in:\n%s", s.stdout)
	}
	ok(t, runOpts{}, "call", "-u", "alice:pw", "-identity", s.identity, "-d", "x", s.url+echoPath)
	get := func(path string) (int, string) {
		resp, err := http.Get(m[1] + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("/metrics")
	if code != http.StatusOK || !strings.Contains(body, `dynkey_login_attempts_total{outcome="success"} 1`) ||
		!strings.Contains(body, "dynkey_requests_total") {
		t.Fatalf("/metrics %d:\n%s", code, body)
	}
	if code, body := get("/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz %d %s", code, body)
	}
	if code, _ := get("/livez"); code != http.StatusOK {
		t.Fatalf("/livez %d", code)
	}
	if strings.Contains(body, "alice") {
		t.Fatal("a metric names the user")
	}
}
