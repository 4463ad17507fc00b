package main

import (
	"sync"

	"github.com/dynkey/dynkey/policy"
)

// addrChange rotates the client key when the client's network address
// changes: it remembers the address in effect when it first saw the current
// key (Facts.KeyID) and says Rotate while the address differs, until the key
// changes. Decide runs under the client's lock: addr must be fast and must
// not call the client.
type addrChange struct {
	addr  func() string // the client's current network address
	mu    sync.Mutex    // Decide runs concurrently (heartbeats, requests)
	keyID string        // the key seen last
	at    string        // the address when keyID was first seen
}

// rotateOnAddressChange returns the policy for the address reported by addr.
func rotateOnAddressChange(addr func() string) policy.Policy { return &addrChange{addr: addr} }

func (p *addrChange) Decide(f policy.Facts) policy.Decision {
	now := p.addr()
	p.mu.Lock()
	defer p.mu.Unlock()
	if string(f.KeyID) != p.keyID { // a new key: remember where we are
		p.keyID, p.at = string(f.KeyID), now
		return policy.Keep
	}
	if now != p.at {
		return policy.Rotate
	}
	return policy.Keep
}

func (p *addrChange) String() string { return "network-address-change" }
