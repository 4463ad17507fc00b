package auth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/crypto/argon2"
)

// MaxPasswordLen is the longest password, in bytes, that is hashed or
// checked. [VerifyPassword] and [Argon2id.Authenticate] refuse a longer one
// with an error wrapping [ErrBadCredentials] without hashing it, and
// [HashPassword] refuses to hash it. It keeps a client from making the server
// hash megabytes; no real passphrase comes close.
const MaxPasswordLen = 1024

// Bounds on the parameters of a hash. They reject absurd values from a corrupt
// or hostile encoding, not weak ones: hashes made by other tools with smaller
// but sane parameters still verify.
const (
	maxMemoryKiB  = 4 * 1024 * 1024 // 4 GiB
	maxTime       = 256
	minSaltLen    = 8 // RFC 9106 §3.1: salt of at least 8 bytes
	maxSaltLen    = 1024
	minKeyLen     = 16
	maxKeyLen     = 1024
	maxEncodedLen = 4096
)

// argon2Version is the only argon2 version accepted: 0x13, written v=19.
const argon2Version = argon2.Version

// ErrInvalidHash is wrapped by the errors for an encoded hash that is not a
// well-formed argon2id v=19 PHC string within the parameter bounds.
var ErrInvalidHash = errors.New("dynkey/auth: invalid argon2id hash")

// Params are argon2id cost parameters.
type Params struct {
	// Time is the number of passes over the memory (t).
	Time uint32
	// MemoryKiB is the memory size in KiB (m). It must be at least
	// 8*Threads.
	MemoryKiB uint32
	// Threads is the number of lanes (p), which may be filled in parallel.
	Threads uint8
	// SaltLen is the length in bytes of the random salt.
	SaltLen uint32
	// KeyLen is the length in bytes of the stored hash (the tag).
	KeyLen uint32
}

// DefaultParams are the parameters of RFC 9106 §4's second recommended option
// (t=3, m=64 MiB, 128-bit salt, 256-bit tag) with p=2 lanes instead of 4.
//
// Why p=2: dynkey's server has 2 cores. The lanes only decide how much of the
// work can run at once; the total work (t passes over m KiB) is the same for
// any p, and so, to first order, is an attacker's memory×time cost. With 2 cores, lanes 3
// and 4 would just wait for a core, so p=4 would not make a login faster for
// us, while p=2 lets one derivation use both cores. p is recorded in each
// hash, so hashes made elsewhere with p=4 still verify, and the value can be
// raised with the core count.
var DefaultParams = Params{
	Time:      3,
	MemoryKiB: 64 * 1024,
	Threads:   2,
	SaltLen:   16,
	KeyLen:    32,
}

// Validate reports whether p can be used to make hashes: Time in 1..256,
// Threads at least 1, MemoryKiB from 8*Threads to 4 GiB, SaltLen in 8..1024
// and KeyLen in 16..1024.
func (p Params) Validate() error {
	if err := p.check(); err != nil {
		return fmt.Errorf("dynkey/auth: invalid params: %w", err)
	}
	return nil
}

func (p Params) check() error {
	if err := checkCost(uint64(p.MemoryKiB), uint64(p.Time), uint64(p.Threads)); err != nil {
		return err
	}
	if err := checkLen("salt", int(p.SaltLen), minSaltLen, maxSaltLen); err != nil {
		return err
	}
	return checkLen("key", int(p.KeyLen), minKeyLen, maxKeyLen)
}

func checkCost(m, t, p uint64) error {
	switch {
	case t < 1:
		return errors.New("t (time) must be at least 1")
	case t > maxTime:
		return fmt.Errorf("t (time) %d exceeds %d", t, maxTime)
	case p < 1:
		return errors.New("p (threads) must be at least 1")
	case p > 255:
		return fmt.Errorf("p (threads) %d exceeds 255", p)
	case m < 8*p:
		return fmt.Errorf("m (memory) %d KiB is below 8*p = %d KiB", m, 8*p)
	case m > maxMemoryKiB:
		return fmt.Errorf("m (memory) %d KiB exceeds 4 GiB", m)
	}
	return nil
}

func checkLen(what string, n, lo, hi int) error {
	if n < lo || n > hi {
		return fmt.Errorf("%s length %d bytes is outside %d..%d", what, n, lo, hi)
	}
	return nil
}

// hash is a parsed argon2id hash. It is never modified once made.
type hash struct {
	p    Params // SaltLen and KeyLen are len(salt) and len(key)
	salt []byte
	key  []byte
}

// hashWithSalt derives the hash of password with the given salt. p must be
// valid.
func hashWithSalt(password string, salt []byte, p Params) *hash {
	key := idKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, p.KeyLen)
	p.SaltLen, p.KeyLen = uint32(len(salt)), uint32(len(key))
	return &hash{p: p, salt: salt, key: key}
}

// idKey is argon2.IDKey; tests replace it to count derivations.
var idKey = argon2.IDKey

