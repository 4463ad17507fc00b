package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
)

// printer writes whole lines to the demo's output; the server, the client's
// heartbeat and the request loop print from different goroutines.
type printer struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *printer) printf(format string, a ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format+"\n", a...)
}

// lineHandler is a slog.Handler that prints "prefix message key=value …"
// lines through a printer, so the server's and the client's own logs show up
// as steps of the demo.
type lineHandler struct {
	p      *printer
	prefix string
	level  slog.Leveler
	attrs  []slog.Attr
}

func (h *lineHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

func (h *lineHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(h.prefix)
	if r.Level >= slog.LevelWarn {
		b.WriteString(r.Level.String() + " ")
	}
	if m, ok := friendly[r.Message]; ok {
		b.WriteString(m)
	} else {
		b.WriteString(r.Message)
	}
	add := func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	h.p.printf("%s", b.String())
	return nil
}

// friendly rewords log messages for a newcomer.
var friendly = map[string]string{
	"dynkey: server key rotated": "rotated its key pair by policy (claim 6); the old key only decrypts for its grace period:",
	"dynkey: key rotated":        "accepted a key rotation (logged at most once a second per kind under load):",
	"dynkey: request refused":    "refused a request (one structured log line per refusal, rate-limited per code):",
}

func (h *lineHandler) WithAttrs(as []slog.Attr) slog.Handler {
	h2 := *h
	h2.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &h2
}

func (h *lineHandler) WithGroup(string) slog.Handler { return h }
