package tlsoffload

// A real ACME exchange: Pebble (github.com/letsencrypt/pebble/v2), the test
// CA of Let's Encrypt, runs in-process with its own validation authority,
// which really fetches the http-01 token from ftpsgate's challenge listener
// (and really does the tls-alpn-01 handshake) after resolving the names
// through a DNS server of the test that answers 127.0.0.1.
// PEBBLE_VA_ALWAYS_VALID is never set.

import (
	"context"
	"crypto/tls"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/tlsoffload/pebbletest"
)

// acmeConfig is an ACME section for p, answering http-01.
func acmeConfig(p *pebbletest.CA, cacheDir string, domains ...string) ACMEConfig {
	return ACMEConfig{
		Domains:         domains,
		Email:           "ops@example.com",
		CacheDir:        cacheDir,
		DirectoryURL:    p.DirURL,
		DirectoryCAFile: p.TLSCAFile,
		HTTPListen:      p.HTTPListen(),
	}
}

// running starts o the way the proxy does (Start, then Run in the
// background) and stops it, listeners closed, at cleanup or when stop is
// called.
func running(t *testing.T, o *Offload) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	if err := o.Start(ctx); err != nil {
		cancel()
		t.Fatalf("Start: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// TestACMEPebble: certificates obtained at start with http-01 validated
// for real, served by SNI and by default, verified against Pebble's root;
// a restart on the same cache orders nothing; a failure carries the CA's
// message; no other name triggers an order; tls-alpn-01.
func TestACMEPebble(t *testing.T) {
	t.Parallel()
	p := pebbletest.Start(t, 0) // Pebble's default validity, 90 days
	cacheDir := t.TempDir()
	domains := []string{"ftp.pebble.test", "files.pebble.test"}

	var ev1 events
	o1, err := New(Config{ACME: acmeConfig(p, cacheDir, domains...), OnEvent: ev1.add})
	if err != nil {
		t.Fatal(err)
	}
	if o1.Certificate() != nil {
		t.Fatal("a certificate before Start, from an empty cache")
	}
	start := time.Now()
	stop1 := running(t, o1)
	t.Logf("two certificates obtained in %s", time.Since(start).Round(time.Millisecond))
	if n := p.Orders.Load(); n != 2 {
		t.Errorf("%d orders for 2 domains", n)
	}
	if n := ev1.count(EventObtained); n != 2 {
		t.Errorf("%d obtained events, want 2: %v", n, ev1.list())
	}
	for _, d := range domains {
		if !strings.Contains(p.Log.String(), "Attempting to validate w/ HTTP: http://"+d+":"+strconv.Itoa(p.HTTPPort)+"/.well-known/acme-challenge/") {
			t.Errorf("pebble did not validate %s over http-01", d)
		}
	}
	if strings.Contains(p.Log.String(), "tls-alpn-01") {
		t.Error("tls-alpn-01 attempted though not served (costs a failed validation per order)")
	}

	srv := startServer(t, o1.TLSConfig)
	serials := map[string]string{}
	for _, d := range domains {
		c, err := dial(t, srv.addr, &tls.Config{ServerName: d, RootCAs: p.Roots})
		if err != nil {
			t.Fatalf("%s: chain does not verify against Pebble's root: %v", d, err)
		}
		echo(t, c, "some file contents")
		cs := c.ConnectionState()
		c.Close()
		if len(cs.PeerCertificates) < 2 {
			t.Errorf("%s: served %d certificates, want the chain", d, len(cs.PeerCertificates))
		}
		serials[d] = leafSerial(cs)
	}
	// No SNI, and a name that is not configured: the default, first domain,
	// and no order for the stranger.
	for _, sni := range []string{"", "evil.pebble.test"} {
		cs, err := handshake(t, srv.addr, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
		if err != nil {
			t.Fatalf("SNI %q: %v", sni, err)
		}
		if got := cs.PeerCertificates[0].DNSNames; len(got) != 1 || got[0] != domains[0] {
			t.Errorf("SNI %q: served %v, want the default %s", sni, got, domains[0])
		}
	}
	if err := o1.acme.hostPolicy(context.Background(), "evil.pebble.test"); err == nil {
		t.Error("host policy allows an unconfigured name")
	}
	if err := o1.acme.hostPolicy(context.Background(), "FTP.pebble.test:5002"); err != nil {
		t.Errorf("host policy refuses a configured name with a port: %v", err)
	}
	if n := p.Orders.Load(); n != 2 {
		t.Errorf("%d orders after handshakes: a handshake placed one", n)
	}
	stop1()

	t.Run("restart reuses the cache", func(t *testing.T) {
		var ev events
		o2, err := New(Config{ACME: acmeConfig(p, cacheDir, domains...), OnEvent: ev.add})
		if err != nil {
			t.Fatal(err)
		}
		if n := ev.count(EventLoaded); n != 2 {
			t.Errorf("%d loaded events at New, want 2: %v", n, ev.list())
		}
		if o2.Certificate() == nil {
			t.Fatal("no certificate from the cache before Start")
		}
		o2.acme.checkEvery = 50 * time.Millisecond // exercise Run's checks too
		running(t, o2)
		time.Sleep(200 * time.Millisecond)
		if n := p.Orders.Load(); n != 2 {
			t.Errorf("restart placed %d new orders", n-2)
		}
		srv := startServer(t, o2.TLSConfig)
		for _, d := range domains {
			cs, err := handshake(t, srv.addr, &tls.Config{ServerName: d, RootCAs: p.Roots})
			if err != nil {
				t.Fatal(err)
			}
			if got := leafSerial(cs); got != serials[d] {
				t.Errorf("%s: serial %s after restart, want the cached %s", d, got, serials[d])
			}
		}
		if n := ev.count(EventObtained) + ev.count(EventRenewed) + ev.count(EventFailed); n != 0 {
			t.Errorf("events after restart: %v", ev.list())
		}
	})

	t.Run("failure carries the CA's message", func(t *testing.T) {
		o3, err := New(Config{ACME: acmeConfig(p, t.TempDir(), "unreachable.pebble.test")})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err = o3.Start(ctx)
		var oe *ObtainError
		if !errors.As(err, &oe) {
			t.Fatalf("Start: %v, want an ObtainError", err)
		}
		t.Logf("Start: %v", err)
		if oe.Domain != "unreachable.pebble.test" || !strings.Contains(oe.CA, "http-01 challenge: connection") || !strings.Contains(err.Error(), "127.0.0.2") {
			t.Errorf("the CA's message is missing: %v", err)
		}
		if oe.Retry.Before(time.Now().Add(4 * time.Minute)) {
			t.Errorf("retry at %s: want a backoff of about 5 minutes", oe.Retry)
		}
		if _, err := o3.getCertificate(&tls.ClientHelloInfo{ServerName: "unreachable.pebble.test"}); err == nil {
			t.Error("a certificate for a domain that has none")
		}
		cancel()
		o3.wg.Wait() // the challenge listener is closed
	})

	t.Run("Run without Start reports failures as events", func(t *testing.T) {
		var ev events
		o, err := New(Config{ACME: acmeConfig(p, t.TempDir(), "unreachable.pebble.test"), OnEvent: ev.add})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- o.Run(ctx) }()
		failed := ev.waitFor(t, 30*time.Second, "failed", func(e Event) bool { return e.Kind == EventFailed })
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		var oe *ObtainError
		if !errors.As(failed.Err, &oe) || !strings.Contains(failed.Err.Error(), "connection refused") || failed.Names[0] != "unreachable.pebble.test" {
			t.Errorf("event %v", failed)
		}
	})

	t.Run("tls-alpn-01", func(t *testing.T) {
		alpn := "127.0.0.1:" + strconv.Itoa(p.TLSPort)
		cfg := acmeConfig(p, t.TempDir(), "alpn.pebble.test")
		cfg.HTTPListen, cfg.TLSALPNListen = "off", alpn
		var ev events
		o4, err := New(Config{ACME: cfg, OnEvent: ev.add})
		if err != nil {
			t.Fatal(err)
		}
		running(t, o4)
		if ev.count(EventObtained) != 1 {
			t.Errorf("events: %v", ev.list())
		}
		if got := o4.Certificate(); got == nil || got.Leaf.VerifyHostname("alpn.pebble.test") != nil {
			t.Fatal("no certificate for alpn.pebble.test")
		}
		// The challenge listener answers acme-tls/1 only.
		if _, err := handshake(t, alpn, &tls.Config{ServerName: "alpn.pebble.test", InsecureSkipVerify: true}); err == nil {
			t.Error("the tls-alpn-01 listener completed a handshake without acme-tls/1")
		}
		if got := o4.TLSConfig().NextProtos; len(got) != 1 || got[0] != "ftp" {
			t.Errorf("FTPS NextProtos = %q: acme-tls/1 belongs on the challenge listener only", got)
		}
	})
}

// TestACMERenewal: short-lived certificates are renewed before expiry by
// autocert's timers, reported, and served to new handshakes.
func TestACMERenewal(t *testing.T) {
	t.Parallel()
	p := pebbletest.Start(t, 12*time.Second)
	var ev events
	cfg := acmeConfig(p, t.TempDir(), "renew.pebble.test")
	cfg.RenewBefore = 9 * time.Second // renewal due about 3 s after issue
	o, err := New(Config{ACME: cfg, OnEvent: ev.add})
	if err != nil {
		t.Fatal(err)
	}
	running(t, o)
	first := o.Certificate()
	if first == nil {
		t.Fatal("no certificate")
	}
	if life := first.Leaf.NotAfter.Sub(first.Leaf.NotBefore); life > 15*time.Second {
		t.Fatalf("certificate valid for %s: Pebble's validity not applied", life)
	}
	renewed := ev.waitFor(t, 30*time.Second, "renewed", func(e Event) bool { return e.Kind == EventRenewed })
	if renewed.Serial == serial(first) || !renewed.NotAfter.After(first.Leaf.NotAfter) {
		t.Errorf("renewed event %v: want a new serial, later expiry than %s", renewed, first.Leaf.NotAfter)
	}
	srv := startServer(t, o.TLSConfig)
	cs, err := handshake(t, srv.addr, &tls.Config{ServerName: "renew.pebble.test", RootCAs: p.Roots})
	if err != nil {
		t.Fatal(err)
	}
	if leafSerial(cs) == serial(first) {
		t.Error("a new handshake still gets the first certificate")
	}
	if n := ev.count(EventFailed); n != 0 {
		t.Errorf("failures: %v", ev.list())
	}
}
