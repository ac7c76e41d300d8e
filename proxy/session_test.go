package proxy

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/ftpsgate/ftpsgate/ftpctl"
	"github.com/ftpsgate/ftpsgate/ftpctl/ftptest"
)

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// TestRoundTrip is the core path: explicit and implicit TLS, PASV and EPSV,
// upload and download compared by hash, and what the backend saw.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		implicit bool
		pasv     bool
	}{
		{"explicit/EPSV", false, false},
		{"explicit/PASV", false, true},
		{"implicit/EPSV", true, false},
		{"implicit/PASV", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, nil, nil)
			addr, tlsOpt := h.explicit(), ftp.DialWithExplicitTLS(h.client)
			if tc.implicit {
				addr, tlsOpt = h.implicit(), ftp.DialWithTLS(h.client)
			}
			c, err := ftp.Dial(addr, ftp.DialWithTimeout(10*time.Second), tlsOpt, ftp.DialWithDisabledEPSV(tc.pasv))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Quit()
			if err := c.Login("alice", "s3cret-pw"); err != nil {
				t.Fatal(err)
			}
			data := randomBytes(t, 3<<20+17)
			if err := c.Stor("up.bin", bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
			if got, _ := h.backend.FS.ReadFile("/up.bin"); sha256.Sum256(got) != sha256.Sum256(data) {
				t.Fatalf("backend stored %d bytes, differing from the %d sent", len(got), len(data))
			}
			r, err := c.Retr("up.bin")
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Close(); err != nil {
				t.Fatalf("final reply of RETR: %v", err)
			}
			if sha256.Sum256(got) != sha256.Sum256(data) {
				t.Fatalf("downloaded %d bytes, differing from the %d stored", len(got), len(data))
			}
			entries, err := c.List("/")
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 || entries[0].Name != "up.bin" {
				t.Fatalf("LIST = %v", entries)
			}
			if size, err := c.FileSize("up.bin"); err != nil || size != int64(len(data)) {
				t.Fatalf("SIZE = %d, %v", size, err)
			}
			c.Quit()

			verbs := h.backendVerbs()
			for _, local := range []string{"AUTH", "PBSZ", "PROT"} {
				if slices.Contains(verbs, local) {
					t.Errorf("%s reached the backend: %v", local, verbs)
				}
			}
			if n := countOf(verbs, "PASS"); n != 1 {
				t.Errorf("PASS reached the backend %d times, want once", n)
			}
			waitFor(t, "session end record", func() bool { return len(h.logs.records("session end")) == 1 })
			if strings.Contains(h.logs.String(), "s3cret-pw") {
				t.Error("the password appears in the log")
			}
			xfers := h.logs.records("transfer")
			if len(xfers) != 3 {
				t.Fatalf("want 3 transfer records, got %d:\n%s", len(xfers), strings.Join(xfers, "\n"))
			}
			for _, want := range []string{`"verb":"STOR"`, `"bytes":3145745`, `"prot":"P"`, `"code":226`, `"direction":"upload"`} {
				if !strings.Contains(xfers[0], want) {
					t.Errorf("transfer record lacks %s: %s", want, xfers[0])
				}
			}
			// jlaffaye/ftp offers the control session's ticket on data
			// connections: the data TLS must have resumed it.
			if !strings.Contains(xfers[1], `"data_resumed":true`) {
				t.Errorf("data connection did not resume the control session: %s", xfers[1])
			}
		})
	}
}

func countOf(s []string, v string) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}

