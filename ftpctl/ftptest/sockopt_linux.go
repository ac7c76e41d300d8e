package ftptest

import (
	"net"
	"syscall"
)

// oobInline keeps TCP urgent data in the stream, as vsftpd and inetutils
// ftpd do: ABOR behind the Telnet Synch comes with its DM as urgent data
// (RFC 959 section 4.1.3), and without SO_OOBINLINE Linux takes that byte
// out of the stream and leaves a lone IAC before ABOR.
func oobInline(c net.Conn) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	if rc, err := tc.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) {
			syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_OOBINLINE, 1)
		})
	}
}
