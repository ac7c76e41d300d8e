// Package pebbletest runs Pebble, the test ACME CA of Let's Encrypt
// (github.com/letsencrypt/pebble/v2), in-process for a test, with a DNS
// server that resolves every name to 127.0.0.1 so that Pebble's validation
// authority really fetches http-01 tokens from the proxy (and really does
// tls-alpn-01 handshakes). PEBBLE_VA_ALWAYS_VALID is never used.
//
//	ca := pebbletest.Start(t, 0)
//	acme := tlsoffload.ACMEConfig{Domains: []string{"ftp.pebble.test"}, DirectoryURL: ca.DirURL,
//		DirectoryCAFile: ca.TLSCAFile, HTTPListen: ca.HTTPListen(), CacheDir: dir}
package pebbletest

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
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

// CA is an in-process Pebble.
type CA struct {
	DirURL    string         // the ACME directory
	TLSCAFile string         // trust for the directory's HTTPS (ACMEConfig.DirectoryCAFile)
	Roots     *x509.CertPool // the root Pebble issues under
	RootPEM   []byte         // the same, as PEM
	HTTPPort  int            // where its VA fetches http-01 tokens
	TLSPort   int            // where its VA does tls-alpn-01
	Orders    atomic.Int32   // new-order requests
	Log       *LogBuffer     // Pebble's log
}

// Start runs a Pebble whose certificates are valid for validity (zero:
// Pebble's default, 90 days), torn down with the test.
func Start(t testing.TB, validity time.Duration) *CA {
	t.Helper()
	if os.Getenv("PEBBLE_VA_ALWAYS_VALID") != "" {
		t.Fatal("PEBBLE_VA_ALWAYS_VALID is set: this test is about real validation")
	}
	// Pebble's validation authority sleeps up to 5 s before each validation
	// and its front end rejects 5% of nonces, to exercise clients; neither
	// is what these tests are about. Read when Pebble is built, here.
	os.Setenv("PEBBLE_VA_NOSLEEP", "1")
	os.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	p := &CA{HTTPPort: FreePort(t), TLSPort: FreePort(t), Log: &LogBuffer{}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pebble log:\n%s", p.Log)
		}
	})
	logger := log.New(p.Log, "pebble ", log.Lmicroseconds)
	store := db.NewMemoryStore()
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{
		"default": {Description: "ftpsgate test", ValidityPeriod: uint64(validity / time.Second)},
	})
	validator := va.New(logger, p.HTTPPort, p.TLSPort, false, startDNS(t), store)
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	handler := front.Handler()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/order-plz" {
			p.Orders.Add(1)
		}
		handler.ServeHTTP(w, r)
	}))
	srv.Config.ErrorLog = logger
	srv.StartTLS()
	t.Cleanup(srv.Close)
	p.DirURL = srv.URL + "/dir"
	p.TLSCAFile = filepath.Join(t.TempDir(), "pebble-https.pem")
	os.WriteFile(p.TLSCAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	p.Roots = x509.NewCertPool()
	p.Roots.AddCert(authority.GetRootCert(0).Cert)
	p.RootPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: authority.GetRootCert(0).Cert.Raw})
	return p
}

// startDNS answers every A query with 127.0.0.1, except for names under
// "unreachable.", which get 127.0.0.2 where nothing listens, and AAAA
// queries with nothing. Pebble's VA asks over TCP.
func startDNS(t testing.TB) string {
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

// FreePort finds a loopback port that is free now. Pebble's VA takes the
// challenge ports before ftpsgate binds them, hence the small race.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// LogBuffer collects a log safely across goroutines.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// HTTPListen is where the proxy must answer http-01 challenges for
// Pebble's validation authority to find them.
func (p *CA) HTTPListen() string { return "127.0.0.1:" + strconv.Itoa(p.HTTPPort) }
