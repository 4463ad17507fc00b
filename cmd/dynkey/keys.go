package main

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/dynkey/dynkey/middleware"
	"github.com/dynkey/dynkey/store"
	"github.com/dynkey/dynkey/wire"
)

// storeFlags are -store and the key-encryption key, shared by every command
// that opens a key ring.
type storeFlags struct {
	url string
	kek *kekSource
}

func addStoreFlags(fs *flag.FlagSet) *storeFlags {
	s := &storeFlags{}
	fs.StringVar(&s.url, "store", "", "store URL: "+storeForms)
	s.kek = addKEKFlags(fs, "", "store's")
	return s
}

// ringSession is an opened store with its verified ring.
type ringSession struct {
	st   store.Store
	ring *ringInfo
	m    *middleware.Middleware
	kek  []byte
}

func (s *ringSession) Close() {
	if s.m != nil {
		s.m.Close()
	}
	s.st.Close()
}

// open loads the key-encryption key, opens the store and verifies its ring.
func (s *storeFlags) open(e *env) (*ringSession, error) {
	if s.url == "" {
		return nil, usagef("missing -store URL (%s)", storeForms)
	}
	kek, err := s.kek.load(e)
	if err != nil {
		return nil, err
	}
	st, err := openStore(e.ctx, s.url, false)
	if err != nil {
		return nil, err
	}
	ring, err := readRing(e.ctx, st)
	if err != nil {
		st.Close()
		return nil, err
	}
	m, err := openMiddleware(e.ctx, e, st, kek, ring)
	if err != nil {
		st.Close()
		return nil, err
	}
	return &ringSession{st: st, ring: ring, m: m, kek: kek}, nil
}

func runIdentity(e *env, args []string) error {
	fs := newFlags(e, "dynkey identity", "-store URL (-kek-file FILE | -kek-env VAR)", `
Prints the identity public key of the store's key ring: the Ed25519 key that
signs the key directory, which clients pin (client.Config.IdentityKey,
"dynkey call -identity"). Printed in hex and in base64url; both name the same
32 bytes. The key-encryption key is needed to verify the ring.`)
	sf := addStoreFlags(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos, 0, 0, ""); err != nil {
		return err
	}
	rs, err := sf.open(e)
	if err != nil {
		return err
	}
	defer rs.Close()
	printIdentity(e, rs.m)
	return nil
}

func printIdentity(e *env, m *middleware.Middleware) {
	id := m.IdentityPublicKey()
	fmt.Fprintf(e.stdout, "identity (hex):       %s\n", hex.EncodeToString(id))
	fmt.Fprintf(e.stdout, "identity (base64url): %s\n", base64.RawURLEncoding.EncodeToString(id))
}

// keysListJSON is the -json output of keys list.
type keysListJSON struct {
	Epoch    uint64        `json:"epoch"`
	Identity string        `json:"identity"`
	Keys     []ringKeyInfo `json:"keys"`
}

func runKeysList(e *env, args []string) error {
	fs := newFlags(e, "dynkey keys list", "-store URL (-kek-file FILE | -kek-env VAR) [-json]", `
Lists the server keys of the store's key ring: id, suite, state (primary,
decrypt-only, destroyed), how long each has been primary, when a retired key's
grace window ends (it stops opening messages and its private key is erased)
and when its token key is deleted. Never prints private material. The ring is
verified with the key-encryption key before anything is printed.`)
	sf := addStoreFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos, 0, 0, ""); err != nil {
		return err
	}
	rs, err := sf.open(e)
	if err != nil {
		return err
	}
	defer rs.Close()
	return printKeys(e, rs, *asJSON)
}

func printKeys(e *env, rs *ringSession, asJSON bool) error {
	// Re-read: the ring verified by openMiddleware may be newer than the
	// one read before it.
	ring, err := readRing(e.ctx, rs.st)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(keysListJSON{Epoch: ring.Epoch, Identity: hex.EncodeToString(rs.m.IdentityPublicKey()), Keys: ring.Keys})
	}
	now := time.Now()
	fmt.Fprintf(e.stdout, "epoch %d, %d keys, identity %s\n", ring.Epoch, len(ring.Keys), hex.EncodeToString(rs.m.IdentityPublicKey()))
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSUITE\tSTATE\tPRIMARY SINCE\tAGE\tGRACE ENDS\tTOKENS UNTIL\tNOTE")
	for _, k := range ring.Keys {
		age := time.Since(time.UnixMilli(k.PrimarySince)).Round(time.Second).String()
		grace := "-"
		if k.DecryptUntil != 0 {
			grace = msTime(k.DecryptUntil) + " (" + relative(now, k.DecryptUntil) + ")"
		}
		tokens := "-"
		if k.TokenUntil != 0 {
			tokens = msTime(k.TokenUntil) + " (" + relative(now, k.TokenUntil) + ")"
		}
		note := ""
		if k.LegacySince != 0 {
			note = "legacy suite since " + msTime(k.LegacySince)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Suite, k.State, msTime(k.PrimarySince), age, grace, tokens, note)
	}
	return tw.Flush()
}

