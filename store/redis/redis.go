// Package redis is a [store.Store] on Redis, standalone or Redis Cluster,
// through go-redis v9's [goredis.UniversalClient].
//
// # Keys and Redis Cluster
//
// Every operation touches exactly one Redis key, so the store works
// unchanged on a Redis Cluster (each key hashes to its own slot; no
// multi-key command ever crosses slots):
//
//   - an entry lives under Prefix+"kv:"+key as one string: an 8-byte
//     big-endian version, the 8-byte big-endian expiry in Unix nanoseconds
//     (0: never), then the value. Get is one GET; CompareAndSwap is one Lua
//     script on that key (EVALSHA), which checks the version and writes the
//     new string with its TTL atomically.
//   - a message id lives under Prefix+"seen:"+id; MarkSeen is one
//     SET NX PX.
//
// # Expiry
//
// Expired data is removed by Redis itself (key TTLs, set with PX to the
// millisecond, rounded up): the store never scans. An entry is also
// invisible as soon as its expiry in nanoseconds has passed on the caller's
// clock, so Get and CompareAndSwap agree with [store.Store]'s contract to the
// nanosecond; a message id is remembered until Redis expires its key, at
// most one millisecond past its expiry (a replay window never shrinks).
//
// # Cancellation
//
// A call whose context is already done fails at once and sends nothing. A
// store from [Open] honours context deadlines while it waits for the server
// (go-redis's ContextTimeoutEnabled): the call returns an error wrapping
// context.DeadlineExceeded, but the command may still have run on the
// server — the outcome of such a call is unknown.
//
// # Durability
//
// A write is acknowledged once it is in the memory of the Redis master.
// What survives a crash of that master depends on its configuration
// (appendonly yes with appendfsync everysec loses up to about a second of
// writes; with replicas, a failover loses what had not reached the
// replica). docs/DEPLOYMENT.md says what dynkey loses in each case.
package redis

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/dynkey/dynkey/store"
)

// DefaultPrefix is the prefix of every Redis key the store writes when
// [Options.Prefix] is empty.
const DefaultPrefix = "dynkey:"

// header is the size of an entry's header: version and expiry.
const header = 16

// casScript swaps the entry under KEYS[1]. ARGV[1] is the expected version
// (8 bytes, big-endian; all zero for "absent or expired"), ARGV[2] the
// caller's clock in Unix nanoseconds (8 bytes, big-endian), ARGV[3] the new
// string (header and value), ARGV[4] the TTL in milliseconds: "0" for none,
// "-1" when the new entry has already expired (the key is deleted). It
// returns 1 when it wrote, 0 on a version conflict.
//
// Numbers are compared as 8-byte strings, byte by byte: Lua numbers are
// doubles and cannot hold every 64-bit version or nanosecond.
var casScript = goredis.NewScript(`
local zero = '\0\0\0\0\0\0\0\0'
local function before(a, b)
  for i = 1, 8 do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return false
end
local cur = redis.call('GET', KEYS[1])
local version = zero
if cur then
  local expires = string.sub(cur, 9, 16)
  if expires == zero or before(ARGV[2], expires) then
    version = string.sub(cur, 1, 8)
  end
end
if version ~= ARGV[1] then return 0 end
if ARGV[4] == '-1' then
  redis.call('DEL', KEYS[1])
elseif ARGV[4] == '0' then
  redis.call('SET', KEYS[1], ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
end
return 1
`)

// Options configure a [Store]. The zero value is usable.
type Options struct {
	// Prefix is prepended to every Redis key the store writes, so that
	// several applications (or tests) can share one Redis. Default
	// [DefaultPrefix].
	Prefix string

	// CloseClient makes [Store.Close] close the client. Default false: the
	// caller who made the client closes it. [Open] sets it.
	CloseClient bool
}

// Store is a [store.Store] on Redis. It is safe for concurrent use.
type Store struct {
	c      goredis.UniversalClient
	prefix string
	addr   string // for error messages: the server addresses, no credentials
	close  bool
	watch  watchers
}

