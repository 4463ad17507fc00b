package dynkeychi_test

import (
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"

	"github.com/go-chi/chi/v5"
	"github.com/rs/cors"

	dynkeychi "github.com/dynkey/dynkey/adapters/chi"
	"github.com/dynkey/dynkey/auth"
	"github.com/dynkey/dynkey/client"
	"github.com/dynkey/dynkey/middleware"
)

// A chi router with dynkey: rs/cors in front for browser pages, the
// endpoints mounted, a protected sub-router with a route parameter.
func Example() {
	users := auth.NewArgon2id(auth.Params{Time: 1, MemoryKiB: 1024, Threads: 1, SaltLen: 16, KeyLen: 32})
	if err := users.AddUser("alice", "pw"); err != nil {
		log.Fatal(err)
	}
	m, err := middleware.New(middleware.Options{Authenticator: users, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	r := chi.NewRouter()
	r.Use(cors.New(dynkeychi.CORSOptions([]string{"https://app.example.com"})).Handler)
	dynkeychi.Mount(r, m)
	r.Route("/api", func(r chi.Router) {
		r.Use(m.Handler)
		r.Get("/items/{id}", func(w http.ResponseWriter, r *http.Request) {
			s, _ := middleware.FromContext(r.Context())
			io.WriteString(w, s.Username+" reads item "+chi.URLParam(r, "id"))
		})
	})
	srv := httptest.NewServer(r)
	defer srv.Close()

	c, err := client.New(client.Config{BaseURL: srv.URL, Username: "alice", Password: "pw", IdentityKey: m.IdentityPublicKey()})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	resp, err := c.HTTPClient().Get(srv.URL + "/api/items/42")
	if err != nil {
		log.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, string(b))
	// Output: 200 alice reads item 42
}
