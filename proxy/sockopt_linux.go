package proxy

import (
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
