package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/ftpctl"
)

// abortBackend is a scripted plain FTP backend for the orders in which real
// servers answer ABOR; retr runs a RETR once its data connection is up.
type abortBackend struct {
	ln   net.Listener
	retr func(ctl *bufio.ReadWriter, data net.Conn)

	mu   sync.Mutex
	seen []string // commands received, guarded by mu
}

func startAbortBackend(t *testing.T, retr func(ctl *bufio.ReadWriter, data net.Conn)) *abortBackend {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &abortBackend{ln: ln, retr: retr}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go b.serve(conn)
		}
	}()
	return b
}

func (b *abortBackend) serve(conn net.Conn) {
	defer conn.Close()
	oobInline(conn) // as real servers: the Synch's DM stays in the stream
	ctl := bufio.NewReadWriter(bufio.NewReader(conn), bufio.NewWriter(conn))
	say := func(line string) { ctl.WriteString(line + "\r\n"); ctl.Flush() }
	var pasv net.Listener
	say("220 scripted backend")
	for {
		line, err := ctl.ReadString('\n')
		if err != nil {
			return
		}
		cmd, _ := ftpctl.ParseCommand(strings.TrimRight(line, "\r\n")) // drops Telnet IP and Synch
		verb := cmd.Verb
		b.mu.Lock()
		b.seen = append(b.seen, strings.ToUpper(verb))
		b.mu.Unlock()
		switch strings.ToUpper(verb) {
		case "USER":
			say("331 Password please.")
		case "PASS":
			say("230 Logged in.")
		case "PWD":
			say(`257 "/" is the current directory`)
		case "NOOP":
			say("200 Zzz...")
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
			b.retr(ctl, data)
			data.Close()
		case "ABOR":
			say("226 Since you see this ABOR must've succeeded")
		case "QUIT":
			say("221 Bye.")
			return
		default:
			say("502 Not here.")
		}
	}
}

func (b *abortBackend) commands() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.seen)
}

// writeUntilClosed sends data until the proxy closes the data connection.
func writeUntilClosed(data net.Conn) {
	chunk := make([]byte, 64<<10)
	for {
		data.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := data.Write(chunk); err != nil {
			return
		}
	}
}

// TestAbortReplyOrders: whatever order a backend answers ABOR in, the
// client gets the transfer's 426, then ABOR's own 2xx, then the answer to
// its next command, and no stray preliminary reply (RFC 959 section 4.1.3).
func TestAbortReplyOrders(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		retr func(ctl *bufio.ReadWriter, data net.Conn)
	}{{
		// pure-ftpd: the proxy closes the data connection right after
		// sending ABOR; pure-ftpd notices the failed write before it reads
		// ABOR, reports its statistics under the code of its last reply
		// (150) and gives the transfer no final reply; ABOR then gets 226.
		name: "pure-ftpd, no final reply for the transfer",
		retr: func(ctl *bufio.ReadWriter, data net.Conn) {
			ctl.WriteString("150-Accepted data connection\r\n150 48828.1 kbytes to download\r\n")
			ctl.Flush()
			writeUntilClosed(data)
			ctl.WriteString("150 0.004 seconds (measured here), 977.56 Mbytes per second\r\n")
			ctl.Flush()
		},
	}, {
		// The transfer completed just as ABOR arrived: its 226, then ABOR's
		// reply, both after the proxy sent ABOR.
		name: "transfer completed, then ABOR answered",
		retr: func(ctl *bufio.ReadWriter, data net.Conn) {
			ctl.WriteString("150 Opening BINARY mode data connection.\r\n")
			ctl.Flush()
			writeUntilClosed(data)
			ctl.WriteString("226 Transfer complete.\r\n")
			ctl.Flush()
		},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			backend := startAbortBackend(t, c.retr)
			h := newHarness(t, func(cfg *Config) {
				cfg.Backends = []Backend{{Address: backend.ln.Addr().String(), Name: "scripted"}}
				cfg.Health.Disabled = true
			}, nil)
			rc := h.rawTLS()
			data := rc.epsvData()
			defer data.Close()
			rc.send("RETR big")
			rc.expect(150)
			if _, err := io.ReadFull(data, make([]byte, 256<<10)); err != nil {
				t.Fatal(err)
			}
			rc.send("ABOR")
			rc.expect(426)
			rc.expect(226)
			rc.cmd("PWD", 257)
			if !slices.Contains(backend.commands(), "ABOR") {
				t.Errorf("ABOR did not reach the backend: %v", backend.commands())
			}
		})
	}
}
