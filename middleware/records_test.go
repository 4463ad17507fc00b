package middleware

// Tests of the stored records: their consistency checks (with a forged MAC,
// as by someone holding the KEK, since storetest.RunIntegrity already shows
// that nobody else gets past the MAC), a lost store, KEK rotation and
// forward secrecy on disk.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/client"
	_ "github.com/dynkey/dynkey/crypto/pq"
	"github.com/dynkey/dynkey/policy"
	"github.com/dynkey/dynkey/store"
	"github.com/dynkey/dynkey/store/memory"
	"github.com/dynkey/dynkey/store/sqlite"
	"github.com/dynkey/dynkey/wire"
)

// rtLog records log lines (level, message and attributes).
type rtLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *rtLog) logger() *slog.Logger { return slog.New(rtHandler{l}) }

func (l *rtLog) count(level slog.Level, substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.lines {
		if strings.HasPrefix(s, level.String()+" ") && strings.Contains(s, substr) {
			n++
		}
	}
	return n
}

type rtHandler struct{ l *rtLog }

func (h rtHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h rtHandler) Handle(_ context.Context, r slog.Record) error {
	s := r.Level.String() + " " + r.Message
	r.Attrs(func(a slog.Attr) bool { s += fmt.Sprintf(" %s=%s", a.Key, a.Value); return true })
	h.l.mu.Lock()
	h.l.lines = append(h.l.lines, s)
	h.l.mu.Unlock()
	return nil
}
func (h rtHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h rtHandler) WithGroup(string) slog.Handler      { return h }

// rtPinnedClient is a client pinned to an identity key.
func rtPinnedClient(t *testing.T, s *mtServer, now func() time.Time, identity ed25519.PublicKey) (*client.Client, *http.Client) {
	t.Helper()
	c, err := client.New(client.Config{BaseURL: s.srv.URL, Username: "alice", Password: "pw", IdentityKey: identity,
		HeartbeatInterval: -1, Policy: policy.Manual(), Now: now, Logger: mtQuiet})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	hc := c.HTTPClient()
	hc.Timeout = 10 * time.Second
	return c, hc
}

// rtForge rewrites the stored ring with a valid MAC under kek: what only a
// holder of the KEK can do.
func rtForge(t *testing.T, st store.Store, kek []byte, change func(ks *kekSet, rec *ringRecord)) {
	t.Helper()
	ctx := context.Background()
	ks, err := newKEKSet(kek, nil)
	require.NoError(t, err)
	e, err := st.Get(ctx, ringKey)
	require.NoError(t, err)
	var rec ringRecord
	_, err = ks.unmarshalRecord(ringKey, e.Value, &rec)
	require.NoError(t, err)
	change(ks, &rec)
	b, err := ks.marshalRecord(ringKey, &rec)
	require.NoError(t, err)
	_, err = st.CompareAndSwap(ctx, ringKey, e.Version, b, time.Time{})
	require.NoError(t, err)
}