var _ store.Store = (*Store)(nil)

// New returns a store using c, a *goredis.Client (standalone or Sentinel
// failover) or a *goredis.ClusterClient. It does not contact the server.
func New(c goredis.UniversalClient, o Options) *Store {
	prefix := o.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return &Store{c: c, prefix: prefix, addr: addrOf(c), close: o.CloseClient}
}

// schemes are the URL schemes [Open] accepts.
var schemes = []string{"redis", "rediss", "redis+cluster", "rediss+cluster"}

// Open connects to the Redis named by rawURL, checks that it answers, and
// returns a store that closes the connection on Close. The forms are:
//
//	redis://[user:password@]host:port[/db][?options]
//	rediss://…                                  (TLS)
//	redis+cluster://[user:password@]host1:port1,host2:port2,…[?options]
//	rediss+cluster://…                          (Redis Cluster over TLS)
//
// A cluster URL lists one or more nodes of a Redis Cluster (one is enough to
// discover the others); it has no database number. Options are go-redis's
// URL options (dial_timeout, pool_size, …; see [goredis.ParseURL]) plus
// prefix, which sets [Options.Prefix].
func Open(ctx context.Context, rawURL string) (*Store, error) {
	c, prefix, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	s := New(c, Options{Prefix: prefix, CloseClient: true})
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		return nil, fmt.Errorf("dynkey/store/redis: connect to %s: %w", s.addr, err)
	}
	return s, nil
}

// failFastRetries is the client's retries of a failed command and of a
// failed dial when the URL sets none (go-redis's defaults, 3 and 5 with
// backoff, hold a request about 2 s when Redis is down).
const failFastRetries = 1

// ParseURL parses a URL of one of the forms [Open] accepts and returns an
// unconnected client and the key prefix (empty if the URL names none). The
// client honours the deadlines of the contexts it is given
// (ContextTimeoutEnabled), so a request with a deadline does not wait for a
// stalled server past it, and it fails fast while Redis is down: one retry
// of a failed command (max_retries, unless the URL sets it) and one of a
// failed dial (dialer_retries), so that dynkey answers "unavailable" within
// milliseconds instead of holding each request for seconds. Its errors
// never contain the URL's password.
func ParseURL(rawURL string) (goredis.UniversalClient, string, error) {
	// A cluster URL's host list is no valid URL host (url.Parse takes
	// "a:1,b" for a host with port "1,b"): take it out, parse the rest.
	rawURL, hostList := cutHosts(rawURL)
	u, err := url.Parse(rawURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the URL, password included
		}
		return nil, "", fmt.Errorf("dynkey/store/redis: malformed URL: %v", err)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("dynkey/store/redis: URL %s: %s", u.Redacted(), fmt.Sprintf(format, args...))
	}
	if u.Opaque != "" || u.Host == "" {
		return nil, "", bad("want %s://host:port", u.Scheme)
	}
	q := u.Query()
	prefix := q.Get("prefix")
	q.Del("prefix")
	u.RawQuery = q.Encode()

	switch u.Scheme {
	case "redis", "rediss":
		if strings.Contains(u.Host, ",") {
			return nil, "", bad("several addresses need the %s+cluster scheme", u.Scheme)
		}
		o, err := goredis.ParseURL(u.String())
		if err != nil {
			return nil, "", bad("%v", err)
		}
		o.ContextTimeoutEnabled = true
		if !q.Has("max_retries") {
			o.MaxRetries = failFastRetries
		}
		o.DialerRetries = failFastRetries
		return goredis.NewClient(o), prefix, nil
	case "redis+cluster", "rediss+cluster":
		if strings.Trim(u.Path, "/") != "" {
			return nil, "", bad("a cluster URL has no database number")
		}
		hosts := strings.Split(hostList, ",")
		for i, h := range hosts {
			if hosts[i], err = clusterAddr(h); err != nil {
				return nil, "", bad("%v", err)
			}
		}
		u.Scheme = strings.TrimSuffix(u.Scheme, "+cluster")
		u.Host = hosts[0]
		u.Path = ""
		for _, h := range hosts[1:] {
			q.Add("addr", h)
		}
		u.RawQuery = q.Encode()
		o, err := goredis.ParseClusterURL(u.String())
		if err != nil {
			return nil, "", bad("%v", err)
		}
		o.ContextTimeoutEnabled = true
		if !q.Has("max_retries") {
			o.MaxRetries = failFastRetries
		}
		if !q.Has("dialer_retries") {
			o.DialerRetries = failFastRetries
		}
		return goredis.NewClusterClient(o), prefix, nil
	}
	return nil, "", bad("unknown scheme %q, want one of %s", u.Scheme, strings.Join(schemes, ", "))
}

