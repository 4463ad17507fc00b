package auth

import (
	"testing"

	"github.com/dynkey/dynkey/internal/fuzzseed"
)

// TestWriteFuzzSeeds writes testdata/fuzz/FuzzParseHash: the reference
// hashes and the PHC strings the parser must refuse or bound (other
// variants and versions, zero and huge costs, non-canonical numbers and
// base64, reordered or missing fields). Runs only with
// DYNKEY_WRITE_FUZZ_SEEDS=1.
func TestWriteFuzzSeeds(t *testing.T) {
	fuzzseed.Skip(t)
	for i, v := range referenceVectors {
		fuzzseed.Write(t, "FuzzParseHash", "reference-"+string(rune('0'+i)), v.encoded)
	}
	const salt, tag = "c29tZXNhbHQ", "nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4"
	for name, s := range map[string]string{
		"valid":               "$argon2id$v=19$m=256,t=2,p=1$" + salt + "$" + tag,
		"argon2i":             "$argon2i$v=19$m=256,t=2,p=1$" + salt + "$" + tag,
		"argon2d":             "$argon2d$v=19$m=256,t=2,p=1$" + salt + "$" + tag,
		"version-16":          "$argon2id$v=16$m=256,t=2,p=1$" + salt + "$" + tag,
		"no-version":          "$argon2id$m=256,t=2,p=1$" + salt + "$" + tag,
		"memory-zero":         "$argon2id$v=19$m=0,t=2,p=1$" + salt + "$" + tag,
		"time-zero":           "$argon2id$v=19$m=256,t=0,p=1$" + salt + "$" + tag,
		"threads-zero":        "$argon2id$v=19$m=256,t=2,p=0$" + salt + "$" + tag,
		"memory-huge":         "$argon2id$v=19$m=4294967295,t=2,p=1$" + salt + "$" + tag,
		"memory-over-u32":     "$argon2id$v=19$m=4294967296,t=2,p=1$" + salt + "$" + tag,
		"time-huge":           "$argon2id$v=19$m=256,t=4294967295,p=1$" + salt + "$" + tag,
		"threads-256":         "$argon2id$v=19$m=256,t=2,p=256$" + salt + "$" + tag,
		"memory-leading-zero": "$argon2id$v=19$m=0256,t=2,p=1$" + salt + "$" + tag,
		"memory-plus-sign":    "$argon2id$v=19$m=+256,t=2,p=1$" + salt + "$" + tag,
		"params-reordered":    "$argon2id$v=19$t=2,m=256,p=1$" + salt + "$" + tag,
		"params-upper-case":   "$argon2id$v=19$M=256,T=2,P=1$" + salt + "$" + tag,
		"params-extra":        "$argon2id$v=19$m=256,t=2,p=1,x=1$" + salt + "$" + tag,
		"salt-padded":         "$argon2id$v=19$m=256,t=2,p=1$" + salt + "=$" + tag,
		"salt-empty":          "$argon2id$v=19$m=256,t=2,p=1$$" + tag,
		"salt-trailing-bits":  "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHR$" + tag,
		"salt-url-alphabet":   "$argon2id$v=19$m=256,t=2,p=1$" + salt + "$nf65EOgLrQMR_uIPnA4rEsF5h7TKyQwu9U1bMCHGi_4",
		"tag-short":           "$argon2id$v=19$m=256,t=2,p=1$" + salt + "$nf65EOgLrQ",
		"tag-empty":           "$argon2id$v=19$m=256,t=2,p=1$" + salt + "$",
		"tag-missing":         "$argon2id$v=19$m=256,t=2,p=1$" + salt,
		"extra-field":         "$argon2id$v=19$m=256,t=2,p=1$" + salt + "$" + tag + "$x",
		"no-leading-dollar":   "argon2id$v=19$m=256,t=2,p=1$" + salt + "$" + tag,
		"bcrypt":              "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
		"empty":               "",
		"plaintext-password":  "hunter2",
	} {
		fuzzseed.Write(t, "FuzzParseHash", name, s)
	}
}
