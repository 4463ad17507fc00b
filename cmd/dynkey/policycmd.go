package main

import (
	"fmt"
	"time"

	"github.com/dynkey/dynkey/policy"
)

func runPolicyCheck(e *env, args []string) error {
	fs := newFlags(e, "dynkey policy check", `"POLICY" [-age D] [-uptime D] [-offset-growth D] [-messages N] [-bytes N] [-now RFC3339]`, `
Parses a rotation policy in the short syntax of docs/POLICIES.md, prints its
normalized form (what the policy's String returns, which Parse reads back to
the same policy) and what it decides for the given facts: keep, rotate or
reject. Facts not given are zero. -age and -uptime are the same fact (the key's
time in service: a server key's uptime, claim 6; a client key's age); give one.

Examples:
  dynkey policy check "age>=1h or reject(age>=2h)" -age 90m      → rotate
  dynkey policy check "uptime>=24h" -uptime 25h                  → rotate
  dynkey policy check "messages>=1000 or bytes>=1GiB" -messages 10 → keep`)
	age := fs.Duration("age", 0, "the key's age (time in service)")
	uptime := fs.Duration("uptime", 0, "the server key's uptime (the same fact as -age)")
	growth := fs.Duration("offset-growth", 0, "how much the server clock advanced since the client key was installed (claim 5)")
	messages := fs.Uint64("messages", 0, "messages sent or received under the key")
	bytes := fs.Uint64("bytes", 0, "plaintext bytes sent or received under the key")
	nowFlag := fs.String("now", "", "decision time, RFC 3339 (for daily@HH:MM); default the current time")
	keyID := fs.String("key-id", "", "key id in hex (jitter spreads keys by their id); default empty")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos, 1, 1, "POLICY (a quoted expression such as \"age>=1h\")"); err != nil {
		return err
	}
	p, err := policy.Parse(pos[0])
	if err != nil {
		return usagef("bad policy %q: %v", pos[0], err)
	}
	if *age != 0 && *uptime != 0 && *age != *uptime {
		return usagef("dynkey policy check: -age and -uptime are the same fact; give one")
	}
	if *age < 0 || *uptime < 0 || *growth < 0 {
		return usagef("dynkey policy check: durations must not be negative")
	}
	f := policy.Facts{Now: time.Now(), Age: max(*age, *uptime), OffsetGrowth: *growth, Messages: *messages, Bytes: *bytes}
	if *nowFlag != "" {
		t, err := time.Parse(time.RFC3339, *nowFlag)
		if err != nil {
			return usagef("bad -now %q: RFC 3339 expected, such as 2026-11-28T10:00:00Z", *nowFlag)
		}
		f.Now = t
	}
	if *keyID != "" {
		b, err := decodeHex(*keyID)
		if err != nil {
			return usagef("bad -key-id: %v", err)
		}
		f.KeyID = b
	}
	fmt.Fprintf(e.stdout, "policy:   %s\n", p.String())
	fmt.Fprintf(e.stdout, "facts:    age=%s offset_growth=%s messages=%d bytes=%d now=%s\n",
		f.Age, f.OffsetGrowth, f.Messages, f.Bytes, f.Now.UTC().Format(time.RFC3339))
	fmt.Fprintf(e.stdout, "decision: %s\n", p.Decide(f))
	return nil
}
