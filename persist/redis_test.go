// The Redis tests run a real redis-server, which the CI's Debian provides;
// Linux for Pdeathsig (no redis-server outlives a killed test binary).

//go:build linux

package persist

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9/logging"

	"github.com/ftpsgate/ftpsgate/persist/redistest"
)

// quietRedis silences go-redis's own logger, which reports every failed
// dial: the tests that stop Redis make hundreds.
var quietRedis = sync.OnceFunc(logging.Disable)

// openRedisTest opens a RedisStore and closes it at the end of the test.
func openRedisTest(t *testing.T, url, prefix string) *RedisStore {
	t.Helper()
	quietRedis()
	s, err := OpenRedis(url, prefix)
	if err != nil {
		t.Fatalf("OpenRedis(%q): %v", url, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// openRedisUp opens a RedisStore on srv and waits until it has a working
// connection: the first command dials and says HELLO, which on a loaded
// machine (-race, 2 cores, other packages' tests) may exceed the store's
// time budget, and the tests are not about that.
func openRedisUp(t *testing.T, srv *redistest.Server, prefix string) *RedisStore {
	t.Helper()
	s := openRedisTest(t, srv.URL(), prefix)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, _, err := s.Get(context.Background(), "warm-up")
		if err == nil {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis on %s not usable within 10s: %v", srv.URL(), err)
		}
	}
}

func TestRedisStoreSharedPins(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a := openRedisUp(t, srv, "")
	b := openRedisUp(t, srv, "")
	other := openRedisUp(t, srv, "other:")
	ctx := context.Background()

	for _, tc := range []struct{ key, backend string }{
		{"ip:203.0.113.7", "ftp-a"},
		{"user:\xff\xfe bytes", "ftp-b"},
		{"pool|user:alice", "ftp c"},
	} {
		mustSet(t, a, tc.key, tc.backend, time.Minute)
		if got, ok := mustGet(t, b, tc.key); !ok || got != tc.backend {
			t.Errorf("instance b: Get(%q) = %q, %v; want instance a's pin %q", tc.key, got, ok, tc.backend)
		}
		if got, ok := mustGet(t, other, tc.key); ok {
			t.Errorf("a store with another prefix sees the pin %q", got)
		}
	}
	// Re-pinning by one instance is seen by the other.
	mustSet(t, b, "ip:203.0.113.7", "ftp-c", time.Minute)
	if got, _ := mustGet(t, a, "ip:203.0.113.7"); got != "ftp-c" {
		t.Errorf("after b re-pinned: a sees %q", got)
	}
	if err := b.Delete(ctx, "ip:203.0.113.7"); err != nil {
		t.Fatal(err)
	}
	if got, ok := mustGet(t, a, "ip:203.0.113.7"); ok {
		t.Errorf("after b deleted the pin: a sees %q", got)
	}
	// The keys are where the documentation says.
	if n, err := a.client.Exists(ctx, DefaultRedisPrefix+"user:alice").Result(); err != nil || n != 0 {
		t.Errorf("EXISTS of an unpinned key = %d, %v", n, err)
	}
	if v, err := a.client.Get(ctx, DefaultRedisPrefix+"pool|user:alice").Result(); err != nil || v != "ftp c" {
		t.Errorf("raw key %q = %q, %v", DefaultRedisPrefix+"pool|user:alice", v, err)
	}
	if a.Len() != -1 {
		t.Errorf("Len = %d, want -1", a.Len())
	}
}

func TestRedisStoreTTL(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	s := openRedisUp(t, srv, "")
	ctx := context.Background()
	pttl := func(key string) time.Duration {
		t.Helper()
		d, err := s.client.PTTL(ctx, DefaultRedisPrefix+key).Result()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}

	mustSet(t, s, "short", "ftp-a", time.Second)
	mustSet(t, s, "forever", "ftp-a", 0)
	mustSet(t, s, "sub-ms", "ftp-a", 1500*time.Microsecond)
	mustSet(t, s, "gone", "ftp-a", time.Hour)
	mustSet(t, s, "gone", "ftp-a", -time.Second) // negative: deleted

	if d := pttl("short"); d <= 0 || d > time.Second {
		t.Errorf("PTTL of a 1s pin = %v", d)
	}
	if d := pttl("forever"); d != -1 { // go-redis: -1 is no expiry
		t.Errorf("PTTL of a pin without expiry = %v, want -1 (none)", d)
	}
	if _, ok := mustGet(t, s, "gone"); ok {
		t.Error("a pin set with a negative ttl is still there")
	}
	if _, ok := mustGet(t, s, "short"); !ok {
		t.Fatal("a 1s pin is gone at once")
	}
	// Refreshing extends the expiry.
	mustSet(t, s, "refreshed", "ftp-b", 2*time.Second)
	time.Sleep(1200 * time.Millisecond)
	if _, ok := mustGet(t, s, "short"); ok {
		t.Error("a 1s pin is still there after 1.2s")
	}
	if _, ok := mustGet(t, s, "sub-ms"); ok {
		t.Error("a 1.5ms pin is still there after 1.2s")
	}
	mustSet(t, s, "refreshed", "ftp-b", 2*time.Second)
	time.Sleep(1200 * time.Millisecond) // 2.4s after the first Set
	if b, ok := mustGet(t, s, "refreshed"); !ok || b != "ftp-b" {
		t.Error("a refreshed pin expired with its first ttl")
	}
	if _, ok := mustGet(t, s, "forever"); !ok {
		t.Error("a pin without expiry is gone")
	}
}

// timed runs op and returns its error and how long it took.
func timed(op func() error) (time.Duration, error) {
	start := time.Now()
	err := op()
	return time.Since(start), err
}

// quickly is how long a store operation may take when Redis is away.
const quickly = 800 * time.Millisecond

// expectFastErrors checks that Get, Set and Delete fail, each quickly,
// several times in a row (go-redis changes its behaviour after repeated
// dial failures).
func expectFastErrors(t *testing.T, s *RedisStore, what string) {
	t.Helper()
	ctx := context.Background()
	for i := range 25 {
		for name, op := range map[string]func() error{
			"Get": func() error {
				b, ok, err := s.Get(ctx, "ip:203.0.113.7")
				if err == nil {
					return fmt.Errorf("no error, got %q, %v", b, ok)
				}
				return nil
			},
			"Set": func() error {
				if s.Set(ctx, "ip:203.0.113.7", "ftp-b", time.Minute) == nil {
					return fmt.Errorf("no error")
				}
				return nil
			},
			"Delete": func() error {
				if s.Delete(ctx, "ip:203.0.113.7") == nil {
					return fmt.Errorf("no error")
				}
				return nil
			},
		} {
			d, err := timed(op)
			if err != nil {
				t.Fatalf("%s, try %d: %s: %v", what, i, name, err)
			}
			if d > quickly {
				t.Fatalf("%s, try %d: %s took %v; want an error within %v", what, i, name, d, quickly)
			}
		}
	}
}

// expectRecovery waits until s can pin again and peer can read the pin.
// go-redis, after repeated dial failures, probes once a second: recovery
// takes about that long after Redis is back.
func expectRecovery(t *testing.T, s, peer *RedisStore, what string) {
	t.Helper()
	ctx := context.Background()
	start := time.Now()
	var err error
	for time.Since(start) < 10*time.Second {
		if err = s.Set(ctx, "ip:198.51.100.1", "ftp-c", time.Minute); err == nil {
			var b string
			var ok bool
			if b, ok, err = peer.Get(ctx, "ip:198.51.100.1"); err == nil {
				if !ok || b != "ftp-c" {
					t.Fatalf("%s: after recovery the peer sees %q, %v", what, b, ok)
				}
				t.Logf("%s: recovered in %v", what, time.Since(start).Round(time.Millisecond))
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: the stores did not recover within 10s: %v", what, err)
}

func TestRedisStoreDownAndBack(t *testing.T) {
	// Not parallel: it measures how long operations take, so it runs
	// before the parallel tests of the package compete for the CPU.
	srv := redistest.Start(t)
	a := openRedisUp(t, srv, "")
	b := openRedisUp(t, srv, "")
	mustSet(t, a, "ip:203.0.113.7", "ftp-a", time.Minute)
	mustGet(t, b, "ip:203.0.113.7") // both have a pooled connection now

	srv.Stop()
	expectFastErrors(t, a, "redis killed")
	expectFastErrors(t, b, "redis killed")

	srv.Restart() // the same port; no persistence, so the old pins are gone
	expectRecovery(t, a, b, "redis restarted")
	expectRecovery(t, b, a, "redis restarted")
	if _, ok := mustGet(t, a, "ip:203.0.113.7"); ok {
		t.Error("a pin survived a restart of a redis without persistence")
	}
}

func TestRedisStoreFrozen(t *testing.T) {
	// Not parallel: it measures how long operations take, so it runs
	// before the parallel tests of the package compete for the CPU.
	srv := redistest.Start(t)
	a := openRedisUp(t, srv, "")
	b := openRedisUp(t, srv, "")
	mustSet(t, a, "ip:203.0.113.7", "ftp-a", time.Minute)

	// A stopped process keeps its socket: connections are accepted by the
	// kernel and commands are never answered, the worst case for a client.
	srv.Signal(syscall.SIGSTOP)
	expectFastErrorsFrozen(t, a)

	srv.Signal(syscall.SIGCONT)
	expectRecovery(t, a, b, "redis resumed")
}

// expectFastErrorsFrozen is expectFastErrors for a frozen Redis, with
// fewer tries: each one waits out the timeouts.
func expectFastErrorsFrozen(t *testing.T, s *RedisStore) {
	t.Helper()
	ctx := context.Background()
	for i := range 3 {
		d, err := timed(func() error { _, _, err := s.Get(ctx, "ip:203.0.113.7"); return err })
		if err == nil || d > quickly {
			t.Fatalf("redis frozen, try %d: Get = %v after %v; want an error within %v", i, err, d, quickly)
		}
		d, err = timed(func() error { return s.Set(ctx, "ip:203.0.113.7", "ftp-b", time.Minute) })
		if err == nil || d > quickly {
			t.Fatalf("redis frozen, try %d: Set = %v after %v; want an error within %v", i, err, d, quickly)
		}
	}
}

// A caller's shorter deadline is honoured too.
func TestRedisStoreCallerDeadline(t *testing.T) {
	// Not parallel: it measures how long operations take, so it runs
	// before the parallel tests of the package compete for the CPU.
	srv := redistest.Start(t)
	s := openRedisUp(t, srv, "")
	mustSet(t, s, "k", "ftp-a", time.Minute)
	srv.Signal(syscall.SIGSTOP)
	defer srv.Signal(syscall.SIGCONT)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	d, err := timed(func() error { _, _, err := s.Get(ctx, "k"); return err })
	if err == nil || d >= redisBudget*8/10 {
		t.Fatalf("Get with a 50ms deadline = %v after %v; want an error well before the store's own budget", err, d)
	}
}

// Redis down when the proxy starts: OpenRedis succeeds, operations fail
// quickly. No redis-server needed.
func TestOpenRedisWithRedisDown(t *testing.T) {
	// Not parallel: it measures how long operations take, so it runs
	// before the parallel tests of the package compete for the CPU.
	url := fmt.Sprintf("redis://127.0.0.1:%d/0", redistest.FreePort(t))
	s := openRedisTest(t, url, "")
	expectFastErrors(t, s, "no redis")
}

func TestOpenRedisOptions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url        string
		wantErr    bool
		dial, read time.Duration
		retries    int
		budget     time.Duration
	}{
		{url: "redis://127.0.0.1:6379/0", dial: redisTimeout, read: redisTimeout, retries: 1, budget: redisBudget},
		{url: "redis://:secret@127.0.0.1:6379/3", dial: redisTimeout, read: redisTimeout, retries: 1, budget: redisBudget},
		{url: "redis://127.0.0.1:6379/0?dial_timeout=1s&read_timeout=2s", dial: time.Second, read: 2 * time.Second, retries: 1, budget: 3 * time.Second},
		{url: "redis://127.0.0.1:6379/0?max_retries=5", dial: redisTimeout, read: redisTimeout, retries: 5, budget: redisBudget},
		{url: "http://127.0.0.1:6379/0", wantErr: true},
		{url: "redis://127.0.0.1:6379/notanumber", wantErr: true},
		{url: "redis://127.0.0.1:6379/0?nonsense=1", wantErr: true},
	} {
		t.Run(tc.url, func(t *testing.T) {
			t.Parallel()
			s, err := OpenRedis(tc.url, "")
			if tc.wantErr {
				if err == nil {
					s.Close()
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			opt := s.client.Options()
			if opt.DialTimeout != tc.dial || opt.ReadTimeout != tc.read || opt.MaxRetries != tc.retries || s.budget != tc.budget {
				t.Errorf("dial %v, read %v, retries %d, budget %v; want %v, %v, %d, %v",
					opt.DialTimeout, opt.ReadTimeout, opt.MaxRetries, s.budget, tc.dial, tc.read, tc.retries, tc.budget)
			}
			if s.prefix != DefaultRedisPrefix {
				t.Errorf("prefix %q", s.prefix)
			}
		})
	}
}
