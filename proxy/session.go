package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/ftpsgate/ftpsgate/ftpctl"
)

// Reasons a session ends; each maps to the reason in the session-end record.
var (
	errQuit          = errors.New("quit")
	errClientClosed  = errors.New("client closed")
	errIdle          = errors.New("idle timeout")
	errBackendLost   = errors.New("backend closed")
	errNoBackend     = errors.New("no backend")
	errHandshake     = errors.New("tls handshake failed")
	errTLSOnExplicit = errors.New("tls on explicit port")
	errInjection     = errors.New("plaintext pipelined behind auth")
	errShutdown      = errors.New("shutdown")
	errLoginTimeout  = errors.New("login timeout")
	errLoginFailures = errors.New("too many failed logins")
	errLineTooLong   = errors.New("command line too long")
	// errProxyHeader (proxyproto.go) is one more.

	// errDraining ends the read of a command when Shutdown has begun: the
	// session answers 421 and ends with errShutdown.
	errDraining = errors.New("draining")
)

// session is one client's control connection and everything hanging off it.
type session struct {
	srv  *Server
	gen  *generation // the configuration the session began with
	cfg  *Config     // gen's
	id   string
	kind listenerKind
	log  zerolog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // read-ahead and data channels

	raw      net.Conn    // the client's TCP connection
	conn     net.Conn    // raw, or the TLS connection on top of it
	ctl      protection  // TLS on the control connection: conn is TLS while protected
	record   *recordConn // under conn's TLS, for CCC
	br       *bufio.Reader
	cr       *ftpctl.Reader
	clientIP netip.Addr
	addr     netip.Prefix       // clientIP as the per-address limits count it
	localIP  netip.Addr         // the proxy's own address on the client's socket
	ahead    chan commandResult // a command being read ahead during a transfer

	// The client's and the proxy's addresses, with ports. With a balancer
	// in front (proxied), peer is the balancer, clientAddr and clientIP
	// the client its PROXY header names, and reached the address the
	// client reached, per the header; localIP and localAddr stay the
	// socket's.
	clientAddr netip.AddrPort
	localAddr  netip.AddrPort
	peer       netip.AddrPort
	reached    netip.AddrPort
	proxied    bool

	phase phase  // changed by setPhase only (login.go)
	prot  byte   // 'C' or 'P', RFC 4217 section 9
	user  string // the name the backend accepted with its 230; "" before
	tried string // the name of the login under way, before its 230
	// loginPlace: the session holds one of its address's login places
	// (Limits.MaxLoginsPerIP), from its greeting to its login.
	loginPlace bool
	host       string  // HOST argument, replayed to the backend (RFC 7151)
	utf8       bool    // OPTS UTF8 ON received before the backend was dialled
	epsvAll    bool    // EPSV ALL: PASV is refused (RFC 2428 section 4)
	sni        string  // TLS server name the client asked for
	pool       *pool   // the route chosen for the login
	member     *member // the backend's place in its pool
	backend    *backendConn
	// stopBackend undoes the backend connection's close on the session's
	// end, for dropBackend.
	stopBackend func() bool
	unroutedLog zerolog.Logger // log before the backend's fields were added
	data        *dataChannel   // passive channel waiting for its transfer

	controlTLS *tls.Config // the control handshake's configuration
	dataTLS    *tls.Config // the data handshakes'

	failedLogins int
	sessionRate  *rateLimiter // nil: no session_rate, or no transfer yet
	userRate     *rateLimiter // nil: no user_rate, or no transfer yet
	releaseRate  func()       // gives userRate back

	started   time.Time
	bytesDown int64
	bytesUp   int64
	transfers int

	tlsVersion, cipher uint16 // the control connection's TLS; 0 without
	resumed            bool

	viewMu sync.Mutex
	view   sessionView // what Status sees; guarded by viewMu

	drainMu  sync.Mutex
	draining bool // Shutdown has begun; guarded by drainMu
	waiting  bool // blocked reading the next command; guarded by drainMu
	// stopWaiting ends the wait for a login place; guarded by drainMu,
	// set while the session waits.
	stopWaiting context.CancelFunc
}

type commandResult struct {
	cmd ftpctl.Command
	err error
}

