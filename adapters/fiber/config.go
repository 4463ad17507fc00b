package dynkeyfiber

import (
	"github.com/gofiber/fiber/v3"

	"github.com/dynkey/dynkey/middleware"
)

// Config configures [New]. Only Middleware is required.
type Config struct {
	// Middleware is the dynkey server that opens requests and seals
	// responses. Required: New panics without it.
	Middleware *middleware.Middleware

	// Next, if set, is asked first: true skips dynkey for this request, the
	// chain runs untouched, neither opened nor sealed (public routes,
	// health checks, CORS preflights). The Middleware's Options.Next is
	// asked too. Default nil: nothing is skipped.
	Next func(c fiber.Ctx) bool

	// Optional selects the optional mode, for routes whose clients are
	// migrating: a request without an envelope (no Dynkey-Envelope header,
	// a Content-Type other than application/dynkey) runs the chain as it
	// is, unsealed, with no session ([FromContext] reports ok == false); an
	// encrypted one is opened and sealed as usual, and refused if it does
	// not open. Default false: every request must be encrypted.
	Optional bool
}

// ConfigDefault is the default configuration (Middleware must still be set).
var ConfigDefault = Config{}

// configDefault returns the first config with its defaults filled in.
func configDefault(config ...Config) Config {
	cfg := ConfigDefault
	if len(config) > 0 {
		cfg = config[0]
	}
	if cfg.Middleware == nil {
		panic("dynkeyfiber: Config.Middleware is required")
	}
	return cfg
}
