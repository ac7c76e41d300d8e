package proxy

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"time"

	"github.com/ftpsgate/ftpsgate/ftpctl"
)

// protection is the state of TLS on the control connection.
type protection uint8

const (
	unprotected protection = iota // plaintext: before AUTH TLS
	protected                     // TLS: after AUTH TLS, or from the start on the implicit listener
	cleared                       // plaintext again: TLS ended by CCC (RFC 4217 section 6)
)

func (p protection) String() string {
	switch p {
	case protected:
		return "protected"
	case cleared:
		return "cleared"
	}
	return "unprotected"
}

// errNoCloseNotify is a client that, after CCC, sent more under TLS than
// commands of a line before its close_notify.
var errNoCloseNotify = errors.New("proxy: CCC: too much data before the close_notify")

// cccGrace is how long the proxy waits, after CCC's 200, for the client to
// send its close_notify first, as lftp, Python's SSLSocket.unwrap and curl
// --ftp-ssl-ccc-mode active do at once, before it sends its own. lftp 4.9
// drops the connection when the server's close_notify reaches it together
// with the 200: it reads both in one go and takes the closure for the end
// of the connection before it has acted on the 200. curl's default
// (passive) mode waits for the server's close_notify and sends none: it
// pays the grace.
const cccGrace = time.Second

// ccc clears the control channel (RFC 4217 section 6): the proxy replies
// 200, TLS on the control connection is closed with close_notify both
// ways, and the session goes on in plaintext on the same TCP connection,
// so that NAT devices and firewalls can read and rewrite PORT and PASV.
// Data connections stay protected as PROT set them. Only a logged-in client
// may do it (its password was protected), and only with tls.allow_ccc.
func (s *session) ccc(ftpctl.Command) error {
	switch {
	case s.ctl != protected:
		// RFC 2228 section 4: CCC on an unprotected connection is 533.
		return s.reply(ftpctl.CodeProtectionDenied, "CCC needs a protected control connection.")
	case !s.cfg.AllowCCC:
		return s.reply(ftpctl.CodePolicyDenied, "CCC not allowed: the control connection stays protected.")
	}
	tc := s.conn.(*tls.Conn)
	// Commands the client sent behind CCC, protected, keep their place
	// ahead of the plaintext.
	pending, _ := s.br.Peek(s.br.Buffered())
	pending = append([]byte(nil), pending...)
	if err := s.reply(ftpctl.CodeOK, "CCC ok: the control connection continues in plaintext."); err != nil {
		return err
	}
	rest, closure, err := s.closeControlTLS(tc)
	if err != nil {
		s.log.Warn().Err(err).Msg("CCC: TLS closure failed; closing")
		return errors.Join(errClientClosed, err)
	}
	pending = append(pending, rest...)
	var plain net.Conn = s.raw
	if len(pending) > 0 {
		plain = &prefixConn{Conn: s.raw, prefix: pending}
	}
	s.conn, s.ctl = s.raw, cleared
	s.setReader(plain)
	s.log = s.log.With().Str("control", s.ctl.String()).Logger()
	s.log.Info().Str("closure", closure).Msg("control connection cleared (CCC)")
	return nil
}

// closeControlTLS runs the TLS closure that follows CCC's 200 and returns
// the bytes the client sent before its plaintext began (commands it sent
// under TLS, or the first byte of plaintext the proxy peeked at) and how
// the closure went, for the log. Either
// side may close first (RFC 8446 section 6.1), so the proxy takes the
// client's close_notify if it comes within cccGrace and answers it, else
// sends its own and takes the client's. A client that sends plaintext
// instead (curl's passive mode after the proxy's close_notify, or old
// clients at once) is taken as it is; the proxy then sends nothing more
// under TLS, which such a client would read as garbage.
func (s *session) closeControlTLS(tc *tls.Conn) ([]byte, string, error) {
	defer s.raw.SetDeadline(time.Time{})
	closed := false // the proxy's close_notify is sent
	s.raw.SetReadDeadline(time.Now().Add(cccGrace))
	first, err := s.record.peek()
	if errors.Is(err, os.ErrDeadlineExceeded) {
		s.raw.SetDeadline(time.Now().Add(s.cfg.Timeouts.handshake()))
		if err := tc.CloseWrite(); err != nil {
			return nil, "", err
		}
		closed = true
		// What comes next may be the client's close_notify, or, from a
		// client that sends none, its next command, whenever its user
		// types it: the idle timeout, not the handshake's.
		s.raw.SetDeadline(time.Now().Add(s.cfg.Timeouts.idle()))
		first, err = s.record.peek()
	}
	if err != nil {
		return nil, "", err
	}
	if !isTLSRecord(first) {
		closure := "none"
		if closed {
			closure = "server only"
		}
		plain := s.record.unread()
		return append(decryptedLeft(tc, s.raw), plain...), closure, nil
	}
	s.raw.SetDeadline(time.Now().Add(s.cfg.Timeouts.handshake()))
	// recordConn keeps crypto/tls from reading past the close_notify into
	// the plaintext behind it.
	rest, err := readToCloseNotify(tc, s.cfg.MaxLine)
	if err != nil {
		return nil, "", err
	}
	if closed {
		return rest, "server first", nil
	}
	if err := tc.CloseWrite(); err != nil {
		return nil, "", err
	}
	return rest, "client first", nil
}