// clusterHost stands for a cluster URL's host list while the URL is parsed.
const clusterHost = "cluster.invalid"

// cutHosts replaces the host list of a redis+cluster:// or
// rediss+cluster:// URL with clusterHost and returns it; other URLs are
// returned as they are.
func cutHosts(rawURL string) (string, string) {
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok || !strings.HasSuffix(strings.ToLower(scheme), "+cluster") {
		return rawURL, ""
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	userinfo, hosts := "", authority
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		userinfo, hosts = authority[:i+1], authority[i+1:]
	}
	return scheme + "://" + userinfo + clusterHost + tail, hosts
}

// clusterAddr checks one address of a cluster URL, "host[:port]", and adds
// Redis's default port when it has none.
func clusterAddr(h string) (string, error) {
	host, port, err := net.SplitHostPort(h)
	if err != nil {
		if strings.Contains(strings.Trim(h, "[]"), ":") && !strings.HasPrefix(h, "[") {
			return "", fmt.Errorf("address %q: an IPv6 address needs brackets", h)
		}
		host, port = strings.Trim(h, "[]"), "6379"
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return "", fmt.Errorf("address %q: invalid port %q", h, port)
	}
	if host == "" {
		return "", fmt.Errorf("address %q: empty host", h)
	}
	return net.JoinHostPort(host, port), nil
}

// addrOf names the servers behind c, for error messages.
func addrOf(c goredis.UniversalClient) string {
	switch c := c.(type) {
	case *goredis.Client:
		return c.Options().Addr
	case *goredis.ClusterClient:
		return "cluster " + strings.Join(c.Options().Addrs, ",")
	case *goredis.Ring:
		return "ring"
	}
	return "redis"
}

func (s *Store) kvKey(key string) string  { return s.prefix + "kv:" + key }
func (s *Store) seenKey(id string) string { return s.prefix + "seen:" + id }
func (s *Store) fail(op string, err error) error {
	s.reloadOnNetworkError(err)
	return fmt.Errorf("dynkey/store/redis: %s on %s: %w", op, s.addr, err)
}

// reloadOnNetworkError asks a cluster client to reload the cluster's
// topology after a network error: a master that died is replaced by a
// replica, and go-redis would otherwise keep dialling the dead one until
// its periodic reload (every minute). The reload runs in the background, at
// most one at a time.
func (s *Store) reloadOnNetworkError(err error) {
	cc, ok := s.c.(*goredis.ClusterClient)
	if !ok || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return
	}
	if _, isReply := errors.AsType[goredis.Error](err); isReply {
		return // the server answered
	}
	cc.ReloadState(context.Background())
}

// Get implements [store.Store]: one GET.
func (s *Store) Get(ctx context.Context, key string) (store.Entry, error) {
	if err := ctx.Err(); err != nil {
		return store.Entry{}, s.fail("get", err)
	}
	b, err := s.c.Get(ctx, s.kvKey(key)).Bytes()
	if errors.Is(err, goredis.Nil) {
		return store.Entry{}, store.ErrNotFound
	}
	if err != nil {
		return store.Entry{}, s.fail("get", err)
	}
	if len(b) < header {
		return store.Entry{}, s.fail("get", fmt.Errorf("entry %q is %d bytes, shorter than its header", key, len(b)))
	}
	version := binary.BigEndian.Uint64(b[:8])
	expires := int64(binary.BigEndian.Uint64(b[8:16]))
	e := store.Entry{Value: b[header:], Version: version} // b is ours: go-redis allocates it
	if expires != 0 {
		e.Expires = time.Unix(0, expires)
		if !time.Now().Before(e.Expires) {
			return store.Entry{}, store.ErrNotFound
		}
	}
	return e, nil
}

