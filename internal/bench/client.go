package bench

import (
	"crypto/ed25519"
	"log/slog"

	"github.com/dynkey/dynkey/client"
)

// newRealClient is a dynkey client that sends its requests.
func newRealClient(base, suite string, identity ed25519.PublicKey) (*client.Client, error) {
	return client.New(client.Config{
		BaseURL: base, Username: benchUser, Password: benchPassword, Suite: suite,
		IdentityKey: identity, HeartbeatInterval: -1,
		Logger: slog.New(slog.DiscardHandler),
	})
}
