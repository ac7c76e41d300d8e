package ftptest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/ftpsgate/ftpsgate/ftpctl"
)

// DefaultDataTimeout is how long a transfer waits for its data connection
// when Server.DataTimeout is zero.
const DefaultDataTimeout = 10 * time.Second

// Server is an in-memory plain FTP server on a loopback port.
//
// Set the fields before Start; they must not change while the server runs.
// The FS may be changed at any time.
//
// Its policy is that of a strictly configured vsftpd: only USER, PASS, QUIT,
// FEAT, SYST, NOOP, HELP and OPTS work before login (others get 530, unknown
// verbs 502); a passive data connection from another IP than the control
// connection is closed and the wait goes on; PORT and EPRT toward another IP
// than the client's, or a port below 1024, get 500; a PASV, EPSV, PORT or
// EPRT serves one transfer command, even one that fails; REST applies to the
// next transfer command; RNTO must directly follow RNFR. Data always moves
// as bytes, whatever TYPE says. While a transfer runs only ABOR is acted on
// at once; other commands wait for its final reply.
type Server struct {
	// Greeting holds the lines of the 220 greeting; more than one makes it
	// multi-line. Nil means {"ftptest ready"}.
	Greeting []string

	// Users maps user names to passwords. Nil means the single user "test"
	// with the password "test".
	Users map[string]string

	// PASVAddress is the address written into 227 replies. The zero value
	// means the local address of the control connection. A proxy must ignore
	// it and dial the control connection's IP; tests set an unreachable
	// address such as 10.255.255.1 to prove it does.
	PASVAddress netip.Addr

	// DisableEPSV makes EPSV answer 502 and leaves it out of FEAT, like a
	// backend that only knows PASV.
	DisableEPSV bool

	// DisablePassive makes PASV and EPSV answer 502 and leaves both out of
	// FEAT, like a backend whose passive ports a firewall closes: only
	// active mode (PORT, EPRT) works.
	DisablePassive bool

	// DisableActive makes PORT and EPRT answer 502 and leaves EPRT out of
	// FEAT, like vsftpd with port_enable=NO: only passive mode works.
	DisableActive bool

	// ReplyBeforeData sends a transfer's 150 reply before its data connection
	// is open, as IIS does. The default, like vsftpd and ProFTPD, opens (or
	// accepts) the data connection first and then replies 150, so a proxy
	// that waits for 150 before connecting hangs against it.
	ReplyBeforeData bool

	// DiscardUploads makes STOR, APPE and STOU read the data and drop it,
	// leaving an empty file: for benchmarks and load tests that move more
	// than memory should hold, and that would otherwise measure this
	// server growing buffers.
	DiscardUploads bool

	// PassivePortMin and PassivePortMax, when both are set, are the range
	// passive listeners take their ports from, as vsftpd's pasv_min_port
	// and pasv_max_port. Zero: an ephemeral port, which the kernel finds
	// slowly (a millisecond and more per PASV) once thousands of recent
	// connections crowd the ephemeral range, as in benchmarks.
	PassivePortMin, PassivePortMax uint16

	// FS holds the files. NewServer and NewUnstartedServer make an empty one;
	// Start makes one if it is nil.
	FS *FS

	// DataTimeout is how long a transfer waits for its data connection (an
	// accepted passive connection, or the dial of an active one) before it
	// fails with 425. Zero means DefaultDataTimeout.
	DataTimeout time.Duration

	// MaxLine bounds a command line; a longer one gets 500. Zero means
	// ftpctl.DefaultMaxLine.
	MaxLine int

	// RequireProxyV2 makes every control connection open with a PROXY
	// protocol v2 header, as ProFTPD's mod_proxy_protocol wants it: one
	// without a valid header is closed before the greeting. ProxyHeaders
	// returns the headers received. The passive data check still compares
	// the data connection with the control connection's socket, not with
	// the header's source.
	RequireProxyV2 bool

	mu       sync.Mutex
	ln       net.Listener          // guarded by mu; nil before Start
	closed   bool                  // guarded by mu
	sessions map[*session]struct{} // guarded by mu: the open control sessions
	commands []string              // guarded by mu: every command line received
	refused  int                   // guarded by mu: passive data connections refused
	headers  []ProxyHeader         // guarded by mu: PROXY headers received
	xfers    []Transfer            // guarded by mu: every ended transfer
	nextPort uint16                // guarded by mu: where the next passive port search starts
	wg       sync.WaitGroup        // the accept loop and every session
}

// NewServer returns a running Server listening on 127.0.0.1 at an ephemeral
// port. The caller must Close it.
func NewServer() *Server {
	s := NewUnstartedServer()
	s.Start()
	return s
}

// NewUnstartedServer returns a Server that is not yet listening: set its
// fields, then call Start or StartOn.
func NewUnstartedServer() *Server {
	return &Server{FS: NewFS()}
}

