package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/ftpsgate/ftpsgate/ftpctl"
	"github.com/ftpsgate/ftpsgate/tlsoffload"
)

// backendConn is a session's control connection to its backend.
type backendConn struct {
	Backend
	conn     net.Conn
	r        *ftpctl.Reader
	ip       netip.Addr // the backend's control IP: its data ports are dialled here
	localIP  netip.Addr // our side of the control connection: data is dialled from it
	greeting ftpctl.Reply
	// tls is the session's configuration toward a TLS backend, nil for a
	// plain one. Its session cache makes data connections resume this
	// control connection's TLS session, as vsftpd's require_ssl_reuse asks.
	tls     *tls.Config
	maxLine int
	// prelim counts the 1xx replies since the last command sent, so that
	// a backend that sends them without end is cut off. Atomic: during a
	// transfer one goroutine reads replies while another sends ABOR.
	prelim atomic.Int32
	// epsv: ask for passive ports with EPSV rather than PASV.
	epsv bool
	// pending, if not nil, is closed once the reply to a command sent
	// ahead (aheadEnd) has been read in the background: no other command
	// goes out before, or replies would be taken for another's.
	pending <-chan struct{}
}

// maxPreliminary bounds the 1xx replies to one command. Real servers send
// one or two; a backend sending more is broken or hostile, and every one
// of them would be relayed to the client.
const maxPreliminary = 100

// errTooManyPreliminary is a backend that went over maxPreliminary.
var errTooManyPreliminary = errors.New("proxy: backend sent too many preliminary replies")

// readReply reads the backend's next reply.
func (bc *backendConn) readReply() (ftpctl.Reply, error) {
	rep, err := bc.r.ReadReply()
	if err == nil && !rep.Code.Final() && bc.prelim.Add(1) > maxPreliminary {
		return ftpctl.Reply{}, errTooManyPreliminary
	}
	return rep, err
}

// errBackendGreeting is a backend that answered its connection with
// something other than 220.
var errBackendGreeting = errors.New("proxy: backend did not greet with 220")

