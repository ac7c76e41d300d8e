//go:build !linux

package proxy

import (
	"net"
	"syscall"
)

// oobInline is a no-op where SO_OOBINLINE is not wired up.
func oobInline(net.Conn) {}

// reuseAddr is a no-op where SO_REUSEADDR is not wired up: a fixed
// active_source_port then serves one connection at a time.
func reuseAddr(string, string, syscall.RawConn) error { return nil }

// sendUrgent sends b in band where MSG_OOB is not wired up: the backend
// gets IAC IP IAC DM ABOR, only without the urgent notification.
func sendUrgent(c *net.TCPConn, b byte) error {
	_, err := c.Write([]byte{b})
	return err
}
