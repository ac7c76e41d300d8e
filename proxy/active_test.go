package proxy

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/ftpctl"
	"github.com/ftpsgate/ftpsgate/ftpctl/ftptest"
)

// activeListener is a client's listener for the proxy's active data
// connections, on ip at an ephemeral port.
func activeListener(t testing.TB, ip string) *net.TCPListener {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func listenAddr(ln net.Listener) netip.AddrPort {
	ap := ln.Addr().(*net.TCPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// portCmd is the PORT (or, extended, EPRT) command naming ln.
func portCmd(ln net.Listener, extended bool) string {
	if extended {
		return "EPRT " + ftpctl.FormatEPRT(listenAddr(ln))
	}
	return "PORT " + ftpctl.FormatPORT(listenAddr(ln))
}

// acceptData takes the proxy's data connection on ln, with a wide margin.
func acceptData(t testing.TB, ln *net.TCPListener) net.Conn {
	t.Helper()
	ln.SetDeadline(time.Now().Add(20 * time.Second))
	conn, err := ln.Accept()
	if err != nil {
		t.Fatalf("the proxy did not connect to the client's data port: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	return conn
}

// dataTLS runs the client's TLS handshake on a data connection the proxy
// dialled: the FTP client is the TLS client (RFC 4217 section 7).
func dataTLS(t testing.TB, conn net.Conn, cfg *tls.Config) *tls.Conn {
	t.Helper()
	tc := tls.Client(conn, cfg)
	if err := tc.Handshake(); err != nil {
		t.Fatalf("data TLS handshake: %v", err)
	}
	return tc
}

// retrActive downloads name over an active data connection, after the
// PORT or EPRT on ln was accepted, and returns the data and the data TLS
// state (zero under PROT C); the final reply must be 226.
func retrActive(t testing.TB, rc *rawClient, ln *net.TCPListener, name string, cfg *tls.Config) ([]byte, tls.ConnectionState) {
	t.Helper()
	rc.send("RETR " + name)
	var conn net.Conn = acceptData(t, ln)
	rc.expect(150)
	var st tls.ConnectionState
	if cfg != nil {
		tc := dataTLS(t, conn, cfg)
		st, conn = tc.ConnectionState(), tc
	}
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("reading the download: %v", err)
	}
	rc.expect(226)
	return got, st
}

// storActive uploads data as name over an active data connection.
func storActive(t testing.TB, rc *rawClient, ln *net.TCPListener, name string, data []byte, cfg *tls.Config) tls.ConnectionState {
	t.Helper()
	rc.send("STOR " + name)
	var conn net.Conn = acceptData(t, ln)
	rc.expect(150)
	var st tls.ConnectionState
	if cfg != nil {
		tc := dataTLS(t, conn, cfg)
		st, conn = tc.ConnectionState(), tc
	}
	if _, err := conn.Write(data); err != nil {
		t.Fatalf("writing the upload: %v", err)
	}
	conn.Close() // close_notify under TLS, then FIN
	rc.expect(226)
	return st
}

func sameBytes(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if sha256.Sum256(got) != sha256.Sum256(want) {
		t.Fatalf("%s: %d bytes, differing from the %d expected", what, len(got), len(want))
	}
}

// TestActiveTransfers: PORT and EPRT, downloads and uploads compared by
// hash, PROT C and PROT P; under PROT P the proxy is the TLS server on the
// connection it dialled and the client resumes its control session.
func TestActiveTransfers(t *testing.T) {
	t.Parallel()
	for _, protP := range []bool{false, true} {
		for _, extended := range []bool{false, true} {
			name := fmt.Sprintf("prot%s/%s", map[bool]string{false: "C", true: "P"}[protP], map[bool]string{false: "PORT", true: "EPRT"}[extended])
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				h := newHarness(t, nil, nil)
				data := randomBytes(t, 2<<20+3)
				h.backend.FS.WriteFile("/f", data)
				rc := h.rawTLS()
				rc.cmd("PBSZ 0", 200)
				var cfg *tls.Config
				if protP {
					rc.cmd("PROT P", 200)
					cfg = rc.tls
				} else {
					rc.cmd("PROT C", 200)
				}
				ln := activeListener(t, "127.0.0.1")
				rc.cmd(portCmd(ln, extended), 200)
				got, st := retrActive(t, rc, ln, "f", cfg)
				sameBytes(t, "download", got, data)
				if protP && !st.DidResume {
					t.Error("the active download's TLS did not resume the control session")
				}

				up := randomBytes(t, 1<<20+7)
				rc.cmd(portCmd(ln, extended), 200)
				st = storActive(t, rc, ln, "up", up, cfg)
				stored, _ := h.backend.FS.ReadFile("/up")
				sameBytes(t, "upload", stored, up)
				if protP && !st.DidResume {
					t.Error("the active upload's TLS did not resume the control session")
				}
				rc.cmd("NOOP", 200)

				xfers := h.logs.records("transfer")
				if len(xfers) != 2 {
					t.Fatalf("%d transfer records, want 2", len(xfers))
				}
				for _, want := range []string{`"client_data":"active"`, `"backend_data":"active"`, `"code":226`} {
					for _, x := range xfers {
						if !strings.Contains(x, want) {
							t.Errorf("transfer record lacks %s: %s", want, x)
						}
					}
				}
				if protP && !strings.Contains(xfers[0], `"data_resumed":true`) {
					t.Errorf("transfer record: %s", xfers[0])
				}
			})
		}
	}
}

// TestDataToBackend: every client mode with every data_to_backend, the
// backend asked in the mode it should be, and auto falling back to the
// other mode when the backend refuses one.
func TestDataToBackend(t *testing.T) {
	t.Parallel()
	cases := []struct {
		client      string // "passive" (EPSV) or "active" (PORT)
		toBackend   DataMode
		backend     func(*ftptest.Server)
		wantAsked   []string // data setup verbs the backend received, in order
		wantBackend string   // backend_data in the transfer record; "" for a refused setup
		refusal     ftpctl.Code
	}{
		{"passive", DataPassive, nil, []string{"PASV"}, "passive", 0},
		{"passive", DataActive, nil, []string{"PORT"}, "active", 0},
		{"passive", DataAuto, nil, []string{"PASV"}, "passive", 0},
		{"active", DataPassive, nil, []string{"PASV"}, "passive", 0},
		{"active", DataActive, nil, []string{"PORT"}, "active", 0},
		{"active", DataAuto, nil, []string{"PORT"}, "active", 0},
		// A backend whose passive mode is closed: auto tries PASV, then
		// EPSV (the backend might lack one verb), then PORT.
		{"passive", DataAuto, func(b *ftptest.Server) { b.DisablePassive = true }, []string{"PASV", "EPSV", "PORT"}, "active", 0},
		{"active", DataAuto, func(b *ftptest.Server) { b.DisableActive = true }, []string{"PORT", "PASV"}, "passive", 0},
		// A forced mode the backend refuses: the client gets the backend's
		// answer if it asked in that mode, else 425.
		{"active", DataActive, func(b *ftptest.Server) { b.DisableActive = true }, []string{"PORT"}, "", 502},
		{"passive", DataActive, func(b *ftptest.Server) { b.DisableActive = true }, []string{"PORT"}, "", 425},
		// Asked ahead (aheadEnd): EPSV is answered at once, the refusal
		// at the transfer command, as a data connection that cannot be
		// opened.
		{"passive", DataPassive, func(b *ftptest.Server) { b.DisablePassive = true }, []string{"PASV", "EPSV"}, "", 425},
	}
	for _, c := range cases {
		name := fmt.Sprintf("client-%s/to-backend-%s", c.client, c.toBackend)
		if c.backend != nil {
			name += "/backend-refuses-" + c.wantAsked[0]
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, func(cfg *Config) { cfg.Backends[0].DataToBackend = c.toBackend }, c.backend)
			data := randomBytes(t, 512<<10+1)
			h.backend.FS.WriteFile("/f", data)
			rc := h.rawTLS()
			rc.cmd("PBSZ 0", 200)
			rc.cmd("PROT P", 200)
			var got []byte
			if c.client == "passive" {
				switch {
				case c.refusal != 0 && c.toBackend == DataActive:
					rc.cmd("EPSV", c.refusal)
				case c.refusal != 0:
					rc.cmd("EPSV", 229)
					rc.cmd("RETR f", c.refusal)
				default:
					got = dataRetr229(t, rc, rc.tls, "f")
				}
			} else {
				ln := activeListener(t, "127.0.0.1")
				if c.refusal != 0 {
					rc.cmd(portCmd(ln, false), c.refusal)
				} else {
					rc.cmd(portCmd(ln, false), 200)
					got, _ = retrActive(t, rc, ln, "f", rc.tls)
				}
			}
			rc.cmd("NOOP", 200)
			var asked []string
			for _, v := range h.backendVerbs() {
				if v == "PASV" || v == "EPSV" || v == "PORT" || v == "EPRT" {
					asked = append(asked, v)
				}
			}
			if !slices.Equal(asked, c.wantAsked) {
				t.Errorf("the backend was asked %v, want %v", asked, c.wantAsked)
			}
			if c.refusal != 0 {
				return
			}
			sameBytes(t, "download", got, data)
			xfers := h.logs.records("transfer")
			if len(xfers) != 1 || !strings.Contains(xfers[0], `"client_data":"`+c.client+`"`) ||
				!strings.Contains(xfers[0], `"backend_data":"`+c.wantBackend+`"`) {
				t.Errorf("transfer records %q, want client_data %s and backend_data %s", xfers, c.client, c.wantBackend)
			}
		})
	}
}

