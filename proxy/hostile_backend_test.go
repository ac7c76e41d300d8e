package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/ftpsgate/ftpsgate/ftpctl"
)

// fakeBackend is a control listener whose connections a test scripts byte
// by byte: what a broken or malicious FTP server might send.
type fakeBackend struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]bool // guarded by mu
}

func startFakeBackend(t testing.TB, handle func(net.Conn)) *fakeBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &fakeBackend{ln: ln, conns: map[net.Conn]bool{}}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns[c] = true
			b.mu.Unlock()
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		b.mu.Lock()
		for c := range b.conns {
			c.Close()
		}
		b.mu.Unlock()
		b.wg.Wait()
	})
	return b
}

func (b *fakeBackend) addr() string { return b.ln.Addr().String() }

// scripted greets with 220, logs anyone in, answers PWD and NOOP, and hands
// every other command to do; do returning false leaves the command to the
// default answer, 502. It returns when the proxy hangs up.
func scripted(do func(c net.Conn, br *bufio.Reader, verb string) bool) func(net.Conn) {
	return func(c net.Conn) {
		br := bufio.NewReader(c)
		fmt.Fprint(c, "220 fake ready\r\n")
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			verb, _, _ := strings.Cut(strings.TrimSpace(line), " ")
			verb = strings.ToUpper(verb)
			if do != nil && do(c, br, verb) {
				continue
			}
			switch verb {
			case "USER":
				fmt.Fprint(c, "331 Password please.\r\n")
			case "PASS":
				fmt.Fprint(c, "230 Logged in.\r\n")
			case "PWD":
				fmt.Fprint(c, "257 \"/\"\r\n")
			case "NOOP", "TYPE":
				fmt.Fprint(c, "200 Ok.\r\n")
			case "QUIT":
				fmt.Fprint(c, "221 Bye.\r\n")
				return
			default:
				fmt.Fprint(c, "502 Not implemented.\r\n")
			}
		}
	}
}

// writeForever writes b until the peer goes away.
func writeForever(c net.Conn, b string) {
	for {
		if _, err := io.WriteString(c, b); err != nil {
			return
		}
	}
}

// silent reads and drops whatever the proxy sends until it hangs up.
func silent(c net.Conn) { io.Copy(io.Discard, c) }

// on answers one verb with a function and leaves the rest to scripted.
func on(want string, fn func(c net.Conn)) func(net.Conn, *bufio.Reader, string) bool {
	return func(c net.Conn, _ *bufio.Reader, verb string) bool {
		if verb != want {
			return false
		}
		fn(c)
		return true
	}
}

// replyTo answers verb with a fixed text.
func replyTo(verb, text string) func(net.Conn, *bufio.Reader, string) bool {
	return on(verb, func(c net.Conn) { io.WriteString(c, text) })
}

// hostileHarness is a proxy whose default pool is a healthy ftptest server
// and whose user "evil" is routed to bad, so that a healthy session can run
// beside the hostile one on the same proxy.
func hostileHarness(t *testing.T, bad string) *harness {
	return newHarness(t, func(c *Config) {
		c.PlainAllowed = true
		c.Health.Disabled = true
		c.Timeouts.BackendDial = time.Second
		c.Timeouts.Idle = 3 * time.Second
		c.Routes = []Route{{Name: "hostile", User: []string{"evil"}, Backends: []Backend{{Address: bad, Name: "bad"}}}}
	}, nil)
}

