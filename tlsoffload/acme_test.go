package tlsoffload

// A real ACME exchange: Pebble (github.com/letsencrypt/pebble/v2), the test
// CA of Let's Encrypt, runs in-process with its own validation authority,
// which really fetches the http-01 token from ftpsgate's challenge listener
// (and really does the tls-alpn-01 handshake) after resolving the names
// through a DNS server of the test that answers 127.0.0.1.
// PEBBLE_VA_ALWAYS_VALID is never set.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"
)

func TestMain(m *testing.M) {
	// Pebble's validation authority sleeps up to 5 s before each validation
	// and its front end rejects 5% of nonces, to exercise clients; neither
	// is what these tests are about. Read when Pebble is built, in the tests.
	os.Setenv("PEBBLE_VA_NOSLEEP", "1")
	os.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	os.Exit(m.Run())
}

// pebbleCA is an in-process Pebble.
type pebbleCA struct {
	dirURL    string         // the ACME directory
	tlsCAFile string         // trust for the directory's HTTPS (ACMEConfig.DirectoryCAFile)
	roots     *x509.CertPool // the root Pebble issues under
	httpPort  int            // where its VA fetches http-01 tokens
	tlsPort   int            // where its VA does tls-alpn-01
	orders    atomic.Int32   // new-order requests
	log       *logBuffer
}

// startPebble runs a Pebble whose certificates are valid for validity.
func startPebble(t *testing.T, validity time.Duration) *pebbleCA {
	t.Helper()
	if os.Getenv("PEBBLE_VA_ALWAYS_VALID") != "" {
		t.Fatal("PEBBLE_VA_ALWAYS_VALID is set: this test is about real validation")
	}
	p := &pebbleCA{httpPort: freePort(t), tlsPort: freePort(t), log: &logBuffer{}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pebble log:\n%s", p.log)
		}
	})
	logger := log.New(p.log, "pebble ", log.Lmicroseconds)
	store := db.NewMemoryStore()
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{
		"default": {Description: "ftpsgate test", ValidityPeriod: uint64(validity / time.Second)},
	})
	validator := va.New(logger, p.httpPort, p.tlsPort, false, startDNS(t), store)
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	handler := front.Handler()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/order-plz" {
			p.orders.Add(1)
		}
		handler.ServeHTTP(w, r)
	}))
	srv.Config.ErrorLog = logger
	srv.StartTLS()
	t.Cleanup(srv.Close)
	p.dirURL = srv.URL + "/dir"
	p.tlsCAFile = filepath.Join(t.TempDir(), "pebble-https.pem")
	os.WriteFile(p.tlsCAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	p.roots = x509.NewCertPool()
	p.roots.AddCert(authority.GetRootCert(0).Cert)
	return p
}

// startDNS answers every A query with 127.0.0.1, except for names under
// "unreachable.", which get 127.0.0.2 where nothing listens, and AAAA
// queries with nothing. Pebble's VA asks over TCP.
func startDNS(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{
		Listener:          ln,
		NotifyStartedFunc: func() { close(started) },
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
			m := new(dns.Msg)
			m.SetReply(r)
			for _, q := range r.Question {
				if q.Qtype != dns.TypeA {
					continue
				}
				ip := "127.0.0.1"
				if strings.HasPrefix(q.Name, "unreachable.") {
					ip = "127.0.0.2"
				}
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET}, A: net.ParseIP(ip)})
			}
			w.WriteMsg(m)
		}),
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { srv.Shutdown(); <-done })
	return ln.Addr().String()
}

// freePort finds a loopback port that is free now. Pebble's VA takes the
// challenge ports before ftpsgate binds them, hence the small race.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// acmeConfig is an ACME section for p, answering http-01.
func (p *pebbleCA) acmeConfig(cacheDir string, domains ...string) ACMEConfig {
	return ACMEConfig{
		Domains:         domains,
		Email:           "ops@example.com",
		CacheDir:        cacheDir,
		DirectoryURL:    p.dirURL,
		DirectoryCAFile: p.tlsCAFile,
		HTTPListen:      "127.0.0.1:" + strconv.Itoa(p.httpPort),
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
	p := startPebble(t, 0) // Pebble's default validity, 90 days
	cacheDir := t.TempDir()
	domains := []string{"ftp.pebble.test", "files.pebble.test"}

	var ev1 events
	o1, err := New(Config{ACME: p.acmeConfig(cacheDir, domains...), OnEvent: ev1.add})
	if err != nil {
		t.Fatal(err)
	}
	if o1.Certificate() != nil {
		t.Fatal("a certificate before Start, from an empty cache")
	}
	start := time.Now()
	stop1 := running(t, o1)
	t.Logf("two certificates obtained in %s", time.Since(start).Round(time.Millisecond))
	if n := p.orders.Load(); n != 2 {
		t.Errorf("%d orders for 2 domains", n)
	}
	if n := ev1.count(EventObtained); n != 2 {
		t.Errorf("%d obtained events, want 2: %v", n, ev1.list())
	}
	for _, d := range domains {
		if !strings.Contains(p.log.String(), "Attempting to validate w/ HTTP: http://"+d+":"+strconv.Itoa(p.httpPort)+"/.well-known/acme-challenge/") {
			t.Errorf("pebble did not validate %s over http-01", d)
		}
	}
	if strings.Contains(p.log.String(), "tls-alpn-01") {
		t.Error("tls-alpn-01 attempted though not served (costs a failed validation per order)")
	}

	srv := startServer(t, o1.TLSConfig)
	serials := map[string]string{}
	for _, d := range domains {
		c, err := dial(t, srv.addr, &tls.Config{ServerName: d, RootCAs: p.roots})
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
	if n := p.orders.Load(); n != 2 {
		t.Errorf("%d orders after handshakes: a handshake placed one", n)
	}
	stop1()

	t.Run("restart reuses the cache", func(t *testing.T) {
		var ev events
		o2, err := New(Config{ACME: p.acmeConfig(cacheDir, domains...), OnEvent: ev.add})
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
		if n := p.orders.Load(); n != 2 {
			t.Errorf("restart placed %d new orders", n-2)
		}
		srv := startServer(t, o2.TLSConfig)
		for _, d := range domains {
			cs, err := handshake(t, srv.addr, &tls.Config{ServerName: d, RootCAs: p.roots})
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
		o3, err := New(Config{ACME: p.acmeConfig(t.TempDir(), "unreachable.pebble.test")})
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
		o, err := New(Config{ACME: p.acmeConfig(t.TempDir(), "unreachable.pebble.test"), OnEvent: ev.add})
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
		alpn := "127.0.0.1:" + strconv.Itoa(p.tlsPort)
		cfg := p.acmeConfig(t.TempDir(), "alpn.pebble.test")
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
	p := startPebble(t, 12*time.Second)
	var ev events
	cfg := p.acmeConfig(t.TempDir(), "renew.pebble.test")
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
	cs, err := handshake(t, srv.addr, &tls.Config{ServerName: "renew.pebble.test", RootCAs: p.roots})
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
