package tlsoffload

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// writePair generates a self-signed certificate for names and writes it to
// dir/base.crt and dir/base.key.
func writePair(t *testing.T, dir, base string, validity time.Duration, names ...string) (KeyPair, *tls.Certificate) {
	t.Helper()
	cert, err := SelfSigned(names, validity)
	if err != nil {
		t.Fatal(err)
	}
	p := KeyPair{CertFile: filepath.Join(dir, base+".crt"), KeyFile: filepath.Join(dir, base+".key")}
	writeCertFiles(t, p, &cert)
	return p, &cert
}

// writeCertFiles writes cert to p's files, each through a rename.
func writeCertFiles(t *testing.T, p KeyPair, cert *tls.Certificate) {
	t.Helper()
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	var certPEM []byte
	for _, der := range cert.Certificate {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	replaceFile(t, p.CertFile, certPEM)
	replaceFile(t, p.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
}

func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// testServer is a loopback TLS server: each connection gets the config
// config() returns, a one-byte greeting after the handshake (so a TLS 1.3
// client reads its tickets), then an echo until EOF.
type testServer struct {
	addr string
	mu   sync.Mutex
	errs []error // handshake errors, in order
}

func startServer(t *testing.T, config func() *tls.Config) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				tc := tls.Server(c, config())
				if err := tc.Handshake(); err != nil {
					s.mu.Lock()
					s.errs = append(s.errs, err)
					s.mu.Unlock()
					return
				}
				tc.Write([]byte("x"))
				io.Copy(tc, tc)
				tc.CloseWrite()
			})
		}
	})
	return s
}

// handshakeErrors returns the server's handshake errors so far.
func (s *testServer) handshakeErrors() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]error(nil), s.errs...)
}

// lastError waits a little for a server-side handshake error.
func (s *testServer) lastError(t *testing.T) error {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if errs := s.handshakeErrors(); len(errs) > 0 {
			return errs[len(errs)-1]
		}
	}
	return nil
}

// dial connects, completes the handshake and reads the greeting (and with
// it any TLS 1.3 ticket). The caller closes the connection.
func dial(t *testing.T, addr string, cc *tls.Config) (*tls.Conn, error) {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cc)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// handshake is dial, returning the connection state and closing.
func handshake(t *testing.T, addr string, cc *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	c, err := dial(t, addr, cc)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	return c.ConnectionState(), nil
}

// echo checks that c still carries data both ways.
func echo(t *testing.T, c *tls.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write on open connection: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo on open connection: %q, %v", buf, err)
	}
}

// events collects what an Offload reports.
type events struct {
	mu  sync.Mutex
	all []Event
}

func (e *events) add(ev Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = append(e.all, ev)
}

func (e *events) list() []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Event(nil), e.all...)
}

func (e *events) count(kind EventKind) int {
	n := 0
	for _, ev := range e.list() {
		if ev.Kind == kind {
			n++
		}
	}
	return n
}

// waitFor waits up to timeout for an event matching ok.
func (e *events) waitFor(t *testing.T, timeout time.Duration, what string, ok func(Event) bool) Event {
	t.Helper()
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for _, ev := range e.list() {
			if ok(ev) {
				return ev
			}
		}
	}
	t.Fatalf("no %s event within %s; got %v", what, timeout, e.list())
	return Event{}
}

// leafSerial is the serial, in Event.Serial's form, of the certificate a
// connection was shown.
func leafSerial(cs tls.ConnectionState) string {
	return serial(&tls.Certificate{Leaf: cs.PeerCertificates[0]})
}

// poolOf trusts the leaves given.
func poolOf(certs ...*tls.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c.Leaf)
	}
	return p
}

// rsaSelfSigned is a self-signed RSA certificate for name.
func rsaSelfSigned(t *testing.T, name string) *tls.Certificate {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}
