package wire_test

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/dynkey/dynkey/wire"
)

func loginHeader() wire.RequestHeader {
	h := wire.RequestHeader{Type: wire.TypeLogin, Suite: "ecies-x25519", ClientKey: bytes.Repeat([]byte{0x11}, 32),
		STime: 1767225600000, Elapsed: 250}
	copy(h.ServerKeyID[:], "serverid")
	copy(h.MessageID[:], "0123456789abcdef")
	return h
}

func requestHeader() wire.RequestHeader {
	h := loginHeader()
	h.Type, h.ClientKey, h.Token = wire.TypeRequest, []byte("clientid"), []byte("opaque token")
	return h
}

func envelope(t testing.TB, h wire.RequestHeader, ct []byte) []byte {
	t.Helper()
	b, err := wire.AppendRequestHeader(nil, &h)
	if err != nil {
		t.Fatal(err)
	}
	return append(b, ct...)
}

func TestParseRequestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		h    wire.RequestHeader
		ct   []byte
	}{
		{"login", loginHeader(), []byte("ciphertext")},
		{"request", requestHeader(), []byte("ciphertext")},
		{"one byte of ciphertext", requestHeader(), []byte{0}},
		{"max token", func() wire.RequestHeader {
			h := requestHeader()
			h.Token = bytes.Repeat([]byte{7}, wire.MaxTokenSize)
			return h
		}(), []byte("x")},
		{"max login key", func() wire.RequestHeader {
			h := loginHeader()
			h.ClientKey = bytes.Repeat([]byte{7}, wire.MaxPublicKeySize)
			return h
		}(), []byte("x")},
		{"max times", func() wire.RequestHeader {
			h := requestHeader()
			h.STime, h.Elapsed = ^uint64(0), ^uint64(0)
			return h
		}(), []byte("x")},
		{"64-byte suite name", func() wire.RequestHeader {
			h := requestHeader()
			h.Suite = strings.Repeat("a-9", 21) + "z"
			return h
		}(), []byte("x")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("keep")
			hb, err := wire.AppendRequestHeader(prefix, &tt.h)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(hb[:4], prefix) {
				t.Fatal("AppendRequestHeader did not append")
			}
			env := append(hb[4:], tt.ct...)
			r, err := wire.ParseRequest(env)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(r.Header, hb[4:]) || !bytes.Equal(r.Ciphertext, tt.ct) {
				t.Errorf("split %x | %x", r.Header, r.Ciphertext)
			}
			got, want := r.RequestHeader, tt.h
			if got.Type != want.Type || got.Suite != want.Suite || got.ServerKeyID != want.ServerKeyID ||
				!bytes.Equal(got.ClientKey, want.ClientKey) || !bytes.Equal(got.Token, want.Token) ||
				got.MessageID != want.MessageID || got.STime != want.STime || got.Elapsed != want.Elapsed {
				t.Errorf("parsed %+v, want %+v", got, want)
			}
			// Fields are capped: appending to one cannot overwrite the next.
			_ = append(r.ClientKey, 0xff)
			if !bytes.Equal(r.Token, tt.h.Token) {
				t.Error("ClientKey aliases the following field")
			}
		})
	}
}

// TestRequestLayout pins the byte layout independently of the encoder.
func TestRequestLayout(t *testing.T) {
	h := requestHeader()
	got := envelope(t, h, []byte{0xcc})
	want := []byte{'D', 'K', 1, 2, 0, 12}
	want = append(want, "ecies-x25519"...)
	want = append(want, 0, 8)
	want = append(want, "serverid"...)
	want = append(want, 0, 8)
	want = append(want, "clientid"...)
	want = append(want, 0, 12)
	want = append(want, "opaque token"...)
	want = append(want, 0, 16)
	want = append(want, "0123456789abcdef"...)
	want = append(want, 0, 8)
	want = binary.BigEndian.AppendUint64(want, 1767225600000)
	want = append(want, 0, 8)
	want = binary.BigEndian.AppendUint64(want, 250)
	want = append(want, 0xcc)
	if !bytes.Equal(got, want) {
		t.Fatalf("got  %x\nwant %x", got, want)
	}
}

