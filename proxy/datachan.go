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
	// unchecked: the client's end takes connections from any address
	// (listenEnd.from is zero), so only PROT P with reuse can tell the
	// client's own.
	unchecked bool
	timeouts  Timeouts
	log       zerolog.Logger
	// sessionCtx and drains are the session's: drainRefused outlives the
	// channel, not the session.
	sessionCtx context.Context
	drains     *sync.WaitGroup

	ctx     context.Context
	cancel  context.CancelFunc
	xfer    transferStart // set by begin before started is closed
	started chan struct{} // closed when the transfer command was sent

	// Set before the channel named in its comment is closed.
	down, up         int64 // bytes relayed each way; down before downDone, up before upDone
	downErr, upErr   error
	resumed          bool   // data TLS resumed a session; before downDone and upDone
	tlsVersion       uint16 // 0 when plain
	clientAddr       string // the client end's peer, once connected; as resumed
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
		reuse:      !s.cfg.AllowUnresumedData,
		timeouts:   s.cfg.Timeouts,
		log:        s.log,
		ctx:        ctx,
		cancel:     cancel,
		unchecked:  isUnchecked(client),
		sessionCtx: s.ctx,
		drains:     &s.wg,
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

// isUnchecked reports whether a client end takes connections from any
// address.
func isUnchecked(client dataEnd) bool {
	le, ok := client.(*listenEnd)
	return ok && le.claim == nil && !le.from.IsValid()
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
	if t.dir == download && delivered.Load() {
		// Nothing more can come from the backend, and nothing is to go to
		// it: say so now rather than when the client closes. ProFTPD
		// waits for the other end of its data connection to close, up to
		// its linger timeout (10 s), before its 226, and a client that
		// keeps its data connection open until it has read that 226 would
		// wait the whole time for every file (issue 16).
		closeWrite(backend)
	}
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
	dc.backend.release() // its connection is made: no other is taken
	if t.protect {
		// RFC 4217 section 7: the FTP client is the TLS client on every data
		// connection, also one the proxy dialled in active mode.
		tc, err := dc.secureClient(client)
		client = nil // closed, or tc's now
		if err != nil {
			return fail(err)
		}
		client = tc
	} else if dc.unchecked {
		// Anyone may have connected to a port whose source is not
		// checked; only a TLS session could have told. The session
		// refuses the transfer before this.
		return fail(errUncheckedSource)
	}
	dc.client.release()
	dc.clientAddr = client.RemoteAddr().String()
	return client, backend, t, nil
}

// errUncheckedSource is a data connection that nothing but PROT P could
// have tied to its session (PASV on IPv6, answered with an IPv4 address).
var errUncheckedSource = errors.New("proxy: data connection from an unchecked address without PROT P")

// retryGrace is how long a passive client's port waits for another
// connection after the last one failed its TLS check, within the data
// connection deadline. The rightful client connects right after the 227
// or the 150 it needs, well within it, however a neighbour raced it; a
// client that cannot resume (stock ftplib) learns of its 522 this soon,
// not at the deadline.
const retryGrace = 3 * time.Second

// maxHandshakes bounds the TLS handshakes a data channel runs at once for
// the connections in line.
const maxHandshakes = 4

// secureClient runs the TLS server handshake on the client's data
// connection and checks that it resumed its own control session. On a
// passive port, a connection that fails this check does not end the
// channel: the ones in line after it (listenEnd.candidates) are tried
// too, at the same time, and the first that passes is the client's. Each
// failure is logged with where it came from.
func (dc *dataChannel) secureClient(first net.Conn) (*tls.Conn, error) {
	var (
		line     <-chan net.Conn
		deadline <-chan time.Time
	)
	if le, ok := dc.client.(*listenEnd); ok && le.party == partyClient {
		var until time.Time
		line, until = le.candidates()
		timer := time.NewTimer(time.Until(until))
		defer timer.Stop()
		deadline = timer.C
	}
	ctx, cancel := context.WithCancel(dc.ctx)
	defer cancel()
	type outcome struct {
		conn net.Conn
		tc   *tls.Conn
		err  error
	}
	outcomes := make(chan outcome)
	running := 0
	try := func(c net.Conn) {
		running++
		go func() {
			tc, err := dc.handshake(ctx, c)
			outcomes <- outcome{c, tc, err}
		}()
	}
	// finish ends the handshakes still running, and closes their
	// connections: the transfer has its client, or none.
	finish := func() {
		cancel()
		for ; running > 0; running-- {
			o := <-outcomes
			if dc.ctx.Err() == nil {
				dc.log.Warn().Str("from", o.conn.RemoteAddr().String()).
					Msg("data connection refused: another proved to be the client's")
			}
			o.conn.Close()
		}
	}
	try(first)
	var (
		lastErr error
		grace   *time.Timer // after the last failure, with nothing running
	)
	stopGrace := func() {
		if grace != nil {
			grace.Stop()
			grace = nil
		}
	}
	defer stopGrace()
	for {
		var graceC <-chan time.Time
		if running == 0 && lastErr != nil {
			if line == nil {
				return nil, lastErr
			}
			if grace == nil {
				grace = time.NewTimer(retryGrace)
			}
			graceC = grace.C
		}
		select {
		case c, ok := <-line:
			switch {
			case !ok:
				line = nil
			case running >= maxHandshakes:
				dc.log.Warn().Str("from", c.RemoteAddr().String()).
					Msg("data connection refused: too many TLS handshakes at once on the port")
				c.Close()
			default:
				stopGrace()
				try(c)
			}
		case o := <-outcomes:
			running--
			if o.err == nil {
				finish()
				st := o.tc.ConnectionState()
				dc.resumed, dc.tlsVersion = st.DidResume, st.Version
				return o.tc, nil
			}
			dc.refusedClient(o.conn, o.err)
			if errors.Is(o.err, errNoSessionReuse) && o.tc != nil {
				dc.drainRefused(o.tc)
			} else {
				o.conn.Close()
			}
			lastErr = o.err
		case <-graceC:
			return nil, lastErr
		case <-deadline:
			deadline, line = nil, nil
		case <-dc.ctx.Done():
			finish()
			return nil, dc.ctx.Err()
		}
	}
}

