package auth_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/auth"
)

// cheap keeps tests fast; never use such parameters in production.
var cheap = auth.Params{Time: 1, MemoryKiB: 1024, Threads: 1, SaltLen: 16, KeyLen: 32}

// refHash is "password" under argon2id t=2 m=256 p=1 with salt "somesalt",
// from the reference implementation's test suite.
const refHash = "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4"

func TestArgon2idAuthenticate(t *testing.T) {
	a := auth.NewArgon2id(cheap)
	require.NoError(t, a.AddUser("alice", "correct horse battery staple"))
	require.NoError(t, a.AddUser("bob", ""))
	require.NoError(t, a.AddUser("carol", strings.Repeat("c", auth.MaxPasswordLen)))
	require.NoError(t, a.SetHash("dave", refHash))

	tests := []struct {
		name     string
		username string
		password string
		wantErr  error // nil: success
	}{
		{"right password", "alice", "correct horse battery staple", nil},
		{"wrong password", "alice", "correct horse battery stapler", auth.ErrBadCredentials},
		{"empty password for a user with one", "alice", "", auth.ErrBadCredentials},
		{"unknown user", "mallory", "correct horse battery staple", auth.ErrBadCredentials},
		{"empty username", "", "correct horse battery staple", auth.ErrBadCredentials},
		{"usernames are case-sensitive", "Alice", "correct horse battery staple", auth.ErrBadCredentials},
		{"empty password that is right", "bob", "", nil},
		{"password of exactly MaxPasswordLen", "carol", strings.Repeat("c", auth.MaxPasswordLen), nil},
		{"password over MaxPasswordLen", "carol", strings.Repeat("c", auth.MaxPasswordLen+1), auth.ErrBadCredentials},
		{"password over MaxPasswordLen, unknown user", "mallory", strings.Repeat("c", 1<<20), auth.ErrBadCredentials},
		{"hash loaded with SetHash", "dave", "password", nil},
		{"hash loaded with SetHash, wrong password", "dave", "passwore", auth.ErrBadCredentials},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := a.Authenticate(context.Background(), tt.username, tt.password)
			if tt.wantErr == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.wantErr)
		})
	}
}

func TestAddUserReplaces(t *testing.T) {
	a := auth.NewArgon2id(cheap)
	require.NoError(t, a.AddUser("alice", "old"))
	require.NoError(t, a.AddUser("alice", "new"))
	require.ErrorIs(t, a.Authenticate(context.Background(), "alice", "old"), auth.ErrBadCredentials)
	require.NoError(t, a.Authenticate(context.Background(), "alice", "new"))

	require.NoError(t, a.SetHash("alice", refHash))
	require.ErrorIs(t, a.Authenticate(context.Background(), "alice", "new"), auth.ErrBadCredentials)
	require.NoError(t, a.Authenticate(context.Background(), "alice", "password"))
}

func TestAddUserErrors(t *testing.T) {
	a := auth.NewArgon2id(cheap)
	tests := []struct {
		name     string
		username string
		password string
	}{
		{"empty username", "", "secret"},
		{"password too long", "alice", strings.Repeat("x", auth.MaxPasswordLen+1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Error(t, a.AddUser(tt.username, tt.password))
			require.ErrorIs(t, a.Authenticate(context.Background(), tt.username, tt.password), auth.ErrBadCredentials)
		})
	}
}

func TestHashPasswordFormat(t *testing.T) {
	phc := regexp.MustCompile(`^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$`)
	tests := []struct {
		name    string
		p       auth.Params
		wantMTP string
	}{
		{"cheap", cheap, "m=1024,t=1,p=1"},
		{"defaults", auth.DefaultParams, "m=65536,t=3,p=2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc, err := auth.HashPassword("pw", tt.p)
			require.NoError(t, err)
			m := phc.FindStringSubmatch(enc)
			require.NotNil(t, m, "not a PHC string: %s", enc)
			require.Equal(t, tt.wantMTP, fmt.Sprintf("m=%s,t=%s,p=%s", m[1], m[2], m[3]))
			salt, err := base64.RawStdEncoding.DecodeString(m[4])
			require.NoError(t, err)
			require.Len(t, salt, int(tt.p.SaltLen))
			key, err := base64.RawStdEncoding.DecodeString(m[5])
			require.NoError(t, err)
			require.Len(t, key, int(tt.p.KeyLen))
			require.NoError(t, auth.VerifyPassword("pw", enc))
		})
	}
}

