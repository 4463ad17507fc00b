// Package auth decides whether a username and password may log in to dynkey.
//
// The login endpoint holds an [Authenticator]. The built-in one, [Argon2id],
// keeps an in-memory table of users whose passwords are stored as argon2id
// hashes in the PHC string format used by the reference argon2 CLI and by
// libsodium:
//
//	$argon2id$v=19$m=65536,t=3,p=2$<salt>$<hash>
//
// where salt and hash are standard base64 without padding. [HashPassword]
// makes such strings and [VerifyPassword] checks a password against one, so an
// application that keeps users in its own database can store the strings there
// and load them with [Argon2id.SetHash], or implement [Authenticator] itself,
// for instance with an [AuthenticatorFunc] that calls [VerifyPassword].
//
// # Security
//
// Timing. Verification recomputes the argon2id hash of the offered password
// with the stored salt and parameters and compares it with the stored hash
// using [crypto/subtle.ConstantTimeCompare], so the time taken does not depend
// on how many leading bytes match. A login for a user that does not exist
// would return much faster than one that runs argon2id, which would tell an
// attacker which usernames exist; [Argon2id] therefore makes a dummy hash of a
// random password with its own parameters when it is created
// ([NewArgon2id]), and for an unknown user it verifies the offered password
// against that dummy hash (one full argon2id derivation) before returning
// [ErrBadCredentials]. Unknown users and wrong passwords return the very same
// error value. The equalisation holds for stored hashes made with the
// table's parameters; hashes loaded with [Argon2id.SetHash] under other
// parameters take a different time, so rehash them at the next successful
// login.
//
// Bounded work. Passwords longer than [MaxPasswordLen] bytes are refused with
// [ErrBadCredentials] before any hashing, and encoded hashes are parsed
// strictly, with bounds on every cost parameter (at most 4 GiB of memory), so
// neither a client nor a corrupt database row can make a login hash megabytes
// or allocate without limit. Malformed hashes give an error wrapping
// [ErrInvalidHash]; parsing never panics.
//
// Brute force. This package only makes each guess expensive (argon2id is
// memory-hard). It does not count failures: throttling repeated guesses
// against a username, and bounding how many logins run at once (each
// derivation with [DefaultParams] holds 64 MiB), is the job of the login
// middleware (see MaxFailedLogins, LoginLimiter and MaxConcurrentLogins in
// package github.com/dynkey/dynkey/middleware), which throttles by the
// [Canonicalizer] form of the username when the Authenticator has one.
package auth

import (
	"context"
	"errors"
)

// Authenticator checks a username and password at login.
//
// Implementations must be safe for concurrent use, must compare secrets in
// constant time, and must return an error wrapping [ErrBadCredentials] for an
// unknown user or a wrong password (the same error for both, so logins cannot
// probe which users exist). Any other error means the check could not be made
// (e.g. a database is down) and the login is refused as unavailable.
type Authenticator interface {
	Authenticate(ctx context.Context, username, password string) error
}

// Canonicalizer is an optional interface of an [Authenticator] that matches
// usernames loosely (case-insensitively, after Unicode normalization, by
// e-mail alias, ...). Canonical returns the one spelling that every name
// the authenticator would match to the same account maps to. The login
// middleware throttles failed logins by it, so that the spellings of one
// account share one budget instead of each having its own. It must be
// cheap, safe for concurrent use, and must not reveal whether the account
// exists (return a canonical form for unknown names too).
//
// An Authenticator without it is throttled by the username as given,
// which is right for one that matches names exactly.
type Canonicalizer interface {
	Canonical(username string) string
}

// CanonicalUsername returns a.Canonical(username) if a is a
// [Canonicalizer], else username.
func CanonicalUsername(a Authenticator, username string) string {
	if c, ok := a.(Canonicalizer); ok {
		return c.Canonical(username)
	}
	return username
}

// ErrBadCredentials is the error for an unknown user or a wrong password.
// Callers test for it with [errors.Is].
var ErrBadCredentials = errors.New("dynkey/auth: bad username or password")

// AuthenticatorFunc adapts a function to an [Authenticator].
type AuthenticatorFunc func(ctx context.Context, username, password string) error

// Authenticate calls f(ctx, username, password).
func (f AuthenticatorFunc) Authenticate(ctx context.Context, username, password string) error {
	return f(ctx, username, password)
}

var (
	_ Authenticator = AuthenticatorFunc(nil)
	_ Authenticator = (*Argon2id)(nil)
	_ Canonicalizer = (*Argon2id)(nil)
)
