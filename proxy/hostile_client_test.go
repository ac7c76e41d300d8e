package proxy

import (
	"bufio"
	"crypto/tls"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/ftpctl"
)

// TestHostileClients: whatever a client sends, it gets a clear reply or a
// clean close, the proxy says why in its log, and another client's
// transfers on the same proxy go on untouched throughout.
func TestHostileClients(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.Timeouts.Idle = 3 * time.Second
		c.Timeouts.Handshake = 2 * time.Second
		c.Health.Disabled = true
	}, nil)
	stop := healthyBeside(t, h)
	defer stop()

	// secure is a raw client past AUTH TLS, not logged in.
	secure := func(t *testing.T) *rawClient {
		rc := h.raw(h.explicit())
		rc.expect(220)
		rc.cmd("AUTH TLS", 234)
		tc := tls.Client(rc.conn, h.client)
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		rc.conn, rc.r = tc, ftpctl.NewReader(bufio.NewReader(tc), 0)
		return rc
	}
	tests := []struct {
		name string
		run  func(t *testing.T)
		log  string // a message the proxy logs, if any
	}{
		{name: "garbage before AUTH", run: func(t *testing.T) {
			rc := h.raw(h.explicit())
			rc.expect(220)
			rc.cmd("\x01\x02\x03 garbage", 500)
			rc.cmd("GARBAGE in", 530)
			rc.cmd("NOOP", 200)
		}, log: "malformed command"},
		{name: "TLS ClientHello without AUTH", run: func(t *testing.T) {
			conn, err := net.Dial("tcp", h.explicit())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(20 * time.Second))
			tc := tls.Client(conn, h.client)
			if err := tc.Handshake(); err == nil {
				t.Fatal("TLS handshake on the explicit port succeeded")
			}
		}, log: "tls handshake on the explicit port: the client is set up for implicit FTPS; closing"},
		{name: "garbage instead of ClientHello after 234", run: func(t *testing.T) {
			rc := h.raw(h.explicit())
			rc.expect(220)
			rc.cmd("AUTH TLS", 234)
			if _, err := rc.conn.Write([]byte("this is not TLS at all\r\n")); err != nil {
				t.Fatal(err)
			}
			rc.expectClosed()
		}, log: "tls handshake failed"},
		{name: "silence instead of ClientHello after 234", run: func(t *testing.T) {
			rc := h.raw(h.explicit())
			rc.expect(220)
			rc.cmd("AUTH TLS", 234)
			rc.expectClosed() // by the handshake timeout
		}, log: "tls handshake failed"},
		{name: "plaintext pipelined behind AUTH TLS", run: func(t *testing.T) {
			rc := h.raw(h.explicit())
			rc.expect(220)
			rc.send("AUTH TLS\r\nUSER alice\r\nPASS s3cret-pw")
			rc.expect(234)
			rc.expectClosed()
		}, log: "plaintext pipelined behind AUTH refused; closing"},
		{name: "100 KiB line, then its end", run: func(t *testing.T) {
			rc := secure(t)
			// The proxy stops reading it: the write may well fail.
			go rc.conn.Write([]byte(strings.Repeat("A", 100<<10) + "\r\n"))
			rc.expect(500)
			rc.expect(421) // the rest of the line is never read as commands
			rc.expectClosed()
		}, log: "command line too long: closing"},
		{name: "100 KiB line never ended", run: func(t *testing.T) {
			rc := secure(t)
			go rc.conn.Write([]byte(strings.Repeat("A", 100<<10)))
			rc.expect(500) // at once, not at the idle timeout's 421
			rc.expect(421)
			rc.expectClosed()
		}, log: "session end"},
		{name: "NUL bytes", run: func(t *testing.T) {
			rc := secure(t)
			rc.cmd("\x00\x00\x00", 500)
			rc.cmd("NO\x00OP", 500)
			rc.cmd("USER alice", 331)
			rc.cmd("PASS s3cret-pw", 230)
			rc.cmd("CWD /\x00/etc", 501)
			rc.cmd("NOOP", 200)
		}, log: "malformed command"},
		{name: "bare CR inside a line", run: func(t *testing.T) {
			rc := secure(t)
			rc.cmd("USER alice", 331)
			rc.cmd("PASS s3cret-pw", 230)
			// A backend that ends lines at a bare CR would run the PORT,
			// which the proxy's bounce check never saw.
			rc.cmd("CWD x\rPORT 10,0,0,1,0,25", 501)
			rc.cmd("NOOP", 200)
			for _, l := range h.backend.Commands() {
				if strings.ContainsAny(l, "\r\x00") {
					t.Errorf("the backend received %q", l)
				}
			}
		}, log: "command refused: CR or NUL in its argument"},
		{name: "Telnet IAC sequences", run: func(t *testing.T) {
			rc := secure(t)
			rc.cmd("\xff\xf4\xff\xf2NOOP", 200)         // IP, Synch: dropped
			rc.cmd("\xff\xfb\x01\xff\xfd\x01NOOP", 200) // WILL ECHO, DO ECHO
			rc.cmd("\xff\xff", 500)                     // an escaped 0xFF is no verb
			rc.cmd("\xff", 500)
			rc.cmd("NOOP", 200)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(h.logs.records(tc.log))
			tc.run(t)
			if tc.log != "" {
				waitFor(t, "log "+tc.log, func() bool { return len(h.logs.records(tc.log)) > before })
			}
			// Only the healthy session is left: the hostile one is
			// closed, or ends at its idle timeout.
			waitFor(t, "the hostile session to end", func() bool { return h.srv.ActiveSessions() <= 2 })
		})
	}
}