func TestHashPasswordRandomSalt(t *testing.T) {
	h1, err := auth.HashPassword("same password", cheap)
	require.NoError(t, err)
	h2, err := auth.HashPassword("same password", cheap)
	require.NoError(t, err)
	require.NotEqual(t, h1, h2)
	salt := func(s string) string { return strings.Split(s, "$")[4] }
	require.NotEqual(t, salt(h1), salt(h2))
	require.NoError(t, auth.VerifyPassword("same password", h1))
	require.NoError(t, auth.VerifyPassword("same password", h2))
}

func TestHashPasswordInvalid(t *testing.T) {
	tests := []struct {
		name     string
		password string
		p        auth.Params
	}{
		{"zero params", "pw", auth.Params{}},
		{"t=0", "pw", auth.Params{Time: 0, MemoryKiB: 1024, Threads: 1, SaltLen: 16, KeyLen: 32}},
		{"p=0", "pw", auth.Params{Time: 1, MemoryKiB: 1024, Threads: 0, SaltLen: 16, KeyLen: 32}},
		{"m below 8p", "pw", auth.Params{Time: 1, MemoryKiB: 15, Threads: 2, SaltLen: 16, KeyLen: 32}},
		{"m over 4 GiB", "pw", auth.Params{Time: 1, MemoryKiB: 4<<20 + 1, Threads: 1, SaltLen: 16, KeyLen: 32}},
		{"salt too short", "pw", auth.Params{Time: 1, MemoryKiB: 1024, Threads: 1, SaltLen: 7, KeyLen: 32}},
		{"key too short", "pw", auth.Params{Time: 1, MemoryKiB: 1024, Threads: 1, SaltLen: 16, KeyLen: 15}},
		{"password too long", strings.Repeat("x", auth.MaxPasswordLen+1), cheap},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc, err := auth.HashPassword(tt.password, tt.p)
			require.Error(t, err)
			require.Empty(t, enc)
			require.NotErrorIs(t, err, auth.ErrBadCredentials)
		})
	}
}

func TestParamsValidate(t *testing.T) {
	require.NoError(t, auth.DefaultParams.Validate())
	require.NoError(t, cheap.Validate())
	require.Error(t, auth.Params{}.Validate())
	require.Panics(t, func() { auth.NewArgon2id(auth.Params{}) })
}

func TestDefaultParams(t *testing.T) {
	require.Equal(t, auth.Params{Time: 3, MemoryKiB: 64 * 1024, Threads: 2, SaltLen: 16, KeyLen: 32}, auth.DefaultParams)
}

