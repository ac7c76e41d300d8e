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

// sendUrgent sends b as TCP urgent data (MSG_OOB), the last byte of the
// Telnet Synch (RFC 854). net.TCPConn has no way to send it.
func sendUrgent(c *net.TCPConn, b byte) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Write(func(fd uintptr) bool {
		serr = syscall.Sendto(int(fd), []byte{b}, syscall.MSG_OOB|syscall.MSG_NOSIGNAL, nil)
		return serr != syscall.EAGAIN // else wait until writable, within the deadline
	})
	if err != nil {
		return err
	}
	return serr
}
