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
// for a HEAD request whose envelope does not fit in the Dynkey-Envelope
// header (wire.MaxEnvelopeHeaderSize): a HEAD request has no body to carry
// it.
var ErrUnsupportedMethod = errors.New("dynkey/client: method not supported")

// RoundTrip implements http.RoundTripper: it seals req, sends it, and
// returns the opened response. A refusal by the middleware comes back as
// its problem response (application/problem+json, 4xx/5xx) after the
// recoveries it calls for (docs/PROTOCOL.md §9); a response that fails
// authentication is an error. Where the envelope travels is
// Config.Envelope's choice; a HEAD request's always goes in the header, and
// its response, authenticated from the Dynkey-Response header, has an empty
// body. Only GET, PUT, DELETE and OPTIONS requests may carry a rotation of
// the client key.
func (c *Client) RoundTrip(req *http.Request) (*http.Response, error) {
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
	out.Header.Del(wire.ResponseHeader)
	if res.contentType != "" {
		out.Header.Set("Content-Type", res.contentType)
	} else {
		out.Header.Del("Content-Type")
	}
	return out, nil
}

var _ http.RoundTripper = (*Client)(nil)