// The consistency checks of a ring record, each on its own: the MAC is
// forged, so only the check named stops the record.
func TestRingConsistencyChecks(t *testing.T) {
	kek := mtKEK(20)
	primaryIdx := func(rec *ringRecord) int {
		for i, k := range rec.Keys {
			if k.State == StatePrimary {
				return i
			}
		}
		t.Fatal("no primary")
		return -1
	}
	for _, c := range []struct {
		name   string
		change func(t *testing.T, m *Middleware, ks *kekSet, rec *ringRecord)
		want   string
	}{
		{"primary public key replaced, id kept", func(t *testing.T, m *Middleware, ks *kekSet, rec *ringRecord) {
			k, _ := m.suite.GenerateKey(nil)
			rec.Keys[primaryIdx(rec)].Public = k.Public().Bytes()
		}, "the id is not the hash of its public key"},
		{"primary public key and id replaced, secrets re-sealed to the new id", func(t *testing.T, m *Middleware, ks *kekSet, rec *ringRecord) {
			kr := &rec.Keys[primaryIdx(rec)]
			priv, err := m.openPrivate(ks, m.suite, *kr)
			require.NoError(t, err)
			k, _ := m.suite.GenerateKey(nil)
			kr.Public = k.Public().Bytes()
			kr.ID = wire.ComputeKeyID(m.suite.Name(), kr.Public).String()
			require.NoError(t, m.sealPrivate(ks, m.suite, kr, priv))
		}, "the private key does not match the public key"},
		{"primary without its private key", func(t *testing.T, m *Middleware, ks *kekSet, rec *ringRecord) {
			rec.Keys[primaryIdx(rec)].SealedPrivate = nil
		}, "has no private key"},
		{"identity public key replaced", func(t *testing.T, m *Middleware, ks *kekSet, rec *ringRecord) {
			pub, _, _ := ed25519.GenerateKey(nil)
			rec.IdentityPublic = pub
		}, "identity private key does not match"},
		{"key listed twice", func(t *testing.T, m *Middleware, ks *kekSet, rec *ringRecord) {
			k := rec.Keys[primaryIdx(rec)]
			k.State = StateDecryptOnly
			rec.Keys = append(rec.Keys, k)
		}, "appears twice"},
		{"unknown state", func(t *testing.T, m *Middleware, ks *kekSet, rec *ringRecord) {
			rec.Keys[primaryIdx(rec)].State = "owned"
		}, "unknown state"},
		{"destroyed key keeps its private key", func(t *testing.T, m *Middleware, ks *kekSet, rec *ringRecord) {
			rec.Keys[primaryIdx(rec)].State = StateDestroyed
		}, "destroyed key"},
		{"two primary token keys", func(t *testing.T, m *Middleware, ks *kekSet, rec *ringRecord) {
			tk, err := m.newTokenKeyRecord(ks)
			require.NoError(t, err)
			rec.TokenKeys = append(rec.TokenKeys, tk)
		}, "two primary token keys"},
		{"token key listed twice", func(t *testing.T, m *Middleware, ks *kekSet, rec *ringRecord) {
			tk := rec.TokenKeys[0]
			tk.Until = 1
			rec.TokenKeys = append(rec.TokenKeys, tk)
		}, "appears twice"},
		{"token key under a server key's id", func(t *testing.T, m *Middleware, ks *kekSet, rec *ringRecord) {
			tk := &rec.TokenKeys[0]
			k, err := ks.open("token key", tk.ID, tk.Sealed)
			require.NoError(t, err)
			tk.ID = rec.Keys[primaryIdx(rec)].ID
			tk.Sealed, err = ks.seal(m.o.Rand, "token key", tk.ID, k)
			require.NoError(t, err)
		}, "appears twice"},
	} {
		t.Run(c.name, func(t *testing.T) {
			st := memory.New()
			log := &rtLog{}
			m, err := New(Options{Authenticator: mtNoUsers, Store: st, KeyEncryptionKey: kek, MaintainInterval: -1, Logger: log.logger()})
			require.NoError(t, err)
			defer m.Close()
			rtForge(t, st, kek, func(ks *kekSet, rec *ringRecord) { c.change(t, m, ks, rec) })

			_, err = New(Options{Authenticator: mtNoUsers, Store: st, KeyEncryptionKey: kek, MaintainInterval: -1, Logger: mtQuiet})
			require.ErrorIs(t, err, ErrRecordRefused)
			require.ErrorContains(t, err, c.want)
			// The running instance refuses it too, logs it, and stops
			// serving its directory.
			require.ErrorIs(t, m.Maintain(context.Background()), ErrRecordRefused)
			require.Equal(t, 1, log.count(slog.LevelError, "record="+ringKey))
			_, _, err = m.directory(m.suite.Name())
			require.ErrorIs(t, err, ErrRecordRefused)
		})
	}
}

// A ring that cannot be reloaded makes requests "unavailable", never
// "server-key-unknown" (which would send clients after a directory).
func TestFailedRingReloadIsUnavailable(t *testing.T) {
	clk := newMTClock()
	st := &rtFlakyStore{Store: memory.New()}
	m, err := New(Options{Store: st, KeyEncryptionKey: mtKEK(21), Authenticator: mtUsers(t),
		MaintainInterval: -1, Now: clk.Now, Logger: mtQuiet})
	require.NoError(t, err)
	defer m.Close()
	s := newMTServer(t)
	s.serve(m)
	_, hc := mtClient(t, s, clk.Now)
	mtEcho(t, s, hc, "before")

	st.failRing(errors.New("store down"))
	clk.Advance(m.o.ServerKeyGrace) // the snapshot is stale: keyFor reloads
	req, err := http.NewRequest(http.MethodPut, s.srv.URL+"/api/echo", strings.NewReader("x"))
	require.NoError(t, err)
	resp, err := hc.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)

	st.failRing(nil)
	mtEcho(t, s, hc, "after")
}

