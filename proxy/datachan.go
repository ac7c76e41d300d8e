package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/ftpsgate/ftpsgate/ftpctl"
	"github.com/ftpsgate/ftpsgate/tlsoffload"
)

// direction is which way a transfer's data flows.
type direction uint8

const (
	download direction = iota // backend to client: RETR, LIST, NLST, MLSD
	upload                    // client to backend: STOR, STOU, APPE
)

func (d direction) String() string {
	if d == upload {
		return "upload"
	}
	return "download"
}

// errDataConnect is a data connection that could not be made: nobody valid
// connected to a port in time, or a dial failed. The client is told 425.
var errDataConnect = errors.New("proxy: data connection not established")

// errNoSessionReuse is a data connection refused for not resuming its
// control connection's TLS session.
var errNoSessionReuse = errors.New("proxy: data connection did not resume the control TLS session")

// dataChannel is one data connection through the proxy, made of two halves
// set up independently: how the client's end is reached (passive: the
// client connects to a proxy port; active: the proxy dials the client's
// PORT/EPRT address) and how the backend's end is reached (passive: the
// proxy dials the backend's PASV/EPSV port; active: the backend connects to
// a proxy port named in PORT/EPRT). Then TLS toward the client when PROT P,
// TLS toward an FTPS backend, and the relay. It serves at most one transfer.
type dataChannel struct {
	client     dataEnd
	backend    dataEnd
	clientMode DataMode // DataPassive or DataActive, for logs and ordering
	backMode   DataMode
	// backendTLS secures the data connection toward an FTPS backend (a
	// no-op toward a plain one).
	backendTLS func(context.Context, net.Conn) (net.Conn, error)
	tls        *tls.Config
	reuse      bool // the data TLS must resume the control session
	timeouts   Timeouts
	log        zerolog.Logger

	ctx     context.Context
	cancel  context.CancelFunc
	xfer    transferStart // set by begin before started is closed
	started chan struct{} // closed when the transfer command was sent

	// Set before the channel named in its comment is closed.
	down, up         int64 // bytes relayed each way; down before downDone, up before upDone
	downErr, upErr   error
	resumed          bool   // data TLS resumed a session; before downDone and upDone
	tlsVersion       uint16 // 0 when plain
	downDone, upDone chan struct{}
	done             chan struct{} // both directions finished, sockets closed

	// moved counts bytes relayed so far, by direction, while they move:
	// the status page's progress (down and up are the final counts).
	moved [2]atomic.Int64
}

// transferStart tells a data channel how to run the transfer it serves.
type transferStart struct {
	protect  bool           // PROT P: TLS on the client side
	dir      direction      // which way the data flows
	limiters []*rateLimiter // rate limits the data passes through; nil ones are none
}

// dataEnd is how the proxy gets its socket to one party of a data
// connection: a listener it accepts on (listenEnd) or an address it dials
// (dialEnd).
type dataEnd interface {
	// open returns the connection to the party. started is closed once the
	// transfer command has reached the backend; an end whose party acts
	// only after that command waits for it.
	open(ctx context.Context, started <-chan struct{}) (net.Conn, error)
	// release frees the end's listener and port, if any. It may be called
	// more than once, also when open never was.
	release()
}

// openData starts a data channel between two ends; the channel owns them
// from now on.
func (s *session) openData(client dataEnd, clientMode DataMode, backend dataEnd, backMode DataMode) *dataChannel {
	ctx, cancel := context.WithCancel(s.ctx)
	dc := &dataChannel{
		client:     client,
		backend:    backend,
		clientMode: clientMode,
		backMode:   backMode,
		backendTLS: s.backend.secureData,
		tls:        s.dataTLS,
		reuse:      s.cfg.RequireSessionReuse,
		timeouts:   s.cfg.Timeouts,
		log:        s.log,
		ctx:        ctx,
		cancel:     cancel,
		started:    make(chan struct{}),
		downDone:   make(chan struct{}),
		upDone:     make(chan struct{}),
		done:       make(chan struct{}),
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		dc.run()
	}()
	return dc
}

