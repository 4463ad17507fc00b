package sqlite

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// A write refused as read-only names the file and its directory (SQLite
// must create the -wal and -shm files next to the database). Tests run as
// root here, which file modes do not stop, so the error is made up.
func TestReadOnlyErrorNamesTheDirectory(t *testing.T) {
	dir := t.TempDir()
	s := &Store{path: filepath.Join(dir, "dynkey.db")}
	cause := errors.New("attempt to write a readonly database (8)")
	err := s.fail("compare and swap in", cause)
	require.ErrorIs(t, err, cause)
	require.ErrorContains(t, err, s.path)
	require.ErrorContains(t, err, "directory "+dir+" must be writable")
}