// healthyBeside runs transfers through the healthy backend until the
// returned function is called, which fails the test unless every one of
// them succeeded and at least one ran. A hostile case can be over before
// the first transfer has begun: stop lets that one finish first.
func healthyBeside(t *testing.T, h *harness) (stop func()) {
	t.Helper()
	want := randomBytes(t, 64<<10)
	h.backend.FS.WriteFile("/healthy", want)
	c := h.dial()
	done := make(chan struct{})
	first := make(chan struct{}) // closed when one transfer is through, or failed
	var (
		wg  sync.WaitGroup
		n   int
		err error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer func() {
			if n == 0 {
				close(first)
			}
		}()
		for {
			select {
			case <-done:
				return
			default:
			}
			var r *ftp.Response
			if r, err = c.Retr("healthy"); err != nil {
				return
			}
			got, rerr := io.ReadAll(r)
			if err = r.Close(); err == nil {
				err = rerr
			}
			if err == nil && string(got) != string(want) {
				err = fmt.Errorf("healthy download: %d bytes, want %d", len(got), len(want))
			}
			if err != nil {
				return
			}
			if n++; n == 1 {
				close(first)
			}
		}
	}()
	return func() {
		t.Helper()
		select {
		case <-first:
		case <-time.After(10 * time.Second):
			t.Error("the first transfer beside the hostile session did not end within 10s")
		}
		close(done)
		wg.Wait()
		if err != nil {
			t.Errorf("session beside the hostile one: %v", err)
		}
		if n == 0 {
			t.Error("no transfer ran beside the hostile session")
		}
		if err := c.NoOp(); err != nil {
			t.Errorf("NOOP on the session beside the hostile one: %v", err)
		}
	}
}

