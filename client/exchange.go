package client

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/dynkey/dynkey/crypto"
	"github.com/dynkey/dynkey/wire"
)

// sealParams say how to seal one request.
type sealParams struct {
	typ       byte
	key       crypto.PrivateKey // the key that authenticates the request
	clientKey []byte            // login: full public key; request: key id
	token     []byte
	newKey    crypto.PrivateKey // non-nil: this request rotates to newKey
	pending   bool              // key is the session's pending key
	sess      *session
	sentAt    uint64 // the client's estimate of the server clock at sending (ms)
	// messageID is the id to send; nil draws a fresh one (a login). Every
	// envelope of one request, retries included, has the same id (see do).
	messageID *[wire.MessageIDSize]byte
}

// result is an opened response or a refusal.
type result struct {
	resp        *http.Response
	contentType string
	body        []byte
	prob        *wire.Problem
	at          time.Time
	status      int        // the authenticated status (differs from resp's for 204, 304)
	keyID       wire.KeyID // the client key that authenticated the request
	messageID   [wire.MessageIDSize]byte
}

func (r *result) problem() (*wire.Problem, bool) { return r.prob, r.prob != nil }

// exchange seals one request, sends it and opens the response.
func (c *Client) exchange(tmpl *http.Request, contentType string, body []byte, p *sealParams) (*result, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	if c.srv == nil {
		c.mu.Unlock()
		return nil, errors.New("dynkey/client: no server key")
	}
	srvKey, srvKeyID := c.srv.key, c.srv.keyID
	sTime, elapsed := c.serverNowLocked()
	c.stats.Requests++
	c.mu.Unlock()
	p.sentAt = sTime + elapsed

	h := wire.RequestHeader{Type: p.typ, Suite: c.suite.Name(), ServerKeyID: srvKeyID, ClientKey: p.clientKey,
		Token: p.token, STime: sTime, Elapsed: elapsed}
	if p.messageID != nil {
		h.MessageID = *p.messageID
	} else {
		var err error
		if h.MessageID, err = c.newMessageID(); err != nil {
			return nil, err
		}
	}
	in := wire.Inner{ContentType: contentType, Body: body}
	if p.newKey != nil {
		newPub := p.newKey.Public().Bytes()
		var cur wire.KeyID
		copy(cur[:], p.clientKey)
		proof, _, err := c.suite.Seal(c.cfg.Rand, srvKey, p.newKey, []byte(wire.InfoProof), wire.ProofAAD(h.MessageID, cur, newPub), nil)
		if err != nil {
			return nil, err
		}
		in.NewClientKey, in.TimeOffset, in.HasOffset, in.Proof = newPub, int64(elapsed), true, proof
	}
	header, err := wire.AppendRequestHeader(nil, &h)
	if err != nil {
		return nil, err
	}
	pt, err := wire.AppendInner(nil, &in)
	if err != nil {
		return nil, err
	}
	info := wire.InfoRequest
	if p.typ == wire.TypeLogin {
		info = wire.InfoLogin
	}
	aad := wire.RequestAAD(tmpl.Method, tmpl.URL.EscapedPath(), tmpl.URL.RawQuery, header)
	ct, secret, err := c.suite.Seal(c.cfg.Rand, srvKey, p.key, []byte(info), aad, pt)
	if err != nil {
		return nil, err
	}
	env := append(header, ct...)

	out := tmpl.Clone(tmpl.Context())
	out.Header.Del("Content-Encoding")
	out.Header.Del(wire.EnvelopeHeader)
	head := tmpl.Method == http.MethodHead
	if inHeader(c.cfg.Envelope, tmpl.Method, len(body), len(env)) {
		out.Body, out.ContentLength = http.NoBody, 0
		out.GetBody = func() (io.ReadCloser, error) { return http.NoBody, nil }
		out.Header.Del("Content-Type")
		out.Header.Set(wire.EnvelopeHeader, wire.EncodeHeaderEnvelope(env))
	} else if head {
		return nil, fmt.Errorf("%w: HEAD with an envelope over %d bytes in the %s header", ErrUnsupportedMethod, wire.MaxEnvelopeHeaderSize, wire.EnvelopeHeader)
	} else {
		out.Body = io.NopCloser(bytes.NewReader(env))
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(env)), nil }
		out.ContentLength = int64(len(env))
		out.Header.Set("Content-Type", wire.MediaType)
	}
	resp, err := c.next.RoundTrip(out)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	rb, err := readAllLimited(resp.Body, c.cfg.MaxBodySize+64*1024)
	if err != nil {
		return nil, err
	}
	res := &result{resp: resp, at: c.cfg.Now(), messageID: h.MessageID}
	switch mediaType(resp.Header.Get("Content-Type")) {
	case wire.MediaType:
		status := resp.StatusCode
		if v := resp.Header.Get(wire.StatusHeader); v != "" {
			if status, err = strconv.Atoi(v); err != nil || wire.StatusCarriesBody(status) || resp.StatusCode != http.StatusOK {
				return nil, fmt.Errorf("%w: bad %s header", ErrResponseNotAuthentic, wire.StatusHeader)
			}
		}
		res.status = status
		if head {
			// A HEAD response has no body: its envelope is in a header.
			if rb, err = wire.DecodeHeaderEnvelope(resp.Header.Get(wire.ResponseHeader)); err != nil || len(rb) == 0 {
				return nil, fmt.Errorf("%w: HEAD response without a valid %s header", ErrResponseNotAuthentic, wire.ResponseHeader)
			}
		}
		res.contentType, res.body, err = wire.OpenResponse(secret, h.MessageID, status, rb)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrResponseNotAuthentic, err)
		}
		return res, nil
	case wire.ProblemMediaType:
		// A refusal from the middleware, sent before any handler ran. It
		// is not authenticated, so the client only ever acts on it in
		// ways an attacker on the path could force anyway (retry, log in
		// again, refetch the signed directory).
		prob, ok := wire.ParseProblem(rb)
		if head && !ok {
			// No body: the code comes from the Dynkey-Problem header,
			// exactly as unauthenticated as a body would be.
			prob, ok = headProblem(resp)
		}
		if ok && resp.StatusCode >= 400 {
			res.prob = prob
			res.status = resp.StatusCode
			res.body = rb
			res.contentType = wire.ProblemMediaType
			return res, nil
		}
	}
	return nil, fmt.Errorf("%w: HTTP %d with content type %q", ErrResponseNotAuthentic, resp.StatusCode, resp.Header.Get("Content-Type"))
}

