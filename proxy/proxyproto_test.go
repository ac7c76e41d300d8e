package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ftpsgate/ftpsgate/ftpctl"
	"github.com/ftpsgate/ftpsgate/ftpctl/ftptest"
)

// The test process is the balancer: it connects from 127.0.0.1 and claims
// clients on other loopback addresses in its PROXY headers.
var loopbackLB = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}

// v2Header is a PROXY v2 header for a TCP connection from src to dst.
func v2Header(t testing.TB, src, dst string) []byte {
	t.Helper()
	h := proxyproto.HeaderProxyFromAddrs(2,
		net.TCPAddrFromAddrPort(netip.MustParseAddrPort(src)), net.TCPAddrFromAddrPort(netip.MustParseAddrPort(dst)))
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// proxied connects to addr from 127.0.0.1 as a balancer would and sends
// header before anything else.
func (h *harness) proxied(addr string, header []byte) *rawClient {
	h.t.Helper()
	rc := h.rawFrom(addr, "127.0.0.1")
	if _, err := rc.conn.Write(header); err != nil {
		h.t.Fatal(err)
	}
	return rc
}

// login secures rc with AUTH TLS and logs in.
func (rc *rawClient) login(h *harness) {
	rc.t.Helper()
	rc.expect(220)
	rc.cmd("AUTH TLS", 234)
	tc := tls.Client(rc.conn, h.client)
	if err := tc.Handshake(); err != nil {
		rc.t.Fatal(err)
	}
	rc.conn = tc
	rc.r = ftpctl.NewReader(bufio.NewReader(tc), 0)
	rc.cmd("USER alice", 331)
	rc.cmd("PASS s3cret-pw", 230)
}

// logField returns field of the first log record with message msg.
func logField(t testing.TB, logs *syncBuffer, msg, field string) string {
	t.Helper()
	recs := logs.records(msg)
	if len(recs) == 0 {
		t.Fatalf("no %q record", msg)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(recs[0]), &m); err != nil {
		t.Fatal(err)
	}
	s, _ := m[field].(string)
	return s
}

// clientHeaders returns the headers the backend got for sessions, without
// the health checks' LOCAL ones.
func clientHeaders(b *ftptest.Server) []ftptest.ProxyHeader {
	var out []ftptest.ProxyHeader
	for _, h := range b.ProxyHeaders() {
		if !h.Local {
			out = append(out, h)
		}
	}
	return out
}

// A trusted balancer's header names the client everywhere: the session's
// log records, the PROXY v2 header sent on to the backend (with the session
// id), the PASV address (the one the client reached), and the data check,
// which without data_proxy_protocol expects the balancer.
func TestProxyProtocolTrustedHeader(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) {
		c.TrustedProxies = loopbackLB
		c.Backends[0].ProxyProtocol = ProxyV2
	}, func(b *ftptest.Server) { b.RequireProxyV2 = true })
	h.backend.FS.WriteFile("/f.txt", []byte("through the balancer\n"))

	rc := h.proxied(h.explicit(), v2Header(t, "127.0.0.2:40000", "127.0.0.5:21"))
	rc.login(h)

	if got := logField(t, h.logs, "session start", "client"); got != "127.0.0.2:40000" {
		t.Errorf("session start client = %q, want the header's 127.0.0.2:40000", got)
	}
	if got := logField(t, h.logs, "session start", "via"); !strings.HasPrefix(got, "127.0.0.1:") {
		t.Errorf("session start via = %q, want the balancer 127.0.0.1", got)
	}
	session := logField(t, h.logs, "session start", "session")
	hs := clientHeaders(h.backend)
	if len(hs) != 1 {
		t.Fatalf("backend got %d client headers, want 1", len(hs))
	}
	if want := netip.MustParseAddrPort("127.0.0.2:40000"); hs[0].Source != want {
		t.Errorf("backend saw source %v, want %v", hs[0].Source, want)
	}
	if want := netip.MustParseAddrPort("127.0.0.5:21"); hs[0].Destination != want {
		t.Errorf("backend saw destination %v, want %v", hs[0].Destination, want)
	}
	if got := string(hs[0].TLVs[SessionIDTLV]); got != session {
		t.Errorf("session TLV = %q, want %q", got, session)
	}

	// PASV announces the address the client reached; the port is opened
	// where the balancer forwards it, on the proxy's own address.
	ap, err := ftpctl.ParsePASV(rc.cmd("PASV", 227).Text())
	if err != nil {
		t.Fatal(err)
	}
	if ap.Addr() != netip.MustParseAddr("127.0.0.5") {
		t.Errorf("PASV announced %v, want 127.0.0.5 (the header's destination)", ap.Addr())
	}
	// The data connection comes from the balancer, as the control one did.
	data := dialData(t, "127.0.0.1", ap.Port(), nil)
	rc.send("RETR f.txt")
	rc.expect(150)
	got, _ := io.ReadAll(data)
	rc.expect(226)
	if string(got) != "through the balancer\n" {
		t.Errorf("downloaded %q", got)
	}
}