// TestHostileBackends: a backend that misbehaves on its control connection
// costs its own client a clear 421 (or 425 for a data connection it cannot
// give), within the configured timeouts, with a log line saying why; the
// session ends with every goroutine it started, and another client's
// transfers through a healthy backend of the same proxy go on untouched.
func TestHostileBackends(t *testing.T) {
	before := runtime.NumGoroutine()
	long := strings.Repeat("x", 100<<10)
	tests := []struct {
		name    string
		handle  func(net.Conn)
		verb    string // what the client sends once logged in; "" stops at PASS
		code    ftpctl.Code
		log     string // a message the proxy logs
		goesOn  bool   // the session survives (425), else it is closed (421)
		loginOK bool
		prelim  bool // 1xx replies come before the code, at most maxPreliminary
	}{
		{name: "never greets", handle: silent, code: 421, log: "no backend reachable"},
		{name: "greets with garbage", handle: func(c net.Conn) { io.WriteString(c, "\x16\x03\x01garbage\r\n"); silent(c) },
			code: 421, log: "no backend reachable"},
		{name: "overlong greeting without end", handle: func(c net.Conn) { writeForever(c, "220 "+long) },
			code: 421, log: "no backend reachable"},
		{name: "overlong greeting line", handle: func(c net.Conn) { io.WriteString(c, "220 "+long+"\r\n"); silent(c) },
			code: 421, log: "no backend reachable"},
		{name: "endless multi-line greeting", handle: func(c net.Conn) { io.WriteString(c, "220-Welcome\r\n"); writeForever(c, "220-more\r\n") },
			code: 421, log: "no backend reachable"},
		{name: "endless 120 greetings", handle: func(c net.Conn) { writeForever(c, "120 Ready in 1 minute.\r\n") },
			code: 421, log: "no backend reachable"},
		{name: "greets then stops answering", handle: func(c net.Conn) { io.WriteString(c, "220 hi\r\n"); silent(c) },
			code: 421, log: "backend connection lost"},
		{name: "endless multi-line reply after login", loginOK: true, verb: "PWD",
			handle: scripted(on("PWD", func(c net.Conn) { io.WriteString(c, "257-here\r\n"); writeForever(c, " and more\r\n") })),
			code:   421, log: "backend sent a malformed reply"},
		{name: "overlong reply line after login", loginOK: true, verb: "PWD",
			handle: scripted(replyTo("PWD", "257 "+long+"\r\n")),
			code:   421, log: "backend connection lost"},
		{name: "endless reply line after login", loginOK: true, verb: "PWD",
			handle: scripted(on("PWD", func(c net.Conn) { writeForever(c, "257 "+long) })),
			code:   421, log: "backend connection lost"},
		{name: "garbage reply after login", loginOK: true, verb: "PWD",
			handle: scripted(replyTo("PWD", "hello there\r\n")),
			code:   421, log: "backend sent a malformed reply"},
		{name: "stops answering after login", loginOK: true, verb: "PWD",
			handle: scripted(on("PWD", silent)),
			code:   421, log: "backend connection lost"},
		{name: "endless 1xx replies after login", loginOK: true, verb: "PWD", prelim: true,
			handle: scripted(on("PWD", func(c net.Conn) { writeForever(c, "150 wait for it\r\n") })),
			code:   421, log: "backend sent a malformed reply"},
		{name: "421 to PASV", loginOK: true, verb: "EPSV",
			handle: scripted(replyTo("PASV", "421 Going away.\r\n")),
			code:   421, log: "session end"},
		{name: "PASV and PORT refused", loginOK: true, verb: "EPSV", goesOn: true,
			handle: scripted(replyTo("PASV", "425 No passive today.\r\n")),
			code:   425, log: "backend refused data connection setup"},
		{name: "227 port 0", loginOK: true, verb: "EPSV", goesOn: true,
			handle: scripted(replyTo("PASV", "227 Entering Passive Mode (127,0,0,1,0,0).\r\n")),
			code:   425, log: "backend passive reply unusable"},
		{name: "227 number out of range", loginOK: true, verb: "EPSV", goesOn: true,
			handle: scripted(replyTo("PASV", "227 Entering Passive Mode (127,0,0,1,256,1).\r\n")),
			code:   425, log: "backend passive reply unusable"},
		{name: "227 without numbers", loginOK: true, verb: "EPSV", goesOn: true,
			handle: scripted(replyTo("PASV", "227 Entering Passive Mode, somewhere.\r\n")),
			code:   425, log: "backend passive reply unusable"},
		{name: "229 port 0", loginOK: true, verb: "EPSV", goesOn: true,
			handle: scripted(replyTo("EPSV", "229 Entering Extended Passive Mode (|||0|)\r\n")),
			code:   425, log: "backend passive reply unusable"},
		{name: "229 port out of range", loginOK: true, verb: "EPSV", goesOn: true,
			handle: scripted(replyTo("EPSV", "229 Entering Extended Passive Mode (|||70000|)\r\n")),
			code:   425, log: "backend passive reply unusable"},
	}
	t.Run("group", func(t *testing.T) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				bad := startFakeBackend(t, tc.handle)
				h := hostileHarness(t, bad.addr())
				stop := healthyBeside(t, h)

				rc := h.raw(h.explicit())
				rc.expect(220)
				// The backend is dialled for PASS, not USER.
				rc.cmd("USER evil", 331)
				if !tc.loginOK {
					rc.send("PASS pw")
				} else {
					rc.cmd("PASS pw", 230)
					rc.send(tc.verb)
					if tc.verb == "EPSV" {
						// The backend is asked for its port as EPSV is
						// answered, and read while the client connects:
						// what is wrong with its reply is answered to the
						// transfer command.
						rc.expect(229)
						rc.send("RETR f")
					}
				}
				if tc.prelim {
					n := 0
					for {
						rep, err := rc.r.ReadReply()
						if err != nil {
							t.Fatalf("after %d 1xx replies: %v", n, err)
						}
						if rep.Code.Final() {
							if rep.Code != tc.code {
								t.Fatalf("got %d %q after %d 1xx replies, want %d", rep.Code, rep.Lines, n, tc.code)
							}
							break
						}
						if n++; n > maxPreliminary {
							t.Fatalf("more than %d 1xx replies relayed", maxPreliminary)
						}
					}
				} else {
					rc.expect(tc.code)
				}
				if tc.goesOn {
					rc.cmd("PWD", 257)
				} else {
					rc.expectClosed()
				}
				waitFor(t, "log "+tc.log, func() bool { return len(h.logs.records(tc.log)) > 0 })
				stop()
				if tc.goesOn {
					rc.cmd("QUIT", 221)
				}
				waitFor(t, "sessions to end", func() bool { return h.srv.ActiveSessions() == 1 })
			})
		}
	})
	waitFor(t, "goroutines to return", func() bool { return runtime.NumGoroutine() <= before+5 })
}

