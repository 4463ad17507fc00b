package wire_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"testing"

	"github.com/dynkey/dynkey/wire"
)

// The fuzz targets are seeded from testdata/protocol-vectors.json; crashers
// found by go test -fuzz are kept under testdata/fuzz/<target>/.
//
//	go test ./wire -run X -fuzz FuzzParseRequest -fuzztime 20s

func vectorMessages(f *testing.F) []*messageVector {
	f.Helper()
	var ms []*messageVector
	for _, v := range readVectors(f).Vectors {
		ms = append(ms, &v.Login, &v.Request, &v.Rotation)
	}
	return ms
}

func FuzzParseRequest(f *testing.F) {
	for _, m := range vectorMessages(f) {
		f.Add([]byte(m.Envelope))
	}
	f.Add(envelope(f, loginHeader(), []byte{0}))
	f.Add([]byte("DK\x01\x02"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := wire.ParseRequest(b)
		if err != nil {
			if !errors.Is(err, wire.ErrFormat) || r != nil {
				t.Fatalf("ParseRequest = %v, %v", r, err)
			}
			return
		}
		// The header re-encodes to exactly the bytes it was parsed from:
		// there is one encoding of every header.
		hb, err := wire.AppendRequestHeader(nil, &r.RequestHeader)
		if err != nil {
			t.Fatalf("parsed header does not re-encode: %v", err)
		}
		if !bytes.Equal(hb, r.Header) {
			t.Fatalf("re-encoded header\n%x\nparsed from\n%x", hb, r.Header)
		}
		if len(r.Ciphertext) == 0 || len(r.Header)+len(r.Ciphertext) != len(b) || !bytes.Equal(append(hb, r.Ciphertext...), b) {
			t.Fatal("Header || Ciphertext is not the envelope")
		}
	})
}

func FuzzParseInner(f *testing.F) {
	for _, m := range vectorMessages(f) {
		f.Add([]byte(m.InnerBytes))
	}
	f.Add([]byte{})
	f.Add(innerBytes([4][]byte{[]byte("k"), {0, 0, 0, 0, 0, 0, 0, 1}, []byte("p"), []byte("a/b")}, "body"))
	f.Fuzz(func(t *testing.T, b []byte) {
		in, err := wire.ParseInner(b)
		if err != nil {
			if !errors.Is(err, wire.ErrFormat) || in != nil {
				t.Fatalf("ParseInner = %v, %v", in, err)
			}
			return
		}
		// parse → append → parse is stable, and append gives back the
		// input: there is one encoding of every inner plaintext.
		b2, err := wire.AppendInner(nil, in)
		if err != nil {
			t.Fatalf("parsed inner does not re-encode: %v", err)
		}
		if !bytes.Equal(b2, b) {
			t.Fatalf("re-encoded\n%x\nparsed from\n%x", b2, b)
		}
		in2, err := wire.ParseInner(b2)
		if err != nil {
			t.Fatalf("re-encoded inner does not parse: %v", err)
		}
		if !bytes.Equal(in2.NewClientKey, in.NewClientKey) || in2.HasOffset != in.HasOffset || in2.TimeOffset != in.TimeOffset ||
			!bytes.Equal(in2.Proof, in.Proof) || in2.ContentType != in.ContentType || !bytes.Equal(in2.Body, in.Body) {
			t.Fatalf("unstable: %+v then %+v", in, in2)
		}
	})
}

func FuzzOpenResponse(f *testing.F) {
	for _, m := range vectorMessages(f) {
		f.Add([]byte(m.Secret), []byte(m.Header.MessageID), m.Response.Status, []byte(m.Response.Envelope))
	}
	f.Add(testSecret, testMsgID[:], 204, sealTest(f, 204, "", nil))
	f.Fuzz(func(t *testing.T, secret, id []byte, status int, env []byte) {
		var mid [wire.MessageIDSize]byte
		copy(mid[:], id)
		ct, body, err := wire.OpenResponse(secret, mid, status, env)
		if err != nil {
			if ct != "" || body != nil {
				t.Fatal("output on error")
			}
			return
		}
		// An opened response is the only envelope for its inputs: sealing
		// them again with its nonce gives back the same bytes.
		again, err := wire.SealResponse(bytes.NewReader(env[6:38]), secret, mid, status, ct, body)
		if err != nil {
			t.Fatalf("opened response does not re-seal: %v", err)
		}
		if !bytes.Equal(again, env) {
			t.Fatalf("re-sealed\n%x\nopened\n%x", again, env)
		}
	})
}

// fuzzIdentity signs fuzzed payloads, so that the payload parser is reached.
var fuzzIdentity = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0xf2}, ed25519.SeedSize))

func FuzzVerifyDirectory(f *testing.F) {
	for _, v := range readVectors(f).Vectors {
		f.Add([]byte(v.Directory.Document))
		f.Add([]byte(v.Directory.Payload))
	}
	f.Add([]byte(`{"version":1,"epoch":0,"suite":"a","s_time":0,"keys":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		// As a served document, trusting the identity it names (trust on
		// first use).
		var sd wire.SignedDirectory
		if json.Unmarshal(b, &sd) == nil {
			d, err := sd.Verify(ed25519.PublicKey(sd.Identity))
			checkVerified(t, d, err)
		}
		// As a payload signed by the trusted identity.
		sd = wire.SignedDirectory{Identity: wire.B64(fuzzIdentity.Public().(ed25519.PublicKey)), Payload: b,
			Signature: ed25519.Sign(fuzzIdentity, append([]byte("dynkey/v1 key directory\x00"), b...))}
		d, err := sd.Verify(fuzzIdentity.Public().(ed25519.PublicKey))
		checkVerified(t, d, err)
		if err != nil {
			return
		}
		// A verified directory signs and verifies again to itself.
		sd2, err := wire.SignDirectory(fuzzIdentity, d)
		if err != nil {
			t.Fatalf("verified directory does not sign: %v", err)
		}
		d2, err := sd2.Verify(fuzzIdentity.Public().(ed25519.PublicKey))
		if err != nil {
			t.Fatalf("re-signed directory does not verify: %v\n%s", err, sd2.Payload)
		}
		if d2.Version != d.Version || d2.Epoch != d.Epoch || d2.Suite != d.Suite || d2.STime != d.STime || len(d2.Keys) != len(d.Keys) {
			t.Fatalf("re-signed directory differs: %+v, %+v", d, d2)
		}
	})
}

func checkVerified(t *testing.T, d *wire.Directory, err error) {
	t.Helper()
	if err != nil {
		if !errors.Is(err, wire.ErrDirectory) || d != nil {
			t.Fatalf("Verify = %v, %v", d, err)
		}
		return
	}
	primaries := 0
	for _, k := range d.Keys {
		if k.ID != wire.ComputeKeyID(d.Suite, k.Public).String() {
			t.Fatalf("key id %s does not match its key", k.ID)
		}
		if k.Status == wire.StatusPrimary {
			primaries++
		} else if k.Status != wire.StatusDecryptOnly {
			t.Fatalf("status %q", k.Status)
		}
	}
	if primaries != 1 {
		t.Fatalf("%d primaries", primaries)
	}
}