// backendEnd sets up the backend's half of a data channel for a client
// that chose clientMode, as the backend's data_to_backend says; auto asks in
// the client's mode first and in the other when the backend refuses. After
// a refusal the client has been answered here and the end is nil: with the
// backend's own reply when it was asked in the client's mode, else 425.
func (s *session) backendEnd(clientMode DataMode) (dataEnd, DataMode, error) {
	modes := []DataMode{clientMode, clientMode.other()}
	if m := s.backend.DataToBackend; m != DataAuto {
		modes = []DataMode{m}
	}
	refusal := ftpctl.NewReply(ftpctl.CodeCannotOpenData, "Can't open data connection.")
	for _, m := range modes {
		end, rep, err := s.askBackend(m)
		if err != nil || end != nil {
			return end, m, err
		}
		if m == clientMode {
			refusal = rep
		}
	}
	return nil, 0, s.send(refusal)
}

// askBackend sets up the backend's end of a data connection in mode m; a
// refusal comes back, taken (refusedSetup), with a nil end.
func (s *session) askBackend(m DataMode) (dataEnd, ftpctl.Reply, error) {
	setup := s.backendPassive
	if m == DataActive {
		setup = s.backendActive
	}
	end, rep, err := setup()
	if err == nil && end == nil {
		err = s.refusedSetup(m, rep)
	}
	return end, rep, err
}

// refusedSetup takes a backend's refusal to set up a data connection in
// mode m: logged, and a 421 (the backend closing) relayed, ending the
// session.
func (s *session) refusedSetup(m DataMode, rep ftpctl.Reply) error {
	if rep.Code == ftpctl.CodeNotAvailable {
		s.send(rep)
		return errBackendLost
	}
	s.log.Info().Stringer("backend_data", m).Int("code", int(rep.Code)).Str("text", rep.Text()).
		Msg("backend refused data connection setup")
	return nil
}

// dropData ends the data channel waiting for a transfer, if any: a new
// PASV, EPSV, PORT or EPRT replaces it.
func (s *session) dropData() {
	if s.data != nil {
		s.data.abort()
		s.data = nil
	}
}

// begin hands the channel its transfer; it may be called once.
func (dc *dataChannel) begin(t transferStart) {
	dc.xfer = t
	close(dc.started)
}

// abort ends the channel at once, whatever it is doing.
func (dc *dataChannel) abort() { dc.cancel() }

// finished returns the channel closed when the data of a transfer in
// direction d has all been delivered, or has failed.
func (dc *dataChannel) finished(d direction) <-chan struct{} {
	if d == upload {
		return dc.upDone
	}
	return dc.downDone
}

// result returns the bytes and error of direction d; call it only after
// finished(d) is closed.
func (dc *dataChannel) result(d direction) (int64, error) {
	if d == upload {
		return dc.up, dc.upErr
	}
	return dc.down, dc.downErr
}

func (dc *dataChannel) run() {
	defer close(dc.done)
	defer dc.client.release()
	defer dc.backend.release()
	client, backend, t, err := dc.connect()
	if err != nil {
		dc.downErr, dc.upErr = err, err
		close(dc.downDone)
		close(dc.upDone)
		return
	}
	// Closing both sockets unblocks both copiers on abort or session end.
	// Before the data is through that is a reset, not a FIN: the receiver
	// must see a cut transfer as cut. A FIN would end a vanished client's
	// upload like a whole file, and the backend would store it and say 226.
	var delivered atomic.Bool // the data direction ended cleanly
	stop := context.AfterFunc(dc.ctx, func() {
		if delivered.Load() {
			client.Close()
			backend.Close()
		} else {
			reset(client)
			reset(backend)
		}
	})
	defer stop()
	defer client.Close()
	defer backend.Close()

	th := newThrottle(dc.ctx, t.limiters...)
	copyDir := func(d direction, idle time.Duration) {
		dst, src, n, err, done := client, backend, &dc.down, &dc.downErr, dc.downDone
		if d == upload {
			dst, src, n, err, done = backend, client, &dc.up, &dc.upErr, dc.upDone
		}
		*n, *err = relayData(dst, src, idle, &dc.moved[d], th)
		if *err == nil && d == t.dir {
			delivered.Store(true)
		}
		if *err != nil {
			dc.cancel()
		}
		close(done)
	}
	// Only the direction that carries the data has an idle timeout: the
	// other one is silent by nature until the transfer ends, and then its
	// sender has the idle timeout to close.
	idle := dc.timeouts.dataIdle()
	reverse, reverseSrc := upload, client
	if t.dir == upload {
		reverse, reverseSrc = download, backend
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		copyDir(reverse, 0)
	}()
	copyDir(t.dir, idle)
	reverseSrc.SetReadDeadline(time.Now().Add(idle))
	wg.Wait()
	dc.cancel()
}