func runKeysRotate(e *env, args []string) error {
	fs := newFlags(e, "dynkey keys rotate", "-store URL (-kek-file FILE | -kek-env VAR) [-json]", `
Makes a new server key pair primary now, whatever the server policy says (for
example after a suspected compromise). The old primary becomes decrypt-only
for the servers' ServerKeyGrace; running servers learn the new key at their
next maintenance round (default every 10s) or on the first request naming it,
and clients at their next heartbeat. Prints the ring afterwards.`)
	sf := addStoreFlags(fs)
	asJSON := fs.Bool("json", false, "print the ring as JSON afterwards")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos, 0, 0, ""); err != nil {
		return err
	}
	rs, err := sf.open(e)
	if err != nil {
		return err
	}
	defer rs.Close()
	ctx, cancel := context.WithTimeout(e.ctx, time.Minute)
	defer cancel()
	if err := rs.m.Rotate(ctx); err != nil {
		return fmt.Errorf("rotating: %w", err)
	}
	return printKeys(e, rs, *asJSON)
}

// Known fields of the stored ring format this build edits (docs/PROTOCOL.md
// §12). A ring with any other field (an authenticated ring, with a MAC) is
// not edited here: only the middleware can re-authenticate it.
var (
	ringFields = []string{"epoch", "identity_public", "sealed_identity", "keys"}
	keyFields  = []string{"id", "suite", "public", "sealed_private", "sealed_token_key", "state",
		"primary_since", "decrypt_until", "token_until", "legacy_since", "sealed_by_suite"}
)

// errCannotEdit: the ring is in a format this build cannot change safely.
var errCannotEdit = errors.New("the stored key ring is authenticated (it has fields this build does not know); destroying a key needs a dynkey built with middleware support for it")

func runKeysDestroy(e *env, args []string) error {
	fs := newFlags(e, "dynkey keys destroy", "KEY_ID -store URL (-kek-file FILE | -kek-env VAR)", `
Erases the private key of a retired (decrypt-only) server key now, before its
grace window ends: messages sealed to it are refused from then on (clients
recover by refetching the directory), and captured traffic sealed to it can
no longer be opened with what the store holds (forward secrecy). Its token
key stays, so the tokens it sealed keep working until they expire. A primary
key cannot be destroyed: run "dynkey keys rotate" first. Running servers drop
the key from memory when they next reload the ring (at their next maintenance
round, default every 10s).`)
	sf := addStoreFlags(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos, 1, 1, "KEY_ID (see dynkey keys list)"); err != nil {
		return err
	}
	id, err := wire.ParseKeyID(pos[0])
	if err != nil {
		return usagef("bad key id %q: 16 hex digits expected (see dynkey keys list)", pos[0])
	}
	rs, err := sf.open(e)
	if err != nil {
		return err
	}
	defer rs.Close()
	if err := destroyKey(e.ctx, rs.st, id.String()); err != nil {
		return err
	}
	// The ring must still load with the key-encryption key.
	ring, err := readRing(e.ctx, rs.st)
	if err != nil {
		return err
	}
	m2, err := openMiddleware(e.ctx, e, rs.st, rs.kek, ring)
	if err != nil {
		return fmt.Errorf("the key ring does not load after the change: %w", err)
	}
	m2.Close()
	fmt.Fprintf(e.stdout, "destroyed the private key of %s\n", id)
	return printKeys(e, rs, false)
}

// destroyKey erases the sealed private key of a decrypt-only key with a
// compare-and-swap on the ring, keeping every other field as stored.
func destroyKey(ctx context.Context, st store.Store, id string) error {
	for range 8 {
		ent, err := st.Get(ctx, ringStoreKey)
		if errors.Is(err, store.ErrNotFound) {
			return errNoRing
		}
		if err != nil {
			return err
		}
		var rec map[string]json.RawMessage
		if err := json.Unmarshal(ent.Value, &rec); err != nil {
			return fmt.Errorf("decoding the key ring: %w", err)
		}
		if !onlyFields(rec, ringFields) {
			return errCannotEdit
		}
		var keys []map[string]json.RawMessage
		if err := json.Unmarshal(rec["keys"], &keys); err != nil {
			return fmt.Errorf("decoding the key ring: %w", err)
		}
		found := false
		for _, k := range keys {
			if !onlyFields(k, keyFields) {
				return errCannotEdit
			}
			var kid, state string
			_ = json.Unmarshal(k["id"], &kid)
			if kid != id {
				continue
			}
			found = true
			_ = json.Unmarshal(k["state"], &state)
			switch middleware.KeyState(state) {
			case middleware.StatePrimary:
				return fmt.Errorf("key %s is primary: run \"dynkey keys rotate\" first, then destroy it", id)
			case middleware.StateDestroyed:
				return fmt.Errorf("key %s is already destroyed", id)
			case middleware.StateDecryptOnly:
			default:
				return fmt.Errorf("key %s has unknown state %q", id, state)
			}
			now := time.Now().UnixMilli()
			var until int64
			_ = json.Unmarshal(k["decrypt_until"], &until)
			if until == 0 || until > now {
				k["decrypt_until"], _ = json.Marshal(now)
			}
			k["state"], _ = json.Marshal(string(middleware.StateDestroyed))
			delete(k, "sealed_private")
			delete(k, "sealed_by_suite")
		}
		if !found {
			return fmt.Errorf("no key %s in the ring (see dynkey keys list)", id)
		}
		rec["keys"], err = json.Marshal(keys)
		if err != nil {
			return err
		}
		b, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		if _, err := st.CompareAndSwap(ctx, ringStoreKey, ent.Version, b, ent.Expires); errors.Is(err, store.ErrConflict) {
			continue // a server changed the ring meanwhile: redo on the new one
		} else if err != nil {
			return fmt.Errorf("writing the key ring: %w", err)
		}
		return nil
	}
	return errors.New("the key ring kept changing under us; try again")
}

func onlyFields(m map[string]json.RawMessage, known []string) bool {
	for k := range m {
		if !slices.Contains(known, k) {
			return false
		}
	}
	return true
}