// dataRetr229 downloads name over EPSV under PROT P and returns the data.
func dataRetr229(t testing.TB, rc *rawClient, cfg *tls.Config, name string) []byte {
	t.Helper()
	port := rc.epsv()
	raw, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(30 * time.Second))
	rc.send("RETR " + name)
	rc.expect(150)
	got, err := io.ReadAll(dataTLS(t, raw, cfg))
	if err != nil {
		t.Fatal(err)
	}
	rc.expect(226)
	return got
}

// TestActiveBounce: PORT and EPRT toward another host than the client, or a
// privileged port, are refused with 504 and logged, and never reach the
// backend; a foreign family is 522, a malformed argument 501 (RFC 2577
// section 3, RFC 2428 section 2).
func TestActiveBounce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, nil)
	rc := h.rawTLS()
	for _, c := range []struct {
		cmd  string
		code ftpctl.Code
	}{
		{"PORT 127,0,0,9,39,16", 504},     // 127.0.0.9:10000, not the client (127.0.0.1)
		{"PORT 127,0,0,1,3,255", 504},     // port 1023
		{"PORT 127,0,0,1,0,21", 504},      // the control port of the client's host
		{"EPRT |1|127.0.0.9|10000|", 504}, // foreign
		{"EPRT |1|127.0.0.1|25|", 504},    // privileged
		{"EPRT |2|::1|10000|", 522},       // IPv6 on an IPv4 control connection
		{"EPRT |3|127.0.0.1|10000|", 522}, // unknown family
		{"PORT 127,0,0,1,39", 501},        // five numbers
		{"PORT 127,0,0,300,39,16", 501},   // out of range
		{"EPRT |1|127.0.0.1|0|", 501},     // port 0
		{"EPRT |1|::1|10000|", 501},       // family 1 with an IPv6 address
		{"EPRT 127.0.0.1|10000", 501},     // no delimiters
		{"LPRT 4,127,0,0,1,2,39,16", 502}, // RFC 1639: not supported
		{"PORT 127,0,0,1,39,16", 200},     // the client itself: fine
		{"EPRT !1!127.0.0.1!10000!", 200}, // any delimiter
		{"PORT 127,0,0,99,39,16", 504},    // and a refusal after an accepted one
	} {
		if rep := rc.cmd(c.cmd, c.code); c.code == 504 && !strings.Contains(rep.Text(), "refused") {
			t.Errorf("%s: reply %q does not say it was refused", c.cmd, rep.Text())
		}
	}
	rc.cmd("NOOP", 200)
	if n := len(h.logs.records("active data address refused (FTP bounce)")); n != 6 {
		t.Errorf("%d bounce refusals logged, want 6", n)
	}
	// Only the two accepted commands set up anything at the backend.
	if n := countOf(h.backendVerbs(), "PORT"); n != 2 {
		t.Errorf("the backend got PORT %d times, want 2: %v", n, h.backendVerbs())
	}
}