// TestSilentConnections: a thousand connections that never say a word,
// half on each listener, are all freed by the timeouts (the handshake
// timeout on the implicit port, the idle one on the explicit port), with
// their goroutines, while another client's transfers go on.
func TestSilentConnections(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.Timeouts.Idle = 4 * time.Second
		c.Timeouts.Handshake = 2 * time.Second
		c.Health.Disabled = true
		// All from one address: the per-address limits (their own tests)
		// would hold most of them back.
		c.Limits.MaxSessionsPerIP, c.Limits.MaxLoginsPerIP = NoLimit, NoLimit
	}, nil)
	before := runtime.NumGoroutine()
	stop := healthyBeside(t, h)

	const n = 1000
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range n {
		addr := h.explicit()
		if i%2 == 1 {
			addr = h.implicit()
		}
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	// Each is closed by the proxy: reading ends (after the 220 and 421 on
	// the explicit port) in EOF.
	var wg sync.WaitGroup
	closed := make(chan int, n)
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetReadDeadline(time.Now().Add(60 * time.Second))
			buf := make([]byte, 512)
			var got []byte
			for {
				k, err := c.Read(buf)
				got = append(got, buf[:k]...)
				if err != nil {
					if i%2 == 0 && !(strings.HasPrefix(string(got), "220 ") && strings.Contains(string(got), "\r\n421 ")) {
						t.Errorf("explicit connection %d: got %q before %v", i, got, err)
					}
					if ne, ok := err.(net.Error); ok && ne.Timeout() {
						t.Errorf("connection %d never closed", i)
					}
					closed <- i
					return
				}
			}
		}()
	}
	wg.Wait()
	close(closed)
	stop()
	waitFor(t, "sessions to end", func() bool { return h.srv.ActiveSessions() == 1 })
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	waitFor(t, "goroutines to return", func() bool { return runtime.NumGoroutine() <= before+10 })
	if recs := h.logs.records("tls handshake failed"); len(recs) < n/2 {
		t.Errorf("%d handshake failures logged, want %d", len(recs), n/2)
	}
	ends := 0
	for _, r := range h.logs.records("session end") {
		if strings.Contains(r, `"reason":"idle timeout"`) {
			ends++
		}
	}
	if ends < n/2 {
		t.Errorf("%d idle ends logged, want %d", ends, n/2)
	}
}
