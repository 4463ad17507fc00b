package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/crypto/backendtest"
)

// The custom suite passes the same conformance suite as the built-in ones.
func TestConformance(t *testing.T) { backendtest.Run(t, naclBox{}) }

func TestEndToEnd(t *testing.T) {
	var out strings.Builder
	require.NoError(t, run(&out))
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Equal(t, "summary: requests=3 failed=0 client_rotations=1 server_rotations=1", lines[len(lines)-1], out.String())
	require.Contains(t, out.String(), `200 hello alice, you said "first"`)
}
