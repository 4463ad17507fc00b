// Command dynkey operates a dynkey deployment: it makes and rotates the
// key-encryption key, prints the identity key clients pin, lists, rotates
// and destroys server keys in a store, checks rotation policies, decodes
// protocol messages, runs a demo server and makes encrypted requests.
//
// Install it with
//
//	go install github.com/dynkey/dynkey/cmd/dynkey@latest
//
// and run "dynkey help" for the commands, "dynkey COMMAND -help" for one.
// docs/OPERATIONS.md is the reference, with examples.
//
// # Exit status
//
// 0 on success, 1 when the command ran and failed (a store that cannot be
// opened, a refused request, a signature that does not verify), 2 on bad
// usage (an unknown command or flag, a missing or malformed argument).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"
)

// command is one subcommand, or a group of them (sub non-nil).
type command struct {
	name    string
	summary string
	// run executes the command with the arguments after its name.
	run func(env *env, args []string) error
	sub []*command
}

// commands is the command table. A new subcommand plugs in here (for
// example "bench", from the performance issue): give it a name, a one-line
// summary and a run function that parses its flags with newFlags.
var commands []*command

func init() {
	commands = commandTable()
}

func commandTable() []*command {
	return []*command{
		{name: "kek", summary: "make or rotate the key-encryption key", sub: []*command{
			{name: "new", summary: "print or write a fresh 32-byte key-encryption key", run: runKEKNew},
			{name: "rotate", summary: "re-seal every record of a store under a new key-encryption key", run: runKEKRotate},
		}},
		{name: "identity", summary: "print the identity public key clients pin", run: runIdentity},
		{name: "keys", summary: "list, rotate or destroy the server keys of a store", sub: []*command{
			{name: "list", summary: "list the server keys (never private material)", run: runKeysList},
			{name: "rotate", summary: "make a new server key primary now", run: runKeysRotate},
			{name: "destroy", summary: "erase a retired key's private key now", run: runKeysDestroy},
		}},
		{name: "policy", summary: "check a rotation policy", sub: []*command{
			{name: "check", summary: "parse a policy, print its normal form and its decision", run: runPolicyCheck},
		}},
		{name: "inspect", summary: "decode and verify protocol messages", sub: []*command{
			{name: "envelope", summary: "decode a request or response envelope", run: runInspectEnvelope},
			{name: "directory", summary: "decode and verify a signed key directory", run: runInspectDirectory},
			{name: "problem", summary: "decode a problem (application/problem+json)", run: runInspectProblem},
			{name: "token", summary: "decode a token; check it against a store's key ring", run: runInspectToken},
		}},
		{name: "serve", summary: "run a demo server with a protected echo route", run: runServe},
		{name: "call", summary: "make an encrypted request, like curl", run: runCall},
		{name: "bench", summary: "benchmark dynkey against plain HTTP and go-jose, side by side", run: runBench},
		{name: "completion", summary: "print a shell completion script (bash or zsh)", run: runCompletion},
		{name: "version", summary: "print the version of dynkey and of Go", run: runVersion},
	}
}

// env is what a command reads and writes: the process's streams and
// environment, replaceable in one place.
type env struct {
	ctx    context.Context
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
}

// usageError is a bad invocation: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	e := &env{ctx: ctx, stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	code := run(e, os.Args[1:])
	stop()
	os.Exit(code)
}

// run dispatches args and returns the exit status.
func run(e *env, args []string) int {
	err := dispatch(e, commands, "dynkey", args)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "dynkey ") && !strings.HasPrefix(msg, "dynkey:") {
		msg = "dynkey: " + msg
	}
	fmt.Fprintln(e.stderr, msg)
	var ue *usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

func dispatch(e *env, table []*command, path string, args []string) error {
	if len(args) == 0 {
		printCommands(e.stderr, table, path)
		return usagef("%s: missing command", path)
	}
	name := args[0]
	if name == "help" || name == "-h" || name == "-help" || name == "--help" {
		if len(args) > 1 {
			// "dynkey help keys list" is "dynkey keys list -help".
			return dispatch(e, table, path, append(args[1:], "-help"))
		}
		printCommands(e.stdout, table, path)
		return nil
	}
	for _, c := range table {
		if c.name != name {
			continue
		}
		if c.sub != nil {
			return dispatch(e, c.sub, path+" "+name, args[1:])
		}
		return c.run(e, args[1:])
	}
	printCommands(e.stderr, table, path)
	return usagef("%s: unknown command %q", path, name)
}

func printCommands(w io.Writer, table []*command, path string) {
	fmt.Fprintf(w, "Usage: %s COMMAND [flags]\n\nCommands:\n", path)
	for _, c := range table {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun \"%s COMMAND -help\" for a command's flags. Reference: docs/OPERATIONS.md.\n", path)
}

// newFlags returns a flag set for command path whose -help prints usage
// (the synopsis after the path) and the flags to stdout, and whose errors
// print to stderr.
func newFlags(e *env, path, usage, about string) *flag.FlagSet {
	fs := flag.NewFlagSet(path, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		w := e.stdout
		fmt.Fprintf(w, "Usage: %s %s\n\n%s\n", path, usage, strings.TrimSpace(about))
		var any bool
		fs.VisitAll(func(*flag.Flag) { any = true })
		if any {
			fmt.Fprintf(w, "\nFlags:\n")
			fs.SetOutput(w)
			fs.PrintDefaults()
			fs.SetOutput(io.Discard)
		}
	}
	return fs
}

// parse parses args with fs, allowing flags after positional arguments
// (dynkey call URL -d data), and returns the positional arguments. "--"
// ends the flags. A parse error is a usage error; -help is flag.ErrHelp.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.Usage()
				return nil, err
			}
			return nil, usagef("%s: %v (see -help)", fs.Name(), err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// flag stops at "--" (consumed) or at the first non-flag.
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// wantArgs checks the number of positional arguments.
func wantArgs(fs *flag.FlagSet, pos []string, min, max int, what string) error {
	if len(pos) < min {
		return usagef("%s: missing %s (see -help)", fs.Name(), what)
	}
	if len(pos) > max {
		return usagef("%s: unexpected argument %q (see -help)", fs.Name(), pos[max])
	}
	return nil
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ", ") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// commandNames returns "a b c" paths for completion, sorted.
func commandNames(table []*command) []string {
	var out []string
	for _, c := range table {
		out = append(out, c.name)
	}
	sort.Strings(out)
	return out
}

func runVersion(e *env, args []string) error {
	fs := newFlags(e, "dynkey version", "", "Prints the module version dynkey was built from and the Go version.")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos, 0, 0, ""); err != nil {
		return err
	}
	v := "(unknown)"
	if bi, ok := debug.ReadBuildInfo(); ok {
		v = bi.Main.Version
	}
	fmt.Fprintf(e.stdout, "dynkey %s, %s\n", v, runtime.Version())
	return nil
}
