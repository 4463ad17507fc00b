package otel_test

import (
	"net/http"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/dynkey/dynkey/auth"
	"github.com/dynkey/dynkey/middleware"
	dkotel "github.com/dynkey/dynkey/observe/otel"
)

func ExampleHandler() {
	tp := sdktrace.NewTracerProvider() // with your exporter
	m, err := middleware.New(middleware.Options{Authenticator: auth.NewArgon2id(auth.DefaultParams)})
	if err != nil {
		panic(err)
	}
	defer m.Close()
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux := http.NewServeMux()
	// The endpoints and /api/ with spans dynkey.open, dynkey.handler, dynkey.seal.
	mux.Handle("/", dkotel.Handler(m, app, dkotel.Options{TracerProvider: tp}))
	_ = mux
}