// TestForeignPASVAddressNotDialled: the address in a backend's 227 is never
// dialled, only its port on the backend's own control IP: a backend (or
// whoever forged its reply) cannot point the proxy at another host. Here
// the named host, 127.0.0.2, listens on the same port and must see nothing.
func TestForeignPASVAddressNotDialled(t *testing.T) {
	t.Parallel()
	var decoyHits atomic.Int32
	payload := "from the backend itself"
	var data net.Listener
	bad := startFakeBackend(t, scripted(func(c net.Conn, _ *bufio.Reader, verb string) bool {
		switch verb {
		case "PASV":
			var err error
			if data, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
				io.WriteString(c, "425 no port\r\n")
				return true
			}
			port := data.Addr().(*net.TCPAddr).Port
			decoy, err := net.Listen("tcp", "127.0.0.2:"+strconv.Itoa(port))
			if err != nil {
				data.Close()
				io.WriteString(c, "425 no decoy\r\n")
				return true
			}
			go func() {
				defer decoy.Close()
				decoy.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
				if conn, err := decoy.Accept(); err == nil {
					decoyHits.Add(1)
					conn.Close()
				}
			}()
			fmt.Fprintf(c, "227 Entering Passive Mode (127,0,0,2,%d,%d).\r\n", port>>8, port&0xff)
		case "RETR":
			defer data.Close()
			data.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
			conn, err := data.Accept()
			if err != nil {
				io.WriteString(c, "425 no connection\r\n")
				return true
			}
			io.WriteString(c, "150 here it comes\r\n")
			io.WriteString(conn, payload)
			conn.Close()
			io.WriteString(c, "226 done\r\n")
		default:
			return false
		}
		return true
	}))
	h := hostileHarness(t, bad.addr())
	rc := h.evil()
	dconn := rc.epsvData()
	defer dconn.Close()
	rc.send("RETR f")
	rc.expect(150)
	got, _ := io.ReadAll(dconn)
	rc.expect(226)
	if string(got) != payload {
		t.Fatalf("got %q, want %q", got, payload)
	}
	if n := decoyHits.Load(); n != 0 {
		t.Fatalf("the host named in the 227 got %d connections", n)
	}
}

// TestBackendSilentInTransfer: a backend that stops answering in the
// middle of a transfer, after the data has gone through or with its data
// connection left open and silent, costs the client a 421 once the data
// side is over and the backend has had the idle timeout to give its final
// reply: the session must not wait for that reply for ever.
func TestBackendSilentInTransfer(t *testing.T) {
	t.Parallel()
	for _, holdData := range []bool{false, true} {
		t.Run("hold data "+strconv.FormatBool(holdData), func(t *testing.T) {
			t.Parallel()
			var data net.Listener
			bad := startFakeBackend(t, scripted(func(c net.Conn, _ *bufio.Reader, verb string) bool {
				switch verb {
				case "PASV":
					var err error
					if data, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
						io.WriteString(c, "425 no port\r\n")
						return true
					}
					port := data.Addr().(*net.TCPAddr).Port
					fmt.Fprintf(c, "227 Entering Passive Mode (127,0,0,1,%d,%d).\r\n", port>>8, port&0xff)
				case "RETR":
					defer data.Close()
					conn, err := data.Accept()
					if err != nil {
						return true
					}
					defer conn.Close()
					io.WriteString(c, "150 here it comes\r\n")
					io.WriteString(conn, "some data")
					if !holdData {
						conn.Close()
					}
					silent(c) // no 226, ever
				default:
					return false
				}
				return true
			}))
			h := newHarness(t, func(c *Config) {
				c.PlainAllowed = true
				c.Health.Disabled = true
				c.Timeouts.Idle = 2 * time.Second
				c.Timeouts.DataIdle = 2 * time.Second
				c.Backends = []Backend{{Address: bad.addr(), Name: "bad"}}
			}, nil)
			rc := h.evil()
			dconn := rc.epsvData()
			defer dconn.Close()
			rc.send("RETR f")
			rc.expect(150)
			io.ReadAll(dconn)
			rc.expect(421)
			rc.expectClosed()
			waitFor(t, "log", func() bool { return len(h.logs.records("backend connection lost")) > 0 })
			waitFor(t, "session end", func() bool { return h.srv.ActiveSessions() == 0 })
		})
	}
}

