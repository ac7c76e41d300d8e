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
			ftp.DialWithExplicitTLS(&tls.Config{ServerName: "ftp.pebble.test", RootCAs: ca.Roots}))
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
