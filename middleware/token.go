package middleware

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"time"

	"github.com/dynkey/dynkey/wire"
)

// Token format (docs/PROTOCOL.md, "Token"):
//
//	version 0x01 | key id (8) | nonce (24) | XChaCha20-Poly1305(claims)
//
// sealed under the token key named by key id (tokenkeys.go: token keys
// rotate on their own schedule, not with server keys; a token from before
// that change names a server key whose record still holds its token key),
// with associated data "dynkey/v1 token" || 0x00 || version || key id.
// Claims:
//
//	token id (16) | session id (16) | s_time u64 ms | issued u64 ms |
//	expires u64 ms | u16 len | username
//
// Only a holder of the token key (a server instance) can mint or read one
// (hole 1), and tokens outlive server key rotation: a retired token key is
// kept until the last token it sealed has expired.
const (
	tokenVersion   = 1
	tokenHeader    = 1 + wire.KeyIDSize
	tokenNonceSize = 24
	claimsFixed    = 16 + 16 + 8 + 8 + 8 + 2
	maxUsername    = 256
)

var (
	errTokenInvalid = errors.New("token invalid")
	errTokenExpired = errors.New("token expired")
	// errNoPrimary: the ring has no primary key of the configured suite
	// (a mixed-suite cluster before this instance's suite was adopted).
	errNoPrimary = errors.New("dynkey/middleware: no primary server key for the configured suite")
)

// claims are a token's contents. Times are ms since the Unix epoch, all in
// [0, math.MaxInt64] (timecheck.go): a token carrying a larger u64 is
// invalid, not wrapped.
type claims struct {
	TokenID   [16]byte
	SessionID [16]byte
	STime     int64
	Issued    int64
	Expires   int64
	Username  string
}

func tokenAAD(header []byte) []byte {
	return append([]byte("dynkey/v1 token\x00"), header...)
}

func (m *Middleware) mintToken(c *claims) ([]byte, error) {
	k := m.ring.Load().tokenPrimary
	if k == nil || k.token == nil {
		return nil, errNoPrimary
	}
	if len(c.Username) > maxUsername {
		return nil, errors.New("username too long")
	}
	if c.STime < 0 || c.Issued < 0 || c.Expires < 0 {
		return nil, errors.New("dynkey/middleware: token time before the Unix epoch")
	}
	pt := make([]byte, 0, claimsFixed+len(c.Username))
	pt = append(pt, c.TokenID[:]...)
	pt = append(pt, c.SessionID[:]...)
	pt = binary.BigEndian.AppendUint64(pt, uint64(c.STime))
	pt = binary.BigEndian.AppendUint64(pt, uint64(c.Issued))
	pt = binary.BigEndian.AppendUint64(pt, uint64(c.Expires))
	pt = binary.BigEndian.AppendUint16(pt, uint16(len(c.Username)))
	pt = append(pt, c.Username...)

	out := make([]byte, tokenHeader+tokenNonceSize, tokenHeader+tokenNonceSize+len(pt)+16)
	out[0] = tokenVersion
	copy(out[1:], k.id[:])
	if _, err := io.ReadFull(m.o.Rand, out[tokenHeader:]); err != nil {
		return nil, err
	}
	return k.token.Seal(out, out[tokenHeader:], pt, tokenAAD(out[:tokenHeader])), nil
}

// openToken authenticates a token and checks its expiry. It costs one
// symmetric AEAD, so it runs before any public-key operation.
func (m *Middleware) openToken(ctx context.Context, tok []byte, now time.Time) (*claims, error) {
	if len(tok) < tokenHeader+tokenNonceSize+16+claimsFixed || tok[0] != tokenVersion {
		return nil, errTokenInvalid
	}
	var id wire.KeyID
	copy(id[:], tok[1:tokenHeader])
	k := m.ring.Load().tokenKeys[id]
	if k == nil {
		m.reloadRateLimited(ctx) // minted by an instance that rotated first?
		k = m.ring.Load().tokenKeys[id]
	}
	if k == nil || k.token == nil {
		return nil, errTokenInvalid
	}
	pt, err := k.token.Open(nil, tok[tokenHeader:tokenHeader+tokenNonceSize], tok[tokenHeader+tokenNonceSize:], tokenAAD(tok[:tokenHeader]))
	if err != nil || len(pt) < claimsFixed {
		return nil, errTokenInvalid
	}
	c := &claims{}
	copy(c.TokenID[:], pt[0:16])
	copy(c.SessionID[:], pt[16:32])
	var ok [3]bool
	c.STime, ok[0] = u64ms(binary.BigEndian.Uint64(pt[32:40]))
	c.Issued, ok[1] = u64ms(binary.BigEndian.Uint64(pt[40:48]))
	c.Expires, ok[2] = u64ms(binary.BigEndian.Uint64(pt[48:56]))
	if ok != [3]bool{true, true, true} || c.Issued > c.Expires {
		return nil, errTokenInvalid
	}
	if n := int(binary.BigEndian.Uint16(pt[56:58])); len(pt) != claimsFixed+n {
		return nil, errTokenInvalid
	}
	c.Username = string(pt[58:])
	if unixMs(now) >= c.Expires {
		return c, errTokenExpired
	}
	return c, nil
}
