package middleware

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"time"

	"github.com/dynkey/dynkey/store"
	"github.com/dynkey/dynkey/wire"
)

// At most once, and exactly once where it can be (docs/PROTOCOL.md §11).
//
// A message id goes through two states in the store, both kept for the
// replay window and both scoped like the replay id (per user):
//
//   - seen: markSeen's insert-if-absent entry "dynkey/msg/<scope>/<id>",
//     written once the message authenticated, before the handler runs;
//   - answered: "dynkey/rsp/<scope>/<id>", written by a compare-and-swap
//     from "absent" once the handler finished and its response was sealed,
//     before that response is written to the connection. It holds the
//     sealed response, or a marker saying the response was not kept (over
//     Options.StoredResponseLimit).
//
// A message whose id is seen again (the client's retry after a transport
// failure, or anybody's replay of the same bytes) never reaches the handler:
// it is answered with the stored response when there is one, with "replay"
// when the handler finished but its response was not kept, and with
// "outcome-unknown" when there is no answer at all: the handler is running,
// or its instance died before it finished. The caller is told that it
// cannot know, never given a second run.

// defaultStoredResponseLimit is Options.StoredResponseLimit's default.
const defaultStoredResponseLimit = 64 << 10

// outcomeWriteTimeout bounds the write of an answer: it is made even when
// the client went away (its connection cut is exactly when it will retry),
// so not under the request's context.
const outcomeWriteTimeout = 5 * time.Second

// storedResponseLimit is Options.StoredResponseLimit with its default; -1
// means answers are not recorded at all.
func (m *Middleware) storedResponseLimit() int64 {
	switch l := m.o.StoredResponseLimit; {
	case l < 0:
		return -1
	case l == 0:
		return defaultStoredResponseLimit
	default:
		return l
	}
}

func outcomeKey(scope string, id [wire.MessageIDSize]byte) string {
	return "dynkey/rsp/" + scope + "/" + hex.EncodeToString(id[:])
}

// The stored answer: a version byte, then a kind byte; for kindResponse the
// sent status (u16), the number of header fields (u8), each field's name
// and value (u16 length each), then the body. Everything in it is either
// already on the wire in clear (status, Content-Type: application/dynkey,
// Cache-Control, Dynkey-Status) or the sealed envelope, which only the
// client can open: it needs no key-encryption key (see
// docs/PROTOCOL.md §11).
const (
	outcomeVersion = 1
	kindNotKept    = 0 // the handler finished; its response was not kept
	kindResponse   = 1 // the sealed response follows
)

var errOutcomeRecord = errors.New("dynkey/middleware: malformed stored response")

// encodeOutcome returns the stored form of resp, or the "not kept" marker
// when resp is nil, larger than limit, or not encodable.
func encodeOutcome(resp *Response, limit int64) []byte {
	notKept := []byte{outcomeVersion, kindNotKept}
	if resp == nil || int64(len(resp.Body)) > limit || len(resp.Header) > 255 || resp.Status < 100 || resp.Status > 999 {
		return notKept
	}
	size := 5 + len(resp.Body)
	for _, kv := range resp.Header {
		if len(kv[0]) > 0xffff || len(kv[1]) > 0xffff {
			return notKept
		}
		size += 4 + len(kv[0]) + len(kv[1])
	}
	if int64(size) > limit+16*1024 { // headers carry a HEAD response's envelope
		return notKept
	}
	b := make([]byte, 0, size)
	b = append(b, outcomeVersion, kindResponse)
	b = binary.BigEndian.AppendUint16(b, uint16(resp.Status))
	b = append(b, byte(len(resp.Header)))
	for _, kv := range resp.Header {
		b = binary.BigEndian.AppendUint16(b, uint16(len(kv[0])))
		b = append(b, kv[0]...)
		b = binary.BigEndian.AppendUint16(b, uint16(len(kv[1])))
		b = append(b, kv[1]...)
	}
	return append(b, resp.Body...)
}