// connect opens both ends and, once the transfer has begun, secures them.
//
// The order of the ends follows who acts first. A passive client connects
// as soon as it has the 227/229, so it is taken first, before the backend
// is involved. An active client is dialled only once the backend's end is
// up: an active backend connects only for a transfer it accepted (not for
// a 550), and a passive backend's port is dialled at once.
// Backends send 150 only once their data connection is up, and clients
// (curl, ftplib) start TLS only after 150, so the backend's end never waits
// for the client's handshake.
func (dc *dataChannel) connect() (client, backend net.Conn, t transferStart, err error) {
	fail := func(err error) (net.Conn, net.Conn, transferStart, error) {
		// A reset: a backend whose upload's data connection just ends
		// would store an empty file as complete.
		if client != nil {
			reset(client)
		}
		if backend != nil {
			reset(backend)
		}
		return nil, nil, t, err
	}
	if dc.clientMode == DataActive {
		if backend, err = dc.backend.open(dc.ctx, dc.started); err != nil {
			return fail(err)
		}
		if client, err = dc.client.open(dc.ctx, dc.started); err != nil {
			return fail(err)
		}
	} else {
		// Most clients connect right after 227, some only after the 150,
		// which backends such as vsftpd send only once their own data
		// connection is up: the backend is reached as soon as the client
		// has connected or the transfer command has gone out, whichever
		// comes first, so neither kind waits on the other.
		type opened struct {
			conn net.Conn
			err  error
		}
		clientc := make(chan opened, 1)
		go func() {
			c, err := dc.client.open(dc.ctx, dc.started)
			clientc <- opened{c, err}
		}()
		waited := false
		select {
		case o := <-clientc:
			client, err, waited = o.conn, o.err, true
			if err != nil {
				return fail(err)
			}
		case <-dc.started:
		case <-dc.ctx.Done():
		}
		backend, err = dc.backend.open(dc.ctx, dc.started)
		if err != nil {
			dc.cancel() // ends the client's open, if it still waits
		}
		if !waited {
			o := <-clientc
			client = o.conn
			if err == nil {
				err = o.err
			}
		}
		if err != nil {
			return fail(err)
		}
	}
	select {
	case <-dc.started:
		t = dc.xfer
	case <-dc.ctx.Done():
		return fail(dc.ctx.Err())
	}
	// Toward an FTPS backend, TLS once the backend is in its transfer: it
	// accepts the data connection only then. Its 150 follows, and only
	// then does the client start its own handshake.
	ctx, cancel := context.WithTimeout(dc.ctx, dc.timeouts.handshake())
	secured, err := dc.backendTLS(ctx, backend)
	cancel()
	if err != nil {
		return fail(err)
	}
	backend = secured
	if t.protect {
		// RFC 4217 section 7: the FTP client is the TLS client on every data
		// connection, also one the proxy dialled in active mode.
		tc, err := dc.handshake(client)
		if err != nil {
			return fail(err)
		}
		client = tc
	}
	return client, backend, t, nil
}