type rtFlakyStore struct {
	store.Store
	mu  sync.Mutex
	err error
}

func (s *rtFlakyStore) failRing(err error) {
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
}

func (s *rtFlakyStore) Get(ctx context.Context, key string) (store.Entry, error) {
	s.mu.Lock()
	err := s.err
	s.mu.Unlock()
	if err != nil && key == ringKey {
		return store.Entry{}, err
	}
	return s.Store.Get(ctx, key)
}

// Maintain logs a rotation only when its compare-and-swap won: here
// another instance rotates between its read and its swap, so its retry
// finds the primary already replaced and changes nothing.
func TestMaintainLogsOnlyRotationsThatLanded(t *testing.T) {
	ctx := context.Background()
	clk := newMTClock()
	shared := memory.New()
	o := Options{Authenticator: mtNoUsers, KeyEncryptionKey: mtKEK(22), ServerPolicy: policy.Uptime(time.Hour), MaintainInterval: -1, Now: clk.Now}
	ob := o
	ob.Store, ob.Logger = shared, mtQuiet
	b, err := New(ob)
	require.NoError(t, err)
	defer b.Close()
	race := &rtRaceStore{Store: shared}
	logA := &rtLog{}
	oa := o
	oa.Store, oa.Logger = race, logA.logger()
	a, err := New(oa)
	require.NoError(t, err)
	defer a.Close()

	clk.Advance(time.Hour)
	race.before = func() { require.NoError(t, b.Maintain(ctx)) }
	require.NoError(t, a.Maintain(ctx))
	require.Equal(t, b.ring.Load().primary.id, a.ring.Load().primary.id)
	require.Equal(t, 2, len(a.ring.Load().keys), "one rotation in all")
	require.Zero(t, logA.count(slog.LevelInfo, "server key rotated"), "a rotation that lost its compare-and-swap was logged")
}

// rtRaceStore runs before once, just before the first swap of the ring.
type rtRaceStore struct {
	store.Store
	before func()
}

func (s *rtRaceStore) CompareAndSwap(ctx context.Context, key string, old uint64, v []byte, exp time.Time) (uint64, error) {
	if key == ringKey && s.before != nil {
		f := s.before
		s.before = nil
		f()
	}
	return s.Store.CompareAndSwap(ctx, key, old, v, exp)
}

func TestRequireKeyRing(t *testing.T) {
	st := memory.New()
	_, err := New(Options{Authenticator: mtNoUsers, Store: st, KeyEncryptionKey: mtKEK(23), RequireKeyRing: true, MaintainInterval: -1, Logger: mtQuiet})
	require.ErrorIs(t, err, ErrNoKeyRing)
	_, err = st.Get(context.Background(), ringKey)
	require.ErrorIs(t, err, store.ErrNotFound, "nothing created")

	log := &rtLog{}
	m, err := New(Options{Authenticator: mtNoUsers, Store: st, KeyEncryptionKey: mtKEK(23), MaintainInterval: -1, Logger: log.logger()})
	require.NoError(t, err)
	m.Close()
	require.Equal(t, 1, log.count(slog.LevelInfo, "created a new one"), "an in-process store starts empty by design: Info")
	m, err = New(Options{Authenticator: mtNoUsers, Store: st, KeyEncryptionKey: mtKEK(23), RequireKeyRing: true, MaintainInterval: -1, Logger: log.logger()})
	require.NoError(t, err)
	m.Close()
	require.Equal(t, 1, log.count(slog.LevelInfo, "created a new one"), "loading is not creating")
	// A durable store: Warn (TestStoreLossRecovers counts those).
	path := filepath.Join(t.TempDir(), "dynkey.db")
	sq, err := sqlite.Open(path)
	require.NoError(t, err)
	defer sq.Close()
	_, err = New(Options{Authenticator: mtNoUsers, Store: sq, KeyEncryptionKey: mtKEK(23), RequireKeyRing: true, MaintainInterval: -1, Logger: mtQuiet})
	require.ErrorIs(t, err, ErrNoKeyRing)
	m, err = New(Options{Authenticator: mtNoUsers, Store: sq, KeyEncryptionKey: mtKEK(23), MaintainInterval: -1, Logger: log.logger()})
	require.NoError(t, err)
	m.Close()
	require.Equal(t, 1, log.count(slog.LevelWarn, "created a new one"))
}

