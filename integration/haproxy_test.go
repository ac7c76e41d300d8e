package integration

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/ftpsgate/ftpsgate/ftpctl"
	"github.com/ftpsgate/ftpsgate/ftpctl/ftptest"
)

// The PROXY protocol test's addresses: HAProxy listens on 127.0.0.1 (the
// "VIP"), the proxy on 127.0.0.3 (the private address HAProxy forwards
// to), clients connect from 127.0.0.2, and a thief from 127.0.0.4.
// HAProxy and the proxy both hold the passive range, each on its own
// address: HAProxy's server line names no port, so it keeps the port the
// client connected to. The fixed ports are below Linux's ephemeral range
// (32768 and up): a port there can be held at any time by the source end
// of an outgoing connection (in TIME_WAIT too), and haproxy then cannot
// bind it.
const (
	lbHost          = "127.0.0.1"
	proxyHost       = "127.0.0.3"
	clientHost      = "127.0.0.2"
	thiefHost       = "127.0.0.4"
	lbPassiveFirst  = 26100
	lbPassiveLast   = 26109
	haproxyCtlPort  = 26120
	haproxyImplPort = 26121
)

// startHAProxy runs haproxy in the foreground (-db) with a configuration
// of its own, as a child of the test, and waits until it listens.
func startHAProxy(t *testing.T, p *proxyProc) {
	t.Helper()
	bin := needTool(t, "haproxy")
	_, ctlPort, _ := net.SplitHostPort(p.explicit)
	_, implPort, _ := net.SplitHostPort(p.implicit)
	cfg := fmt.Sprintf(`global
	maxconn 200

defaults
	mode tcp
	timeout connect 5s
	timeout client 2m
	timeout server 2m

frontend ftp
	bind %[1]s:%[3]d
	default_backend ftpsgate
backend ftpsgate
	server s1 %[2]s:%[4]s send-proxy-v2

frontend ftps
	bind %[1]s:%[5]d
	default_backend ftpsgate-implicit
backend ftpsgate-implicit
	server s1 %[2]s:%[6]s send-proxy-v2

frontend ftp-data
	bind %[1]s:%[7]d-%[8]d
	default_backend ftpsgate-data
backend ftpsgate-data
	server s1 %[2]s send-proxy-v2
`, lbHost, proxyHost, haproxyCtlPort, ctlPort, haproxyImplPort, implPort, lbPassiveFirst, lbPassiveLast)
	dir := t.TempDir()
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(filepath.Join(dir, "haproxy.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-db", "-f", path)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // see startProxy
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		out.Close()
		close(done)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(out.Name())
			t.Logf("--- haproxy.cfg ---\n%s\n--- haproxy output ---\n%s", cfg, b)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("%s:%d", lbHost, lbPassiveLast), time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-done:
			b, _ := os.ReadFile(out.Name())
			t.Fatalf("haproxy exited:\n%s", b)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy does not listen: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestHAProxy puts HAProxy (mode tcp, send-proxy-v2) in front of the
// control listeners and the passive range of the built binary, whose
// backend is an ftptest server that requires a PROXY v2 header itself.
// Clients connect from 127.0.0.2: the proxy's logs name that address, not
// HAProxy's; the backend's header carries it and the session id; passive
// data through HAProxy is accepted from the client only; and a header from
// an address outside trusted_proxies is refused.
func TestHAProxy(t *testing.T) {
	curl := needTool(t, "curl")
	backend := ftptest.NewUnstartedServer()
	backend.Users = map[string]string{"curl": "curl-pw"}
	backend.RequireProxyV2 = true
	backend.Start()
	t.Cleanup(backend.Close)
	want := strings.Repeat("through haproxy\n", 4096)
	backend.FS.WriteFile("/pub/hello.txt", []byte(want))

	conf := filepath.Join(t.TempDir(), "ftpsgate.toml")
	os.WriteFile(conf, []byte(fmt.Sprintf(`[listen]
passive_ports = "%d-%d"
trusted_proxies = ["%s"]
data_proxy_protocol = true

[[backend]]
address = "%s"
proxy_protocol = "v2"
`, lbPassiveFirst, lbPassiveLast, lbHost, backend.Addr())), 0o600)
	// The later --listen flags win over startProxy's loopback defaults.
	p := startProxy(t, "--config", conf, "--listen", proxyHost+":0", "--implicit-listen", proxyHost+":0")
	startHAProxy(t, p)

	base := []string{"--silent", "--show-error", "--insecure", "--user", "curl:curl-pw", "--max-time", "60",
		"--interface", clientHost}
	for _, c := range []struct {
		name string
		args []string
		url  string
	}{
		{"explicit-protP-epsv", []string{"--ssl-reqd"}, fmt.Sprintf("ftp://%s:%d", lbHost, haproxyCtlPort)},
		{"explicit-protP-pasv", []string{"--ssl-reqd", "--disable-epsv"}, fmt.Sprintf("ftp://%s:%d", lbHost, haproxyCtlPort)},
		{"implicit-protP-epsv", nil, fmt.Sprintf("ftps://%s:%d", lbHost, haproxyImplPort)},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append(append(append([]string{}, base...), c.args...), c.url+"/pub/hello.txt")
			out, err := run(t, 2*time.Minute, curl, args...)
			if err != nil {
				t.Fatalf("curl: %v\n%s", err, out)
			}
			if out != want {
				t.Fatalf("downloaded %d bytes, want %d", len(out), len(want))
			}
			up := filepath.Join(t.TempDir(), "up.txt")
			os.WriteFile(up, []byte("uploaded by "+c.name+"\n"), 0o600)
			args = append(append(append([]string{}, base...), c.args...), "-T", up, c.url+"/pub/"+c.name+".txt")
			if out, err := run(t, 2*time.Minute, curl, args...); err != nil {
				t.Fatalf("curl upload: %v\n%s", err, out)
			}
			if b, _ := backend.FS.ReadFile("/pub/" + c.name + ".txt"); string(b) != "uploaded by "+c.name+"\n" {
				t.Errorf("backend stored %q", b)
			}
		})
	}

	starts := p.records("session start")
	if len(starts) < 6 {
		t.Fatalf("%d sessions, want 6", len(starts))
	}
	sessions := map[string]bool{}
	for _, rec := range starts {
		client, _ := rec["client"].(string)
		via, _ := rec["via"].(string)
		if !strings.HasPrefix(client, clientHost+":") || !strings.HasPrefix(via, lbHost+":") {
			t.Errorf("session start client %q via %q, want client %s via %s", client, via, clientHost, lbHost)
		}
		sessions[rec["session"].(string)] = true
	}
	for _, rec := range p.records("transfer") {
		if rec["client"] != nil && !strings.HasPrefix(fmt.Sprint(rec["client"]), clientHost) {
			t.Errorf("transfer record client %v", rec["client"])
		}
	}
	if n := len(p.records("data connection from another address refused")); n != 0 {
		t.Errorf("%d data connections refused", n)
	}
	var headers int
	for _, h := range backend.ProxyHeaders() {
		if h.Local {
			continue // a health check
		}
		headers++
		if h.Source.Addr() != netip.MustParseAddr(clientHost) {
			t.Errorf("backend saw the client as %v, want %s", h.Source, clientHost)
		}
		if !sessions[string(h.TLVs[0xE5])] {
			t.Errorf("backend's session TLV %q names no session", h.TLVs[0xE5])
		}
	}
	if headers != len(starts) {
		t.Errorf("backend got %d client headers for %d sessions", headers, len(starts))
	}

	t.Run("data port theft through haproxy", func(t *testing.T) {
		thiefTakesPort(t, p, backend)
	})

	t.Run("untrusted header", func(t *testing.T) {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(clientHost)}}
		c, err := d.Dial("tcp", p.explicit)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		h := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP("198.51.100.7"), Port: 1234}, c.RemoteAddr())
		h.WriteTo(c)
		io.Copy(io.Discard, c) // the 220, then the close
		waitForRecord(t, p, "PROXY header from an address not in trusted_proxies: closing", func(rec map[string]any) bool {
			return rec["from"] == clientHost
		})
	})
}

