package docs

import (
	"os/exec"
	"strings"
	"testing"
)

// TestCoreLinksNoFramework checks that a program importing only the server
// core and the client links no web framework: heavy framework dependencies
// stay confined to their adapter packages (issue 8).
func TestCoreLinksNoFramework(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps",
		"github.com/dynkey/dynkey/middleware", "github.com/dynkey/dynkey/client").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps listed %d packages:\n%s", len(deps), out)
	}
	forbidden := []string{"github.com/gin-gonic/", "github.com/gofiber/", "github.com/valyala/fasthttp",
		"github.com/labstack/", "github.com/go-chi/", "github.com/rs/cors"}
	for _, d := range deps {
		for _, f := range forbidden {
			if strings.HasPrefix(d, f) {
				t.Errorf("middleware or client links %s", d)
			}
		}
	}
}

// TestAdaptersLinkTheirFramework is the converse: the check above can fail
// (each adapter does link its framework).
func TestAdaptersLinkTheirFramework(t *testing.T) {
	for _, tc := range []struct{ name, pkg, want string }{
		{"gin", "github.com/dynkey/dynkey/adapters/gin", "github.com/gin-gonic/gin"},
		{"echo", "github.com/dynkey/dynkey/adapters/echo", "github.com/labstack/echo/v4"},
		{"chi", "github.com/dynkey/dynkey/adapters/chi", "github.com/go-chi/chi/v5"},
		{"fiber", "github.com/dynkey/dynkey/adapters/fiber", "github.com/gofiber/fiber/v3"},
		{"fiberv2", "github.com/dynkey/dynkey/adapters/fiberv2", "github.com/gofiber/fiber/v2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exec.Command("go", "list", "-deps", tc.pkg).CombinedOutput()
			if err != nil {
				t.Fatalf("go list: %v\n%s", err, out)
			}
			if !strings.Contains("\n"+string(out), "\n"+tc.want+"\n") {
				t.Errorf("%s does not link %s", tc.pkg, tc.want)
			}
		})
	}
}
