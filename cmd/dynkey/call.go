package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dynkey/dynkey/client"
	"github.com/dynkey/dynkey/wire"
)

// passwordEnv is the environment variable call reads the password from
// when -u gives none.
const passwordEnv = "DYNKEY_PASSWORD"

func runCall(e *env, args []string) error {
	fs := newFlags(e, "dynkey call", "-u USER[:PASSWORD] [-identity KEY | -insecure-tofu] [-X METHOD] [-d DATA|@FILE|@-] [-H NAME:VALUE]… [-v] [-i] URL", `
Makes one encrypted request to a dynkey server, like curl: fetches and
verifies the key directory, logs in (the password travels sealed to the
server key), seals the request, and prints the decrypted, authenticated
response body to stdout. The password comes from -u USER:PASSWORD or, better
(it stays out of the process list and shell history), from $`+passwordEnv+`.

Trust in the server: pin its identity key with -identity (hex or base64url;
"dynkey serve" and "dynkey identity" print it). Without it the identity is
taken from the first directory fetched, which the client only allows over
https, or over http with -insecure-tofu (loopback demos only: anyone on the
path could answer instead).

-rotate rotates the client key (a heartbeat carrying the new key and its
proof) before the request. -v prints each protocol step to stderr: the directory fetched (epoch, keys),
the login, every envelope sent (suite, key ids, message id), every response
and refusal, rotations and recoveries, and the key ids in use at the end.
The exit status is 0 for a 2xx response, 1 otherwise (the body, a problem
for a refusal, is still printed).`)
	user := fs.String("u", "", "USER or USER:PASSWORD (password otherwise from $"+passwordEnv+")")
	identity := fs.String("identity", "", "pinned server identity key, hex or base64url")
	tofu := fs.Bool("insecure-tofu", false, "over http without -identity, trust the first directory fetched (loopback demos only)")
	method := fs.String("X", "", "HTTP method; default GET, or POST with -d")
	data := fs.String("d", "", "request body: DATA, @FILE, or @- for stdin")
	var headers stringList
	fs.Var(&headers, "H", "request header NAME:VALUE (repeatable; travels in clear, only the body and its content type are sealed)")
	verbose := fs.Bool("v", false, "print each protocol step to stderr")
	include := fs.Bool("i", false, "print the response status and headers before the body")
	suite := fs.String("suite", "ecies-x25519", "algorithm suite the client accepts (no downgrade)")
	cacert := fs.String("cacert", "", "PEM file of CA certificates to trust for https (e.g. the demo server's self-signed certificate)")
	timeout := fs.Duration("timeout", 30*time.Second, "time limit for the whole call")
	rotate := fs.Bool("rotate", false, "rotate the client key before the request (login, then a heartbeat carrying the rotation), to see it with -v")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos, 1, 1, "URL"); err != nil {
		return err
	}
	u, err := url.Parse(pos[0])
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usagef("bad URL %q: http://HOST/PATH or https://HOST/PATH expected", pos[0])
	}
	if *user == "" {
		return usagef("dynkey call: missing -u USER")
	}
	name, password, hasPW := strings.Cut(*user, ":")
	if !hasPW {
		password = e.getenv(passwordEnv)
	}
	if name == "" || password == "" {
		return usagef("dynkey call: no password: give -u USER:PASSWORD or set $%s", passwordEnv)
	}
	var pinned ed25519.PublicKey
	if *identity != "" {
		if *tofu {
			return usagef("dynkey call: -identity and -insecure-tofu exclude each other")
		}
		if pinned, err = parseIdentity(*identity); err != nil {
			return usagef("-identity: %v", err)
		}
	}
	var body []byte
	switch {
	case *data == "@-":
		body, err = io.ReadAll(io.LimitReader(e.stdin, maxInput+1))
	case strings.HasPrefix(*data, "@"):
		body, err = os.ReadFile((*data)[1:])
	default:
		body = []byte(*data)
	}
	if err != nil {
		return fmt.Errorf("reading -d: %w", err)
	}
	hasBody := *data != ""
	if *method == "" {
		*method = http.MethodGet
		if hasBody {
			*method = http.MethodPost
		}
	}
	*method = strings.ToUpper(*method)
	hdr := http.Header{}
	for _, h := range headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return usagef("bad -H %q: NAME:VALUE expected", h)
		}
		hdr.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	if hasBody && hdr.Get("Content-Type") == "" {
		hdr.Set("Content-Type", guessContentType(body))
	}

	base := &http.Transport{Proxy: http.ProxyFromEnvironment}
	if *cacert != "" {
		pem, err := os.ReadFile(*cacert)
		if err != nil {
			return err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("-cacert %s: no PEM certificate", *cacert)
		}
		base.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	defer base.CloseIdleConnections()
	var tr http.RoundTripper = base
	var trace *tracer
	if *verbose {
		trace = &tracer{w: e.stderr, next: base, pinned: pinned}
		tr = trace
	}
	cfg := client.Config{
		BaseURL:                           u.Scheme + "://" + u.Host,
		Username:                          name,
		Password:                          password,
		Suite:                             *suite,
		IdentityKey:                       pinned,
		InsecureTrustOnFirstUseWithoutTLS: *tofu,
		HeartbeatInterval:                 -1,
		Transport:                         tr,
		Logger:                            discardLogger(),
	}
	if *verbose {
		cfg.OnEvent = func(ev client.Event) { trace.printf("event %s: %s", ev.Kind, ev.Detail) }
		cfg.Logger = stderrLogger(e, -4)
	}
	c, err := client.New(cfg)
	if errors.Is(err, client.ErrFirstContactWithoutTLS) {
		return fmt.Errorf("%w\n  pin the server's identity with -identity KEY (dynkey serve prints it), use https, or, on loopback only, -insecure-tofu", err)
	}
	if err != nil {
		return err
	}
	defer c.Close()

	ctx, cancel := context.WithTimeout(e.ctx, *timeout)
	defer cancel()
	if *rotate {
		if err := c.Login(ctx); err != nil {
			return fmt.Errorf("login: %w", err)
		}
		c.RotateNow()
		if err := c.Heartbeat(ctx); err != nil {
			return fmt.Errorf("heartbeat carrying the rotation: %w", err)
		}
	}
	var rb io.Reader
	if hasBody {
		rb = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, *method, u.String(), rb)
	if err != nil {
		return usagef("bad request: %v", err)
	}
	req.Header = hdr
	resp, err := c.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", *method, u.Redacted(), err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if *verbose {
		if id, ok := c.ServerKeyID(); ok {
			trace.printf("server key in use: %s", id)
		}
		if id, ok := c.ClientKeyID(); ok {
			trace.printf("client key in use: %s", id)
		}
		s := c.Stats()
		trace.printf("stats: requests=%d logins=%d client_rotations=%d server_key_changes=%d recoveries=%d", s.Requests, s.Logins, s.ClientRotations, s.ServerKeyChanges, s.Recoveries)
	}
	if *include {
		fmt.Fprintf(e.stdout, "%s %s\n", resp.Proto, resp.Status)
		keys := make([]string, 0, len(resp.Header))
		for k := range resp.Header {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			for _, v := range resp.Header[k] {
				fmt.Fprintf(e.stdout, "%s: %s\n", k, v)
			}
		}
		fmt.Fprintln(e.stdout)
	}
	e.stdout.Write(out)
	if len(out) > 0 && out[len(out)-1] != '\n' && isText(resp.Header.Get("Content-Type")) {
		fmt.Fprintln(e.stdout)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		if prob, ok := wire.ParseProblem(out); ok {
			return fmt.Errorf("%s %s: refused with %d %s: %s", *method, u.Redacted(), resp.StatusCode, prob.Code, prob.Detail)
		}
		return fmt.Errorf("%s %s: HTTP %s", *method, u.Redacted(), resp.Status)
	}
	return nil
}