func TestConfiguredIdentityMustMatchTheStore(t *testing.T) {
	st := memory.New()
	_, id1, _ := ed25519.GenerateKey(nil)
	_, id2, _ := ed25519.GenerateKey(nil)
	m, err := New(Options{Authenticator: mtNoUsers, Store: st, KeyEncryptionKey: mtKEK(24), IdentityKey: id1, MaintainInterval: -1, Logger: mtQuiet})
	require.NoError(t, err)
	m.Close()
	_, err = New(Options{Authenticator: mtNoUsers, Store: st, KeyEncryptionKey: mtKEK(24), IdentityKey: id2, MaintainInterval: -1, Logger: mtQuiet})
	require.ErrorIs(t, err, ErrIdentityMismatch)
	m, err = New(Options{Authenticator: mtNoUsers, Store: st, KeyEncryptionKey: mtKEK(24), IdentityKey: id1, MaintainInterval: -1, Logger: mtQuiet})
	require.NoError(t, err)
	m.Close()
}

// A store that lost its state — an SQLite file truncated to 0 bytes, or a
// lost main file whose WAL was kept — while a client pinned to the
// configured identity is running: after the server restarts on it, the
// client recovers by logging in again, and no request fails. The new
// ring's epoch is above the lost one's (the client refuses lower epochs),
// although the lost ring had rotated.
func TestStoreLossRecovers(t *testing.T) {
	for _, c := range []struct {
		name string
		lose func(t *testing.T, path string, walCopy []byte)
	}{
		{"0-byte database file", func(t *testing.T, path string, _ []byte) {
			require.NoError(t, os.WriteFile(path, nil, 0o600))
			_ = os.Remove(path + "-wal")
			_ = os.Remove(path + "-shm")
		}},
		{"main file lost, WAL kept", func(t *testing.T, path string, walCopy []byte) {
			require.NoError(t, os.Remove(path))
			_ = os.Remove(path + "-shm")
			require.NoError(t, os.WriteFile(path+"-wal", walCopy, 0o600))
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			clk := newMTClock()
			path := filepath.Join(t.TempDir(), "dynkey.db")
			_, identity, _ := ed25519.GenerateKey(nil)
			log := &rtLog{}
			start := func() (*Middleware, *sqlite.Store) {
				st, err := sqlite.Open(path)
				require.NoError(t, err)
				m, err := New(Options{Store: st, KeyEncryptionKey: mtKEK(25), IdentityKey: identity, Authenticator: mtUsers(t),
					MaintainInterval: -1, Now: clk.Now, Logger: log.logger()})
				require.NoError(t, err)
				return m, st
			}
			s := newMTServer(t)
			m, st := start()
			s.serve(m)
			c1, hc := rtPinnedClient(t, s, clk.Now, identity.Public().(ed25519.PublicKey))
			mtEcho(t, s, hc, "one")
			for range 3 { // the lost ring's epoch is its creation time + 3
				require.NoError(t, m.Rotate(ctx))
			}
			require.NoError(t, c1.Heartbeat(ctx))
			mtEcho(t, s, hc, "two")
			walCopy, err := os.ReadFile(path + "-wal")
			require.NoError(t, err)
			require.NotEmpty(t, walCopy)
			m.Close()
			require.NoError(t, st.Close())

			c.lose(t, path, walCopy)
			clk.Advance(time.Second)
			m, st = start()
			defer st.Close()
			defer m.Close()
			s.serve(m)
			require.Equal(t, 2, log.count(slog.LevelWarn, "created a new one"), "the second creation is logged loudly")
			for i := range 5 {
				mtEcho(t, s, hc, fmt.Sprint("after ", i)) // fails the test on any error
			}
			require.Equal(t, uint64(2), c1.Stats().Logins, "one fresh login")
		})
	}
}

// rtFiles returns the raw bytes of an SQLite database and its -wal and
// -shm files, those that exist.
func rtFiles(t *testing.T, path string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		require.NoError(t, err)
		out[filepath.Base(p)] = b
	}
	return out
}

// rtOnDisk reports which files hold needle.
func rtOnDisk(t *testing.T, path string, needle []byte) []string {
	t.Helper()
	var in []string
	for name, b := range rtFiles(t, path) {
		if bytes.Contains(b, needle) {
			in = append(in, name)
		}
	}
	return in
}

