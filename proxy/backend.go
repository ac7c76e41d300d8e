package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/ftpsgate/ftpsgate/ftpctl"
)

// backendConn is a session's control connection to its backend.
type backendConn struct {
	Backend
	conn     net.Conn
	r        *ftpctl.Reader
	ip       netip.Addr // the backend's control IP: its data ports are dialled here
	localIP  netip.Addr // our side of the control connection: data is dialled from it
	greeting ftpctl.Reply
}

// errBackendGreeting is a backend that answered its connection with
// something other than 220.
var errBackendGreeting = errors.New("proxy: backend did not greet with 220")

// dialBackend connects to b and reads its greeting, multi-line or not, all
// within timeout.
func dialBackend(ctx context.Context, b Backend, timeout time.Duration, maxLine int) (*backendConn, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", b.Address)
	if err != nil {
		return nil, err
	}
	keepAlive(conn)
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()

	bc := &backendConn{
		Backend: b,
		conn:    conn,
		r:       ftpctl.NewReader(bufio.NewReader(conn), maxLine),
		ip:      addrOf(conn.RemoteAddr()),
		localIP: addrOf(conn.LocalAddr()),
	}
	rep, err := bc.r.ReadReply()
	if err == nil && rep.Code != ftpctl.CodeReady {
		err = fmt.Errorf("%w: %d %s", errBackendGreeting, rep.Code, rep.Text())
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	bc.greeting = rep
	return bc, nil
}

// send writes one command line to the backend, which then has timeout to
// answer it: a backend that accepts commands and never replies must not
// hold a session forever.
func (bc *backendConn) send(cmd ftpctl.Command, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	bc.conn.SetDeadline(deadline)
	_, err := bc.conn.Write(cmd.AppendTo(make([]byte, 0, 64)))
	return err
}

// roundTrip sends cmd and returns its final reply, with any 1xx replies
// before it dropped: for commands of the proxy's own, not the client's.
func (bc *backendConn) roundTrip(cmd ftpctl.Command, timeout time.Duration) (ftpctl.Reply, error) {
	if err := bc.send(cmd, timeout); err != nil {
		return ftpctl.Reply{}, err
	}
	for {
		rep, err := bc.r.ReadReply()
		if err != nil || rep.Code.Final() {
			return rep, err
		}
	}
}

// addrOf returns the IP of a TCP address, unmapped, so that an IPv4 client
// on a dual-stack socket compares equal to its plain IPv4 form.
func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
