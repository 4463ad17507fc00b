package memory_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/dynkey/dynkey/store/memory"
	"github.com/dynkey/dynkey/store/storetest"
)

// BenchmarkStore measures each operation's latency (no round trips: the
// store is in the process).
func BenchmarkStore(b *testing.B) {
	storetest.Bench(b, memory.New(), nil)
}

// BenchmarkSizing measures the heap the store uses per session (a record of
// storetest.SessionValue's size) and per message id. Run it with a fixed
// count, e.g. -benchtime=20000x.
func BenchmarkSizing(b *testing.B) {
	value := storetest.SessionValue()
	exp := time.Now().Add(time.Hour)
	for _, tc := range []struct {
		name  string
		write func(s *memory.Store, i int) error
	}{
		{"session", func(s *memory.Store, i int) error {
			_, err := s.CompareAndSwap(b.Context(), storetest.SessionKey(i), 0, value, exp)
			return err
		}},
		{"msgid", func(s *memory.Store, i int) error {
			_, err := s.MarkSeen(b.Context(), storetest.MessageID(i), exp)
			return err
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			heap := func() uint64 {
				var m runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&m)
				return m.HeapAlloc
			}
			s := memory.New()
			before := heap()
			for i := 0; b.Loop(); i++ {
				if err := tc.write(s, i); err != nil {
					b.Fatal(err)
				}
			}
			after := heap()
			runtime.KeepAlive(s)
			b.ReportMetric(float64(after-before)/float64(b.N), "bytes/entry")
		})
	}
}
