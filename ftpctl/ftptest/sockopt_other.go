//go:build !linux

package ftptest

import "net"

// oobInline is a no-op where SO_OOBINLINE is not wired up.
func oobInline(net.Conn) {}
