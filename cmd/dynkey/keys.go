package main

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dynkey/dynkey/middleware"
	"github.com/dynkey/dynkey/policy"
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
	rs := &ringSession{st: st, kek: kek}
	if _, err := rs.verified(e); err != nil {
		st.Close()
		return nil, err
	}
	return rs, nil
}

// verified returns the stored ring once the middleware verified that very
// version (its authentication, its key ids, its sealed secrets): the ring
// read before and after the verification must be the same version, as
// versions only grow.
func (rs *ringSession) verified(e *env) (*ringInfo, error) {
	for range 5 {
		r1, err := readRing(e.ctx, rs.st)
		if err != nil {
			return nil, err
		}
		if rs.ring != nil && rs.m != nil && r1.version == rs.ring.version {
			return r1, nil
		}
		m, err := openMiddleware(e, rs.st, rs.kek, r1, nil)
		if err != nil {
			return nil, err
		}
		r2, err := readRing(e.ctx, rs.st)
		if err != nil {
			m.Close()
			return nil, err
		}
		if r2.version == r1.version {
			if rs.m != nil {
				rs.m.Close()
			}
			rs.m, rs.ring = m, r2
			return r2, nil
		}
		m.Close()
	}
	return nil, errors.New("the key ring kept changing while it was verified; try again")
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
	// TokenKeys are the keys that seal login tokens.
	TokenKeys []tokenKeyInfo `json:"token_keys,omitempty"`
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
	ring, err := rs.verified(e)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(keysListJSON{Epoch: ring.Epoch, Identity: hex.EncodeToString(rs.m.IdentityPublicKey()), Keys: ring.Keys, TokenKeys: ring.TokenKeys})
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
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(ring.TokenKeys) == 0 {
		return nil
	}
	fmt.Fprintf(e.stdout, "\n%d token keys (they seal login tokens)\n", len(ring.TokenKeys))
	tw = tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tPRIMARY SINCE\tDELETED AT")
	for _, tk := range ring.TokenKeys {
		state, until := "primary", "-"
		if tk.Until != 0 {
			state, until = "retired", msTime(tk.Until)+" ("+relative(now, tk.Until)+")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", tk.ID, state, msTime(tk.Since), until)
	}
	return tw.Flush()
}

