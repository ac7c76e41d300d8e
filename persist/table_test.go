package persist

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	_ Store = (*Table)(nil)
	_ Store = (*FileStore)(nil)
	_ Store = (*RedisStore)(nil)
)

// fakeClock is a settable clock for Table.now.
type fakeClock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 11, 26, 9, 30, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// order returns the keys of t, the most recently used first, and checks
// that the recency list and the map agree.
func order(t *testing.T, tab *Table) []string {
	t.Helper()
	tab.mu.Lock()
	defer tab.mu.Unlock()
	var ks []string
	if tab.m == nil {
		return ks
	}
	for e := tab.root.next; e != &tab.root; e = e.next {
		if e.next.prev != e {
			t.Fatalf("recency list broken at %q", e.key)
		}
		if tab.m[e.key] != e {
			t.Fatalf("key %q in the list but not in the map", e.key)
		}
		ks = append(ks, e.key)
	}
	if len(ks) != len(tab.m) {
		t.Fatalf("%d entries in the list, %d in the map", len(ks), len(tab.m))
	}
	return ks
}

// mustGet returns the pin of key, failing the test on an error.
func mustGet(t *testing.T, s Store, key string) (string, bool) {
	t.Helper()
	b, ok, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return b, ok
}

// mustSet pins key, failing the test on an error.
func mustSet(t *testing.T, s Store, key, backend string, ttl time.Duration) {
	t.Helper()
	if err := s.Set(context.Background(), key, backend, ttl); err != nil {
		t.Fatalf("Set(%q, %q, %v): %v", key, backend, ttl, err)
	}
}

func TestTableTTL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		ttl     time.Duration
		refresh time.Duration // a second Set after half the wait, if nonzero
		wait    time.Duration
		want    bool
	}{
		{"zero ttl never expires", 0, 0, 10000 * time.Hour, true},
		{"before expiry", time.Minute, 0, time.Minute - time.Nanosecond, true},
		{"at expiry", time.Minute, 0, time.Minute, false},
		{"after expiry", time.Minute, 0, time.Hour, false},
		{"refresh extends", time.Minute, time.Minute, 90 * time.Second, true},
		{"refresh with zero ttl removes expiry", time.Minute, -1, 1000 * time.Hour, true},
		{"negative ttl stores nothing", -time.Second, 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clk := newFakeClock()
			tab := NewTable(10)
			tab.now = clk.Now
			mustSet(t, tab, "ip:203.0.113.7", "ftp-a", tc.ttl)
			clk.Advance(tc.wait / 2)
			if tc.refresh > 0 {
				mustSet(t, tab, "ip:203.0.113.7", "ftp-a", tc.refresh)
			} else if tc.refresh < 0 {
				mustSet(t, tab, "ip:203.0.113.7", "ftp-a", 0)
			}
			clk.Advance(tc.wait - tc.wait/2)
			b, ok := mustGet(t, tab, "ip:203.0.113.7")
			if ok != tc.want || ok && b != "ftp-a" {
				t.Fatalf("Get = %q, %v; want ok %v", b, ok, tc.want)
			}
			if !ok && tab.Len() != 0 {
				t.Errorf("expired pin still held after Get: Len %d", tab.Len())
			}
		})
	}
}

func TestTableNegativeTTLRemovesPin(t *testing.T) {
	t.Parallel()
	tab := NewTable(0)
	mustSet(t, tab, "k", "ftp-a", time.Hour)
	mustSet(t, tab, "k", "ftp-b", -time.Second)
	if b, ok := mustGet(t, tab, "k"); ok {
		t.Fatalf("pin %q survived a negative ttl", b)
	}
}

func TestTableRefreshReplacesBackend(t *testing.T) {
	t.Parallel()
	tab := NewTable(0)
	mustSet(t, tab, "k", "ftp-a", time.Hour)
	mustSet(t, tab, "k", "ftp-b", time.Hour)
	if b, _ := mustGet(t, tab, "k"); b != "ftp-b" || tab.Len() != 1 {
		t.Fatalf("after re-pinning: Get = %q, Len %d; want ftp-b, 1", b, tab.Len())
	}
}