func TestVerifyPasswordMalformed(t *testing.T) {
	const (
		salt = "c29tZXNhbHQ"
		key  = "nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4"
	)
	b64 := base64.RawStdEncoding.EncodeToString
	withParams := func(params string) string { return "$argon2id$v=19$" + params + "$" + salt + "$" + key }
	tests := []struct {
		name    string
		encoded string
	}{
		{"empty", ""},
		{"just a dollar", "$"},
		{"no leading dollar", "argon2id$v=19$m=256,t=2,p=1$" + salt + "$" + key},
		{"variant argon2i", "$argon2i$v=19$m=256,t=2,p=1$" + salt + "$" + key},
		{"variant argon2d", "$argon2d$v=19$m=256,t=2,p=1$" + salt + "$" + key},
		{"variant in upper case", "$Argon2id$v=19$m=256,t=2,p=1$" + salt + "$" + key},
		{"bcrypt", "$2b$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"},
		{"version 16", "$argon2id$v=16$m=256,t=2,p=1$" + salt + "$" + key},
		{"version 20", "$argon2id$v=20$m=256,t=2,p=1$" + salt + "$" + key},
		{"version with leading zero", "$argon2id$v=019$m=256,t=2,p=1$" + salt + "$" + key},
		{"version missing (pre-1.3 format)", "$argon2id$m=256,t=2,p=1$" + salt + "$" + key},
		{"version field misspelt", "$argon2id$ver=19$m=256,t=2,p=1$" + salt + "$" + key},
		{"hash missing", "$argon2id$v=19$m=256,t=2,p=1$" + salt},
		{"salt and hash missing", "$argon2id$v=19$m=256,t=2,p=1"},
		{"trailing dollar", refHash + "$"},
		{"extra field", refHash + "$" + key},
		{"missing dollar before salt", "$argon2id$v=19$m=256,t=2,p=1" + salt + "$" + key},
		{"m=0", withParams("m=0,t=2,p=1")},
		{"t=0", withParams("m=256,t=0,p=1")},
		{"p=0", withParams("m=256,t=2,p=0")},
		{"m below 8p", withParams("m=15,t=2,p=2")},
		{"m just over 4 GiB", withParams("m=4194305,t=2,p=1")},
		{"m max uint32", withParams("m=4294967295,t=2,p=1")},
		{"m overflows uint32", withParams("m=4294967296,t=2,p=1")},
		{"m overflows uint64", withParams("m=99999999999999999999999,t=2,p=1")},
		{"t huge", withParams("m=256,t=4294967295,p=1")},
		{"p over 255", withParams("m=4096,t=2,p=256")},
		{"negative m", withParams("m=-256,t=2,p=1")},
		{"plus sign", withParams("m=+256,t=2,p=1")},
		{"hex number", withParams("m=0x100,t=2,p=1")},
		{"leading zero", withParams("m=0256,t=2,p=1")},
		{"space in number", withParams("m= 256,t=2,p=1")},
		{"empty number", withParams("m=,t=2,p=1")},
		{"parameters out of order", withParams("t=2,m=256,p=1")},
		{"parameter missing", withParams("m=256,t=2")},
		{"extra parameter", withParams("m=256,t=2,p=1,keyid=abc")},
		{"empty parameters", withParams("")},
		{"bad base64 salt", "$argon2id$v=19$m=256,t=2,p=1$!!!!!!!!$" + key},
		{"padded base64 salt", "$argon2id$v=19$m=256,t=2,p=1$" + salt + "=$" + key},
		{"url-safe base64 hash", "$argon2id$v=19$m=256,t=2,p=1$" + salt + "$" + strings.ReplaceAll(key, "/", "_")},
		{"newline in base64", "$argon2id$v=19$m=256,t=2,p=1$c29tZXNh\nbHQ$" + key},
		{"non-canonical trailing bits", "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHR$" + key},
		{"impossible base64 length", "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQAA$" + key[:len(key)-1]},
		{"empty salt", "$argon2id$v=19$m=256,t=2,p=1$$" + key},
		{"salt of 7 bytes", "$argon2id$v=19$m=256,t=2,p=1$" + b64([]byte("somesal")) + "$" + key},
		{"empty hash", "$argon2id$v=19$m=256,t=2,p=1$" + salt + "$"},
		{"hash of 15 bytes", "$argon2id$v=19$m=256,t=2,p=1$" + salt + "$" + b64(make([]byte, 15))},
		{"hash of 1025 bytes", "$argon2id$v=19$m=256,t=2,p=1$" + salt + "$" + b64(make([]byte, 1025))},
		{"whole string too long", "$argon2id$v=19$m=256,t=2,p=1$" + salt + "$" + strings.Repeat("A", 1<<20)},
		{"leading space", " " + refHash},
		{"trailing newline", refHash + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			require.NotPanics(t, func() { err = auth.VerifyPassword("password", tt.encoded) })
			require.Error(t, err)
			t.Log(err)
			require.ErrorIs(t, err, auth.ErrInvalidHash)
			require.NotErrorIs(t, err, auth.ErrBadCredentials, "a broken hash must not look like a wrong password")
			require.True(t, strings.HasPrefix(err.Error(), "dynkey/auth: invalid argon2id hash: "), err.Error())

			a := auth.NewArgon2id(cheap)
			require.ErrorIs(t, a.SetHash("alice", tt.encoded), auth.ErrInvalidHash)
		})
	}
	// The unmodified vector is accepted, so the cases above fail for the
	// reason their names give.
	require.NoError(t, auth.VerifyPassword("password", withParams("m=256,t=2,p=1")))
}

func TestVerifyPasswordTooLong(t *testing.T) {
	err := auth.VerifyPassword(strings.Repeat("x", auth.MaxPasswordLen+1), refHash)
	require.ErrorIs(t, err, auth.ErrBadCredentials)
	require.Contains(t, err.Error(), "longer than")
}