// dialData connects to a passive port of the proxy from src and sends
// header first, if any.
func dialData(t testing.TB, src string, port uint16, header []byte) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if header != nil {
		if _, err := c.Write(header); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// A header from an address not in trusted_proxies is refused on both
// listeners, v1 and v2, and the address logged; so is a connection from a
// trusted address that sends none.
func TestProxyProtocolRefused(t *testing.T) {
	t.Parallel()
	v1 := []byte("PROXY TCP4 127.0.0.2 127.0.0.1 40000 21\r\n")

	t.Run("untrusted", func(t *testing.T) {
		t.Parallel()
		reg := prometheus.NewRegistry()
		h := newHarness(t, func(c *Config) {
			c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
			c.Metrics = NewMetrics(reg)
		}, nil)
		for _, header := range [][]byte{v2Header(t, "127.0.0.2:40000", "127.0.0.1:21"), v1} {
			rc := h.proxied(h.explicit(), header)
			rc.expect(220)
			rc.expectClosed()
			rc = h.proxied(h.implicit(), header)
			rc.expectClosed()
		}
		waitFor(t, "four refusals", func() bool {
			return len(h.logs.records("PROXY header from an address not in trusted_proxies: closing")) == 4
		})
		for _, r := range h.logs.records("PROXY header from an address not in trusted_proxies: closing") {
			if !strings.Contains(r, `"from":"127.0.0.1"`) {
				t.Errorf("refusal does not name the address: %s", r)
			}
		}
		if n := len(h.logs.records("login")); n != 0 {
			t.Errorf("%d logins", n)
		}
		m := scrape(t, reg)
		for _, l := range []string{"explicit", "implicit"} {
			if v := m[`ftpsgate_proxy_header_refusals_total{listener="`+l+`"}`]; v != 2 {
				t.Errorf("proxy_header_refusals_total{listener=%q} = %v, want 2", l, v)
			}
		}
		// A direct client, without a header, is served as before.
		h.rawTLS().cmd("PWD", 257)
	})

	t.Run("missing from trusted", func(t *testing.T) {
		t.Parallel()
		reg := prometheus.NewRegistry()
		h := newHarness(t, func(c *Config) {
			c.TrustedProxies = loopbackLB
			c.Timeouts.Handshake = time.Second
			c.Metrics = NewMetrics(reg)
		}, nil)
		// A client that speaks at once, and one that waits for the 220
		// that never comes.
		rc := h.proxied(h.explicit(), []byte("USER alice\r\n"))
		rc.expectClosed()
		rc = h.rawFrom(h.explicit(), "127.0.0.1")
		rc.expectClosed()
		waitFor(t, "two refusals", func() bool {
			return len(h.logs.records("connection from a trusted proxy without a valid PROXY header: closed")) == 2
		})
		if n := len(h.logs.records("session start")); n != 0 {
			t.Errorf("%d sessions started", n)
		}
		// The silent one is counted too: a balancer's health check closes
		// without a byte, this one was closed by the proxy.
		if v := scrape(t, reg)[`ftpsgate_proxy_header_refusals_total{listener="explicit"}`]; v != 2 {
			t.Errorf(`proxy_header_refusals_total{listener="explicit"} = %v, want 2`, v)
		}
	})
}

// The header's client is the one the affinity table pins and the
// transfer record names; behind the balancer, implicit FTPS works with the
// header and the ClientHello in one segment.
func TestProxyProtocolImplicitAndAffinity(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) {
		c.TrustedProxies = loopbackLB
		c.Balance.Affinity = SourceAffinity
	}, nil)
	raw := h.rawFrom(h.implicit(), "127.0.0.1")
	// tls.Client writes the ClientHello through this conn right behind
	// the header, in one Write.
	tc := tls.Client(&headerFirst{Conn: raw.conn, header: v2Header(t, "127.0.0.7:5555", "127.0.0.1:990")}, h.client)
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	rc := &rawClient{t: t, conn: tc, r: ftpctl.NewReader(bufio.NewReader(tc), 0)}
	rc.expect(220)
	rc.cmd("USER alice", 331)
	rc.cmd("PASS s3cret-pw", 230)
	if _, ok, _ := h.srv.store.Get(context.Background(), "default|ip:127.0.0.7"); !ok {
		t.Error("no affinity pin for the header's client 127.0.0.7")
	}
	if got := logField(t, h.logs, "session start", "client"); got != "127.0.0.7:5555" {
		t.Errorf("client = %q", got)
	}
}

