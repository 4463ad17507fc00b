package tink_test

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/dynkey/dynkey/crypto"
	"github.com/dynkey/dynkey/crypto/tink"
	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
)

// A client seals a request to a server with tink keysets, authenticated as
// coming from the client's key; both sides get the same per-message secret.
func Example() {
	s, err := crypto.Lookup("tink-hpke-x25519") // or tink.HPKEX25519()
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
	fmt.Println("overhead:", len(ct)-len(pt)) // 32 enc + 16 tag + 32 secret + 64 signature

	// Anything else fails with crypto.ErrOpen.
	_, _, err = s.Open(server, client.Public(), info, []byte("request-id: 43"), ct)
	fmt.Println(err)
	// Output:
	// hello, server
	// secrets equal: true 32
	// overhead: 144
	// dynkey/crypto: message authentication failed
}

// Private keys are stored encrypted under a key-encryption AEAD: here a
// local tink AES-256-GCM keyset; in production typically a KMS key through
// a tink KMS client.
func ExampleMarshalPrivateKeyEncrypted() {
	kekHandle, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		panic(err)
	}
	kek, err := aead.New(kekHandle)
	if err != nil {
		panic(err)
	}

	key, _ := tink.ECIESP256().GenerateKey(nil)
	stored, err := tink.MarshalPrivateKeyEncrypted(key, kek)
	if err != nil {
		panic(err)
	}

	back, err := tink.ParsePrivateKeyEncrypted(stored, kek)
	if err != nil {
		panic(err)
	}
	fmt.Println("same public key:", bytes.Equal(back.Public().Bytes(), key.Public().Bytes()))

	otherKEKHandle, _ := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	otherKEK, _ := aead.New(otherKEKHandle)
	_, err = tink.ParsePrivateKeyEncrypted(stored, otherKEK)
	fmt.Println(errors.Is(err, tink.ErrKeyDecryption))
	// Output:
	// same public key: true
	// true
}

// A Ring rotates server keys with tink's keyset life cycle: the primary
// key authenticates what the server seals, every enabled key decrypts, and
// a disabled or deleted key no longer does.
func ExampleRing() {
	s := tink.HPKEX25519()
	client, _ := s.GenerateKey(nil)
	oldKey, _ := s.GenerateKey(nil)
	newKey, _ := s.GenerateKey(nil)

	ring, err := tink.NewRing(s)
	if err != nil {
		panic(err)
	}
	oldID, _ := ring.Add(oldKey)
	newID, _ := ring.Add(newKey)
	_ = ring.SetPrimary(oldID)

	// A request sealed to the old key before the rotation.
	inFlight, _, _ := s.Seal(nil, oldKey.Public(), client, nil, nil, []byte("late request"))

	_ = ring.SetPrimary(newID) // rotate: new key signs from now on
	pt, _, err := ring.Open(oldID, client.Public(), nil, nil, inFlight)
	fmt.Printf("%s %v\n", pt, err)

	_ = ring.Disable(oldID) // grace window over
	_, _, err = ring.Open(oldID, client.Public(), nil, nil, inFlight)
	fmt.Println(err)

	_ = ring.Delete(oldID)
	_, err = ring.Status(oldID)
	fmt.Println(errors.Is(err, tink.ErrUnknownKey), len(ring.IDs()))
	// Output:
	// late request <nil>
	// dynkey/crypto: message authentication failed
	// true 1
}
