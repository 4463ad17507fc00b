package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"syscall"
	"testing"
)

// timeoutErr is a net.Error that timed out (as net/http's
// ResponseHeaderTimeout and a connection's read deadline are).
type timeoutErr struct{}

func (timeoutErr) Error() string   { return "timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// TestTransportFailure: which errors a request's envelope is resent after.
// Connection failures are resent for every method; a timeout only for the
// idempotent methods; anything else (a cancelled context, a body over the
// limit, an error of the caller's transport) is not.
func TestTransportFailure(t *testing.T) {
	reset := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	for _, tc := range []struct {
		name   string
		err    error
		method string
		want   bool
	}{
		{"connection refused", refused, http.MethodPost, true},
		{"connection reset", reset, http.MethodPost, true},
		{"reset wrapped by url.Error", &url.Error{Op: "Post", URL: "x", Err: reset}, http.MethodPatch, true},
		{"EOF before a response", io.EOF, http.MethodPost, true},
		{"truncated body", fmt.Errorf("reading: %w", io.ErrUnexpectedEOF), http.MethodPost, true},
		{"broken pipe", os.NewSyscallError("write", syscall.EPIPE), http.MethodPut, true},
		{"timeout of a GET", timeoutErr{}, http.MethodGet, true},
		{"timeout of a PUT", timeoutErr{}, http.MethodPut, true},
		{"timeout of a POST", timeoutErr{}, http.MethodPost, false},
		{"timeout of a PATCH", timeoutErr{}, http.MethodPatch, false},
		{"context cancelled", context.Canceled, http.MethodGet, false},
		// (A GET whose own context expired is not resent either: roundTrip
		// checks the request's context first.)
		{"deadline exceeded", context.DeadlineExceeded, http.MethodPost, false},
		{"some other error", errors.New("dropped by a test transport"), http.MethodGet, false},
		{"body over the limit", fmt.Errorf("dynkey/client: body larger than %d bytes", 10), http.MethodGet, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := transportFailure(tc.err, tc.method); got != tc.want {
				t.Fatalf("transportFailure(%v, %s) = %v, want %v", tc.err, tc.method, got, tc.want)
			}
		})
	}
}
