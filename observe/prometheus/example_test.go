package prometheus_test

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dynkey/dynkey/auth"
	"github.com/dynkey/dynkey/middleware"
	dkprom "github.com/dynkey/dynkey/observe/prometheus"
)

func Example() {
	reg := prom.NewRegistry() // yours: nothing is registered globally
	obs, err := dkprom.New(reg, dkprom.Options{})
	if err != nil {
		panic(err)
	}
	m, err := middleware.New(middleware.Options{
		Authenticator: auth.NewArgon2id(auth.DefaultParams),
		Observer:      obs,
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		panic(err)
	}
	defer m.Close()
	// Serve the registry on an internal listener.
	_ = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})

	// A plain request to a protected route is refused, and counted.
	app := m.Handler(http.NotFoundHandler())
	app.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/api/orders", strings.NewReader("{}")))
	err = testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP dynkey_login_attempts_total Login attempts by outcome: success, failed, throttled, busy.
# TYPE dynkey_login_attempts_total counter
dynkey_login_attempts_total{outcome="busy"} 0
dynkey_login_attempts_total{outcome="failed"} 0
dynkey_login_attempts_total{outcome="success"} 0
dynkey_login_attempts_total{outcome="throttled"} 0
`), "dynkey_login_attempts_total")
	fmt.Println(err)
	fams, _ := reg.Gather()
	for _, f := range fams {
		for _, mt := range f.GetMetric() {
			if f.GetName() == "dynkey_requests_total" && mt.GetCounter().GetValue() > 0 {
				fmt.Print(f.GetName())
				for _, l := range mt.GetLabel() {
					fmt.Printf(" %s=%s", l.GetName(), l.GetValue())
				}
				fmt.Println(":", mt.GetCounter().GetValue())
			}
		}
	}
	// Output:
	// <nil>
	// dynkey_requests_total code=not-encrypted outcome=refused: 1
}
