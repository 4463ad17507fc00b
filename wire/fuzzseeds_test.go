package wire_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/dynkey/dynkey/internal/fuzzseed"
	"github.com/dynkey/dynkey/wire"
)

// TestWriteFuzzSeeds writes the committed seed corpora under
// testdata/fuzz/<FuzzName>/: the protocol vectors plus the edge cases of
// every length, range and strictness rule of the parsers. It only runs with
// DYNKEY_WRITE_FUZZ_SEEDS=1 (see scripts/fuzz.sh); the seeds themselves run
// as ordinary tests through the Fuzz functions on every go test.
func TestWriteFuzzSeeds(t *testing.T) {
	fuzzseed.Skip(t)
	vf := readVectors(t)
	writeRequestSeeds(t, vf)
	writeInnerSeeds(t, vf)
	writeResponseSeeds(t, vf)
	writeDirectorySeeds(t, vf)
	writeProblemSeeds(t, vf)
}

// rawEnvelope builds an envelope field by field, without any check, so that
// invalid ones can be written.
func rawEnvelope(version, typ byte, fields [7][]byte, ct []byte) []byte {
	b := []byte{'D', 'K', version, typ}
	for _, f := range fields {
		b = binary.BigEndian.AppendUint16(b, uint16(len(f)))
		b = append(b, f...)
	}
	return append(b, ct...)
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func lp16(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = binary.BigEndian.AppendUint16(b, uint16(len(p)))
		b = append(b, p...)
	}
	return b
}