func runKeysRotate(e *env, args []string) error {
	fs := newFlags(e, "dynkey keys rotate", "-store URL (-kek-file FILE | -kek-env VAR) [-json]", `
Makes a new server key pair primary now, whatever the server policy says (for
example after a suspected compromise). The old primary becomes decrypt-only
for the servers' ServerKeyGrace; running servers learn the new key at their
next maintenance round (default every 10s) or on the first request naming it,
and clients at their next heartbeat. Prints the ring afterwards.

The retired key's grace window and its token key's lifetime are computed
here: give -server-key-grace and -token-ttl when your servers do not use the
defaults (10m and 12h).`)
	sf := addStoreFlags(fs)
	asJSON := fs.Bool("json", false, "print the ring as JSON afterwards")
	grace := fs.Duration("server-key-grace", 10*time.Minute, "how long the retired key still opens messages: your servers' Options.ServerKeyGrace")
	tokenTTL := fs.Duration("token-ttl", 12*time.Hour, "how long tokens live: your servers' Options.TokenTTL (kept that long: the token key of a server key record of the older format)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos, 0, 0, ""); err != nil {
		return err
	}
	if *grace <= 0 || *tokenTTL <= 0 {
		return usagef("dynkey keys rotate: -server-key-grace and -token-ttl must be positive")
	}
	rs, err := sf.open(e)
	if err != nil {
		return err
	}
	defer rs.Close()
	m, err := openMiddleware(e, rs.st, rs.kek, rs.ring, func(o *middleware.Options) {
		o.ServerKeyGrace = *grace
		o.TokenTTL = *tokenTTL
	})
	if err != nil {
		return err
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(e.ctx, time.Minute)
	defer cancel()
	if err := m.Rotate(ctx); err != nil {
		return fmt.Errorf("rotating: %w", err)
	}
	return printKeys(e, rs, *asJSON)
}

func runKeysDestroy(e *env, args []string) error {
	fs := newFlags(e, "dynkey keys destroy", "KEY_ID -store URL (-kek-file FILE | -kek-env VAR) [-force]", `
Erases the private key of a retired (decrypt-only) server key now, before its
grace window ends: messages sealed to it are refused from then on (clients
recover by refetching the directory), and captured traffic sealed to it can
no longer be opened with what the store holds (forward secrecy; the store is
scrubbed as after any destruction). Its token key stays, so the tokens it
sealed keep working until they expire. A primary key cannot be destroyed:
run "dynkey keys rotate" first.

It runs the servers' own key upkeep as of the key's grace end, so every
server key retired before it is destroyed too (their grace would have ended
first), and retired token keys due for deletion by then are deleted (their
last tokens expire up to that much early); the command names them and needs
-force to go on. A destroyed key is deleted from the ring, unless it still
holds a token key of the older format. Running servers drop the keys
from memory when they next reload the ring (at their next maintenance round,
default every 10s).`)
	sf := addStoreFlags(fs)
	force := fs.Bool("force", false, "also destroy the keys retired before KEY_ID")
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
	ring := rs.ring
	at, also, err := destroyPlan(ring, id.String(), time.Now())
	if err != nil {
		return err
	}
	if len(also) > 0 && !*force {
		return fmt.Errorf("destroying %s also destroys what is due before its grace ends: %s; add -force to go on", id, strings.Join(also, ", "))
	}
	// The servers' upkeep (Maintain) as of the grace end: it destroys
	// exactly the decrypt-only keys whose grace has ended by then. The
	// policy never rotates, and the lifetimes are long enough that no
	// record is deleted and no legacy suite retired ahead of time.
	m, err := openMiddleware(e, rs.st, rs.kek, ring, func(o *middleware.Options) {
		o.Now = func() time.Time { return at }
		o.ServerPolicy = policy.Manual()
		o.ServerKeyGrace = 100 * 365 * 24 * time.Hour
		o.TokenTTL = 100 * 365 * 24 * time.Hour
		o.TokenKeyRotation = 100 * 365 * 24 * time.Hour
	})
	if err != nil {
		return err
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(e.ctx, time.Minute)
	defer cancel()
	if err := m.Maintain(ctx); err != nil {
		return fmt.Errorf("destroying: %w", err)
	}
	after, err := readRing(e.ctx, rs.st)
	if err != nil {
		return err
	}
	for _, k := range after.Keys {
		if k.ID == id.String() && (k.State != string(middleware.StateDestroyed) || k.HasPrivate) {
			return fmt.Errorf("key %s is still %s after the upkeep; try again", id, k.State)
		}
	}
	for _, d := range append([]string{id.String()}, also...) {
		fmt.Fprintf(e.stdout, "destroyed %s\n", d)
	}
	return printKeys(e, rs, false)
}

// destroyPlan checks that key id can be destroyed and returns the time the
// upkeep must run at (its grace end, or now if that passed) and the other
// keys that upkeep destroys too.
func destroyPlan(ring *ringInfo, id string, now time.Time) (time.Time, []string, error) {
	var target *ringKeyInfo
	for i := range ring.Keys {
		if ring.Keys[i].ID == id {
			target = &ring.Keys[i]
		}
	}
	if target == nil {
		return time.Time{}, nil, fmt.Errorf("no key %s in the ring (see dynkey keys list)", id)
	}
	switch middleware.KeyState(target.State) {
	case middleware.StatePrimary:
		return time.Time{}, nil, fmt.Errorf("key %s is primary: run \"dynkey keys rotate\" first, then destroy it", id)
	case middleware.StateDestroyed:
		return time.Time{}, nil, fmt.Errorf("key %s is already destroyed", id)
	case middleware.StateDecryptOnly:
	default:
		return time.Time{}, nil, fmt.Errorf("key %s has unknown state %q", id, target.State)
	}
	at := now
	if until := time.UnixMilli(target.DecryptUntil); until.After(at) {
		at = until
	}
	var also []string
	for _, k := range ring.Keys {
		if k.ID != id && k.State == string(middleware.StateDecryptOnly) && !at.Before(time.UnixMilli(k.DecryptUntil)) && now.Before(time.UnixMilli(k.DecryptUntil)) {
			also = append(also, k.ID)
		}
	}
	// The upkeep also deletes the retired token keys due by then: their
	// last tokens expire a little early.
	for _, tk := range ring.TokenKeys {
		if tk.Until != 0 && !at.Before(time.UnixMilli(tk.Until)) && now.Before(time.UnixMilli(tk.Until)) {
			also = append(also, "token key "+tk.ID)
		}
	}
	return at, also, nil
}
