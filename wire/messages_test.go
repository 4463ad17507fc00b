package wire_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/dynkey/dynkey/wire"
)

var allCodes = []struct {
	code   wire.Code
	status int
}{
	{wire.CodeBadFormat, http.StatusBadRequest},
	{wire.CodeNotEncrypted, http.StatusUnsupportedMediaType},
	{wire.CodeTooLarge, http.StatusRequestEntityTooLarge},
	{wire.CodeUnsupportedSuite, http.StatusBadRequest},
	{wire.CodeServerKeyUnknown, http.StatusBadRequest},
	{wire.CodeDecryptFailed, http.StatusBadRequest},
	{wire.CodeTokenInvalid, http.StatusUnauthorized},
	{wire.CodeTokenExpired, http.StatusUnauthorized},
	{wire.CodeClientKeyUnknown, http.StatusUnauthorized},
	{wire.CodeStale, http.StatusBadRequest},
	{wire.CodeReplay, http.StatusBadRequest},
	{wire.CodeRotationRefused, http.StatusConflict},
	{wire.CodeLoginFailed, http.StatusUnauthorized},
	{wire.CodeLoginThrottled, http.StatusTooManyRequests},
	{wire.CodeLoginBusy, http.StatusServiceUnavailable},
	{wire.CodeMethod, http.StatusMethodNotAllowed},
	{wire.CodeUnavailable, http.StatusServiceUnavailable},
}

func TestProblemJSON(t *testing.T) {
	for _, tt := range allCodes {
		t.Run(string(tt.code), func(t *testing.T) {
			p := wire.NewProblem(tt.code, "some detail")
			if p.Status != tt.status || p.Status != tt.code.Status() {
				t.Errorf("status %d, Code.Status() %d, want %d", p.Status, tt.code.Status(), tt.status)
			}
			if p.Title == "" {
				t.Error("no title")
			}
			b, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			want := map[string]any{"type": "urn:dynkey:problem:" + string(tt.code), "title": p.Title,
				"status": float64(tt.status), "detail": "some detail", "code": string(tt.code)}
			if len(m) != len(want) {
				t.Errorf("members %v, want %v", m, want)
			}
			for k, v := range want {
				if m[k] != v {
					t.Errorf("%s = %v, want %v", k, m[k], v)
				}
			}
			q, ok := wire.ParseProblem(b)
			if !ok || q.Code != tt.code || q.Status != tt.status || q.Type != tt.code.TypeURI() || q.Detail != "some detail" {
				t.Errorf("ParseProblem = %+v, %v", q, ok)
			}
			if q.Error() == "" {
				t.Error("empty Error()")
			}
		})
	}
}

func TestProblemOptionalMembers(t *testing.T) {
	p := wire.NewProblem(wire.CodeStale, "")
	p.STime = 1767225600000
	b, _ := json.Marshal(p)
	want := `{"type":"urn:dynkey:problem:stale","title":"Message outside the freshness window","status":400,"code":"stale","s_time":1767225600000}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
	if p.Error() != "dynkey: stale (400)" {
		t.Errorf("Error() = %q", p.Error())
	}
}

func TestParseProblem(t *testing.T) {
	tests := []struct {
		name string
		body string
		ok   bool
	}{
		{"dynkey problem", `{"type":"urn:dynkey:problem:replay","title":"t","status":400,"code":"replay"}`, true},
		{"unknown dynkey code", `{"type":"urn:dynkey:problem:future-code","status":400,"code":"future-code"}`, true},
		{"not JSON", `<html>502 Bad Gateway</html>`, false},
		{"empty", ``, false},
		{"JSON null", `null`, false},
		{"JSON array", `[]`, false},
		{"JSON string", `"stale"`, false},
		{"object without code", `{"type":"about:blank","title":"Not Found","status":404}`, false},
		{"login response", `{"token":"AQ","token_expires":1,"client_key_id":"00","s_time":1,"directory":null}`, false},
		{"code of the wrong type", `{"type":"urn:dynkey:problem:stale","code":400}`, false},
		{"foreign problem with a code member", `{"type":"https://example.com/probs/out-of-credit","status":403,"code":"stale"}`, false},
		{"code without type", `{"code":"stale"}`, false},
		{"type and code disagree", `{"type":"urn:dynkey:problem:replay","code":"stale"}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, ok := wire.ParseProblem([]byte(tt.body))
			if ok != tt.ok || (p != nil) != tt.ok {
				t.Fatalf("ParseProblem = %+v, %v; want ok=%v", p, ok, tt.ok)
			}
		})
	}
}

func TestMessageJSONShapes(t *testing.T) {
	b, _ := json.Marshal(wire.LoginRequest{Username: "alice", Password: "pw"})
	if string(b) != `{"username":"alice","password":"pw"}` {
		t.Errorf("LoginRequest: %s", b)
	}
	b, _ = json.Marshal(wire.LoginResponse{Token: wire.B64{1, 2}, TokenExpires: 5, ClientKeyID: "00", STime: 4})
	if string(b) != `{"token":"AQI","token_expires":5,"client_key_id":"00","s_time":4,"directory":null}` {
		t.Errorf("LoginResponse: %s", b)
	}
	b, _ = json.Marshal(wire.HeartbeatResponse{STime: 4})
	if string(b) != `{"s_time":4,"directory":null}` {
		t.Errorf("HeartbeatResponse: %s", b)
	}
	b, _ = json.Marshal(wire.HeartbeatResponse{STime: 4, RotateClientKey: true})
	if string(b) != `{"s_time":4,"directory":null,"rotate_client_key":true}` {
		t.Errorf("HeartbeatResponse: %s", b)
	}
}

func TestCodesListsEveryCode(t *testing.T) {
	codes := wire.Codes()
	if len(codes) != 18 {
		t.Fatalf("Codes() has %d codes, want 18 (update this test when adding one)", len(codes))
	}
	for _, c := range codes {
		if p := wire.NewProblem(c, "x"); p.Title == "" || p.Status < 400 {
			t.Errorf("code %q: title %q status %d", c, p.Title, p.Status)
		}
	}
}
