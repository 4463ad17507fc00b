package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var summaryRE = regexp.MustCompile(`^summary: requests=\d+ failed=0 client_rotations=([2-9]|\d\d+) server_rotations=([2-9]|\d\d+)$`)

func runDemo(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	err := run(ctx, args, &out)
	return out.String(), err
}

func lines(s string) []string { return strings.Split(strings.TrimRight(s, "\n"), "\n") }

func TestQuickstart(t *testing.T) {
	out, err := runDemo(t, "-duration", "3s", "-client-rotate", "500ms", "-server-rotate", "800ms")
	t.Log("\n" + out)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	ls := lines(out)
	last := ls[len(ls)-1]
	if !summaryRE.MatchString(last) {
		t.Fatalf("last line %q does not match %v", last, summaryRE)
	}
	if n := strings.Count(out, "summary:"); n != 1 {
		t.Errorf("%d summary lines", n)
	}
	for _, want := range []string{
		"[client] logged in as alice",
		"[client] rotated its own key",
		"[server] rotated its key pair",
		"[client] learned the new server key",
		"[client] POST /api/echo -> 200 ",
		"[client] GET /api/time?tz=UTC -> 200 ",
		"(plaintext visible: false)",
		`-> 415 application/problem+json code="not-encrypted"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(out, "FAILED") || strings.Contains(out, "[client] WARN") {
		t.Errorf("output reports a failure or a client warning")
	}
}

// With several concurrent loops, fast rotations on both sides and a second
// suite, no request may fail either.
func TestQuickstartConcurrentFastRotations(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	out, err := runDemo(t, "-suite", "ecies-p256", "-workers", "4", "-pace", "0",
		"-duration", "3s", "-client-rotate", "100ms", "-server-rotate", "300ms")
	ls := lines(out)
	last := ls[len(ls)-1]
	if err != nil || !summaryRE.MatchString(last) || strings.Contains(out, "FAILED") {
		t.Fatalf("run: %v; last line %q\n%s", err, last, out)
	}
}

// A demo that cannot show two rotations of each side says so in the summary
// and fails.
func TestQuickstartTooShortFails(t *testing.T) {
	out, err := runDemo(t, "-duration", "300ms", "-server-rotate", "1h", "-client-rotate", "1h")
	if !errors.Is(err, errDemoFailed) {
		t.Fatalf("err = %v, want errDemoFailed", err)
	}
	ls := lines(out)
	last := ls[len(ls)-1]
	if !regexp.MustCompile(`^summary: requests=\d+ failed=0 client_rotations=0 server_rotations=0$`).MatchString(last) {
		t.Fatalf("last line %q", last)
	}
}

func TestQuickstartFlags(t *testing.T) {
	if _, err := runDemo(t, "-duration", "0s"); err == nil {
		t.Error("-duration 0s accepted")
	}
	if _, err := runDemo(t, "extra"); err == nil {
		t.Error("extra argument accepted")
	}
	if _, err := runDemo(t, "-suite", "no-such-suite"); err == nil || errors.Is(err, errDemoFailed) {
		t.Errorf("unknown suite: err = %v", err)
	}
	if _, err := runDemo(t, "-h"); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: err = %v", err)
	}
}

// lockedWriter is an output buffer the test reads while the demo writes.
type lockedWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// With -metrics the demo serves Prometheus metrics while it runs; its
// summary line is the same.
func TestQuickstartMetrics(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out := &lockedWriter{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-metrics", "127.0.0.1:0", "-duration", "3s", "-client-rotate", "500ms", "-server-rotate", "800ms"}, out)
	}()
	addrRE := regexp.MustCompile(`operations on (http://127\.0\.0\.1:\d+)`)
	var base string
	for base == "" {
		select {
		case err := <-done:
			t.Fatalf("run ended before serving metrics: %v\n%s", err, out)
		case <-time.After(10 * time.Millisecond):
		}
		if m := addrRE.FindStringSubmatch(out.String()); m != nil {
			base = m[1]
		}
	}
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}
	// Wait until the client has logged in and called.
	var metrics string
	require.Eventually(t, func() bool {
		_, metrics = get("/metrics")
		return strings.Contains(metrics, `dynkey_login_attempts_total{outcome="success"} 1`) &&
			regexp.MustCompile(`dynkey_open_seconds_count\{suite="ecies-x25519"\} [1-9]`).MatchString(metrics)
	}, 20*time.Second, 50*time.Millisecond)
	require.Contains(t, metrics, `dynkey_store_operation_seconds_count{op="mark_seen"}`)
	require.Contains(t, metrics, `dynkey_server_keys{state="primary",suite="ecies-x25519"} 1`)
	status, body := get("/readyz")
	require.Equal(t, http.StatusOK, status, body)
	status, body = get("/keys")
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, body, `"state":"primary"`)
	require.NotContains(t, metrics, "correct horse battery staple")

	require.NoError(t, <-done)
	ls := lines(out.String())
	require.Regexp(t, summaryRE, ls[len(ls)-1])
}