func writeRequestSeeds(t *testing.T, vf *vectorFile) {
	const target = "FuzzParseRequest"
	for _, v := range vf.Vectors {
		for name, m := range map[string]*messageVector{"login": &v.Login, "request": &v.Request, "rotation": &v.Rotation} {
			env := []byte(m.Envelope)
			hl := len(m.HeaderBytes)
			fuzzseed.Write(t, target, "vector-"+v.Suite+"-"+name, env)
			fuzzseed.Write(t, target, "vector-"+v.Suite+"-"+name+"-no-ciphertext", env[:hl])
			fuzzseed.Write(t, target, "vector-"+v.Suite+"-"+name+"-header-cut", env[:hl-1])
			fuzzseed.Write(t, target, "vector-"+v.Suite+"-"+name+"-one-byte-ciphertext", append(bytes.Clone(env[:hl]), 0))
		}
	}
	kid := []byte("serverid")
	mid := []byte("0123456789abcdef")
	login := func() [7][]byte {
		return [7][]byte{[]byte("ecies-x25519"), kid, bytes.Repeat([]byte{0x11}, 32), nil, mid, u64(1767225600000), u64(250)}
	}
	request := func() [7][]byte {
		f := login()
		f[2], f[3] = []byte("clientid"), []byte("opaque token")
		return f
	}
	with := func(f [7][]byte, i int, v []byte) [7][]byte { f[i] = v; return f }
	ct := []byte{0xc7}
	cases := []struct {
		name    string
		version byte
		typ     byte
		fields  [7][]byte
	}{
		{"login-minimal", 1, wire.TypeLogin, login()},
		{"request-minimal", 1, wire.TypeRequest, request()},
		{"version-0", 0, wire.TypeRequest, request()},
		{"version-2", 2, wire.TypeRequest, request()},
		{"type-0", 1, 0, request()},
		{"type-response", 1, wire.TypeResponse, request()},
		{"type-ff", 1, 0xff, request()},
		{"suite-empty", 1, wire.TypeRequest, with(request(), 0, nil)},
		{"suite-upper-case", 1, wire.TypeRequest, with(request(), 0, []byte("ECIES-X25519"))},
		{"suite-64", 1, wire.TypeRequest, with(request(), 0, bytes.Repeat([]byte("a"), 64))},
		{"suite-65", 1, wire.TypeRequest, with(request(), 0, bytes.Repeat([]byte("a"), 65))},
		{"suite-nul", 1, wire.TypeRequest, with(request(), 0, []byte("ecies\x00x25519"))},
		{"suite-non-ascii", 1, wire.TypeRequest, with(request(), 0, []byte("ecies-x25519\u00e9"))},
		{"server-key-id-7", 1, wire.TypeRequest, with(request(), 1, kid[:7])},
		{"server-key-id-9", 1, wire.TypeRequest, with(request(), 1, append(bytes.Clone(kid), 'x'))},
		{"server-key-id-empty", 1, wire.TypeRequest, with(request(), 1, nil)},
		{"request-client-key-id-7", 1, wire.TypeRequest, with(request(), 2, []byte("clienti"))},
		{"request-client-key-id-32", 1, wire.TypeRequest, with(request(), 2, bytes.Repeat([]byte{0x11}, 32))},
		{"request-client-key-id-empty", 1, wire.TypeRequest, with(request(), 2, nil)},
		{"request-token-empty", 1, wire.TypeRequest, with(request(), 3, nil)},
		{"request-token-max", 1, wire.TypeRequest, with(request(), 3, bytes.Repeat([]byte{0x7b}, wire.MaxTokenSize))},
		{"request-token-over-max", 1, wire.TypeRequest, with(request(), 3, bytes.Repeat([]byte{0x7b}, wire.MaxTokenSize+1))},
		{"login-with-token", 1, wire.TypeLogin, with(login(), 3, []byte("t"))},
		{"login-client-key-empty", 1, wire.TypeLogin, with(login(), 2, nil)},
		{"login-client-key-max", 1, wire.TypeLogin, with(login(), 2, bytes.Repeat([]byte{0x22}, wire.MaxPublicKeySize))},
		{"login-client-key-over-max", 1, wire.TypeLogin, with(login(), 2, bytes.Repeat([]byte{0x22}, wire.MaxPublicKeySize+1))},
		{"message-id-15", 1, wire.TypeRequest, with(request(), 4, mid[:15])},
		{"message-id-17", 1, wire.TypeRequest, with(request(), 4, append(bytes.Clone(mid), 'g'))},
		{"s-time-7", 1, wire.TypeRequest, with(request(), 5, u64(1)[1:])},
		{"s-time-max-u64", 1, wire.TypeRequest, with(request(), 5, u64(math.MaxUint64))},
		{"s-time-min-i64", 1, wire.TypeRequest, with(request(), 5, u64(1<<63))},
		{"s-time-zero", 1, wire.TypeRequest, with(request(), 5, u64(0))},
		{"elapsed-9", 1, wire.TypeRequest, with(request(), 6, append(u64(1), 0))},
		{"elapsed-max-u64", 1, wire.TypeRequest, with(request(), 6, u64(math.MaxUint64))},
		{"elapsed-max-i64", 1, wire.TypeRequest, with(request(), 6, u64(math.MaxInt64))},
	}
	for _, c := range cases {
		fuzzseed.Write(t, target, c.name, rawEnvelope(c.version, c.typ, c.fields, ct))
	}
	good := rawEnvelope(1, wire.TypeRequest, request(), ct)
	overrun := bytes.Clone(good)
	overrun[4], overrun[5] = 0xff, 0xff // suite length beyond the end
	fuzzseed.Write(t, target, "length-prefix-overrun", overrun)
	fuzzseed.Write(t, target, "empty", []byte{})
	fuzzseed.Write(t, target, "prefix-only", []byte("DK\x01\x02"))
	fuzzseed.Write(t, target, "magic-only", []byte("DK"))
	fuzzseed.Write(t, target, "wrong-magic", append([]byte("XK"), good[2:]...))
	fuzzseed.Write(t, target, "lower-case-magic", append([]byte("dk"), good[2:]...))
	fuzzseed.Write(t, target, "json-body", []byte(`{"username":"alice","password":"x"}`))
}