// handshake runs the TLS server handshake on one data connection and, when
// session reuse is required, checks that it resumed its control session.
func (dc *dataChannel) handshake(ctx context.Context, conn net.Conn) (*tls.Conn, error) {
	tc := dataTLSServer(conn, dc.tls)
	ctx, cancel := context.WithTimeout(ctx, dc.timeouts.handshake())
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		if errors.Is(err, tlsoffload.ErrForeignTicket) {
			return nil, errors.Join(errNoSessionReuse, err)
		}
		return nil, fmt.Errorf("proxy: data connection TLS handshake: %w", err)
	}
	if dc.reuse && !tc.ConnectionState().DidResume {
		return tc, errNoSessionReuse // the caller closes it, or drains it first
	}
	return tc, nil
}

// Bounds of drainRefused.
const (
	refusedDrainIdle  = time.Second
	refusedDrainBytes = 16 << 20
)

// drainRefused reads and drops what the client of a data connection
// refused for not resuming still sends, for a little while, then closes it
// with close_notify. A client that writes before it reads (stock ftplib's
// storbinary) then gets to read the 522 on the control connection, which
// says what to do, rather than dying of a write error on the data
// connection. Whoever it is, it moves no byte of a transfer.
func (dc *dataChannel) drainRefused(tc *tls.Conn) {
	dc.drains.Add(1)
	go func() {
		defer dc.drains.Done()
		stop := context.AfterFunc(dc.sessionCtx, func() { tc.NetConn().Close() })
		defer stop()
		buf := make([]byte, 16<<10)
		for n := 0; n < refusedDrainBytes; {
			tc.SetReadDeadline(time.Now().Add(refusedDrainIdle))
			k, err := tc.Read(buf)
			if n += k; err != nil {
				break
			}
		}
		tc.SetWriteDeadline(time.Now().Add(refusedDrainIdle))
		tc.Close()
	}()
}

// refusedClient logs a client data connection that failed its TLS check.
func (dc *dataChannel) refusedClient(conn net.Conn, err error) {
	ev := dc.log.Warn().Str("from", conn.RemoteAddr().String())
	switch {
	case errors.Is(err, tlsoffload.ErrForeignTicket):
		ev.Msg("data connection presented another session's TLS ticket: refused")
	case errors.Is(err, errNoSessionReuse):
		ev.Msg("data connection did not resume the control TLS session: refused (tls.require_session_reuse)")
	case dc.ctx.Err() == nil:
		withAlert(ev.Err(err), err).Msg("data connection TLS handshake failed: refused")
	}
}

// party names who is at the other end of a dataEnd, for logs.
type party string

const (
	partyClient  party = "client"
	partyBackend party = "backend"
)

