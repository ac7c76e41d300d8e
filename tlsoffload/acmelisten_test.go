package tlsoffload

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/acme/autocert"
)

// freeAddr is a loopback address with a port nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// unreachableACME is an ACME section whose CA refuses connections, so
// that Start fails at once, with its http-01 listener on a free port.
func unreachableACME(t *testing.T, domains ...string) ACMEConfig {
	return ACMEConfig{
		Domains:      domains,
		CacheDir:     t.TempDir(),
		DirectoryURL: "https://" + freeAddr(t) + "/dir",
		HTTPListen:   freeAddr(t),
	}
}

// TestACMEChallengeListenerClosesIdle: a keep-alive connection to the
// http-01 listener is closed once idle, not kept for ever.
func TestACMEChallengeListenerClosesIdle(t *testing.T) {
	t.Parallel()
	cfg := unreachableACME(t, "ftp.example.com")
	o, err := New(Config{ACME: cfg})
	if err != nil {
		t.Fatal(err)
	}
	o.acme.challengeTimeout = 200 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); o.wg.Wait() }()
	o.Start(ctx) // fails: the CA is unreachable; the listener stays

	c, err := net.Dial("tcp", cfg.HTTPListen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /.well-known/acme-challenge/x HTTP/1.1\r\nHost: ftp.example.com\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.Close {
		t.Fatal("the server closes after one request: keep-alive not exercised")
	}
	// Far beyond the idle timeout; a connection kept open fails here.
	c.SetReadDeadline(time.Now().Add(15 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("idle connection not closed by the server: %v", err)
	}
}

// TestACMEStartReportsFailures: every domain Start could not obtain a
// certificate for is reported as an event at once (not only at Run's
// first retry, minutes later), and once, whether Start or Run called it.
func TestACMEStartReportsFailures(t *testing.T) {
	t.Parallel()
	domains := []string{"ftp.example.com", "files.example.com"}
	for _, viaRun := range []bool{false, true} {
		var ev events
		o, err := New(Config{ACME: unreachableACME(t, domains...), OnEvent: ev.add})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		if viaRun {
			go func() { done <- o.Run(ctx) }()
			for _, d := range domains {
				ev.waitFor(t, 30*time.Second, "failed "+d, func(e Event) bool { return e.Kind == EventFailed && e.Names[0] == d })
			}
		} else {
			err := o.Start(ctx)
			if n := len(collectObtainErrors(err)); n != 2 {
				t.Errorf("Start: %v, want 2 ObtainErrors", err)
			}
			close(done)
		}
		cancel()
		<-done
		o.wg.Wait()
		failed := map[string]int{}
		for _, e := range ev.list() {
			var oe *ObtainError
			if e.Kind == EventFailed && errors.As(e.Err, &oe) && e.Source == "acme" && len(e.Names) == 1 && e.Names[0] == oe.Domain {
				failed[oe.Domain]++
			}
		}
		for _, d := range domains {
			if failed[d] != 1 {
				t.Errorf("via Run %v: %s reported %d times: %v", viaRun, d, failed[d], ev.list())
			}
		}
	}
}

// TestACMENoRetryWhileAutocertRemembersFailure: right after a failed
// order, a retry asked for (SIGHUP's reload) waits until autocert has
// forgotten the failure; before, it got "missing certificate" from
// autocert without asking the CA, and counted as one more failure.
func TestACMENoRetryWhileAutocertRemembersFailure(t *testing.T) {
	t.Parallel()
	var ev events
	o, err := New(Config{ACME: unreachableACME(t, "ftp.example.com"), OnEvent: ev.add})
	if err != nil {
		t.Fatal(err)
	}
	o.acme.retryBase = time.Millisecond // only autocert's window holds a retry back
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); o.wg.Wait() }()
	if err := o.Start(ctx); err == nil {
		t.Fatal("Start: obtained a certificate from an unreachable CA")
	}
	d := o.acme.domains[0]
	for _, retry := range []func(){func() {}, o.acme.retrySoon} {
		retry()
		var wg sync.WaitGroup // o.wg holds the listeners too
		o.acme.check(time.Now().Add(time.Second), &wg)
		wg.Wait()
		o.acme.mu.Lock()
		failures, nextTry, failedAt := d.failures, d.nextTry, d.failedAt
		o.acme.mu.Unlock()
		if failures != 1 {
			t.Fatalf("%d failures: a retry inside autocert's window: %v", failures, ev.list())
		}
		if nextTry.Before(failedAt.Add(time.Minute)) {
			t.Errorf("next try %s, before autocert forgets the failure at %s", nextTry, failedAt.Add(time.Minute))
		}
	}
}

// failingListener fails its first Accept as a process out of file
// descriptors does, then accepts normally.
type failingListener struct {
	net.Listener
	failed atomic.Bool
}