func (dc *dataChannel) handshake(conn net.Conn) (*tls.Conn, error) {
	tc := dataTLSServer(conn, dc.tls)
	ctx, cancel := context.WithTimeout(dc.ctx, dc.timeouts.handshake())
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		if errors.Is(err, tlsoffload.ErrForeignTicket) {
			dc.log.Warn().Str("from", conn.RemoteAddr().String()).
				Msg("data connection presented another session's TLS ticket: refused")
			return nil, errors.Join(errNoSessionReuse, err)
		}
		return nil, fmt.Errorf("proxy: data connection TLS handshake: %w", err)
	}
	st := tc.ConnectionState()
	dc.resumed, dc.tlsVersion = st.DidResume, st.Version
	if dc.reuse && !st.DidResume {
		dc.log.Warn().Str("from", conn.RemoteAddr().String()).
			Msg("data connection did not resume the control TLS session: refused (tls.require_session_reuse)")
		tc.Close()
		return nil, errNoSessionReuse
	}
	return tc, nil
}

// party names who is at the other end of a dataEnd, for logs.
type party string

const (
	partyClient  party = "client"
	partyBackend party = "backend"
)

// listenEnd is an end the party connects to: the client's in passive mode,
// the backend's in active mode. It accepts the first connection from the
// party's address within the timeout; connections from other addresses are
// refused and logged, so that nobody else can take the transfer by racing
// to the port (port theft, RFC 2577 section 5) or feed it.
type listenEnd struct {
	party party
	ln    *net.TCPListener // nil on a shared port
	claim *portClaim       // the wait on a shared port (passive port sharing)
	free  func()           // gives the port back to its allocator
	// from is the only address accepted. Zero accepts any: a client whose
	// PASV on IPv6 was answered with an IPv4 address connects from an
	// address nothing ties to it.
	from netip.Addr
	// trust, if set, names the balancers whose connections open with a
	// PROXY header: theirs is checked by the header's client address.
	trust func(netip.Addr) bool
	// refused counts a connection closed for its PROXY header.
	refused func()
	// afterStart: the party connects only after the transfer command, so
	// the timeout runs from then (an active backend); else from now.
	afterStart bool
	timeout    time.Duration
	deadline   time.Time // afterStart false: the accept deadline
	log        zerolog.Logger
	once       sync.Once
}

func newListenEnd(p party, ln *net.TCPListener, free func(), from netip.Addr, afterStart bool, timeout time.Duration, log zerolog.Logger) *listenEnd {
	return &listenEnd{party: p, ln: ln, free: free, from: from, afterStart: afterStart,
		timeout: timeout, deadline: time.Now().Add(timeout), log: log}
}

// newSharedEnd is a listenEnd for a passive client on a shared port: the
// port's dispatcher has already matched the source address.
func newSharedEnd(c *portClaim, timeout time.Duration, log zerolog.Logger) *listenEnd {
	return &listenEnd{party: partyClient, claim: c, free: c.release, from: c.from,
		timeout: timeout, deadline: time.Now().Add(timeout), log: log}
}

// port is the port the party is told to connect to.
func (e *listenEnd) port() uint16 {
	if e.claim != nil {
		return e.claim.sp.port
	}
	return uint16(e.ln.Addr().(*net.TCPAddr).Port)
}

func (e *listenEnd) release() {
	e.once.Do(func() {
		if e.ln != nil {
			e.ln.Close()
		}
		e.free()
	})
}

