package middleware_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/dynkey/dynkey/auth"
	"github.com/dynkey/dynkey/client"
	"github.com/dynkey/dynkey/middleware"
	"github.com/dynkey/dynkey/store/memory"
)

// exampleUsers is a user table with cheap hashing parameters, to keep the
// examples fast; use auth.DefaultParams in production.
func exampleUsers() *auth.Argon2id {
	users := auth.NewArgon2id(auth.Params{Time: 1, MemoryKiB: 1024, Threads: 1, SaltLen: 16, KeyLen: 32})
	if err := users.AddUser("alice", "correct horse battery staple"); err != nil {
		log.Fatal(err)
	}
	return users
}

// exampleKEK stands for the 32-byte key-encryption key from a secret manager
// (the same on every instance, and across restarts).
func exampleKEK() []byte {
	kek := make([]byte, 32)
	if _, err := rand.Read(kek); err != nil {
		log.Fatal(err)
	}
	return kek
}

// A server protects its API with New, Endpoints and Handler; a client (an
// ordinary http.Client with the dynkey transport) logs in on its first
// request. The handler sees the plaintext body and the caller's session;
// on the wire both bodies are sealed.
func ExampleNew() {
	m, err := middleware.New(middleware.Options{
		Store:            memory.New(), // sqlite.Open(path) for a durable store
		Authenticator:    exampleUsers(),
		KeyEncryptionKey: exampleKEK(),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	mux := http.NewServeMux()
	mux.Handle("/dynkey/", m.Endpoints())             // login, heartbeat
	mux.Handle("/.well-known/dynkey/", m.Endpoints()) // signed key directory
	mux.Handle("/api/", m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := middleware.FromContext(r.Context())
		body, _ := io.ReadAll(r.Body) // already decrypted
		fmt.Fprintf(w, "%s: %s", s.Username, body)
	})))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	// Pin the server's identity key (over https, trusting it on first use
	// is the alternative).
	c, err := client.New(client.Config{BaseURL: srv.URL, Username: "alice", Password: "correct horse battery staple",
		IdentityKey: m.IdentityPublicKey()})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	resp, err := c.HTTPClient().Post(srv.URL+"/api/echo", "text/plain", strings.NewReader("hello"))
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(b))
	// Output: 200 alice: hello
}

// The client pins the server's identity key (printed by the server with
// IdentityPublicKey), rotates its own key and follows a server key rotation
// announced in a heartbeat, all without a failed request.
func Example_client() {
	m, err := middleware.New(middleware.Options{
		Authenticator:    exampleUsers(),
		KeyEncryptionKey: exampleKEK(),
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	mux := http.NewServeMux()
	mux.Handle("/dynkey/", m.Endpoints())
	mux.Handle("/.well-known/dynkey/", m.Endpoints())
	mux.Handle("/api/", m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := middleware.FromContext(r.Context())
		fmt.Fprintf(w, "hello %s", s.Username)
	})))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	c, err := client.New(client.Config{
		BaseURL:     srv.URL,
		Username:    "alice",
		Password:    "correct horse battery staple",
		IdentityKey: m.IdentityPublicKey(), // pinned: only this server's directories are trusted
		OnEvent: func(e client.Event) {
			if e.Kind == client.EventServerKeyChanged {
				fmt.Println("event:", e.Kind)
			}
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	hc := c.HTTPClient()
	get := func() {
		resp, err := hc.Get(srv.URL + "/api/hello")
		if err != nil {
			log.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		fmt.Println(resp.StatusCode, string(b))
	}

	get()
	if err := m.Rotate(context.Background()); err != nil { // normally the server policy does this
		log.Fatal(err)
	}
	if err := c.Heartbeat(context.Background()); err != nil { // normally every HeartbeatInterval
		log.Fatal(err)
	}
	get()
	st := c.Stats()
	fmt.Println("logins:", st.Logins, "server key changes:", st.ServerKeyChanges, "recoveries:", st.Recoveries)
	// Output:
	// 200 hello alice
	// event: server-key-changed
	// 200 hello alice
	// logins: 1 server key changes: 1 recoveries: 0
}

// The byte-level core refuses a request without an envelope: the error is
// a *middleware.Problem, matched with errors.Is, rendered by Refusal as the
// problem+json response an adapter writes as it is.
func ExampleMiddleware_Open() {
	m, err := middleware.New(middleware.Options{Authenticator: exampleUsers(), MaintainInterval: -1})
	if err != nil {
		panic(err)
	}
	defer m.Close()
	ctx := context.Background()
	req := &middleware.Request{Method: "POST", EscapedPath: "/api/orders", ContentLength: 2,
		ContentType: "application/json", Body: strings.NewReader("{}")}
	_, err = m.Open(ctx, req)
	fmt.Println(errors.Is(err, middleware.ErrNotEncrypted))
	resp := m.Refusal(ctx, req, err)
	fmt.Println(resp.Status, resp.Header.Get("Content-Type"), resp.Header.Get("Dynkey-Problem"))
	// Output:
	// true
	// 415 application/problem+json not-encrypted
}

// An optional route takes a plain request as it is: Encrypted is false, no
// session, and Seal returns the handler's response unsealed.
func ExampleMiddleware_OpenOptional() {
	m, err := middleware.New(middleware.Options{Authenticator: exampleUsers(), MaintainInterval: -1})
	if err != nil {
		panic(err)
	}
	defer m.Close()
	o, err := m.OpenOptional(context.Background(), &middleware.Request{Method: "GET", EscapedPath: "/api/catalog"})
	if err != nil {
		panic(err)
	}
	resp, _ := o.Seal(200, "text/plain", []byte("hello"))
	fmt.Println(o.Encrypted, o.Session == nil, resp.Status, string(resp.Body))
	// Output: false true 200 hello
}

// ProblemResponse never turns an internal error into a 500 or leaks its
// text: anything that is not a refusal is the 503 "unavailable" problem.
func ExampleProblemResponse() {
	resp := middleware.ProblemResponse(errors.New("dial tcp 10.0.0.5:6379: connection refused"))
	fmt.Println(resp.Status, strings.Contains(string(resp.Body), "10.0.0.5"))
	// Output: 503 false
}