// TestActiveUnspecifiedAddress: PORT 0.0.0.0 and EPRT :: (lftp sends the
// address its data socket is bound to, the wildcard) stand for the
// client's own address, never for the proxy's host.
func TestActiveUnspecifiedAddress(t *testing.T) {
	t.Parallel()
	t.Run("PORT 0.0.0.0", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, nil, nil)
		h.backend.FS.WriteFile("/f", []byte("wildcard"))
		rc := h.rawTLS()
		ln := activeListener(t, "127.0.0.1")
		rc.cmd("PORT "+ftpctl.FormatPORT(netip.AddrPortFrom(netip.IPv4Unspecified(), listenAddr(ln).Port())), 200)
		if got, _ := retrActive(t, rc, ln, "f", nil); string(got) != "wildcard" {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("EPRT ::", func(t *testing.T) {
		t.Parallel()
		h := ipv6Harness(t, nil)
		h.backend.FS.WriteFile("/f", []byte("wildcard"))
		rc := h.rawTLS()
		ln := activeListener(t, "::1")
		rc.cmd(fmt.Sprintf("EPRT |2|::|%d|", listenAddr(ln).Port()), 200)
		if got, _ := retrActive(t, rc, ln, "f", nil); string(got) != "wildcard" {
			t.Fatalf("got %q", got)
		}
	})
}

// TestAllowForeignDataAddress: with allow_foreign_data_address, PORT may
// name another host (here 127.0.0.9 for a client on 127.0.0.1), and the
// data goes there; privileged ports stay refused.
func TestAllowForeignDataAddress(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) { c.AllowForeignDataAddress = true }, nil)
	h.backend.FS.WriteFile("/f", []byte("to a third party"))
	rc := h.rawTLS()
	rc.cmd("PORT 127,0,0,9,3,255", 504)
	third := activeListener(t, "127.0.0.9")
	rc.cmd(portCmd(third, false), 200)
	if got, _ := retrActive(t, rc, third, "f", nil); string(got) != "to a third party" {
		t.Fatalf("the third party got %q", got)
	}
}

