package postgres

import (
	"context"
	"time"

	"github.com/dynkey/dynkey/store"
)

// The store implements store.Lister but not store.Scrubber. An UPDATE or
// DELETE in PostgreSQL leaves the old row version in the table's pages until
// VACUUM prunes it, and pruning marks the space free without overwriting it;
// the write-ahead log keeps full copies until its segments are recycled, and
// archived WAL and base backups keep them for as long as they are kept.
// VACUUM FULL writes a new table file, but the old one is only unlinked (its
// blocks stay on the disk) and the rewrite takes an exclusive lock that
// stalls every request. So no statement makes "no value the store no longer
// holds can be read back from its files" true, and the store does not claim
// it: a no-op Scrub would turn the middleware's forward-secrecy step into a
// false promise. What lingers is sealed under the key-encryption key;
// docs/DEPLOYMENT.md says what an operator can do (autovacuum, WAL retention,
// encrypted volumes).
var _ store.Lister = (*Store)(nil)

// ListKeys implements [store.Lister]: one SELECT of the live keys in the
// primary key's range [prefix, next prefix), in order.
func (s *Store) ListKeys(ctx context.Context, prefix, after string, limit int) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, s.fail("list keys", err)
	}
	if limit <= 0 {
		return nil, nil
	}
	var upper []byte // nil: no upper bound (NULL)
	if u, ok := prefixEnd(prefix); ok {
		upper = u
	}
	rows, err := s.pool.Query(ctx, s.q.list, []byte(prefix), []byte(after), upper, nanos(time.Now()), limit)
	if err != nil {
		return nil, s.failCtx(ctx, "list keys", err)
	}
	defer rows.Close()
	var keys []string
	for rows.Next() {
		var k []byte
		if err := rows.Scan(&k); err != nil {
			return nil, s.failCtx(ctx, "list keys", err)
		}
		keys = append(keys, string(k))
	}
	if err := rows.Err(); err != nil {
		return nil, s.failCtx(ctx, "list keys", err)
	}
	return keys, nil
}

// prefixEnd returns the smallest byte string greater than every string that
// starts with prefix, or false if there is none (prefix empty or all 0xff).
func prefixEnd(prefix string) ([]byte, bool) {
	b := []byte(prefix)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] != 0xff {
			b[i]++
			return b[:i+1], true
		}
	}
	return nil, false
}