// listenEnd is an end the party connects to: the client's in passive mode,
// the backend's in active mode. It takes connections from the party's
// address until the deadline; connections from other addresses are
// refused and logged, so that nobody else can take the transfer by racing
// to the port (port theft, RFC 2577 section 5) or feed it.
//
// The first connection is open's. A client's port stays open after it,
// until the channel is settled (release), and later connections wait in
// line (candidates): a first one that then fails the TLS check, a
// neighbour on the client's address or anyone at all on an unchecked
// port, must not end the channel before the rightful client connects.
type listenEnd struct {
	party party
	ln    *net.TCPListener // nil on a shared port
	claim *portClaim       // the wait on a shared port (passive port sharing)
	free  func()           // gives the port back to its allocator
	// from is the only address accepted. Zero accepts any: a client whose
	// PASV on IPv6 was answered with an IPv4 address connects from an
	// address nothing ties to it, and must prove itself by TLS instead.
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
	deadline   time.Time // the accept deadline; set again by open with afterStart
	log        zerolog.Logger

	// waiting holds the connections accepted from the party's address and
	// not yet taken, oldest first; accept closes it when it stops. On a
	// shared port the port's dispatcher fills claim.conn instead.
	waiting  chan net.Conn
	stop     context.CancelFunc // ends accept
	accepted chan struct{}      // closed when accept has returned
	once     sync.Once
}

// maxWaiting bounds the connections a port keeps in line for a transfer:
// more than any client makes, few enough that a flood of them costs
// little. Past it they are refused.
const maxWaiting = 8

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

// release closes the port: no more connections are taken, and those in
// line are closed.
func (e *listenEnd) release() {
	e.once.Do(func() {
		if e.ln != nil {
			e.ln.Close()
		}
		if e.stop != nil {
			e.stop()
			<-e.accepted
			for c := range e.waiting {
				c.Close()
			}
		}
		e.free()
	})
}

func (e *listenEnd) open(ctx context.Context, started <-chan struct{}) (net.Conn, error) {
	if e.afterStart {
		select {
		case <-started:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		e.deadline = time.Now().Add(e.timeout)
	}
	if e.claim == nil {
		actx, stop := context.WithCancel(ctx)
		e.stop, e.waiting, e.accepted = stop, make(chan net.Conn, maxWaiting), make(chan struct{})
		go e.accept(actx)
	}
	conn, err := e.take(ctx)
	if errors.Is(err, errDataConnect) {
		e.log.Warn().Str("party", string(e.party)).Uint16("port", e.port()).
			Msg("data port released: no data connection")
	}
	return conn, err
}

// candidates returns the connections in line after open's, and the time
// after which no more are taken.
func (e *listenEnd) candidates() (<-chan net.Conn, time.Time) {
	if e.claim != nil {
		return e.claim.conn, e.deadline
	}
	return e.waiting, e.deadline
}

// take returns the next connection in line, waiting for it until the
// deadline.
func (e *listenEnd) take(ctx context.Context) (net.Conn, error) {
	line, deadline := e.candidates()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case conn, ok := <-line:
		if !ok {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, errDataConnect
		}
		return conn, nil
	case <-timer.C:
		return nil, errDataConnect
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// accept takes connections until the deadline, ctx's end or release, and
// puts those from the party's address in line.
func (e *listenEnd) accept(ctx context.Context) {
	defer close(e.accepted)
	defer close(e.waiting)
	stop := context.AfterFunc(ctx, func() { e.ln.Close() })
	defer stop()
	e.ln.SetDeadline(e.deadline)
	for {
		conn, err := e.ln.AcceptTCP()
		if err != nil {
			return // the deadline, or closed
		}
		c, ok := e.admit(ctx, conn)
		if !ok {
			continue
		}
		select {
		case e.waiting <- c:
		default:
			e.log.Warn().Str("party", string(e.party)).Str("from", conn.RemoteAddr().String()).Uint16("port", e.port()).
				Msg("data connection refused: too many already wait on the port")
			c.Close()
		}
	}
}

// admit checks where conn comes from: the party's address, or through a
// trusted balancer its PROXY header's. A connection from anywhere else is
// refused and logged.
func (e *listenEnd) admit(ctx context.Context, conn *net.TCPConn) (net.Conn, bool) {
	var c net.Conn = conn
	from := addrOf(conn.RemoteAddr())
	if e.trust != nil && e.trust(from) {
		unblock := context.AfterFunc(ctx, func() { conn.Close() })
		var err error
		c, from, err = proxiedData(conn, time.Until(e.deadline))
		unblock()
		if err != nil {
			if ctx.Err() == nil {
				if e.refused != nil {
					e.refused()
				}
				e.log.Warn().Err(err).Str("party", string(e.party)).Str("via", conn.RemoteAddr().String()).
					Uint16("port", e.port()).Msg("data connection from a trusted proxy without a valid PROXY header refused")
			}
			conn.Close()
			return nil, false
		}
	}
	if e.from.IsValid() && from != e.from {
		e.log.Warn().Str("party", string(e.party)).Str("from", from.String()).Uint16("port", e.port()).
			Msg("data connection from another address refused")
		conn.Close()
		return nil, false
	}
	keepAlive(conn)
	return c, true
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