func (e *listenEnd) open(ctx context.Context, started <-chan struct{}) (net.Conn, error) {
	defer e.release()
	deadline := e.deadline
	if e.afterStart {
		select {
		case <-started:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		deadline = time.Now().Add(e.timeout)
	}
	if e.claim != nil {
		return e.openShared(ctx, deadline)
	}
	stop := context.AfterFunc(ctx, func() { e.ln.Close() })
	defer stop()
	e.ln.SetDeadline(deadline)
	for {
		conn, err := e.ln.AcceptTCP()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				e.log.Warn().Str("party", string(e.party)).Uint16("port", e.port()).
					Msg("data port released: no data connection")
				return nil, errDataConnect
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, errors.Join(errDataConnect, err)
		}
		var c net.Conn = conn
		from := addrOf(conn.RemoteAddr())
		if e.trust != nil && e.trust(from) {
			unblock := context.AfterFunc(ctx, func() { conn.Close() })
			c, from, err = proxiedData(conn, time.Until(deadline))
			unblock()
			if err != nil && ctx.Err() != nil {
				conn.Close()
				return nil, ctx.Err()
			}
			if err != nil {
				if e.refused != nil {
					e.refused()
				}
				e.log.Warn().Err(err).Str("party", string(e.party)).Str("via", conn.RemoteAddr().String()).
					Uint16("port", e.port()).Msg("data connection from a trusted proxy without a valid PROXY header refused")
				conn.Close()
				continue
			}
		}
		if e.from.IsValid() && from != e.from {
			e.log.Warn().Str("party", string(e.party)).Str("from", from.String()).Uint16("port", e.port()).
				Msg("data connection from another address refused")
			conn.Close()
			continue
		}
		keepAlive(conn)
		return c, nil
	}
}

func (e *listenEnd) openShared(ctx context.Context, deadline time.Time) (net.Conn, error) {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case conn := <-e.claim.conn:
		keepAlive(conn)
		return conn, nil
	case <-timer.C:
		e.log.Warn().Str("party", string(e.party)).Uint16("port", e.port()).
			Msg("data port released: no data connection")
		return nil, errDataConnect
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// dialEnd is an end the proxy dials: the backend's passive port, or the
// client's PORT/EPRT address.
type dialEnd struct {
	party  party
	target netip.AddrPort
	// from is the local address: the IP the party expects data from (its
	// control connection's other end), and a port only with
	// active_source_port.
	from netip.AddrPort
	// afterStart: dial only once the transfer command went out (an active
	// client, whose listener serves that transfer).
	afterStart bool
	timeout    time.Duration
	log        zerolog.Logger
}

func (e *dialEnd) release() {}

func (e *dialEnd) open(ctx context.Context, started <-chan struct{}) (net.Conn, error) {
	if e.afterStart {
		select {
		case <-started:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	conn, err := e.dial(ctx, e.from)
	if err != nil && e.from.Port() != 0 && isBindError(err) {
		e.log.Warn().Err(err).Uint16("source_port", e.from.Port()).
			Msg("active_source_port unavailable: dialling from an ephemeral port")
		conn, err = e.dial(ctx, netip.AddrPortFrom(e.from.Addr(), 0))
	}
	if err != nil {
		if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, ctx.Err() // aborted
		}
		e.log.Warn().Err(err).Str("party", string(e.party)).Stringer("to", e.target).
			Msg("data connection failed")
		return nil, errors.Join(errDataConnect, err)
	}
	keepAlive(conn)
	return conn, nil
}

func (e *dialEnd) dial(ctx context.Context, from netip.AddrPort) (net.Conn, error) {
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(from)}
	if from.Port() != 0 {
		// A fixed source port serves one connection after another, and
		// several at once to different clients.
		d.Control = reuseAddr
	}
	return d.DialContext(ctx, "tcp", e.target.String())
}

// reset closes c with a TCP reset and without TLS close_notify, so that
// its peer sees the transfer fail rather than end.
func reset(c net.Conn) {
	// The socket itself: closing the TLS layer would send close_notify,
	// which reads as a clean end.
	sock := socketOf(c)
	if tc, ok := sock.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	sock.Close()
}

// isBindError reports whether a dial failed at binding its local address:
// a privileged port without the privilege, or a port another socket holds.
func isBindError(err error) bool {
	var se *os.SyscallError
	return errors.As(err, &se) && se.Syscall == "bind" &&
		(errors.Is(se.Err, syscall.EACCES) || errors.Is(se.Err, syscall.EADDRINUSE) || errors.Is(se.Err, syscall.EPERM))
}