func guessContentType(b []byte) string {
	if json.Valid(b) {
		return "application/json"
	}
	return http.DetectContentType(b)
}

func isText(ct string) bool {
	return strings.HasPrefix(ct, "text/") || strings.Contains(ct, "json") || strings.Contains(ct, "xml")
}

// tracer prints each HTTP exchange of the client: the protocol steps that
// -v shows.
type tracer struct {
	w      io.Writer
	next   http.RoundTripper
	pinned ed25519.PublicKey
	mu     sync.Mutex
	start  time.Time
}

func (t *tracer) printf(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.start.IsZero() {
		t.start = time.Now()
	}
	fmt.Fprintf(t.w, "* [%6.1fms] %s\n", float64(time.Since(t.start).Microseconds())/1000, fmt.Sprintf(format, args...))
}

func (t *tracer) RoundTrip(req *http.Request) (*http.Response, error) {
	var reqBody []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		reqBody = b
		req.Body = io.NopCloser(bytes.NewReader(b))
	}
	step := "request"
	switch req.URL.Path {
	case wire.PathKeys:
		step = "directory fetch"
	case wire.PathLogin:
		step = "login"
	case wire.PathHeartbeat:
		step = "heartbeat"
	}
	env, where := reqBody, ""
	if h := req.Header.Get(wire.EnvelopeHeader); h != "" {
		if b, err := base64.RawURLEncoding.DecodeString(h); err == nil {
			env, where = b, " in the "+wire.EnvelopeHeader+" header"
		}
	}
	t.printf("> %s %s (%s)%s%s", req.Method, req.URL.RequestURI(), step, describeEnvelope(env), where)
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		t.printf("< transport error: %v", err)
		return nil, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	ct := resp.Header.Get("Content-Type")
	line := fmt.Sprintf("< %d %s, %d bytes", resp.StatusCode, ct, len(b))
	switch {
	case strings.HasPrefix(ct, "application/problem+json"):
		if p, ok := wire.ParseProblem(b); ok {
			line += fmt.Sprintf(": refused, code %s (%s)", p.Code, p.Detail)
		}
	case req.URL.Path == wire.PathKeys && resp.StatusCode == http.StatusOK:
		line += t.describeDirectory(b)
	case resp.Header.Get(wire.ResponseHeader) != "":
		line += " (sealed response in the " + wire.ResponseHeader + " header, opened by the client)"
	case ct == wire.MediaType:
		line += " (sealed response, opened by the client)"
	}
	t.printf("%s", line)
	return resp, nil
}