func (l *failingListener) Accept() (net.Conn, error) {
	if !l.failed.Swap(true) {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// TestACMEALPNListenerSurvivesAcceptErrors: an Accept error other than
// the listener's closing does not end the tls-alpn-01 listener.
func TestACMEALPNListenerSurvivesAcceptErrors(t *testing.T) {
	t.Parallel()
	cfg := unreachableACME(t, "ftp.example.com")
	o, err := New(Config{ACME: cfg})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	go func() { o.acme.serveALPN(&failingListener{Listener: ln}, &wg); close(done) }()

	// Served: the handshake reaches the server, which refuses a hello
	// without acme-tls/1 with an alert (a listener that stopped would
	// leave the connection unanswered in its backlog).
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(15 * time.Second))
	err = tls.Client(c, &tls.Config{ServerName: "ftp.example.com", InsecureSkipVerify: true}).Handshake()
	c.Close()
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("handshake after an Accept error: %v, want the server's refusal", err)
	}
	ln.Close()
	<-done // ends on net.ErrClosed
	wg.Wait()
}

// TestACMERenewBeforeLifetime: a certificate whose lifetime is not longer
// than RenewBefore, which autocert would order again and again, is
// reported when installed and by Check from the cache.
func TestACMERenewBeforeLifetime(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		life   time.Duration
		report bool
	}{{24 * time.Hour, true}, {30 * 24 * time.Hour, false}} {
		var ev events
		cfg := ACMEConfig{Domains: []string{"ftp.example.com"}, CacheDir: t.TempDir(), RenewBefore: 48 * time.Hour}
		a := &acmeSource{o: &Offload{cfg: Config{OnEvent: ev.add}}, cfg: cfg, checkEvery: time.Minute, byName: map[string]*acmeDomain{}}
		d := &acmeDomain{name: "ftp.example.com"}
		a.domains, a.byName[d.name] = []*acmeDomain{d}, d
		cert, err := SelfSigned([]string{"ftp.example.com"}, tc.life)
		if err != nil {
			t.Fatal(err)
		}
		a.install(d, &cert, "acme")
		failed := ev.count(EventFailed)
		if tc.report && (failed != 1 || !strings.Contains(ev.list()[1].Err.Error(), "lifetime")) {
			t.Errorf("lifetime %s: events %v, want a failure about the lifetime", tc.life, ev.list())
		}
		if !tc.report && failed != 0 {
			t.Errorf("lifetime %s: events %v", tc.life, ev.list())
		}

		if err := os.WriteFile(filepath.Join(cfg.CacheDir, "ftp.example.com"), cachedForm(t, &cert), 0o600); err != nil {
			t.Fatal(err)
		}
		var warned bool
		for _, p := range (Config{ACME: cfg}).Check() {
			if p.Field == "ACME.RenewBefore" && p.Warning && strings.Contains(p.Error(), "lifetime") {
				warned = true
			}
		}
		if warned != tc.report {
			t.Errorf("lifetime %s: Check warned %v, want %v", tc.life, warned, tc.report)
		}
	}
}

// cachedForm is cert as autocert caches it: the key's PEM, then the chain's.
func cachedForm(t *testing.T, cert *tls.Certificate) []byte {
	t.Helper()
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key})
	for _, der := range cert.Certificate {
		data = append(data, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return data
}

// refusingCache is an autocert cache whose Put fails while full is set.
type refusingCache struct {
	autocert.Cache
	full atomic.Bool
}

func (c *refusingCache) Put(ctx context.Context, key string, data []byte) error {
	if c.full.Load() {
		return errors.New("disk full")
	}
	return c.Cache.Put(ctx, key, data)
}

// TestACMECacheStoreFailure: a renewed certificate the cache cannot store
// is reported once, saying what autocert does about it (order again every
// 30 to 60 minutes), and again only after a store succeeded in between.
func TestACMECacheStoreFailure(t *testing.T) {
	t.Parallel()
	var ev events
	a := &acmeSource{o: &Offload{cfg: Config{OnEvent: ev.add}}, checkEvery: time.Minute, byName: map[string]*acmeDomain{}}
	d := &acmeDomain{name: "ftp.example.com"}
	a.domains, a.byName[d.name] = []*acmeDomain{d}, d
	store := &refusingCache{Cache: autocert.DirCache(t.TempDir())}
	cache := observedCache{Cache: store, a: a}
	put := func(full bool) {
		t.Helper()
		store.full.Store(full)
		cert, err := SelfSigned([]string{d.name}, 30*24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := cache.Put(context.Background(), d.name, cachedForm(t, &cert)); (err != nil) != full {
			t.Fatalf("Put: %v", err)
		}
	}
	put(true)
	put(true)
	put(true)
	if n := ev.count(EventFailed); n != 1 {
		t.Fatalf("%d failure events for three refused stores, want 1: %v", n, ev.list())
	}
	var failed Event
	for _, e := range ev.list() {
		if e.Kind == EventFailed {
			failed = e
		}
	}
	if msg := failed.Err.Error(); !strings.Contains(msg, "disk full") || !strings.Contains(msg, "every 30 to 60 minutes") {
		t.Errorf("event: %v", msg)
	}
	put(false)
	put(true)
	if n := ev.count(EventFailed); n != 2 {
		t.Errorf("%d failure events, want 2: a refusal after a good store is news", n)
	}
	if n := ev.count(EventObtained) + ev.count(EventRenewed); n != 5 {
		t.Errorf("%d certificates installed, want 5: a certificate is served even when not stored", n)
	}
}
