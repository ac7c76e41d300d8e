package integration

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
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

// TestConfigReload: SIGHUP with a backend added to the file sends new
// sessions to it while a session opened before keeps transferring on the
// old one; SIGHUP with a broken file changes nothing and logs the errors.
func TestConfigReload(t *testing.T) {
	a, b := memBackend(t), memBackend(t)
	a.FS.WriteFile("/id", []byte("a"))
	b.FS.WriteFile("/id", []byte("b"))
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // 16 MiB, read slowly
	a.FS.WriteFile("/big", big)

	cfg := filepath.Join(t.TempDir(), "ftpsgate.toml")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(cfg+".new", []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Rename(cfg+".new", cfg)
	}
	backends := func(addrs ...string) string {
		var sb strings.Builder
		for i, addr := range addrs {
			fmt.Fprintf(&sb, "[[backend]]\nname = %q\naddress = %q\n", []string{"a", "b"}[i], addr)
		}
		return sb.String()
	}
	write("[balance]\npolicy = \"least_conn\"\n" + backends(a.Addr()))
	p := startProxy(t, "--config", cfg)

	dial := func() *ftp.ServerConn {
		t.Helper()
		// A session cache of each session's own, as real clients have:
		// data connections resume their control session.
		tc := &tls.Config{InsecureSkipVerify: true, ServerName: "localhost", ClientSessionCache: tls.NewLRUClientSessionCache(4)}
		c, err := ftp.Dial(p.explicit, ftp.DialWithTimeout(10*time.Second), ftp.DialWithExplicitTLS(tc))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Login("curl", "curl-pw"); err != nil {
			t.Fatal(err)
		}
		return c
	}
	landed := func(c *ftp.ServerConn) string {
		t.Helper()
		r, err := c.Retr("/id")
		if err != nil {
			t.Fatal(err)
		}
		id, _ := io.ReadAll(r)
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		return string(id)
	}

	old := dial()
	defer old.Quit()
	r, err := old.Retr("/big")
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 1<<20)
	if _, err := io.ReadFull(r, head); err != nil {
		t.Fatal(err)
	}

	reloaded := func(msg string, n int) map[string]any {
		t.Helper()
		p.cmd.Process.Signal(syscall.SIGHUP)
		deadline := time.Now().Add(10 * time.Second)
		for {
			if recs := p.records(msg); len(recs) >= n {
				return recs[n-1]
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %q record after SIGHUP\n%s", msg, p.log())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// b added: least_conn sends the new session to it, a being busy.
	write("[balance]\npolicy = \"least_conn\"\n" + backends(a.Addr(), b.Addr()))
	if rec := reloaded("config reloaded", 1); rec["backends"] != 2.0 {
		t.Errorf("reload record %v, want 2 backends", rec)
	}
	fresh := dial()
	if got := landed(fresh); got != "b" {
		t.Errorf("a session after the reload landed on %q, want the added b", got)
	}
	fresh.Quit()

	// A broken file: with it, new sessions would go to a alone.
	write("[balance]\npolicy = \"fastest\"\n" + backends(a.Addr()))
	rec := reloaded("config reload failed", 1)
	if errs := fmt.Sprint(rec["errors"]); !strings.Contains(errs, "fastest") || !strings.Contains(errs, ":2:") {
		t.Errorf("failed reload logged %v, want the bad policy with its line", rec["errors"])
	}
	fresh = dial()
	if got := landed(fresh); got != "b" {
		t.Errorf("after a refused reload a session landed on %q, want b as before", got)
	}
	fresh.Quit()

	rest, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("the transfer begun before the reloads: %v", err)
	}
	if !bytes.Equal(append(head, rest...), big) {
		t.Fatal("the transfer begun before the reloads is not intact")
	}
	if got := landed(old); got != "a" {
		t.Errorf("the old session answers from %q, want a", got)
	}
}