// TestLocalCommands checks what the proxy answers itself (RFC 4217) and that
// pipelined commands get their replies in order.
func TestLocalCommands(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, nil)

	rc := h.raw(h.explicit())
	rc.expect(220)
	rc.cmd("PBSZ 0", 503) // before AUTH
	rc.cmd("USER alice", 530)
	rc.cmd("AUTH KERBEROS_V4", 504)
	rep := rc.cmd("FEAT", 211)
	feats := ftpctl.ParseFeat(rep)
	for _, want := range []string{"AUTH TLS", "PBSZ", "PROT", "EPSV"} {
		if !slices.Contains(feats, want) {
			t.Errorf("FEAT lacks %q: %v", want, feats)
		}
	}
	rc.cmd("NOOP", 200)
	rc.cmd("PWD", 530)

	rc = h.rawTLS()
	// lftp pipelines these three: local answers keep their place.
	rc.send("PBSZ 0\r\nPROT P\r\nPWD\r\nPROT S\r\nPROT E\r\nPROT X\r\nNOOP")
	if r := rc.expect(200); r.Text() != "PBSZ=0" {
		t.Errorf("PBSZ reply %q, want PBSZ=0", r.Text())
	}
	rc.expect(200)
	rc.expect(257)
	rc.expect(536)
	rc.expect(536)
	rc.expect(504)
	rc.expect(200)
	rep = rc.cmd("FEAT", 211)
	feats = ftpctl.ParseFeat(rep)
	// After login the backend's features are merged in, its security
	// ones are not.
	for _, want := range []string{"AUTH TLS", "SIZE", "MDTM", "UTF8"} {
		if !slices.Contains(feats, want) {
			t.Errorf("FEAT after login lacks %q: %v", want, feats)
		}
	}
	if countOf(feats, "EPSV") != 1 {
		t.Errorf("EPSV listed %d times: %v", countOf(feats, "EPSV"), feats)
	}
	rc.cmd("AUTH TLS", 503)
	rc.cmd("LPRT 4,127,0,0,1,2,4,1", 502)
	rc.cmd("PORT 127,0,0,9,4,1", 504) // not the client's address: FTP bounce
	rc.cmd("QUIT", 221)

	for _, v := range h.backendVerbs() {
		if v == "PBSZ" || v == "PROT" || v == "AUTH" || v == "NOOP" {
			t.Errorf("%s reached the backend", v)
		}
	}
}

// TestPlainAllowed: with tls.require off, plain FTP passes through.
func TestPlainAllowed(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) { c.PlainAllowed = true }, nil)
	h.backend.FS.WriteFile("/a.txt", []byte("plain"))
	c, err := ftp.Dial(h.explicit(), ftp.DialWithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Quit()
	if err := c.Login("alice", "s3cret-pw"); err != nil {
		t.Fatal(err)
	}
	r, err := c.Retr("a.txt")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r)
	r.Close()
	if string(got) != "plain" {
		t.Fatalf("got %q", got)
	}
}

// TestMultiLineGreetingAndForeignPASV: the backend's multi-line 220 is
// consumed, the address in its 227 is ignored for the backend's IP, and a
// backend that only knows PASV and answers 150 early still works.
func TestMultiLineGreetingAndForeignPASV(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, func(b *ftptest.Server) {
		b.Greeting = []string{"---------- Welcome ----------", "You are user number 1.", "Bye in 15 minutes."}
		b.PASVAddress = netip.MustParseAddr("10.255.255.1")
		b.DisableEPSV = true
		b.ReplyBeforeData = true // 150 before the data connection, as IIS does
	})
	h.backend.FS.WriteFile("/f", []byte("payload"))
	c := h.dial() // asks the proxy with EPSV; the proxy asks the backend with PASV
	r, err := c.Retr("f")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r)
	if err := r.Close(); err != nil || string(got) != "payload" {
		t.Fatalf("got %q, %v", got, err)
	}
	if !slices.Contains(h.backendVerbs(), "PASV") {
		t.Errorf("backend was not asked with PASV: %v", h.backendVerbs())
	}
}

// TestDataConnectionFromOtherIP: only the client's own IP may connect to its
// passive port (data-port theft).
func TestDataConnectionFromOtherIP(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, nil)
	h.backend.FS.WriteFile("/secret", []byte("for alice only"))
	rc := h.rawTLS()
	rc.cmd("PBSZ 0", 200)
	rc.cmd("PROT C", 200)
	rep := rc.cmd("EPSV", 229)
	port, err := ftpctl.ParseEPSV(rep.Text())
	if err != nil {
		t.Fatal(err)
	}
	target := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port)))

	thief := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 2 * time.Second}
	tconn, err := thief.Dial("tcp", target)
	if err != nil {
		t.Fatal(err)
	}
	tconn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := tconn.Read(make([]byte, 16)); err == nil || n > 0 {
		t.Fatalf("thief read %d bytes, err %v: want the connection closed", n, err)
	}
	tconn.Close()

	dconn, err := net.Dial("tcp", target)
	if err != nil {
		t.Fatal(err)
	}
	defer dconn.Close()
	rc.send("RETR secret")
	rc.expect(150)
	got, _ := io.ReadAll(dconn)
	rc.expect(226)
	if string(got) != "for alice only" {
		t.Fatalf("client got %q", got)
	}
	waitFor(t, "refusal log", func() bool {
		return len(h.logs.records("data connection from another address refused")) == 1
	})
}

