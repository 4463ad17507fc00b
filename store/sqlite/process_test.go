package sqlite_test

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"path/filepath"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/store/sqlite"
)

const helperEnv = "DYNKEY_SQLITE_HELPER_DB"

// helperIDs is how many ids each helper process marks.
const helperIDs = 300

// TestHelperMarkSeenProcess is not a test: it is the body of the processes
// TestCrossProcessMarkSeen starts. It opens the database named by
// helperEnv, prints "ready", waits for a line on stdin, marks ids 0 to
// helperIDs-1 from 8 goroutines and prints each id it was first to mark.
func TestHelperMarkSeenProcess(t *testing.T) {
	path := os.Getenv(helperEnv)
	if path == "" {
		t.Skip("helper process only")
	}
	s, err := sqlite.Open(path)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		out []string
	)
	for g := range 8 {
		wg.Go(func() {
			for i := g; i < helperIDs; i += 8 {
				first, err := s.MarkSeen(t.Context(), "id"+strconv.Itoa(i), time.Now().Add(time.Hour))
				mu.Lock()
				switch {
				case err != nil:
					out = append(out, "error "+err.Error())
				case first:
					out = append(out, "first "+strconv.Itoa(i))
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		out = append(out, "error "+err.Error())
	}
	fmt.Println(strings.Join(out, "\n"))
	os.Exit(0)
}

// Several processes marking the same ids on one file, each with concurrent
// callers (so with group commit in each process): every id is new to
// exactly one call in all.
func TestCrossProcessMarkSeen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dynkey.db")
	const procs = 3
	type proc struct {
		cmd *exec.Cmd
		in  io.WriteCloser
		out *bufio.Reader
	}
	var ps []proc
	for range procs {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperMarkSeenProcess$", "-test.timeout=60s")
		cmd.Env = append(os.Environ(), helperEnv+"="+path)
		cmd.Stderr = os.Stderr
		in, err := cmd.StdinPipe()
		require.NoError(t, err)
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		p := proc{cmd: cmd, in: in, out: bufio.NewReader(stdout)}
		line, err := p.out.ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, "ready\n", line)
		ps = append(ps, p)
	}
	for _, p := range ps {
		_, err := io.WriteString(p.in, "go\n")
		require.NoError(t, err)
	}
	firsts := map[int]int{}
	winners := map[int]bool{}
	for k, p := range ps {
		b, err := io.ReadAll(p.out)
		require.NoError(t, err)
		require.NoError(t, p.cmd.Wait())
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if line == "" || line == "PASS" {
				continue
			}
			require.True(t, strings.HasPrefix(line, "first "), "process %d: %s", k, line)
			i, err := strconv.Atoi(strings.TrimPrefix(line, "first "))
			require.NoError(t, err)
			firsts[i]++
			winners[k] = true
		}
	}
	for i := range helperIDs {
		require.Equal(t, 1, firsts[i], "id %d was new to %d calls", i, firsts[i])
	}
	t.Logf("processes that won ids: %d of %d", len(winners), procs)
}