func newHash(password string, p Params) (*hash, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if len(password) > MaxPasswordLen {
		return nil, fmt.Errorf("dynkey/auth: password longer than %d bytes", MaxPasswordLen)
	}
	salt := make([]byte, p.SaltLen)
	rand.Read(salt) // never returns an error; crashes the program if it must
	return hashWithSalt(password, salt, p), nil
}

// String returns h in PHC format.
func (h *hash) String() string {
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2Version, h.p.MemoryKiB, h.p.Time, h.p.Threads,
		b64.EncodeToString(h.salt), b64.EncodeToString(h.key))
}

// verify reports whether password hashes to h, comparing in constant time.
// It always runs one full derivation.
func (h *hash) verify(password string) bool {
	got := idKey([]byte(password), h.salt, h.p.Time, h.p.MemoryKiB, h.p.Threads, h.p.KeyLen)
	return subtle.ConstantTimeCompare(got, h.key) == 1
}

// HashPassword hashes password with argon2id under p and a random salt from
// crypto/rand, and returns it in PHC format:
//
//	$argon2id$v=19$m=65536,t=3,p=2$<salt>$<hash>
//
// with salt and hash in standard base64 without padding, as written by the
// reference argon2 CLI and libsodium. It fails if p is invalid (see
// [Params.Validate]) or password is longer than [MaxPasswordLen].
func HashPassword(password string, p Params) (string, error) {
	h, err := newHash(password, p)
	if err != nil {
		return "", err
	}
	return h.String(), nil
}

// VerifyPassword checks password against an encoded hash made by
// [HashPassword] or another argon2id implementation that writes PHC strings.
//
// It returns nil if the password matches and [ErrBadCredentials] if it does
// not (or, wrapped, if it is longer than [MaxPasswordLen]). The comparison is
// in constant time. The encoding is parsed strictly: only argon2id version 19
// with exactly the fields m, t and p in that order, decimal numbers without
// sign or leading zeros, canonical unpadded standard base64, and the bounds of
// [Params.Validate] (no more than 4 GiB of memory; salt of at least 8 bytes;
// hash of at least 16 bytes). Anything else gives an error wrapping
// [ErrInvalidHash] that says what is wrong.
func VerifyPassword(password, encoded string) error {
	h, err := parseHash(encoded)
	if err != nil {
		return err
	}
	if len(password) > MaxPasswordLen {
		return errPasswordTooLong
	}
	if !h.verify(password) {
		return ErrBadCredentials
	}
	return nil
}

var errPasswordTooLong = fmt.Errorf("%w: password longer than %d bytes", ErrBadCredentials, MaxPasswordLen)

// parseHash parses a PHC string; see VerifyPassword for what it accepts.
func parseHash(encoded string) (*hash, error) {
	h, err := parse(encoded)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidHash, err)
	}
	return h, nil
}

func parse(s string) (*hash, error) {
	if len(s) > maxEncodedLen {
		return nil, fmt.Errorf("encoding is longer than %d bytes", maxEncodedLen)
	}
	if s == "" {
		return nil, errors.New("empty encoding")
	}
	// "" $ argon2id $ v=19 $ m=..,t=..,p=.. $ salt $ hash
	f := strings.Split(s, "$")
	if f[0] != "" {
		return nil, errors.New(`encoding does not start with "$"`)
	}
	if len(f) < 2 || f[1] != "argon2id" {
		v := ""
		if len(f) >= 2 {
			v = f[1]
		}
		return nil, fmt.Errorf("variant %q is not argon2id", truncate(v))
	}
	if len(f) != 6 {
		return nil, fmt.Errorf(`want 5 "$"-separated fields ($argon2id$v=19$m=,t=,p=$salt$hash), got %d`, len(f)-1)
	}
	v, ok := strings.CutPrefix(f[2], "v=")
	if !ok {
		return nil, fmt.Errorf(`version field %q does not start with "v="`, truncate(f[2]))
	}
	if n, err := decimal(v); err != nil || n != argon2Version {
		return nil, fmt.Errorf("version %q is not %d", truncate(v), argon2Version)
	}
	ps := strings.Split(f[3], ",")
	if len(ps) != 3 {
		return nil, fmt.Errorf(`parameters %q are not "m=<KiB>,t=<passes>,p=<lanes>"`, truncate(f[3]))
	}
	var cost [3]uint64
	for i, name := range []string{"m", "t", "p"} {
		val, ok := strings.CutPrefix(ps[i], name+"=")
		if !ok {
			return nil, fmt.Errorf(`parameter %d is %q, want "%s=<number>"`, i+1, truncate(ps[i]), name)
		}
		n, err := decimal(val)
		if err != nil {
			return nil, fmt.Errorf("parameter %s: %v", name, err)
		}
		cost[i] = n
	}
	m, t, p := cost[0], cost[1], cost[2]
	if err := checkCost(m, t, p); err != nil {
		return nil, err
	}
	salt, err := decodeBase64(f[4])
	if err != nil {
		return nil, fmt.Errorf("salt: %v", err)
	}
	if err := checkLen("salt", len(salt), minSaltLen, maxSaltLen); err != nil {
		return nil, err
	}
	key, err := decodeBase64(f[5])
	if err != nil {
		return nil, fmt.Errorf("hash: %v", err)
	}
	if err := checkLen("hash", len(key), minKeyLen, maxKeyLen); err != nil {
		return nil, err
	}
	return &hash{
		p: Params{
			Time:      uint32(t),
			MemoryKiB: uint32(m),
			Threads:   uint8(p),
			SaltLen:   uint32(len(salt)),
			KeyLen:    uint32(len(key)),
		},
		salt: salt,
		key:  key,
	}, nil
}

