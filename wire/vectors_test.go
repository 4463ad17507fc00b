package wire_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dynkey/dynkey/crypto"
	"github.com/dynkey/dynkey/crypto/ecies"
	"github.com/dynkey/dynkey/wire"
)

// The protocol test vectors live at the repository root, for implementers
// in other languages: testdata/protocol-vectors.json. TestProtocolVectors
// re-derives every output in it from its inputs alone and compares byte for
// byte; with -update it first rewrites the file from vectorInputs.
//
//	go test ./wire -run TestProtocolVectors -update
//
// Regenerating the file is a wire-format change.
var update = flag.Bool("update", false, "rewrite ../testdata/protocol-vectors.json from the current implementation")

var vectorPath = filepath.Join("..", "testdata", "protocol-vectors.json")

// hexBytes is a byte string that is lower-case hex in JSON.
type hexBytes []byte

func (h hexBytes) MarshalText() ([]byte, error) { return []byte(hex.EncodeToString(h)), nil }

func (h *hexBytes) UnmarshalText(b []byte) error {
	if bytes.ContainsFunc(b, func(r rune) bool { return r >= 'A' && r <= 'F' }) {
		return fmt.Errorf("hex %q is not lower-case", b)
	}
	d, err := hex.DecodeString(string(b))
	*h = d
	return err
}

// The file's JSON shape. "in" marks inputs, "out" outputs that the test
// derives from the inputs. Byte strings are lower-case hex; text (method,
// path, query, info, suite, content types, codes) is a JSON string; integers
// are JSON numbers.

type vectorFile struct {
	Comment string         `json:"comment"`
	Vectors []suiteVectors `json:"vectors"`
}

type suiteVectors struct {
	Suite     string          `json:"suite"`     // in
	HPKE      hpkeParams      `json:"hpke"`      // out (informative)
	Keys      vectorKeys      `json:"keys"`      // see keyPair
	Identity  identityVector  `json:"identity"`  // see identityVector
	Directory directoryVector `json:"directory"` // see directoryVector
	Login     messageVector   `json:"login"`
	Request   messageVector   `json:"request"`
	Rotation  messageVector   `json:"rotation"`
	// HeaderGet is a GET whose envelope travels in the Dynkey-Envelope
	// header; Head a HEAD request, whose response envelope travels in the
	// Dynkey-Response header (docs/PROTOCOL.md §4 and §5).
	HeaderGet messageVector   `json:"header_get"`
	Head      messageVector   `json:"head"`
	Problems  []problemVector `json:"problems"`
}

type hpkeParams struct {
	Mode            int    `json:"mode"`
	KEMID           int    `json:"kem_id"`
	KDFID           int    `json:"kdf_id"`
	AEADID          int    `json:"aead_id"`
	ExporterContext string `json:"exporter_context"`
	SecretLength    int    `json:"secret_length"`
}

type vectorKeys struct {
	Server    keyPair `json:"server"`
	OldServer keyPair `json:"old_server"`
	Client    keyPair `json:"client"`
	NewClient keyPair `json:"new_client"`
}

type keyPair struct {
	Seed       hexBytes `json:"seed"`        // in: the 32 bytes GenerateKey reads
	PrivateKey hexBytes `json:"private_key"` // out: DeriveKeyPair(seed), SerializePrivateKey
	PublicKey  hexBytes `json:"public_key"`  // out: SerializePublicKey
	KeyID      hexBytes `json:"key_id"`      // out: ComputeKeyID(suite, public_key)
}

type identityVector struct {
	Seed      hexBytes `json:"seed"`       // in: Ed25519 seed (RFC 8032 private key)
	PublicKey hexBytes `json:"public_key"` // out
}

type directoryVector struct {
	Version        int            `json:"version"` // in
	Epoch          uint64         `json:"epoch"`   // in
	STime          int64          `json:"s_time"`  // in
	Keys           []dirKeyVector `json:"keys"`
	Payload        hexBytes       `json:"payload"`         // out: the signed JSON payload
	SignatureInput hexBytes       `json:"signature_input"` // out: "dynkey/v1 key directory" || 0x00 || payload
	Signature      hexBytes       `json:"signature"`       // out: Ed25519(identity, signature_input)
	Document       hexBytes       `json:"document"`        // out: the SignedDirectory JSON as served
}

type dirKeyVector struct {
	Key     string   `json:"key"`     // in: name of a key pair in "keys"
	ID      string   `json:"id"`      // out: its key id, hex
	Public  hexBytes `json:"public"`  // out: its public key (base64url in the payload)
	Status  string   `json:"status"`  // in
	Expires int64    `json:"expires"` // in: 0 for the primary
}

type messageVector struct {
	Method      string       `json:"method"`    // in
	Path        string       `json:"path"`      // in: escaped path
	Query       string       `json:"query"`     // in: raw query, without '?'
	Sender      string       `json:"sender"`    // in: key pair that seals (HPKE skS)
	Recipient   string       `json:"recipient"` // in: key pair sealed to (HPKE pkR)
	Info        string       `json:"info"`      // out: HPKE info
	Header      headerVector `json:"header"`
	HeaderBytes hexBytes     `json:"header_bytes"` // out: AppendRequestHeader
	Proof       *proofVector `json:"proof"`        // in: null unless rotating
	Inner       innerVector  `json:"inner"`
	InnerBytes  hexBytes     `json:"inner_bytes"`    // out: AppendInner, the HPKE plaintext
	AAD         hexBytes     `json:"aad"`            // out: RequestAAD
	EphSeed     hexBytes     `json:"ephemeral_seed"` // in: the 32 bytes Seal reads
	Ciphertext  hexBytes     `json:"ciphertext"`     // out: enc || AEAD ciphertext
	Envelope    hexBytes     `json:"envelope"`       // out: header_bytes || ciphertext
	Secret      hexBytes     `json:"secret"`         // out: HPKE Export("dynkey/v1 message secret", 32)
	Response    responseVec  `json:"response"`
	// Transport is "header" when the envelope travels in the
	// Dynkey-Envelope request header (in), absent for a body.
	Transport string `json:"transport,omitempty"`
	// EnvelopeHeader is the Dynkey-Envelope header value: base64url
	// without padding of envelope (out, header transport only).
	EnvelopeHeader string `json:"envelope_header,omitempty"`
}