// thiefTakesPort: a client logged in through HAProxy asks for a passive
// port; a thief connects to it through HAProxy first and is refused, as
// the header HAProxy puts on the data connection names the thief; the
// client's own data connection then gets the file.
func thiefTakesPort(t *testing.T, p *proxyProc, backend *ftptest.Server) {
	rc := dialFrom(t, clientHost, fmt.Sprintf("%s:%d", lbHost, haproxyCtlPort))
	rc.expect(220)
	rc.secure(nil)
	rc.login("curl", "curl-pw")
	rep := rc.cmd("EPSV", 229)
	port, err := ftpctl.ParseEPSV(rep.Text())
	if err != nil {
		t.Fatal(err)
	}
	dataAddr := fmt.Sprintf("%s:%d", lbHost, port)
	thief := dialFrom(t, thiefHost, dataAddr)
	waitForRecord(t, p, "data connection from another address refused", func(rec map[string]any) bool {
		return rec["from"] == thiefHost
	})
	data := dialFrom(t, clientHost, dataAddr)
	rc.send("RETR /pub/hello.txt")
	rc.expect(150)
	got, _ := io.ReadAll(data.conn)
	rc.expect(226)
	if !strings.HasPrefix(string(got), "through haproxy\n") {
		t.Errorf("client got %d bytes", len(got))
	}
	if n, _ := thief.conn.Read(make([]byte, 1)); n != 0 {
		t.Error("the thief got data")
	}
	rc.cmd("QUIT", 221)
}

