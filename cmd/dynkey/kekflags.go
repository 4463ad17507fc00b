package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/dynkey/dynkey/middleware"
	"github.com/dynkey/dynkey/store"
	"github.com/dynkey/dynkey/store/storeurl"
)

// kekSize is the size of a key-encryption key.
const kekSize = 32

// kekSource is a -kek-file / -kek-env pair of flags (with a prefix for kek
// rotate's -old-… and -new-…).
type kekSource struct {
	prefix string
	file   string
	envVar string
}

func addKEKFlags(fs *flag.FlagSet, prefix, what string) *kekSource {
	k := &kekSource{prefix: prefix}
	fs.StringVar(&k.file, prefix+"kek-file", "", "file holding the "+what+" key-encryption key (32 bytes in hex or base64)")
	fs.StringVar(&k.envVar, prefix+"kek-env", "", "environment variable holding the "+what+" key-encryption key (hex or base64)")
	return k
}

func (k *kekSource) set() bool { return k.file != "" || k.envVar != "" }

// load reads the key. A missing source is a usage error.
func (k *kekSource) load(e *env) ([]byte, error) {
	switch {
	case k.file != "" && k.envVar != "":
		return nil, usagef("give -%skek-file or -%skek-env, not both", k.prefix, k.prefix)
	case k.file != "":
		b, err := os.ReadFile(k.file)
		if err != nil {
			return nil, fmt.Errorf("reading the key-encryption key: %w", err)
		}
		key, err := decodeKEK(b)
		if err != nil {
			return nil, fmt.Errorf("key-encryption key in %s: %w", k.file, err)
		}
		return key, nil
	case k.envVar != "":
		v := e.getenv(k.envVar)
		if v == "" {
			return nil, fmt.Errorf("environment variable %s is empty or not set", k.envVar)
		}
		key, err := decodeKEK([]byte(v))
		if err != nil {
			return nil, fmt.Errorf("key-encryption key in $%s: %w", k.envVar, err)
		}
		return key, nil
	}
	return nil, usagef("missing -%skek-file or -%skek-env (make one with: dynkey kek new -o FILE)", k.prefix, k.prefix)
}

// decodeKEK reads a key-encryption key as the servers do
// (middleware.ParseKEK): 64 hex digits or base64, white space around it
// ignored.
func decodeKEK(b []byte) ([]byte, error) {
	return middleware.ParseKEK(string(b))
}

// storeForms lists the store URLs this build opens.
const storeForms = storeurl.Forms

// openStore opens the store named by a URL (store/storeurl). A malformed
// URL or an unknown scheme is a usage error that lists the accepted forms.
//
// Unless create is set, a SQLite file must exist already: a command that
// reads a deployment's state must not make an empty database at a mistyped
// path.
func openStore(ctx context.Context, raw string, create bool) (store.Store, error) {
	if raw == "" {
		return nil, usagef("missing -store URL (%s)", storeForms)
	}
	if !create {
		if path, ok := sqlitePath(raw); ok {
			if _, err := os.Stat(path); err != nil {
				return nil, fmt.Errorf("SQLite store %s: %w", path, err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err := storeurl.Open(ctx, raw)
	if errors.Is(err, storeurl.ErrBadURL) {
		return nil, &usageError{err.Error()}
	}
	if err != nil {
		return nil, fmt.Errorf("opening the store %s: %w", redactURL(raw), err)
	}
	return st, nil
}

// sqlitePath returns the file of a sqlite: URL (sqlite:///abs/file or
// sqlite:rel/file); ok is false for any other URL, or one storeurl will
// refuse anyway.
func sqlitePath(raw string) (string, bool) {
	u, err := url.Parse(raw)
	if err != nil || !strings.EqualFold(u.Scheme, "sqlite") {
		return "", false
	}
	if u.Opaque != "" {
		p, err := url.PathUnescape(u.Opaque)
		return p, err == nil
	}
	return u.Path, u.Path != "" && u.Host == ""
}

// durable reports whether a store URL names state that outlives the
// process.
func durable(raw string) bool { return !strings.HasPrefix(strings.ToLower(raw), "memory:") }

// redactURL hides a password in a store URL.
func redactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	return "(unparsable URL)"
}
