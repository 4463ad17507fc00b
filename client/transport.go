package client

import (
	"bytes"
	"fmt"
	"io"
	"net/http"

	"github.com/dynkey/dynkey/wire"
)

// its problem response (application/problem+json, 4xx/5xx) after one
// recovery attempt; a response that fails authentication is an error.
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
	res, err := c.do(req, req.Header.Get("Content-Type"), body)
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