// Start starts the server on 127.0.0.1 at an ephemeral port. It panics on
// failure, like httptest.Server.Start.
func (s *Server) Start() {
	if err := s.StartOn("127.0.0.1:0"); err != nil {
		panic(err)
	}
}

// StartOn starts the server listening on addr ("host:port"), as `ftpsgate
// demo` does on a fixed port.
func (s *Server) StartOn(addr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil || s.closed {
		return errors.New("ftptest: server already started or closed")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("ftptest: %w", err)
	}
	if s.FS == nil {
		s.FS = NewFS()
	}
	s.ln = ln
	s.sessions = make(map[*session]struct{})
	s.wg.Add(1)
	go s.serve(ln)
	return nil
}

// Addr returns the host:port of the control listener, or "" before Start.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// AddrPort returns the address of the control listener; the zero value
// before Start.
func (s *Server) AddrPort() netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return netip.AddrPort{}
	}
	return s.ln.Addr().(*net.TCPAddr).AddrPort()
}

// Close stops the listener, closes every session with its data connections,
// and waits until all of the server's goroutines have returned. It may be
// called more than once.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	ln := s.ln
	sessions := s.sessionList()
	s.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	for _, c := range sessions {
		c.kill()
	}
	s.wg.Wait()
}

// CloseClientConnections drops every control connection now, aborting any
// transfer in progress, and returns when those sessions have ended. The
// server keeps accepting new ones. Tests use it for "the backend drops the
// control connection".
func (s *Server) CloseClientConnections() {
	s.mu.Lock()
	sessions := s.sessionList()
	s.mu.Unlock()
	for _, c := range sessions {
		c.kill()
	}
	for _, c := range sessions {
		<-c.done
	}
}

// Commands returns every command line received, across sessions, in the
// order received and as received: without the line ending but otherwise raw,
// Telnet bytes and PASS arguments included. Overlong lines are not recorded.
func (s *Server) Commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.commands...)
}

// Transfer is one ended data transfer, as the server saw it.
type Transfer struct {
	Verb string      // RETR, STOR, APPE, STOU, LIST, NLST, MLSD
	Arg  string      // the command's argument
	Code ftpctl.Code // the final reply: 226 only when the data ended cleanly
}

// Transfers returns every transfer that has sent its final reply, across
// sessions, in the order they ended. A test tells an aborted upload (426:
// the data connection failed or was reset) from one taken as complete (226:
// it ended with a clean close), which the stored file alone cannot: an
// aborted upload still stores what arrived, as vsftpd does.
func (s *Server) Transfers() []Transfer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Transfer(nil), s.xfers...)
}

func (s *Server) recordTransfer(x Transfer) {
	s.mu.Lock()
	s.xfers = append(s.xfers, x)
	s.mu.Unlock()
}

// ActiveSessions returns the number of control sessions currently open. A
// session counts until its connection and all its data connections are
// closed.
func (s *Server) ActiveSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// RefusedDataConns returns how many passive data connections were refused
// because they came from another IP than their control connection.
func (s *Server) RefusedDataConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused
}

// ProxyHeaders returns the PROXY headers received with RequireProxyV2, in
// the order the connections arrived.
func (s *Server) ProxyHeaders() []ProxyHeader {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ProxyHeader(nil), s.headers...)
}

func (s *Server) recordHeader(h ProxyHeader) {
	s.mu.Lock()
	s.headers = append(s.headers, h)
	s.mu.Unlock()
}

// sessionList returns the open sessions; s.mu must be held.
func (s *Server) sessionList() []*session {
	list := make([]*session, 0, len(s.sessions))
	for c := range s.sessions {
		list = append(list, c)
	}
	return list
}

// serve accepts control connections until ln is closed.
func (s *Server) serve(ln net.Listener) {
	defer s.wg.Done()
	var delay time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Like net/http: back off on errors such as EMFILE.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			time.Sleep(delay)
			continue
		}
		delay = 0
		oobInline(conn)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			conn.Close()
			return
		}
		c := newSession(s, conn)
		s.sessions[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			c.serve()
			s.mu.Lock()
			delete(s.sessions, c)
			s.mu.Unlock()
			close(c.done)
		}()
	}
}

func (s *Server) record(line string) {
	s.mu.Lock()
	s.commands = append(s.commands, line)
	s.mu.Unlock()
}

func (s *Server) countRefused() {
	s.mu.Lock()
	s.refused++
	s.mu.Unlock()
}

func (s *Server) greeting() []string {
	if len(s.Greeting) == 0 {
		return []string{"ftptest ready"}
	}
	return s.Greeting
}

// checkPassword reports whether user may log in with pass.
func (s *Server) checkPassword(user, pass string) bool {
	users := s.Users
	if users == nil {
		users = map[string]string{"test": "test"}
	}
	want, ok := users[user]
	return ok && want == pass
}

func (s *Server) dataTimeout() time.Duration {
	if s.DataTimeout <= 0 {
		return DefaultDataTimeout
	}
	return s.DataTimeout
}
