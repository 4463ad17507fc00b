package e2e

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/auth"
	"github.com/dynkey/dynkey/client"
	"github.com/dynkey/dynkey/middleware"
)

func TestSmoke(t *testing.T) {
	users := auth.NewArgon2id(auth.Params{Time: 1, MemoryKiB: 1024, Threads: 1, SaltLen: 16, KeyLen: 32})
	require.NoError(t, users.AddUser("alice", "pw"))
	m, err := middleware.New(middleware.Options{Authenticator: users, MaintainInterval: -1})
	require.NoError(t, err)
	defer m.Close()
	mux := http.NewServeMux()
	mux.Handle("/dynkey/", m.Endpoints())
	mux.Handle("/.well-known/dynkey/", m.Endpoints())
	mux.Handle("/api/", m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s, _ := middleware.FromContext(r.Context())
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, s.Username+":"+string(b))
	})))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c, err := client.New(client.Config{BaseURL: srv.URL, Username: "alice", Password: "pw", HeartbeatInterval: -1,
		IdentityKey: m.IdentityPublicKey()})
	require.NoError(t, err)
	defer c.Close()
	hc := c.HTTPClient()
	for i := range 3 {
		// PUT: the SDK rotates only on heartbeats and idempotent requests.
		req, _ := http.NewRequest(http.MethodPut, srv.URL+"/api/echo", strings.NewReader("hello"))
		resp, err := hc.Do(req)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		require.Equal(t, 200, resp.StatusCode, string(b))
		require.Equal(t, "alice:hello", string(b))
		if i == 1 {
			c.RotateNow()
		}
	}
	require.Equal(t, uint64(1), c.Stats().ClientRotations)
	require.NoError(t, m.Rotate(context.Background()))
	require.NoError(t, c.Heartbeat(context.Background()))
	require.Equal(t, uint64(1), c.Stats().ServerKeyChanges)
	resp, err := hc.Get(srv.URL + "/api/x")
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	require.Equal(t, "alice:", string(b))
	_ = time.Second
}
