package auth

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/argon2"
)

// cheap keeps tests fast; never use such parameters in production.
var cheap = Params{Time: 1, MemoryKiB: 1024, Threads: 1, SaltLen: 16, KeyLen: 32}

// referenceEncode is a test-only encoder that shares no code with the
// package: it calls argon2.IDKey directly and formats the PHC string itself.
func referenceEncode(password string, salt []byte, t, m uint32, p uint8, keyLen uint32) string {
	key := argon2.IDKey([]byte(password), salt, t, m, p, keyLen)
	return "$argon2id$v=19$m=" + fmt.Sprint(m) + ",t=" + fmt.Sprint(t) + ",p=" + fmt.Sprint(p) +
		"$" + base64.RawStdEncoding.EncodeToString(salt) +
		"$" + base64.RawStdEncoding.EncodeToString(key)
}

func TestEncoderMatchesIDKey(t *testing.T) {
	tests := []struct {
		name     string
		password string
		salt     []byte
		p        Params
	}{
		{"cheap", "correct horse battery staple", []byte("0123456789abcdef"), cheap},
		{"empty password", "", []byte("0123456789abcdef"), cheap},
		{"two lanes, odd lengths", "pässwörd", []byte("saltsalt9"), Params{Time: 2, MemoryKiB: 64, Threads: 2, KeyLen: 17}},
		{"unicode and long salt", "日本語のパスワード", make([]byte, 48), Params{Time: 1, MemoryKiB: 256, Threads: 4, KeyLen: 64}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := referenceEncode(tt.password, tt.salt, tt.p.Time, tt.p.MemoryKiB, tt.p.Threads, tt.p.KeyLen)
			got := hashWithSalt(tt.password, tt.salt, tt.p).String()
			require.Equal(t, want, got)
			require.NoError(t, VerifyPassword(tt.password, got))
			require.ErrorIs(t, VerifyPassword(tt.password+"x", got), ErrBadCredentials)
		})
	}
}

// Argon2id v=19 vectors from the reference implementation's test suite
// (github.com/P-H-C/phc-winner-argon2, src/test.c, the Argon2_id hashtest
// calls; the same strings are in RustCrypto's and other ports' KATs).
var referenceVectors = []struct {
	name     string
	password string
	salt     string
	t, m     uint32
	p        uint8
	tagHex   string
	encoded  string
}{
	{"t=2 m=2^8 p=1", "password", "somesalt", 2, 256, 1,
		"9dfeb910e80bad0311fee20f9c0e2b12c17987b4cac90c2ef54d5b3021c68bfe",
		"$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4"},
	{"t=2 m=2^8 p=2", "password", "somesalt", 2, 256, 2,
		"6d093c501fd5999645e0ea3bf620d7b8be7fd2db59c20d9fff9539da2bf57037",
		"$argon2id$v=19$m=256,t=2,p=2$c29tZXNhbHQ$bQk8UB/VmZZF4Oo79iDXuL5/0ttZwg2f/5U52iv1cDc"},
	{"t=2 m=2^16 p=1", "password", "somesalt", 2, 65536, 1,
		"09316115d5cf24ed5a15a31a3ba326e5cf32edc24702987c02b6566f61913cf7",
		"$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"},
}

func TestReferenceVectors(t *testing.T) {
	for _, tt := range referenceVectors {
		t.Run(tt.name, func(t *testing.T) {
			p := Params{Time: tt.t, MemoryKiB: tt.m, Threads: tt.p, KeyLen: 32}
			h := hashWithSalt(tt.password, []byte(tt.salt), p)
			require.Equal(t, tt.tagHex, hex.EncodeToString(h.key), "raw tag")
			require.Equal(t, tt.encoded, h.String(), "our encoder, byte for byte")

			parsed, err := parseHash(tt.encoded)
			require.NoError(t, err)
			require.Equal(t, h, parsed, "parser round-trips the reference string")

			require.NoError(t, VerifyPassword(tt.password, tt.encoded))
			require.ErrorIs(t, VerifyPassword("passwore", tt.encoded), ErrBadCredentials)
		})
	}
}

// countDerivations replaces idKey for the duration of the test and records
// the parameters of every derivation.
func countDerivations(t *testing.T) func() []Params {
	var mu sync.Mutex
	var calls []Params
	orig := idKey
	idKey = func(password, salt []byte, time, memory uint32, threads uint8, keyLen uint32) []byte {
		mu.Lock()
		calls = append(calls, Params{Time: time, MemoryKiB: memory, Threads: threads, SaltLen: uint32(len(salt)), KeyLen: keyLen})
		mu.Unlock()
		return orig(password, salt, time, memory, threads, keyLen)
	}
	t.Cleanup(func() { idKey = orig })
	return func() []Params {
		mu.Lock()
		defer mu.Unlock()
		return append([]Params(nil), calls...)
	}
}

func TestAuthenticateDerivesOnceForEveryUser(t *testing.T) {
	a := NewArgon2id(cheap)
	require.NoError(t, a.AddUser("alice", "secret"))

	tests := []struct {
		name      string
		username  string
		password  string
		wantErr   error
		wantCalls int
	}{
		{"right password", "alice", "secret", nil, 1},
		{"wrong password", "alice", "guess", ErrBadCredentials, 1},
		{"unknown user uses the dummy hash", "bob", "secret", ErrBadCredentials, 1},
		{"too long is refused before hashing", "alice", string(make([]byte, MaxPasswordLen+1)), ErrBadCredentials, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := countDerivations(t)
			err := a.Authenticate(context.Background(), tt.username, tt.password)
			if tt.wantErr == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, tt.wantErr)
			}
			got := calls()
			require.Len(t, got, tt.wantCalls)
			for _, p := range got {
				require.Equal(t, cheap, p, "derivation uses the table's params")
			}
		})
	}
}

func TestUnknownAndWrongGiveTheSameError(t *testing.T) {
	a := NewArgon2id(cheap)
	require.NoError(t, a.AddUser("alice", "secret"))
	wrong := a.Authenticate(context.Background(), "alice", "guess")
	unknown := a.Authenticate(context.Background(), "mallory", "guess")
	require.Equal(t, wrong, unknown)
	require.Equal(t, wrong.Error(), unknown.Error())
}

// FuzzParseHash checks that parsing never panics and that whatever it accepts
// is canonical: re-encoding gives back the input byte for byte. It does not
// derive keys, so fuzzed costs cannot exhaust memory.
func FuzzParseHash(f *testing.F) {
	for _, v := range referenceVectors {
		f.Add(v.encoded)
	}
	f.Add("")
	f.Add("$argon2id$v=19$m=4194304,t=256,p=255$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4")
	f.Add("$argon2i$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$wWKIMhR9lyDFvRz9YTZweHKfbftvj+qf+YFY4NeBbtA")
	f.Add("$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHR$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := parseHash(s)
		if err != nil {
			require.ErrorIs(t, err, ErrInvalidHash)
			return
		}
		require.Equal(t, s, h.String())
		require.NoError(t, h.p.Validate())
	})
}