func TestTableLRU(t *testing.T) {
	t.Parallel()
	// Operations on a table of 3: "s k" sets k, "g k" gets k, "d k"
	// deletes k. want is the contents afterwards, most recent first.
	for _, tc := range []struct {
		name string
		ops  string
		want string
	}{
		{"fills up", "s a, s b, s c", "c b a"},
		{"evicts the oldest", "s a, s b, s c, s d", "d c b"},
		{"evicts in insertion order", "s a, s b, s c, s d, s e, s f", "f e d"},
		{"get refreshes", "s a, s b, s c, g a, s d", "d a c"},
		{"set refreshes", "s a, s b, s c, s a, s d", "d a c"},
		{"get of a missing key changes nothing", "s a, s b, s c, g x, s d", "d c b"},
		{"delete makes room", "s a, s b, s c, d b, s d", "d c a"},
		{"every get counts", "s a, s b, s c, g a, g b, g c, g a, s d, s e", "e d a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tab := NewTable(3)
			for op := range strings.SplitSeq(tc.ops, ", ") {
				verb, key, _ := strings.Cut(op, " ")
				switch verb {
				case "s":
					mustSet(t, tab, key, "ftp-"+key, 0)
				case "g":
					mustGet(t, tab, key)
				case "d":
					tab.Delete(context.Background(), key)
				}
			}
			if got := strings.Join(order(t, tab), " "); got != tc.want {
				t.Fatalf("after %s: table holds %q, want %q", tc.ops, got, tc.want)
			}
			for _, k := range strings.Fields(tc.want) {
				if b, ok := mustGet(t, tab, k); !ok || b != "ftp-"+k {
					t.Errorf("Get(%q) = %q, %v", k, b, ok)
				}
			}
		})
	}
}

func TestTableSizeBound(t *testing.T) {
	t.Parallel()
	if NewTable(0).limit() != DefaultMaxEntries || NewTable(-5).limit() != DefaultMaxEntries {
		t.Fatal("maxEntries <= 0 must mean DefaultMaxEntries")
	}
	for _, tc := range []struct {
		name string
		tab  *Table
		want int
	}{
		{"explicit", NewTable(100), 100},
		{"one", NewTable(1), 1},
		{"zero Table", new(Table), DefaultMaxEntries},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := tc.want + tc.want/2 + 10
			for i := range n {
				mustSet(t, tc.tab, fmt.Sprint(i), "ftp-a", time.Hour)
				if l := tc.tab.Len(); l > tc.want {
					t.Fatalf("Len %d > bound %d after %d sets", l, tc.want, i+1)
				}
			}
			if l := tc.tab.Len(); l != tc.want {
				t.Fatalf("Len %d after %d sets, want %d", l, n, tc.want)
			}
			// The most recent pins are the ones kept.
			if _, ok := mustGet(t, tc.tab, fmt.Sprint(n-1)); !ok {
				t.Error("the newest pin was evicted")
			}
			if _, ok := mustGet(t, tc.tab, fmt.Sprint(n-tc.want-1)); ok {
				t.Error("a pin beyond the bound survived")
			}
		})
	}
}

func TestTablePurge(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	tab := NewTable(0)
	tab.now = clk.Now
	for i := range 10 {
		mustSet(t, tab, fmt.Sprint(i), "ftp-a", time.Duration(i)*time.Minute) // 0: no expiry
	}
	clk.Advance(5 * time.Minute)
	if n := tab.Purge(); n != 5 { // 1m .. 5m
		t.Fatalf("Purge dropped %d pins, want 5", n)
	}
	if got := order(t, tab); !slices.Equal(got, []string{"9", "8", "7", "6", "0"}) {
		t.Fatalf("after Purge: %v", got)
	}
	if tab.Close() != nil || tab.Len() != 5 {
		t.Fatal("Close of a Table must do nothing")
	}
}

func TestTableConcurrent(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	const bound = 64
	tab := NewTable(bound)
	tab.now = clk.Now
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for range 5000 {
				key := fmt.Sprint("k", r.IntN(200))
				switch r.IntN(10) {
				case 0:
					tab.Delete(ctx, key)
				case 1:
					clk.Advance(time.Second)
				case 2:
					if l := tab.Len(); l > bound {
						t.Errorf("Len %d > %d", l, bound)
					}
				case 3:
					tab.Purge()
				case 4, 5, 6:
					tab.Set(ctx, key, "b-"+key, time.Duration(r.IntN(60))*time.Second)
				default:
					// A key is only ever pinned to its own backend: a
					// torn entry would show here.
					if b, ok, _ := tab.Get(ctx, key); ok && b != "b-"+key {
						t.Errorf("Get(%q) = %q", key, b)
					}
				}
			}
		})
	}
	wg.Wait()
	if n := len(order(t, tab)); n > bound {
		t.Fatalf("%d entries, bound %d", n, bound)
	}
}
