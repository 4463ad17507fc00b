package e2e

// Tests of the request path's limits and of smaller defects (issue 7,
// items 6 and 8, server side): oversized and trickled bodies, wrong
// methods, rotations back to an old key, the no-downgrade rule inside a
// session, concurrent rotations, and the sealed content type.

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/crypto"
	"github.com/dynkey/dynkey/middleware"
	"github.com/dynkey/dynkey/policy"
	"github.com/dynkey/dynkey/store"
	"github.com/dynkey/dynkey/store/memory"
	"github.com/dynkey/dynkey/wire"
)

// rawHTTP sends head (request line and headers, without the blank line
// that ends them) on a fresh TCP connection and returns the first status
// line the server sends, with the connection.
func rawHTTP(t *testing.T, base, head string) (string, net.Conn) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	_, err = io.WriteString(conn, head+"\r\n\r\n")
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	line, err := bufio.NewReader(conn).ReadString('\n')
	require.NoError(t, err)
	return strings.TrimSpace(line), conn
}

// TestOversizedContentLengthRefusedUnread: a Content-Length over the limit
// is answered with "too-large" before the body is read; with
// "Expect: 100-continue" the server never sends "100 Continue", so the
// client never sends the body.
//
// Defense exercised: middleware/open.go readEnvelope, the Content-Length
// check before any read. Verified: without it the first line was
// "HTTP/1.1 100 Continue" and the test failed.
func TestOversizedContentLengthRefusedUnread(t *testing.T) {
	clk := newClock()
	o := baseOptions(t, clk, memory.New())
	o.MaxBodySize = 4096
	s := startServer(t, o)
	for _, path := range []string{"/api/echo", wire.PathLogin, wire.PathHeartbeat} {
		for _, expect := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s expect=%v", path, expect), func(t *testing.T) {
				head := "POST " + path + " HTTP/1.1\r\nHost: dynkey.test\r\nContent-Type: application/dynkey\r\n" +
					"Content-Length: 1000000000"
				if expect {
					head += "\r\nExpect: 100-continue"
				}
				line, _ := rawHTTP(t, s.URL, head)
				require.Equal(t, "HTTP/1.1 413 Request Entity Too Large", line)
			})
		}
	}
	require.Zero(t, s.app.calls.Load())
}

// TestTricklingBodiesCutOff: sixteen connections that trickle their bodies
// one byte at a time are answered and closed within a bounded time (the
// read timeout plus scheduling), not read forever.
//
// Defense exercised: middleware/open.go readEnvelope, the read deadline
// set with http.ResponseController (Options.ReadTimeout). Verified:
// without it every connection was still open at the 8 s bound and the test
// failed.
func TestTricklingBodiesCutOff(t *testing.T) {
	clk := newClock()
	o := baseOptions(t, clk, memory.New())
	o.ReadTimeout = 300 * time.Millisecond
	s := startServer(t, o)
	const n = 16
	const bound = 8 * time.Second
	paths := []string{"/api/echo", wire.PathLogin, wire.PathHeartbeat}
	var wg sync.WaitGroup
	results := make([]error, n)
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = trickle(s.URL, paths[i%len(paths)], start.Add(bound))
		}()
	}
	wg.Wait()
	for i, err := range results {
		require.NoError(t, err, "connection %d", i)
	}
	require.Less(t, time.Since(start), bound)
	require.Zero(t, s.app.calls.Load())
}

// trickle sends a body of 100,000 declared bytes one byte every 20 ms and
// returns nil once the server has closed the connection (after answering),
// or an error if it is still open at deadline.
func trickle(base, path string, deadline time.Time) error {
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "POST "+path+" HTTP/1.1\r\nHost: dynkey.test\r\n"+
		"Content-Type: application/dynkey\r\nContent-Length: 100000\r\n\r\nDK"); err != nil {
		return err
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if _, err := conn.Write([]byte{0}); err != nil {
					return
				}
			}
		}
	}()
	if err := conn.SetReadDeadline(deadline); err != nil {
		return err
	}
	b, err := io.ReadAll(conn) // until the server closes
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("still open at the deadline (read %q)", b)
	}
	if !strings.HasPrefix(string(b), "HTTP/1.1 400 ") || !strings.Contains(string(b), "read timeout") {
		return fmt.Errorf("unexpected answer %q (err %v)", b, err)
	}
	return nil
}

