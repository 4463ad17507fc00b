// Package testservers starts real Redis and PostgreSQL servers for tests:
// the binaries from Debian's packages (redis-server, redis-cli, and
// PostgreSQL's initdb/postgres under /usr/lib/postgresql/*/bin), each in its
// own temporary directory, listening on a free loopback port, killed when
// the test ends. No mocks: the stores are tested against the engines they
// run on in production.
//
// # In tests
//
// [RedisURL], [RedisClusterURL] and [PostgresURL] return the URL of a server
// for the test, in the forms github.com/dynkey/dynkey/store/storeurl opens.
// Each uses its environment variable when set (DYNKEY_REDIS_URL,
// DYNKEY_REDIS_CLUSTER_URL, DYNKEY_POSTGRES_URL), and otherwise starts a
// server of its own, stopped by t.Cleanup. When a server can neither be
// reached nor started, the test is skipped with the reason, except under
// CI=true, where it fails: CI never passes by skipping a store.
//
// # Faults
//
// [StartRedis], [StartRedisCluster] and [StartPostgres] return handles
// whose Stop, Kill and Start methods stop a server (gracefully, or with
// SIGKILL) and start it again on the same port and data directory, for tests
// of what survives an outage.
//
// Servers started here are for tests only: no password, loopback only, and
// PostgreSQL runs with fsync off unless [PostgresOptions.Durable] is set.
package testservers

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startTimeout bounds how long a server may take to accept connections.
const startTimeout = 30 * time.Second

// Environment variables naming servers to use instead of starting them.
const (
	EnvRedis        = "DYNKEY_REDIS_URL"
	EnvRedisCluster = "DYNKEY_REDIS_CLUSTER_URL"
	EnvPostgres     = "DYNKEY_POSTGRES_URL"
)

// Unavailable ends a test that needs a server it cannot have: under CI=true
// it fails (t.Fatalf), otherwise it skips (t.Skipf) with the reason.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: a store test never skips)", msg)
	}
	t.Skipf("%s (set CI=true to make this a failure)", msg)
}

// RedisURL returns the URL of a standalone Redis for t: $DYNKEY_REDIS_URL,
// or a redis-server started for t and killed when t ends.
func RedisURL(t testing.TB) string {
	t.Helper()
	if u := os.Getenv(EnvRedis); u != "" {
		return u
	}
	r, err := StartRedis()
	if err != nil {
		Unavailable(t, "no Redis: %v; install redis-server or set %s", err, EnvRedis)
	}
	t.Cleanup(func() { r.Close() })
	return r.URL()
}

// RedisClusterURL returns the URL of a Redis Cluster of three masters for
// t: $DYNKEY_REDIS_CLUSTER_URL, or a cluster started for t and killed when t
// ends.
func RedisClusterURL(t testing.TB) string {
	t.Helper()
	if u := os.Getenv(EnvRedisCluster); u != "" {
		return u
	}
	c, err := StartRedisCluster(3, 0)
	if err != nil {
		Unavailable(t, "no Redis Cluster: %v; install redis-server and redis-tools or set %s", err, EnvRedisCluster)
	}
	t.Cleanup(func() { c.Close() })
	return c.URL()
}

// PostgresURL returns the URL of a PostgreSQL database for t:
// $DYNKEY_POSTGRES_URL, or a server started for t (initdb in a temporary
// directory) and killed when t ends.
func PostgresURL(t testing.TB) string {
	t.Helper()
	if u := os.Getenv(EnvPostgres); u != "" {
		return u
	}
	p, err := StartPostgres(PostgresOptions{})
	if err != nil {
		Unavailable(t, "no PostgreSQL: %v; install postgresql or set %s", err, EnvPostgres)
	}
	t.Cleanup(func() { p.Close() })
	return p.URL()
}

// ---------------------------------------------------------------------------
// Processes

// proc is a server process that can be stopped and started again with the
// same command line.
type proc struct {
	name string   // for errors
	path string   // binary
	args []string // arguments
	dir  string   // working directory; the log file is in it
	cred *syscall.Credential

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// start starts the process, with its output appended to dir/name.log.
func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		select {
		case <-p.done:
		default:
			return fmt.Errorf("%s is running", p.name)
		}
	}
	log, err := os.OpenFile(p.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.path, p.args...)
	cmd.Dir = p.dir
	cmd.Stdout, cmd.Stderr = log, log
	// Killed with the test binary, even when the test panics.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: p.cred}
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); log.Close(); close(done) }()
	p.cmd, p.done = cmd, done
	return nil
}

