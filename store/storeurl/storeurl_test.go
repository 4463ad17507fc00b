package storeurl_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/internal/testservers"
	"github.com/dynkey/dynkey/store/memory"
	"github.com/dynkey/dynkey/store/postgres"
	"github.com/dynkey/dynkey/store/redis"
	"github.com/dynkey/dynkey/store/sqlite"
	"github.com/dynkey/dynkey/store/storeurl"
)

// TestOpen opens every kind of store by URL, against real servers, and
// uses it.
func TestOpen(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	redisURL := testservers.RedisURL(t)
	clusterURL := testservers.RedisClusterURL(t)
	pgURL := testservers.PostgresURL(t)
	sep := func(u string) string {
		if strings.Contains(u, "?") {
			return u + "&"
		}
		return u + "?"
	}
	tests := []struct {
		name string
		url  string
		want any
		file string // for SQLite: the file that must exist afterwards
	}{
		{name: "memory", url: "memory:", want: &memory.Store{}},
		{name: "memory slashes", url: "memory://", want: &memory.Store{}},
		{name: "sqlite absolute", url: "sqlite://" + filepath.Join(dir, "abs.db"), want: &sqlite.Store{}, file: filepath.Join(dir, "abs.db")},
		{name: "sqlite relative", url: "sqlite:rel.db", want: &sqlite.Store{}, file: filepath.Join(dir, "rel.db")},
		{name: "sqlite escaped", url: "sqlite://" + filepath.Join(dir, "a%20b.db"), want: &sqlite.Store{}, file: filepath.Join(dir, "a b.db")},
		{name: "redis", url: redisURL, want: &redis.Store{}},
		{name: "redis prefix", url: sep(redisURL) + "prefix=other:", want: &redis.Store{}},
		{name: "redis cluster", url: clusterURL, want: &redis.Store{}},
		{name: "postgres", url: pgURL, want: &postgres.Store{}},
		{name: "postgresql schema", url: "postgresql" + strings.TrimPrefix(sep(pgURL), "postgres") + "schema=storeurl", want: &postgres.Store{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := storeurl.Open(t.Context(), tt.url)
			require.NoError(t, err)
			defer func() { require.NoError(t, s.Close()) }()
			require.IsType(t, tt.want, s)
			key := "storeurl " + tt.name + " " + time.Now().String()
			v, err := s.CompareAndSwap(t.Context(), key, 0, []byte("v"), time.Now().Add(time.Minute))
			require.NoError(t, err)
			e, err := s.Get(t.Context(), key)
			require.NoError(t, err)
			require.Equal(t, v, e.Version)
			require.Equal(t, "v", string(e.Value))
			if tt.file != "" {
				_, err := os.Stat(tt.file)
				require.NoError(t, err, "database not at the path the URL names")
			}
		})
	}
}

// TestOpenBadURL checks that a malformed URL or an unknown scheme is a
// clear error: it wraps ErrBadURL, lists the accepted forms, and never
// shows a password.
func TestOpenBadURL(t *testing.T) {
	tests := []struct {
		name string
		url  string
		says string // substring of the error
	}{
		{"empty", "", "no scheme"},
		{"no scheme", "/var/lib/dynkey.db", "no scheme"},
		{"unknown scheme", "mysql://u:topsecret@db/app", `unknown scheme "mysql"`},
		{"http", "http://example.com", `unknown scheme "http"`},
		{"memory with path", "memory:/x", "memory: takes nothing"},
		{"sqlite with host", "sqlite://host/file.db", "names a host"},
		{"sqlite no file", "sqlite:///", "names no file"},
		{"sqlite empty", "sqlite:", "names no file"},
		{"sqlite query", "sqlite:///x.db?mode=ro", "no query"},
		{"sqlite malformed", "sqlite:///x%zz.db", "malformed"},
		{"redis several hosts", "redis://a:1,b:2", "redis+cluster"},
		{"redis bad port", "redis://u:topsecret@h:port", "malformed"},
		{"redis bad db", "redis://h:1/x", "database number"},
		{"redis unknown option", "redis://h:1?colour=blue", "colour"},
		{"cluster with db", "redis+cluster://a:1,b:2/0", "no database number"},
		{"cluster bad address", "redis+cluster://u:topsecret@a:1,b:x", "invalid port"},
		{"cluster no host", "redis+cluster://", "empty host"},
		{"postgres no host", "postgres:///app", "host"},
		{"postgres bad port", "postgres://u:topsecret@db:x/app", "malformed"},
		{"postgres bad option", "postgresql://u:topsecret@db/app?sslmode=sometimes", "sslmode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := storeurl.Open(t.Context(), tt.url)
			require.Nil(t, s)
			require.ErrorIs(t, err, storeurl.ErrBadURL)
			require.ErrorContains(t, err, tt.says)
			require.ErrorContains(t, err, storeurl.Forms)
			require.NotContains(t, err.Error(), "topsecret")
		})
	}
}

// TestOpenUnreachable checks that a well-formed URL of a server that does
// not answer is an error naming the address, not ErrBadURL.
func TestOpenUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for _, u := range []string{
		"redis://127.0.0.1:1/0?dial_timeout=1s&max_retries=-1",
		"postgres://u:topsecret@127.0.0.1:1/app?sslmode=disable&connect_timeout=1",
	} {
		_, err := storeurl.Open(ctx, u)
		require.Error(t, err, u)
		require.NotErrorIs(t, err, storeurl.ErrBadURL, u)
		require.ErrorContains(t, err, "127.0.0.1:1", u)
		require.NotContains(t, err.Error(), "topsecret")
	}
}

func ExampleOpen() {
	dir, err := os.MkdirTemp("", "dynkey")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	s, err := storeurl.Open(context.Background(), "sqlite://"+filepath.Join(dir, "dynkey.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	v, err := s.CompareAndSwap(context.Background(), "k", 0, []byte("v"), time.Time{})
	fmt.Println(v, err)

	_, err = storeurl.Open(context.Background(), "mongodb://db")
	fmt.Println(err != nil)
	// Output:
	// 1 <nil>
	// true
}
