package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/ftpctl"
	"github.com/ftpsgate/ftpsgate/persist"
)

// TestAttacks is issue 15's attack table, in process: each row is an
// attack tried as an attacker would on the proxy's defaults, and asserts
// that the victim's bytes are intact, that the attacker got none of them
// (nor anything else it was after), and that the log names the attempt.
// Every row failed on the main the issue was filed against; the
// integration package's TestAttacks runs them again with the binary, real
// servers and real clients as victims.
func TestAttacks(t *testing.T) {
	t.Parallel()
	secret := bytes.Repeat([]byte("the victim's file. "), 64<<10) // 1.2 MB

	// victim is a logged-in session under PROT P, ready for a transfer.
	victim := func(h *harness) *rawClient {
		rc := h.rawTLS()
		rc.cmd("PBSZ 0", 200)
		rc.cmd("PROT P", 200)
		return rc
	}
	// download completes RETR f over raw, the victim's data connection,
	// and returns what it read and the final reply.
	download := func(t *testing.T, rc *rawClient, raw net.Conn) ([]byte, ftpctl.Reply) {
		t.Helper()
		rc.send("RETR f")
		rc.expect(150)
		return received(t, rc, raw)
	}
	// whole fails the test unless the victim got the whole file and 226.
	whole := func(t *testing.T, got []byte, rep ftpctl.Reply) {
		t.Helper()
		if rep.Code != ftpctl.CodeTransferComplete || !bytes.Equal(got, secret) {
			t.Errorf("victim: %d bytes of %d, %d %q", len(got), len(secret), rep.Code, rep.Lines)
		}
	}
	// lateIntact connects to addr only once the 150 is in, as some clients
	// do, and checks that the file arrives whole.
	lateIntact := func(t *testing.T, rc *rawClient, addr string) {
		t.Helper()
		raw, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		got, rep := received(t, rc, raw)
		whole(t, got, rep)
	}
	// intact downloads the file over raw and checks it is whole.
	intact := func(t *testing.T, rc *rawClient, raw net.Conn) {
		t.Helper()
		got, rep := download(t, rc, raw)
		whole(t, got, rep)
	}
	// thief connects to port from src and takes what it can: with a TLS
	// handshake of cfg (nil: none, it just reads).
	type loot struct {
		n   int64
		err error
	}
	thief := func(t *testing.T, addr string, src string, cfg *tls.Config) (<-chan loot, net.Conn) {
		t.Helper()
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		conn, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		out := make(chan loot, 1)
		go func() {
			var r io.Reader = conn
			if cfg != nil {
				tc := tls.Client(conn, cfg)
				if err := tc.Handshake(); err != nil {
					out <- loot{0, err}
					return
				}
				r = tc
			}
			n, err := io.Copy(io.Discard, r)
			out <- loot{n, err}
		}()
		return out, conn
	}
	robbed := func(t *testing.T, l <-chan loot) {
		t.Helper()
		select {
		case got := <-l:
			if got.n > 0 {
				t.Errorf("the attacker got %d bytes", got.n)
			}
		case <-time.After(30 * time.Second):
			t.Error("the attacker's connection was never closed")
		}
	}
	logged := func(t *testing.T, h *harness, msg string) {
		t.Helper()
		waitFor(t, "log "+msg, func() bool { return len(h.logs.records(msg)) > 0 })
	}
	// dataFrom connects to a passive data port from src.
	dataFrom := func(t *testing.T, src string, port uint16) net.Conn {
		t.Helper()
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		raw, err := d.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	freshTLS := func(h *harness) *tls.Config { // a client with no ticket at all
		c := h.client.Clone()
		c.ClientSessionCache = nil
		return c
	}
	port := func(p uint16) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(int(p))) }
	var (
		transferMu    sync.Mutex
		transferUsers []string // guarded by transferMu
	)

	tests := []struct {
		name string
		cfg  func(*Config)
		run  func(t *testing.T, h *harness)
	}{
		{name: "same-address thief without a ticket takes a PROT P download", run: func(t *testing.T, h *harness) {
			rc := victim(h)
			addr := port(rc.epsv())
			stolen, conn := thief(t, addr, "127.0.0.1", freshTLS(h)) // first on the port
			raw, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			intact(t, rc, raw)
			robbed(t, stolen)
			h.refusedFrom(conn)
		}},
		{name: "same-address thief with a ticket of its own session", run: func(t *testing.T, h *harness) {
			own := h.rawTLS() // the thief's session: its cache holds its ticket
			rc := victim(h)
			addr := port(rc.epsv())
			stolen, conn := thief(t, addr, "127.0.0.1", own.tls)
			raw, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			intact(t, rc, raw)
			robbed(t, stolen)
			h.refusedFrom(conn)
		}},
		{name: "thief keeps the ticket of its refused handshake", run: func(t *testing.T, h *harness) {
			// crypto/tls sends a ticket on every full handshake, the
			// thief's refused one too: presented on the next connection,
			// it must not pass for the victim's session.
			rc := victim(h)
			addr := port(rc.epsv())
			keeper := freshTLS(h)
			keeper.ClientSessionCache = tls.NewLRUClientSessionCache(1)
			stolen, first := thief(t, addr, "127.0.0.1", keeper)
			rc.send("RETR f")
			rc.expect(150)
			h.refusedFrom(first)
			robbed(t, stolen)
			again, second := thief(t, addr, "127.0.0.1", keeper)
			h.refusedFrom(second)
			robbed(t, again)
			lateIntact(t, rc, addr)
		}},
		{name: "racer spoils the port before the victim connects", run: func(t *testing.T, h *harness) {
			rc := victim(h)
			addr := port(rc.epsv())
			_, racer := thief(t, addr, "127.0.0.1", nil)
			io.WriteString(racer, "GET / HTTP/1.0\r\n\r\n") // no TLS at all
			rc.send("RETR f")
			rc.expect(150)
			// The racer's connection fails its check first; the victim
			// connects only then, as clients that connect after 150 do.
			logged(t, h, "data connection TLS handshake failed: refused")
			lateIntact(t, rc, addr)
		}},
		{name: "USER after login renames the session", cfg: func(c *Config) {
			c.OnTransfer = func(e TransferEvent) {
				transferMu.Lock()
				transferUsers = append(transferUsers, e.User)
				transferMu.Unlock()
			}
		}, run: func(t *testing.T, h *harness) {
			rc := victim(h)
			rc.cmd("USER ceo", 530)
			rc.cmd("PASS x", 503)
			raw := rc.epsvData()
			intact(t, rc, raw)
			for _, s := range h.srv.Status().Sessions {
				if s.User != "alice" {
					t.Errorf("status page shows user %q, want alice", s.User)
				}
			}
			transferMu.Lock()
			if len(transferUsers) != 1 || transferUsers[0] != "alice" {
				t.Errorf("transfers attributed to %q, want alice", transferUsers)
			}
			transferMu.Unlock()
			for _, r := range append(h.logs.records("login"), h.logs.records("transfer")...) {
				if !strings.Contains(r, `"user":"alice"`) || strings.Contains(r, "ceo") {
					t.Errorf("record with another user than alice: %s", r)
				}
			}
			if n := len(h.logs.records("login")); n != 1 {
				t.Errorf("%d login records, want 1", n)
			}
			logged(t, h, "change of user refused")
		}},
		{name: "strangers write affinity pins", cfg: func(c *Config) {
			c.Balance.Affinity = UserAffinity
			c.Balance.Store = persist.NewTable(0)
		}, run: func(t *testing.T, h *harness) {
			for i := range 5 {
				rc := h.raw(h.explicit())
				rc.expect(220)
				rc.cmd("AUTH TLS", 234)
				tc := tls.Client(rc.conn, h.client)
				if err := tc.Handshake(); err != nil {
					t.Fatal(err)
				}
				rc.conn, rc.r = tc, ftpctl.NewReader(bufio.NewReader(tc), 0)
				rc.cmd("USER "+strings.Repeat("v", 4000)+strconv.Itoa(i), 501)
				rc.cmd("USER victim"+strconv.Itoa(i), 331)
				rc.cmd("QUIT", 221)
			}
			rc := h.rawTLSFrom("127.0.0.2") // a real user: pinned once logged in
			rc.cmd("QUIT", 221)
			waitFor(t, "sessions to end", func() bool { return h.srv.ActiveSessions() == 0 })
			if n := h.srv.store.(*persist.Table).Len(); n != 1 {
				t.Errorf("%d pins after 5 strangers and one login, want 1", n)
			}
			logged(t, h, "user name too long")
		}},
		{name: "strangers hold backend connections", cfg: func(c *Config) {
			c.Timeouts.Login = 20 * time.Second
		}, run: func(t *testing.T, h *harness) {
			// 200 sessions from one address that send USER and never PASS.
			// Most wait for a login place before their greeting; none
			// reaches the backend.
			const n = 200
			var wg sync.WaitGroup
			named := make(chan *rawClient, n)
			for range n {
				conn, err := net.Dial("tcp", h.explicit())
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { conn.Close() })
				wg.Go(func() {
					conn.SetDeadline(time.Now().Add(2 * time.Second))
					rc := &rawClient{t: t, conn: conn, r: ftpctl.NewReader(bufio.NewReader(conn), 0)}
					if rep, err := rc.r.ReadReply(); err != nil || rep.Code != 220 {
						return // waiting for a login place, or refused
					}
					rc.cmd("AUTH TLS", 234)
					tc := tls.Client(conn, h.client)
					if err := tc.Handshake(); err != nil {
						return
					}
					rc.conn, rc.r = tc, ftpctl.NewReader(bufio.NewReader(tc), 0)
					rc.cmd("USER alice", 331)
					named <- rc
				})
			}
			wg.Wait()
			close(named)
			if len(named) == 0 {
				t.Fatal("no stranger got as far as USER")
			}
			if got := h.backend.ActiveSessions(); got != 0 {
				t.Errorf("the backend holds %d connections for sessions that never sent PASS", got)
			}
			// A real user from another address logs in and transfers.
			rc := h.rawTLSFrom("127.0.0.2")
			rc.cmd("PBSZ 0", 200)
			rc.cmd("PROT P", 200)
			intact(t, rc, dataFrom(t, "127.0.0.2", rc.epsv()))
			logged(t, h, "session waits for a login place")
		}},
		{name: "one IPv6 /64 walks around the per-address limits", cfg: func(c *Config) {
			c.TrustedProxies = loopbackLB // the clients' addresses come in PROXY headers
			c.Limits.MaxSessionsPerIP = 3
		}, run: func(t *testing.T, h *harness) {
			from := func(src string) *rawClient {
				return h.proxied(h.explicit(), v2Header(t, "["+src+"]:40000", "[2001:db8:ffff::21]:21"))
			}
			for i := 1; i <= 3; i++ {
				from(fmt.Sprintf("2001:db8:1:2::%x", i)).expect(220)
			}
			if rep := from("2001:db8:1:2:ffff:ffff:ffff:ffff").expect(421); !strings.Contains(rep.Text(), "your address") {
				t.Errorf("4th session of a /64: %q", rep.Text())
			}
			from("2001:db8:1:3::1").expect(220) // another /64
			logged(t, h, "session refused")
		}},
		{name: "one client holds every passive port", cfg: func(c *Config) {
			c.PassivePorts = freePortRange(t, 20)
		}, run: func(t *testing.T, h *harness) {
			// A session per port, each port asked for and never used.
			held := 0
			for range 20 {
				rc := h.rawTLS()
				rc.send("EPSV")
				rep, err := rc.r.ReadReply()
				if err != nil {
					t.Fatal(err)
				}
				if rep.Code == ftpctl.CodeCannotOpenData {
					break
				}
				if rep.Code != ftpctl.CodeEnteringExtPassive {
					t.Fatalf("EPSV: %d %q", rep.Code, rep.Lines)
				}
				held++
			}
			if held != DefaultMaxPassivePortsPerIP {
				t.Errorf("one address held %d passive ports, want %d", held, DefaultMaxPassivePortsPerIP)
			}
			// Another client still gets one, and transfers.
			rc := h.rawTLSFrom("127.0.0.2")
			rc.cmd("PBSZ 0", 200)
			rc.cmd("PROT P", 200)
			intact(t, rc, dataFrom(t, "127.0.0.2", rc.epsv()))
			logged(t, h, "passive port refused: the client's address holds its share")
		}},
		{name: "a 100 KB line without CRLF before AUTH", run: func(t *testing.T, h *harness) {
			rc := h.raw(h.explicit())
			rc.expect(220)
			go rc.conn.Write([]byte("USER " + strings.Repeat("A", 100<<10)))
			rc.expect(500) // at once: the idle timeout is minutes away
			rc.expect(421)
			rc.expectClosed()
			logged(t, h, "command line too long: closing")
		}},
		{name: "a 100 KB line without CRLF inside TLS", run: func(t *testing.T, h *harness) {
			rc := h.rawTLS()
			go rc.conn.Write([]byte("CWD " + strings.Repeat("A", 100<<10)))
			rc.expect(500)
			rc.expect(421)
			rc.expectClosed()
			logged(t, h, "command line too long: closing")
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, tc.cfg, nil)
			h.backend.FS.WriteFile("/f", secret)
			tc.run(t, h)
		})
	}
}

