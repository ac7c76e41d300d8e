package proxy

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/ftpsgate/ftpsgate/tlsoffload"
)

// synch is what a backend read of ABOR sent with the Telnet Synch: the
// in-band bytes before the urgent mark, the urgent byte (-1 for none) and
// the line after the mark.
type synch struct {
	before string
	urgent int
	line   string
}

func (s synch) String() string {
	return fmt.Sprintf("{before %q, urgent %d, line %q}", s.before, s.urgent, s.line)
}

// readSynch reads ABOR from a backend's control connection that has no
// SO_OOBINLINE, so that the urgent byte is kept apart: it waits for the
// urgent byte (MSG_OOB), reads the in-band bytes up to the mark
// (SIOCATMARK), then the rest of the line. With wantUrgent false it reads
// the line and checks no urgent data came.
func readSynch(c *net.TCPConn, wantUrgent bool) (synch, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return synch{}, err
	}
	s := synch{urgent: -1}
	oob := func() (int, error) {
		b := make([]byte, 1)
		var n int
		var rerr error
		rc.Control(func(fd uintptr) {
			n, _, rerr = syscall.Recvfrom(int(fd), b, syscall.MSG_OOB|syscall.MSG_DONTWAIT)
		})
		if rerr != nil || n != 1 {
			return -1, rerr
		}
		return int(b[0]), nil
	}
	atMark := func() bool {
		var mark int32
		rc.Control(func(fd uintptr) {
			const siocatmark = 0x8905 // SIOCATMARK, linux/sockios.h
			syscall.Syscall(syscall.SYS_IOCTL, fd, siocatmark, uintptr(unsafe.Pointer(&mark)))
		})
		return mark != 0
	}
	readByte := func() (byte, error) {
		b := make([]byte, 1)
		_, err := io.ReadFull(c, b)
		return b[0], err
	}
	if wantUrgent {
		// EAGAIN: the urgent pointer came, its byte not yet; EINVAL: none yet.
		deadline := time.Now().Add(10 * time.Second)
		for {
			u, err := oob()
			if err == nil {
				s.urgent = u
				break
			}
			if time.Now().After(deadline) {
				return s, fmt.Errorf("no urgent data: %v", err)
			}
			time.Sleep(time.Millisecond)
		}
		var before []byte
		for !atMark() {
			b, err := readByte()
			if err != nil {
				return s, err
			}
			before = append(before, b)
		}
		s.before = string(before)
	}
	var line []byte
	for !strings.HasSuffix(string(line), "\n") {
		b, err := readByte()
		if err != nil {
			return s, err
		}
		line = append(line, b)
	}
	s.line = string(line)
	if !wantUrgent {
		if u, err := oob(); !errors.Is(err, syscall.EINVAL) {
			return s, fmt.Errorf("urgent data %d (%v), want none", u, err)
		}
	}
	return s, nil
}

// TestSendAbort: ABOR to a plain backend still moving data goes behind
// Telnet IP and the Synch, its DM alone as urgent data (RFC 959 section
// 4.1.3, RFC 854); to one whose transfer is over, and over TLS, where
// urgent data would cut into a TLS record, it goes plain.
func TestSendAbort(t *testing.T) {
	t.Parallel()
	off, err := tlsoffload.New(tlsoffload.Config{})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name      string
		tls       bool
		interrupt bool
		want      synch
	}{
		{"plain, transfer running", false, true, synch{before: "\xff\xf4\xff", urgent: 0xf2, line: "ABOR\r\n"}},
		{"plain, transfer over", false, false, synch{urgent: -1, line: "ABOR\r\n"}},
		{"TLS backend", true, true, synch{urgent: -1, line: "ABOR\r\n"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			got := make(chan synch, 1)
			errs := make(chan error, 1)
			go func() {
				conn, err := ln.Accept()
				if err != nil {
					errs <- err
					return
				}
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(10 * time.Second))
				tc := conn.(*net.TCPConn)
				if !c.tls {
					s, err := readSynch(tc, c.want.urgent >= 0)
					if err != nil {
						errs <- err
						return
					}
					got <- s
					return
				}
				ts := tls.Server(conn, off.TLSConfig())
				line, err := bufio.NewReader(ts).ReadString('\n')
				if err != nil {
					errs <- err
					return
				}
				// Nothing arrived beside the TLS records.
				if _, err := readSynchOOB(tc); !errors.Is(err, syscall.EINVAL) {
					errs <- fmt.Errorf("urgent data on a TLS connection (%v)", err)
					return
				}
				got <- synch{urgent: -1, line: line}
			}()

			raw, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			bc := &backendConn{conn: raw}
			if c.tls {
				bc.tls = &tls.Config{InsecureSkipVerify: true}
				tc := tls.Client(raw, bc.tls)
				if err := tc.Handshake(); err != nil {
					t.Fatal(err)
				}
				bc.conn = tc
			}
			if err := bc.sendAbort(5*time.Second, c.interrupt); err != nil {
				t.Fatal(err)
			}
			select {
			case s := <-got:
				if s != c.want {
					t.Errorf("backend read %v, want %v", s, c.want)
				}
			case err := <-errs:
				t.Fatal(err)
			}
		})
	}
}

// readSynchOOB reads urgent data without waiting: EINVAL when none came.
func readSynchOOB(c *net.TCPConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	b := make([]byte, 1)
	var rerr error
	rc.Control(func(fd uintptr) {
		_, _, rerr = syscall.Recvfrom(int(fd), b, syscall.MSG_OOB|syscall.MSG_DONTWAIT)
	})
	return int(b[0]), rerr
}