// dialBackend connects to b and reads its greeting, multi-line or not, all
// within timeout. A backend that wants the PROXY protocol is first sent a
// header for o, the session's client (nil: a health check).
func dialBackend(ctx context.Context, b Backend, timeout time.Duration, maxLine int, o *origin) (*backendConn, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", b.Address)
	if err != nil {
		return nil, err
	}
	keepAlive(conn)
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	if b.ProxyProtocol != ProxyOff {
		// Before TLS too: the header belongs to the TCP connection.
		if err := writeProxyHeader(conn, b.ProxyProtocol, o); err != nil {
			conn.Close()
			return nil, fmt.Errorf("proxy: PROXY header to backend: %w", err)
		}
	}

	bc := &backendConn{
		Backend: b,
		conn:    conn,
		r:       ftpctl.NewReader(bufio.NewReaderSize(conn, controlBufSize), maxLine),
		ip:      addrOf(conn.RemoteAddr()),
		localIP: addrOf(conn.LocalAddr()),
		maxLine: maxLine,
	}
	if b.tlsMode() != tlsoffload.BackendOff {
		host, _, _ := net.SplitHostPort(b.Address)
		bc.tls = b.TLS.SessionConfig(host)
	}
	if err := bc.greet(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return bc, nil
}

// greet reads the backend's 220 and, toward an FTPS backend, secures the
// control connection (TLS first when implicit, AUTH TLS when explicit)
// and asks for protected data connections.
func (bc *backendConn) greet(ctx context.Context) error {
	if bc.tlsMode() == tlsoffload.BackendImplicit {
		if err := bc.startTLS(ctx); err != nil {
			return err
		}
	}
	rep, err := bc.readReply()
	// RFC 959 section 5.4: a server not ready yet may say 120 first and 220
	// once it is, within the dial timeout (and maxPreliminary) here.
	for err == nil && rep.Code == ftpctl.CodeReadySoon {
		rep, err = bc.readReply()
	}
	if err == nil && rep.Code != ftpctl.CodeReady {
		err = fmt.Errorf("%w: %d %s", errBackendGreeting, rep.Code, rep.Text())
	}
	if err != nil {
		return err
	}
	bc.greeting = rep
	if bc.tls == nil {
		return nil
	}
	deadline, _ := ctx.Deadline()
	timeout := time.Until(deadline)
	if bc.tlsMode() == tlsoffload.BackendExplicit {
		rep, err := bc.roundTrip(ftpctl.Command{Verb: "AUTH", Arg: "TLS"}, timeout)
		if err != nil {
			return err
		}
		if rep.Code != ftpctl.CodeAuthOK {
			return fmt.Errorf("proxy: backend refused AUTH TLS: %w", &ftpctl.ReplyError{Command: "AUTH", Reply: rep})
		}
		if err := bc.startTLS(ctx); err != nil {
			return err
		}
	}
	// Reading these replies also stores a TLS 1.3 ticket, which the data
	// connections resume.
	for _, cmd := range []ftpctl.Command{{Verb: "PBSZ", Arg: "0"}, {Verb: "PROT", Arg: "P"}} {
		rep, err := bc.roundTrip(cmd, timeout)
		if err != nil {
			return err
		}
		if rep.Code.Class() != ftpctl.ClassCompletion {
			return fmt.Errorf("proxy: backend refused %s: %w", cmd, &ftpctl.ReplyError{Command: cmd.Verb, Reply: rep})
		}
	}
	return nil
}

// startTLS runs the client handshake on the backend control connection.
func (bc *backendConn) startTLS(ctx context.Context) error {
	tc := tls.Client(bc.conn, bc.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("proxy: backend TLS handshake: %w", err)
	}
	bc.conn = tc
	bc.r = ftpctl.NewReader(bufio.NewReaderSize(tc, controlBufSize), bc.maxLine)
	return nil
}

// secureData wraps a data connection to a TLS backend; the proxy is the TLS
// client there, as the FTP client always is (RFC 4217 section 7).
func (bc *backendConn) secureData(ctx context.Context, conn net.Conn) (net.Conn, error) {
	if bc.tls == nil {
		return conn, nil
	}
	tc := dataTLSClient(conn, bc.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("proxy: backend data TLS handshake: %w", err)
	}
	return tc, nil
}

// send writes one command line to the backend, which then has timeout to
// answer it: a backend that accepts commands and never replies must not
// hold a session forever.
func (bc *backendConn) send(cmd ftpctl.Command, timeout time.Duration) error {
	bc.wait()
	return bc.sendNow(cmd, timeout)
}

// wait returns once no reply is being read in the background.
func (bc *backendConn) wait() {
	if bc.pending != nil {
		<-bc.pending
		bc.pending = nil
	}
}

// waitFor is wait for at most d; false when the reply is still awaited.
func (bc *backendConn) waitFor(d time.Duration) bool {
	if bc.pending == nil {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-bc.pending:
		bc.pending = nil
		return true
	case <-t.C:
		return false
	}
}

// sendNow is send for the background reader of a reply, which may follow
// up with another command.
func (bc *backendConn) sendNow(cmd ftpctl.Command, timeout time.Duration) error {
	bc.prelim.Store(0)
	deadline := time.Now().Add(timeout)
	bc.conn.SetDeadline(deadline)
	_, err := bc.conn.Write(cmd.AppendTo(make([]byte, 0, 64)))
	return err
}

// Telnet commands (RFC 854) that make up the interrupt before ABOR.
const (
	telnetIAC = 0xFF // interpret as command
	telnetIP  = 0xF4 // interrupt process
	telnetDM  = 0xF2 // data mark: where the Synch ends
)

// sendAbort sends ABOR. With interrupt, for a backend still moving data, it
// goes as RFC 959 section 4.1.3 asks: Telnet IP, then the Synch (IAC DM,
// the DM sent as TCP urgent data), then the command. Such a server may
// read its control connection only when told to: the urgent data raises
// SIGURG, and inetutils ftpd (like BSD ftpd) reads ABOR in that handler and
// answers 426 and 226 before it drops the data connection; sent as plain
// bytes, ABOR stays unread until the data connection breaks. Servers strip
// the Telnet bytes (they set SO_OOBINLINE, so the DM stays in the stream),
// but pure-ftpd ignores such a line outside a transfer: without interrupt,
// plain ABOR. Toward a TLS backend urgent data would bypass the TLS records
// and corrupt them: it gets plain ABOR too.
func (bc *backendConn) sendAbort(timeout time.Duration, interrupt bool) error {
	abor := ftpctl.Command{Verb: "ABOR"}
	tc, ok := bc.conn.(*net.TCPConn)
	if !interrupt || bc.tls != nil || !ok {
		return bc.send(abor, timeout)
	}
	bc.wait()
	bc.prelim.Store(0)
	tc.SetDeadline(time.Now().Add(timeout))
	// IAC IP IAC in band, then DM alone as urgent data, as BSD ftp does: a
	// one-byte urgent send cannot be cut short and leave the DM behind.
	if _, err := tc.Write([]byte{telnetIAC, telnetIP, telnetIAC}); err != nil {
		return err
	}
	if err := sendUrgent(tc, telnetDM); err != nil {
		return err
	}
	_, err := tc.Write(abor.AppendTo(make([]byte, 0, 8)))
	return err
}

// roundTrip sends cmd and returns its final reply, with any 1xx replies
// before it dropped: for commands of the proxy's own, not the client's.
func (bc *backendConn) roundTrip(cmd ftpctl.Command, timeout time.Duration) (ftpctl.Reply, error) {
	if err := bc.send(cmd, timeout); err != nil {
		return ftpctl.Reply{}, err
	}
	return bc.finalReply()
}

// finalReply reads up to the final reply, dropping 1xx replies.
func (bc *backendConn) finalReply() (ftpctl.Reply, error) {
	for {
		rep, err := bc.readReply()
		if err != nil || rep.Code.Final() {
			return rep, err
		}
	}
}

// addrOf returns the IP of a TCP address, unmapped, so that an IPv4 client
// on a dual-stack socket compares equal to its plain IPv4 form.
func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
