package middleware_test

import (
	"bytes"
	"context"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/auth"
	"github.com/dynkey/dynkey/client"
	"github.com/dynkey/dynkey/middleware"
	"github.com/dynkey/dynkey/policy"
	"github.com/dynkey/dynkey/store"
	"github.com/dynkey/dynkey/store/memory"
	"github.com/dynkey/dynkey/store/sqlite"
)

// TestCoreReplayAnsweredWithStoredResponse: through the byte-level core,
// opening an envelope a second time returns a "replay" *Problem whose
// Replayed response is, byte for byte, the response the first Seal
// returned, and which Refusal and Response answer with; with
// StoredResponseLimit negative, nothing is kept.
func TestCoreReplayAnsweredWithStoredResponse(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit int64
		kept  bool
	}{{"default limit", 0, true}, {"recording off", -1, false}, {"limit below the response", 10, false}} {
		t.Run(tc.name, func(t *testing.T) {
			m := newCoreMiddleware(t, middleware.Options{StoredResponseLimit: tc.limit})
			tr := &coreTransport{m: m, handler: echoHandler}
			hc := newCoreClient(t, m, tr).HTTPClient()
			ctx := context.Background()
			resp, err := hc.Post("https://core.test/api/x", "text/plain", nil)
			require.NoError(t, err)
			resp.Body.Close()
			tr.mu.Lock()
			last, env, first := *tr.last, tr.lastEnv, tr.lastResp
			tr.mu.Unlock()
			require.NotNil(t, first)
			last.Body, last.ContentLength, last.Envelope = bytes.NewReader(env), int64(len(env)), "" // the same envelope
			_, err = m.Open(ctx, &last)
			require.ErrorIs(t, err, middleware.ErrReplay)
			var p *middleware.Problem
			require.ErrorAs(t, err, &p)
			stored, ok := p.Replayed()
			require.Equal(t, tc.kept, ok)
			if !tc.kept {
				require.Equal(t, http.StatusBadRequest, m.Refusal(ctx, &last, err).Status)
				return
			}
			require.Equal(t, first, stored)
			require.Equal(t, first, m.Refusal(ctx, &last, err))
			require.Equal(t, first, p.Response())
		})
	}
}

// BenchmarkOutcomeRecording: the cost of recording each response for
// retries (one compare-and-swap per request) on the memory store and on
// SQLite (synchronous=FULL), against recording off.
func BenchmarkOutcomeRecording(b *testing.B) {
	for _, st := range []struct {
		name string
		open func(b *testing.B) store.Store
	}{
		{"memory", func(*testing.B) store.Store { return memory.New() }},
		{"sqlite", func(b *testing.B) store.Store {
			s, err := sqlite.Open(filepath.Join(b.TempDir(), "d.db"))
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
	} {
		for _, mode := range []struct {
			name  string
			limit int64
		}{{"stored", 0}, {"off", -1}} {
			b.Run(st.name+"/"+mode.name, func(b *testing.B) {
				users := auth.NewArgon2id(auth.Params{Time: 1, MemoryKiB: 1024, Threads: 1, SaltLen: 16, KeyLen: 32})
				if err := users.AddUser("alice", "pw"); err != nil {
					b.Fatal(err)
				}
				s := st.open(b)
				defer s.Close()
				m, err := middleware.New(middleware.Options{Authenticator: users, MaintainInterval: -1, Logger: quiet,
					Store: s, StoredResponseLimit: mode.limit, KeyEncryptionKey: coreKEK})
				if err != nil {
					b.Fatal(err)
				}
				defer m.Close()
				tr := &coreTransport{m: m, handler: echoHandler}
				c, err := client.New(client.Config{BaseURL: "https://core.test", Username: "alice", Password: "pw",
					IdentityKey: m.IdentityPublicKey(), Transport: tr, HeartbeatInterval: -1, Policy: policy.Manual()})
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				hc := c.HTTPClient()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					resp, err := hc.Post("https://core.test/api/x", "text/plain", nil)
					if err != nil {
						b.Fatal(err)
					}
					resp.Body.Close()
				}
			})
		}
	}
}