// decimal parses a canonical unsigned decimal that fits in 32 bits: digits
// only, no sign, no leading zeros.
func decimal(s string) (uint64, error) {
	if s == "" {
		return 0, errors.New("empty number")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%q is not a decimal number", truncate(s))
		}
	}
	if len(s) > 1 && s[0] == '0' {
		return 0, fmt.Errorf("%q has a leading zero", truncate(s))
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is out of range", truncate(s))
	}
	return n, nil
}

// decodeBase64 decodes canonical standard base64 without padding. The
// alphabet is checked by hand because the decoder skips '\r' and '\n'.
func decodeBase64(s string) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/') {
			return nil, fmt.Errorf("invalid base64 character %q at offset %d", c, i)
		}
	}
	b, err := base64.RawStdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, errors.New("malformed base64 (want standard alphabet, no padding)")
	}
	return b, nil
}

// truncate shortens s for an error message.
func truncate(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}

// Argon2id is an in-memory user table mapping usernames to argon2id hashes.
// It is safe for concurrent use. The zero value is not usable; use
// [NewArgon2id].
type Argon2id struct {
	params Params
	dummy  *hash // hash of a random password, checked for unknown users

	mu    sync.RWMutex
	users map[string]*hash
}

// NewArgon2id returns an empty user table whose new hashes use p.
//
// It runs one argon2id derivation to make the dummy hash that unknown users
// are checked against (see the package's Security section). It panics if p
// is invalid; check parameters that come from configuration with
// [Params.Validate] first.
func NewArgon2id(p Params) *Argon2id {
	var pw [32]byte
	rand.Read(pw[:])
	dummy, err := newHash(base64.RawStdEncoding.EncodeToString(pw[:]), p)
	if err != nil {
		panic(err)
	}
	return &Argon2id{params: p, dummy: dummy, users: make(map[string]*hash)}
}

var errNotInitialised = errors.New("dynkey/auth: Argon2id not created by NewArgon2id")

// AddUser hashes password with a's parameters and stores it for username,
// replacing any existing entry. The username must not be empty and the
// password must be at most [MaxPasswordLen] bytes.
func (a *Argon2id) AddUser(username, password string) error {
	if a.dummy == nil {
		return errNotInitialised
	}
	if username == "" {
		return errors.New("dynkey/auth: empty username")
	}
	h, err := newHash(password, a.params)
	if err != nil {
		return err
	}
	a.store(username, h)
	return nil
}

// SetHash stores an encoded hash for username, replacing any existing entry.
// It is for hashes loaded from the application's own database; encoded is
// validated as by [VerifyPassword] and an invalid one gives an error wrapping
// [ErrInvalidHash]. Hashes made with parameters other than a's still verify,
// but take a different time than the dummy check for unknown users.
func (a *Argon2id) SetHash(username, encoded string) error {
	if a.dummy == nil {
		return errNotInitialised
	}
	if username == "" {
		return errors.New("dynkey/auth: empty username")
	}
	h, err := parseHash(encoded)
	if err != nil {
		return err
	}
	a.store(username, h)
	return nil
}

func (a *Argon2id) store(username string, h *hash) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.users[username] = h
}

// Canonical implements [Canonicalizer]. The table matches usernames
// exactly (byte for byte), so each spelling is its own user and its
// canonical form is the name itself. An application that wants
// case-insensitive names folds them before AddUser and Authenticate, and
// wraps the table in an Authenticator whose Canonical folds the same way.
func (a *Argon2id) Canonical(username string) string { return username }

// Authenticate checks username and password. It returns ctx.Err() if ctx is
// already done (a derivation, once started, runs to completion),
// [ErrBadCredentials] for an unknown user or a wrong password, and a wrapped
// [ErrBadCredentials] for a password longer than [MaxPasswordLen]. For an
// unknown user it still runs one derivation, against the dummy hash.
func (a *Argon2id) Authenticate(ctx context.Context, username, password string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if a.dummy == nil {
		return errNotInitialised
	}
	if len(password) > MaxPasswordLen {
		return errPasswordTooLong
	}
	a.mu.RLock()
	h, ok := a.users[username]
	a.mu.RUnlock()
	if !ok {
		a.dummy.verify(password) // spend the same time as for a known user
		return ErrBadCredentials
	}
	if !h.verify(password) {
		return ErrBadCredentials
	}
	return nil
}
