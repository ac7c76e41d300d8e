package integration

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/ftpsgate/ftpsgate/tlsoffload"
)

// TestCertificateReload: certificate files replaced under a running proxy
// and SIGHUP: new handshakes present the new certificate, a session opened
// before keeps transferring.
func TestCertificateReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writePair := func() *tls.Certificate {
		c, err := tlsoffload.SelfSigned([]string{"localhost"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		key, _ := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
		// Write beside and rename, as certbot and friends do.
		os.WriteFile(certFile+".new", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o600)
		os.WriteFile(keyFile+".new", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600)
		os.Rename(keyFile+".new", keyFile)
		os.Rename(certFile+".new", certFile)
		return &c
	}
	first := writePair()
	backend := memBackend(t)
	backend.FS.WriteFile("/f.txt", []byte("still here\n"))
	p := startProxy(t, "--backend", backend.Addr(), "--cert", certFile, "--key", keyFile)

	dial := func(trust *tls.Certificate) *ftp.ServerConn {
		t.Helper()
		pool := x509.NewCertPool()
		pool.AddCert(trust.Leaf)
		c, err := ftp.Dial(p.explicit, ftp.DialWithTimeout(10*time.Second),
			ftp.DialWithExplicitTLS(&tls.Config{ServerName: "localhost", RootCAs: pool, ClientSessionCache: tls.NewLRUClientSessionCache(4)}))
		if err != nil {
			t.Fatalf("dial trusting serial %s: %v", trust.Leaf.SerialNumber, err)
		}
		if err := c.Login("curl", "curl-pw"); err != nil {
			t.Fatal(err)
		}
		return c
	}
	retr := func(c *ftp.ServerConn) {
		t.Helper()
		r, err := c.Retr("f.txt")
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(r)
		if err := r.Close(); err != nil || string(got) != "still here\n" {
			t.Fatalf("got %q, %v", got, err)
		}
	}
	old := dial(first)
	defer old.Quit()

	second := writePair()
	p.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for {
		pool := x509.NewCertPool()
		pool.AddCert(second.Leaf)
		c, err := tls.Dial("tcp", p.implicit, &tls.Config{ServerName: "localhost", RootCAs: pool})
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new certificate is not served after SIGHUP: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	fresh := dial(second)
	defer fresh.Quit()
	retr(fresh)
	retr(old) // the session opened under the old certificate goes on
}
