package proxy

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/ftpctl"
	"github.com/ftpsgate/ftpsgate/ftpctl/ftptest"
)

// TestClientVanishesMidTransfer: a client that disappears in the middle of
// an upload or a download, with a reset (killed, or its host gone and
// back) or in silence (cable pulled), costs nothing lasting: its session,
// data sockets and ports are freed, the backend sees the transfer aborted
// (426: a cut upload must never be taken for a whole file), and another
// client reading another file at the same time gets every byte.
func TestClientVanishesMidTransfer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		dir    direction
		silent bool // stops talking instead of resetting
		prot   string
	}{
		{name: "upload reset", dir: upload, prot: "C"},
		{name: "upload reset tls", dir: upload, prot: "P"},
		{name: "download reset", dir: download, prot: "C"},
		{name: "download reset tls", dir: download, prot: "P"},
		{name: "upload silent", dir: upload, silent: true, prot: "C"},
		{name: "download silent", dir: download, silent: true, prot: "P"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, func(c *Config) {
				c.PassivePorts = freePortRange(t, 16)
				// Short enough to notice the silent client soon, long
				// enough that the reader beside, starved of CPU on a busy
				// machine, is not taken for one.
				c.Timeouts.DataIdle = 5 * time.Second
				c.Timeouts.Idle = 8 * time.Second // frees the silent client's control connection
			}, func(b *ftptest.Server) { b.DataTimeout = 5 * time.Second })
			big := randomBytes(t, 32<<20)
			h.backend.FS.WriteFile("/big", big)
			other := randomBytes(t, 8<<20)
			h.backend.FS.WriteFile("/other", other)

			// The reader beside: its download runs, at a steady pace, from
			// before the vanishing to after it.
			reader := h.dial()
			r, err := reader.Retr("other")
			if err != nil {
				t.Fatal(err)
			}
			type result struct {
				got []byte
				err error
			}
			readc := make(chan result, 1)
			go func() {
				var got []byte
				buf := make([]byte, 64<<10)
				for {
					n, err := r.Read(buf)
					got = append(got, buf[:n]...)
					if err == io.EOF {
						readc <- result{got, r.Close()}
						return
					}
					if err != nil {
						readc <- result{got, err}
						return
					}
					time.Sleep(10 * time.Millisecond)
				}
			}()

			rc := h.rawTLS()
			rc.cmd("PBSZ 0", 200)
			rc.cmd("PROT "+tc.prot, 200)
			raw := rc.epsvData()
			var dconn net.Conn = raw
			if tc.dir == upload {
				rc.send("STOR up")
			} else {
				rc.send("RETR big")
			}
			rc.expect(150)
			if tc.prot == "P" {
				dconn = tls.Client(raw, rc.tls)
			}
			if tc.dir == upload {
				if _, err := dconn.Write(big[:1<<20]); err != nil {
					t.Fatal(err)
				}
			} else if _, err := io.ReadFull(dconn, make([]byte, 1<<20)); err != nil {
				t.Fatal(err)
			}
			ctl := rc.conn
			if tc, ok := ctl.(*tls.Conn); ok {
				ctl = tc.NetConn()
			}
			if tc.silent {
				// Sockets left open, nothing read or written: only the
				// proxy's data idle timeout can notice.
				defer raw.Close()
				defer ctl.Close()
			} else {
				raw.(*net.TCPConn).SetLinger(0)
				ctl.(*net.TCPConn).SetLinger(0)
				raw.Close()
				ctl.Close()
			}

			// The silent one: data_idle, then idle on the control connection.
			waitWithin(t, time.Minute, "the vanished session to end", func() bool { return h.srv.ActiveSessions() == 1 })
			if tc.silent {
				ctl.Close()
			}
			verb, arg := "RETR", "big"
			if tc.dir == upload {
				verb, arg = "STOR", "up"
			}
			waitFor(t, "the backend to end the transfer", func() bool {
				for _, x := range h.backend.Transfers() {
					if x.Verb == verb && x.Arg == arg {
						return true
					}
				}
				return false
			})
			for _, x := range h.backend.Transfers() {
				if x.Verb == verb && x.Arg == arg && x.Code != ftpctl.CodeTransferAborted {
					t.Errorf("backend ended %s %s with %d, want 426", x.Verb, x.Arg, x.Code)
				}
			}
			if tc.dir == upload {
				if got, ok := h.backend.FS.ReadFile("/up"); ok && len(got) >= len(big) {
					t.Errorf("the cut upload was stored whole: %d bytes", len(got))
				}
			}

			res := <-readc
			if res.err != nil {
				t.Fatalf("the reader beside: %v", res.err)
			}
			if !bytes.Equal(res.got, other) {
				t.Fatalf("the reader beside got %d bytes, want %d", len(res.got), len(other))
			}
			reader.Quit()
			waitFor(t, "everything freed", func() bool {
				return h.srv.ActiveSessions() == 0 && h.backend.ActiveSessions() == 0 && h.srv.ports.inUseCount() == 0
			})
		})
	}
}

// waitWithin is waitFor with a deadline of its own, for waits made of
// timeouts the test configured.
func waitWithin(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
