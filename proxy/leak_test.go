package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/ftpctl"
)

// TestNoLeaks runs thousands of sessions, 50 at a time, mixing clean
// transfers both ways, ABORs, and clients that vanish at every stage
// (before login, idle, with a passive port pending, mid-download,
// mid-upload, with a reset or a FIN). Afterwards sessions, backend
// connections, passive ports, goroutines and open file descriptors all
// come back to where they were. Data goes in clear (PROT C) and most
// control connections too, to stay quick under the race detector; some
// sessions use TLS on control.
func TestNoLeaks(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.PlainAllowed = true
		c.Health.Disabled = true
		c.PassivePorts = freePortRange(t, 200)
	}, nil)
	small := randomBytes(t, 16<<10)
	h.backend.FS.WriteFile("/small", small)
	h.backend.FS.WriteFile("/big", randomBytes(t, 8<<20))

	// A first session warms up what is made once (pools, TLS caches).
	if err := leakSession(h, 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "warm-up session to end", func() bool { return h.srv.ActiveSessions() == 0 })
	runtime.GC()
	goroutines, fds := runtime.NumGoroutine(), openFDs(t)

	n := 5000
	if testing.Short() {
		n = 500
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 50)
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := leakSession(h, i); err != nil {
				errs <- fmt.Errorf("session %d (kind %d): %w", i, i%leakKinds, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if failed++; failed <= 10 {
			t.Error(err)
		}
	}
	if failed > 10 {
		t.Errorf("and %d more", failed-10)
	}

	deadline := time.Now().Add(time.Minute)
	for {
		// The runtime keeps splice(2) pipes in a sync.Pool, closed by
		// finalizers once the pool is collected: not ours to count.
		runtime.GC()
		g, f := runtime.NumGoroutine(), openFDs(t)
		admitted, places, addrs := h.srv.admission.held()
		if h.srv.ActiveSessions() == 0 && h.backend.ActiveSessions() == 0 && h.srv.ports.inUseCount() == 0 &&
			admitted == 0 && places == [placeKinds]int{} && addrs == 0 &&
			g <= goroutines+5 && f <= fds+5 {
			break
		}
		if time.Now().After(deadline) {
			for _, e := range fdList() {
				t.Log(e)
			}
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("after %d sessions: %d sessions, %d backend sessions, %d passive ports, admitted %d, login and port places %v of %d addresses, goroutines %d (were %d), fds %d (were %d)\n%s",
				n, h.srv.ActiveSessions(), h.backend.ActiveSessions(), h.srv.ports.inUseCount(), admitted, places, addrs, g, goroutines, f, fds, buf)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// fdList names the open file descriptors, for a failure message.
func fdList() []string {
	entries, _ := os.ReadDir("/proc/self/fd")
	var out []string
	for _, e := range entries {
		l, _ := os.Readlink("/proc/self/fd/" + e.Name())
		out = append(out, e.Name()+" "+l)
	}
	return out
}

// openFDs counts the process's open file descriptors.
func openFDs(t testing.TB) int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(entries)
}

const leakKinds = 10

// leakSession is session number i of TestNoLeaks; its kind is i%leakKinds.
func leakSession(h *harness, i int) error {
	conn, err := net.DialTimeout("tcp", h.explicit(), 20*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	c := &leakClient{conn: conn, r: ftpctl.NewReader(bufio.NewReader(conn), 0)}
	if err := c.expect(220); err != nil {
		return err
	}
	kind := i % leakKinds
	if kind == 0 {
		return nil // gone before a word
	}
	if kind == 9 { // TLS on the control connection
		if err := c.cmd("AUTH TLS", 234); err != nil {
			return err
		}
		tc := tls.Client(conn, h.client)
		if err := tc.Handshake(); err != nil {
			return err
		}
		c.conn, c.r = tc, ftpctl.NewReader(bufio.NewReader(tc), 0)
		defer tc.Close()
		if err := c.cmd("PBSZ 0", 200); err != nil {
			return err
		}
		if err := c.cmd("PROT C", 200); err != nil {
			return err
		}
	}
	if err := c.cmd("USER alice", 331); err != nil {
		return err
	}
	if err := c.cmd("PASS s3cret-pw", 230); err != nil {
		return err
	}
	switch kind {
	case 1: // logged in, then gone with a reset
		resetConn(conn)
		return nil
	case 2: // a passive port asked for and never used, then gone
		_, err := c.epsv()
		return err
	case 3, 9: // a whole download
		d, err := c.data()
		if err != nil {
			return err
		}
		defer d.Close()
		if err := c.cmd("RETR small", 150); err != nil {
			return err
		}
		got, err := io.ReadAll(d)
		if err != nil {
			return err
		}
		if err := c.expect(226); err != nil {
			return err
		}
		if len(got) != 16<<10 {
			return fmt.Errorf("downloaded %d bytes", len(got))
		}
	case 4: // a whole upload
		d, err := c.data()
		if err != nil {
			return err
		}
		defer d.Close()
		if err := c.cmd("STOR up"+strconv.Itoa(i%20), 150); err != nil {
			return err
		}
		d.Write(bytes.Repeat([]byte("u"), 16<<10))
		d.Close()
		if err := c.expect(226); err != nil {
			return err
		}
	case 5, 6: // ABOR mid-download, or a download cut by a reset
		d, err := c.data()
		if err != nil {
			return err
		}
		defer d.Close()
		if err := c.cmd("RETR big", 150); err != nil {
			return err
		}
		if _, err := io.ReadFull(d, make([]byte, 64<<10)); err != nil {
			return err
		}
		if kind == 6 {
			resetConn(d)
			resetConn(conn)
			return nil
		}
		c.send("ABOR")
		if err := c.expect(426); err != nil {
			return err
		}
		if err := c.expect(226); err != nil {
			return err
		}
	case 7: // an upload cut by a reset
		d, err := c.data()
		if err != nil {
			return err
		}
		defer d.Close()
		if err := c.cmd("STOR cut"+strconv.Itoa(i%20), 150); err != nil {
			return err
		}
		d.Write(bytes.Repeat([]byte("c"), 64<<10))
		resetConn(d)
		resetConn(conn)
		return nil
	case 8: // a download, then gone with a FIN mid-way through the next
		d, err := c.data()
		if err != nil {
			return err
		}
		defer d.Close()
		if err := c.cmd("RETR big", 150); err != nil {
			return err
		}
		io.ReadFull(d, make([]byte, 32<<10))
		return nil
	}
	return c.cmd("QUIT", 221)
}

// resetConn closes c with a TCP reset, as a killed client's kernel may.
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// leakClient is a raw control client that returns errors rather than
// failing the test, for use from many goroutines.
type leakClient struct {
	conn net.Conn
	r    *ftpctl.Reader
}

func (c *leakClient) send(line string) error {
	_, err := c.conn.Write([]byte(line + "\r\n"))
	return err
}

func (c *leakClient) expect(code ftpctl.Code) error {
	rep, err := c.r.ReadReply()
	if err != nil {
		return fmt.Errorf("want %d: %w", code, err)
	}
	if rep.Code != code {
		return fmt.Errorf("got %d %q, want %d", rep.Code, rep.Lines, code)
	}
	return nil
}

func (c *leakClient) cmd(line string, code ftpctl.Code) error {
	if err := c.send(line); err != nil {
		return err
	}
	return c.expect(code)
}

func (c *leakClient) epsv() (uint16, error) {
	if err := c.send("EPSV"); err != nil {
		return 0, err
	}
	rep, err := c.r.ReadReply()
	if err != nil {
		return 0, err
	}
	if rep.Code != ftpctl.CodeEnteringExtPassive {
		return 0, fmt.Errorf("EPSV: %d %q", rep.Code, rep.Lines)
	}
	return ftpctl.ParseEPSV(rep.Text())
}

// data asks for a passive port and connects to it.
func (c *leakClient) data() (net.Conn, error) {
	port, err := c.epsv()
	if err != nil {
		return nil, err
	}
	return net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))), 20*time.Second)
}
