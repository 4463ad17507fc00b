package middleware

import (
	"bytes"
	"testing"
)

// TestOutcomeRecord: the stored answer round-trips, responses over the
// limit become the "not kept" marker, and malformed records are errors,
// never a panic.
func TestOutcomeRecord(t *testing.T) {
	sealed := &Response{Status: 200, Header: Header{{"Content-Type", "application/dynkey"}, {"Cache-Control", "no-store"}},
		Body: bytes.Repeat([]byte{7}, 100)}
	head := &Response{Status: 200, Header: Header{{"Content-Type", "application/dynkey"}, {"Dynkey-Response", "RESs"}}}
	noBody := &Response{Status: 200, Header: Header{{"Dynkey-Status", "204"}}, Body: []byte{1}}
	for _, tc := range []struct {
		name  string
		resp  *Response
		limit int64
		kept  bool
	}{
		{"sealed response", sealed, 1024, true},
		{"at the limit", sealed, 100, true},
		{"over the limit", sealed, 99, false},
		{"HEAD: envelope in a header", head, 1024, true},
		{"204 sent as 200", noBody, 1024, true},
		{"nothing sealed", nil, 1024, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeOutcome(encodeOutcome(tc.resp, tc.limit))
			if err != nil {
				t.Fatal(err)
			}
			if !tc.kept {
				if got != nil {
					t.Fatalf("kept %+v", got)
				}
				return
			}
			if got == nil || got.Status != tc.resp.Status || !bytes.Equal(got.Body, tc.resp.Body) || len(got.Header) != len(tc.resp.Header) {
				t.Fatalf("got %+v, want %+v", got, tc.resp)
			}
			for i := range got.Header {
				if got.Header[i] != tc.resp.Header[i] {
					t.Fatalf("header %d: %v", i, got.Header[i])
				}
			}
		})
	}
	good := encodeOutcome(sealed, 1024)
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"unknown version", []byte{9, kindNotKept}},
		{"unknown kind", []byte{outcomeVersion, 7}},
		{"marker with trailing bytes", []byte{outcomeVersion, kindNotKept, 0}},
		{"truncated status", good[:3]},
		{"truncated header", good[:10]},
		{"bad status", []byte{outcomeVersion, kindResponse, 0, 0, 0}},
	} {
		t.Run("malformed/"+tc.name, func(t *testing.T) {
			if _, err := decodeOutcome(tc.b); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// FuzzDecodeOutcome: any stored bytes decode or fail, never panic.
func FuzzDecodeOutcome(f *testing.F) {
	f.Add(encodeOutcome(&Response{Status: 200, Header: Header{{"A", "b"}}, Body: []byte("x")}, 1024))
	f.Add([]byte{outcomeVersion, kindNotKept})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeOutcome(b)
		if err == nil && r != nil && (r.Status < 100 || r.Status > 999) {
			t.Fatalf("status %d", r.Status)
		}
	})
}