func newSession(srv *Server, conn net.Conn, kind listenerKind) *session {
	keepAlive(conn)
	oobInline(conn)
	gen := srv.current()
	s := &session{
		srv:      srv,
		gen:      gen,
		cfg:      &gen.cfg,
		id:       newID(),
		kind:     kind,
		raw:      conn,
		conn:     conn,
		clientIP: addrOf(conn.RemoteAddr()),
		localIP:  addrOf(conn.LocalAddr()),
		prot:     'C',
		started:  time.Now(),
	}
	s.clientAddr = netip.AddrPortFrom(s.clientIP, portOf(conn.RemoteAddr()))
	s.localAddr = netip.AddrPortFrom(s.localIP, portOf(conn.LocalAddr()))
	s.peer = s.clientAddr
	s.controlTLS, s.dataTLS = gen.cfg.sessionTLS(s.id, gen.openData)
	s.log = s.baseLogger()
	s.setReader(conn)
	return s
}

// controlBufSize is the read buffer of a control connection, each way.
// Command lines and replies are short; ftpctl.Reader assembles a longer
// line from several reads, up to the line limit. An idle session keeps
// this buffer for its whole life: small means thousands more sessions.
const controlBufSize = 512

// baseLogger is the session's logger before login: "via" names the
// balancer that carried a proxied session.
func (s *session) baseLogger() zerolog.Logger {
	c := s.cfg.Logger.With().Str("session", s.id).Stringer("client", s.clientAddr)
	if s.proxied {
		c = c.Stringer("via", s.peer)
	}
	return c.Str("listener", s.kind.String()).Logger()
}

// portOf returns the port of a TCP address, 0 for any other.
func portOf(a net.Addr) uint16 {
	if ta, ok := a.(*net.TCPAddr); ok {
		return uint16(ta.Port)
	}
	return 0
}

func (s *session) setReader(c net.Conn) {
	s.br = bufio.NewReaderSize(c, controlBufSize)
	s.cr = ftpctl.NewReader(s.br, s.cfg.MaxLine)
}

// serve runs the session to its end and logs how it ended.
func (s *session) serve(ctx context.Context) {
	s.ctx, s.cancel = context.WithCancel(ctx)
	stop := context.AfterFunc(s.ctx, func() { s.raw.Close() })
	if s.proxyHeader() != nil {
		// Not a session: the client it would speak for is unknown.
		stop()
		s.cancel()
		s.raw.Close()
		return
	}
	// After the PROXY header: per-address limits count real clients.
	s.addr = s.cfg.Limits.clientKey(s.clientIP)
	if limit := s.srv.admission.admit(s.cfg.Limits, s.addr); limit != "" {
		s.refuse(limit)
		stop()
		s.cancel()
		s.conn.Close()
		s.raw.Close()
		return
	}
	defer func() { s.srv.admission.leave(s.addr, s.loginPlace) }()
	s.log.Info().Msg("session start")
	s.cfg.Metrics.sessionStart(s.kind)

	err := s.awaitLoginPlace()
	if err == nil {
		err = s.run()
	}
	if ctx.Err() != nil && !errors.Is(err, errQuit) {
		err = errShutdown
	}

	stop()
	s.cancel()
	if s.data != nil {
		s.data.abort()
	}
	if s.backend != nil {
		s.backend.conn.Close()
		s.member.active.Add(-1)
	}
	if s.releaseRate != nil {
		s.releaseRate()
	}
	if errors.Is(err, errLineTooLong) {
		s.lingerClose()
	}
	s.conn.Close()
	s.raw.Close()
	s.wg.Wait()

	ev := s.log.Info()
	if !isNormalEnd(err) {
		ev = s.log.Warn().Err(err)
	}
	ev.Str("reason", endReason(err)).Dur("duration", time.Since(s.started)).
		Int64("bytes_down", s.bytesDown).Int64("bytes_up", s.bytesUp).
		Int("transfers", s.transfers).Msg("session end")
	s.cfg.Metrics.sessionEnd(s.kind, endReason(err))
}

func isNormalEnd(err error) bool {
	return errors.Is(err, errQuit) || errors.Is(err, errClientClosed) || errors.Is(err, errShutdown)
}