// ctlClient speaks FTP by hand.
type ctlClient struct {
	t    *testing.T
	conn net.Conn
	r    *ftpctl.Reader
}

func dialFrom(t *testing.T, src, addr string) *ctlClient {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(time.Minute))
	return &ctlClient{t: t, conn: c, r: ftpctl.NewReader(bufio.NewReader(c), 0)}
}

// secure runs AUTH TLS and the TLS handshake with cfg (nil: any
// certificate, no session cache); replies are read through TLS after.
func (c *ctlClient) secure(cfg *tls.Config) {
	c.t.Helper()
	if cfg == nil {
		cfg = &tls.Config{InsecureSkipVerify: true}
	}
	c.cmd("AUTH TLS", 234)
	tc := tls.Client(c.conn, cfg)
	if err := tc.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	c.conn, c.r = tc, ftpctl.NewReader(bufio.NewReader(tc), 0)
}

// login sends USER and PASS and expects 230.
func (c *ctlClient) login(user, password string) {
	c.t.Helper()
	c.cmd("USER "+user, 331)
	c.cmd("PASS "+password, 230)
}

func (c *ctlClient) send(line string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, line+"\r\n"); err != nil {
		c.t.Fatal(err)
	}
}

func (c *ctlClient) expect(code ftpctl.Code) ftpctl.Reply {
	c.t.Helper()
	rep, err := c.r.ReadReply()
	if err != nil || rep.Code != code {
		c.t.Fatalf("got %d %q (%v), want %d", rep.Code, rep.Lines, err, code)
	}
	return rep
}

func (c *ctlClient) cmd(line string, code ftpctl.Code) ftpctl.Reply {
	c.t.Helper()
	c.send(line)
	return c.expect(code)
}

// waitForRecord polls the proxy's log for a record with message msg that
// match accepts.
func waitForRecord(t *testing.T, p *proxyProc, msg string, match func(map[string]any) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, rec := range p.records(msg) {
			if match(rec) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q record as expected", msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
