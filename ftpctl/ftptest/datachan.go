package ftptest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/ftpsgate/ftpsgate/ftpctl"
)

var (
	errAborted     = errors.New("ftptest: transfer aborted")
	errDataTimeout = errors.New("ftptest: no data connection")
)

// passive is the listener opened by PASV or EPSV. Its accept loop takes the
// first connection from the control connection's IP, even before the
// transfer command arrives, and holds it for the transfer.
type passive struct {
	ln   net.Listener
	conn chan net.Conn // buffered 1: the accepted data connection
	done chan struct{} // closed when the accept loop has returned
}

// listenPassive opens a passive listener on the control connection's local
// IP at an ephemeral port.
func (c *session) listenPassive() (*passive, error) {
	ln, err := c.srv.listenPassivePort(c.local)
	if err != nil {
		return nil, err
	}
	p := &passive{ln: ln, conn: make(chan net.Conn, 1), done: make(chan struct{})}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer close(p.done)
		c.acceptData(p)
	}()
	return p, nil
}

// listenPassivePort listens on ip at a port of the passive range, the
// ports taken in turn, or at an ephemeral port without a range.
func (s *Server) listenPassivePort(ip netip.Addr) (*net.TCPListener, error) {
	lo, hi := s.PassivePortMin, s.PassivePortMax
	if lo == 0 || hi < lo {
		return net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	}
	size := int(hi-lo) + 1
	var err error
	for range size {
		s.mu.Lock()
		port := lo + s.nextPort%uint16(size)
		s.nextPort++
		s.mu.Unlock()
		var ln *net.TCPListener
		if ln, err = net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, port))); err == nil {
			return ln, nil
		}
	}
	return nil, err
}

// acceptData accepts on p until a connection comes from the control
// connection's IP. Like vsftpd (pasv_promiscuous=NO), pure-ftpd and ProFTPD,
// it refuses connections from any other IP: otherwise anyone who guesses the
// port could steal the data ("port theft", RFC 2577 section 5).
func (c *session) acceptData(p *passive) {
	for {
		conn, err := p.ln.Accept()
		if err != nil {
			return
		}
		if a, ok := conn.RemoteAddr().(*net.TCPAddr); !ok || a.AddrPort().Addr().Unmap() != c.remote {
			c.srv.countRefused() // before Close: a test that sees the close sees the count
			conn.Close()
			continue
		}
		p.conn <- conn
		p.ln.Close()
		return
	}
}

// port returns the port p listens on.
func (p *passive) port() uint16 {
	return p.ln.Addr().(*net.TCPAddr).AddrPort().Port()
}

// close closes the listener and any connection it accepted but nobody took.
func (p *passive) close() {
	p.ln.Close()
	<-p.done
	select {
	case conn := <-p.conn:
		conn.Close()
	default:
	}
}

// closePassive drops the passive listener of the session, if any.
func (c *session) closePassive() {
	if c.pasv != nil {
		c.pasv.close()
		c.pasv = nil
	}
}

// dataSetup is how a transfer gets its data connection: the passive listener
// or the active address, taken from the session by the transfer command.
type dataSetup struct {
	pasv *passive
	port netip.AddrPort
}

// takeData hands the session's data connection setup to a transfer; the
// next transfer needs a new PASV, EPSV, PORT or EPRT.
func (c *session) takeData() (dataSetup, bool) {
	d := dataSetup{pasv: c.pasv, port: c.port}
	c.pasv, c.port = nil, netip.AddrPort{}
	return d, d.pasv != nil || d.port.IsValid()
}

// discard releases a setup whose transfer was refused.
func (d dataSetup) discard() {
	if d.pasv != nil {
		d.pasv.close()
	}
}

// open returns the data connection: the one the passive listener accepted
// within the timeout, or a new connection to the active address, dialled from
// the control connection's local IP.
func (d dataSetup) open(ctx context.Context, c *session) (net.Conn, error) {
	timeout := c.srv.dataTimeout()
	if d.pasv != nil {
		defer d.pasv.close()
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case conn := <-d.pasv.conn:
			return conn, nil
		case <-t.C:
			return nil, errDataTimeout
		case <-ctx.Done():
			return nil, errAborted
		}
	}
	dialer := net.Dialer{
		Timeout:   timeout,
		LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(c.local, 0)),
	}
	conn, err := dialer.DialContext(ctx, "tcp", d.port.String())
	if err != nil {
		if ctx.Err() != nil {
			return nil, errAborted
		}
		return nil, errDataTimeout
	}
	return conn, nil
}

// transfer is one data transfer in flight.
type transfer struct {
	ctx    context.Context // canceled by ABOR or the end of the session
	cancel func()
	done   chan struct{} // closed when the transfer's final reply is sent

	mu   sync.Mutex
	conn net.Conn // guarded by mu: the data connection once open
}

// attach records the open data connection so that cancel can close it; it
// closes conn and returns false if the transfer is already canceled.
func (t *transfer) attach(conn net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ctx.Err() != nil {
		conn.Close()
		return false
	}
	t.conn = conn
	return true
}