// CompareAndSwap implements [store.Store]: one Lua script on one key.
func (s *Store) CompareAndSwap(ctx context.Context, key string, oldVersion uint64, value []byte, expires time.Time) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, s.fail("compare and swap", err)
	}
	if oldVersion == math.MaxUint64 {
		return 0, store.ErrConflict // no entry reaches that version
	}
	now := time.Now()
	exp := nanos(expires)
	buf := make([]byte, header+len(value))
	binary.BigEndian.PutUint64(buf[:8], oldVersion+1)
	binary.BigEndian.PutUint64(buf[8:16], uint64(exp))
	copy(buf[header:], value)
	var old, clock [8]byte
	binary.BigEndian.PutUint64(old[:], oldVersion)
	binary.BigEndian.PutUint64(clock[:], uint64(nanos(now)))
	ttl := "0"
	if exp != 0 {
		ttl = ttlMillis(expires.Sub(now))
	}
	n, err := casScript.Run(ctx, s.c, []string{s.kvKey(key)}, old[:], clock[:], buf, ttl).Int()
	if err != nil {
		return 0, s.fail("compare and swap", err)
	}
	if n != 1 {
		return 0, store.ErrConflict
	}
	s.publishChange(ctx, key)
	return oldVersion + 1, nil
}

// Delete implements [store.Store]: one DEL.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return s.fail("delete", err)
	}
	if err := s.c.Del(ctx, s.kvKey(key)).Err(); err != nil {
		return s.fail("delete", err)
	}
	return nil
}

// MarkSeen implements [store.Store]: one SET NX PX (an EXISTS when the
// expiry has already passed, since nothing is then recorded).
func (s *Store) MarkSeen(ctx context.Context, id string, expires time.Time) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, s.fail("mark seen", err)
	}
	key := s.seenKey(id)
	var ttl time.Duration // 0: KeepTTL's zero, i.e. no expiry
	if !expires.IsZero() {
		ttl = time.Until(expires)
		if ttl <= 0 {
			// Recorded and forgotten at once: new unless a live copy exists.
			n, err := s.c.Exists(ctx, key).Result()
			if err != nil {
				return false, s.fail("mark seen", err)
			}
			return n == 0, nil
		}
		ttl = ttl.Round(0)
		if r := ttl % time.Millisecond; r != 0 {
			ttl += time.Millisecond - r // round up: never forget early
		}
	}
	ok, err := s.c.SetNX(ctx, key, "", ttl).Result()
	if err != nil {
		return false, s.fail("mark seen", err)
	}
	return ok, nil
}

// Close implements [store.Store]. It closes the client if the store owns it
// ([Options.CloseClient], or a store from [Open]).
func (s *Store) Close() error {
	if !s.close {
		return nil
	}
	if err := s.c.Close(); err != nil {
		return s.fail("close", err)
	}
	return nil
}

// ttlMillis is a TTL for PX: d in milliseconds rounded up, or "-1" if d is
// not positive (already expired).
func ttlMillis(d time.Duration) string {
	if d <= 0 {
		return "-1"
	}
	ms := (d + time.Millisecond - 1) / time.Millisecond
	return strconv.FormatInt(int64(ms), 10)
}

// nanos returns t as Unix nanoseconds: 0 for the zero time (never), and
// otherwise a positive value clamped to int64. Times at or before the Unix
// epoch become 1, in the past like them.
func nanos(t time.Time) int64 {
	switch {
	case t.IsZero():
		return 0
	case t.Before(time.Unix(0, 1)):
		return 1
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	}
	return t.UnixNano()
}
