package bench

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/middleware"
	"github.com/dynkey/dynkey/store/memory"
	"github.com/dynkey/dynkey/store/sqlite"
)

// A short run of every case: each measures requests without errors, the
// report round-trips through JSON, and the ratios line comes last in the
// fixed format.
func TestRunAllCases(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four server processes")
	}
	rep, err := Run(t.Context(), Config{Duration: 400 * time.Millisecond, Rounds: 2, Concurrency: 4})
	require.NoError(t, err)
	require.Len(t, rep.Results, len(CaseNames("ecies-x25519")))
	for _, r := range rep.Results {
		require.Positive(t, r.Requests, r.Name)
		require.Zero(t, r.Errors, "%s: %s", r.Name, r.FirstErr)
		require.Positive(t, r.ServerCPUMicros, r.Name)
		require.Positive(t, r.AllocsPerReq, r.Name)
	}
	require.Positive(t, rep.Ratios.ServerPathVsFloor)
	require.Positive(t, rep.Ratios.PerMessageVsJose)
	require.Positive(t, rep.Ratios.SQLiteVsMemory)
	require.Zero(t, rep.Ratios.EpochVsPlain, "no epoch case yet")

	var buf bytes.Buffer
	require.NoError(t, rep.WriteJSON(&buf))
	var back Report
	require.NoError(t, json.Unmarshal(buf.Bytes(), &back))
	require.Equal(t, rep.Ratios, back.Ratios)

	buf.Reset()
	require.NoError(t, rep.WriteText(&buf))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Regexp(t, regexp.MustCompile(`^ratios: server_path_vs_floor=\d+\.\d\d per_message_vs_jose=\d+\.\d\d sqlite_vs_memory=\d+\.\d\d epoch_vs_plain=0\.00$`), lines[len(lines)-1])
}

func TestUnknownCase(t *testing.T) {
	_, err := Run(t.Context(), Config{Cases: []string{"nope"}, Duration: time.Millisecond})
	require.ErrorIs(t, err, ErrUnknownCase)
}

func TestJSONBodySize(t *testing.T) {
	for _, n := range []int{16, 1024, 65536} {
		b := jsonBody(n)
		require.Len(t, b, n)
		require.True(t, json.Valid(b))
	}
}

// The go-jose round trip opens what it sealed, and refuses a request
// signed by another key.
func TestJose(t *testing.T) {
	client, err := newJoseKeys()
	require.NoError(t, err)
	server, err := newJoseKeys()
	require.NoError(t, err)
	_, serverEnc, err := parseJosePublic(server.public())
	require.NoError(t, err)
	s, err := newJoseSealer(client.sig, serverEnc)
	require.NoError(t, err)
	msg, err := s.seal([]byte(`{"a":1}`))
	require.NoError(t, err)
	clientSig, _, err := parseJosePublic(client.public())
	require.NoError(t, err)
	got, err := joseOpen(msg, server.enc, clientSig)
	require.NoError(t, err)
	require.Equal(t, `{"a":1}`, string(got))
	otherSig, _, err := parseJosePublic(server.public())
	require.NoError(t, err)
	_, err = joseOpen(msg, server.enc, otherSig)
	require.Error(t, err)
}

// BenchmarkFloor is the crypto floor of one ecies-x25519 request.
func BenchmarkFloor(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10, 1 << 20} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			f, err := newFloor("ecies-x25519", size)
			require.NoError(b, err)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if err := f.op(i); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkServerPath is dynkey's whole server-side handling of one
// request without HTTP, on the memory store.
func BenchmarkServerPath(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10, 1 << 20} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			m, err := middleware.New(middleware.Options{Authenticator: benchAuth, Logger: slog.New(slog.DiscardHandler), MaxBodySize: 2 << 20})
			require.NoError(b, err)
			defer m.Close()
			mux := http.NewServeMux()
			mux.Handle("/dynkey/", m.Endpoints())
			mux.Handle("/.well-known/dynkey/", m.Endpoints())
			s, err := newDynkeySealer("http://bench.invalid", "ecies-x25519", m.IdentityPublicKey(), handlerTransport{mux}, 2<<20)
			require.NoError(b, err)
			defer s.Close()
			body := jsonBody(size)
			// Envelopes are single-use: seal them in batches outside the
			// timer.
			p := newServerPath(m)
			var envs [][]byte
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if len(envs) == 0 {
					b.StopTimer()
					for range 64 {
						env, err := s.seal(body)
						require.NoError(b, err)
						envs = append(envs, env)
					}
					b.StartTimer()
				}
				if err := p.op(envs[0]); err != nil {
					b.Fatal(err)
				}
				envs = envs[1:]
			}
		})
	}
}

// replayKey is a message id's store key as the middleware writes it.
func replayKey(i int) string {
	var id [16]byte
	copy(id[:], fmt.Sprintf("%016d", i))
	return "dynkey/msg/u-0123456789abcdef0123456789abcdef/" + hex.EncodeToString(id[:])
}

func heapAlloc() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkMemoryPerReplayID reports the heap the memory store keeps per
// replay id (metric heap-B/id).
func BenchmarkMemoryPerReplayID(b *testing.B) {
	st := memory.New()
	defer st.Close()
	ctx := context.Background()
	exp := time.Now().Add(time.Hour)
	before := heapAlloc()
	i := 0
	for b.Loop() {
		if _, err := st.MarkSeen(ctx, replayKey(i), exp); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(heapAlloc()-before)/float64(i), "heap-B/id")
}

// BenchmarkSQLitePerReplayID reports the disk space SQLite takes per
// replay id (metric disk-B/id, after a checkpoint) and the heap of its
// in-memory index (heap-B/id).
func BenchmarkSQLitePerReplayID(b *testing.B) {
	path := filepath.Join(b.TempDir(), "dynkey.db")
	st, err := sqlite.Open(path)
	require.NoError(b, err)
	defer st.Close()
	ctx := context.Background()
	exp := time.Now().Add(time.Hour)
	before := heapAlloc()
	i := 0
	for b.Loop() {
		if _, err := st.MarkSeen(ctx, replayKey(i), exp); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.StopTimer()
	b.ReportMetric(float64(heapAlloc()-before)/float64(i), "heap-B/id")
	require.NoError(b, st.Scrub(ctx))
	fi, err := os.Stat(path)
	require.NoError(b, err)
	if i >= 1000 {
		b.ReportMetric(float64(fi.Size())/float64(i), "disk-B/id")
	}
}

// BenchmarkMemoryPerSession reports the heap the memory store keeps per
// logged-in session (metric heap-B/session).
func BenchmarkMemoryPerSession(b *testing.B) {
	st := memory.New()
	m, err := middleware.New(middleware.Options{Store: st, Authenticator: benchAuth, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(b, err)
	defer m.Close()
	mux := http.NewServeMux()
	mux.Handle("/dynkey/", m.Endpoints())
	mux.Handle("/.well-known/dynkey/", m.Endpoints())
	before := heapAlloc()
	n := 0
	for b.Loop() {
		s, err := newDynkeySealer("http://bench.invalid", "ecies-x25519", m.IdentityPublicKey(), handlerTransport{mux}, 1<<20)
		if err != nil {
			b.Fatal(err)
		}
		s.Close()
		n++
	}
	// Each login also recorded its message id: subtract those.
	b.ReportMetric(float64(heapAlloc()-before)/float64(n), "heap-B/session+login-id")
}
