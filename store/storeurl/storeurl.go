// Package storeurl opens any dynkey [store.Store] from a URL, so that
// options, examples and command lines name a store with one string:
//
//	memory:                                      in-process (tests, one instance)
//	sqlite:///var/lib/app/dynkey.db              SQLite file (absolute path)
//	sqlite:dynkey.db                             SQLite file (relative path)
//	redis://[user:pass@]host:port[/db]           standalone Redis
//	rediss://…                                   Redis over TLS
//	redis+cluster://[user:pass@]h1:p1,h2:p2,…    Redis Cluster (any nodes; one suffices)
//	rediss+cluster://…                           Redis Cluster over TLS
//	postgres://[user:pass@]host[:port]/db        PostgreSQL (postgresql:// too)
//
// Redis URLs take go-redis's options and prefix=… (the key prefix, default
// "dynkey:"); PostgreSQL URLs take pgx's and libpq's options and schema=…
// (default: the connection's default schema). See
// [github.com/dynkey/dynkey/store/redis.Open] and
// [github.com/dynkey/dynkey/store/postgres.Open].
//
// This package imports every store, with their drivers; a program that
// needs one store only can import that store's package instead. Package
// store itself stays free of them.
package storeurl

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/dynkey/dynkey/store"
	"github.com/dynkey/dynkey/store/memory"
	"github.com/dynkey/dynkey/store/postgres"
	"github.com/dynkey/dynkey/store/redis"
	"github.com/dynkey/dynkey/store/sqlite"
)

// Forms lists the accepted URL forms, for help texts and error messages.
const Forms = "memory:, sqlite:///path/file.db, redis://host:port/db, rediss://host:port/db, " +
	"redis+cluster://host1:port1,host2:port2,..., rediss+cluster://..., postgres://user@host:port/db"

// ErrBadURL is wrapped by the errors of [Open] for a URL that is malformed
// or names no known store. Errors of Open never contain a password.
var ErrBadURL = errors.New("dynkey/store/storeurl: bad store URL")

// badURL wraps err with ErrBadURL and the accepted forms.
func badURL(format string, args ...any) error {
	return fmt.Errorf("%w: %s; accepted forms: %s", ErrBadURL, fmt.Sprintf(format, args...), Forms)
}

// Open opens the store named by rawURL (see the package documentation for
// the forms). Stores on a server are connected and checked before Open
// returns; PostgreSQL's tables are created if absent. The caller must Close
// the store.
func Open(ctx context.Context, rawURL string) (store.Store, error) {
	scheme, _, ok := strings.Cut(rawURL, ":")
	if !ok || scheme == "" {
		return nil, badURL("%q has no scheme", redact(rawURL))
	}
	switch strings.ToLower(scheme) {
	case "memory":
		if rest := strings.TrimPrefix(strings.TrimPrefix(rawURL[len(scheme):], ":"), "//"); rest != "" {
			return nil, badURL("memory: takes nothing after the colon, got %q", rest)
		}
		return memory.New(), nil
	case "sqlite":
		path, err := sqlitePath(rawURL)
		if err != nil {
			return nil, err
		}
		s, err := sqlite.Open(path)
		if err != nil {
			return nil, err
		}
		return s, nil
	case "redis", "rediss", "redis+cluster", "rediss+cluster":
		if _, _, err := redis.ParseURL(rawURL); err != nil {
			return nil, badURL("%v", err)
		}
		s, err := redis.Open(ctx, rawURL)
		if err != nil {
			return nil, err
		}
		return s, nil
	case "postgres", "postgresql":
		if _, _, err := postgres.ParseURL(rawURL); err != nil {
			return nil, badURL("%v", err)
		}
		s, err := postgres.Open(ctx, rawURL)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	return nil, badURL("unknown scheme %q", scheme)
}

// sqlitePath returns the file path of sqlite:///abs/path or sqlite:rel/path.
func sqlitePath(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", badURL("malformed sqlite URL: %v", err)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", badURL("sqlite URL %q takes no query or fragment", rawURL)
	}
	switch {
	case u.Opaque != "":
		p, err := url.PathUnescape(u.Opaque)
		if err != nil {
			return "", badURL("malformed sqlite URL: %v", err)
		}
		return p, nil
	case u.Host != "" || u.User != nil:
		return "", badURL("sqlite URL %q names a host (an absolute path needs three slashes)", u.Redacted())
	case u.Path == "" || strings.HasSuffix(u.Path, "/"):
		return "", badURL("sqlite URL %q names no file", rawURL)
	}
	return u.Path, nil
}

// redact hides the password of a URL that url.Parse can read, and replaces
// one it cannot read with a placeholder (it may hold a password).
func redact(rawURL string) string {
	if u, err := url.Parse(rawURL); err == nil {
		return u.Redacted()
	}
	return "(unparsable URL)"
}