// TestEndpointsWrongMethodHasAllow: a wrong method on an endpoint served
// by net/http gets "method-not-allowed" with an Allow header.
// Verified: without the Allow header set in Endpoints the test failed.
func TestEndpointsWrongMethodHasAllow(t *testing.T) {
	s := startServer(t, baseOptions(t, newClock(), memory.New()))
	for _, tc := range []struct{ method, path, allow string }{
		{http.MethodPost, wire.PathKeys, "GET, HEAD"},
		{http.MethodPut, wire.PathKeys, "GET, HEAD"},
		{http.MethodGet, wire.PathLogin, "POST"},
		{http.MethodDelete, wire.PathLogin, "POST"},
		{http.MethodGet, wire.PathHeartbeat, "POST"},
	} {
		req, err := http.NewRequest(tc.method, s.URL+tc.path, nil)
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
		require.Equal(t, tc.allow, resp.Header.Get("Allow"), "%s %s", tc.method, tc.path)
		p, ok := wire.ParseProblem(b)
		require.True(t, ok)
		require.Equal(t, wire.CodeMethod, p.Code)
	}
}

// TestRotationToCurrentOrPreviousKeyRefused: a client may not rotate to its
// current key, nor back to its previous one (which would reset the key's
// age and defeat the server's reject(age…) policy).
//
// Defense exercised: middleware/open.go rotateClientKey, the isKey checks.
// Verified: without the previous-key check the rotation back succeeded
// and the key's age was reset (the request after it was accepted instead
// of "client-key-expired"); without the current-key check the rotation to
// the current key succeeded.
func TestRotationToCurrentOrPreviousKeyRefused(t *testing.T) {
	clk := newClock()
	st := memory.New()
	o := baseOptions(t, clk, st)
	o.ClientPolicy = policy.MustParse("reject(age>=1h)")
	s := startServer(t, o)
	rc := newRawClient(t, s.URL, clk.Now).mustLogin("alice")

	// To the current key.
	r := rc.newMsg(http.MethodPut, "/api/x", nil).honestRotation(t, rc.key).seal(t).send(t, s.URL)
	require.Equal(t, wire.CodeRotationRefused, r.code(), string(r.Body))

	first := rc.key
	clk.Advance(40 * time.Minute)
	rc.rotateTo(rc.genKey())
	// Back to the previous key, from the current one: refused, now and
	// after the grace window.
	for _, wait := range []time.Duration{0, 3 * time.Minute} {
		clk.Advance(wait)
		rc.sTime, rc.sTimeAt = uint64(clk.Now().UnixMilli()), clk.Now()
		r = rc.newMsg(http.MethodPut, "/api/x", nil).honestRotation(t, first).seal(t).send(t, s.URL)
		require.Equal(t, wire.CodeRotationRefused, r.code(), string(r.Body))
	}
	// The first key never came back: past its age limit it would be
	// refused, and the current one is still accepted.
	rc.post("/api/x", "ok").echo(t)
	require.Equal(t, 2, int(s.app.calls.Load()), "the honest rotation and one request ran")
}

// TestNoSuiteDowngradeInSession: a session of suite A that sends an
// envelope of suite B, which the server also serves (a suite migration),
// is refused with "unsupported-suite" before any public-key work.
//
// Defense exercised: middleware/open.go open, `req.Suite != sr.Suite`.
// Verified: without it the request got "unavailable" (the session's P-256
// key handed to the X25519 suite) and the test failed.
func TestNoSuiteDowngradeInSession(t *testing.T) {
	clk := newClock()
	st := memory.New()
	o := baseOptions(t, clk, st)
	o.Suite = "ecies-p256"
	old := startServer(t, o)
	rc := newRawClient(t, old.URL, clk.Now).mustLogin("alice") // a P-256 session
	neu := startServer(t, baseOptions(t, clk, st))             // ecies-x25519, serving P-256 sessions too
	rc.base = neu.URL
	rc.post("/api/x", "p256 session").echo(t)

	sd := fetchDirectory(t, neu.URL)
	d, err := sd.Verify(ed25519.PublicKey(sd.Identity))
	require.NoError(t, err)
	require.Equal(t, "ecies-x25519", d.Suite)
	x, err := crypto.Lookup("ecies-x25519")
	require.NoError(t, err)
	pk, _ := d.Primary()
	xid, err := wire.ParseKeyID(pk.ID)
	require.NoError(t, err)
	xpub, err := x.ParsePublicKey(pk.Public)
	require.NoError(t, err)
	xkey, err := x.GenerateKey(nil)
	require.NoError(t, err)

	m := rc.newMsg(http.MethodPost, "/api/x", []byte("downgrade"))
	m.Header.Suite, m.Header.ServerKeyID, m.To, m.From, m.suite = "ecies-x25519", xid, xpub, xkey, x
	r := m.seal(t).send(t, neu.URL)
	require.Equal(t, wire.CodeUnsupportedSuite, r.code(), string(r.Body))
	require.Contains(t, r.Problem.Detail, `"ecies-p256"`)
	require.Equal(t, int64(1), neu.app.calls.Load())
}

// rotationGate orders two concurrent rotations of one session: the first
// compare-and-swap on a session waits until two requests have read the
// session; every later session read or write waits until that first swap
// is done. A second rotation that re-read the session just before its own
// swap would then see the first one's version and win too.
type rotationGate struct {
	store.Store
	armed     atomic.Bool
	gets, cas atomic.Int32
	twoGets   chan struct{}
	firstDone chan struct{}
}