// headerFirst writes header in front of the first Write.
type headerFirst struct {
	net.Conn
	header []byte
}

func (c *headerFirst) Write(b []byte) (int, error) {
	if h := c.header; h != nil {
		c.header = nil
		n, err := c.Conn.Write(append(h, b...))
		return max(0, n-len(h)), err
	}
	return c.Conn.Write(b)
}

// With data_proxy_protocol, the passive ports read the balancer's header
// too and check its client: another client's header is refused, as is a
// connection from the balancer without one, and the rightful client's
// transfer completes, also when its first bytes came with the header.
func TestProxyProtocolDataPorts(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	h := newHarness(t, func(c *Config) {
		c.TrustedProxies = loopbackLB
		c.DataProxyProtocol = true
		c.Metrics = NewMetrics(reg)
	}, nil)
	rc := h.proxied(h.explicit(), v2Header(t, "127.0.0.2:40000", "127.0.0.1:21"))
	rc.login(h)

	// Download: only the rightful client's connection gets the data.
	port := rc.epsv()
	thief := dialData(t, "127.0.0.1", port, v2Header(t, "127.0.0.9:1234", "127.0.0.1:21"))
	bare := dialData(t, "127.0.0.1", port, nil)
	waitFor(t, "the thief refused", func() bool {
		return len(h.logs.records("data connection from another address refused")) == 1
	})
	bare.Write([]byte("x")) // not a header: refused at once
	waitFor(t, "the headerless connection refused", func() bool {
		return len(h.logs.records("data connection from a trusted proxy without a valid PROXY header refused")) == 1
	})
	if r := h.logs.records("data connection from another address refused")[0]; !strings.Contains(r, `"from":"127.0.0.9"`) {
		t.Errorf("refusal names the wrong address: %s", r)
	}
	if v := scrape(t, reg)[`ftpsgate_proxy_header_refusals_total{listener="data"}`]; v != 1 {
		t.Errorf(`proxy_header_refusals_total{listener="data"} = %v, want 1`, v)
	}
	h.backend.FS.WriteFile("/down.txt", []byte("for 127.0.0.2 only\n"))
	data := dialData(t, "127.0.0.1", port, v2Header(t, "127.0.0.2:40001", "127.0.0.1:21"))
	rc.send("RETR down.txt")
	rc.expect(150)
	got, _ := io.ReadAll(data)
	rc.expect(226)
	if string(got) != "for 127.0.0.2 only\n" {
		t.Errorf("downloaded %q", got)
	}
	for _, c := range []net.Conn{thief, bare} {
		if n, _ := c.Read(make([]byte, 1)); n != 0 {
			t.Error("a refused data connection got data")
		}
	}

	// Upload: the first bytes travel in the same write as the header.
	port = rc.epsv()
	up := dialData(t, "127.0.0.1", port, append(v2Header(t, "127.0.0.2:40002", "127.0.0.1:21"), "uploaded "...))
	rc.send("STOR up.txt")
	rc.expect(150)
	up.Write([]byte("behind a header\n"))
	up.Close()
	rc.expect(226)
	if b, _ := h.backend.FS.ReadFile("/up.txt"); string(b) != "uploaded behind a header\n" {
		t.Errorf("backend stored %q", b)
	}
}

// lineBackend accepts one connection at a time, records its first line
// (the v1 header), greets and answers every command with reply.
func lineBackend(t testing.TB, reply string) (addr string, lines <-chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan string, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				br := bufio.NewReader(c)
				first, err := br.ReadString('\n')
				if err != nil {
					return
				}
				ch <- first
				io.WriteString(c, "220 fake\r\n")
				for {
					if _, err := br.ReadString('\n'); err != nil {
						return
					}
					io.WriteString(c, reply+"\r\n")
				}
			}()
		}
	}()
	return ln.Addr().String(), ch
}

