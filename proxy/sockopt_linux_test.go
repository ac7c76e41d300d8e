package proxy

import (
	"bytes"
	"io"
	"net"
	"syscall"
	"testing"
)

// TestAbortOutOfBand: ABOR sent as TCP urgent data, as Python's ftplib
// does on plain connections, still arrives whole.
func TestAbortOutOfBand(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) { c.PlainAllowed = true }, nil)
	h.backend.FS.WriteFile("/big", bytes.Repeat([]byte("x"), 128<<20))
	rc := h.raw(h.explicit())
	rc.expect(220)
	rc.cmd("USER alice", 331)
	rc.cmd("PASS s3cret-pw", 230)
	dconn := rc.epsvData()
	defer dconn.Close()
	rc.send("RETR big")
	rc.expect(150)
	if _, err := io.ReadFull(dconn, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	raw, err := rc.conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	raw.Write(func(fd uintptr) bool {
		serr = syscall.Sendto(int(fd), []byte("ABOR\r\n"), syscall.MSG_OOB, nil)
		return true
	})
	if serr != nil {
		t.Fatal(serr)
	}
	rc.expect(426)
	rc.expect(226)
	rc.cmd("NOOP", 200)
}
