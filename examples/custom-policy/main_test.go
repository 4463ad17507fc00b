package main

import (
	"bytes"
	"context"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dynkey/dynkey/policy"
)

var summaryRE = regexp.MustCompile(`^summary: requests=[1-9]\d* failed=0 client_rotations=([2-9]|\d\d+) server_rotations=\d+$`)

func TestDemo(t *testing.T) {
	goroutines := runtime.NumGoroutine()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	start := time.Now()
	err := run(ctx, &out)
	t.Logf("ran in %v:\n%s", time.Since(start).Round(time.Millisecond), out.String())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	if last := lines[len(lines)-1]; !summaryRE.MatchString(last) {
		t.Fatalf("last line %q does not match %v", last, summaryRE)
	}
	if n := strings.Count(out.String(), "summary:"); n != 1 {
		t.Errorf("%d summary lines", n)
	}
	for _, want := range []string{
		"[demo] network change Wi-Fi -> cellular: address 10.0.0.5 -> 192.168.1.7",
		"[client] rotated its key (address now 192.168.1.7)",
		"[demo] network change cellular -> Wi-Fi: address 192.168.1.7 -> 10.0.0.5",
		"[client] rotated its key (address now 10.0.0.5)",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	for _, bad := range []string{"FAILED", "level=WARN", "level=ERROR"} {
		if strings.Contains(out.String(), bad) {
			t.Errorf("output contains %q", bad)
		}
	}

	// Everything run started has stopped (goroutines of the test framework
	// and of the runtime may come and go: allow them a moment).
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > goroutines && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > goroutines {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines before run, %d after:\n%s", goroutines, n, buf[:runtime.Stack(buf, true)])
	}
}

// simAddr is a switchable simulated address.
type simAddr struct{ v atomic.Value }

func newSimAddr(s string) *simAddr  { a := &simAddr{}; a.v.Store(s); return a }
func (a *simAddr) get() string      { return a.v.Load().(string) }
func (a *simAddr) set(s string)     { a.v.Store(s) }
func facts(key string) policy.Facts { return policy.Facts{Now: time.Now(), KeyID: []byte(key)} }

func TestAddressPolicy(t *testing.T) {
	addr := newSimAddr(wifi)
	p := rotateOnAddressChange(addr.get)
	if got := p.String(); got != "network-address-change" {
		t.Errorf("String() = %q", got)
	}
	steps := []struct {
		addr, key string
		want      policy.Decision
	}{
		{wifi, "key1", policy.Keep},       // first seen on Wi-Fi
		{wifi, "key1", policy.Keep},       // same address
		{cellular, "key1", policy.Rotate}, // the address changed
		{cellular, "key1", policy.Rotate}, // still the old key: still rotate
		{cellular, "key2", policy.Keep},   // the new key, at the new address
		{cellular, "key2", policy.Keep},
		{wifi, "key2", policy.Rotate}, // changed again
		{wifi, "key3", policy.Keep},
	}
	for i, s := range steps {
		addr.set(s.addr)
		if got := p.Decide(facts(s.key)); got != s.want {
			t.Errorf("step %d (%s, %s): %v, want %v", i, s.addr, s.key, got, s.want)
		}
	}
	// Combined with a built-in, either rule rotates.
	both := policy.AnyOf(p, policy.MustParse("offset_growth>=1h"))
	if got := both.String(); got != "network-address-change or offset_growth>=1h" {
		t.Errorf("String() = %q", got)
	}
	if got := both.Decide(facts("key3")); got != policy.Keep {
		t.Errorf("combined, same address: %v", got)
	}
	if got := both.Decide(policy.Facts{KeyID: []byte("key3"), OffsetGrowth: 2 * time.Hour}); got != policy.Rotate {
		t.Errorf("combined, offset grew: %v", got)
	}
}

// The policy keeps its own copy of the key id: a caller reusing its buffer
// does not change what the policy remembers.
func TestAddressPolicyCopiesKeyID(t *testing.T) {
	addr := newSimAddr(wifi)
	p := rotateOnAddressChange(addr.get)
	buf := []byte("key1")
	p.Decide(policy.Facts{KeyID: buf})
	copy(buf, "key2")
	addr.set(cellular)
	if got := p.Decide(policy.Facts{KeyID: []byte("key1")}); got != policy.Rotate {
		t.Errorf("Decide = %v, want rotate", got)
	}
}

// Decide is safe for concurrent use (run with -race): heartbeats and
// requests ask at once while the address changes.
func TestAddressPolicyConcurrent(t *testing.T) {
	addr := newSimAddr(wifi)
	p := rotateOnAddressChange(addr.get)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			addr.set([]string{wifi, cellular}[i%2])
			time.Sleep(50 * time.Microsecond)
		}
	})
	var workers sync.WaitGroup
	for w := range 8 {
		workers.Go(func() {
			for i := range 2000 {
				key := []string{"key1", "key2"}[(w+i/100)%2]
				if d := p.Decide(facts(key)); d != policy.Keep && d != policy.Rotate {
					t.Errorf("Decide = %v", d)
					return
				}
			}
		})
	}
	workers.Wait()
	close(stop)
	wg.Wait()

	// Still coherent afterwards.
	addr.set(wifi)
	p.Decide(facts("key9"))
	if got := p.Decide(facts("key9")); got != policy.Keep {
		t.Errorf("same address after the storm: %v", got)
	}
	addr.set(cellular)
	if got := p.Decide(facts("key9")); got != policy.Rotate {
		t.Errorf("changed address after the storm: %v", got)
	}
}