func (p *proc) logPath() string { return filepath.Join(p.dir, p.name+".log") }

// exited reports whether the process has exited.
func (p *proc) exited() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return true
	}
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig and waits up to startTimeout for the process to exit,
// then kills it.
func (p *proc) signal(sig syscall.Signal) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
		return nil
	case <-time.After(startTimeout):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("%s did not exit on %v; killed", p.name, sig)
	}
}

// logTail returns the last lines of the process's log, for errors.
func (p *proc) logTail() string {
	b, _ := os.ReadFile(p.logPath())
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 8 {
		lines = lines[len(lines)-8:]
	}
	return strings.Join(lines, "\n")
}

// waitReady polls ready until it succeeds, the process exits, or
// startTimeout passes.
func (p *proc) waitReady(ready func() error) error {
	deadline := time.Now().Add(startTimeout)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		if p.exited() {
			return fmt.Errorf("%s exited: %s", p.name, p.logTail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v: %v: %s", p.name, startTimeout, err, p.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freePort returns a loopback TCP port that is free now, and for which
// port+offset is free too when offset > 0 (Redis Cluster's bus port).
func freePort(offset int) (int, error) {
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		if offset == 0 {
			l.Close()
			return port, nil
		}
		if port+offset > 65535 {
			l.Close()
			continue
		}
		l2, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+offset))
		l.Close()
		if err == nil {
			l2.Close()
			return port, nil
		}
	}
	return 0, errors.New("no free port pair found")
}

// findBinary looks name up on $PATH, then in dirs.
func findBinary(name string, dirs ...string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found on $PATH or in %v", name, dirs)
}

// ---------------------------------------------------------------------------
// Redis

// Redis is a redis-server process on 127.0.0.1.
type Redis struct {
	// Addr is host:port.
	Addr string
	p    *proc
	dir  string
}

// StartRedis starts a standalone redis-server on a free loopback port, in a
// new temporary directory, without persistence. extra are further
// redis-server arguments ("--appendonly", "yes", …).
func StartRedis(extra ...string) (*Redis, error) {
	return startRedis(0, extra)
}

func startRedis(busOffset int, extra []string) (*Redis, error) {
	bin, err := findBinary("redis-server", "/usr/bin", "/usr/local/bin")
	if err != nil {
		return nil, err
	}
	var lastErr error
	for range 5 { // another process may take the port between check and use
		port, err := freePort(busOffset)
		if err != nil {
			return nil, err
		}
		dir, err := os.MkdirTemp("", "dynkey-redis-")
		if err != nil {
			return nil, err
		}
		args := append([]string{
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--dir", dir, "--save", "", "--appendonly", "no",
			"--daemonize", "no", "--protected-mode", "no", "--logfile", "",
		}, extra...)
		r := &Redis{Addr: "127.0.0.1:" + strconv.Itoa(port), dir: dir,
			p: &proc{name: "redis-server", path: bin, args: args, dir: dir}}
		if err := r.Start(); err != nil {
			lastErr = err
			r.Close()
			continue
		}
		return r, nil
	}
	return nil, lastErr
}

// URL returns redis://Addr.
func (r *Redis) URL() string { return "redis://" + r.Addr }

// Start starts the server (again), on the same port and directory, and
// waits until it answers PING.
func (r *Redis) Start() error {
	if err := r.p.start(); err != nil {
		return err
	}
	return r.p.waitReady(func() error {
		reply, err := redisCommand(r.Addr, "PING")
		// NOAUTH: up, and protected by a password (--requirepass).
		if err == nil && reply != "+PONG" && !strings.HasPrefix(reply, "-NOAUTH") {
			err = fmt.Errorf("PING: %q", reply)
		}
		return err
	})
}

// Stop stops the server gracefully (SIGTERM) and waits for it to exit.
func (r *Redis) Stop() error { return r.p.signal(syscall.SIGTERM) }

// Kill kills the server (SIGKILL) and waits for it to exit.
func (r *Redis) Kill() error { return r.p.signal(syscall.SIGKILL) }

// Close kills the server and removes its directory.
func (r *Redis) Close() error {
	err := r.Kill()
	return errors.Join(err, os.RemoveAll(r.dir))
}

// redisCommand sends one inline command and returns the first line of the
// reply (e.g. "+PONG", or "$123" for a bulk reply).
func redisCommand(addr, command string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte(command + "\r\n")); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimRight(line, "\r\n"), err
}

// Info returns the server's INFO section (e.g. "replication"), as text.
func (r *Redis) Info(section string) (string, error) {
	return redisBulk(r.Addr, "INFO "+section)
}

