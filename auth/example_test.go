package auth_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/dynkey/dynkey/auth"
)

func Example() {
	// Production code would use auth.DefaultParams; these cheap parameters
	// keep the example fast.
	users := auth.NewArgon2id(auth.Params{Time: 1, MemoryKiB: 1024, Threads: 1, SaltLen: 16, KeyLen: 32})
	if err := users.AddUser("alice", "correct horse battery staple"); err != nil {
		panic(err)
	}

	ctx := context.Background()
	fmt.Println(users.Authenticate(ctx, "alice", "correct horse battery staple"))

	err := users.Authenticate(ctx, "alice", "Tr0ub4dor&3")
	fmt.Println(errors.Is(err, auth.ErrBadCredentials))

	err = users.Authenticate(ctx, "mallory", "correct horse battery staple")
	fmt.Println(errors.Is(err, auth.ErrBadCredentials), err)
	// Output:
	// <nil>
	// true
	// true dynkey/auth: bad username or password
}

func ExampleVerifyPassword() {
	// A hash of "password" from the argon2 reference implementation's tests.
	const encoded = "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4"

	fmt.Println(auth.VerifyPassword("password", encoded))
	fmt.Println(auth.VerifyPassword("passwore", encoded))
	fmt.Println(auth.VerifyPassword("password", "$argon2id$v=16$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4"))
	// Output:
	// <nil>
	// dynkey/auth: bad username or password
	// dynkey/auth: invalid argon2id hash: version "16" is not 19
}