type headerVector struct {
	Type        byte     `json:"type"`          // in
	Suite       string   `json:"suite"`         // out: the vector's suite
	ServerKeyID hexBytes `json:"server_key_id"` // out: recipient's key id
	ClientKey   hexBytes `json:"client_key"`    // out: sender's public key (login) or key id (request)
	Token       hexBytes `json:"token"`         // in: empty for login
	MessageID   hexBytes `json:"message_id"`    // in
	STime       uint64   `json:"s_time"`        // in
	Elapsed     uint64   `json:"elapsed"`       // in
}

type proofVector struct {
	Sender     string   `json:"sender"`         // in: the new client key pair
	Recipient  string   `json:"recipient"`      // in
	Info       string   `json:"info"`           // out
	AAD        hexBytes `json:"aad"`            // out: ProofAAD(message_id, current client key id, new public key)
	EphSeed    hexBytes `json:"ephemeral_seed"` // in
	Ciphertext hexBytes `json:"ciphertext"`     // out: Seal(..., plaintext = empty)
}

type innerVector struct {
	NewClientKey hexBytes `json:"new_client_key"` // out: proof sender's public key, or empty
	TimeOffset   *int64   `json:"time_offset"`    // in: null when not rotating
	Proof        hexBytes `json:"proof"`          // out: proof.ciphertext, or empty
	ContentType  string   `json:"content_type"`   // in
	Body         hexBytes `json:"body"`           // in
}

type responseVec struct {
	Nonce       hexBytes `json:"nonce"`        // in: the 32 bytes SealResponse reads
	Status      int      `json:"status"`       // in
	ContentType string   `json:"content_type"` // in
	Body        hexBytes `json:"body"`         // in
	Key         hexBytes `json:"key"`          // out: HKDF output bytes 0..31, AES-256-GCM key
	AEADNonce   hexBytes `json:"aead_nonce"`   // out: HKDF output bytes 32..43
	Plaintext   hexBytes `json:"plaintext"`    // out: u16 len(content_type) || content_type || body
	AAD         hexBytes `json:"aad"`          // out: envelope bytes 0..37 || u16 status || message_id
	Envelope    hexBytes `json:"envelope"`     // out
	// Header is the Dynkey-Response header value of a HEAD response:
	// base64url without padding of envelope, whose body is empty (out, HEAD
	// only).
	Header string `json:"header,omitempty"`
}

type problemVector struct {
	Code          string   `json:"code"`           // in
	Detail        string   `json:"detail"`         // in
	STime         int64    `json:"s_time"`         // in: 0 = absent
	WithDirectory bool     `json:"with_directory"` // in: carries the signed directory
	Status        int      `json:"status"`         // out
	Type          string   `json:"type"`           // out
	Title         string   `json:"title"`          // out (informative)
	JSON          hexBytes `json:"json"`           // out: the body as this implementation emits it
}

const vectorComment = "dynkey protocol test vectors (wire format v1). Generated by `go test ./wire -run TestProtocolVectors -update`; " +
	"the same test without -update re-derives every output from the inputs in this file and compares byte for byte. " +
	"Byte strings are lower-case hex; text is a JSON string; integers are JSON numbers. " +
	"Key pairs are GenerateKey reading `seed` (= RFC 9180 DeriveKeyPair(seed)); each Seal reads `ephemeral_seed` as ikmE; " +
	"SealResponse reads `nonce`. JSON bodies (inner.body, response.body, problems[].json, directory.payload) are the bytes " +
	"this implementation emits; other implementations need only emit equivalent JSON, but must sign and verify " +
	"directory.payload as the exact bytes. See docs/PROTOCOL.md."

// vectorSuites are the suites the file covers, in file order.
var vectorSuites = []crypto.Suite{ecies.X25519(), ecies.P256()}

func vseed(suite, role string, n int) []byte {
	h := sha256.Sum256([]byte("dynkey/v1 protocol vector " + suite + " " + role))
	return h[:n]
}

func i64(v int64) *int64 { return &v }

// Fixed times, ms since the Unix epoch (2026-01-01T00:00:00Z onwards).
const (
	tDirectory    = 1767225600000
	tLoginSent    = 250 // elapsed at login
	tLoginServer  = 1767225600300
	tRequestElaps = 1200  // elapsed at the request
	tRotateElaps  = 60000 // elapsed at the rotation
	tTokenTTL     = 3600000
	tOldKeyGrace  = 86400000
)