// Forward secrecy on disk: once a server key is destroyed, its sealed
// private key is in none of the SQLite files — the database (secure_delete
// zeroes the old cells), its WAL (a truncating checkpoint) or the -shm.
func TestDestroyedKeyLeavesNoCopyOnDisk(t *testing.T) {
	ctx := context.Background()
	clk := newMTClock()
	path := filepath.Join(t.TempDir(), "dynkey.db")
	st, err := sqlite.Open(path)
	require.NoError(t, err)
	defer st.Close()
	m, err := New(Options{Authenticator: mtNoUsers, Store: st, KeyEncryptionKey: mtKEK(26), ServerKeyGrace: time.Minute,
		MaintainInterval: -1, Now: clk.Now, Logger: mtQuiet})
	require.NoError(t, err)
	defer m.Close()
	first := mtRing(t, st).Keys[0]
	require.NotEmpty(t, first.SealedPrivate)
	// The record holds it in base64: look for that text and the raw bytes.
	needles := [][]byte{[]byte(base64.StdEncoding.EncodeToString(first.SealedPrivate)[8:72]), first.SealedPrivate[8:40]}

	require.NoError(t, m.Rotate(ctx))
	require.NotEmpty(t, rtOnDisk(t, path, needles[0]), "control: the sealed key is on disk while it lives")
	clk.Advance(time.Minute)
	require.NoError(t, m.Maintain(ctx))
	_, ok := mtFind(mtRing(t, st), first.ID)
	require.False(t, ok, "the destroyed key's record is gone")
	for _, n := range needles {
		require.Empty(t, rtOnDisk(t, path, n), "a destroyed key's sealed private key is still on disk")
	}
}

// KEK rotation across two instances on one SQLite file: one re-seals the
// store; the other, still holding only the old KEK, refuses the re-sealed
// ring; after a restart with only the new KEK everything works without a
// new login, the old KEK alone opens nothing, and no record or secret under
// the old KEK remains in the files.
func TestRotateKEKAcrossInstances(t *testing.T) {
	ctx := context.Background()
	clk := newMTClock()
	path := filepath.Join(t.TempDir(), "dynkey.db")
	oldKEK, newKEK := mtKEK(27), mtKEK(28)
	users := mtUsers(t)
	start := func(kek []byte) (*Middleware, *sqlite.Store, error) {
		st, err := sqlite.Open(path)
		require.NoError(t, err)
		m, err := New(Options{Store: st, KeyEncryptionKey: kek, Authenticator: users, MaintainInterval: -1, Now: clk.Now, Logger: mtQuiet})
		if err != nil {
			st.Close()
		}
		return m, st, err
	}
	a, sta, err := start(oldKEK)
	require.NoError(t, err)
	b, stb, err := start(oldKEK)
	require.NoError(t, err)
	sa, sb := newMTServer(t), newMTServer(t)
	sa.serve(a)
	sb.serve(b)
	c, hc := mtClient(t, sa, clk.Now)
	mtEcho(t, sa, hc, "before")
	sess := mtSessionKey(t, sta)
	backup, err := sta.Get(ctx, sess)
	require.NoError(t, err)

	require.NoError(t, a.RotateKEK(ctx, newKEK))
	require.Len(t, a.keks.Load().accepted, 1, "the old KEK is accepted only during the re-seal")
	mtEcho(t, sa, hc, "after the rotation")
	require.ErrorIs(t, b.Maintain(ctx), ErrRecordRefused, "an instance with only the old KEK refuses the re-sealed ring")

	// A record sealed under the old KEK (a backup, or a forgery by a thief
	// of the old KEK) is refused now.
	cur, err := sta.Get(ctx, sess)
	require.NoError(t, err)
	_, err = sta.CompareAndSwap(ctx, sess, cur.Version, backup.Value, cur.Expires)
	require.NoError(t, err)
	_, _, err = a.loadSession(ctx, mtSessionID(t, sess))
	require.ErrorIs(t, err, ErrRecordRefused)
	_, err = sta.CompareAndSwap(ctx, sess, cur.Version+1, cur.Value, cur.Expires) // put the re-sealed one back
	require.NoError(t, err)
	require.NoError(t, a.RotateKEK(ctx, newKEK), "a second call is harmless")

	for _, m := range []*Middleware{a, b} {
		m.Close()
	}
	require.NoError(t, sta.Close())
	require.NoError(t, stb.Close())

	_, _, err = start(oldKEK)
	require.ErrorIs(t, err, ErrRecordRefused, "the old KEK alone opens nothing")
	ok, _ := newKEKSet(oldKEK, nil)
	for _, needle := range []string{hex.EncodeToString(ok.current.id[:]), base64.StdEncoding.EncodeToString(ok.current.id[:6])} {
		require.Empty(t, rtOnDisk(t, path, []byte(needle)), "a record or secret under the old KEK is still on disk")
	}

	a, sta, err = start(newKEK)
	require.NoError(t, err)
	defer sta.Close()
	defer a.Close()
	b, stb, err = start(newKEK)
	require.NoError(t, err)
	defer stb.Close()
	defer b.Close()
	sa.serve(a)
	sb.serve(b)
	mtEcho(t, sa, hc, "after the restart")
	require.Equal(t, uint64(1), c.Stats().Logins, "the session survived")
	_, hcb := mtClient(t, sb, clk.Now)
	mtEcho(t, sb, hcb, "the other instance")
}

