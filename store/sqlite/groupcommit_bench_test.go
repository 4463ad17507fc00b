package sqlite_test

import (
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkMarkSeen records new ids one at a time: a commit (and fsync)
// per id.
func BenchmarkMarkSeen(b *testing.B) {
	s := open(b, filepath.Join(b.TempDir(), "dynkey.db"))
	exp := time.Now().Add(time.Hour)
	ctx := b.Context()
	i := 0
	for b.Loop() {
		if _, err := s.MarkSeen(ctx, "dynkey/msg/u-0123456789abcdef0123456789abcdef/"+strconv.Itoa(i), exp); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkMarkSeenParallel records new ids from 32 goroutines per CPU, as
// a loaded server does: concurrent calls share a commit (group commit).
func BenchmarkMarkSeenParallel(b *testing.B) {
	s := open(b, filepath.Join(b.TempDir(), "dynkey.db"))
	exp := time.Now().Add(time.Hour)
	ctx := b.Context()
	var n atomic.Int64
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			if _, err := s.MarkSeen(ctx, "dynkey/msg/u-0123456789abcdef0123456789abcdef/"+strconv.FormatInt(i, 10), exp); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	st := s.Stats()
	b.ReportMetric(float64(st.SeenIDs)/float64(max(st.SeenGroups, 1)), "ids/commit")
}

// BenchmarkGet reads a session-sized record.
func BenchmarkGet(b *testing.B) {
	s := open(b, filepath.Join(b.TempDir(), "dynkey.db"))
	ctx := b.Context()
	if _, err := s.CompareAndSwap(ctx, "dynkey/session/0123456789abcdef0123456789abcdef", 0, make([]byte, 400), time.Now().Add(time.Hour)); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := s.Get(ctx, "dynkey/session/0123456789abcdef0123456789abcdef"); err != nil {
			b.Fatal(err)
		}
	}
}
