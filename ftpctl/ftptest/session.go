package ftptest

import (
	"bufio"
	"errors"
	"net"
	"net/netip"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/ftpsgate/ftpsgate/ftpctl"
)

// phase is where a session stands in the login sequence.
type phase uint8

const (
	needUser phase = iota // connected, no USER yet
	needPass              // USER given, waiting for PASS
	loggedIn              // PASS accepted
)

func (p phase) String() string {
	switch p {
	case needUser:
		return "need user"
	case needPass:
		return "need pass"
	case loggedIn:
		return "logged in"
	}
	return "unknown phase"
}

// session is one control connection.
//
// The control goroutine (serve) reads commands and owns every field below
// that is not guarded by mu. A transfer runs in its own goroutine so that
// ABOR can be read while it moves data; every other command waits for it
// (lockstep), so the two never touch the same state, and replies stay in
// order.
type session struct {
	srv    *Server
	conn   net.Conn
	br     *bufio.Reader // under r; a PROXY header is read from it first
	r      *ftpctl.Reader
	local  netip.Addr    // control connection's local IP, unmapped
	remote netip.Addr    // control connection's remote IP, unmapped
	done   chan struct{} // closed by the server when the session is gone
	wg     sync.WaitGroup
	wmu    sync.Mutex // serializes replies

	mu     sync.Mutex
	xfer   *transfer // guarded by mu: the transfer in progress, if any
	killed bool      // guarded by mu: kill was called

	phase      phase
	user       string         // after USER
	cwd        string         // clean absolute path
	rest       int64          // REST offset for the next transfer
	renameFrom string         // after RNFR, for the RNTO that must follow
	epsvAll    bool           // EPSV ALL: only EPSV may set up data connections
	pasv       *passive       // after PASV/EPSV, until a transfer takes it
	port       netip.AddrPort // after PORT/EPRT, until a transfer takes it
	facts      factSet        // MLST facts selected by OPTS MLST
	current    ftpctl.Command // the command being dispatched, for Transfers
}

func newSession(srv *Server, conn net.Conn) *session {
	br := bufio.NewReader(conn)
	c := &session{
		srv:   srv,
		conn:  conn,
		br:    br,
		r:     ftpctl.NewReader(br, srv.MaxLine),
		done:  make(chan struct{}),
		cwd:   "/",
		facts: allFacts,
	}
	if a, ok := conn.LocalAddr().(*net.TCPAddr); ok {
		c.local = a.AddrPort().Addr().Unmap()
	}
	if a, ok := conn.RemoteAddr().(*net.TCPAddr); ok {
		c.remote = a.AddrPort().Addr().Unmap()
	}
	return c
}

// serve runs the session until QUIT, a read error or kill.
func (c *session) serve() {
	defer c.finish()
	if c.srv.RequireProxyV2 {
		c.conn.SetReadDeadline(time.Now().Add(c.srv.dataTimeout()))
		h, err := readProxyV2(c.br)
		if err != nil {
			return
		}
		c.conn.SetReadDeadline(time.Time{})
		c.srv.recordHeader(h)
	}
	if !c.send(ftpctl.Reply{Code: ftpctl.CodeReady, Lines: c.srv.greeting()}) {
		return
	}
	for {
		line, err := c.r.ReadLine()
		if err != nil {
			// A test server trusts its client to end its lines.
			if !errors.Is(err, ftpctl.ErrLineTooLong) || c.r.SkipLine() != nil {
				return
			}
			c.waitTransfer()
			c.reply(ftpctl.CodeSyntaxError, "Command line too long.")
			continue
		}
		c.srv.record(line)
		cmd, err := ftpctl.ParseCommand(line)
		if cmd.Verb == "ABOR" && err == nil {
			c.abort()
			continue
		}
		c.waitTransfer()
		if err != nil {
			c.reply(ftpctl.CodeSyntaxError, "Syntax error, command unrecognized.")
			continue
		}
		if !c.dispatch(cmd) {
			return
		}
	}
}

// dispatch runs one command and reports whether the session goes on.
func (c *session) dispatch(cmd ftpctl.Command) bool {
	arg := unescapeIAC(cmd.Arg)
	h, ok := commands[cmd.Verb]
	if cmd.Verb != "RNTO" {
		c.renameFrom = ""
	}
	switch {
	case !ok:
		c.reply(ftpctl.CodeNotImplemented, "Command not implemented.")
	case !h.open && c.phase != loggedIn:
		c.reply(ftpctl.CodeNotLoggedIn, "Please login with USER and PASS.")
	case h.needArg && arg == "":
		c.reply(ftpctl.CodeArgSyntaxError, cmd.Verb+" requires an argument.")
	case cmd.Verb == "QUIT":
		c.reply(ftpctl.CodeClosing, "Goodbye.")
		return false
	default:
		c.current = ftpctl.Command{Verb: cmd.Verb, Arg: arg}
		h.do(c, arg)
	}
	return true
}

// unescapeIAC undoes the doubling of 0xFF (Telnet IAC) in arguments, RFC 959
// section 4.1 via RFC 854.
func unescapeIAC(s string) string {
	if !strings.Contains(s, "\xff\xff") {
		return s
	}
	return strings.ReplaceAll(s, "\xff\xff", "\xff")
}

// finish ends the session: aborts the transfer in progress, closes the
// control connection and the passive listener, and waits for every goroutine
// of the session.
func (c *session) finish() {
	c.mu.Lock()
	c.killed = true
	x := c.xfer
	c.mu.Unlock()
	if x != nil {
		// The peer may have stopped reading: let the transfer's last reply
		// go if it can, but do not wait for it long.
		c.conn.SetWriteDeadline(time.Now().Add(time.Second))
		x.abort()
		<-x.done
	}
	c.closePassive()
	c.conn.Close()
	c.wg.Wait()
}

// kill closes the control connection and aborts the transfer in progress;
// serve then returns. It may be called from any goroutine.
func (c *session) kill() {
	c.mu.Lock()
	c.killed = true
	x := c.xfer
	c.mu.Unlock()
	c.conn.Close()
	if x != nil {
		x.abort()
	}
}

// send writes one complete reply. On failure it closes the connection, so
// that serve stops, and returns false.
func (c *session) send(r ftpctl.Reply) bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := r.WriteTo(c.conn); err != nil {
		c.conn.Close()
		return false
	}
	return true
}

// reply sends a single-line reply; text never becomes more than one line.
func (c *session) reply(code ftpctl.Code, text string) {
	c.send(ftpctl.Reply{Code: code, Lines: []string{text}})
}

// abs returns the clean absolute path of the argument p.
func (c *session) abs(p string) string {
	if !strings.HasPrefix(p, "/") {
		p = c.cwd + "/" + p
	}
	return path.Clean(p)
}

// quote doubles the quotes in a path for a 257 reply, RFC 959 appendix II.
func quote(p string) string {
	return `"` + strings.ReplaceAll(p, `"`, `""`) + `"`
}
