package rsa_test

import (
	"bytes"
	"fmt"

	"github.com/dynkey/dynkey/crypto"
	"github.com/dynkey/dynkey/crypto/rsa"
)

// A client seals a request to a server with RSA-2048 keys, authenticated as
// coming from the client's key; both sides get the same per-message secret.
func Example() {
	s, err := crypto.Lookup("rsa-2048") // or rsa.RSA2048()
	if err != nil {
		panic(err)
	}
	// RSA key generation is slow: generate keys ahead of time.
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
	fmt.Println("overhead:", len(ct)-len(pt)) // 256-byte wrapped key + 12-byte nonce + 16-byte tag + 256-byte signature
	fmt.Println("public key:", len(server.Public().Bytes()), "bytes")

	// Anything else fails with crypto.ErrOpen.
	_, _, err = s.Open(server, client.Public(), info, []byte("request-id: 43"), ct)
	fmt.Println(err)

	// A key of another size belongs to another suite.
	_, err = rsa.RSA3072().ParsePublicKey(server.Public().Bytes())
	fmt.Println(err)
	// Output:
	// hello, server
	// secrets equal: true 32
	// overhead: 540
	// public key: 294 bytes
	// dynkey/crypto: message authentication failed
	// rsa-3072: public key is 294 bytes, want 422: dynkey/crypto: malformed key
}
