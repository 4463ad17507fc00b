package bench

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/dynkey/dynkey/client"
	"github.com/dynkey/dynkey/wire"
)

// errCaptured ends a request the capture transport kept instead of sending.
var errCaptured = errors.New("dynkey/bench: request captured")

type slotKey struct{}

// captureTransport forwards the dynkey endpoints (key directory, login,
// heartbeat) to next and keeps the sealed body of every other request in
// the slot its context carries, without sending it.
type captureTransport struct {
	next http.RoundTripper
}

func (t *captureTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasPrefix(r.URL.Path, "/dynkey/") || strings.HasPrefix(r.URL.Path, "/.well-known/dynkey/") {
		return t.next.RoundTrip(r)
	}
	slot, ok := r.Context().Value(slotKey{}).(*[]byte)
	if !ok {
		return nil, errors.New("dynkey/bench: request without a capture slot")
	}
	b, err := io.ReadAll(r.Body)
	r.Body.Close()
	if err != nil {
		return nil, err
	}
	*slot = b
	return nil, errCaptured
}

// handlerTransport serves requests with an in-process handler.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

// dynkeySealer seals requests with the real client SDK through a capture
// transport: each envelope is exactly what client.Client would send.
type dynkeySealer struct {
	c    *client.Client
	base string
}

// newDynkeySealer returns a sealer for the server at base (pinned to its
// identity key), whose endpoints it reaches through next.
func newDynkeySealer(base, suite string, identity ed25519.PublicKey, next http.RoundTripper, maxBody int64) (*dynkeySealer, error) {
	c, err := client.New(client.Config{
		BaseURL: base, Username: benchUser, Password: benchPassword, Suite: suite,
		IdentityKey: identity, HeartbeatInterval: -1, MaxBodySize: maxBody,
		Transport: &captureTransport{next: next},
		Logger:    slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return nil, err
	}
	if err := c.Login(context.Background()); err != nil {
		c.Close()
		return nil, err
	}
	return &dynkeySealer{c: c, base: base}, nil
}

func (s *dynkeySealer) Close() error { return s.c.Close() }

// seal returns the envelope the client would POST to echoPath.
func (s *dynkeySealer) seal(body []byte) ([]byte, error) {
	var slot []byte
	ctx := context.WithValue(context.Background(), slotKey{}, &slot)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.base+echoPath, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	_, err = s.c.RoundTrip(req)
	if !errors.Is(err, errCaptured) || slot == nil {
		return nil, fmt.Errorf("dynkey/bench: sealing a request: %v", err)
	}
	return slot, nil
}

// sealMany seals n requests with workers goroutines.
func sealMany(n, workers int, seal func() ([]byte, error)) ([]prepared, error) {
	out := make([]prepared, n)
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				b, err := seal()
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				out[i] = prepared{body: b}
			}
		})
	}
	wg.Wait()
	return out, firstErr
}

// dynkeyCheck accepts a sealed 200 response.
func dynkeyCheck(resp *http.Response, body []byte) error {
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != wire.MediaType || len(body) < 2 || body[0] != 'D' || body[1] != 'K' {
		return fmt.Errorf("%w: HTTP %d %s: %.200s", errBadResponse, resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	return nil
}
