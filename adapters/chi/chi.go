// Package dynkeychi is the chi glue for dynkey. chi routes plain net/http
// handlers, so the net/http middleware is the adapter: protect routes with
// m.Handler in r.Use, r.Group or r.With, and serve the endpoints with
// [Mount]. The session is in r.Context() ([middleware.FromContext]).
//
//	r := chi.NewRouter()
//	r.Use(cors.Handler(dynkeychi.CORSOptions(origins))) // browsers on other origins
//	dynkeychi.Mount(r, m)
//	r.Group(func(r chi.Router) {
//		r.Use(m.Handler)
//		r.Get("/api/items/{id}", getItem) // chi.URLParam works as usual
//	})
//
// Mount the middleware on the router that sees the path as the client sent
// it: chi's Mount and Route keep r.URL unchanged, so sub-routers are fine,
// but an http.StripPrefix in front would break the path binding.
package dynkeychi

import (
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/rs/cors"

	"github.com/dynkey/dynkey/middleware"
	"github.com/dynkey/dynkey/wire"
)

// Mount routes the dynkey endpoints (key directory, login, heartbeat) to
// m.Endpoints() for every method, so that a wrong method gets the
// documented "method-not-allowed" problem with an Allow header, not chi's
// empty 405. r must be the root router: the endpoints have fixed paths.
func Mount(r chi.Router, m *middleware.Middleware) {
	h := m.Endpoints()
	for _, p := range []string{wire.PathKeys, wire.PathLogin, wire.PathHeartbeat} {
		r.Handle(p, h)
	}
}

// CORSOptions returns rs/cors options for browser pages on origins calling
// dynkey routes: the request headers dynkey needs (Dynkey-Envelope, and
// Content-Type for application/dynkey bodies) are allowed, the response
// headers its client reads (Dynkey-Status, Dynkey-Response, Dynkey-Problem,
// Retry-After, Allow) are exposed, and preflights are cached for 10
// minutes. Put cors.New(opts).Handler in front of m.Handler (r.Use first):
// preflights are then answered by rs/cors and never reach dynkey.
func CORSOptions(origins []string) cors.Options {
	return cors.Options{
		AllowedOrigins: origins,
		AllowedMethods: []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions},
		AllowedHeaders: []string{wire.EnvelopeHeader, "Content-Type"},
		ExposedHeaders: []string{wire.StatusHeader, wire.ResponseHeader, wire.ProblemHeader, "Retry-After", "Allow"},
		MaxAge:         600,
	}
}