// vectorInputs returns the inputs of the vectors of suite s. Bodies that
// embed outputs (the login response carries the signed directory) are
// filled in by fillBodies once those outputs are derived.
func vectorInputs(s crypto.Suite) *suiteVectors {
	n := s.Name()
	v := &suiteVectors{Suite: n}
	v.Keys.Server.Seed = vseed(n, "server key", 32)
	v.Keys.OldServer.Seed = vseed(n, "old server key", 32)
	v.Keys.Client.Seed = vseed(n, "client key", 32)
	v.Keys.NewClient.Seed = vseed(n, "new client key", 32)
	v.Identity.Seed = vseed(n, "identity", ed25519.SeedSize)
	v.Directory = directoryVector{Version: 1, Epoch: 2, STime: tDirectory, Keys: []dirKeyVector{
		{Key: "server", Status: wire.StatusPrimary},
		{Key: "old_server", Status: wire.StatusDecryptOnly, Expires: tDirectory + tOldKeyGrace},
	}}

	// The token is opaque to the client. These bytes have the shape of a
	// server token (0x01 || server key id || 24-byte nonce || 79 bytes of
	// sealed claims) but are arbitrary.
	token := append([]byte{1}, vseed(n, "token key id placeholder", 8)...)
	token = append(token, vseed(n, "token nonce", 24)...)
	token = append(token, vseed(n, "token claims a", 32)...)
	token = append(token, vseed(n, "token claims b", 32)...)
	token = append(token, vseed(n, "token claims c", 15)...)

	v.Login = messageVector{
		Method: "POST", Path: wire.PathLogin, Query: "", Sender: "client", Recipient: "server",
		Header: headerVector{Type: wire.TypeLogin, MessageID: vseed(n, "login message id", 16),
			STime: tDirectory, Elapsed: tLoginSent},
		Inner:   innerVector{ContentType: "application/json"},
		EphSeed: vseed(n, "login ephemeral", 32),
		Response: responseVec{Nonce: vseed(n, "login response nonce", 32), Status: 200,
			ContentType: "application/json"},
	}
	lr, _ := json.Marshal(wire.LoginRequest{Username: "alice", Password: "correct horse battery staple"})
	v.Login.Inner.Body = lr

	v.Request = messageVector{
		Method: "POST", Path: "/api/echo", Query: "x=1", Sender: "client", Recipient: "server",
		Header: headerVector{Type: wire.TypeRequest, Token: token, MessageID: vseed(n, "request message id", 16),
			STime: tLoginServer, Elapsed: tRequestElaps},
		Inner:   innerVector{ContentType: "text/plain", Body: []byte("hello")},
		EphSeed: vseed(n, "request ephemeral", 32),
		Response: responseVec{Nonce: vseed(n, "request response nonce", 32), Status: 200,
			ContentType: "text/plain", Body: []byte("hello")},
	}

	// A heartbeat that rotates the client key: empty content type and body.
	v.Rotation = messageVector{
		Method: "POST", Path: wire.PathHeartbeat, Query: "", Sender: "client", Recipient: "server",
		Header: headerVector{Type: wire.TypeRequest, Token: token, MessageID: vseed(n, "rotation message id", 16),
			STime: tLoginServer, Elapsed: tRotateElaps},
		Proof:   &proofVector{Sender: "new_client", Recipient: "server", EphSeed: vseed(n, "proof ephemeral", 32)},
		Inner:   innerVector{TimeOffset: i64(tRotateElaps), ContentType: ""},
		EphSeed: vseed(n, "rotation ephemeral", 32),
		Response: responseVec{Nonce: vseed(n, "rotation response nonce", 32), Status: 200,
			ContentType: "application/json"},
	}

	// A GET through the header: empty request body, a JSON response.
	v.HeaderGet = messageVector{
		Method: "GET", Path: "/api/items/7", Query: "fields=name%2Cprice", Sender: "client", Recipient: "server",
		Transport: "header",
		Header: headerVector{Type: wire.TypeRequest, Token: token, MessageID: vseed(n, "header get message id", 16),
			STime: tLoginServer, Elapsed: tRequestElaps + 500},
		Inner:   innerVector{ContentType: ""},
		EphSeed: vseed(n, "header get ephemeral", 32),
		Response: responseVec{Nonce: vseed(n, "header get response nonce", 32), Status: 200,
			ContentType: "application/json", Body: []byte(`{"id":7,"name":"tea","price":3}`)},
	}
	// A HEAD: the response's envelope seals the status and content type
	// with an empty body, and travels in Dynkey-Response.
	v.Head = messageVector{
		Method: "HEAD", Path: "/api/items/7", Query: "", Sender: "client", Recipient: "server",
		Transport: "header",
		Header: headerVector{Type: wire.TypeRequest, Token: token, MessageID: vseed(n, "head message id", 16),
			STime: tLoginServer, Elapsed: tRequestElaps + 900},
		Inner:   innerVector{ContentType: ""},
		EphSeed: vseed(n, "head ephemeral", 32),
		Response: responseVec{Nonce: vseed(n, "head response nonce", 32), Status: 200,
			ContentType: "application/json"},
	}

	v.Problems = []problemVector{
		{Code: string(wire.CodeStale), Detail: "message time is outside the freshness window", STime: tLoginServer + 120000},
		{Code: string(wire.CodeServerKeyUnknown), Detail: "unknown or retired server key 0011223344556677", WithDirectory: true},
		{Code: string(wire.CodeTokenExpired), Detail: "log in again"},
	}
	return v
}

// fillBodies sets the response bodies that embed derived values: they are
// inputs of the file, written once by -update.
func fillBodies(t *testing.T, v *suiteVectors) {
	t.Helper()
	sd := signedDirectoryOf(t, &v.Directory, &v.Identity)
	b, err := json.Marshal(wire.LoginResponse{
		Token:        wire.B64(v.Request.Header.Token),
		TokenExpires: tLoginServer + tTokenTTL,
		ClientKeyID:  hex.EncodeToString(v.Keys.Client.KeyID),
		STime:        tLoginServer,
		Directory:    sd,
	})
	if err != nil {
		t.Fatal(err)
	}
	v.Login.Response.Body = b
	b, err = json.Marshal(wire.HeartbeatResponse{STime: tLoginServer + tRotateElaps + 5, Directory: sd})
	if err != nil {
		t.Fatal(err)
	}
	v.Rotation.Response.Body = b
}

