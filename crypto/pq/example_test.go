package pq_test

import (
	"bytes"
	"fmt"

	"github.com/dynkey/dynkey/crypto"
	"github.com/dynkey/dynkey/crypto/pq"
)

// A client seals a request to a server with post-quantum keys, authenticated
// as coming from the client's key; both sides get the same per-message
// secret.
func Example() {
	s, err := crypto.Lookup("pq-xwing") // or pq.XWing()
	if err != nil {
		panic(err)
	}
	client, _ := s.GenerateKey(nil)
	server, _ := s.GenerateKey(nil)

	info := []byte("dynkey/v1 request")
	aad := []byte("request-id: 42")
	ct, clientSecret, err := s.Seal(nil, server.Public(), client, info, aad, []byte("hello, server"))
	if err != nil {
		panic(err)
	}

	pt, serverSecret, err := s.Open(server, client.Public(), info, aad, ct)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s\n", pt)
	fmt.Println("secrets equal:", bytes.Equal(clientSecret, serverSecret), len(serverSecret))
	fmt.Println("overhead:", len(ct)-len(pt)) // 1,120-byte enc + 16-byte tag + 3,309-byte signature
	fmt.Println("keys:", len(server.Public().Bytes()), "and", len(server.Bytes()), "bytes")

	// Anything else fails with crypto.ErrOpen.
	_, _, err = s.Open(server, client.Public(), info, []byte("request-id: 43"), ct)
	fmt.Println(err)
	_ = pq.Name
	// Output:
	// hello, server
	// secrets equal: true 32
	// overhead: 4445
	// keys: 3170 and 64 bytes
	// dynkey/crypto: message authentication failed
}