func TestParseRequestTruncations(t *testing.T) {
	for _, tt := range []struct {
		name string
		env  []byte
	}{
		{"login", envelope(t, loginHeader(), []byte("ciphertext"))},
		{"request", envelope(t, requestHeader(), []byte("ciphertext"))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			hlen := len(tt.env) - len("ciphertext")
			// Every proper prefix that does not reach the ciphertext is an
			// error; prefixes inside the ciphertext are valid envelopes.
			for n := 0; n <= hlen; n++ {
				_, err := wire.ParseRequest(tt.env[:n:n])
				if !errors.Is(err, wire.ErrFormat) {
					t.Fatalf("prefix of %d bytes: err = %v, want ErrFormat", n, err)
				}
			}
			for n := hlen + 1; n <= len(tt.env); n++ {
				if _, err := wire.ParseRequest(tt.env[:n:n]); err != nil {
					t.Fatalf("prefix of %d bytes: %v", n, err)
				}
			}
		})
	}
}

// mutate returns a copy of b with f applied.
func mutate(b []byte, f func([]byte) []byte) []byte { return f(bytes.Clone(b)) }

// field re-encodes a request with header field i (0 = suite … 6 = elapsed)
// replaced by v.
func withField(t *testing.T, h wire.RequestHeader, i int, v []byte) []byte {
	t.Helper()
	var fields [7][]byte
	fields[0] = []byte(h.Suite)
	fields[1] = h.ServerKeyID[:]
	fields[2] = h.ClientKey
	fields[3] = h.Token
	fields[4] = h.MessageID[:]
	fields[5] = binary.BigEndian.AppendUint64(nil, h.STime)
	fields[6] = binary.BigEndian.AppendUint64(nil, h.Elapsed)
	fields[i] = v
	b := []byte{'D', 'K', wire.Version, h.Type}
	for _, f := range fields {
		b = binary.BigEndian.AppendUint16(b, uint16(len(f)))
		b = append(b, f...)
	}
	return append(b, "ciphertext"...)
}

func TestParseRequestErrors(t *testing.T) {
	req, login := requestHeader(), loginHeader()
	good := envelope(t, req, []byte("ciphertext"))
	tests := []struct {
		name string
		env  []byte
	}{
		{"empty", nil},
		{"wrong magic D", mutate(good, func(b []byte) []byte { b[0] = 'd'; return b })},
		{"wrong magic K", mutate(good, func(b []byte) []byte { b[1] = 'X'; return b })},
		{"version 0", mutate(good, func(b []byte) []byte { b[2] = 0; return b })},
		{"version 2", mutate(good, func(b []byte) []byte { b[2] = 2; return b })},
		{"type 0", mutate(good, func(b []byte) []byte { b[3] = 0; return b })},
		{"type response", mutate(good, func(b []byte) []byte { b[3] = wire.TypeResponse; return b })},
		{"type 4", mutate(good, func(b []byte) []byte { b[3] = 4; return b })},
		{"request typed as login", mutate(good, func(b []byte) []byte { b[3] = wire.TypeLogin; return b })},
		{"no ciphertext", good[:len(good)-len("ciphertext")]},
		{"server key id of 7", withField(t, req, 1, make([]byte, 7))},
		{"server key id of 9", withField(t, req, 1, make([]byte, 9))},
		{"client key id of 7", withField(t, req, 2, make([]byte, 7))},
		{"client key id of 9", withField(t, req, 2, make([]byte, 9))},
		{"client key id of 32", withField(t, req, 2, make([]byte, 32))},
		{"message id of 15", withField(t, req, 4, make([]byte, 15))},
		{"message id of 17", withField(t, req, 4, make([]byte, 17))},
		{"s_time of 4", withField(t, req, 5, make([]byte, 4))},
		{"s_time of 9", withField(t, req, 5, make([]byte, 9))},
		{"elapsed of 0", withField(t, req, 6, nil)},
		{"elapsed of 16", withField(t, req, 6, make([]byte, 16))},
		{"token empty", withField(t, req, 3, nil)},
		{"token too long", withField(t, req, 3, make([]byte, wire.MaxTokenSize+1))},
		{"login with a token", withField(t, login, 3, []byte("tok"))},
		{"login without a key", withField(t, login, 2, nil)},
		{"login key too long", withField(t, login, 2, make([]byte, wire.MaxPublicKeySize+1))},
		{"suite empty", withField(t, req, 0, nil)},
		{"suite upper case", withField(t, req, 0, []byte("ECIES-X25519"))},
		{"suite with space", withField(t, req, 0, []byte("ecies x25519"))},
		{"suite with NUL", withField(t, req, 0, []byte("ecies\x00"))},
		{"suite with underscore", withField(t, req, 0, []byte("ecies_x25519"))},
		{"suite non-ASCII", withField(t, req, 0, []byte("écies"))},
		{"suite of 65 bytes", withField(t, req, 0, bytes.Repeat([]byte{'a'}, 65))},
		{"field length past the end", mutate(good, func(b []byte) []byte { b[4], b[5] = 0xff, 0xff; return b })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := wire.ParseRequest(tt.env)
			if !errors.Is(err, wire.ErrFormat) || r != nil {
				t.Fatalf("ParseRequest = %v, %v; want nil, ErrFormat", r, err)
			}
		})
	}
}