// infoField returns the value of "name:value" in an INFO text.
func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

// Role returns "master" or "slave" (a replica), from INFO replication.
func (r *Redis) Role() (string, error) {
	info, err := r.Info("replication")
	if err != nil {
		return "", err
	}
	return infoField(info, "role"), nil
}

// RedisCluster is a Redis Cluster of redis-server processes on loopback.
type RedisCluster struct {
	// Nodes are the servers: the first Masters were made masters by
	// redis-cli --cluster create, the others their replicas.
	Nodes    []*Redis
	Masters  int
	Replicas int // per master
}

// StartRedisCluster starts masters+masters*replicas redis-server nodes in
// cluster mode and joins them with redis-cli --cluster create, then waits
// until every node reports cluster_state:ok.
func StartRedisCluster(masters, replicas int) (*RedisCluster, error) {
	if masters < 3 {
		return nil, errors.New("a Redis Cluster needs at least 3 masters")
	}
	cli, err := findBinary("redis-cli", "/usr/bin", "/usr/local/bin")
	if err != nil {
		return nil, err
	}
	c := &RedisCluster{Masters: masters, Replicas: replicas}
	for range masters * (1 + replicas) {
		n, err := startRedis(10000, []string{
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000",
			"--repl-diskless-sync-delay", "0", // replicas in sync at once, not after 5 s
		})
		if err != nil {
			c.Close()
			return nil, err
		}
		c.Nodes = append(c.Nodes, n)
	}
	args := []string{"--cluster", "create"}
	for _, n := range c.Nodes {
		args = append(args, n.Addr)
	}
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	out, err := exec.Command(cli, args...).CombinedOutput()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("redis-cli --cluster create: %v: %s", err, lastLines(out, 8))
	}
	if err := c.WaitOK(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// WaitOK waits until every running node reports cluster_state:ok.
func (c *RedisCluster) WaitOK() error {
	for _, n := range c.Nodes {
		if n.p.exited() {
			continue
		}
		err := n.p.waitReady(func() error {
			info, err := redisBulk(n.Addr, "CLUSTER INFO")
			if err != nil {
				return err
			}
			if !strings.Contains(info, "cluster_state:ok") {
				return errors.New("cluster_state is not ok")
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// WaitReplicated waits until every running master has Replicas replicas
// connected and they have received all of its writes so far (their offsets
// equal the master's), so that a test can kill a master without losing
// acknowledged writes. Call it before killing nodes: a promoted replica has
// fewer replicas than that.
func (c *RedisCluster) WaitReplicated() error {
	for _, n := range c.Nodes {
		if n.p.exited() {
			continue
		}
		err := n.p.waitReady(func() error {
			info, err := n.Info("replication")
			if err != nil {
				return err
			}
			if infoField(info, "role") != "master" {
				return nil
			}
			offset := infoField(info, "master_repl_offset")
			replicas, _ := strconv.Atoi(infoField(info, "connected_slaves"))
			if replicas < c.Replicas {
				return fmt.Errorf("%d replicas connected, want %d", replicas, c.Replicas)
			}
			for i := range replicas {
				// slave0:ip=127.0.0.1,port=…,state=online,offset=123,lag=0
				fields := strings.Split(infoField(info, "slave"+strconv.Itoa(i)), ",")
				for _, f := range fields {
					if v, ok := strings.CutPrefix(f, "state="); ok && v != "online" {
						return fmt.Errorf("replica %d is %s", i, v)
					}
					if v, ok := strings.CutPrefix(f, "offset="); ok && v != offset {
						return fmt.Errorf("replica %d at offset %s, master at %s", i, v, offset)
					}
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// URL returns redis+cluster://addr1,addr2,… with the nodes' addresses.
func (c *RedisCluster) URL() string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr
	}
	return "redis+cluster://" + strings.Join(addrs, ",")
}

// Close kills every node and removes their directories.
func (c *RedisCluster) Close() error {
	var errs []error
	for _, n := range c.Nodes {
		errs = append(errs, n.Close())
	}
	return errors.Join(errs...)
}

// redisBulk sends one inline command whose reply is a bulk string and
// returns that string.
func redisBulk(addr, command string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte(command + "\r\n")); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if !strings.HasPrefix(line, "$") {
		return "", fmt.Errorf("%s: %q", command, line)
	}
	n, err := strconv.Atoi(line[1:])
	if err != nil || n < 0 {
		return "", fmt.Errorf("%s: %q", command, line)
	}
	b := make([]byte, n+2)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", err
	}
	return string(b[:n]), nil
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(string(bytes.TrimSpace(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ---------------------------------------------------------------------------
// PostgreSQL

// PostgresOptions configure [StartPostgres]. The zero value is a fast
// server for tests.
type PostgresOptions struct {
	// Durable keeps PostgreSQL's defaults fsync=on and
	// synchronous_commit=on, for measurements. Default false: both off,
	// which is faster and loses nothing unless the machine crashes.
	Durable bool
}

// Postgres is a PostgreSQL server on 127.0.0.1, with trust authentication
// for the user "postgres".
type Postgres struct {
	// Addr is host:port.
	Addr string
	p    *proc
	dir  string
}

// StartPostgres creates a database cluster with initdb in a new temporary
// directory and starts postgres on a free loopback port. The binaries are
// taken from $PATH or the newest /usr/lib/postgresql/*/bin. Run as root, it
// runs them as the user "postgres" (PostgreSQL refuses to run as root).
func StartPostgres(o PostgresOptions) (*Postgres, error) {
	bindir, err := postgresBinDir()
	if err != nil {
		return nil, err
	}
	var cred *syscall.Credential
	var uid, gid = -1, -1
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root and no user postgres to run PostgreSQL as: %w", err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	dir, err := os.MkdirTemp("", "dynkey-pg-")
	if err != nil {
		return nil, err
	}
	if uid >= 0 {
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bindir, "initdb"), "-D", data, "-U", "postgres",
		"-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions")
	initdb.Dir = dir
	initdb.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v: %s", err, lastLines(out, 8))
	}
	settings := []string{"listen_addresses=127.0.0.1", "unix_socket_directories=" + dir,
		"max_connections=200", "shared_buffers=32MB"}
	if !o.Durable {
		settings = append(settings, "fsync=off", "synchronous_commit=off", "full_page_writes=off")
	}
	var lastErr error
	for range 5 {
		port, err := freePort(0)
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		args := []string{"-D", data, "-p", strconv.Itoa(port)}
		for _, s := range settings {
			args = append(args, "-c", s)
		}
		p := &Postgres{Addr: "127.0.0.1:" + strconv.Itoa(port), dir: dir,
			p: &proc{name: "postgres", path: filepath.Join(bindir, "postgres"), args: args, dir: dir, cred: cred}}
		if lastErr = p.Start(); lastErr == nil {
			return p, nil
		}
		p.p.signal(syscall.SIGQUIT) // immediate shutdown, backends included
	}
	os.RemoveAll(dir)
	return nil, lastErr
}

// postgresBinDir finds the directory of initdb, postgres and pg_isready:
// the newest /usr/lib/postgresql/*/bin, or where initdb on $PATH points.
func postgresBinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) < versionOf(dirs[j]) })
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i], nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if p, err = filepath.EvalSymlinks(p); err == nil {
			return filepath.Dir(p), nil
		}
	}
	return "", errors.New("initdb not found under /usr/lib/postgresql/*/bin or on $PATH")
}

func versionOf(bindir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(bindir)))
	return v
}

// URL returns postgres://postgres@Addr/postgres?sslmode=disable.
func (p *Postgres) URL() string {
	return "postgres://postgres@" + p.Addr + "/postgres?sslmode=disable"
}

// Start starts the server (again) and waits until it accepts connections.
func (p *Postgres) Start() error {
	if err := p.p.start(); err != nil {
		return err
	}
	isready := filepath.Join(filepath.Dir(p.p.path), "pg_isready")
	host, port, _ := net.SplitHostPort(p.Addr)
	return p.p.waitReady(func() error {
		out, err := exec.Command(isready, "-q", "-h", host, "-p", port, "-U", "postgres", "-d", "postgres").CombinedOutput()
		if err != nil {
			return fmt.Errorf("pg_isready: %v %s", err, out)
		}
		return nil
	})
}

// Stop stops the server with a fast shutdown (SIGINT) and waits for it.
func (p *Postgres) Stop() error { return p.p.signal(syscall.SIGINT) }

// Kill kills the server's postmaster (SIGKILL) and waits for it to exit.
// Its backends exit by themselves once they notice; until then Start may
// fail, as it would on a real machine.
func (p *Postgres) Kill() error { return p.p.signal(syscall.SIGKILL) }

// Close stops the server (immediate shutdown) and removes its directory.
func (p *Postgres) Close() error {
	err := p.p.signal(syscall.SIGQUIT)
	return errors.Join(err, os.RemoveAll(p.dir))
}
