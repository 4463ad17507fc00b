package redis

import (
	"context"
	"slices"
	"strings"
	"sync"

	goredis "github.com/redis/go-redis/v9"

	"github.com/dynkey/dynkey/store"
)

// The store implements store.Lister but not store.Scrubber: Redis keeps
// values in memory, where a deleted value is freed (not wiped) and its bytes
// may linger until reused, and on disk in RDB snapshots and the append-only
// file until the next BGSAVE or AOF rewrite — neither of which overwrites the
// old file's blocks. No command makes "no value the store no longer holds can
// be read back" true, so the store does not claim it. What lingers is sealed
// under the key-encryption key; docs/DEPLOYMENT.md says what an operator can
// do (AOF rewrites, snapshots on encrypted volumes).
var _ store.Lister = (*Store)(nil)

// ListKeys implements [store.Lister] with SCAN (MATCH on the store's prefix
// and the key prefix) on the server, or on every master of a Redis Cluster
// (entries spread over all slots), then sorts. Each call scans every entry
// under prefix, so listing N keys in pages of n costs N/n scans of N keys:
// fine for the rare key-encryption key rotation it serves, not for a hot
// path. An entry that expired less than a millisecond ago may be listed (the
// TTL is rounded up to the millisecond).
func (s *Store) ListKeys(ctx context.Context, prefix, after string, limit int) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, s.fail("list keys", err)
	}
	if limit <= 0 {
		return nil, nil
	}
	base := s.kvKey("")
	pattern := globEscape(base+prefix) + "*"
	var (
		keys []string
		mu   sync.Mutex // ForEachMaster calls scan concurrently
	)
	scan := func(ctx context.Context, c *goredis.Client) error {
		iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
		var local []string
		for iter.Next(ctx) {
			k := strings.TrimPrefix(iter.Val(), base)
			if k > after {
				local = append(local, k)
			}
		}
		if err := iter.Err(); err != nil {
			return err
		}
		mu.Lock()
		keys = append(keys, local...)
		mu.Unlock()
		return nil
	}
	var err error
	switch c := s.c.(type) {
	case *goredis.ClusterClient:
		err = c.ForEachMaster(ctx, scan)
	case *goredis.Client:
		err = scan(ctx, c)
	default:
		iter := s.c.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			if k := strings.TrimPrefix(iter.Val(), base); k > after {
				keys = append(keys, k)
			}
		}
		err = iter.Err()
	}
	if err != nil {
		return nil, s.fail("list keys", err)
	}
	slices.Sort(keys)
	keys = slices.Compact(keys) // SCAN may return a key twice
	if len(keys) > limit {
		keys = keys[:limit]
	}
	return keys, nil
}

// globEscape escapes the characters SCAN's MATCH pattern gives a meaning.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\', '^', '-':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