func TestAppendRequestHeaderErrors(t *testing.T) {
	tests := []struct {
		name string
		f    func(*wire.RequestHeader)
		base func() wire.RequestHeader
	}{
		{"type 0", func(h *wire.RequestHeader) { h.Type = 0 }, requestHeader},
		{"type response", func(h *wire.RequestHeader) { h.Type = wire.TypeResponse }, requestHeader},
		{"token empty", func(h *wire.RequestHeader) { h.Token = nil }, requestHeader},
		{"token too long", func(h *wire.RequestHeader) { h.Token = make([]byte, wire.MaxTokenSize+1) }, requestHeader},
		{"request with a full key", func(h *wire.RequestHeader) { h.ClientKey = make([]byte, 32) }, requestHeader},
		{"login with a token", func(h *wire.RequestHeader) { h.Token = []byte("t") }, loginHeader},
		{"login without a key", func(h *wire.RequestHeader) { h.ClientKey = nil }, loginHeader},
		{"login key too long", func(h *wire.RequestHeader) { h.ClientKey = make([]byte, wire.MaxPublicKeySize+1) }, loginHeader},
		{"suite empty", func(h *wire.RequestHeader) { h.Suite = "" }, requestHeader},
		{"suite invalid", func(h *wire.RequestHeader) { h.Suite = "Ecies" }, requestHeader},
		{"suite too long", func(h *wire.RequestHeader) { h.Suite = strings.Repeat("a", 65) }, requestHeader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.base()
			tt.f(&h)
			if b, err := wire.AppendRequestHeader(nil, &h); !errors.Is(err, wire.ErrFormat) || b != nil {
				t.Fatalf("AppendRequestHeader = %x, %v; want ErrFormat", b, err)
			}
		})
	}
}

func TestRequestAAD(t *testing.T) {
	got := wire.RequestAAD("POST", "/a%20b", "x=1&y", []byte{'D', 'K'})
	want := []byte("dynkey/v1 request aad\x00")
	want = append(want, 0, 0, 0, 4)
	want = append(want, "POST"...)
	want = append(want, 0, 0, 0, 6)
	want = append(want, "/a%20b"...)
	want = append(want, 0, 0, 0, 5)
	want = append(want, "x=1&y"...)
	want = append(want, 'D', 'K')
	if !bytes.Equal(got, want) {
		t.Fatalf("got  %x\nwant %x", got, want)
	}
	// Length prefixes keep the parts apart.
	if bytes.Equal(wire.RequestAAD("GET", "/ab", "", nil), wire.RequestAAD("GET", "/a", "b", nil)) {
		t.Error("path and query boundary is ambiguous")
	}
}

func innerBytes(fields [4][]byte, body string) []byte {
	var b []byte
	for _, f := range fields {
		b = binary.BigEndian.AppendUint16(b, uint16(len(f)))
		b = append(b, f...)
	}
	return append(b, body...)
}

func TestInnerRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   wire.Inner
	}{
		{"empty", wire.Inner{}},
		{"body only", wire.Inner{Body: []byte("hello")}},
		{"content type and body", wire.Inner{ContentType: "text/plain; charset=utf-8", Body: []byte("hello")}},
		{"rotation", wire.Inner{NewClientKey: []byte("new key"), TimeOffset: 60000, HasOffset: true, Proof: []byte("proof"), ContentType: "a/b", Body: []byte{0}}},
		{"rotation negative offset", wire.Inner{NewClientKey: []byte("k"), TimeOffset: -5, HasOffset: true, Proof: []byte("p")}},
		{"rotation zero offset", wire.Inner{NewClientKey: []byte("k"), TimeOffset: 0, HasOffset: true, Proof: []byte("p")}},
		{"max content type", wire.Inner{ContentType: strings.Repeat("a", 1024)}},
		{"max new key", wire.Inner{NewClientKey: make([]byte, wire.MaxPublicKeySize), HasOffset: true, Proof: []byte("p")}},
		{"max proof", wire.Inner{NewClientKey: []byte("k"), HasOffset: true, Proof: make([]byte, 0xffff)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := wire.AppendInner(nil, &tt.in)
			if err != nil {
				t.Fatal(err)
			}
			got, err := wire.ParseInner(b)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.NewClientKey, tt.in.NewClientKey) || got.HasOffset != tt.in.HasOffset || got.TimeOffset != tt.in.TimeOffset ||
				!bytes.Equal(got.Proof, tt.in.Proof) || got.ContentType != tt.in.ContentType || !bytes.Equal(got.Body, tt.in.Body) {
				t.Errorf("got %+v, want %+v", got, tt.in)
			}
			if got.Rotating() != tt.in.HasOffset {
				t.Errorf("Rotating() = %v", got.Rotating())
			}
		})
	}
}