// decodeOutcome parses a stored answer: the response, or nil if it was not
// kept.
func decodeOutcome(b []byte) (*Response, error) {
	if len(b) < 2 || b[0] != outcomeVersion {
		return nil, errOutcomeRecord
	}
	switch b[1] {
	case kindNotKept:
		if len(b) != 2 {
			return nil, errOutcomeRecord
		}
		return nil, nil
	case kindResponse:
	default:
		return nil, errOutcomeRecord
	}
	b = b[2:]
	if len(b) < 3 {
		return nil, errOutcomeRecord
	}
	resp := &Response{Status: int(binary.BigEndian.Uint16(b))}
	n := int(b[2])
	b = b[3:]
	field := func() (string, bool) {
		if len(b) < 2 {
			return "", false
		}
		l := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+l {
			return "", false
		}
		s := string(b[2 : 2+l])
		b = b[2+l:]
		return s, true
	}
	for range n {
		name, ok1 := field()
		value, ok2 := field()
		if !ok1 || !ok2 {
			return nil, errOutcomeRecord
		}
		resp.Header = append(resp.Header, [2]string{name, value})
	}
	if resp.Status < 100 || resp.Status > 999 {
		return nil, errOutcomeRecord
	}
	if len(b) > 0 {
		resp.Body = append([]byte(nil), b...)
	}
	return resp, nil
}

// recordOutcome stores the answer to message id of scope once its handler
// finished: resp is the sealed response as it will be sent (nil: the
// handler ran but nothing could be sealed). The first answer wins; a store
// error is logged (a retry then gets "outcome-unknown", never a second
// run).
func (m *Middleware) recordOutcome(ctx context.Context, scope string, id [wire.MessageIDSize]byte, resp *Response) {
	limit := m.storedResponseLimit()
	if limit < 0 || scope == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), outcomeWriteTimeout)
	defer cancel()
	_, err := m.o.Store.CompareAndSwap(ctx, outcomeKey(scope, id), 0, encodeOutcome(resp, limit), m.now().Add(m.replayWindow()))
	if err != nil && !errors.Is(err, store.ErrConflict) {
		m.log.Warn("dynkey: recording a response for retries", "err", err)
	}
}

// lookupOutcome answers a message whose id was already seen: the refusal
// to return from open. A "replay" carrying the stored response when there
// is one (Problem.Response and Middleware.Refusal answer with it), a plain
// "replay" when the handler finished and its response was not kept, and
// "outcome-unknown" when no answer was recorded.
func (m *Middleware) lookupOutcome(ctx context.Context, scope string, id [wire.MessageIDSize]byte) *Problem {
	if m.storedResponseLimit() < 0 {
		return refuse(wire.CodeReplay, "message id already seen")
	}
	e, err := m.o.Store.Get(ctx, outcomeKey(scope, id))
	if errors.Is(err, store.ErrNotFound) {
		return refuse(wire.CodeOutcomeUnknown, "message id already seen and its handler has not finished: "+
			"the outcome is unknown; do not send the request again under a new message id without checking")
	}
	if err != nil {
		return unavailable(err)
	}
	resp, err := decodeOutcome(e.Value)
	if err != nil {
		return unavailable(err)
	}
	if resp == nil {
		return refuse(wire.CodeReplay, "message id already seen; its handler ran and its response was not kept")
	}
	p := refuse(wire.CodeReplay, "message id already seen; answered with its original response")
	p.stored = resp
	return p
}

// answered reports, for a message that cannot be opened again as new (a
// resent rotation whose rotation landed), whether it has a stored answer,
// and returns it.
func (m *Middleware) answered(ctx context.Context, scope string, id [wire.MessageIDSize]byte) *Problem {
	if m.storedResponseLimit() < 0 {
		return nil
	}
	e, err := m.o.Store.Get(ctx, outcomeKey(scope, id))
	if err != nil {
		return nil
	}
	if resp, err := decodeOutcome(e.Value); err == nil && resp != nil {
		p := refuse(wire.CodeReplay, "message id already seen; answered with its original response")
		p.stored = resp
		return p
	}
	return nil
}

// Replayed returns, for a "replay" refusal of a message whose handler
// already finished, the original sealed response the middleware kept for
// it (Options.StoredResponseLimit), and true; Response and
// [Middleware.Refusal] answer with it. Only the client that sent the
// message can open it.
func (p *Problem) Replayed() (*Response, bool) {
	if p.stored == nil {
		return nil, false
	}
	return p.stored.clone(), true
}

// clone returns a copy of r that shares nothing with it.
func (r *Response) clone() *Response {
	c := &Response{Status: r.Status, Header: append(Header(nil), r.Header...)}
	if r.Body != nil {
		c.Body = append([]byte(nil), r.Body...)
	}
	return c
}
