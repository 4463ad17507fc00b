package sqlite_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dynkey/dynkey/store/sqlite"
	"github.com/dynkey/dynkey/store/storetest"
)

// BenchmarkStore measures each operation's latency (no round trips: the
// database is a local file; each write is an fsync'ed commit).
func BenchmarkStore(b *testing.B) {
	s, err := sqlite.Open(filepath.Join(b.TempDir(), "dynkey.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.Bench(b, s, nil)
}

// BenchmarkSizing measures the disk the database uses per session (a record
// of storetest.SessionValue's size) and per message id: the growth of the
// file, checkpointed by Close, divided by the entries written. Run it with
// a fixed count, e.g. -benchtime=20000x.
func BenchmarkSizing(b *testing.B) {
	value := storetest.SessionValue()
	exp := time.Now().Add(time.Hour)
	for _, tc := range []struct {
		name  string
		write func(s *sqlite.Store, i int) error
	}{
		{"session", func(s *sqlite.Store, i int) error {
			_, err := s.CompareAndSwap(b.Context(), storetest.SessionKey(i), 0, value, exp)
			return err
		}},
		{"msgid", func(s *sqlite.Store, i int) error {
			_, err := s.MarkSeen(b.Context(), storetest.MessageID(i), exp)
			return err
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "dynkey.db")
			size := func() int64 {
				fi, err := os.Stat(path)
				if err != nil {
					b.Fatal(err)
				}
				return fi.Size()
			}
			s, err := sqlite.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
			before := size()
			if s, err = sqlite.Open(path); err != nil {
				b.Fatal(err)
			}
			for i := 0; b.Loop(); i++ {
				if err := tc.write(s, i); err != nil {
					b.Fatal(err)
				}
			}
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(size()-before)/float64(b.N), "bytes/entry")
		})
	}
}
