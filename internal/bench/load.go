package bench

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// prepared is one request ready to send: its body, already sealed.
type prepared struct {
	body []byte
}

// loadResult is what one slice of load measured on the client side.
type loadResult struct {
	requests int
	errors   int
	elapsed  time.Duration
	lat      []time.Duration // per request, unordered
	firstErr error
}

// newHTTPClient returns a client keeping up to n idle connections to one
// host.
func newHTTPClient(n int) *http.Client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        n,
		MaxIdleConnsPerHost: n,
		MaxConnsPerHost:     n,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// check tells a good response from a bad one.
type check func(resp *http.Response, body []byte) error

// runLoad sends the prepared requests (each once) with c workers until d
// has passed or they run out.
func runLoad(ctx context.Context, hc *http.Client, url, contentType string, reqs []prepared, reuse bool, c int, d time.Duration, ok check) loadResult {
	var (
		next     atomic.Int64
		mu       sync.Mutex
		res      loadResult
		wg       sync.WaitGroup
		deadline = time.Now().Add(d)
	)
	ctx, cancel := context.WithDeadline(ctx, deadline.Add(30*time.Second))
	defer cancel()
	start := time.Now()
	for range c {
		wg.Go(func() {
			lat := make([]time.Duration, 0, 1024)
			var nerr int
			var firstErr error
			for time.Now().Before(deadline) && ctx.Err() == nil {
				i := next.Add(1) - 1
				if !reuse && i >= int64(len(reqs)) {
					break
				}
				body := reqs[i%int64(len(reqs))].body
				t0 := time.Now()
				err := send(ctx, hc, url, contentType, body, ok)
				lat = append(lat, time.Since(t0))
				if err != nil {
					nerr++
					if firstErr == nil {
						firstErr = err
					}
				}
			}
			mu.Lock()
			res.lat = append(res.lat, lat...)
			res.errors += nerr
			if res.firstErr == nil {
				res.firstErr = firstErr
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.requests = len(res.lat)
	return res
}

func send(ctx context.Context, hc *http.Client, url, contentType string, body []byte, ok check) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return ok(resp, b)
}

// percentile returns the q-quantile (0..1) of d, sorting it.
func percentile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	i := int(q * float64(len(d)-1))
	return d[i]
}

var errBadResponse = errors.New("dynkey/bench: unexpected response")