func TestInnerLayout(t *testing.T) {
	in := wire.Inner{NewClientKey: []byte{0xaa}, TimeOffset: -2, HasOffset: true, Proof: []byte{0xbb, 0xcc}, ContentType: "t/p", Body: []byte("B")}
	got, err := wire.AppendInner(nil, &in)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := hex.DecodeString("0001aa" + "0008fffffffffffffffe" + "0002bbcc" + "0003742f70" + "42")
	if !bytes.Equal(got, want) {
		t.Fatalf("got  %x\nwant %x", got, want)
	}
}

func TestParseInnerErrors(t *testing.T) {
	off := binary.BigEndian.AppendUint64(nil, 1000)
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"one byte", []byte{0}},
		{"three fields", innerBytes([4][]byte{}, "")[:6]},
		{"field past the end", []byte{0, 5, 'a'}},
		{"new key only", innerBytes([4][]byte{[]byte("k"), nil, nil, nil}, "")},
		{"offset only", innerBytes([4][]byte{nil, off, nil, nil}, "")},
		{"proof only", innerBytes([4][]byte{nil, nil, []byte("p"), nil}, "")},
		{"no new key", innerBytes([4][]byte{nil, off, []byte("p"), nil}, "")},
		{"no offset", innerBytes([4][]byte{[]byte("k"), nil, []byte("p"), nil}, "")},
		{"no proof", innerBytes([4][]byte{[]byte("k"), off, nil, nil}, "")},
		{"time_offset of 7 bytes", innerBytes([4][]byte{[]byte("k"), off[:7], []byte("p"), nil}, "")},
		{"time_offset of 9 bytes", innerBytes([4][]byte{[]byte("k"), append(off, 0), []byte("p"), nil}, "")},
		{"time_offset of 1 byte alone", innerBytes([4][]byte{nil, {0}, nil, nil}, "")},
		{"content type too long", innerBytes([4][]byte{nil, nil, nil, bytes.Repeat([]byte{'a'}, 1025)}, "")},
		{"new key too long", innerBytes([4][]byte{make([]byte, wire.MaxPublicKeySize+1), off, []byte("p"), nil}, "")},
		{"content type with CR LF", innerBytes([4][]byte{nil, nil, nil, []byte("text/plain\r\nX-Evil: 1")}, "")},
		{"content type with NUL", innerBytes([4][]byte{nil, nil, nil, []byte("text/plain\x00")}, "")},
		{"content type with DEL", innerBytes([4][]byte{nil, nil, nil, []byte("text/plain\x7f")}, "")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := wire.ParseInner(tt.b)
			if !errors.Is(err, wire.ErrFormat) || in != nil {
				t.Fatalf("ParseInner = %+v, %v; want ErrFormat", in, err)
			}
		})
	}
}

func TestAppendInnerErrors(t *testing.T) {
	tests := []struct {
		name string
		in   wire.Inner
	}{
		{"new key too long", wire.Inner{NewClientKey: make([]byte, wire.MaxPublicKeySize+1), HasOffset: true, Proof: []byte("p")}},
		{"proof too long", wire.Inner{NewClientKey: []byte("k"), HasOffset: true, Proof: make([]byte, 0x10000)}},
		{"content type too long", wire.Inner{ContentType: strings.Repeat("a", 1025)}},
		{"content type with LF", wire.Inner{ContentType: "a\nb"}},
		{"new key only", wire.Inner{NewClientKey: []byte("k")}},
		{"offset only", wire.Inner{HasOffset: true}},
		{"proof only", wire.Inner{Proof: []byte("p")}},
		{"no proof", wire.Inner{NewClientKey: []byte("k"), HasOffset: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if b, err := wire.AppendInner(nil, &tt.in); !errors.Is(err, wire.ErrFormat) {
				t.Fatalf("AppendInner = %x, %v; want ErrFormat", b, err)
			}
		})
	}
}