// abort cancels the transfer and closes its data connection, which stops a
// copier blocked in Read or Write.
func (t *transfer) abort() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cancel()
	if t.conn != nil {
		t.conn.Close()
	}
}

// job describes what a transfer does once its data connection is open.
type job struct {
	opening string               // text of the 150 reply
	move    func(net.Conn) error // moves the data; runTransfer closes the connection
	okText  string               // text of the 226 reply
	failMsg string               // text of the 426 reply on a data error

	// finish, if not nil, runs after the data connection is closed and
	// before the final reply (uploads store the file here). An error turns
	// a 226 into a 451.
	finish func(moveErr error) error
}

// startTransfer runs j on the data connection of d in a new goroutine. The
// control goroutine goes on reading commands; ABOR cancels the transfer,
// anything else waits for it (waitTransfer).
func (c *session) startTransfer(d dataSetup, j job) {
	ctx, cancel := context.WithCancel(context.Background())
	x := &transfer{ctx: ctx, cancel: cancel, done: make(chan struct{})}
	c.mu.Lock()
	c.xfer = x
	if c.killed {
		x.abort()
	}
	c.mu.Unlock()
	cmd := c.current
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer close(x.done)
		defer cancel()
		c.runTransfer(x, d, j, cmd)
	}()
}

// runTransfer is the body of a transfer: data connection, 150, data, close,
// final reply (226, or 425 or 426), recorded for Transfers before it is
// sent.
func (c *session) runTransfer(x *transfer, d dataSetup, j job, cmd ftpctl.Command) {
	final := func(code ftpctl.Code, text string) {
		c.srv.recordTransfer(Transfer{Verb: cmd.Verb, Arg: cmd.Arg, Code: code})
		c.reply(code, text)
	}
	if c.srv.ReplyBeforeData {
		c.reply(ftpctl.CodeFileStatusOK, j.opening)
	}
	conn, err := d.open(x.ctx, c)
	switch {
	case errors.Is(err, errAborted):
		final(ftpctl.CodeTransferAborted, "Transfer aborted.")
		return
	case err != nil:
		final(ftpctl.CodeCannotOpenData, "Failed to establish connection.")
		return
	}
	if !x.attach(conn) {
		final(ftpctl.CodeTransferAborted, "Transfer aborted.")
		return
	}
	if !c.srv.ReplyBeforeData {
		c.reply(ftpctl.CodeFileStatusOK, j.opening)
	}
	err = j.move(conn)
	// Close before the final reply: a client that sees 226 has all the data
	// (the FIN follows the last byte).
	conn.Close()
	var finishErr error
	if j.finish != nil {
		finishErr = j.finish(err)
	}
	switch {
	case err == nil && finishErr != nil:
		final(ftpctl.CodeLocalError, "Local error in processing.")
	case err == nil:
		final(ftpctl.CodeTransferComplete, j.okText)
	case x.ctx.Err() != nil:
		final(ftpctl.CodeTransferAborted, "Transfer aborted.")
	default:
		final(ftpctl.CodeTransferAborted, j.failMsg)
	}
}

// waitTransfer waits until the transfer in progress, if any, has sent its
// final reply: commands run in lockstep (RFC 959 section 5.4).
func (c *session) waitTransfer() {
	if x := c.currentTransfer(); x != nil {
		<-x.done
		c.clearTransfer()
	}
}

// currentTransfer returns the transfer in progress, if any. It stays
// recorded until it is done, so that kill can abort it meanwhile.
func (c *session) currentTransfer() *transfer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.xfer
}

func (c *session) clearTransfer() {
	c.mu.Lock()
	c.xfer = nil
	c.mu.Unlock()
}

// abort runs ABOR (RFC 959 section 4.1.3): with a transfer in progress, close
// its data connection; the transfer replies 426, then ABOR replies 226.
// Without one (none started, or it finished before ABOR arrived), close the
// passive listener and its connection, if any, and reply 226 alone.
func (c *session) abort() {
	if c.phase != loggedIn {
		c.reply(ftpctl.CodeNotLoggedIn, "Please login with USER and PASS.")
		return
	}
	x := c.currentTransfer()
	finished := x == nil
	if x != nil {
		select {
		case <-x.done:
			finished = true
		default:
		}
	}
	if finished {
		c.clearTransfer()
		c.closePassive()
		c.reply(ftpctl.CodeTransferComplete, "No transfer to ABOR.")
		return
	}
	x.abort()
	<-x.done
	c.clearTransfer()
	c.reply(ftpctl.CodeTransferComplete, "ABOR successful.")
}

// sendData is the copier of downloads: it writes data in large chunks
// straight from the stored slice.
func sendData(conn net.Conn, data []byte) error {
	const chunk = 1 << 20
	for len(data) > 0 {
		n := min(len(data), chunk)
		if _, err := conn.Write(data[:n]); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

// receiveData is the copier of uploads: it reads until EOF.
func receiveData(conn net.Conn, buf *bytes.Buffer) error {
	_, err := buf.ReadFrom(conn)
	return err
}

// discardData is the copier of uploads under DiscardUploads.
func discardData(conn net.Conn) error {
	buf := make([]byte, 64<<10)
	for {
		_, err := conn.Read(buf)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
