package proxy

import (
	"errors"
	"net"
	"syscall"
)

// oobInline keeps TCP urgent data in the stream. Clients send ABOR, or the
// Telnet Synch before it, as urgent data (RFC 959 section 4.1.3; Python's
// ftplib uses MSG_OOB); without SO_OOBINLINE Linux takes that byte out of
// the stream and the command arrives maimed. vsftpd does the same.
func oobInline(c net.Conn) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_OOBINLINE, 1)
	})
}

// reuseAddr sets SO_REUSEADDR before a dial binds its fixed source port
// (active_source_port): the port then serves a connection while earlier
// ones linger in TIME_WAIT, and connections to several clients at once.
func reuseAddr(_, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	})
	return errors.Join(err, serr)
}
