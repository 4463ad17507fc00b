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