func writeInnerSeeds(t *testing.T, vf *vectorFile) {
	const target = "FuzzParseInner"
	for _, v := range vf.Vectors {
		for name, m := range map[string]*messageVector{"login": &v.Login, "request": &v.Request, "rotation": &v.Rotation} {
			fuzzseed.Write(t, target, "vector-"+v.Suite+"-"+name, []byte(m.InnerBytes))
		}
	}
	key, off, proof := bytes.Repeat([]byte{0x33}, 32), u64(1500), bytes.Repeat([]byte{0x44}, 48)
	inner := func(k, o, p []byte, ct string, body string) []byte {
		return append(lp16(k, o, p, []byte(ct)), body...)
	}
	cases := []struct {
		name string
		b    []byte
	}{
		{"plain-json", inner(nil, nil, nil, "application/json", `{"a":1}`)},
		{"no-content-type-no-body", inner(nil, nil, nil, "", "")},
		{"rotation-complete", inner(key, off, proof, "", "")},
		{"rotation-offset-min-i64", inner(key, u64(1<<63), proof, "", "")},
		{"rotation-offset-max-i64", inner(key, u64(math.MaxInt64), proof, "", "")},
		{"rotation-offset-minus-one", inner(key, u64(math.MaxUint64), proof, "", "")},
		{"rotation-key-only", inner(key, nil, nil, "", "")},
		{"rotation-offset-only", inner(nil, off, nil, "", "")},
		{"rotation-proof-only", inner(nil, nil, proof, "", "")},
		{"rotation-no-proof", inner(key, off, nil, "", "")},
		{"rotation-no-key", inner(nil, off, proof, "", "")},
		{"rotation-no-offset", inner(key, nil, proof, "", "")},
		{"offset-7-bytes", inner(key, off[1:], proof, "", "")},
		{"offset-9-bytes", inner(key, append(bytes.Clone(off), 0), proof, "", "")},
		{"new-key-max", inner(bytes.Repeat([]byte{0x33}, wire.MaxPublicKeySize), off, proof, "", "")},
		{"new-key-over-max", inner(bytes.Repeat([]byte{0x33}, wire.MaxPublicKeySize+1), off, proof, "", "")},
		{"content-type-1024", inner(nil, nil, nil, strings.Repeat("a", 1024), "")},
		{"content-type-1025", inner(nil, nil, nil, strings.Repeat("a", 1025), "")},
		{"content-type-htab", inner(nil, nil, nil, "text/plain;\tcharset=utf-8", "x")},
		{"content-type-crlf", inner(nil, nil, nil, "text/plain\r\nX-Injected: 1", "x")},
		{"content-type-nul", inner(nil, nil, nil, "text/plain\x00", "x")},
		{"content-type-del", inner(nil, nil, nil, "text/plain\x7f", "x")},
		{"content-type-obs-text", inner(nil, nil, nil, "text/plain; x=\xe9\xff", "x")},
		{"truncated-first-field", []byte{0x00}},
		{"truncated-length-overrun", []byte{0xff, 0xff, 0x00}},
		{"truncated-after-three-fields", lp16(nil, nil, nil)},
	}
	for _, c := range cases {
		fuzzseed.Write(t, target, c.name, c.b)
	}
}

