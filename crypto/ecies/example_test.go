package ecies_test

import (
	"bytes"
	"fmt"

	"github.com/dynkey/dynkey/crypto"
	"github.com/dynkey/dynkey/crypto/ecies"
)

// A client seals a request to a server, authenticated as coming from the
// client's key; both sides get the same per-message secret.
func Example() {
	s, err := crypto.Lookup("ecies-x25519") // or ecies.X25519()
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
	fmt.Println("overhead:", len(ct)-len(pt)) // 32-byte enc + 16-byte tag

	// Anything else fails with crypto.ErrOpen.
	_, _, err = s.Open(server, client.Public(), info, []byte("request-id: 43"), ct)
	fmt.Println(err)
	_ = ecies.P256 // the P-256 suite works the same way
	// Output:
	// hello, server
	// secrets equal: true 32
	// overhead: 48
	// dynkey/crypto: message authentication failed
}