// signedDirectoryOf rebuilds the SignedDirectory from derived fields.
func signedDirectoryOf(t *testing.T, d *directoryVector, id *identityVector) *wire.SignedDirectory {
	t.Helper()
	return &wire.SignedDirectory{Identity: wire.B64(id.PublicKey), Payload: wire.B64(d.Payload), Signature: wire.B64(d.Signature)}
}

// exactReader yields seed and then fails, so a reader of more bytes than
// the seed is caught; remaining reports what was not read.
type exactReader struct{ b []byte }

func (r *exactReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, errors.New("vector: randomness exhausted")
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// withSeed runs f with a reader of exactly seed and checks f read all of it.
func withSeed(seed []byte, what string, f func(io.Reader) error) error {
	r := &exactReader{b: bytes.Clone(seed)}
	if err := f(r); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%s: read %d of the %d seed bytes", what, len(seed)-len(r.b), len(seed))
	}
	return nil
}

// derivedKeys maps the key pair names used in the file to the derived
// private keys.
type derivedKeys map[string]crypto.PrivateKey

func (v *suiteVectors) keyPair(name string) (*keyPair, error) {
	switch name {
	case "server":
		return &v.Keys.Server, nil
	case "old_server":
		return &v.Keys.OldServer, nil
	case "client":
		return &v.Keys.Client, nil
	case "new_client":
		return &v.Keys.NewClient, nil
	}
	return nil, fmt.Errorf("unknown key pair %q", name)
}

// derive computes a complete vector set from the inputs of in alone; it
// reads no output field of in.
func derive(in *suiteVectors) (*suiteVectors, error) {
	s, err := crypto.Lookup(in.Suite)
	if err != nil {
		return nil, err
	}
	out := &suiteVectors{Suite: in.Suite}
	switch in.Suite {
	case ecies.NameX25519:
		out.HPKE = hpkeParams{Mode: 2, KEMID: 0x0020, KDFID: 1, AEADID: 3}
	case ecies.NameP256:
		out.HPKE = hpkeParams{Mode: 2, KEMID: 0x0010, KDFID: 1, AEADID: 1}
	}
	out.HPKE.ExporterContext, out.HPKE.SecretLength = "dynkey/v1 message secret", crypto.SecretSize

	// Key pairs.
	priv := derivedKeys{}
	for _, name := range []string{"server", "old_server", "client", "new_client"} {
		src, _ := in.keyPair(name)
		dst, _ := out.keyPair(name)
		dst.Seed = src.Seed
		var k crypto.PrivateKey
		if err := withSeed(src.Seed, "key "+name, func(r io.Reader) (err error) {
			k, err = s.GenerateKey(r)
			return err
		}); err != nil {
			return nil, err
		}
		priv[name] = k
		id := wire.ComputeKeyID(s.Name(), k.Public().Bytes())
		dst.PrivateKey, dst.PublicKey, dst.KeyID = k.Bytes(), k.Public().Bytes(), id[:]
	}

	// Identity and directory.
	if len(in.Identity.Seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("identity seed of %d bytes", len(in.Identity.Seed))
	}
	identity := ed25519.NewKeyFromSeed(in.Identity.Seed)
	out.Identity = identityVector{Seed: in.Identity.Seed, PublicKey: hexBytes(identity.Public().(ed25519.PublicKey))}
	d := &wire.Directory{Version: in.Directory.Version, Epoch: in.Directory.Epoch, Suite: s.Name(), STime: in.Directory.STime}
	out.Directory = directoryVector{Version: in.Directory.Version, Epoch: in.Directory.Epoch, STime: in.Directory.STime}
	for _, k := range in.Directory.Keys {
		kp, err := out.keyPair(k.Key)
		if err != nil {
			return nil, err
		}
		id := hex.EncodeToString(kp.KeyID)
		d.Keys = append(d.Keys, wire.DirectoryKey{ID: id, Public: kp.PublicKey, Status: k.Status, Expires: k.Expires})
		out.Directory.Keys = append(out.Directory.Keys, dirKeyVector{Key: k.Key, ID: id, Public: kp.PublicKey, Status: k.Status, Expires: k.Expires})
	}
	sd, err := wire.SignDirectory(identity, d)
	if err != nil {
		return nil, err
	}
	out.Directory.Payload = hexBytes(sd.Payload)
	out.Directory.SignatureInput = append([]byte("dynkey/v1 key directory\x00"), sd.Payload...)
	out.Directory.Signature = hexBytes(sd.Signature)
	if out.Directory.Document, err = json.Marshal(sd); err != nil {
		return nil, err
	}

	// Messages.
	for _, m := range []struct {
		in  *messageVector
		out *messageVector
	}{{&in.Login, &out.Login}, {&in.Request, &out.Request}, {&in.Rotation, &out.Rotation},
		{&in.HeaderGet, &out.HeaderGet}, {&in.Head, &out.Head}} {
		if err := deriveMessage(s, out, priv, m.in, m.out); err != nil {
			return nil, fmt.Errorf("%s %s: %w", m.in.Method, m.in.Path, err)
		}
	}

	// Problems.
	for _, p := range in.Problems {
		pr := wire.NewProblem(wire.Code(p.Code), p.Detail)
		pr.STime = p.STime
		if p.WithDirectory {
			pr.Directory = sd
		}
		b, err := json.Marshal(pr)
		if err != nil {
			return nil, err
		}
		out.Problems = append(out.Problems, problemVector{Code: p.Code, Detail: p.Detail, STime: p.STime,
			WithDirectory: p.WithDirectory, Status: pr.Status, Type: pr.Type, Title: pr.Title, JSON: b})
	}
	return out, nil
}

