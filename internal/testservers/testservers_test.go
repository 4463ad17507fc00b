package testservers_test

import (
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dynkey/dynkey/internal/testservers"
)

// TestRedisStopStart stops a server and starts it again on the same port.
func TestRedisStopStart(t *testing.T) {
	r, err := testservers.StartRedis()
	if err != nil {
		testservers.Unavailable(t, "no Redis: %v", err)
	}
	defer r.Close()
	require.NoError(t, r.Kill())
	_, err = net.Dial("tcp", r.Addr)
	require.Error(t, err, "killed server still accepts connections")
	require.NoError(t, r.Start())
	c, err := net.Dial("tcp", r.Addr)
	require.NoError(t, err)
	c.Close()
}

func TestRedisCluster(t *testing.T) {
	u := testservers.RedisClusterURL(t)
	require.True(t, strings.HasPrefix(u, "redis+cluster://"), u)
}

func TestPostgresStopStart(t *testing.T) {
	p, err := testservers.StartPostgres(testservers.PostgresOptions{})
	if err != nil {
		testservers.Unavailable(t, "no PostgreSQL: %v", err)
	}
	defer p.Close()
	require.NoError(t, p.Stop())
	_, err = net.Dial("tcp", p.Addr)
	require.Error(t, err, "stopped server still accepts connections")
	require.NoError(t, p.Start())
	c, err := net.Dial("tcp", p.Addr)
	require.NoError(t, err)
	c.Close()
}