// received reads a PROT P download over raw, the client's data connection,
// to its end, then the transfer's final reply.
func received(t *testing.T, rc *rawClient, raw net.Conn) ([]byte, ftpctl.Reply) {
	t.Helper()
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(30 * time.Second))
	got, _ := io.ReadAll(tls.Client(raw, rc.tls))
	rep, err := rc.r.ReadReply()
	if err != nil {
		t.Fatal(err)
	}
	return got, rep
}

// TestAttackIPv6PASV: an IPv6 client's PASV is answered with public_host,
// an IPv4 address; a host on another address that connects to the port
// first gets nothing, and the client its download. On the main of issue
// 15, the port took anyone: the thief got the file and the victim
// "connection refused", while the proxy logged 226.
func TestAttackIPv6PASV(t *testing.T) {
	t.Parallel()
	h := ipv6Harness(t, func(c *Config) { c.PublicHost = netip.MustParseAddr("127.0.0.1") })
	secret := bytes.Repeat([]byte("over IPv4, to the client only. "), 32<<10)
	h.backend.FS.WriteFile("/f", secret)
	rc := h.rawTLS()
	rc.cmd("PBSZ 0", 200)
	rc.cmd("PROT P", 200)
	ap, err := ftpctl.ParsePASV(rc.cmd("PASV", 227).Text())
	if err != nil {
		t.Fatal(err)
	}
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	thief, err := d.Dial("tcp", ap.String())
	if err != nil {
		t.Fatal(err)
	}
	defer thief.Close()
	thief.SetDeadline(time.Now().Add(30 * time.Second))
	stolen := make(chan int64, 1)
	go func() {
		fresh := h.client.Clone()
		fresh.ClientSessionCache = nil
		n, _ := io.Copy(io.Discard, tls.Client(thief, fresh))
		stolen <- n
	}()
	raw, err := net.DialTimeout("tcp", ap.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(30 * time.Second))
	rc.send("RETR f")
	rc.expect(150)
	got, _ := io.ReadAll(tls.Client(raw, rc.tls))
	rc.expect(226)
	if !bytes.Equal(got, secret) {
		t.Errorf("victim got %d bytes of %d", len(got), len(secret))
	}
	if n := <-stolen; n != 0 {
		t.Errorf("the thief got %d bytes", n)
	}
	h.refusedFrom(thief)
}

// refusedFrom waits for the log to name the data connection from conn as
// refused, whichever check it failed.
func (h *harness) refusedFrom(conn net.Conn) {
	h.t.Helper()
	from := `"from":"` + conn.LocalAddr().String() + `"`
	waitFor(h.t, "a refusal of "+from, func() bool {
		for _, l := range strings.Split(h.logs.String(), "\n") {
			if strings.Contains(l, from) && strings.Contains(l, "refused") {
				return true
			}
		}
		return false
	})
}