func writeResponseSeeds(t *testing.T, vf *vectorFile) {
	const target = "FuzzOpenResponse"
	for _, v := range vf.Vectors {
		for name, m := range map[string]*messageVector{"login": &v.Login, "request": &v.Request, "rotation": &v.Rotation} {
			secret, id, status, env := []byte(m.Secret), []byte(m.Header.MessageID), m.Response.Status, []byte(m.Response.Envelope)
			p := "vector-" + v.Suite + "-" + name
			fuzzseed.Write(t, target, p, secret, id, status, env)
			if name != "request" {
				continue
			}
			flip := func(i int) []byte { b := bytes.Clone(env); b[i] ^= 0x01; return b }
			fuzzseed.Write(t, target, p+"-status-changed", secret, id, status+1, env)
			fuzzseed.Write(t, target, p+"-message-id-changed", secret, flip16(id), status, env)
			fuzzseed.Write(t, target, p+"-secret-changed", flip16(secret), id, status, env)
			fuzzseed.Write(t, target, p+"-tag-flipped", secret, id, status, flip(len(env)-1))
			fuzzseed.Write(t, target, p+"-nonce-flipped", secret, id, status, flip(6))
			fuzzseed.Write(t, target, p+"-type-request", secret, id, status, func() []byte { b := bytes.Clone(env); b[3] = wire.TypeRequest; return b }())
			fuzzseed.Write(t, target, p+"-nonce-length-31", secret, id, status, func() []byte { b := bytes.Clone(env); b[5] = 31; return b }())
			fuzzseed.Write(t, target, p+"-header-only", secret, id, status, env[:38])
			fuzzseed.Write(t, target, p+"-header-cut", secret, id, status, env[:37])
			fuzzseed.Write(t, target, p+"-status-wraps-u16", secret, id, status+65536, env)
			fuzzseed.Write(t, target, p+"-secret-empty", []byte{}, id, status, env)
		}
	}
	for _, st := range []int{100, 204, 304, 999} {
		fuzzseed.Write(t, target, fmt.Sprintf("sealed-status-%d", st), testSecret, testMsgID[:], st, sealTestNoT(st, "", nil))
	}
	fuzzseed.Write(t, target, "sealed-json", testSecret, testMsgID[:], 200, sealTestNoT(200, "application/json", []byte(`{"ok":true}`)))
	fuzzseed.Write(t, target, "status-99", testSecret, testMsgID[:], 99, sealTestNoT(200, "", nil))
	fuzzseed.Write(t, target, "status-1000", testSecret, testMsgID[:], 1000, sealTestNoT(200, "", nil))
	fuzzseed.Write(t, target, "status-negative", testSecret, testMsgID[:], -200, sealTestNoT(200, "", nil))
	fuzzseed.Write(t, target, "empty", []byte{}, []byte{}, 0, []byte{})
}

func flip16(b []byte) []byte {
	b = bytes.Clone(b)
	if len(b) > 0 {
		b[0] ^= 0x80
	}
	return b
}

func sealTestNoT(status int, ct string, body []byte) []byte {
	env, err := wire.SealResponse(bytes.NewReader(bytes.Repeat([]byte{0x4e}, 32)), testSecret, testMsgID, status, ct, body)
	if err != nil {
		panic(err)
	}
	return env
}