// A backend that is not ready yet says 120 and then 220 (RFC 959 section
// 5.4): the proxy waits for the 220 and the session works.
func TestBackendGreetsWith120First(t *testing.T) {
	bad := startFakeBackend(t, func(c net.Conn) {
		io.WriteString(c, "120 Ready in 1 minute.\r\n")
		time.Sleep(100 * time.Millisecond)
		scripted(nil)(c)
	})
	h := hostileHarness(t, bad.addr())
	rc := h.evil()
	rc.cmd("PWD", 257)
}

// The backend is asked for its passive port as the client's EPSV is
// answered, and its reply is read in the background: here the backend
// holds its 227 until the client has its 229. A command sent meanwhile
// waits for that 227 and gets its own reply, not the 227.
func TestPassiveAskedAhead(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	bad := startFakeBackend(t, scripted(func(c net.Conn, _ *bufio.Reader, verb string) bool {
		if verb != "PASV" {
			return false
		}
		<-release
		io.WriteString(c, "227 Entering Passive Mode (127,0,0,1,0,1).\r\n")
		return true
	}))
	// Before the backend's own cleanup waits for this handler, if the
	// test fails first.
	var once sync.Once
	releaseBackend := func() { once.Do(func() { close(release) }) }
	t.Cleanup(releaseBackend)
	h := hostileHarness(t, bad.addr())
	rc := h.evil()
	rc.cmd("EPSV", 229) // while the backend still holds its 227
	rc.send("PWD")
	releaseBackend()
	rc.expect(257)
	rc.cmd("QUIT", 221)
}

// A backend that does not answer a PASV asked ahead within the idle
// timeout loses its session: a command sent meanwhile gets 421, never a
// reply meant for the PASV. A QUIT meanwhile is answered at once.
func TestPassiveAskedAheadUnanswered(t *testing.T) {
	t.Parallel()
	silentPASV := scripted(func(c net.Conn, _ *bufio.Reader, verb string) bool {
		if verb != "PASV" {
			return false
		}
		silent(c) // until the proxy hangs up
		return true
	})
	t.Run("command", func(t *testing.T) {
		t.Parallel()
		// This backend answers PASV only once the next command has come,
		// after the proxy's idle timeout: that late 227 must not become
		// the next command's reply.
		late := scripted(func(c net.Conn, br *bufio.Reader, verb string) bool {
			if verb != "PASV" {
				return false
			}
			if _, err := br.ReadString('\n'); err != nil {
				return true
			}
			io.WriteString(c, "227 Entering Passive Mode (127,0,0,1,0,1).\r\n257 \"/\"\r\n")
			return true
		})
		h := hostileHarness(t, startFakeBackend(t, late).addr())
		rc := h.evil()
		rc.cmd("EPSV", 229)
		rc.cmd("PWD", 421)
		rc.expectClosed()
	})
	t.Run("quit", func(t *testing.T) {
		t.Parallel()
		// An idle timeout far beyond the raw client's 20 s deadline: a
		// QUIT that waited for it would fail the test.
		bad := startFakeBackend(t, silentPASV).addr()
		h := newHarness(t, func(c *Config) {
			c.PlainAllowed = true
			c.Health.Disabled = true
			c.Timeouts.Idle = 10 * time.Minute
			c.Routes = []Route{{Name: "hostile", User: []string{"evil"}, Backends: []Backend{{Address: bad, Name: "bad"}}}}
		}, nil)
		rc := h.evil()
		rc.cmd("EPSV", 229)
		rc.cmd("QUIT", 221)
	})
}

// evil is a raw client logged in as "evil", the hostile backend's user.
func (h *harness) evil() *rawClient {
	h.t.Helper()
	rc := h.raw(h.explicit())
	rc.expect(220)
	rc.cmd("USER evil", 331)
	rc.cmd("PASS pw", 230)
	return rc
}