// TestAbort: ABOR during a download closes the data connection and the
// client gets 426 then 226, in that order.
func TestAbort(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, nil)
	h.backend.FS.WriteFile("/big", bytes.Repeat([]byte("x"), 256<<20))
	rc := h.rawTLS()
	rc.cmd("PBSZ 0", 200)
	rc.cmd("PROT P", 200)
	raw := rc.epsvData()
	defer raw.Close()
	rc.send("RETR big")
	rc.expect(150)
	dconn := tls.Client(raw, rc.tls)
	if _, err := io.ReadFull(dconn, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	// The client stops reading; ABOR, as clients send it, behind Telnet IP.
	rc.send("\xff\xf4\xff\xf2ABOR")
	rc.expect(426)
	rc.expect(226)
	rc.cmd("NOOP", 200)
	if !slices.Contains(h.backendVerbs(), "ABOR") {
		t.Errorf("ABOR did not reach the backend: %v", h.backendVerbs())
	}
}

// TestBackendDropsControl: the client gets 421 and the proxy goes on serving.
func TestBackendDropsControl(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, nil)
	rc := h.rawTLS()
	h.backend.CloseClientConnections()
	rc.cmd("PWD", 421)
	rc.expectClosed()
	waitFor(t, "session end", func() bool { return h.srv.ActiveSessions() == 0 })
	if !strings.Contains(h.logs.String(), `"reason":"backend closed"`) {
		t.Errorf("session end reason is not 'backend closed':\n%s", h.logs.records("session end"))
	}
	h.dial().NoOp() // a new session works
}

// TestNoBackend: a backend that cannot be dialled gives 421.
func TestNoBackend(t *testing.T) {
	t.Parallel()
	dead := refusingAddr(t)
	h := newHarness(t, func(c *Config) { c.Backends = []Backend{{Address: dead}} }, nil)
	rc := h.raw(h.explicit())
	rc.expect(220)
	rc.cmd("AUTH TLS", 234)
	tc := tls.Client(rc.conn, h.client)
	rc.conn, rc.r = tc, ftpctl.NewReader(bufioReader(tc), 0)
	rc.cmd("USER alice", 331) // the backend is dialled for PASS
	rc.cmd("PASS s3cret-pw", 421)
	rc.expectClosed()
}

// TestFailover: the first backend refuses, the second greets.
func TestFailover(t *testing.T) {
	t.Parallel()
	dead := refusingAddr(t)
	var live string
	h := newHarness(t, func(c *Config) {
		live = c.Backends[0].Address
		c.Backends = []Backend{{Address: dead}, {Address: live}}
	}, nil)
	for range 2 {
		h.dial().NoOp()
	}
}

// TestIdle: a silent control connection is closed with 421, but not while a
// transfer moves bytes.
func TestIdle(t *testing.T) {
	t.Parallel()
	// The data side's own stall timeout is long: on a loaded machine the
	// slow reader below may be starved for seconds, and that is not what
	// this test is about.
	h := newHarness(t, func(c *Config) {
		c.Timeouts.Idle = 2 * time.Second
		c.Timeouts.DataIdle = time.Minute
	}, nil)
	h.backend.FS.WriteFile("/f", randomBytes(t, 6<<20))

	rc := h.rawTLS()
	rc.cmd("PBSZ 0", 200)
	rc.cmd("PROT P", 200)
	raw := rc.epsvData()
	rc.send("RETR f")
	rc.expect(150)
	dconn := tls.Client(raw, rc.tls)
	// Read slowly for well over the idle timeout, each pause far shorter
	// than it: 512 KiB every 300 ms, about 3.6 s in all.
	buf := make([]byte, 512<<10)
	total := 0
	for {
		n, err := io.ReadFull(dconn, buf)
		total += n
		if err != nil {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	dconn.Close()
	if total != 6<<20 {
		t.Fatalf("read %d bytes", total)
	}
	rc.expect(226)
	rc.expect(421) // now idle
	rc.expectClosed()
}

// TestPassivePortReleased: a port nobody connects to is given back after
// the data-connect timeout, and ports come from the configured range.
func TestPassivePortReleased(t *testing.T) {
	t.Parallel()
	base := freePortRange(t, 4)
	h := newHarness(t, func(c *Config) {
		c.Timeouts.DataConnect = 2 * time.Second
		c.PassivePorts = base
	}, nil)
	rc := h.rawTLS()
	port := rc.epsv()
	if port < base.First || port > base.Last {
		t.Fatalf("port %d outside %v", port, base)
	}
	if h.srv.ports.inUseCount() != 1 {
		t.Fatalf("ports in use %d, want 1", h.srv.ports.inUseCount())
	}
	waitFor(t, "passive port release", func() bool { return h.srv.ports.inUseCount() == 0 })
	if _, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))), time.Second); err == nil {
		t.Error("the released port still accepts connections")
	}
	rc.cmd("NOOP", 200)
}