func TestContentTypeCharacters(t *testing.T) {
	tests := []struct {
		name string
		ct   string
		ok   bool
	}{
		{"empty", "", true},
		{"media type", "application/json", true},
		{"parameters with tab", "text/plain;\tcharset=utf-8", true},
		{"obs-text", "text/plain; x=\xe9", true},
		{"CR", "text/plain\r", false},
		{"LF", "text/plain\n", false},
		{"NUL", "\x00", false},
		{"US", "a\x1fb", false},
		{"DEL", "a\x7f", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := wire.AppendInner(nil, &wire.Inner{ContentType: tt.ct})
			if (err == nil) != tt.ok {
				t.Fatalf("AppendInner: %v, want ok=%v", err, tt.ok)
			}
			if _, err := wire.ParseInner(innerBytes([4][]byte{nil, nil, nil, []byte(tt.ct)}, "")); (err == nil) != tt.ok {
				t.Fatalf("ParseInner: %v, want ok=%v", err, tt.ok)
			}
			if b != nil {
				if in, err := wire.ParseInner(b); err != nil || in.ContentType != tt.ct {
					t.Fatalf("round trip: %v", err)
				}
			}
			if _, err := wire.SealResponse(bytes.NewReader(make([]byte, 32)), make([]byte, 32), [16]byte{}, 200, tt.ct, nil); (err == nil) != tt.ok {
				t.Fatalf("SealResponse: %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestProofAAD(t *testing.T) {
	var mid [wire.MessageIDSize]byte
	copy(mid[:], "0123456789abcdef")
	var cur wire.KeyID
	copy(cur[:], "curkeyid")
	got := wire.ProofAAD(mid, cur, []byte{1, 2, 3})
	want := append([]byte("dynkey/v1 rotation proof aad\x00"), "0123456789abcdef"...)
	want = append(want, "curkeyid"...)
	want = append(want, 0, 3, 1, 2, 3)
	if !bytes.Equal(got, want) {
		t.Fatalf("got  %x\nwant %x", got, want)
	}
}

func TestComputeKeyID(t *testing.T) {
	f := readVectors(t)
	for _, v := range f.Vectors {
		for _, name := range []string{"server", "old_server", "client", "new_client"} {
			kp, _ := v.keyPair(name)
			if id := wire.ComputeKeyID(v.Suite, kp.PublicKey); !bytes.Equal(id[:], kp.KeyID) {
				t.Errorf("%s %s: ComputeKeyID = %s, want %x", v.Suite, name, id, kp.KeyID)
			}
		}
	}
	// Known values, pinned here so a silent change of the vector file is
	// caught too.
	pub, _ := hex.DecodeString("8d40b286544a55a409002b2606daf2ed8de527a5580fc5a3bc539213befd185b")
	if id := wire.ComputeKeyID("ecies-x25519", pub); id.String() != "2f91e5d4c78743e7" {
		t.Errorf("ComputeKeyID(x25519 server key) = %s, want 2f91e5d4c78743e7", id)
	}
	// The suite is bound into the id.
	if wire.ComputeKeyID("ecies-x25519", pub) == wire.ComputeKeyID("ecies-p256", pub) {
		t.Error("the key id does not depend on the suite")
	}
}

func TestParseKeyID(t *testing.T) {
	tests := []struct {
		name string
		s    string
		ok   bool
	}{
		{"lower hex", "2f91e5d4c78743e7", true},
		{"empty", "", false},
		{"short", "2f91e5d4c78743", false},
		{"long", "2f91e5d4c78743e700", false},
		{"not hex", "2f91e5d4c78743zz", false},
		{"odd", "2f91e5d4c78743e", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := wire.ParseKeyID(tt.s)
			if (err == nil) != tt.ok {
				t.Fatalf("ParseKeyID(%q) = %v, want ok=%v", tt.s, err, tt.ok)
			}
			if err != nil && !errors.Is(err, wire.ErrFormat) {
				t.Errorf("error %v does not wrap ErrFormat", err)
			}
			if tt.ok && id.String() != tt.s {
				t.Errorf("String() = %s", id)
			}
		})
	}
}