// TestActiveForeignBackendConnection: the listener the proxy opened for an
// active backend takes only the backend's IP; another host that connects
// first is refused and logged, and the transfer goes on.
func TestActiveForeignBackendConnection(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) { c.Backends[0].DataToBackend = DataActive }, nil)
	data := randomBytes(t, 256<<10)
	h.backend.FS.WriteFile("/f", data)
	rc := h.rawTLS()
	port := rc.epsv()
	var proxyPort netip.AddrPort
	for _, l := range h.backend.Commands() {
		if arg, ok := strings.CutPrefix(l, "PORT "); ok {
			proxyPort, _ = ftpctl.ParsePORT(arg)
		}
	}
	if !proxyPort.IsValid() {
		t.Fatalf("no PORT reached the backend: %v", h.backend.Commands())
	}
	thief := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
	tconn, err := thief.Dial("tcp", proxyPort.String())
	if err != nil {
		t.Fatal(err)
	}
	defer tconn.Close()
	tconn.Write([]byte("forged upload"))

	dconn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer dconn.Close()
	dconn.SetDeadline(time.Now().Add(30 * time.Second))
	rc.send("RETR f")
	rc.expect(150)
	got, err := io.ReadAll(dconn)
	if err != nil {
		t.Fatal(err)
	}
	rc.expect(226)
	sameBytes(t, "download", got, data)
	tconn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := tconn.Read(make([]byte, 16)); err == nil || n > 0 {
		t.Errorf("the foreign connection read %d bytes, err %v: want it closed", n, err)
	}
	waitFor(t, "refusal log", func() bool {
		for _, r := range h.logs.records("data connection from another address refused") {
			if strings.Contains(r, `"party":"backend"`) && strings.Contains(r, `"from":"127.0.0.2"`) {
				return true
			}
		}
		return false
	})
}