// mtSessionKey returns the store key of the only session.
func mtSessionKey(t *testing.T, st store.Store) string {
	t.Helper()
	keys, err := st.(store.Lister).ListKeys(context.Background(), sessionPrefix, "", 10)
	require.NoError(t, err)
	require.Len(t, keys, 1)
	return keys[0]
}

func mtSessionID(t *testing.T, key string) [16]byte {
	t.Helper()
	b, err := hex.DecodeString(strings.TrimPrefix(key, sessionPrefix))
	require.NoError(t, err)
	var id [16]byte
	copy(id[:], b)
	return id
}

// RotateKEK re-seals the private keys of every kind of suite, including
// those a suite encrypts itself (tink keysets).
func TestRotateKEKEverySuite(t *testing.T) {
	for _, suite := range []string{"ecies-x25519", "tink-hpke-x25519", "pq-xwing"} {
		t.Run(suite, func(t *testing.T) {
			ctx := context.Background()
			st := memory.New()
			m, err := New(Options{Authenticator: mtNoUsers, Suite: suite, Store: st, KeyEncryptionKey: mtKEK(30), MaintainInterval: -1, Logger: mtQuiet})
			require.NoError(t, err)
			defer m.Close()
			require.NoError(t, m.Rotate(ctx)) // a decrypt-only key too
			want := m.ring.Load().primary.id
			require.NoError(t, m.RotateKEK(ctx, mtKEK(31)))

			_, err = New(Options{Authenticator: mtNoUsers, Suite: suite, Store: st, KeyEncryptionKey: mtKEK(30), MaintainInterval: -1, Logger: mtQuiet})
			require.ErrorIs(t, err, ErrRecordRefused)
			m2, err := New(Options{Authenticator: mtNoUsers, Suite: suite, Store: st, KeyEncryptionKey: mtKEK(31), MaintainInterval: -1, Logger: mtQuiet})
			require.NoError(t, err)
			defer m2.Close()
			require.Equal(t, want, m2.ring.Load().primary.id)
			require.Len(t, m2.ring.Load().keys, 2)
			for _, k := range m2.ring.Load().keys {
				require.NotNil(t, k.private)
			}
		})
	}
}

// The cost of authenticating a session record: encode with its MAC, and
// decode with verification, as every request and every rotation does.
func BenchmarkSessionRecord(b *testing.B) {
	ks, err := newKEKSet(mtKEK(32), nil)
	require.NoError(b, err)
	sr := sessionRecord{Username: "alice", Suite: "ecies-x25519", ClientKey: bytes.Repeat([]byte{7}, 32),
		KeyInstalled: 1, PrevKey: bytes.Repeat([]byte{8}, 32), PrevUntil: 2, PrevInstalled: 1, Expires: 3}
	key := sessionPrefix + strings.Repeat("ab", 16)
	v, err := ks.marshalRecord(key, &sr)
	require.NoError(b, err)
	b.Run("marshal", func(b *testing.B) {
		for b.Loop() {
			if _, err := ks.marshalRecord(key, &sr); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("unmarshal+verify", func(b *testing.B) {
		for b.Loop() {
			var got sessionRecord
			if _, err := ks.unmarshalRecord(key, v, &got); err != nil {
				b.Fatal(err)
			}
		}
	})
}