func endReason(err error) string {
	for _, e := range []error{errQuit, errClientClosed, errIdle, errBackendLost, errNoBackend,
		errHandshake, errTLSOnExplicit, errInjection, errShutdown, errLoginTimeout, errLoginFailures,
		errLineTooLong, errProxyHeader} {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	return "error"
}

// awaitLoginPlace takes one of the client address's login places
// (Limits.MaxLoginsPerIP) before the session greets, waiting for one if
// need be, at most until the login timeout.
func (s *session) awaitLoginPlace() error {
	// Shutdown ends the wait at once (drain), as it does a wait for a
	// command.
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	s.drainMu.Lock()
	draining := s.draining
	s.stopWaiting = cancel
	s.drainMu.Unlock()
	err := errDraining
	if !draining {
		err = s.srv.admission.await(ctx, s.cfg.Limits, s.addr, loginPlace, s.loginDeadline(), func() {
			s.log.Warn().Str("limit", limitLoginsPerIP).Int(limitLoginsPerIP, s.cfg.Limits.maxLoginsPerIP()).
				Msg("session waits for a login place")
			s.cfg.Metrics.limitHit(limitLoginsPerIP)
		})
	}
	s.drainMu.Lock()
	s.stopWaiting = nil
	if s.draining && err != nil {
		err = errDraining
	}
	s.drainMu.Unlock()
	switch {
	case errors.Is(err, errDraining):
		if s.kind == explicitTLS {
			s.reply(ftpctl.CodeNotAvailable, "Service shutting down.")
		}
		return errShutdown
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.log.Warn().Str("limit", limitLoginTimeout).Dur("timeout", s.cfg.Timeouts.login()).
			Msg("login timeout: no login place came free")
		s.cfg.Metrics.limitHit(limitLoginTimeout)
		if s.kind == explicitTLS {
			s.reply(ftpctl.CodeNotAvailable, "Too many logins from your address, try again later.")
		}
		return errLoginTimeout
	case err != nil:
		return errShutdown
	}
	s.loginPlace = true
	return nil
}

// lingerBytes and lingerTime bound what lingerClose discards.
const (
	lingerBytes = 64 << 10
	lingerTime  = time.Second
)

// lingerClose ends the client's side of a session whose last replies
// answer input it did not read (an overlong line): closed at once, with
// that input unread, the socket would be reset, and the reset can reach
// the client before the replies it should read. So the replies are
// followed by an end of stream, and what the client still sends is
// discarded, unread as commands, for at most lingerTime and lingerBytes.
func (s *session) lingerClose() {
	if tc, ok := s.conn.(*tls.Conn); ok {
		tc.SetWriteDeadline(time.Now().Add(lingerTime))
		tc.CloseWrite() // close_notify
	}
	tcp, ok := s.raw.(*net.TCPConn)
	if !ok {
		return
	}
	tcp.CloseWrite()
	tcp.SetReadDeadline(time.Now().Add(lingerTime))
	io.CopyN(io.Discard, tcp, lingerBytes)
}

// routedName is the user name that routes and user_hash choose by: the
// accepted one, or that of the login under way.
func (s *session) routedName() string {
	if s.phase == phaseLoggedIn {
		return s.user
	}
	return s.tried
}

// refuse answers a client past a session limit with 421, over TLS on the
// implicit listener where plaintext would be noise to the client.
func (s *session) refuse(limit string) {
	s.log.Warn().Str("limit", limit).Msg("session refused")
	s.cfg.Metrics.limitHit(limit)
	if s.kind == implicitTLS && s.startTLS(nil) != nil {
		return
	}
	text := "Too many connections, try again later."
	if limit == limitSessionsPerIP {
		text = "Too many connections from your address, try again later."
	}
	s.reply(ftpctl.CodeNotAvailable, text)
}

// limiters returns the rate limits a transfer of this session passes
// through, creating the session's and the user's on first use.
func (s *session) limiters() []*rateLimiter {
	l := s.cfg.Limits
	if l.SessionRate > 0 && s.sessionRate == nil {
		s.sessionRate = newRateLimiter(l.SessionRate)
	}
	if l.UserRate > 0 && s.userRate == nil {
		s.userRate, s.releaseRate = s.srv.userRates.acquire(s.user, l.UserRate)
	}
	return []*rateLimiter{s.sessionRate, s.userRate, s.srv.globalRate.Load()}
}

// run is the session, top to bottom: greet (TLS first on the implicit
// listener), then one command at a time until QUIT or an end.
func (s *session) run() error {
	if s.kind == implicitTLS {
		// A balancer's PROXY header may have arrived with the ClientHello.
		pending, _ := s.br.Peek(s.br.Buffered())
		if err := s.startTLS(bytes.Clone(pending)); err != nil {
			return err
		}
	}
	if err := s.reply(ftpctl.CodeReady, s.cfg.banner()); err != nil {
		return errClientClosed
	}
	s.publish()
	for {
		cmd, err := s.readCommand()
		if err != nil {
			if err = s.badInput(err); err != nil {
				return err
			}
			continue
		}
		s.log.Debug().Str("command", cmd.Redacted()).Msg("command") // PASS and ACCT hidden
		if strings.ContainsAny(cmd.Arg, "\r\x00") {
			// A backend that ends lines at a bare CR would run what follows
			// it as a command the policy never saw; C servers cut at a NUL.
			s.log.Warn().Str("verb", cmd.Verb).Msg("command refused: CR or NUL in its argument")
			if err := s.reply(ftpctl.CodeArgSyntaxError, "CR and NUL are not allowed in arguments."); err != nil {
				return err
			}
			continue
		}
		if err := s.dispatch(cmd); err != nil {
			return err
		}
		s.publish() // user, backend, phase, TLS: for Status
	}
}

// readCommand returns the next command: the one read ahead during a
// transfer, if any, else a fresh one. No command within the idle timeout
// ends the read with os.ErrDeadlineExceeded.
//
// Once Shutdown has begun it returns errDraining instead: at once, or by
// cutting short the wait for a command (see drain). A command read ahead
// during a transfer is dropped then; the client learns of it from the 421.
func (s *session) readCommand() (ftpctl.Command, error) {
	s.drainMu.Lock()
	if s.draining {
		s.drainMu.Unlock()
		return ftpctl.Command{}, errDraining
	}
	// Under drainMu, so that drain's deadline is never overwritten by ours.
	deadline := time.Now().Add(s.cfg.Timeouts.idle())
	if login := s.loginDeadline(); s.phase != phaseLoggedIn && login.Before(deadline) {
		deadline = login
	}
	s.conn.SetReadDeadline(deadline)
	s.waiting = true
	s.drainMu.Unlock()

	cmd, err := s.nextCommand()

	s.drainMu.Lock()
	s.waiting = false
	draining := s.draining
	s.drainMu.Unlock()
	if draining {
		return ftpctl.Command{}, errDraining
	}
	return cmd, err
}

// loginDeadline is when a session that has not logged in is closed.
func (s *session) loginDeadline() time.Time { return s.started.Add(s.cfg.Timeouts.login()) }

// drain tells the session that Shutdown has begun. A session waiting for a
// command is woken now by a read deadline in the past; one in the middle of
// a command, a transfer included, sees it when the command is done. It
// reports whether the session was waiting.
func (s *session) drain() (idle bool) {
	s.drainMu.Lock()
	defer s.drainMu.Unlock()
	if !s.draining {
		s.draining = true
		if s.waiting {
			// raw, not conn: conn changes under TLS and CCC; the deadline
			// is the socket's either way.
			s.raw.SetReadDeadline(time.Now())
		}
		if s.stopWaiting != nil {
			s.stopWaiting()
		}
	}
	return s.waiting || s.stopWaiting != nil
}

func (s *session) nextCommand() (ftpctl.Command, error) {
	if s.ahead != nil {
		r := <-s.ahead
		s.ahead = nil
		return r.cmd, r.err
	}
	if s.ctl == unprotected {
		// A TLS ClientHello (record type 22) instead of a command is a client
		// set up for implicit FTPS on the explicit port; our 220 has already
		// broken its handshake, so say why in the log rather than answer noise.
		if b, err := s.br.Peek(1); err == nil && b[0] == 0x16 {
			return ftpctl.Command{}, errTLSOnExplicit
		}
		if b, _ := s.br.Peek(s.br.Buffered()); isProxyHeader(b) {
			return ftpctl.Command{}, errProxyHeader
		}
	}
	return s.cr.ReadCommand()
}

// readAhead starts reading the next command in the background, so that
// ABOR can cut into a transfer. The result is taken by the transfer or by
// the next readCommand.
func (s *session) readAhead() <-chan commandResult {
	if s.ahead == nil {
		ch := make(chan commandResult, 1)
		s.ahead = ch
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			cmd, err := s.cr.ReadCommand()
			ch <- commandResult{cmd, err}
		}()
	}
	return s.ahead
}