func newRotationGate(st store.Store) *rotationGate {
	return &rotationGate{Store: st, twoGets: make(chan struct{}), firstDone: make(chan struct{})}
}

func wait(ch chan struct{}) {
	select {
	case <-ch:
	case <-time.After(5 * time.Second): // never hang the test
	}
}

func (g *rotationGate) Get(ctx context.Context, key string) (store.Entry, error) {
	if g.armed.Load() && strings.HasPrefix(key, "dynkey/session/") {
		switch n := g.gets.Add(1); {
		case n == 2:
			close(g.twoGets)
		case n > 2:
			wait(g.firstDone)
		}
	}
	return g.Store.Get(ctx, key)
}

func (g *rotationGate) CompareAndSwap(ctx context.Context, key string, old uint64, v []byte, exp time.Time) (uint64, error) {
	if g.armed.Load() && strings.HasPrefix(key, "dynkey/session/") {
		if g.cas.Add(1) == 1 {
			wait(g.twoGets)
			nv, err := g.Store.CompareAndSwap(ctx, key, old, v, exp)
			close(g.firstDone)
			return nv, err
		}
		wait(g.firstDone)
	}
	return g.Store.CompareAndSwap(ctx, key, old, v, exp)
}

// TestConcurrentRotationsOneWins: two rotations of one session to two
// different keys, interleaved so that both read the session before either
// swaps: exactly one wins, the other gets "rotation-refused", and the
// session ends with the winner's key.
//
// Defense exercised: middleware/open.go rotateClientKey's compare-and-swap
// against the version read with the session in open. Verified: with the
// version re-read just before the swap, both rotations returned 200.
func TestConcurrentRotationsOneWins(t *testing.T) {
	clk := newClock()
	g := newRotationGate(memory.New())
	s := startServer(t, baseOptions(t, clk, g))
	rc := newRawClient(t, s.URL, clk.Now).mustLogin("alice")
	keys := []crypto.PrivateKey{rc.genKey(), rc.genKey()}
	msgs := []*msg{
		rc.newMsg(http.MethodPost, "/api/x", nil).honestRotation(t, keys[0]).seal(t),
		rc.newMsg(http.MethodPost, "/api/x", nil).honestRotation(t, keys[1]).seal(t),
	}
	g.armed.Store(true)
	codes := make([]wire.Code, 2)
	statuses := make([]int, 2)
	var wg sync.WaitGroup
	for i, m := range msgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, p, err := postEnvelope(s.URL+"/api/x", m.env)
			if err != nil {
				return
			}
			statuses[i] = st
			if p != nil {
				codes[i] = p.Code
			}
		}()
	}
	wg.Wait()
	g.armed.Store(false)
	require.EqualValues(t, 2, g.gets.Load(), "both read the session before either swapped")
	wins := 0
	var winner crypto.PrivateKey
	for i := range 2 {
		if statuses[i] == http.StatusOK {
			wins++
			winner = keys[i]
		} else {
			require.Equal(t, wire.CodeRotationRefused, codes[i])
		}
	}
	require.Equal(t, 1, wins, "statuses %v codes %v", statuses, codes)
	rc.key, rc.keyID = winner, wire.ComputeKeyID(rc.suite.Name(), winner.Public().Bytes())
	rc.post("/api/x", "with the winner").echo(t)
}

// TestResponseContentTypeSealed: the handler's Content-Type travels sealed
// inside the response and reaches the client; the wire shows only
// application/dynkey. Verified: with WriteResponse sealing "" instead of
// the handler's type, the test failed.
func TestResponseContentTypeSealed(t *testing.T) {
	clk := newClock()
	m, err := middleware.New(baseOptions(t, clk, memory.New()))
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	const ct = "application/vnd.dynkey-test+json; charset=utf-8"
	mux := http.NewServeMux()
	mux.Handle("/dynkey/", m.Endpoints())
	mux.Handle("/.well-known/dynkey/", m.Endpoints())
	mux.Handle("/api/", m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", ct)
		_ = json.NewEncoder(w).Encode(map[string]string{"got": r.Header.Get("Content-Type")})
	})))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	rc := newRawClient(t, srv.URL, clk.Now).mustLogin("alice")
	msg := rc.newMsg(http.MethodPost, "/api/ct", []byte("x"))
	msg.Inner.ContentType = "text/x-request; q=1"
	r := msg.seal(t).send(t, srv.URL)
	require.Equal(t, http.StatusOK, r.Status)
	require.Equal(t, wire.MediaType, r.CT)
	require.Equal(t, ct, r.PlainCT)
	require.JSONEq(t, `{"got":"text/x-request; q=1"}`, string(r.Plain), "the request's sealed content type reached the handler")
}