// decryptedLeft returns what crypto/tls has decrypted of the client's last
// record and not yet handed out: commands sent under TLS behind CCC beyond
// what the command reader had buffered. A read deadline in the past keeps
// tc from reading the socket for more (where plaintext waits); the timeout
// is a temporary error, which crypto/tls neither latches nor answers with
// an alert. Call it between records.
func decryptedLeft(tc *tls.Conn, raw net.Conn) []byte {
	raw.SetReadDeadline(time.Now().Add(-time.Second))
	defer raw.SetReadDeadline(time.Time{})
	var left []byte
	buf := make([]byte, 512)
	for {
		n, err := tc.Read(buf)
		left = append(left, buf[:n]...)
		if err != nil || n == 0 {
			return left
		}
	}
}

// isTLSRecord reports whether b can start a TLS record (change_cipher_spec,
// alert, handshake, application_data: RFC 8446 section 5.1); no FTP command
// starts with these control characters.
func isTLSRecord(b byte) bool { return b >= 20 && b <= 23 }

// readToCloseNotify reads tc up to the peer's close_notify and returns what
// came before it: at most maxLine bytes of commands sent behind CCC.
func readToCloseNotify(tc *tls.Conn, maxLine int) ([]byte, error) {
	if maxLine <= 0 {
		maxLine = ftpctl.DefaultMaxLine
	}
	var got []byte
	buf := make([]byte, 512)
	for {
		n, err := tc.Read(buf)
		got = append(got, buf[:n]...)
		if len(got) > maxLine {
			return nil, errNoCloseNotify
		}
		if errors.Is(err, io.EOF) {
			return got, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// recordConn is the client's connection under the control TLS. It never
// hands crypto/tls a byte past the end of the TLS record being read, which
// crypto/tls would otherwise read ahead to spare system calls: after CCC
// the plaintext that follows the client's close_notify must stay in the
// socket for the plaintext reader. The control connection carries few
// records, so the extra reads cost nothing that matters. It is read by one
// goroutine at a time.
type recordConn struct {
	net.Conn
	header [5]byte // the header of the next record (type, version, length)
	got    int     // bytes of header read from the connection
	given  int     // bytes of header handed to the reader
	body   int     // bytes of the current record's body not yet read
	alert  [2]byte // the body of the last record, if a plaintext alert
}

func (c *recordConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.given < c.got { // peeked at
		n := copy(p, c.header[c.given:c.got])
		c.given += n
		c.headerDone()
		return n, nil
	}
	if c.body > 0 {
		n, err := c.Conn.Read(p[:min(len(p), c.body)])
		if c.plainAlertRecord() {
			copy(c.alert[2-c.body:], p[:n])
		}
		c.body -= n
		return n, err
	}
	n, err := c.Conn.Read(p[:min(len(p), len(c.header)-c.got)])
	copy(c.header[c.got:], p[:n])
	c.got += n
	c.given += n
	c.headerDone()
	return n, err
}

// headerDone moves on to the record's body once its whole header has been
// handed over.
func (c *recordConn) headerDone() {
	if c.given == len(c.header) {
		c.got, c.given, c.body = 0, 0, int(binary.BigEndian.Uint16(c.header[3:]))
	}
}

// plainAlertRecord reports whether the current (or last) record is an
// unencrypted alert: type alert, two bytes (level, description).
// Encrypted, an alert is longer, and under TLS 1.3 of type application_data.
func (c *recordConn) plainAlertRecord() bool {
	return c.header[0] == 21 && binary.BigEndian.Uint16(c.header[3:]) == 2
}

// lastAlert returns the description of a plaintext alert that was the last
// record read whole. OpenSSL and GnuTLS clients that refuse our certificate
// under TLS 1.3 send their alert unencrypted, which crypto/tls, expecting
// the client's handshake keys, reports as "bad record MAC" without it.
func (c *recordConn) lastAlert() (tls.AlertError, bool) {
	if c.got != 0 || c.body != 0 || !c.plainAlertRecord() {
		return 0, false
	}
	return tls.AlertError(c.alert[1]), true
}

// peek returns the first byte of the next record, reading it if need be;
// Read still returns it. Call it between records only.
func (c *recordConn) peek() (byte, error) {
	if c.body > 0 || c.given > 0 {
		return 0, errors.New("proxy: peek inside a TLS record")
	}
	for c.got == 0 {
		n, err := c.Conn.Read(c.header[:1])
		c.got += n
		if n == 0 && err != nil {
			return 0, err
		}
	}
	return c.header[0], nil
}

// unread returns the bytes peeked at and not handed to the reader.
func (c *recordConn) unread() []byte {
	return append([]byte(nil), c.header[c.given:c.got]...)
}
