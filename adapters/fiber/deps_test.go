package dynkeyfiber_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestCoreDoesNotLinkFiber: a program importing only middleware and client
// links neither Fiber (v2 or v3) nor fasthttp; the heavy dependencies stay
// in their adapter packages.
func TestCoreDoesNotLinkFiber(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-deps", "github.com/dynkey/dynkey/middleware", "github.com/dynkey/dynkey/client").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 || !contains(deps, "github.com/dynkey/dynkey/wire") {
		t.Fatalf("go list -deps gave %d packages, not the dependency list:\n%s", len(deps), out)
	}
	for _, p := range deps {
		for _, heavy := range []string{"github.com/gofiber/", "github.com/valyala/fasthttp"} {
			if strings.HasPrefix(p, heavy) {
				t.Errorf("middleware or client links %s", p)
			}
		}
	}
	// The check itself finds Fiber where it is linked.
	out, err = exec.Command("go", "list", "-deps", "github.com/dynkey/dynkey/adapters/fiber").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "github.com/gofiber/fiber/v3\n") {
		t.Fatalf("go list -deps of the adapter lacks Fiber: %v\n%s", err, out)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