// freePortRange finds n consecutive ports that are free now, below the
// kernel's ephemeral range (32768 and up on Linux): ports the kernel hands
// to the test's own connections would otherwise be taken from under the
// passive range, and a small range could be all taken at once.
func freePortRange(t testing.TB, n int) PortRange {
	const low, high = 10000, 20000
	for try := 0; try < 50; try++ {
		first := low + mrand.IntN(high-low-n)
		free := true
		for p := first; p < first+n && free; p++ {
			ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				free = false
				break
			}
			ln.Close()
		}
		if free {
			return PortRange{First: uint16(first), Last: uint16(first + n - 1)}
		}
	}
	t.Fatal("no free port range")
	return PortRange{}
}

// TestAuthInjection: plaintext pipelined behind AUTH TLS is not honoured.
func TestAuthInjection(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, nil)
	rc := h.raw(h.explicit())
	rc.expect(220)
	rc.send("AUTH TLS\r\nUSER alice")
	rc.expect(234)
	rc.expectClosed()
	waitFor(t, "log", func() bool {
		return strings.Contains(h.logs.String(), "plaintext pipelined behind AUTH refused")
	})
	if slices.Contains(h.backendVerbs(), "USER") {
		t.Error("the injected USER reached the backend")
	}
}

// TestTLSOnExplicitPort: an implicit client on the explicit port is closed
// with a clear log line.
func TestTLSOnExplicitPort(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, nil)
	conn, err := tls.Dial("tcp", h.explicit(), h.client)
	if err == nil {
		conn.Close()
		t.Fatal("TLS handshake on the explicit port succeeded")
	}
	waitFor(t, "log", func() bool {
		return strings.Contains(h.logs.String(), "set up for implicit FTPS") ||
			strings.Contains(h.logs.String(), `"reason":"client closed"`)
	})
}

// TestLineTooLong: an overlong command gets 500 as soon as it passes the
// limit, and the session ends with 421: the rest of the line would be
// read as commands.
func TestLineTooLong(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, nil)
	rc := h.rawTLS()
	rc.send("CWD " + strings.Repeat("a", 100<<10))
	rc.expect(500)
	rc.expect(421)
	rc.expectClosed()
	for _, l := range h.backend.Commands() {
		if strings.HasPrefix(l, "CWD") || strings.HasPrefix(l, "aaaa") {
			t.Errorf("the backend was sent %.40q", l)
		}
	}
}

// TestCommandDuringTransfer: a command sent while data moves is answered
// after the transfer's final reply, in order.
func TestCommandDuringTransfer(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, nil)
	h.backend.FS.WriteFile("/f", randomBytes(t, 4<<20))
	rc := h.rawTLS()
	dconn := rc.epsvData()
	rc.send("RETR f")
	rc.expect(150)
	rc.send("NOOP")
	rc.send("PWD")
	n, err := io.Copy(io.Discard, dconn)
	if err != nil || n != 4<<20 {
		t.Fatalf("read %d bytes, %v", n, err)
	}
	rc.expect(226)
	rc.expect(200)
	rc.expect(257)
}

// TestClientConnectsAfter150: a client that connects to the passive port
// only once it has the 150, in front of a backend that sends 150 only once
// its data connection is up (vsftpd, ftptest): the proxy must reach the
// backend when the command goes out, not wait for the client.
func TestClientConnectsAfter150(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, nil)
	h.backend.FS.WriteFile("/f", []byte("late but whole"))
	rc := h.rawTLS()
	port := rc.epsv()
	rc.send("RETR f")
	rc.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	rc.expect(150)
	rc.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	dconn, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(dconn)
	dconn.Close()
	rc.expect(226)
	if string(got) != "late but whole" {
		t.Fatalf("got %q", got)
	}
}
