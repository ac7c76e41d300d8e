package tlsoffload

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestSelfSignedWhenNoFiles(t *testing.T) {
	t.Parallel()
	o, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if !o.SelfSigned() {
		t.Fatal("SelfSigned() = false with no files configured")
	}
	leaf := o.Certificate().Leaf
	if err := leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Errorf("generated certificate not valid for 127.0.0.1: %v", err)
	}
	if err := leaf.VerifyHostname("localhost"); err != nil {
		t.Errorf("generated certificate not valid for localhost: %v", err)
	}
	if got := o.TLSConfig().MinVersion; got != tls.VersionTLS12 {
		t.Errorf("MinVersion = %x, want TLS 1.2", got)
	}
	if fp := o.Fingerprint(); len(fp) != 32*3-1 {
		t.Errorf("Fingerprint() = %q, want 32 colon-separated bytes", fp)
	}
}

func TestLoadFiles(t *testing.T) {
	t.Parallel()
	cert, err := SelfSigned([]string{"ftp.example.com"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)

	o, err := New(Config{CertFile: certFile, KeyFile: keyFile, MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatal(err)
	}
	if o.SelfSigned() {
		t.Error("SelfSigned() = true for a loaded certificate")
	}
	if got := o.Certificate().Leaf.DNSNames; len(got) != 1 || got[0] != "ftp.example.com" {
		t.Errorf("loaded certificate names %v", got)
	}

	// A handshake resumes with the shared config's tickets: the seam data
	// connections rely on.
	ln, err := tls.Listen("tcp", "127.0.0.1:0", o.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.(*tls.Conn).Handshake()
				c.Write([]byte("x"))
			}()
		}
	}()
	pool := x509.NewCertPool()
	pool.AddCert(o.Certificate().Leaf)
	cc := &tls.Config{RootCAs: pool, ServerName: "ftp.example.com", ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	for i, wantResumed := range []bool{false, true} {
		c, err := tls.Dial("tcp", ln.Addr().String(), cc)
		if err != nil {
			t.Fatal(err)
		}
		// Read so the TLS 1.3 ticket, sent after the handshake, arrives.
		c.Read(make([]byte, 1))
		if got := c.ConnectionState().DidResume; got != wantResumed {
			t.Errorf("connection %d: DidResume = %v, want %v", i, got, wantResumed)
		}
		if v := c.ConnectionState().Version; v != tls.VersionTLS13 {
			t.Errorf("version %x, want TLS 1.3 (MinVersion)", v)
		}
		c.Close()
	}
}

func TestHalfConfigured(t *testing.T) {
	t.Parallel()
	if _, err := New(Config{CertFile: "x.pem"}); err == nil {
		t.Error("New with only cert_file: no error")
	}
	if _, err := New(Config{CertFile: "/nonexistent.pem", KeyFile: "/nonexistent.key"}); err == nil {
		t.Error("New with missing files: no error")
	}
}