func (t *tracer) describeDirectory(b []byte) string {
	var sd wire.SignedDirectory
	if json.Unmarshal(b, &sd) != nil || len(sd.Identity) != ed25519.PublicKeySize {
		return ""
	}
	trusted := ed25519.PublicKey(sd.Identity)
	how := "identity " + hex.EncodeToString(sd.Identity) + " (not pinned)"
	if t.pinned != nil {
		trusted, how = t.pinned, "signed by the pinned identity"
	}
	d, err := sd.Verify(trusted)
	if err != nil {
		return ": directory REJECTED: " + err.Error()
	}
	var keys []string
	for _, k := range d.Keys {
		keys = append(keys, k.ID+" "+k.Status)
	}
	return fmt.Sprintf(": directory epoch %d, suite %s, %s; keys: %s", d.Epoch, d.Suite, how, strings.Join(keys, ", "))
}

func describeEnvelope(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	r, err := wire.ParseRequest(b)
	if err != nil {
		return fmt.Sprintf(", %d bytes", len(b))
	}
	client := hex.EncodeToString(r.ClientKey)
	if r.Type == wire.TypeLogin {
		client = wire.ComputeKeyID(r.Suite, r.ClientKey).String() + " (public key sent)"
	}
	return fmt.Sprintf(": envelope suite %s, sealed to server key %s, client key %s, message id %s, %d bytes",
		r.Suite, r.ServerKeyID, client, hex.EncodeToString(r.MessageID[:]), len(b))
}
