package sqlite

// Durability: every write is acknowledged only after an fsync of the
// write-ahead log that started after its commit.

import (
	"errors"
	"os"
	"path/filepath"
)

// openWAL opens the write-ahead log file and syncs its directory.
func (s *Store) openWAL() error {
	f, err := openWAL(s.path)
	if err != nil {
		return err
	}
	s.wal = f
	dir, err := os.Open(filepath.Dir(s.path))
	if err != nil {
		return err
	}
	defer dir.Close()
	return dir.Sync()
}

// commitDone records that a commit of the writer returned, and returns its
// number for syncWAL.
func (s *Store) commitDone() uint64 { return s.committed.Add(1) }

// openWAL opens the write-ahead log of the database at path for syncing:
// read-write, since some systems (Windows) flush only handles open for
// writing; nothing is ever written through it.
func openWAL(path string) (*os.File, error) {
	return os.OpenFile(path+"-wal", os.O_RDWR, 0)
}

// syncWAL makes commit number gen (from commitDone) durable: it fsyncs the
// write-ahead log, unless an fsync that started after that commit returned
// already succeeded (concurrent writers share one fsync). If the log file
// was replaced since it was opened (the last connection to the database
// closed, which checkpoints the log into the database, syncs it and
// deletes the log), it opens the new one.
func (s *Store) syncWAL(gen uint64) error {
	s.walMu.Lock()
	defer s.walMu.Unlock()
	if s.synced >= gen {
		return nil
	}
	target := s.committed.Load() // every commit counted here has returned
	if err := s.fsyncWAL(); err != nil {
		return err
	}
	s.synced = target
	return nil
}

// fsyncWAL fsyncs the write-ahead log file, under walMu.
func (s *Store) fsyncWAL() error {
	s.syncs.Add(1)
	if s.syncHook != nil {
		s.syncHook()
	}
	cur, err := os.Stat(s.path + "-wal")
	if errors.Is(err, os.ErrNotExist) {
		return nil // checkpointed into the database, which SQLite synced
	}
	if err != nil {
		return err
	}
	if fi, err := s.wal.Stat(); err != nil || !os.SameFile(fi, cur) {
		s.wal.Close()
		if s.wal, err = openWAL(s.path); err != nil {
			return err
		}
	}
	return datasync(s.wal)
}
