package sqlite

// MarkSeen: the group commit of replay ids into the log (table replay_log)
// and each Store's in-memory index of the live ones.

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"runtime"
	"time"
)

// replayHash is how a replay id is stored: the first 16 bytes of its
// SHA-256, a fixed size whatever the ids look like (the middleware's are
// about 80 bytes). Two distinct ids collide with probability 2^-128 per
// pair (below 10^-14 for 10^12 ids within one replay window), and a
// collision errs on the safe side: the second id is reported as seen.
func replayHash(id string) [16]byte {
	h := sha256.Sum256([]byte(id))
	return [16]byte(h[:16])
}

// maxSeenBatch bounds how many MarkSeen calls one transaction commits.
const maxSeenBatch = 256

// seenReq is one MarkSeen call waiting for its group's commit.
type seenReq struct {
	id      string
	expires int64
	res     chan seenRes // buffered: the loop never blocks on it
}

type seenRes struct {
	first bool
	err   error
}

// seenGroup is a committed group waiting for its fsync.
type seenGroup struct {
	batch  []*seenReq
	firsts []bool
	gen    uint64 // commitDone's number for the group's commit
}

// MarkSeen implements [store.Store]. Concurrent calls are committed together
// (see the package documentation); each returns once the transaction that
// holds its id is committed and fsync'ed, or with an error if the
// transaction failed (then the id was not recorded) or the fsync failed
// (then the outcome is unknown, as for any write whose disk fails). Once a
// call has joined a group, it waits for the group's fsync even if ctx ends
// meanwhile, so that its answer is never lost.
func (s *Store) MarkSeen(ctx context.Context, id string, expires time.Time) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, s.fail("mark seen in", err)
	}
	r := &seenReq{id: id, expires: nanos(expires), res: make(chan seenRes, 1)}
	select {
	case s.seenCh <- r:
	case <-ctx.Done():
		return false, s.fail("mark seen in", ctx.Err())
	case <-s.closing:
		return false, s.fail("mark seen in", errClosed)
	}
	res := <-r.res
	if res.err != nil {
		return false, s.fail("mark seen in", res.err)
	}
	return res.first, nil
}

// seenLoop commits MarkSeen calls in groups: it takes one call, adds every
// call already waiting (up to maxSeenBatch), and commits them in one
// transaction. While it commits, new calls queue for the next group, so
// the group size follows the load with no added delay.
func (s *Store) seenLoop() {
	defer close(s.loopDone)
	defer close(s.syncCh)
	batch := make([]*seenReq, 0, maxSeenBatch)
	for {
		select {
		case r := <-s.seenCh:
			batch = append(batch[:0], r)
			// Let the goroutines that are ready to run (requests on their
			// way to MarkSeen) run first, and take whatever calls they
			// made: on a busy server the group grows to the requests in
			// flight, while an idle one commits at once (Gosched returns
			// immediately when nothing else is runnable).
			for range maxYields {
				n := len(batch)
				runtime.Gosched()
				batch = s.drain(batch)
				if len(batch) == n || len(batch) == maxSeenBatch {
					break
				}
			}
			// While the previous group's fsync runs, this group could not
			// be synced before it ends anyway: keep taking calls until it
			// does (fewer, larger commits at no cost in latency).
			for s.unsynced.Load() > 0 && len(batch) < maxSeenBatch {
				select {
				case r := <-s.seenCh:
					batch = append(batch, r)
				case <-s.synced1:
				}
			}
			s.commitSeen(batch)
			batch = make([]*seenReq, 0, maxSeenBatch) // the old one waits for its fsync
		case <-s.closing:
			return
		}
	}
}

// maxYields bounds how many times seenLoop yields before a commit.
const maxYields = 4

