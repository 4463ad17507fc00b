package client

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/dynkey/dynkey/wire"
)

// ErrUnsupportedMethod is returned by RoundTrip, before anything is sent,
// for a HEAD request. A HEAD response carries no body, so no sealed
// response can authenticate it: the status and headers of any answer could
// be forged, and the client never hands an unauthenticated response to its
// caller. Sending the request anyway would run the handler and then fail.
// Use GET instead. A later transport that authenticates headers may lift
// this.
var ErrUnsupportedMethod = errors.New("dynkey/client: method not supported")

// RoundTrip implements http.RoundTripper: it seals req, sends it, and
// returns the opened response. A refusal by the middleware comes back as
// its problem response (application/problem+json, 4xx/5xx) after the
// recoveries it calls for (docs/PROTOCOL.md §9); a response that fails
// authentication is an error. A HEAD request fails with
// ErrUnsupportedMethod before anything is sent. Only GET, PUT, DELETE and
// OPTIONS requests may carry a rotation of the client key.
func (c *Client) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodHead {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, fmt.Errorf("%w: %s (a response to it cannot be authenticated)", ErrUnsupportedMethod, req.Method)
	}
	var body []byte
	if req.Body != nil {
		b, err := readAllLimited(req.Body, c.cfg.MaxBodySize)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		body = b
	}
	res, err := c.do(req, req.Header.Get("Content-Type"), body, mayCarryRotation(req.Method))
	if err != nil {
		return nil, err
	}
	out := &http.Response{
		Status:     fmt.Sprintf("%d %s", res.status, http.StatusText(res.status)),
		StatusCode: res.status,
		Proto:      res.resp.Proto, ProtoMajor: res.resp.ProtoMajor, ProtoMinor: res.resp.ProtoMinor,
		Header:        res.resp.Header.Clone(),
		Body:          io.NopCloser(bytes.NewReader(res.body)),
		ContentLength: int64(len(res.body)),
		Request:       req,
	}
	out.Header.Del("Content-Length")
	out.Header.Del(wire.StatusHeader)
	if res.contentType != "" {
		out.Header.Set("Content-Type", res.contentType)
	} else {
		out.Header.Del("Content-Type")
	}
	return out, nil
}

var _ http.RoundTripper = (*Client)(nil)
