package postgres

import (
	"github.com/jackc/pgx/v5/pgxpool"
)

// Pool returns the store's pool.
func Pool(s *Store) *pgxpool.Pool { return s.pool }

// Queries returns the store's statements by name.
func Queries(s *Store) map[string]string {
	return map[string]string{
		"get": s.q.get, "create": s.q.create, "update": s.q.update, "delete": s.q.del,
		"markSeen": s.q.markSeen, "sweepKV": s.q.sweepKV, "sweepSeen": s.q.sweepSeen,
	}
}