func TestConcurrentAuthenticate(t *testing.T) {
	a := auth.NewArgon2id(cheap)
	require.NoError(t, a.AddUser("alice", "alice-pw"))
	require.NoError(t, a.AddUser("bob", "bob-pw"))

	const goroutines = 8
	errs := make([]error, goroutines)
	var wg sync.WaitGroup
	for i := range goroutines {
		wg.Go(func() {
			ctx := context.Background()
			for range 3 {
				switch i % 4 {
				case 0: // right password
					if err := a.Authenticate(ctx, "alice", "alice-pw"); err != nil {
						errs[i] = fmt.Errorf("alice: %w", err)
						return
					}
				case 1: // wrong password
					if err := a.Authenticate(ctx, "bob", "alice-pw"); !errors.Is(err, auth.ErrBadCredentials) {
						errs[i] = fmt.Errorf("bob with wrong password: got %v", err)
						return
					}
				case 2: // unknown user
					if err := a.Authenticate(ctx, "mallory", "x"); !errors.Is(err, auth.ErrBadCredentials) {
						errs[i] = fmt.Errorf("unknown user: got %v", err)
						return
					}
				case 3: // writers racing with the readers
					name := fmt.Sprintf("user%d", i)
					if err := a.AddUser(name, "pw"); err != nil {
						errs[i] = err
						return
					}
					if err := a.Authenticate(ctx, name, "pw"); err != nil {
						errs[i] = fmt.Errorf("%s: %w", name, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "goroutine %d", i)
	}
}

func TestAuthenticateContext(t *testing.T) {
	a := auth.NewArgon2id(cheap)
	require.NoError(t, a.AddUser("alice", "secret"))

	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithTimeout(context.Background(), -time.Second)
	defer cancel2()

	tests := []struct {
		name     string
		ctx      context.Context
		username string
		password string
		wantErr  error
	}{
		{"canceled, right password", canceled, "alice", "secret", context.Canceled},
		{"canceled, unknown user", canceled, "mallory", "secret", context.Canceled},
		{"deadline exceeded", expired, "alice", "secret", context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := a.Authenticate(tt.ctx, tt.username, tt.password)
			require.ErrorIs(t, err, tt.wantErr)
			require.NotErrorIs(t, err, auth.ErrBadCredentials)
		})
	}
}

func TestZeroValueArgon2id(t *testing.T) {
	var a auth.Argon2id
	var err error
	require.NotPanics(t, func() { err = a.Authenticate(context.Background(), "alice", "pw") })
	require.Error(t, err)
	require.NotErrorIs(t, err, auth.ErrBadCredentials, "an unusable table is unavailable, not a bad login")
	require.Error(t, a.AddUser("alice", "pw"))
	require.Error(t, a.SetHash("alice", refHash))
}

func TestAuthenticatorFunc(t *testing.T) {
	type ctxKey struct{}
	ctx := context.WithValue(context.Background(), ctxKey{}, "v")
	boom := errors.New("database down")

	var f auth.Authenticator = auth.AuthenticatorFunc(func(ctx context.Context, username, password string) error {
		require.Equal(t, "v", ctx.Value(ctxKey{}))
		switch {
		case username == "db":
			return boom
		case username != "alice":
			return auth.ErrBadCredentials
		default:
			return auth.VerifyPassword(password, refHash)
		}
	})

	tests := []struct {
		name     string
		username string
		password string
		wantErr  error
	}{
		{"ok", "alice", "password", nil},
		{"wrong password", "alice", "nope", auth.ErrBadCredentials},
		{"unknown user", "eve", "password", auth.ErrBadCredentials},
		{"other error passes through", "db", "password", boom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := f.Authenticate(ctx, tt.username, tt.password)
			if tt.wantErr == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.wantErr)
		})
	}
}

// foldingAuth is an Authenticator that matches names case-insensitively
// and says so.
type foldingAuth struct{ auth.Authenticator }

func (foldingAuth) Canonical(u string) string { return strings.ToLower(u) }

func TestCanonicalUsername(t *testing.T) {
	table := auth.NewArgon2id(auth.Params{Time: 1, MemoryKiB: 64, Threads: 1, SaltLen: 16, KeyLen: 16})
	plain := auth.AuthenticatorFunc(func(context.Context, string, string) error { return nil })
	for _, tc := range []struct {
		name string
		a    auth.Authenticator
		in   string
		want string
	}{
		{"Argon2id matches exactly", table, "Alice", "Alice"},
		{"no Canonicalizer: as given", plain, "ALICE", "ALICE"},
		{"Canonicalizer", foldingAuth{plain}, "ALICE", "alice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, auth.CanonicalUsername(tc.a, tc.in))
		})
	}
}
