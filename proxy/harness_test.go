package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
	"github.com/rs/zerolog"

	"github.com/ftpsgate/ftpsgate/ftpctl"
	"github.com/ftpsgate/ftpsgate/ftpctl/ftptest"
	"github.com/ftpsgate/ftpsgate/tlsoffload"
)

// harness is a proxy in front of an in-memory backend, both on loopback
// ephemeral ports, torn down with the test.
type harness struct {
	t       testing.TB
	backend *ftptest.Server
	srv     *Server
	cfg     Config // as given to New
	logs    *syncBuffer
	client  *tls.Config // trusts the proxy's certificate, caches sessions
}

func newHarness(t testing.TB, cfgFn func(*Config), backendFn func(*ftptest.Server)) *harness {
	t.Helper()
	backend := ftptest.NewUnstartedServer()
	backend.Users = map[string]string{"alice": "s3cret-pw"}
	if backendFn != nil {
		backendFn(backend)
	}
	backend.Start()
	t.Cleanup(backend.Close)

	off, err := tlsoffload.New(tlsoffload.Config{})
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	cfg := Config{
		Listen:    "127.0.0.1:0",
		Implicit:  "127.0.0.1:0",
		Backends:  []Backend{{Address: backend.Addr(), Name: "mem"}},
		TLSConfig: off.TLSConfig(),
		Logger:    zerolog.New(io.MultiWriter(logs, suiteLog)).Level(zerolog.DebugLevel).With().Timestamp().Logger(),
	}
	if cfgFn != nil {
		cfgFn(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ctx); err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("proxy log:\n%s", logs.String())
		}
	})

	pool := x509.NewCertPool()
	pool.AddCert(off.Certificate().Leaf)
	return &harness{
		t: t, backend: backend, srv: srv, cfg: cfg, logs: logs,
		client: &tls.Config{RootCAs: pool, ServerName: "localhost", ClientSessionCache: tls.NewLRUClientSessionCache(8)},
	}
}

func (h *harness) explicit() string { return h.srv.ExplicitAddr().String() }
func (h *harness) implicit() string { return h.srv.ImplicitAddr().String() }

// sessionTLS is the harness's client TLS configuration with a session
// cache of its own, as each real client session has: its data connections
// resume its own control session, never another's (the proxy refuses
// those).
func (h *harness) sessionTLS() *tls.Config {
	c := h.client.Clone()
	c.ClientSessionCache = tls.NewLRUClientSessionCache(8)
	return c
}

// dial logs in through the proxy with jlaffaye/ftp.
func (h *harness) dial(opts ...ftp.DialOption) *ftp.ServerConn {
	h.t.Helper()
	opts = append([]ftp.DialOption{ftp.DialWithTimeout(10 * time.Second), ftp.DialWithExplicitTLS(h.sessionTLS())}, opts...)
	c, err := ftp.Dial(h.explicit(), opts...)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := c.Login("alice", "s3cret-pw"); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Quit() })
	return c
}

// rawClient speaks the control protocol by hand.
type rawClient struct {
	t    testing.TB
	conn net.Conn
	r    *ftpctl.Reader
	// tls is the session's own client TLS configuration (rawTLS): its
	// cache holds the control session, which its data connections resume.
	tls *tls.Config
}

func (h *harness) raw(addr string) *rawClient {
	h.t.Helper()
	return h.rawFrom(addr, "")
}

// rawFrom is raw from the source address src ("" for any).
func (h *harness) rawFrom(addr, src string) *rawClient {
	h.t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { conn.Close() })
	rc := &rawClient{t: h.t, conn: conn, r: ftpctl.NewReader(bufio.NewReader(conn), 0)}
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	return rc
}

// rawTLS is a raw client after greeting, AUTH TLS and login.
func (h *harness) rawTLS() *rawClient {
	h.t.Helper()
	return h.rawTLSFrom("")
}

// rawTLSFrom is rawTLS from the source address src ("" for any).
func (h *harness) rawTLSFrom(src string) *rawClient {
	h.t.Helper()
	rc := h.rawFrom(h.explicit(), src)
	rc.expect(220)
	rc.cmd("AUTH TLS", 234)
	rc.tls = h.sessionTLS()
	tc := tls.Client(rc.conn, rc.tls)
	if err := tc.Handshake(); err != nil {
		h.t.Fatal(err)
	}
	rc.conn = tc
	rc.r = ftpctl.NewReader(bufio.NewReader(tc), 0)
	rc.cmd("USER alice", 331)
	rc.cmd("PASS s3cret-pw", 230)
	return rc
}

func (rc *rawClient) send(line string) {
	rc.t.Helper()
	if _, err := rc.conn.Write([]byte(line + "\r\n")); err != nil {
		rc.t.Fatalf("send %q: %v", line, err)
	}
}

func (rc *rawClient) expect(code ftpctl.Code) ftpctl.Reply {
	rc.t.Helper()
	rep, err := rc.r.ReadReply()
	if err != nil {
		rc.t.Fatalf("want %d, read: %v", code, err)
	}
	if rep.Code != code {
		rc.t.Fatalf("got %d %q, want %d", rep.Code, rep.Lines, code)
	}
	return rep
}

func (rc *rawClient) cmd(line string, code ftpctl.Code) ftpctl.Reply {
	rc.t.Helper()
	rc.send(line)
	return rc.expect(code)
}

// epsv asks for a passive data port with EPSV and returns it.
func (rc *rawClient) epsv() uint16 {
	rc.t.Helper()
	port, err := ftpctl.ParseEPSV(rc.cmd("EPSV", 229).Text())
	if err != nil {
		rc.t.Fatal(err)
	}
	return port
}

// epsvData asks for a passive data port with EPSV and connects to it; the
// connection is closed when the test ends.
func (rc *rawClient) epsvData() net.Conn {
	rc.t.Helper()
	port := rc.epsv()
	conn, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
	if err != nil {
		rc.t.Fatal(err)
	}
	rc.t.Cleanup(func() { conn.Close() })
	return conn
}

// expectClosed checks the server closes the connection without replying.
func (rc *rawClient) expectClosed() {
	rc.t.Helper()
	rep, err := rc.r.ReadReply()
	if err == nil {
		rc.t.Fatalf("got reply %d %q, want the connection closed", rep.Code, rep.Lines)
	}
}

// backendSaw returns the commands the backend received, verbs only.
func (h *harness) backendVerbs() []string {
	var verbs []string
	for _, l := range h.backend.Commands() {
		// As the backend parses it: without the Telnet Synch before ABOR.
		if cmd, err := ftpctl.ParseCommand(l); err == nil {
			verbs = append(verbs, cmd.Verb)
			continue
		}
		v, _, _ := strings.Cut(l, " ")
		verbs = append(verbs, strings.ToUpper(v))
	}
	return verbs
}

// waitFor polls cond until it holds or the test times out.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// syncBuffer is a log sink safe for the proxy's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// records returns the log records whose message is msg.
func (b *syncBuffer) records(msg string) []string {
	var out []string
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.Contains(l, `"message":"`+msg+`"`) {
			out = append(out, l)
		}
	}
	return out
}

func bufioReader(r io.Reader) *bufio.Reader { return bufio.NewReader(r) }

// refusingAddr is a loopback address where connections are refused for
// the whole test (ftptest.RefusingAddr).
func refusingAddr(t testing.TB) string {
	t.Helper()
	addr, release, err := ftptest.RefusingAddr()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	return addr
}