// TestActiveSourcePort: active connections to clients come from
// active_source_port, one after another; when the port cannot be bound
// (another socket listens on it), from an ephemeral port, with a warning.
// The test uses a free high port: binding 20 would need root, and
// Config.ActiveSourcePort treats every port alike.
func TestActiveSourcePort(t *testing.T) {
	t.Parallel()
	src := fixedPort(t)
	h := newHarness(t, func(c *Config) { c.ActiveSourcePort = src }, nil)
	h.backend.FS.WriteFile("/f", []byte("from a fixed port"))
	rc := h.rawTLS()
	for range 3 {
		ln := activeListener(t, "127.0.0.1")
		rc.cmd(portCmd(ln, false), 200)
		rc.send("RETR f")
		conn := acceptData(t, ln)
		if from := conn.RemoteAddr().(*net.TCPAddr).Port; from != int(src) {
			t.Errorf("the data connection came from port %d, want %d", from, src)
		}
		io.Copy(io.Discard, conn)
		rc.expect(150)
		rc.expect(226)
	}

	busy, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(src))))
	if err != nil {
		t.Skipf("cannot hold port %d for the fallback: %v", src, err)
	}
	defer busy.Close()
	ln := activeListener(t, "127.0.0.1")
	rc.cmd(portCmd(ln, false), 200)
	rc.send("RETR f")
	conn := acceptData(t, ln)
	if from := conn.RemoteAddr().(*net.TCPAddr).Port; from == int(src) {
		t.Errorf("the data connection came from the busy port %d", from)
	}
	got, _ := io.ReadAll(conn)
	rc.expect(150)
	rc.expect(226)
	if string(got) != "from a fixed port" {
		t.Errorf("got %q", got)
	}
	if len(h.logs.records("active_source_port unavailable: dialling from an ephemeral port")) != 1 {
		t.Error("the fallback to an ephemeral port was not logged")
	}
}

// fixedPort returns a free port below the kernel's ephemeral range, which
// no other test's connection can be given as its local port meanwhile.
func fixedPort(t testing.TB) uint16 {
	t.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				low = n
			}
		}
	}
	// 15000-19999: below the range, away from the integration servers' ports.
	for p := 15000 + rand.IntN(1000); p < min(20000, low); p++ {
		if ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p))); err == nil {
			ln.Close()
			return uint16(p)
		}
	}
	t.Skip("no free port below the ephemeral range")
	return 0
}

// TestActiveAbort: ABOR during an active PROT P download closes both data
// sides; the client gets 426 then 226, and the session goes on.
func TestActiveAbort(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, nil)
	h.backend.FS.WriteFile("/big", bytes.Repeat([]byte("x"), 64<<20)) // far more than the sockets buffer
	rc := h.rawTLS()
	rc.cmd("PBSZ 0", 200)
	rc.cmd("PROT P", 200)
	ln := activeListener(t, "127.0.0.1")
	rc.cmd(portCmd(ln, true), 200)
	rc.send("RETR big")
	conn := acceptData(t, ln)
	rc.expect(150)
	tc := dataTLS(t, conn, rc.tls)
	if _, err := io.ReadFull(tc, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	rc.send("\xff\xf4\xff\xf2ABOR")
	rc.expect(426)
	rc.expect(226)
	rc.cmd("NOOP", 200)
	if !slices.Contains(h.backendVerbs(), "ABOR") {
		t.Errorf("ABOR did not reach the backend: %v", h.backendVerbs())
	}
}

// TestActiveClientUnreachable: a client that does not accept the proxy's
// data connection gets a 4xx for the transfer (425 when the backend had
// finished, its own 426 otherwise), and the session goes on.
func TestActiveClientUnreachable(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, nil)
	h.backend.FS.WriteFile("/f", randomBytes(t, 4<<20))
	// A free port below the ephemeral range: no other test listens there.
	port := "PORT " + ftpctl.FormatPORT(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), fixedPort(t)))
	rc := h.rawTLS()
	rc.cmd(port, 200)
	rc.send("RETR f")
	for {
		rep, err := rc.r.ReadReply()
		if err != nil {
			t.Fatal(err)
		}
		if rep.Code.Final() {
			if rep.Code.Class() != ftpctl.ClassTransient {
				t.Fatalf("transfer to an unreachable client: %d %q", rep.Code, rep.Lines)
			}
			break
		}
	}
	rc.cmd("NOOP", 200)
	waitFor(t, "the failed dial logged", func() bool {
		return strings.Contains(h.logs.String(), `"party":"client"`) && len(h.logs.records("data connection failed")) == 1
	})
}