// badInput answers a read that produced no command, or returns the reason
// the session ends.
func (s *session) badInput(err error) error {
	var pe *ftpctl.ProtocolError
	switch {
	case errors.Is(err, ftpctl.ErrLineTooLong):
		// Answered as soon as the line passes the limit, whether or not
		// its end ever comes. The rest of it is left unread, and would be
		// taken for commands if the session went on: it ends instead.
		s.log.Warn().Str("limit", limitLineLength).Int(limitLineLength, s.cr.Limit()).
			Msg("command line too long: closing")
		s.cfg.Metrics.limitHit(limitLineLength)
		if s.reply(ftpctl.CodeSyntaxError, "Command line too long.") == nil {
			s.reply(ftpctl.CodeNotAvailable, "Closing control connection: the rest of that line cannot be told from commands.")
		}
		return errLineTooLong
	case errors.As(err, &pe):
		// What is wrong, never the line: a malformed " PASS secret" or
		// "PASS\tsecret" carries a password all the same.
		s.log.Debug().Str("reason", pe.Msg).Int("bytes", len(pe.Line)).Msg("malformed command")
		return s.reply(ftpctl.CodeSyntaxError, "Syntax error, command unrecognized.")
	case errors.Is(err, errDraining):
		s.reply(ftpctl.CodeNotAvailable, "Service shutting down.")
		return errShutdown
	case errors.Is(err, errProxyHeader):
		s.refuseUntrustedHeader()
		return err
	case errors.Is(err, errTLSOnExplicit):
		s.log.Warn().Msg("tls handshake on the explicit port: the client is set up for implicit FTPS; closing")
		return err
	case errors.Is(err, os.ErrDeadlineExceeded) && s.phase != phaseLoggedIn && !time.Now().Before(s.loginDeadline()):
		s.log.Warn().Str("limit", limitLoginTimeout).Dur("timeout", s.cfg.Timeouts.login()).Msg("login timeout")
		s.cfg.Metrics.limitHit(limitLoginTimeout)
		s.reply(ftpctl.CodeNotAvailable, "Login timeout, closing control connection.")
		return errLoginTimeout
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.reply(ftpctl.CodeNotAvailable, "Idle timeout, closing control connection.")
		return errIdle
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return errClientClosed
	}
	return errors.Join(errClientClosed, err)
}

