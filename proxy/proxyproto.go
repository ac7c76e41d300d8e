package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/pires/go-proxyproto"
)

// The PROXY protocol (haproxy's proxy-protocol.txt) in both directions:
// accepted from the L4 balancers of Config.TrustedProxies in front of the
// listeners (and with DataProxyProtocol in front of the passive data ports),
// and sent to the backends whose Backend.ProxyProtocol asks for it.

// ProxyVersion is the PROXY protocol version a backend is sent.
type ProxyVersion uint8

const (
	ProxyOff ProxyVersion = iota // no header
	ProxyV1                      // the text header, "PROXY TCP4 ...\r\n"
	ProxyV2                      // the binary header, with the session id in a TLV
)

// SessionIDTLV is the PROXY v2 TLV type that carries the session id (the
// "session" field of the proxy's logs, ASCII) to a backend, so that its
// logs can be joined with ours. It is in the range the specification
// leaves to applications (PP2_TYPE_MIN_CUSTOM 0xE0 to 0xEF, section 2.2.7),
// apart from the types the big clouds' balancers use (0xE0 Google, 0xEA
// AWS, 0xEE Azure).
const SessionIDTLV = 0xE5

// ParseProxyVersion parses "v1", "v2", or "" and "off" for none.
func ParseProxyVersion(s string) (ProxyVersion, error) {
	switch s {
	case "", "off":
		return ProxyOff, nil
	case "v1":
		return ProxyV1, nil
	case "v2":
		return ProxyV2, nil
	}
	return 0, fmt.Errorf("proxy: PROXY protocol version %q: want v1, v2 or off", s)
}

func (v ProxyVersion) String() string {
	switch v {
	case ProxyV1:
		return "v1"
	case ProxyV2:
		return "v2"
	}
	return "off"
}

// errProxyHeader ends a session whose PROXY header was refused: missing or
// malformed from a trusted proxy, or present from anyone else.
var errProxyHeader = errors.New("proxy header refused")

