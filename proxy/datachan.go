package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/rs/zerolog"

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

// errDataConnect is a passive port nobody valid connected to in time.
var errDataConnect = errors.New("proxy: no data connection from the client")

// errNoSessionReuse is a data connection refused for not resuming its
// control connection's TLS session.
var errNoSessionReuse = errors.New("proxy: data connection did not resume the control TLS session")

// dataChannel is one passive data connection: the proxy's listener for the
// client, the dial to the backend's passive port, TLS when PROT P, and the
// relay. It serves at most one transfer.
type dataChannel struct {
	ln       *net.TCPListener
	release  func()
	clientIP netip.Addr
	target   netip.AddrPort // the backend's data port, at its control IP
	localIP  netip.Addr     // dial from here: backends refuse data from another IP than control
	// backendTLS secures the data connection toward an FTPS backend (a
	// no-op toward a plain one).
	backendTLS func(context.Context, net.Conn) (net.Conn, error)
	tls        *tls.Config
	reuse      bool // the data TLS must resume the control session
	timeouts   Timeouts
	log        zerolog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	start  chan transferStart // the transfer command was sent

	// Set before the channel named in its comment is closed.
	down, up         int64 // bytes relayed each way; down before downDone, up before upDone
	downErr, upErr   error
	resumed          bool   // data TLS resumed a session; before downDone and upDone
	tlsVersion       uint16 // 0 when plain
	downDone, upDone chan struct{}
	done             chan struct{} // both directions finished, sockets closed
}

// transferStart tells a data channel how to run the transfer it serves.
type transferStart struct {
	protect bool      // PROT P: TLS on the client side
	dir     direction // which way the data flows
}

// openPassive opens a passive listener for s and starts waiting for the
// client; target is where the backend waits for the proxy.
func (s *session) openPassive(target netip.AddrPort) (*dataChannel, error) {
	ln, release, err := s.srv.ports.listen(s.localIP)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(s.ctx)
	dc := &dataChannel{
		ln:         ln.(*net.TCPListener),
		release:    release,
		clientIP:   s.clientIP,
		target:     target,
		localIP:    s.backend.localIP,
		backendTLS: s.backend.secureData,
		tls:        s.dataTLS,
		reuse:      s.cfg.RequireSessionReuse,
		timeouts:   s.srv.cfg.Timeouts,
		log:        s.log,
		ctx:        ctx,
		cancel:     cancel,
		start:      make(chan transferStart, 1),
		downDone:   make(chan struct{}),
		upDone:     make(chan struct{}),
		done:       make(chan struct{}),
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		dc.run()
	}()
	return dc, nil
}

// port is the proxy port the client is told to connect to.
func (dc *dataChannel) port() uint16 {
	return uint16(dc.ln.Addr().(*net.TCPAddr).Port)
}

// begin hands the channel its transfer; it may be called once.
func (dc *dataChannel) begin(t transferStart) { dc.start <- t }

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
	client, backend, t, err := dc.connect()
	if err != nil {
		dc.downErr, dc.upErr = err, err
		close(dc.downDone)
		close(dc.upDone)
		return
	}
	// Closing both sockets unblocks both copiers on abort or session end.
	stop := context.AfterFunc(dc.ctx, func() {
		client.Close()
		backend.Close()
	})
	defer stop()
	defer client.Close()
	defer backend.Close()

	copyDir := func(d direction, idle time.Duration) {
		dst, src, n, err, done := client, backend, &dc.down, &dc.downErr, dc.downDone
		if d == upload {
			dst, src, n, err, done = backend, client, &dc.up, &dc.upErr, dc.upDone
		}
		*n, *err = relayData(dst, src, idle)
		if *err != nil {
			dc.cancel()
		}
		close(done)
	}
	// Only the direction that carries the data has an idle timeout: the
	// other one is silent by nature until the transfer ends, and then its
	// sender has the idle timeout to close.
	idle := dc.timeouts.idle()
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

// connect waits for the client's connection, dials the backend's data port
// and, once the transfer has begun, secures the client side. The backend is
// dialled before the TLS handshake: backends send 150 only once their data
// connection is up, and clients (curl, ftplib) start TLS only after 150.
func (dc *dataChannel) connect() (client, backend net.Conn, t transferStart, err error) {
	client, err = dc.accept()
	if err != nil {
		return nil, nil, t, err
	}
	d := net.Dialer{
		Timeout:   dc.timeouts.backendDial(),
		LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(dc.localIP, 0)),
	}
	backend, err = d.DialContext(dc.ctx, "tcp", dc.target.String())
	if err != nil {
		client.Close()
		return nil, nil, t, fmt.Errorf("proxy: dial backend data port: %w", err)
	}
	keepAlive(backend)

	select {
	case t = <-dc.start:
	case <-dc.ctx.Done():
		client.Close()
		backend.Close()
		return nil, nil, t, dc.ctx.Err()
	}
	// Toward an FTPS backend, TLS once the backend is in its transfer: it
	// accepts the data connection only then. Its 150 follows, and only
	// then does the client start its own handshake.
	ctx, cancel := context.WithTimeout(dc.ctx, dc.timeouts.handshake())
	secured, err := dc.backendTLS(ctx, backend)
	cancel()
	if err != nil {
		client.Close()
		backend.Close()
		return nil, nil, t, err
	}
	backend = secured
	if t.protect {
		tc, err := dc.handshake(client)
		if err != nil {
			client.Close()
			backend.Close()
			return nil, nil, t, err
		}
		client = tc
	}
	return client, backend, t, nil
}

// accept takes the first connection from the client's own IP within the
// data-connect timeout. Connections from other addresses are refused and
// logged: another host must not steal a transfer by racing to the port.
func (dc *dataChannel) accept() (net.Conn, error) {
	defer dc.release()
	defer dc.ln.Close()
	stop := context.AfterFunc(dc.ctx, func() { dc.ln.Close() })
	defer stop()
	dc.ln.SetDeadline(time.Now().Add(dc.timeouts.dataConnect()))
	for {
		conn, err := dc.ln.AcceptTCP()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				dc.log.Warn().Uint16("port", dc.port()).Msg("passive port released: no data connection")
				return nil, errDataConnect
			}
			if dc.ctx.Err() != nil {
				return nil, dc.ctx.Err()
			}
			return nil, err
		}
		if from := addrOf(conn.RemoteAddr()); from != dc.clientIP {
			dc.log.Warn().Str("from", from.String()).Uint16("port", dc.port()).
				Msg("data connection from another address refused")
			conn.Close()
			continue
		}
		keepAlive(conn)
		return conn, nil
	}
}

func (dc *dataChannel) handshake(conn net.Conn) (*tls.Conn, error) {
	tc := tls.Server(conn, dc.tls)
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