// drain adds the calls already waiting to batch, up to maxSeenBatch.
func (s *Store) drain(batch []*seenReq) []*seenReq {
	for len(batch) < maxSeenBatch {
		select {
		case r := <-s.seenCh:
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// commitSeen records a group of ids in one transaction and passes it to
// syncLoop, which answers each call once the log is on disk. A call learns
// true only after that; if the transaction fails, it rolls back and every
// call of the group gets the error at once (none of their ids was
// recorded).
func (s *Store) commitSeen(batch []*seenReq) {
	firsts, err := s.insertSeen(batch)
	if err != nil {
		for _, r := range batch {
			r.res <- seenRes{err: err}
		}
		return
	}
	s.unsynced.Add(1)
	s.syncCh <- seenGroup{batch: batch, firsts: firsts, gen: s.commitDone()}
	n := uint64(len(batch))
	s.seenGroups.Add(1)
	s.seenIDs.Add(n)
	if w := s.writes.Add(n); w/sweepEvery != (w-n)/sweepEvery {
		// Best effort, as in wrote.
		_ = s.sweep(context.Background())
	}
}

// syncLoop fsyncs the log for the committed groups: one fsync for every
// group waiting when it starts, while seenLoop commits the next ones.
func (s *Store) syncLoop() {
	defer close(s.syncDone)
	var groups []seenGroup
	for g := range s.syncCh {
		groups = append(groups[:0], g)
	drain:
		for {
			select {
			case g, ok := <-s.syncCh:
				if !ok {
					break drain
				}
				groups = append(groups, g)
			default:
				break drain
			}
		}
		err := s.syncWAL(groups[len(groups)-1].gen) // groups arrive in commit order
		for _, g := range groups {
			for i, r := range g.batch {
				if err != nil {
					r.res <- seenRes{err: err}
				} else {
					r.res <- seenRes{first: g.firsts[i]}
				}
			}
		}
		s.unsynced.Add(-int64(len(groups)))
		select {
		case s.synced1 <- struct{}{}:
		default:
		}
		clear(groups)
	}
}

// insertSeen records a group in one write transaction. Holding SQLite's
// write lock, it first reads the log entries other processes (or other
// Stores on the file) appended since this Store last looked, so that its
// in-memory index is complete; then it decides each id against the index
// and appends the new ones. Another writer cannot interleave: the decision
// and the append are one transaction under the write lock, which is what
// makes MarkSeen atomic across processes. The index learns this group's
// ids only once they are committed.
func (s *Store) insertSeen(batch []*seenReq) (firsts []bool, err error) {
	ctx := context.Background()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if err := s.seen.catchUp(ctx, tx); err != nil {
		return nil, err
	}
	stmt := tx.StmtContext(ctx, s.seenStmt)
	now := nanos(time.Now())
	firsts = make([]bool, len(batch))
	added := make(map[[16]byte]int64, len(batch))
	var last int64
	for i, r := range batch {
		h := replayHash(r.id)
		if exp, ok := added[h]; ok && live(exp, now) {
			continue // the same id earlier in this group
		}
		if s.seen.live(h, now) {
			continue
		}
		res, err := stmt.ExecContext(ctx, h[:], r.expires)
		if err != nil {
			return nil, err
		}
		if last, err = res.LastInsertId(); err != nil {
			return nil, err
		}
		added[h] = r.expires
		firsts[i] = true
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	for i, r := range batch {
		if firsts[i] {
			s.seen.add(replayHash(r.id), r.expires)
		}
	}
	s.seen.seq = max(s.seen.seq, last)
	s.seen.expire(now)
	return firsts, nil
}

// live reports whether an id recorded until expires is still remembered
// at now.
func live(expires, now int64) bool { return expires == 0 || expires > now }

// seenSet is a Store's in-memory index of the live replay ids in the log:
// the hash of each with its expiry, and the log position up to which it is
// complete. Entries are dropped in the order they were added once
// expired, so memory follows the ids remembered: about 80 bytes per id.
type seenSet struct {
	m     map[[16]byte]int64
	order []seenEntry // in the order added; the front is dropped first
	head  int
	seq   int64 // every log entry up to seq is in m (or expired)
}

type seenEntry struct {
	h       [16]byte
	expires int64
}

func newSeenSet() *seenSet { return &seenSet{m: map[[16]byte]int64{}} }

func (t *seenSet) live(h [16]byte, now int64) bool {
	exp, ok := t.m[h]
	return ok && live(exp, now)
}

// add records h until expires, keeping the later expiry of a duplicate.
func (t *seenSet) add(h [16]byte, expires int64) {
	if old, ok := t.m[h]; ok && (old == 0 || (expires != 0 && old >= expires)) {
		return
	}
	t.m[h] = expires
	t.order = append(t.order, seenEntry{h, expires})
}

// expire drops the expired entries at the front. An entry that never
// expires, or expires later than those behind it, holds the ones behind it
// until it expires: they are invisible (live checks the expiry), only
// their memory waits.
func (t *seenSet) expire(now int64) {
	for t.head < len(t.order) {
		e := t.order[t.head]
		if live(e.expires, now) {
			break
		}
		if t.m[e.h] == e.expires {
			delete(t.m, e.h)
		}
		t.order[t.head] = seenEntry{}
		t.head++
	}
	if t.head > 1024 && t.head*2 > len(t.order) {
		t.order = append(t.order[:0:0], t.order[t.head:]...)
		t.head = 0
	}
}

// catchUp adds the log entries appended after t.seq.
func (t *seenSet) catchUp(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}) error {
	rows, err := q.QueryContext(ctx, `SELECT seq, h, expires FROM replay_log WHERE seq > ? ORDER BY seq`, t.seq)
	if err != nil {
		return err
	}
	defer rows.Close()
	now := nanos(time.Now())
	for rows.Next() {
		var (
			seq, expires int64
			h            []byte
		)
		if err := rows.Scan(&seq, &h, &expires); err != nil {
			return err
		}
		if len(h) == 16 && live(expires, now) {
			t.add([16]byte(h), expires)
		}
		t.seq = seq
	}
	return rows.Err()
}