// TrustedProxy reports whether ip is one of the balancers whose PROXY
// headers are believed: a connection from it must start with one.
func (c *Config) TrustedProxy(ip netip.Addr) bool {
	for _, p := range c.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// isProxyHeader reports whether b, the first bytes a peer sent, start a
// PROXY header of either version. No FTP command starts like one (the v2
// signature even ends in "QUIT\n", so that a server reading it as commands
// hangs up), nor does a TLS record.
func isProxyHeader(b []byte) bool {
	return bytes.HasPrefix(b, proxyproto.SIGV1) ||
		len(b) >= 5 && bytes.HasPrefix(proxyproto.SIGV2, b[:min(len(b), len(proxyproto.SIGV2))])
}

// readProxyHeader reads the header a trusted balancer sends before anything
// else on a connection, from br over conn, within timeout. It returns the
// client's address and the address the client reached; both are zero for
// the LOCAL command (the balancer's own health check) and for v1's
// "UNKNOWN", where the connection's own addresses stand.
func readProxyHeader(conn net.Conn, br *bufio.Reader, timeout time.Duration) (client, reached netip.AddrPort, err error) {
	conn.SetReadDeadline(time.Now().Add(timeout))
	defer conn.SetReadDeadline(time.Time{})
	h, err := proxyproto.Read(br)
	if err != nil {
		return client, reached, err
	}
	if !h.Command.IsProxy() {
		return client, reached, nil
	}
	src, dst, ok := h.TCPAddrs()
	if !ok {
		// UDP or a Unix socket: nothing an FTP client connects with.
		return client, reached, fmt.Errorf("proxy: PROXY header for transport %#02x, not TCP", byte(h.TransportProtocol))
	}
	client, reached = src.AddrPort(), dst.AddrPort()
	return netip.AddrPortFrom(client.Addr().Unmap(), client.Port()),
		netip.AddrPortFrom(reached.Addr().Unmap(), reached.Port()), nil
}

// proxyHeader takes the PROXY header of a session whose connection comes
// from a trusted balancer: the real client's address replaces the
// balancer's for logs, limits, affinity and the data-connection check. A
// connection from a trusted address without a valid header is refused: a
// misconfigured balancer would otherwise make every client look like the
// balancer. A header from any other address is refused too, but only when
// it is read (nextCommand, startTLS): the proxy speaks first in FTP, and
// waiting here for bytes a direct client never sends before the 220 would
// stall it.
func (s *session) proxyHeader() error {
	if !s.cfg.TrustedProxy(s.peer.Addr()) {
		return nil
	}
	client, reached, err := readProxyHeader(s.raw, s.br, s.cfg.Timeouts.handshake())
	if err != nil {
		ev := s.log.Warn()
		if errors.Is(err, proxyproto.ErrNoProxyProtocol) && s.br.Buffered() == 0 || s.ctx.Err() != nil {
			// Connected and closed without a byte (a balancer's TCP health
			// check, every few seconds), or the server is stopping.
			ev = s.log.Debug()
		} else {
			s.cfg.Metrics.proxyHeaderRefused(s.kind.String())
		}
		ev.Err(err).Msg("connection from a trusted proxy without a valid PROXY header: closed")
		return errors.Join(errProxyHeader, err)
	}
	if client.IsValid() {
		s.clientAddr, s.clientIP, s.reached = client, client.Addr(), reached
	}
	s.proxied = true
	s.log = s.baseLogger()
	return nil
}

// refuseUntrustedHeader is the log line of a PROXY header that reached a
// session from an address not in trusted_proxies, or a second one behind
// the balancer's: a client behind it trying to pass for another.
func (s *session) refuseUntrustedHeader() {
	s.cfg.Metrics.proxyHeaderRefused(s.kind.String())
	if s.proxied {
		s.log.Warn().Msg("second PROXY header behind the balancer's: closing")
		return
	}
	s.log.Warn().Stringer("from", s.peer.Addr()).
		Msg("PROXY header from an address not in trusted_proxies: closing")
}

// announced is the address the client reached: the balancer's, as its
// PROXY header says, else the proxy's own (localIP). PASV replies announce
// it when no public_host or passive_address applies, and EPSV speaks its
// network protocol: behind an L4 balancer the client's data connection
// must go to the balancer too, not to the proxy's private address.
// Passive ports are still opened on localIP, where the balancer forwards
// them.
func (s *session) announced() netip.Addr {
	if s.reached.IsValid() {
		return s.reached.Addr()
	}
	return s.localIP
}

// dataPeer is the address a passive data connection must come from: the
// client's, or with a balancer in front and no PROXY header on the data
// ports, the balancer's, the only address the proxy sees there.
func (s *session) dataPeer() netip.Addr {
	if s.proxied && !s.cfg.DataProxyProtocol {
		return s.peer.Addr()
	}
	return s.clientIP
}

// dataTrust is the trust passive data listeners give PROXY headers: the
// same balancers as the control listeners, with DataProxyProtocol; nil
// (no header read) otherwise.
func (s *session) dataTrust() func(netip.Addr) bool {
	if !s.cfg.DataProxyProtocol {
		return nil
	}
	return s.cfg.TrustedProxy
}

// proxiedData reads the PROXY header a trusted balancer sends ahead of a
// passive data connection and returns the client's address, with the
// connection to relay: conn itself, so that splice still works, unless
// bytes of the client's arrived with the header and must be replayed.
func proxiedData(conn *net.TCPConn, timeout time.Duration) (net.Conn, netip.Addr, error) {
	br := bufio.NewReaderSize(conn, 512)
	client, _, err := readProxyHeader(conn, br, timeout)
	if err != nil {
		return nil, netip.Addr{}, err
	}
	if !client.IsValid() {
		return nil, netip.Addr{}, errors.New("proxy: PROXY header without a client address")
	}
	if br.Buffered() == 0 {
		return conn, client.Addr(), nil
	}
	rest, _ := br.Peek(br.Buffered())
	return &prefixConn{Conn: conn, prefix: bytes.Clone(rest)}, client.Addr(), nil
}

// origin is whom a backend control connection speaks for in its PROXY
// header; nil for the proxy's own health checks.
type origin struct {
	client  netip.AddrPort // the client's real address
	reached netip.AddrPort // the proxy's (or balancer's) address the client reached
	session string
}

func (s *session) origin() *origin {
	return &origin{client: s.clientAddr, reached: s.reachedAddr(), session: s.id}
}

// reachedAddr is the full address behind announced.
func (s *session) reachedAddr() netip.AddrPort {
	if s.reached.IsValid() {
		return s.reached
	}
	return s.localAddr
}

// writeProxyHeader sends a backend the header of version v for o. Without
// an origin (a health check) it sends v2's LOCAL command or v1's "PROXY
// UNKNOWN": the backend then takes the connection's own addresses, and no
// client is claimed that is not there.
func writeProxyHeader(w io.Writer, v ProxyVersion, o *origin) error {
	h := proxyproto.HeaderProxyFromAddrs(byte(v), nil, nil)
	if o != nil {
		h = proxyproto.HeaderProxyFromAddrs(byte(v),
			net.TCPAddrFromAddrPort(o.client), net.TCPAddrFromAddrPort(o.reached))
		if v == ProxyV2 {
			if err := h.SetTLVs([]proxyproto.TLV{{Type: SessionIDTLV, Value: []byte(o.session)}}); err != nil {
				return err
			}
		}
	}
	_, err := h.WriteTo(w)
	return err
}