func writeDirectorySeeds(t *testing.T, vf *vectorFile) {
	const target = "FuzzVerifyDirectory"
	for _, v := range vf.Vectors {
		fuzzseed.Write(t, target, "vector-"+v.Suite+"-document", []byte(v.Directory.Document))
		fuzzseed.Write(t, target, "vector-"+v.Suite+"-payload", []byte(v.Directory.Payload))
	}
	v := vf.Vectors[0]
	b64 := base64.RawURLEncoding.EncodeToString
	pub, old := []byte(v.Keys.Server.PublicKey), []byte(v.Keys.OldServer.PublicKey)
	id, oldID := hex.EncodeToString(v.Keys.Server.KeyID), hex.EncodeToString(v.Keys.OldServer.KeyID)
	key := func(id string, pub string, status string, expires int64) string {
		s := fmt.Sprintf(`{"id":%q,"public":%q,"status":%q`, id, pub, status)
		if expires != 0 {
			s += fmt.Sprintf(`,"expires":%d`, expires)
		}
		return s + "}"
	}
	primary := key(id, b64(pub), "primary", 0)
	retired := key(oldID, b64(old), "decrypt-only", 1764117400000)
	dir := func(head string, keys ...string) []byte {
		return []byte(fmt.Sprintf(`{%s,"keys":[%s]}`, head, strings.Join(keys, ",")))
	}
	const head = `"version":1,"epoch":7,"suite":"ecies-x25519","s_time":1764116800000`
	cases := []struct {
		name string
		b    []byte
	}{
		{"payload-valid", dir(head, primary, retired)},
		{"payload-primary-only", dir(head, primary)},
		{"payload-no-keys", dir(head)},
		{"payload-keys-null", []byte(`{` + head + `,"keys":null}`)},
		{"payload-two-primaries", dir(head, primary, key(oldID, b64(old), "primary", 0))},
		{"payload-no-primary", dir(head, retired)},
		{"payload-key-twice", dir(head, primary, primary)},
		{"payload-version-0", dir(strings.Replace(head, `"version":1`, `"version":0`, 1), primary)},
		{"payload-version-2", dir(strings.Replace(head, `"version":1`, `"version":2`, 1), primary)},
		{"payload-version-string", dir(strings.Replace(head, `"version":1`, `"version":"1"`, 1), primary)},
		{"payload-suite-upper-case", dir(strings.Replace(head, "ecies-x25519", "ECIES-X25519", 1), primary)},
		{"payload-suite-other", dir(strings.Replace(head, "ecies-x25519", "ecies-p256", 1), primary)},
		{"payload-epoch-max-u64", dir(strings.Replace(head, `"epoch":7`, `"epoch":18446744073709551615`, 1), primary)},
		{"payload-epoch-over-u64", dir(strings.Replace(head, `"epoch":7`, `"epoch":18446744073709551616`, 1), primary)},
		{"payload-epoch-negative", dir(strings.Replace(head, `"epoch":7`, `"epoch":-1`, 1), primary)},
		{"payload-epoch-float", dir(strings.Replace(head, `"epoch":7`, `"epoch":7.5`, 1), primary)},
		{"payload-s-time-negative", dir(strings.Replace(head, `1764116800000`, `-9223372036854775808`, 1), primary)},
		{"payload-duplicate-member", dir(head+`,"epoch":8`, primary)},
		{"payload-upper-case-member", dir(strings.Replace(head, `"epoch"`, `"EPOCH"`, 1), primary)},
		{"payload-unknown-member", dir(head+`,"extra":true`, primary)},
		{"payload-trailing-garbage", append(dir(head, primary), " x"...)},
		{"payload-id-upper-case-hex", dir(head, key(strings.ToUpper(id), b64(pub), "primary", 0))},
		{"payload-id-of-other-key", dir(head, key(oldID, b64(pub), "primary", 0))},
		{"payload-id-of-other-suite", dir(head, key(wire.ComputeKeyID("ecies-p256", pub).String(), b64(pub), "primary", 0))},
		{"payload-id-short", dir(head, key(id[:14], b64(pub), "primary", 0))},
		{"payload-status-retired", dir(head, primary, key(oldID, b64(old), "retired", 1764117400000))},
		{"payload-status-upper-case", dir(head, key(id, b64(pub), "PRIMARY", 0))},
		{"payload-primary-with-expires", dir(head, key(id, b64(pub), "primary", 1764117400000))},
		{"payload-decrypt-only-no-expires", dir(head, primary, key(oldID, b64(old), "decrypt-only", 0))},
		{"payload-decrypt-only-negative-expires", dir(head, primary, key(oldID, b64(old), "decrypt-only", -1))},
		{"payload-public-padded", dir(head, key(id, base64.URLEncoding.EncodeToString(pub), "primary", 0))},
		{"payload-public-std-alphabet", dir(head, key(id, base64.RawStdEncoding.EncodeToString(pub), "primary", 0))},
		{"payload-public-line-break", dir(head, key(id, b64(pub)[:20]+`\n`+b64(pub)[20:], "primary", 0))},
		{"payload-public-trailing-bits", dir(head, key(id, b64(pub)[:len(b64(pub))-1]+"B", "primary", 0))},
		{"payload-public-empty", dir(head, key(wire.ComputeKeyID("ecies-x25519", nil).String(), "", "primary", 0))},
		{"payload-not-object", []byte(`[]`)},
		{"payload-null", []byte(`null`)},
		{"payload-empty", []byte{}},
	}
	for _, c := range cases {
		fuzzseed.Write(t, target, c.name, c.b)
	}
	// Served documents: as served, and with the identity or the signature
	// altered.
	doc := func(identity, payload, sig []byte) []byte {
		return []byte(fmt.Sprintf(`{"identity":%q,"payload":%q,"signature":%q}`, b64(identity), b64(payload), b64(sig)))
	}
	payload := dir(head, primary, retired)
	sig := ed25519.Sign(fuzzIdentity, append([]byte("dynkey/v1 key directory\x00"), payload...))
	idPub := []byte(fuzzIdentity.Public().(ed25519.PublicKey))
	fuzzseed.Write(t, target, "document-valid", doc(idPub, payload, sig))
	fuzzseed.Write(t, target, "document-signature-flipped", doc(idPub, payload, flip16(sig)))
	fuzzseed.Write(t, target, "document-signature-short", doc(idPub, payload, sig[:63]))
	fuzzseed.Write(t, target, "document-signature-without-label", doc(idPub, payload, ed25519.Sign(fuzzIdentity, payload)))
	fuzzseed.Write(t, target, "document-identity-short", doc(idPub[:31], payload, sig))
	fuzzseed.Write(t, target, "document-identity-other", doc([]byte(v.Identity.PublicKey), payload, sig))
	fuzzseed.Write(t, target, "document-payload-padded", []byte(fmt.Sprintf(`{"identity":%q,"payload":%q,"signature":%q}`,
		b64(idPub), base64.URLEncoding.EncodeToString(payload), b64(sig))))
}