// TestEPSVAll: after EPSV ALL only EPSV sets up data connections (RFC 2428
// section 4); EPSV ALL itself stays with the proxy, which may still talk
// to the backend as it likes.
func TestEPSVAll(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) { c.Backends[0].DataToBackend = DataActive }, nil)
	h.backend.FS.WriteFile("/f", []byte("extended only"))
	rc := h.rawTLS()
	rc.cmd("PBSZ 0", 200)
	rc.cmd("PROT P", 200)
	rc.cmd("EPSV ALL", 200)
	rc.cmd("PASV", 503)
	rc.cmd("PORT 127,0,0,1,39,16", 503)
	rc.cmd("EPRT |1|127.0.0.1|10000|", 503)
	if got := dataRetr229(t, rc, rc.tls, "f"); string(got) != "extended only" {
		t.Fatalf("got %q", got)
	}
	for _, l := range h.backend.Commands() {
		if strings.HasPrefix(strings.ToUpper(l), "EPSV") {
			t.Errorf("the backend got %q", l)
		}
	}
}

// TestPassiveAddressByNetwork: 227 replies announce the address configured
// for the client's network, public_host to the others; the data connection
// still works from the client's own address.
func TestPassiveAddressByNetwork(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) {
		c.PublicHost = netip.MustParseAddr("127.0.0.11")
		c.PassiveAddresses = []PassiveAddress{
			{Clients: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.2/32")},
				Address: netip.MustParseAddr("127.0.0.22")},
			{Clients: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/24")}, Address: netip.MustParseAddr("127.0.0.33")},
		}
	}, nil)
	h.backend.FS.WriteFile("/f", []byte("lan"))
	for _, c := range []struct{ src, want string }{
		{"127.0.0.2", "127.0.0.22"}, // first match wins
		{"127.0.0.1", "127.0.0.33"},
		{"127.0.1.1", "127.0.0.11"}, // no match: public_host
	} {
		rc := h.rawTLSFrom(c.src)
		ap, err := ftpctl.ParsePASV(rc.cmd("PASV", 227).Text())
		if err != nil {
			t.Fatal(err)
		}
		if ap.Addr().String() != c.want {
			t.Errorf("client %s: 227 announced %s, want %s", c.src, ap.Addr(), c.want)
		}
		// EPSV carries only the port (RFC 2428 section 3): no address to pick.
		rc.cmd("EPSV", 229)
		if c.src != "127.0.0.2" {
			continue
		}
		// The proxy listens where the client's control connection arrived;
		// the announced address is what NAT maps to it.
		port := rc.epsv()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(c.src)}, Timeout: 5 * time.Second}
		dconn, err := d.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
		if err != nil {
			t.Fatal(err)
		}
		rc.send("RETR f")
		rc.expect(150)
		got, _ := io.ReadAll(dconn)
		dconn.Close()
		rc.expect(226)
		if string(got) != "lan" {
			t.Errorf("client %s got %q", c.src, got)
		}
	}
}

// ipv6Harness is a proxy listening on [::1], or a skip where the machine
// has no IPv6 loopback.
func ipv6Harness(t *testing.T, cfgFn func(*Config)) *harness {
	t.Helper()
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	ln.Close()
	return newHarness(t, func(c *Config) {
		c.Listen, c.Implicit = "[::1]:0", "[::1]:0"
		if cfgFn != nil {
			cfgFn(c)
		}
	}, nil)
}