// synchBackend is a plain FTP backend that serves one RETR of endless data
// and records how ABOR reached it. Like inetutils ftpd it reads the control
// connection during the transfer only once urgent data comes (attentive),
// or, like vsftpd, only once its data connection has broken (deaf). It
// then answers 426 and 226, closing the data connection in between.
type synchBackend struct {
	*fakeBackend
	deaf bool

	mu          sync.Mutex
	abor        synch // guarded by mu
	brokenFirst bool  // guarded by mu: the data connection broke before ABOR was read
	err         error // guarded by mu
}

func startSynchBackend(t *testing.T, deaf bool) *synchBackend {
	b := &synchBackend{deaf: deaf}
	b.fakeBackend = startFakeBackend(t, func(c net.Conn) { b.serve(c.(*net.TCPConn)) })
	return b
}

func (b *synchBackend) fail(err error) {
	b.mu.Lock()
	b.err = errors.Join(b.err, err)
	b.mu.Unlock()
}

func (b *synchBackend) serve(conn *net.TCPConn) {
	defer conn.Close()
	// Lines are read a byte at a time: a buffered reader would swallow the
	// bytes whose place against the urgent mark the test checks.
	readLine := func() (string, error) {
		var line []byte
		b := make([]byte, 1)
		for !strings.HasSuffix(string(line), "\r\n") {
			if _, err := conn.Read(b); err != nil {
				return "", err
			}
			line = append(line, b[0])
		}
		return strings.TrimSuffix(string(line), "\r\n"), nil
	}
	say := func(line string) { io.WriteString(conn, line+"\r\n") }
	var pasv net.Listener
	say("220 synch backend")
	for {
		line, err := readLine()
		if err != nil {
			return
		}
		verb, _, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "USER":
			say("331 Password please.")
		case "PASS":
			say("230 Logged in.")
		case "NOOP":
			say("200 NOOP command successful.")
		case "PASV":
			pasv, _ = net.Listen("tcp", "127.0.0.1:0")
			port := pasv.Addr().(*net.TCPAddr).Port
			say(fmt.Sprintf("227 Entering Passive Mode (127,0,0,1,%d,%d)", port>>8, port&0xff))
		case "RETR":
			data, err := pasv.Accept()
			pasv.Close()
			if err != nil {
				return
			}
			say("150 Opening BINARY mode data connection.")
			b.retr(conn, data)
		case "QUIT":
			say("221 Goodbye.")
			return
		default:
			say("502 Not here.")
		}
	}
}

// retr sends data until ABOR comes (attentive) or the data connection
// breaks (deaf), then answers as inetutils ftpd does.
func (b *synchBackend) retr(ctl *net.TCPConn, data net.Conn) {
	var broken atomic.Bool
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		chunk := make([]byte, 64<<10)
		for {
			data.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := data.Write(chunk); err != nil {
				broken.Store(true)
				return
			}
		}
	}()
	if b.deaf {
		<-sent
	}
	s, err := readSynch(ctl, true)
	if err != nil {
		b.fail(err)
	}
	b.mu.Lock()
	b.abor, b.brokenFirst = s, broken.Load()
	b.mu.Unlock()
	io.WriteString(ctl, "426 Transfer aborted. Data connection closed.\r\n")
	data.Close()
	<-sent
	io.WriteString(ctl, "226 Abort successful\r\n")
}

// TestAbortInterruptsBackend: the proxy tells a backend of ABOR before its
// data connection breaks (RFC 959 section 4.1.3): Telnet IP, the Synch
// with its DM as urgent data, then ABOR, while the backend is still
// writing data; a backend that answers gets its data connection reset only
// then, and one that reads nothing during a transfer (vsftpd) only after
// abortGrace. The client gets 426, then 226, and the session goes on.
// inetutils ftpd, whose data connection the proxy used to reset at once,
// sometimes died of SIGPIPE with ABOR unread.
func TestAbortInterruptsBackend(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name        string
		deaf        bool
		brokenFirst bool // the backend's data connection broke before it read ABOR
		grace       bool // the proxy waited abortGrace for a reply
	}{
		{name: "attentive backend (inetutils)"},
		{name: "deaf backend (vsftpd)", deaf: true, brokenFirst: true, grace: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			backend := startSynchBackend(t, c.deaf)
			h := newHarness(t, func(cfg *Config) {
				cfg.Backends = []Backend{{Address: backend.addr(), Name: "synch"}}
				cfg.Health.Disabled = true
			}, nil)
			rc := h.rawTLS()
			data := rc.epsvData()
			rc.send("RETR endless")
			rc.expect(150)
			if _, err := io.ReadFull(data, make([]byte, 256<<10)); err != nil {
				t.Fatal(err)
			}
			// The client stops reading, as clients do before ABOR.
			rc.send("ABOR")
			rc.expect(426)
			rc.expect(226)
			rc.cmd("NOOP", 200)

			backend.mu.Lock()
			defer backend.mu.Unlock()
			if backend.err != nil {
				t.Fatal(backend.err)
			}
			if want := (synch{before: "\xff\xf4\xff", urgent: 0xf2, line: "ABOR\r\n"}); backend.abor != want {
				t.Errorf("backend read ABOR as %v, want %v", backend.abor, want)
			}
			if backend.brokenFirst != c.brokenFirst {
				t.Errorf("data connection broken before the backend read ABOR: %v, want %v", backend.brokenFirst, c.brokenFirst)
			}
			waited := strings.Contains(h.logs.String(), "no reply to ABOR in time")
			if waited != c.grace {
				t.Errorf("the proxy waited abortGrace: %v, want %v", waited, c.grace)
			}
		})
	}
}