func writeProblemSeeds(t *testing.T, vf *vectorFile) {
	const target = "FuzzParseProblem"
	for _, v := range vf.Vectors {
		for _, p := range v.Problems {
			fuzzseed.Write(t, target, "vector-"+v.Suite+"-"+p.Code, []byte(p.JSON))
		}
	}
	cases := []struct {
		name string
		b    string
	}{
		{"minimal", `{"type":"urn:dynkey:problem:replay","code":"replay"}`},
		{"type-of-other-code", `{"type":"urn:dynkey:problem:stale","code":"replay","status":400}`},
		{"type-about-blank", `{"type":"about:blank","title":"Bad Gateway","status":502,"code":"unavailable"}`},
		{"proxy-problem-no-code", `{"type":"https://proxy.example/errors/timeout","title":"Timeout","status":504}`},
		{"code-empty", `{"type":"urn:dynkey:problem:","code":""}`},
		{"code-unknown", `{"type":"urn:dynkey:problem:teapot","code":"teapot","status":418}`},
		{"code-upper-case", `{"type":"urn:dynkey:problem:REPLAY","code":"REPLAY"}`},
		{"status-string", `{"type":"urn:dynkey:problem:replay","code":"replay","status":"400"}`},
		{"s-time-max-i64", `{"type":"urn:dynkey:problem:stale","code":"stale","status":400,"s_time":9223372036854775807}`},
		{"s-time-over-i64", `{"type":"urn:dynkey:problem:stale","code":"stale","status":400,"s_time":9223372036854775808}`},
		{"s-time-negative", `{"type":"urn:dynkey:problem:stale","code":"stale","status":400,"s_time":-1}`},
		{"directory-not-object", `{"type":"urn:dynkey:problem:server-key-unknown","code":"server-key-unknown","directory":"x"}`},
		{"directory-bad-base64", `{"type":"urn:dynkey:problem:server-key-unknown","code":"server-key-unknown","directory":{"identity":"a=","payload":"","signature":""}}`},
		{"directory-null", `{"type":"urn:dynkey:problem:server-key-unknown","code":"server-key-unknown","directory":null}`},
		{"duplicate-code", `{"type":"urn:dynkey:problem:replay","code":"replay","code":"stale"}`},
		{"upper-case-members", `{"TYPE":"urn:dynkey:problem:replay","CODE":"replay"}`},
		{"array", `[]`},
		{"null", `null`},
		{"empty", ``},
		{"html", `<html><body>502 Bad Gateway</body></html>`},
		{"truncated", `{"type":"urn:dynkey:problem:replay","code":"rep`},
	}
	for _, c := range cases {
		fuzzseed.Write(t, target, c.name, []byte(c.b))
	}
}