func deriveMessage(s crypto.Suite, v *suiteVectors, priv derivedKeys, in, out *messageVector) error {
	sender, err := v.keyPair(in.Sender)
	if err != nil {
		return err
	}
	recipient, err := v.keyPair(in.Recipient)
	if err != nil {
		return err
	}
	*out = messageVector{Method: in.Method, Path: in.Path, Query: in.Query, Sender: in.Sender, Recipient: in.Recipient, EphSeed: in.EphSeed}

	h := wire.RequestHeader{Type: in.Header.Type, Suite: s.Name(), Token: in.Header.Token,
		STime: in.Header.STime, Elapsed: in.Header.Elapsed}
	copy(h.ServerKeyID[:], recipient.KeyID)
	if len(in.Header.MessageID) != wire.MessageIDSize {
		return fmt.Errorf("message id of %d bytes", len(in.Header.MessageID))
	}
	copy(h.MessageID[:], in.Header.MessageID)
	switch h.Type {
	case wire.TypeLogin:
		h.ClientKey, out.Info = sender.PublicKey, wire.InfoLogin
	default:
		h.ClientKey, out.Info = sender.KeyID, wire.InfoRequest
	}
	out.Header = headerVector{Type: h.Type, Suite: h.Suite, ServerKeyID: h.ServerKeyID[:], ClientKey: h.ClientKey,
		Token: h.Token, MessageID: h.MessageID[:], STime: h.STime, Elapsed: h.Elapsed}
	if out.HeaderBytes, err = wire.AppendRequestHeader(nil, &h); err != nil {
		return err
	}

	inner := wire.Inner{ContentType: in.Inner.ContentType, Body: in.Inner.Body}
	if in.Inner.TimeOffset != nil {
		inner.TimeOffset, inner.HasOffset = *in.Inner.TimeOffset, true
	}
	if in.Proof != nil {
		newKey, err := v.keyPair(in.Proof.Sender)
		if err != nil {
			return err
		}
		proofTo, err := v.keyPair(in.Proof.Recipient)
		if err != nil {
			return err
		}
		var cur wire.KeyID
		copy(cur[:], sender.KeyID)
		p := &proofVector{Sender: in.Proof.Sender, Recipient: in.Proof.Recipient, Info: wire.InfoProof,
			AAD: wire.ProofAAD(h.MessageID, cur, newKey.PublicKey), EphSeed: in.Proof.EphSeed}
		to, err := s.ParsePublicKey(proofTo.PublicKey)
		if err != nil {
			return err
		}
		if err := withSeed(p.EphSeed, "proof seal", func(r io.Reader) (err error) {
			p.Ciphertext, _, err = s.Seal(r, to, priv[in.Proof.Sender], []byte(p.Info), p.AAD, nil)
			return err
		}); err != nil {
			return err
		}
		out.Proof = p
		inner.NewClientKey, inner.Proof = newKey.PublicKey, p.Ciphertext
	}
	out.Inner = innerVector{NewClientKey: inner.NewClientKey, Proof: inner.Proof, ContentType: inner.ContentType, Body: inner.Body}
	if inner.HasOffset {
		out.Inner.TimeOffset = i64(inner.TimeOffset)
	}
	if out.InnerBytes, err = wire.AppendInner(nil, &inner); err != nil {
		return err
	}
	out.AAD = wire.RequestAAD(in.Method, in.Path, in.Query, out.HeaderBytes)
	to, err := s.ParsePublicKey(recipient.PublicKey)
	if err != nil {
		return err
	}
	if err := withSeed(in.EphSeed, "seal", func(r io.Reader) (err error) {
		out.Ciphertext, out.Secret, err = s.Seal(r, to, priv[in.Sender], []byte(out.Info), out.AAD, out.InnerBytes)
		return err
	}); err != nil {
		return err
	}
	out.Envelope = append(bytes.Clone(out.HeaderBytes), out.Ciphertext...)
	switch in.Transport {
	case "":
	case "header":
		out.Transport = in.Transport
		// Computed here from RFC 4648 §5 (URL alphabet, no padding),
		// independently of wire.EncodeHeaderEnvelope.
		out.EnvelopeHeader = strings.TrimRight(base64.URLEncoding.EncodeToString(out.Envelope), "=")
		if len(out.EnvelopeHeader) > wire.MaxEnvelopeHeaderSize {
			return fmt.Errorf("header envelope of %d bytes", len(out.EnvelopeHeader))
		}
	default:
		return fmt.Errorf("transport %q", in.Transport)
	}

	// Response. The intermediate values are computed here independently of
	// wire, from the construction in docs/PROTOCOL.md, and the envelope
	// from them must equal what SealResponse makes.
	r := in.Response
	out.Response = responseVec{Nonce: r.Nonce, Status: r.Status, ContentType: r.ContentType, Body: r.Body}
	okm, err := hkdf.Key(sha256.New, out.Secret, r.Nonce, "dynkey/v1 response", 44)
	if err != nil {
		return err
	}
	out.Response.Key, out.Response.AEADNonce = okm[:32], okm[32:]
	out.Response.Plaintext = append(binary.BigEndian.AppendUint16(nil, uint16(len(r.ContentType))), r.ContentType...)
	out.Response.Plaintext = append(out.Response.Plaintext, r.Body...)
	head := append([]byte{'D', 'K', wire.Version, wire.TypeResponse}, binary.BigEndian.AppendUint16(nil, uint16(len(r.Nonce)))...)
	head = append(head, r.Nonce...)
	out.Response.AAD = append(binary.BigEndian.AppendUint16(bytes.Clone(head), uint16(r.Status)), h.MessageID[:]...)
	if err := withSeed(r.Nonce, "response seal", func(rnd io.Reader) (err error) {
		out.Response.Envelope, err = wire.SealResponse(rnd, out.Secret, h.MessageID, r.Status, r.ContentType, r.Body)
		return err
	}); err != nil {
		return err
	}
	block, err := aes.NewCipher(out.Response.Key)
	if err != nil {
		return err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return err
	}
	if manual := gcm.Seal(head, out.Response.AEADNonce, out.Response.Plaintext, out.Response.AAD); !bytes.Equal(manual, out.Response.Envelope) {
		return fmt.Errorf("SealResponse differs from the documented construction:\n got %x\nwant %x", out.Response.Envelope, manual)
	}
	if in.Method == "HEAD" {
		if len(r.Body) != 0 {
			return errors.New("a HEAD response seals an empty body")
		}
		out.Response.Header = strings.TrimRight(base64.URLEncoding.EncodeToString(out.Response.Envelope), "=")
	}
	return nil
}

