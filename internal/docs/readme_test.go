// Package docs holds tests of the project's documents.
package docs

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var goBlock = regexp.MustCompile("(?ms)^```go\n(.*?)^```")

// TestReadmeSnippetsBuild builds every Go snippet of the README as written:
// a reader who copies one gets a program that compiles.
func TestReadmeSnippetsBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds programs")
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := goBlock.FindAllSubmatch(readme, -1)
	if len(blocks) < 2 {
		t.Fatalf("found %d Go snippets in README.md, want the server and the client", len(blocks))
	}
	for i, b := range blocks {
		src := string(b[1])
		t.Run("snippet"+strconv.Itoa(i+1), func(t *testing.T) {
			if !strings.HasPrefix(src, "package ") {
				t.Fatalf("snippet %d is not a complete Go file (it must start with a package clause):\n%s", i+1, src)
			}
			// A directory starting with "_" is inside the module (so the
			// snippet builds against this checkout) but outside ./... .
			dir, err := os.MkdirTemp(".", "_snippet")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("go", "vet", "./"+filepath.Base(dir))
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("snippet %d does not build: %v\n%s\n%s", i+1, err, out, src)
			}
		})
	}
}
