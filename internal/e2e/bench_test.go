package e2e

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/dynkey/dynkey/client"
	"github.com/dynkey/dynkey/middleware"
	"github.com/dynkey/dynkey/store/memory"
)

// handlerTransport serves requests in-process, to measure dynkey's own cost
// without the network: an http.RoundTripper over an http.Handler.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

// BenchmarkRoundTrip measures one protected request end to end, in process:
// the client's Seal, the server's checks, Open and response sealing, and the
// client's response Open — per suite, with a 1 KiB body.
//
//	go test -run XXX -bench RoundTrip -benchtime 2000x ./internal/e2e
func BenchmarkRoundTrip(b *testing.B) {
	for _, suite := range []string{"ecies-x25519", "ecies-p256", "tink-hpke-x25519", "pq-xwing", "rsa-2048"} {
		b.Run(suite, func(b *testing.B) {
			users := newUsers(b)
			m, err := middleware.New(middleware.Options{Suite: suite, Store: memory.New(), Authenticator: users,
				KeyEncryptionKey: testKEK, MaintainInterval: -1, Logger: quietLog})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			mux := http.NewServeMux()
			mux.Handle("/dynkey/", m.Endpoints())
			mux.Handle("/.well-known/dynkey/", m.Endpoints())
			mux.Handle("/api/", m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(w, r.Body)
			})))
			c, err := client.New(client.Config{BaseURL: "http://dynkey.test", Username: "alice", Password: testUsers["alice"],
				Suite: suite, HeartbeatInterval: -1, Transport: handlerTransport{mux}, Logger: quietLog,
				IdentityKey: m.IdentityPublicKey()})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			hc := c.HTTPClient()
			body := bytes.Repeat([]byte("x"), 1024)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				resp, err := hc.Post("http://dynkey.test/api/echo", "application/octet-stream", bytes.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || len(got) != len(body) {
					b.Fatalf("HTTP %d, %d bytes", resp.StatusCode, len(got))
				}
			}
		})
	}
}
