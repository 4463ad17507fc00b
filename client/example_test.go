package client_test

import (
	"errors"
	"fmt"

	"github.com/dynkey/dynkey/client"
)

// Without a pinned identity key, the client takes the server's identity
// from the first key directory it fetches, so that fetch must be protected
// by TLS: an http:// BaseURL is refused.
func ExampleNew_firstContactNeedsTLS() {
	_, err := client.New(client.Config{BaseURL: "http://api.example.com", Username: "alice", Password: "pw"})
	fmt.Println(errors.Is(err, client.ErrFirstContactWithoutTLS))
	// Output: true
}

// A HEAD request is refused before anything is sent: its response has no
// body, so the client could not authenticate it.
func ExampleErrUnsupportedMethod() {
	c, err := client.New(client.Config{BaseURL: "https://api.example.com", Username: "alice", Password: "pw",
		HeartbeatInterval: -1})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	_, err = c.HTTPClient().Head("https://api.example.com/api/status")
	fmt.Println(errors.Is(err, client.ErrUnsupportedMethod))
	// Output: true
}