// reply writes one reply to the client.
func (s *session) reply(code ftpctl.Code, text string) error {
	return s.send(ftpctl.NewReply(code, text))
}

func (s *session) send(r ftpctl.Reply) error {
	s.conn.SetWriteDeadline(time.Now().Add(s.cfg.Timeouts.idle()))
	if _, err := r.WriteTo(s.conn); err != nil {
		return errors.Join(errClientClosed, err)
	}
	return nil
}

// startTLS runs the server handshake on the client connection. pending holds
// bytes the client sent behind AUTH that belong to the handshake.
func (s *session) startTLS(pending []byte) error {
	var c net.Conn = s.raw
	if len(pending) > 0 {
		c = &prefixConn{Conn: s.raw, prefix: pending}
	}
	s.record = &recordConn{Conn: c}
	tc := tls.Server(s.record, s.controlTLS)
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Timeouts.handshake())
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		var rh tls.RecordHeaderError
		if errors.As(err, &rh) && isProxyHeader(rh.RecordHeader[:]) {
			s.refuseUntrustedHeader()
			return errProxyHeader
		}
		ev := s.log.Warn().Err(err)
		if a := s.handshakeAlert(err); a != "" {
			ev = ev.Str("alert", a)
		}
		ev.Msg("tls handshake failed")
		s.cfg.Metrics.handshake(false, false)
		return errors.Join(errHandshake, err)
	}
	st := tc.ConnectionState()
	s.conn, s.ctl, s.sni = tc, protected, st.ServerName
	s.tlsVersion, s.cipher, s.resumed = st.Version, st.CipherSuite, st.DidResume
	s.setReader(tc)
	s.log = s.log.With().Str("sni", st.ServerName).Str("tls_version", tls.VersionName(st.Version)).
		Str("cipher", tls.CipherSuiteName(st.CipherSuite)).Bool("resumed", st.DidResume).Logger()
	s.log.Info().Msg("tls established")
	s.cfg.Metrics.handshake(true, st.DidResume)
	return nil
}

// prefixConn replays bytes already read from a connection before reading
// more: a ClientHello that arrived in the same packet as AUTH TLS.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(b, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}
