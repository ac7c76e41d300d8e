package integration

import (
	"crypto/tls"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/ftpsgate/ftpsgate/persist/redistest"
	"github.com/ftpsgate/ftpsgate/tlsoffload/pebbletest"
)

// TestACMEWithPebble: the binary obtains its certificate from a real ACME
// CA (Pebble, validating http-01 for real), an FTPS client verifies the
// chain against Pebble's root and transfers a file, and a restart reuses
// the cached certificate without a new order.
func TestACMEWithPebble(t *testing.T) {
	ca := pebbletest.Start(t, 0)
	backend := memBackend(t)
	backend.FS.WriteFile("/acme.txt", []byte("served under an ACME certificate\n"))
	dir := t.TempDir()
	cfg := filepath.Join(dir, "ftpsgate.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
[tls.acme]
domains = ["ftp.pebble.test"]
email = "ops@example.com"
cache_dir = %q
directory_url = %q
directory_ca_file = %q
http_listen = %q

[[backend]]
address = %q
`, filepath.Join(dir, "acme"), ca.DirURL, ca.TLSCAFile, ca.HTTPListen(), backend.Addr())), 0o600)

	transfer := func(p *proxyProc) {
		t.Helper()
		c, err := ftp.Dial(p.explicit, ftp.DialWithTimeout(10*time.Second),
			ftp.DialWithExplicitTLS(&tls.Config{ServerName: "ftp.pebble.test", RootCAs: ca.Roots, ClientSessionCache: tls.NewLRUClientSessionCache(4)}))
		if err != nil {
			t.Fatalf("verified FTPS connection: %v", err)
		}
		defer c.Quit()
		if err := c.Login("curl", "curl-pw"); err != nil {
			t.Fatal(err)
		}
		r, err := c.Retr("acme.txt")
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(r)
		if err := r.Close(); err != nil || string(got) != "served under an ACME certificate\n" {
			t.Fatalf("got %q, %v", got, err)
		}
	}

	p := startProxy(t, "--config", cfg)
	transfer(p)
	orders := ca.Orders.Load()
	if orders != 1 {
		t.Fatalf("%d orders for one domain", orders)
	}
	if len(p.records("certificate")) == 0 {
		t.Error("obtaining the certificate was not logged")
	}
	p.stop(t)

	p2 := startProxy(t, "--config", cfg)
	transfer(p2)
	if n := ca.Orders.Load(); n != orders {
		t.Errorf("the restart ordered again: %d orders", n)
	}
}

// TestACMECacheInRedis: two instances of a fleet share the ACME cache in
// Redis: the second serves the first one's certificate without ordering.
func TestACMECacheInRedis(t *testing.T) {
	ca := pebbletest.Start(t, 0)
	rds := redistest.Start(t)
	backend := memBackend(t)
	config := func(name string) string {
		dir := t.TempDir()
		cfg := filepath.Join(dir, name+".toml")
		os.WriteFile(cfg, []byte(fmt.Sprintf(`
[tls.acme]
domains = ["fleet.pebble.test"]
cache = "redis"
directory_url = %q
directory_ca_file = %q
http_listen = %q

[balance]
redis_url = %q

[[backend]]
address = %q
`, ca.DirURL, ca.TLSCAFile, ca.HTTPListen(), rds.URL(), backend.Addr())), 0o600)
		return cfg
	}
	verify := func(p *proxyProc) {
		t.Helper()
		c, err := ftp.Dial(p.explicit, ftp.DialWithTimeout(10*time.Second),
			ftp.DialWithExplicitTLS(&tls.Config{ServerName: "fleet.pebble.test", RootCAs: ca.Roots, ClientSessionCache: tls.NewLRUClientSessionCache(4)}))
		if err != nil {
			t.Fatalf("verified FTPS connection: %v", err)
		}
		c.Quit()
	}
	p1 := startProxy(t, "--config", config("one"))
	verify(p1)
	if n := ca.Orders.Load(); n != 1 {
		t.Fatalf("%d orders", n)
	}
	p1.stop(t) // the second instance's http-01 listener takes the same port
	p2 := startProxy(t, "--config", config("two"))
	verify(p2)
	if n := ca.Orders.Load(); n != 1 {
		t.Errorf("the second instance ordered again: %d orders", n)
	}
}
