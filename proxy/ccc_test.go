package proxy

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/ftpctl"
)

// holdConn buffers what is written to it while held, so that a test can
// put a TLS close_notify and the plaintext behind it in one TCP segment.
type holdConn struct {
	net.Conn
	mu   sync.Mutex
	held []byte // guarded by mu; nil when not holding
}

func (c *holdConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.held != nil {
		c.held = append(c.held, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (c *holdConn) hold() {
	c.mu.Lock()
	c.held = []byte{}
	c.mu.Unlock()
}

// flush writes what was held followed by more, in one write.
func (c *holdConn) flush(more string) error {
	c.mu.Lock()
	b := append(c.held, more...)
	c.held = nil
	c.mu.Unlock()
	_, err := c.Conn.Write(b)
	return err
}

// cccClient is a raw client logged in over AUTH TLS whose TLS layer can be
// shut down for CCC. Its reads, too, stop at TLS record boundaries
// (recordConn), so that it never swallows the proxy's plaintext behind the
// proxy's close_notify.
type cccClient struct {
	*rawClient
	tcp  net.Conn
	hold *holdConn
	tls  *tls.Conn
}

func (h *harness) cccLogin() *cccClient {
	h.t.Helper()
	rc := h.raw(h.explicit())
	rc.expect(220)
	rc.cmd("AUTH TLS", 234)
	c := &cccClient{rawClient: rc, tcp: rc.conn, hold: &holdConn{Conn: rc.conn}}
	rc.tls = h.sessionTLS()
	c.tls = tls.Client(&recordConn{Conn: c.hold}, rc.tls)
	if err := c.tls.Handshake(); err != nil {
		h.t.Fatal(err)
	}
	rc.conn, rc.r = c.tls, ftpctl.NewReader(bufio.NewReader(c.tls), 0)
	rc.cmd("USER alice", 331)
	rc.cmd("PASS s3cret-pw", 230)
	return c
}

// closure is how a client ends TLS on its side after CCC's 200.
type closure uint8

const (
	clientFirst closure = iota // close_notify, then the server's (OpenSSL: Python, curl's active mode)
	serverFirst                // the server's close_notify, then its own (lftp)
	serverOnly                 // the server's close_notify, none of its own (curl's default passive mode)
	noClosure                  // plaintext at once, no close_notify either way (old clients)
)

func (m closure) String() string {
	return [...]string{"client-first", "server-first", "server-only", "none"}[m]
}

// clear does the client's part of CCC after the proxy's 200, then sends
// plaintext, in the same TCP segment as its close_notify if it sends one
// (as a fast client may), and reads on in plaintext.
func (c *cccClient) clear(m closure, plaintext string) {
	c.t.Helper()
	serverClose := func() {
		c.t.Helper()
		// The proxy's close_notify reads as EOF (a bare FIN of a connection
		// that goes on cannot be the cause).
		if n, err := io.Copy(io.Discard, c.tls); err != nil || n != 0 {
			c.t.Fatalf("waiting for the proxy's close_notify: %d bytes, %v", n, err)
		}
	}
	clientClose := func() {
		c.t.Helper()
		c.hold.hold()
		if err := c.tls.CloseWrite(); err != nil {
			c.t.Fatalf("sending close_notify: %v", err)
		}
		// crypto/tls leaves the socket with a write deadline in the past.
		c.tcp.SetWriteDeadline(time.Now().Add(20 * time.Second))
		if err := c.hold.flush(plaintext); err != nil {
			c.t.Fatal(err)
		}
	}
	switch m {
	case clientFirst:
		clientClose()
		serverClose()
	case serverFirst:
		serverClose()
		clientClose()
	case serverOnly:
		serverClose()
		c.tcp.Write([]byte(plaintext))
	case noClosure:
		c.tcp.Write([]byte(plaintext))
	}
	c.conn, c.r = c.tcp, ftpctl.NewReader(bufio.NewReader(c.tcp), 0)
}

// TestCCC: with tls.allow_ccc, CCC after login returns the control
// connection to plaintext after close_notify both ways (RFC 4217 section
// 6); commands go on in plaintext, data connections stay as PROT set them,
// and TLS and logins cannot come back on that connection.
func TestCCC(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) { c.AllowCCC = true }, nil)
	data := randomBytes(t, 1<<20+9)
	h.backend.FS.WriteFile("/f", data)

	plain := h.raw(h.explicit())
	plain.expect(220)
	plain.cmd("CCC", 530) // before login

	c := h.cccLogin()
	if feats := ftpctl.ParseFeat(c.cmd("FEAT", 211)); !slices.Contains(feats, "CCC") {
		t.Errorf("FEAT lacks CCC: %v", feats)
	}
	c.cmd("PBSZ 0", 200)
	c.cmd("PROT P", 200)
	c.cmd("CCC", 200)
	// A client (lftp does) may send its next command right behind its
	// close_notify: it must not be lost in the proxy's TLS read-ahead.
	c.clear(clientFirst, "PWD\r\n")
	c.expect(257)
	c.cmd("NOOP", 200)

	// PROT P still holds: the data connection is TLS, resuming the
	// session of the control connection before CCC.
	got := dataRetr229(t, c.rawClient, c.rawClient.tls, "f")
	sameBytes(t, "PROT P download after CCC", got, data)
	c.cmd("PROT C", 200)
	dconn := c.epsvData()
	c.send("RETR f")
	c.expect(150)
	got, _ = io.ReadAll(dconn)
	dconn.Close()
	c.expect(226)
	sameBytes(t, "PROT C download after CCC", got, data)

	c.cmd("CCC", 533)        // nothing left to clear
	c.cmd("AUTH TLS", 503)   // no TLS again on this connection
	c.cmd("USER alice", 530) // no password in clear
	c.cmd("QUIT", 221)

	xfers := h.logs.records("transfer")
	if len(xfers) != 2 || !strings.Contains(xfers[0], `"data_resumed":true`) || strings.Contains(xfers[1], "data_tls_version") {
		t.Errorf("transfer records: want a resumed TLS one and a plain one:\n%s", strings.Join(xfers, "\n"))
	}
	if len(h.logs.records("control connection cleared (CCC)")) != 1 {
		t.Error("CCC not logged")
	}
	if slices.Contains(h.backendVerbs(), "CCC") {
		t.Error("CCC reached the backend")
	}
}

// TestCCCPipelined: a command sent under TLS right behind CCC keeps its
// place and is answered, in plaintext, after the switch.
func TestCCCPipelined(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) { c.AllowCCC = true }, nil)
	c := h.cccLogin()
	c.send("CCC\r\nPWD")
	c.expect(200)
	c.clear(serverFirst, "")
	c.expect(257)
	c.cmd("NOOP", 200)
}