// A v1 backend gets the text header with the client's real address, and a
// health check says UNKNOWN rather than claim a client.
func TestProxyProtocolV1ToBackend(t *testing.T) {
	t.Parallel()
	addr, lines := lineBackend(t, "530 nobody here")
	h := newHarness(t, func(c *Config) {
		c.TrustedProxies = loopbackLB
		c.Backends = []Backend{{Address: addr, ProxyProtocol: ProxyV1}}
		c.Health.Disabled = true
	}, nil)
	rc := h.proxied(h.explicit(), v2Header(t, "127.0.0.2:40000", "127.0.0.5:21"))
	rc.expect(220)
	rc.cmd("AUTH TLS", 234)
	tc := tls.Client(rc.conn, h.client)
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	rc.conn, rc.r = tc, ftpctl.NewReader(bufio.NewReader(tc), 0)
	rc.cmd("USER alice", 331)
	rc.cmd("PASS s3cret-pw", 530) // the backend's answer to USER
	if got, want := <-lines, "PROXY TCP4 127.0.0.2 127.0.0.5 40000 21\r\n"; got != want {
		t.Errorf("backend got %q, want %q", got, want)
	}

	// The check's outcome does not matter here (530 to FEAT), only its header.
	checkBackend(context.Background(), Backend{Address: addr, ProxyProtocol: ProxyV1}, Health{})
	if got := <-lines; got != "PROXY UNKNOWN\r\n" {
		t.Errorf("health check sent %q, want PROXY UNKNOWN", got)
	}
}

// A v2 backend's health check sends the LOCAL command, with no client.
func TestProxyProtocolV2HealthCheck(t *testing.T) {
	t.Parallel()
	b := ftptest.NewUnstartedServer()
	b.RequireProxyV2 = true
	b.Start()
	t.Cleanup(b.Close)
	if _, _, err := checkBackend(context.Background(), Backend{Address: b.Addr(), ProxyProtocol: ProxyV2}, Health{}); err != nil {
		t.Fatal(err)
	}
	hs := b.ProxyHeaders()
	if len(hs) != 1 || !hs[0].Local {
		t.Fatalf("headers = %+v, want one LOCAL", hs)
	}
	// And a backend that requires a header refuses a check without one.
	if _, _, err := checkBackend(context.Background(), Backend{Address: b.Addr()}, Health{Timeout: 2 * time.Second}); err == nil {
		t.Error("check without a header passed against a backend that requires one")
	}
}

func TestParseProxyVersion(t *testing.T) {
	for in, want := range map[string]ProxyVersion{"": ProxyOff, "off": ProxyOff, "v1": ProxyV1, "v2": ProxyV2} {
		if got, err := ParseProxyVersion(in); err != nil || got != want {
			t.Errorf("ParseProxyVersion(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseProxyVersion("2"); err == nil {
		t.Error(`"2" accepted`)
	}
}

// An IPv6 client behind a balancer that reaches the proxy over IPv4: EPSV
// speaks the client's family, PASV without public_host is refused, and the
// data check still compares the IPv6 addresses of the headers.
func TestProxyProtocolIPv6ClientOverIPv4(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) {
		c.TrustedProxies = loopbackLB
		c.DataProxyProtocol = true
	}, nil)
	h.backend.FS.WriteFile("/six.txt", []byte("v6 behind v4\n"))
	rc := h.proxied(h.explicit(), v2Header(t, "[2001:db8::7]:4000", "[2001:db8::1]:21"))
	rc.login(h)
	rc.cmd("PASV", 522)
	rc.cmd("EPSV 1", 522)
	port, err := ftpctl.ParseEPSV(rc.cmd("EPSV 2", 229).Text())
	if err != nil {
		t.Fatal(err)
	}
	dialData(t, "127.0.0.1", port, v2Header(t, "[2001:db8::9]:4001", "[2001:db8::1]:21"))
	waitFor(t, "the other IPv6 client refused", func() bool {
		recs := h.logs.records("data connection from another address refused")
		return len(recs) == 1 && strings.Contains(recs[0], `"from":"2001:db8::9"`)
	})
	data := dialData(t, "127.0.0.1", port, v2Header(t, "[2001:db8::7]:4002", "[2001:db8::1]:21"))
	rc.send("RETR six.txt")
	rc.expect(150)
	got, _ := io.ReadAll(data)
	rc.expect(226)
	if string(got) != "v6 behind v4\n" {
		t.Errorf("downloaded %q", got)
	}
}

// A client behind a trusted balancer that sends a header of its own, to
// pass for another client, is refused.
func TestProxyProtocolSecondHeader(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) { c.TrustedProxies = loopbackLB }, nil)
	rc := h.proxied(h.explicit(), append(v2Header(t, "127.0.0.2:40000", "127.0.0.1:21"),
		v2Header(t, "127.0.0.9:1", "127.0.0.1:21")...))
	rc.expect(220)
	rc.expectClosed()
	waitFor(t, "the refusal", func() bool {
		return len(h.logs.records("second PROXY header behind the balancer's: closing")) == 1
	})
}
