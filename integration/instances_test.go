package integration

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/ftpsgate/ftpsgate/tlsoffload"
)

// TestTwoInstances runs two ftpsgate processes with the same configuration,
// as the README's runbook for N instances has them: the same certificate,
// a shared ticket-key file and source_hash balancing, in front of the same
// two vsftpd backends (issue 7). A client's session with PROT P data over
// PASV and EPSV works through either; a TLS session from instance A is
// resumed by instance B; both pick the same backend for the same client IP.
func TestTwoInstances(t *testing.T) {
	b1 := startBackend(t, vsftpd)
	// The second vsftpd needs a control port and passive range of its own.
	second := *vsftpd
	second.port, second.pasvLow, second.pasvHigh = 25021, 25100, 25999
	b2 := startBackend(t, &second)
	for name, b := range map[string]*backend{"one": b1, "two": b2} {
		// Which backend a session reached: RETR /whoami.txt says.
		writeFile(t, filepath.Join(b.home, "whoami.txt"), name, 0o644)
	}

	dir := t.TempDir()
	cert, err := tlsoffload.SelfSigned([]string{"localhost", "127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, ticketFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "ticket-keys")
	writeFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})), 0o600)
	writeFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key})), 0o600)
	writeFile(t, ticketFile, base64.StdEncoding.EncodeToString(randomKey(t))+"\n", 0o600)
	cfg := filepath.Join(dir, "ftpsgate.toml")
	writeFile(t, cfg, fmt.Sprintf(`[tls]
cert_file = %q
key_file = %q
ticket_key_file = %q

[[backend]]
name = "one"
address = %q

[[backend]]
name = "two"
address = %q

[balance]
policy = "source_hash"
`, certFile, keyFile, ticketFile, b1.addr, b2.addr), 0o600)
	instances := []*proxyProc{startProxy(t, "--config", cfg), startProxy(t, "--config", cfg)}

	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	clientTLS := func(cache tls.ClientSessionCache) *tls.Config {
		return &tls.Config{RootCAs: pool, ServerName: "localhost", ClientSessionCache: cache}
	}
	// login opens a session to p from source address src ("" for any),
	// for the control and the data connections alike.
	login := func(t *testing.T, p *proxyProc, src string, conf *tls.Config, pasv bool) *ftp.ServerConn {
		t.Helper()
		d := net.Dialer{Timeout: 10 * time.Second}
		if src != "" {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
		}
		c, err := ftp.Dial(p.explicit, ftp.DialWithDialer(d), ftp.DialWithTimeout(20*time.Second),
			ftp.DialWithExplicitTLS(conf), ftp.DialWithDisabledEPSV(pasv))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Login(testUser, testPassword); err != nil {
			c.Quit()
			t.Fatal(err)
		}
		return c
	}

	t.Run("data through either", func(t *testing.T) {
		for i, p := range instances {
			for _, pasv := range []bool{true, false} {
				c := login(t, p, "", clientTLS(tls.NewLRUClientSessionCache(4)), pasv)
				who := retr(t, c, "whoami.txt")
				if who != "one" && who != "two" {
					t.Errorf("instance %d: whoami.txt = %q", i, who)
				}
				name := fmt.Sprintf("up-%d-%v.txt", i, pasv)
				payload := strings.Repeat(name+"\n", 5000)
				if err := c.Stor(name, strings.NewReader(payload)); err != nil {
					t.Fatalf("instance %d, pasv %v: STOR: %v", i, pasv, err)
				}
				if got := retr(t, c, name); got != payload {
					t.Errorf("instance %d, pasv %v: read back %d bytes, stored %d", i, pasv, len(got), len(payload))
				}
				c.Quit()
			}
			// Three transfers per mode, each with PROT P data that
			// resumed the control session.
			waitRecords(t, p, "transfer", 6)
			for _, x := range p.records("transfer") {
				if x["prot"] != "P" || x["data_resumed"] != true || x["code"] != 226.0 {
					t.Errorf("instance %d: transfer record %v: want PROT P, data resumed, 226", i, x)
				}
			}
		}
	})

	t.Run("tls session of A resumed by B", func(t *testing.T) {
		cache := tls.NewLRUClientSessionCache(4)
		const src = "127.0.0.21"
		a, b := instances[0], instances[1]
		c := login(t, a, src, clientTLS(cache), false)
		retr(t, c, "whoami.txt") // reads past the handshake: the tickets are in the cache
		c.Quit()
		c = login(t, b, src, clientTLS(cache), false)
		retr(t, c, "whoami.txt")
		c.Quit()

		onA := tlsRecords(t, a, src)
		if len(onA) != 1 || onA[0]["resumed"] != false {
			t.Fatalf("A's tls established records for %s: %v; want one full handshake", src, onA)
		}
		onB := tlsRecords(t, b, src)
		if len(onB) != 1 || onB[0]["resumed"] != true {
			t.Fatalf("B's tls established records for %s: %v; want one that resumed A's session", src, onB)
		}
	})

	t.Run("same backend for a client IP", func(t *testing.T) {
		conf := clientTLS(nil)
		// B sees the clients in another order than A: a choice that
		// depends on the order of sessions (round_robin) would differ.
		for n, p := range instances {
			for i := range 19 {
				src := fmt.Sprintf("127.0.0.%d", 2+(i+n)%19)
				c := login(t, p, src, conf, false)
				c.Quit()
			}
		}
		// client IP -> backend, from each instance's login records; a
		// record may follow the 230 by a moment.
		picked := make([]map[string]string, len(instances))
		for n, p := range instances {
			deadline := time.Now().Add(20 * time.Second)
			for {
				picked[n] = map[string]string{}
				for _, r := range p.records("login") {
					host, _, _ := net.SplitHostPort(fmt.Sprint(r["client"]))
					picked[n][host] = fmt.Sprint(r["backend"])
				}
				missing := 0
				for i := 2; i <= 20; i++ {
					if picked[n][fmt.Sprintf("127.0.0.%d", i)] == "" {
						missing++
					}
				}
				if missing == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("instance %d logged no login for %d of the 19 client addresses", n, missing)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		used := map[string]int{}
		for i := 2; i <= 20; i++ {
			src := fmt.Sprintf("127.0.0.%d", i)
			a, b := picked[0][src], picked[1][src]
			if a == "" || a != b {
				t.Errorf("client %s: instance A chose %q, instance B %q", src, a, b)
			}
			used[a]++
		}
		// Rendezvous hashing spreads 19 addresses over both backends; one
		// backend for all would make the agreement above say little.
		if used["one"] == 0 || used["two"] == 0 {
			t.Errorf("backends chosen for 19 client addresses: %v; want both used", used)
		}
	})
}

// randomKey is a fresh 32-byte session-ticket key.
func randomKey(t *testing.T) []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func retr(t *testing.T, c *ftp.ServerConn, path string) string {
	t.Helper()
	r, err := c.Retr(path)
	if err != nil {
		t.Fatalf("RETR %s: %v", path, err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("RETR %s: %v", path, err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("RETR %s: final reply: %v", path, err)
	}
	return string(b)
}

// tlsRecords returns p's "tls established" records of clients from host.
func tlsRecords(t *testing.T, p *proxyProc, host string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, r := range p.records("tls established") {
		if h, _, _ := net.SplitHostPort(fmt.Sprint(r["client"])); h == host {
			out = append(out, r)
		}
	}
	return out
}
