// Package fuzzseed writes seed corpus files for Go's native fuzzing, in the
// "go test fuzz v1" format that go test reads from
// testdata/fuzz/<FuzzName>/ (see scripts/fuzz.sh).
//
// Every package with fuzz targets has a TestWriteFuzzSeeds that calls
// [Write] for its vectors and edge cases; it runs only when [Enabled]
// (DYNKEY_WRITE_FUZZ_SEEDS=1). The committed files then run as ordinary
// subtests of each Fuzz function on every go test.
package fuzzseed

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// EnvVar is the environment variable that turns seed writing on.
const EnvVar = "DYNKEY_WRITE_FUZZ_SEEDS"

// Enabled reports whether seed files should be (re)written.
func Enabled() bool { return os.Getenv(EnvVar) == "1" }

// Skip skips t unless seed writing is enabled.
func Skip(t testing.TB) {
	t.Helper()
	if !Enabled() {
		t.Skip("set " + EnvVar + "=1 to rewrite testdata/fuzz")
	}
}

// Write writes testdata/fuzz/<target>/<name> in the current package with
// the fuzz arguments vals, in order. Supported types: []byte, string, int,
// int64, uint64, bool. It fails t on any other type or on an I/O error.
func Write(t testing.TB, target, name string, vals ...any) {
	t.Helper()
	var b strings.Builder
	b.WriteString("go test fuzz v1\n")
	for _, v := range vals {
		switch v := v.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%q)\n", v)
		case string:
			fmt.Fprintf(&b, "string(%q)\n", v)
		case int:
			fmt.Fprintf(&b, "int(%d)\n", v)
		case int64:
			fmt.Fprintf(&b, "int64(%d)\n", v)
		case uint64:
			fmt.Fprintf(&b, "uint64(%d)\n", v)
		case bool:
			fmt.Fprintf(&b, "bool(%t)\n", v)
		default:
			t.Fatalf("fuzzseed: %s/%s: unsupported type %T", target, name, v)
		}
	}
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}
