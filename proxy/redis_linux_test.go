package proxy

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9/logging"

	"github.com/ftpsgate/ftpsgate/persist"
	"github.com/ftpsgate/ftpsgate/persist/redistest"
)

// TestRedisAffinityAcrossInstances: two proxies share pins through a real
// redis-server; pins expire with their TTL; with Redis gone, sessions are
// still served, by policy.
func TestRedisAffinityAcrossInstances(t *testing.T) {
	logging.Disable() // go-redis reports each failed dial on stderr
	srv := redistest.Start(t)
	f := newFleet(t, 3)
	instance := func() *harness {
		store, err := persist.OpenRedis(srv.URL(), "ftpsgate-test:")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		return poolHarness(t, f, func(c *Config) {
			c.Balance.Affinity = SourceAffinity
			c.Balance.AffinityTTL = 2 * time.Second
			c.Balance.Store = store
			c.Health.Disabled = true
		})
	}
	h1, h2 := instance(), instance()
	ip := net.IPv4(127, 0, 0, 9)

	// Instance 1 pins the client; round robin on instance 2 would give b0,
	// so turn it past the pinned backend first.
	c, _ := login(t, h1.explicit(), net.IPv4(127, 0, 0, 8), "alice")
	c.Quit()
	c, pinned := login(t, h1.explicit(), ip, "alice") // b1
	c.Quit()
	for range 3 {
		c, b := login(t, h2.explicit(), ip, "alice")
		c.Quit()
		if b != pinned {
			t.Fatalf("instance 2 sent the client pinned by instance 1 to b%d, not b%d", b, pinned)
		}
	}

	// Expiry: with no session for longer than the TTL, the pin is gone and
	// round robin decides again. Instance 2 has chosen three times (b0, b1,
	// b2, each overridden by the pin), so its turn is at b0 again.
	time.Sleep(2500 * time.Millisecond)
	c, b := login(t, h2.explicit(), ip, "alice")
	c.Quit()
	if b == pinned {
		t.Errorf("the pin outlived its TTL: the client went to b%d again", b)
	}

	// Redis gone: sessions still work, the failure is logged.
	srv.Stop()
	for range 3 {
		c, _ := login(t, h1.explicit(), ip, "alice")
		c.Quit()
	}
	if !strings.Contains(h1.logs.String(), "affinity store unavailable") {
		t.Error("the Redis failure was not logged")
	}
}
