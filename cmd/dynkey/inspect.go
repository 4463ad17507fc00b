package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/dynkey/dynkey/wire"
)

// inputFlags choose where a message is read from and how it is encoded.
type inputFlags struct {
	in string
}

func addInputFlags(fs *flag.FlagSet) *inputFlags {
	f := &inputFlags{}
	fs.StringVar(&f.in, "in", "auto", "input encoding: auto, raw, hex or base64 (standard or url, padded or not)")
	return f
}

// maxInput bounds what inspect reads.
const maxInput = 16 << 20

// read reads the file named by pos (none or "-": stdin) and decodes it.
func (f *inputFlags) read(e *env, fs *flag.FlagSet, pos []string, binaryMsg bool) ([]byte, error) {
	if err := wantArgs(fs, pos, 0, 1, ""); err != nil {
		return nil, err
	}
	var r io.Reader = e.stdin
	name := "stdin"
	if len(pos) == 1 && pos[0] != "-" {
		file, err := os.Open(pos[0])
		if err != nil {
			return nil, err
		}
		defer file.Close()
		r, name = file, pos[0]
	}
	b, err := io.ReadAll(io.LimitReader(r, maxInput+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if len(b) > maxInput {
		return nil, fmt.Errorf("%s: more than %d bytes", name, maxInput)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%s is empty", name)
	}
	out, err := decodeInput(b, f.in, binaryMsg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

// decodeInput decodes b as enc. "auto" takes a binary message that starts
// with "DK" (or, for JSON, '{') as raw, else tries hex, then base64.
func decodeInput(b []byte, enc string, binaryMsg bool) ([]byte, error) {
	s := strings.Join(strings.Fields(string(b)), "")
	switch enc {
	case "raw":
		return b, nil
	case "hex":
		return decodeHex(s)
	case "base64":
		return decodeBase64(s)
	case "auto":
		if (binaryMsg && bytes.HasPrefix(b, []byte("DK"))) || (!binaryMsg && bytes.HasPrefix(bytes.TrimSpace(b), []byte("{"))) {
			return b, nil
		}
		if out, err := decodeHex(s); err == nil {
			return out, nil
		}
		if out, err := decodeBase64(s); err == nil {
			return out, nil
		}
		// Neither: raw, and the decoder says what is wrong with it.
		return b, nil
	}
	return nil, usagef("-in must be auto, raw, hex or base64, not %q", enc)
}

func decodeHex(s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, errors.New("not hex")
	}
	return b, nil
}

func decodeBase64(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.RawURLEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.StdEncoding} {
		if b, err := enc.Strict().DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("not base64")
}

// parseIdentity reads an Ed25519 public key in hex or base64(url).
func parseIdentity(s string) (ed25519.PublicKey, error) {
	b, err := decodeHex(s)
	if err != nil {
		if b, err = decodeBase64(s); err != nil {
			return nil, fmt.Errorf("identity key %q is neither hex nor base64", s)
		}
	}
	if len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("identity key must be %d bytes, got %d", ed25519.PublicKeySize, len(b))
	}
	return ed25519.PublicKey(b), nil
}

// printer writes "name: value" lines with aligned values.
type fieldPrinter struct {
	w      io.Writer
	indent string
}

func (p fieldPrinter) f(name, format string, args ...any) {
	fmt.Fprintf(p.w, "%s%-22s %s\n", p.indent, name+":", fmt.Sprintf(format, args...))
}

func msField(ms int64) string {
	if ms == 0 {
		return "0"
	}
	return fmt.Sprintf("%d (%s)", ms, time.UnixMilli(ms).UTC().Format(time.RFC3339Nano))
}

func b64u(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// ---------------------------------------------------------------- envelope

func runInspectEnvelope(e *env, args []string) error {
	fs := newFlags(e, "dynkey inspect envelope", "[FILE|-] [-in auto|raw|hex|base64] [-directory FILE [-identity KEY]] [-store URL (-kek-file FILE | -kek-env VAR)]", `
Decodes a dynkey envelope (docs/PROTOCOL.md §4, §6): a login or request
envelope (every header field; the ciphertext stays sealed) or a response
envelope (its nonce and ciphertext size). Reads FILE, or stdin.

With -store and the key-encryption key, looks the server key (and, for a
request, the token's key) up in the store's verified key ring: a server key
that is not there, destroyed or past its grace window is refused by the
servers (server-key-unknown).

With -directory (a signed key directory, as served at
/.well-known/dynkey/keys), checks that the envelope's suite is the directory's
and that its server key id is one of the directory's keys, and, for a login,
that the client key id is the hash of the key it carries. With -identity the
directory's signature is checked against the pinned identity key; without it,
against the identity the directory names.`)
	inf := addInputFlags(fs)
	dirFile := fs.String("directory", "", "signed key directory (JSON) to check the server key id against")
	identity := fs.String("identity", "", "pinned identity key (hex or base64url) to verify -directory with")
	sf := addStoreFlags(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	b, err := inf.read(e, fs, pos, true)
	if err != nil {
		return err
	}
	var dir *wire.Directory
	if *dirFile != "" {
		raw, err := os.ReadFile(*dirFile)
		if err != nil {
			return err
		}
		dir, err = verifyDirectoryJSON(e, raw, *identity, false)
		if err != nil {
			return fmt.Errorf("-directory %s: %w", *dirFile, err)
		}
	} else if *identity != "" {
		return usagef("-identity needs -directory")
	}
	p := fieldPrinter{w: e.stdout}
	if len(b) < 4 || b[0] != 'D' || b[1] != 'K' {
		return fmt.Errorf("not a dynkey envelope: it must start with \"DK\" (got %d bytes)", len(b))
	}
	if b[2] != wire.Version {
		return fmt.Errorf("envelope version %d; this build reads version %d", b[2], wire.Version)
	}
	switch b[3] {
	case wire.TypeResponse:
		return inspectResponse(p, b)
	case wire.TypeLogin, wire.TypeRequest:
	default:
		return fmt.Errorf("unknown envelope type %d (1 login, 2 request, 3 response)", b[3])
	}
	req, err := wire.ParseRequest(b)
	if err != nil {
		return fmt.Errorf("malformed envelope: %w", err)
	}
	kind := "request"
	if req.Type == wire.TypeLogin {
		kind = "login"
	}
	p.f("envelope", "%s (type %d), version %d, %d bytes", kind, req.Type, wire.Version, len(b))
	p.f("suite", "%s", req.Suite)
	p.f("server key id", "%s", req.ServerKeyID)
	var loginKeyID wire.KeyID
	if req.Type == wire.TypeLogin {
		loginKeyID = wire.ComputeKeyID(req.Suite, req.ClientKey)
		p.f("client public key", "%s (%d bytes)", b64u(req.ClientKey), len(req.ClientKey))
		p.f("client key id", "%s (computed from the key)", loginKeyID)
	} else {
		p.f("client key id", "%s", hex.EncodeToString(req.ClientKey))
		p.f("token", "%s (%d bytes; dynkey inspect token)", b64u(req.Token), len(req.Token))
	}
	p.f("message id", "%s", hex.EncodeToString(req.MessageID[:]))
	p.f("s_time", "%s", msField(int64(req.STime)))
	p.f("elapsed", "%d ms", req.Elapsed)
	if req.STime <= 1<<62 && req.Elapsed <= 1<<62 {
		p.f("server time estimate", "%s", msField(int64(req.STime+req.Elapsed)))
	}
	p.f("header", "%d bytes (bound into the AEAD's associated data)", len(req.Header))
	p.f("ciphertext", "%d bytes (sealed with the suite; opening needs the server's private key)", len(req.Ciphertext))
	if sf.url != "" {
		if err := checkEnvelopeInRing(e, p, sf, req); err != nil {
			return err
		}
	} else if sf.kek.set() {
		return usagef("-kek-file/-kek-env need -store")
	}
	if dir == nil {
		return nil
	}
	if req.Suite != dir.Suite {
		return fmt.Errorf("check failed: the envelope's suite %s is not the directory's %s", req.Suite, dir.Suite)
	}
	for _, k := range dir.Keys {
		if k.ID == req.ServerKeyID.String() {
			p.f("check", "server key %s is in the directory (%s, epoch %d)", k.ID, k.Status, dir.Epoch)
			return nil
		}
	}
	return fmt.Errorf("check failed: server key %s is not in the directory (epoch %d): a server would answer server-key-unknown", req.ServerKeyID, dir.Epoch)
}

// checkEnvelopeInRing reports what the store's ring says about the keys an
// envelope names.
func checkEnvelopeInRing(e *env, p fieldPrinter, sf *storeFlags, req *wire.Request) error {
	rs, err := sf.open(e)
	if err != nil {
		return err
	}
	defer rs.Close()
	find := func(id string) *ringKeyInfo {
		for i := range rs.ring.Keys {
			if rs.ring.Keys[i].ID == id {
				return &rs.ring.Keys[i]
			}
		}
		return nil
	}
	k := find(req.ServerKeyID.String())
	now := time.Now()
	switch {
	case k == nil:
		return fmt.Errorf("check failed: server key %s is not in the store's key ring: servers refuse it (server-key-unknown)", req.ServerKeyID)
	case k.State == "destroyed" || !k.HasPrivate:
		return fmt.Errorf("check failed: server key %s is destroyed: servers refuse it (server-key-unknown), and nothing in the store opens it any more", req.ServerKeyID)
	case k.State == "decrypt-only" && !now.Before(time.UnixMilli(k.DecryptUntil)):
		return fmt.Errorf("check failed: server key %s is past its grace window (%s): servers refuse it (server-key-unknown)", req.ServerKeyID, msTime(k.DecryptUntil))
	case k.Suite != req.Suite:
		return fmt.Errorf("check failed: server key %s is a %s key, the envelope says %s", req.ServerKeyID, k.Suite, req.Suite)
	}
	p.f("check", "server key %s is in the store's ring (%s)", k.ID, k.State)
	if req.Type != wire.TypeRequest || len(req.Token) < 1+wire.KeyIDSize {
		return nil
	}
	var tid wire.KeyID
	copy(tid[:], req.Token[1:1+wire.KeyIDSize])
	what, _, ok := rs.ring.tokenKeyFor(tid.String())
	if !ok {
		return fmt.Errorf("check failed: the token's key %s is not in the store's ring: servers refuse it (token-invalid or token-expired)", tid)
	}
	p.f("check", "the token's key %s is in the store's ring (%s)", tid, what)
	return nil
}

func inspectResponse(p fieldPrinter, b []byte) error {
	if len(b) < 6 {
		return errors.New("malformed response envelope: shorter than its header")
	}
	n := int(binary.BigEndian.Uint16(b[4:6]))
	if n != 32 || len(b) < 6+n+16 {
		return fmt.Errorf("malformed response envelope: nonce length %d (32 expected) in %d bytes", n, len(b))
	}
	p.f("envelope", "response (type %d), version %d, %d bytes", wire.TypeResponse, wire.Version, len(b))
	p.f("response nonce", "%s", hex.EncodeToString(b[6:6+n]))
	p.f("ciphertext", "%d bytes (AES-256-GCM under a key only the requester can derive)", len(b)-6-n)
	return nil
}

// --------------------------------------------------------------- directory

func runInspectDirectory(e *env, args []string) error {
	fs := newFlags(e, "dynkey inspect directory", "[FILE|-] [-identity KEY]", `
Decodes a signed key directory (the JSON served at /.well-known/dynkey/keys,
docs/PROTOCOL.md §8), verifies its Ed25519 signature and everything a client
checks (version, suite name, each key id is the hash of its key, statuses,
exactly one primary), and prints every field. With -identity the signature
must verify under that pinned key; without it, it is checked against the
identity the directory names, which proves integrity but not who signed it:
compare the printed identity with the one you pin (dynkey identity).`)
	inf := addInputFlags(fs)
	identity := fs.String("identity", "", "pinned identity key, hex or base64url")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	b, err := inf.read(e, fs, pos, false)
	if err != nil {
		return err
	}
	_, err = verifyDirectoryJSON(e, b, *identity, true)
	return err
}

// verifyDirectoryJSON verifies a signed directory and prints it if show.
func verifyDirectoryJSON(e *env, b []byte, identity string, show bool) (*wire.Directory, error) {
	var sd wire.SignedDirectory
	if err := json.Unmarshal(b, &sd); err != nil {
		return nil, fmt.Errorf("not a signed key directory: %w", err)
	}
	return verifyDirectory(e, &sd, identity, show, "")
}

func verifyDirectory(e *env, sd *wire.SignedDirectory, identity string, show bool, indent string) (*wire.Directory, error) {
	if len(sd.Identity) != ed25519.PublicKeySize || len(sd.Payload) == 0 || len(sd.Signature) == 0 {
		return nil, errors.New("not a signed key directory: identity, payload and signature are required")
	}
	trusted := ed25519.PublicKey(sd.Identity)
	pinned := identity != ""
	if pinned {
		var err error
		if trusted, err = parseIdentity(identity); err != nil {
			return nil, usagef("-identity: %v", err)
		}
	}
	d, err := sd.Verify(trusted)
	if err != nil {
		if pinned && !bytes.Equal(trusted, sd.Identity) {
			return nil, fmt.Errorf("directory REJECTED: signed by identity %s, not the pinned %s", hex.EncodeToString(sd.Identity), hex.EncodeToString(trusted))
		}
		return nil, fmt.Errorf("directory REJECTED: %w", err)
	}
	if !show {
		return d, nil
	}
	p := fieldPrinter{w: e.stdout, indent: indent}
	p.f("identity", "%s (hex) %s (base64url)", hex.EncodeToString(sd.Identity), b64u(sd.Identity))
	if pinned {
		p.f("signature", "valid, by the pinned identity")
	} else {
		p.f("signature", "valid under the identity it names (not pinned: compare it with yours)")
	}
	p.f("version", "%d", d.Version)
	p.f("epoch", "%d", d.Epoch)
	p.f("suite", "%s", d.Suite)
	p.f("s_time", "%s", msField(d.STime))
	for i, k := range d.Keys {
		p.f(fmt.Sprintf("key[%d]", i), "%s %s (id checked)", k.ID, k.Status)
		p.f("  public", "%s", b64u(k.Public))
		if k.Expires != 0 {
			p.f("  opens until", "%s", msField(k.Expires))
		}
	}
	return d, nil
}

// ----------------------------------------------------------------- problem

func runInspectProblem(e *env, args []string) error {
	fs := newFlags(e, "dynkey inspect problem", "[FILE|-] [-identity KEY]", `
Decodes a dynkey problem (an application/problem+json refusal, RFC 9457;
docs/PROTOCOL.md §9), prints every field with what the client should do, and
checks it is consistent: the code is a known one and its type URI and HTTP
status are that code's. A carried key directory is verified as by
"dynkey inspect directory". Problems are never authenticated: a valid-looking
problem may still be forged by anyone on the path.`)
	inf := addInputFlags(fs)
	identity := fs.String("identity", "", "pinned identity key, to verify a carried directory")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	b, err := inf.read(e, fs, pos, false)
	if err != nil {
		return err
	}
	prob, ok := wire.ParseProblem(b)
	if !ok {
		return errors.New("not a dynkey problem: a JSON object with a code and the type urn:dynkey:problem:<code> is expected")
	}
	p := fieldPrinter{w: e.stdout}
	p.f("code", "%s", prob.Code)
	p.f("type", "%s", prob.Type)
	p.f("title", "%s", prob.Title)
	p.f("status", "%d", prob.Status)
	if prob.Detail != "" {
		p.f("detail", "%s", prob.Detail)
	}
	if prob.STime != 0 {
		p.f("s_time", "%s", msField(prob.STime))
	}
	if !slices.Contains(wire.Codes(), prob.Code) {
		return fmt.Errorf("check failed: unknown code %q (known: %v)", prob.Code, wire.Codes())
	}
	if prob.Status != prob.Code.Status() {
		return fmt.Errorf("check failed: status %d, but %s is always %d", prob.Status, prob.Code, prob.Code.Status())
	}
	if a, ok := clientAction[prob.Code]; ok {
		p.f("client action", "%s", a)
	} else {
		p.f("client action", "see docs/PROTOCOL.md §9")
	}
	if prob.Directory != nil {
		fmt.Fprintln(e.stdout, "directory:")
		if _, err := verifyDirectory(e, prob.Directory, *identity, true, "  "); err != nil {
			return err
		}
	}
	return nil
}

// clientAction is docs/PROTOCOL.md §9's "client action" column.
var clientAction = map[wire.Code]string{
	wire.CodeBadFormat:        "fix the client",
	wire.CodeNotEncrypted:     "send an envelope",
	wire.CodeTooLarge:         "send less",
	wire.CodeUnsupportedSuite: "refuse (no downgrade)",
	wire.CodeServerKeyUnknown: "verify the carried directory, else refetch; retry once",
	wire.CodeDecryptFailed:    "none: a bug or an attack",
	wire.CodeTokenInvalid:     "log in again, retry once",
	wire.CodeTokenExpired:     "log in again, retry once",
	wire.CodeClientKeyUnknown: "try the other key; else log in again",
	wire.CodeClientKeyExpired: "rotate on a heartbeat, then retry with the same message id",
	wire.CodeStale:            "refetch the signed directory, take its s_time, retry once",
	wire.CodeReplay:           "none: already processed, or an attack",
	wire.CodeRotationRefused:  "retry once without rotating, same message id; rotate later",
	wire.CodeLoginFailed:      "ask the user",
	wire.CodeLoginThrottled:   "wait",
	wire.CodeLoginBusy:        "wait Retry-After, then retry (the same message id may be reused)",
	wire.CodeOutcomeUnknown:   "do not resend: the request may or may not have taken effect; report it to the caller",
	wire.CodeMethod:           "fix the client",
	wire.CodeUnavailable:      "retry later",
}

// ------------------------------------------------------------------- token

// tokenNonceSize and tokenTagSize are the token's XChaCha20-Poly1305 sizes
// (docs/PROTOCOL.md §10).
const (
	tokenNonceSize = 24
	tokenTagSize   = 16
	// tokenFixedClaims is the claims' size without the username: token
	// id, session id, s_time, issued, expires, the username's length.
	tokenFixedClaims = 16 + 16 + 8 + 8 + 8 + 2
)

func runInspectToken(e *env, args []string) error {
	fs := newFlags(e, "dynkey inspect token", "[FILE|-] [-in …] [-store URL (-kek-file FILE | -kek-env VAR)]", `
Decodes a login token (docs/PROTOCOL.md §10; base64url as in a login response,
or hex, or raw): its version, the id of the token key that sealed it, its
nonce and the size of its sealed claims (which gives the username's length).
The claims are sealed under that token key, which never leaves the servers.

With -store and the key-encryption key, looks the token's key up in the
store's verified key ring: a token naming no key of the ring is refused by
every server (token-invalid: forged, or its key was deleted once all its
tokens had expired).`)
	inf := addInputFlags(fs)
	sf := addStoreFlags(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	b, err := inf.read(e, fs, pos, false)
	if err != nil {
		return err
	}
	p := fieldPrinter{w: e.stdout}
	if len(b) < 1+wire.KeyIDSize+tokenNonceSize+tokenTagSize+tokenFixedClaims {
		return fmt.Errorf("not a token: %d bytes, at least %d expected", len(b), 1+wire.KeyIDSize+tokenNonceSize+tokenTagSize+tokenFixedClaims)
	}
	if b[0] != 1 {
		return fmt.Errorf("not a token: version %d, 1 expected", b[0])
	}
	var kid wire.KeyID
	copy(kid[:], b[1:1+wire.KeyIDSize])
	sealed := len(b) - 1 - wire.KeyIDSize - tokenNonceSize
	p.f("token", "version 1, %d bytes", len(b))
	p.f("key id", "%s (the token key that sealed it)", kid)
	p.f("nonce", "%s", hex.EncodeToString(b[1+wire.KeyIDSize:1+wire.KeyIDSize+tokenNonceSize]))
	p.f("sealed claims", "%d bytes (username of %d bytes; XChaCha20-Poly1305)", sealed, sealed-tokenTagSize-tokenFixedClaims)
	if sf.url == "" {
		if sf.kek.set() {
			return usagef("-kek-file/-kek-env need -store")
		}
		return nil
	}
	rs, err := sf.open(e)
	if err != nil {
		return err
	}
	defer rs.Close()
	what, until, ok := rs.ring.tokenKeyFor(kid.String())
	if ok {
		p.f("check", "key %s is in the ring (%s): it opens the token", kid, what)
		if until != 0 {
			p.f("tokens valid until", "%s at the latest", msTime(until))
		}
		return nil
	}
	return fmt.Errorf("check failed: key %s is not in the store's key ring: every server refuses this token (token-invalid)", kid)
}
