//go:build !unix

package e2e

// openFileLimit: unknown on this system.
func openFileLimit() (uint64, bool) { return 0, false }