// TestCCCRefused: CCC is refused with 534 unless tls.allow_ccc, and the
// control connection stays protected.
func TestCCCRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, nil)
	rc := h.rawTLS()
	if feats := ftpctl.ParseFeat(rc.cmd("FEAT", 211)); slices.Contains(feats, "CCC") {
		t.Errorf("FEAT lists CCC: %v", feats)
	}
	rc.cmd("CCC", 534)
	rc.cmd("PWD", 257)
	if _, ok := rc.conn.(*tls.Conn); !ok {
		t.Fatal("not a TLS connection")
	}
}

// TestCCCClosures: whichever side closes TLS first after CCC, or if the
// client sends no close_notify at all, the session goes on in plaintext
// with nothing lost or garbled; the client's plaintext may come in the same
// segment as its close_notify.
func TestCCCClosures(t *testing.T) {
	t.Parallel()
	for _, m := range []closure{clientFirst, serverFirst, serverOnly, noClosure} {
		t.Run(m.String(), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, func(c *Config) { c.AllowCCC = true }, nil)
			c := h.cccLogin()
			c.cmd("CCC", 200)
			c.clear(m, "PWD\r\n")
			c.expect(257)
			c.cmd("NOOP", 200)
			c.cmd("QUIT", 221)
			waitFor(t, "the session end", func() bool {
				return strings.Contains(h.logs.String(), `"reason":"quit"`)
			})
			want := strings.ReplaceAll(m.String(), "-", " ")
			if rec := h.logs.records("control connection cleared (CCC)"); len(rec) != 1 || !strings.Contains(rec[0], `"closure":"`+want+`"`) {
				t.Errorf("CCC records %q, want closure %q", rec, want)
			}
		})
	}
}

// TestCCCPipelinedLong: more commands behind CCC in its TLS record than the
// command reader buffers are all answered, whatever the closure.
func TestCCCPipelinedLong(t *testing.T) {
	t.Parallel()
	for _, m := range []closure{clientFirst, serverFirst, serverOnly, noClosure} {
		t.Run(m.String(), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, func(c *Config) { c.AllowCCC = true }, nil)
			c := h.cccLogin()
			const n = 150 // 900 bytes of NOOPs in CCC's record
			c.send("CCC\r\n" + strings.Repeat("NOOP\r\n", n-1) + "NOOP")
			c.expect(200)
			c.clear(m, "PWD\r\n")
			for range n {
				c.expect(200)
			}
			c.expect(257)
		})
	}
}