// TestIPv6: a listener on ::1; EPSV and EPRT transfers from an IPv6
// client; PASV refused toward EPSV without public_host, or answered with it;
// PORT and IPv4 EPRT refused with 522.
func TestIPv6(t *testing.T) {
	t.Parallel()
	t.Run("EPSV and EPRT", func(t *testing.T) {
		t.Parallel()
		h := ipv6Harness(t, nil)
		data := randomBytes(t, 1<<20+5)
		h.backend.FS.WriteFile("/f", data)
		rc := h.rawTLS()
		rc.cmd("PBSZ 0", 200)
		rc.cmd("PROT P", 200)
		port := rc.epsv()
		raw, err := net.DialTimeout("tcp", net.JoinHostPort("::1", strconv.Itoa(int(port))), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		rc.send("RETR f")
		rc.expect(150)
		got, err := io.ReadAll(dataTLS(t, raw, rc.tls))
		raw.Close()
		if err != nil {
			t.Fatal(err)
		}
		rc.expect(226)
		sameBytes(t, "EPSV download", got, data)

		rc.cmd("EPSV 1", 522)
		rc.cmd("EPSV 2", 229)
		ln := activeListener(t, "::1")
		rc.cmd(portCmd(ln, true), 200)
		got, st := retrActive(t, rc, ln, "f", rc.tls)
		sameBytes(t, "EPRT download", got, data)
		if !st.DidResume {
			t.Error("the EPRT download did not resume the control TLS session")
		}

		rc.cmd("EPRT |1|127.0.0.1|10000|", 522)
		rc.cmd("PORT 127,0,0,1,39,16", 522)
		rc.cmd("EPRT |2|::2|10000|", 504)
		if rep := rc.cmd("PASV", 522); !strings.Contains(rep.Text(), "EPSV") {
			t.Errorf("PASV on IPv6: %q does not point to EPSV", rep.Text())
		}
	})
	t.Run("PASV with public_host", func(t *testing.T) {
		t.Parallel()
		h := ipv6Harness(t, func(c *Config) { c.PublicHost = netip.MustParseAddr("127.0.0.1") })
		h.backend.FS.WriteFile("/f", []byte("over IPv4"))
		rc := h.rawTLS()
		// The data connection comes over IPv4 from an address nothing ties
		// to the client: under PROT C nothing could tell it from anyone's.
		if rep := rc.cmd("PASV", 522); !strings.Contains(rep.Text(), "EPSV") {
			t.Errorf("PASV on IPv6 under PROT C: %q does not point to EPSV", rep.Text())
		}
		// Under PROT P it is the one that resumes the client's session.
		rc.cmd("PBSZ 0", 200)
		rc.cmd("PROT P", 200)
		ap, err := ftpctl.ParsePASV(rc.cmd("PASV", 227).Text())
		if err != nil {
			t.Fatal(err)
		}
		if ap.Addr() != netip.MustParseAddr("127.0.0.1") {
			t.Fatalf("227 announced %s, want public_host 127.0.0.1", ap)
		}
		dconn, err := net.DialTimeout("tcp", ap.String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer dconn.Close()
		rc.send("RETR f")
		rc.expect(150)
		got, _ := io.ReadAll(dataTLS(t, dconn, rc.tls))
		rc.expect(226)
		if string(got) != "over IPv4" {
			t.Fatalf("got %q", got)
		}
		// PROT C after such a PASV: the transfer is refused, not run.
		rc.cmd("PASV", 227)
		rc.cmd("PROT C", 200)
		rc.cmd("RETR f", 522)
	})
}

// TestActiveNoLeaks: sessions with active channels that transfer, abort,
// are replaced or never used all give back their goroutines, listeners and
// ports. Not parallel: it counts goroutines.
func TestActiveNoLeaks(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.PassivePorts = freePortRange(t, 64) }, nil)
	h.backend.FS.WriteFile("/f", randomBytes(t, 64<<10))
	before := runtime.NumGoroutine()
	for i := range 20 {
		rc := h.rawTLS()
		ln := activeListener(t, "127.0.0.1")
		rc.cmd(portCmd(ln, i%2 == 1), 200)
		switch i % 4 {
		case 0: // a transfer
			retrActive(t, rc, ln, "f", nil)
		case 1: // replaced by EPSV, then by PORT, never used
			rc.cmd("EPSV", 229)
			rc.cmd(portCmd(ln, false), 200)
		case 2: // a transfer the backend refuses
			rc.cmd("RETR missing", 550)
		case 3: // the session ends with the channel waiting
		}
		rc.cmd("QUIT", 221)
	}
	waitFor(t, "sessions to end", func() bool {
		return h.srv.ActiveSessions() == 0 && h.backend.ActiveSessions() == 0 && h.srv.ports.inUseCount() == 0
	})
	waitFor(t, "goroutines to return", func() bool { return runtime.NumGoroutine() <= before+5 })
}