// inHeader reports whether an envelope of envLen bytes for a request of
// this method with a plaintext body of bodyLen bytes travels in the
// Dynkey-Envelope header.
func inHeader(mode EnvelopeMode, method string, bodyLen, envLen int) bool {
	if base64.RawURLEncoding.EncodedLen(envLen) > wire.MaxEnvelopeHeaderSize {
		return false
	}
	switch {
	case method == http.MethodHead:
		return true
	case mode == EnvelopeInHeader:
		return true
	case mode == EnvelopeInBody:
		return false
	}
	switch method {
	case http.MethodGet, http.MethodDelete, http.MethodOptions:
		return bodyLen == 0
	}
	return false
}

// headProblem reads the refusal of a HEAD request from its Dynkey-Problem
// header: a known code whose status is the response's.
func headProblem(resp *http.Response) (*wire.Problem, bool) {
	code := wire.Code(resp.Header.Get(wire.ProblemHeader))
	if !slices.Contains(wire.Codes(), code) || code.Status() != resp.StatusCode {
		return nil, false
	}
	return wire.NewProblem(code, ""), true
}

func mediaType(ct string) string {
	mt, _, _ := mime.ParseMediaType(ct)
	return mt
}

// readAllLimited reads at most limit bytes, failing past it.
func readAllLimited(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("dynkey/client: body larger than %d bytes", limit)
	}
	return b, nil
}

// newMessageID draws a fresh message id.
func (c *Client) newMessageID() ([wire.MessageIDSize]byte, error) {
	var id [wire.MessageIDSize]byte
	_, err := io.ReadFull(c.cfg.Rand, id[:])
	return id, err
}