func marshalVectors(t *testing.T, f *vectorFile) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(f); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func generateVectors(t *testing.T) *vectorFile {
	t.Helper()
	f := &vectorFile{Comment: vectorComment}
	for _, s := range vectorSuites {
		in := vectorInputs(s)
		// The login and heartbeat response bodies carry the signed
		// directory, an output: derive once to get it, then again.
		first, err := derive(in)
		if err != nil {
			t.Fatalf("%s: %v", s.Name(), err)
		}
		fillBodies(t, first)
		in.Login.Response.Body, in.Rotation.Response.Body = first.Login.Response.Body, first.Rotation.Response.Body
		v, err := derive(in)
		if err != nil {
			t.Fatalf("%s: %v", s.Name(), err)
		}
		f.Vectors = append(f.Vectors, *v)
	}
	return f
}

func readVectors(t testing.TB) *vectorFile {
	t.Helper()
	b, err := os.ReadFile(vectorPath)
	if err != nil {
		t.Fatalf("%v (regenerate with go test ./wire -run TestProtocolVectors -update)", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f vectorFile
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("%s: %v", vectorPath, err)
	}
	return &f
}

// TestProtocolVectors re-derives every output of the vector file from its
// inputs and compares byte for byte, then opens every envelope in it as its
// recipient would.
func TestProtocolVectors(t *testing.T) {
	if *update {
		if err := os.MkdirAll(filepath.Dir(vectorPath), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(vectorPath, marshalVectors(t, generateVectors(t)), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", vectorPath)
	}
	raw, err := os.ReadFile(vectorPath)
	if err != nil {
		t.Fatal(err)
	}
	f := readVectors(t)
	if len(f.Vectors) != len(vectorSuites) {
		t.Fatalf("%d suites in the file, want %d", len(f.Vectors), len(vectorSuites))
	}
	derived := &vectorFile{Comment: f.Comment}
	for i := range f.Vectors {
		v := &f.Vectors[i]
		t.Run(v.Suite, func(t *testing.T) {
			got, err := derive(v)
			if err != nil {
				t.Fatal(err)
			}
			derived.Vectors = append(derived.Vectors, *got)
			compareVectors(t, got, v)
			checkKeys(t, v)
			checkDirectory(t, v)
			checkMessage(t, v, &v.Login)
			checkMessage(t, v, &v.Request)
			checkMessage(t, v, &v.Rotation)
			checkMessage(t, v, &v.HeaderGet)
			checkMessage(t, v, &v.Head)
			checkBodies(t, v)
			checkProblems(t, v)
		})
	}
	// The file is exactly what derive makes of its own inputs.
	if !t.Failed() && !bytes.Equal(marshalVectors(t, derived), raw) {
		t.Errorf("%s is not byte for byte the re-encoding of its derived vectors (formatting or a stray field); regenerate with -update", vectorPath)
	}
	// And the inputs in the file are the ones this test generates.
	if gen := marshalVectors(t, generateVectors(t)); !bytes.Equal(gen, raw) {
		t.Errorf("vectorInputs no longer generates %s; regenerate with -update (a wire-format change)", vectorPath)
	}
}

// compareVectors reports every JSON line that differs between the derived
// and the stored vectors, which names the field.
func compareVectors(t *testing.T, got, want *suiteVectors) {
	t.Helper()
	g := strings.Split(string(marshalVectors(t, &vectorFile{Vectors: []suiteVectors{*got}})), "\n")
	w := strings.Split(string(marshalVectors(t, &vectorFile{Vectors: []suiteVectors{*want}})), "\n")
	if len(g) != len(w) {
		t.Errorf("derived vectors have %d lines, the file %d", len(g), len(w))
	}
	bad := 0
	for i := 0; i < len(g) && i < len(w); i++ {
		if g[i] != w[i] {
			t.Errorf("line %d: derived %s\n            file    %s", i+1, strings.TrimSpace(g[i]), strings.TrimSpace(w[i]))
			if bad++; bad == 10 {
				t.Fatal("too many differences")
			}
		}
	}
}

func mustSuite(t *testing.T, name string) crypto.Suite {
	t.Helper()
	s, err := crypto.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustPrivate(t *testing.T, s crypto.Suite, kp *keyPair) crypto.PrivateKey {
	t.Helper()
	k, err := s.ParsePrivateKey(kp.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustPublic(t *testing.T, s crypto.Suite, b []byte) crypto.PublicKey {
	t.Helper()
	k, err := s.ParsePublicKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// checkKeys: the stored private keys are the stored public keys' and the
// ids are the documented hash, computed here without ComputeKeyID.
func checkKeys(t *testing.T, v *suiteVectors) {
	s := mustSuite(t, v.Suite)
	for _, name := range []string{"server", "old_server", "client", "new_client"} {
		kp, _ := v.keyPair(name)
		if !bytes.Equal(mustPrivate(t, s, kp).Public().Bytes(), kp.PublicKey) {
			t.Errorf("key %s: private key does not match the public key", name)
		}
		h := sha256.New()
		h.Write([]byte("dynkey/v1 key id\x00"))
		h.Write(binary.BigEndian.AppendUint16(nil, uint16(len(v.Suite))))
		h.Write([]byte(v.Suite))
		h.Write(kp.PublicKey)
		if !bytes.Equal(h.Sum(nil)[:8], kp.KeyID) {
			t.Errorf("key %s: key_id is not the documented hash", name)
		}
	}
}

func checkDirectory(t *testing.T, v *suiteVectors) {
	var sd wire.SignedDirectory
	if err := json.Unmarshal(v.Directory.Document, &sd); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sd.Payload, v.Directory.Payload) || !bytes.Equal(sd.Signature, v.Directory.Signature) {
		t.Error("directory document does not hold payload and signature")
	}
	if !ed25519.Verify(ed25519.PublicKey(v.Identity.PublicKey), v.Directory.SignatureInput, v.Directory.Signature) {
		t.Error("directory signature does not verify over signature_input with crypto/ed25519")
	}
	d, err := sd.Verify(ed25519.PublicKey(v.Identity.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	if d.Version != v.Directory.Version || d.Epoch != v.Directory.Epoch || d.STime != v.Directory.STime || d.Suite != v.Suite || len(d.Keys) != len(v.Directory.Keys) {
		t.Fatalf("verified directory %+v does not match the vector", d)
	}
	for i, k := range d.Keys {
		w := v.Directory.Keys[i]
		if k.ID != w.ID || !bytes.Equal(k.Public, w.Public) || k.Status != w.Status || k.Expires != w.Expires {
			t.Errorf("directory key %d: %+v, want %+v", i, k, w)
		}
	}
	if p, ok := d.Primary(); !ok || p.ID != hex.EncodeToString(v.Keys.Server.KeyID) {
		t.Error("the primary key is not keys.server")
	}
	other := ed25519.NewKeyFromSeed(make([]byte, 32)).Public().(ed25519.PublicKey)
	if _, err := sd.Verify(other); !errors.Is(err, wire.ErrDirectory) {
		t.Errorf("Verify with another identity: %v", err)
	}
}

// checkMessage opens the stored envelope as the server does and its stored
// response as the client does.
func checkMessage(t *testing.T, v *suiteVectors, m *messageVector) {
	t.Helper()
	s := mustSuite(t, v.Suite)
	recipient, _ := v.keyPair(m.Recipient)
	sender, _ := v.keyPair(m.Sender)

	// Header transport: the header value decodes to the envelope, and
	// the HEAD response header to the response envelope.
	if m.Transport == "header" {
		env, err := wire.DecodeHeaderEnvelope(m.EnvelopeHeader)
		if err != nil || !bytes.Equal(env, m.Envelope) {
			t.Errorf("%s %s: envelope_header does not decode to envelope: %v", m.Method, m.Path, err)
		}
		if wire.EncodeHeaderEnvelope(m.Envelope) != m.EnvelopeHeader {
			t.Errorf("%s %s: EncodeHeaderEnvelope differs from envelope_header", m.Method, m.Path)
		}
	}
	if m.Method == "HEAD" {
		env, err := wire.DecodeHeaderEnvelope(m.Response.Header)
		if err != nil || !bytes.Equal(env, m.Response.Envelope) {
			t.Errorf("HEAD: response header does not decode to the response envelope: %v", err)
		}
	}

	// Server side: parse, find the sender's public key, open.
	req, err := wire.ParseRequest(m.Envelope)
	if err != nil {
		t.Fatalf("%s: ParseRequest: %v", m.Path, err)
	}
	if !bytes.Equal(req.Header, m.HeaderBytes) || !bytes.Equal(req.Ciphertext, m.Ciphertext) {
		t.Errorf("%s: ParseRequest splits the envelope differently", m.Path)
	}
	if req.Type != m.Header.Type || req.Suite != v.Suite || !bytes.Equal(req.ServerKeyID[:], recipient.KeyID) ||
		!bytes.Equal(req.MessageID[:], m.Header.MessageID) || !bytes.Equal(req.Token, m.Header.Token) ||
		req.STime != m.Header.STime || req.Elapsed != m.Header.Elapsed {
		t.Errorf("%s: parsed header %+v does not match the vector", m.Path, req.RequestHeader)
	}
	var senderPub []byte
	info := wire.InfoRequest
	switch req.Type {
	case wire.TypeLogin:
		senderPub, info = req.ClientKey, wire.InfoLogin
	case wire.TypeRequest:
		if !bytes.Equal(req.ClientKey, sender.KeyID) {
			t.Fatalf("%s: client key id is not the sender's", m.Path)
		}
		senderPub = sender.PublicKey
	}
	serverKey := mustPrivate(t, s, recipient)
	aad := wire.RequestAAD(m.Method, m.Path, m.Query, req.Header)
	if !bytes.Equal(aad, m.AAD) {
		t.Errorf("%s: rebuilt AAD differs", m.Path)
	}
	pt, secret, err := s.Open(serverKey, mustPublic(t, s, senderPub), []byte(info), aad, req.Ciphertext)
	if err != nil {
		t.Fatalf("%s: Open: %v", m.Path, err)
	}
	if !bytes.Equal(pt, m.InnerBytes) || !bytes.Equal(secret, m.Secret) {
		t.Errorf("%s: Open gives another plaintext or secret", m.Path)
	}
	// The AAD binds the method, path and query.
	for _, bad := range [][3]string{{"PUT", m.Path, m.Query}, {m.Method, m.Path + "x", m.Query}, {m.Method, m.Path, m.Query + "&y=2"}} {
		if _, _, err := s.Open(serverKey, mustPublic(t, s, senderPub), []byte(info), wire.RequestAAD(bad[0], bad[1], bad[2], req.Header), req.Ciphertext); !errors.Is(err, crypto.ErrOpen) {
			t.Errorf("%s: opened with AAD for %v: %v", m.Path, bad, err)
		}
	}
	in, err := wire.ParseInner(pt)
	if err != nil {
		t.Fatalf("%s: ParseInner: %v", m.Path, err)
	}
	if in.ContentType != m.Inner.ContentType || !bytes.Equal(in.Body, m.Inner.Body) ||
		!bytes.Equal(in.NewClientKey, m.Inner.NewClientKey) || !bytes.Equal(in.Proof, m.Inner.Proof) ||
		in.HasOffset != (m.Inner.TimeOffset != nil) || (in.HasOffset && in.TimeOffset != *m.Inner.TimeOffset) {
		t.Errorf("%s: parsed inner %+v does not match the vector", m.Path, in)
	}
	if in.Rotating() != (m.Proof != nil) {
		t.Errorf("%s: Rotating() = %v", m.Path, in.Rotating())
	}
	if m.Proof != nil {
		// The server checks the proof with the new key it was given.
		var cur wire.KeyID
		copy(cur[:], req.ClientKey)
		paad := wire.ProofAAD(req.MessageID, cur, in.NewClientKey)
		if !bytes.Equal(paad, m.Proof.AAD) {
			t.Errorf("%s: rebuilt proof AAD differs", m.Path)
		}
		ppt, _, err := s.Open(serverKey, mustPublic(t, s, in.NewClientKey), []byte(wire.InfoProof), paad, in.Proof)
		if err != nil || len(ppt) != 0 {
			t.Errorf("%s: proof does not open to an empty plaintext: %v", m.Path, err)
		}
		// A proof made by the current key instead does not pass.
		if _, _, err := s.Open(serverKey, mustPublic(t, s, sender.PublicKey), []byte(wire.InfoProof), paad, in.Proof); err == nil {
			t.Errorf("%s: proof opens with the current client key", m.Path)
		}
	}

	// Client side: open the response with the request's secret.
	ct, body, err := wire.OpenResponse(m.Secret, req.MessageID, m.Response.Status, m.Response.Envelope)
	if err != nil {
		t.Fatalf("%s: OpenResponse: %v", m.Path, err)
	}
	if ct != m.Response.ContentType || !bytes.Equal(body, m.Response.Body) {
		t.Errorf("%s: OpenResponse gives %q %q", m.Path, ct, body)
	}
	if _, _, err := wire.OpenResponse(m.Secret, req.MessageID, m.Response.Status+1, m.Response.Envelope); !errors.Is(err, wire.ErrResponse) {
		t.Errorf("%s: response opens with another status: %v", m.Path, err)
	}
}

// checkBodies: the JSON bodies are what they claim and agree with each
// other (the token of the login is the one later requests carry).
func checkBodies(t *testing.T, v *suiteVectors) {
	var lq wire.LoginRequest
	if err := json.Unmarshal(v.Login.Inner.Body, &lq); err != nil || lq.Username == "" {
		t.Errorf("login body is not a LoginRequest: %v", err)
	}
	var lr wire.LoginResponse
	if err := json.Unmarshal(v.Login.Response.Body, &lr); err != nil {
		t.Fatalf("login response body: %v", err)
	}
	if !bytes.Equal(lr.Token, v.Request.Header.Token) || !bytes.Equal(lr.Token, v.Rotation.Header.Token) {
		t.Error("the requests do not carry the login's token")
	}
	if lr.ClientKeyID != hex.EncodeToString(v.Keys.Client.KeyID) {
		t.Error("login response client_key_id is not keys.client's")
	}
	if lr.Directory == nil || !bytes.Equal(lr.Directory.Payload, v.Directory.Payload) || !bytes.Equal(lr.Directory.Signature, v.Directory.Signature) {
		t.Error("login response does not carry the directory")
	}
	if b, _ := json.Marshal(lr); !bytes.Equal(b, v.Login.Response.Body) {
		t.Errorf("login response body does not re-encode to itself:\n%s\n%s", b, v.Login.Response.Body)
	}
	var hb wire.HeartbeatResponse
	if err := json.Unmarshal(v.Rotation.Response.Body, &hb); err != nil || hb.Directory == nil || hb.STime == 0 {
		t.Errorf("heartbeat response body: %v", err)
	}
	if b, _ := json.Marshal(hb); !bytes.Equal(b, v.Rotation.Response.Body) {
		t.Errorf("heartbeat response body does not re-encode to itself")
	}
	if !bytes.Equal(v.Rotation.Inner.NewClientKey, v.Keys.NewClient.PublicKey) {
		t.Error("rotation does not carry keys.new_client")
	}
}

func checkProblems(t *testing.T, v *suiteVectors) {
	for _, pv := range v.Problems {
		p, ok := wire.ParseProblem(pv.JSON)
		if !ok {
			t.Fatalf("%s: ParseProblem failed", pv.Code)
		}
		if string(p.Code) != pv.Code || p.Status != pv.Status || p.Type != "urn:dynkey:problem:"+pv.Code ||
			p.Detail != pv.Detail || p.STime != pv.STime || (p.Directory != nil) != pv.WithDirectory {
			t.Errorf("%s: parsed %+v", pv.Code, p)
		}
		if p.Directory != nil {
			if _, err := p.Directory.Verify(ed25519.PublicKey(v.Identity.PublicKey)); err != nil {
				t.Errorf("%s: carried directory: %v", pv.Code, err)
			}
		}
	}
}
