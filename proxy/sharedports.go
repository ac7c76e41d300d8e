package proxy

import (
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// Passive port sharing (Config.PassivePortSharing): one proxy port may wait
// for the data connections of several sessions at once, as long as their
// clients have different IP addresses. Each arriving connection goes to the
// session waiting for its source address; the data-connection check is the
// dispatch itself. A firewall-approved range of ten ports then serves as
// many concurrent sessions as there are client addresses times ten.

// sharedPort is one shared listener and the sessions waiting on it.
type sharedPort struct {
	ip        netip.Addr
	port      uint16
	ln        *net.TCPListener
	fromRange bool                      // port is marked in portAllocator.inUse
	waiters   map[netip.Addr]*portClaim // by client IP; guarded by portAllocator.mu
	claims    int                       // claims not yet released; guarded by portAllocator.mu
}

// portClaim is one session's wait on a shared port.
type portClaim struct {
	a    *portAllocator
	sp   *sharedPort
	from netip.Addr
	// conn holds the connections from the client's address, in line
	// (listenEnd.candidates), until the claim is released.
	conn chan net.Conn
}

// listenShared claims a port on ip for a data connection from client: a
// shared port already open there that no other session of client waits on,
// else a new one from the range. log receives the connections refused.
func (a *portAllocator) listenShared(ip, client netip.Addr, log func() *zerolog.Logger) (*portClaim, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, sp := range a.shared { // map order: a random open port
		if sp.ip == ip && sp.waiters[client] == nil {
			return a.claim(sp, client), nil
		}
	}
	ln, port, err := a.openShared(ip)
	if err != nil {
		return nil, err
	}
	sp := &sharedPort{ip: ip, port: port, ln: ln, fromRange: a.r.Size() > 0, waiters: make(map[netip.Addr]*portClaim)}
	if a.shared == nil {
		a.shared = make(map[netip.AddrPort]*sharedPort)
	}
	a.shared[netip.AddrPortFrom(ip, port)] = sp
	go a.dispatch(sp, log)
	return a.claim(sp, client), nil
}

// claim registers client's wait on sp. Called with a.mu held.
func (a *portAllocator) claim(sp *sharedPort, client netip.Addr) *portClaim {
	c := &portClaim{a: a, sp: sp, from: client, conn: make(chan net.Conn, maxWaiting)}
	sp.waiters[client] = c
	sp.claims++
	return c
}

// openShared binds a free port of the range on ip. Called with a.mu held.
func (a *portAllocator) openShared(ip netip.Addr) (*net.TCPListener, uint16, error) {
	if a.r.Size() == 0 {
		ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
		if err != nil {
			return nil, 0, err
		}
		return ln, uint16(ln.Addr().(*net.TCPAddr).Port), nil
	}
	size, start, failures := a.r.Size(), rand.IntN(a.r.Size()), 0
	var lastErr error
	for i := range size {
		port := a.r.First + uint16((start+i)%size)
		if a.inUse[port] {
			continue
		}
		ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, port)))
		if err == nil {
			a.inUse[port] = true
			return ln, port, nil
		}
		if errors.Is(err, syscall.EADDRNOTAVAIL) {
			return nil, 0, err
		}
		lastErr = err
		if failures++; failures >= maxBindFailures {
			break
		}
	}
	return nil, 0, errors.Join(errNoPassivePort, lastErr)
}

// dispatch hands each connection to sp to the session waiting for its
// source address, and refuses the others, until sp is closed.
func (a *portAllocator) dispatch(sp *sharedPort, log func() *zerolog.Logger) {
	var delay time.Duration
	for {
		conn, err := sp.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second) // out of descriptors
			time.Sleep(delay)
			continue
		}
		delay = 0
		from := addrOf(conn.RemoteAddr())
		keepAlive(conn)
		// Under the lock, so that release, which takes the claim out of
		// waiters under it too, finds every connection sent to it.
		a.mu.Lock()
		c := sp.waiters[from]
		queued := false
		if c != nil {
			select {
			case c.conn <- conn:
				queued = true
			default:
			}
		}
		a.mu.Unlock()
		switch {
		case c == nil:
			log().Warn().Str("party", string(partyClient)).Str("from", from.String()).Uint16("port", sp.port).
				Msg("data connection from another address refused")
			conn.Close()
		case !queued:
			log().Warn().Str("party", string(partyClient)).Str("from", from.String()).Uint16("port", sp.port).
				Msg("data connection refused: too many already wait on the port")
			conn.Close()
		}
	}
}

// release ends the claim; the last one closes the port. Connections
// delivered but not taken are closed.
func (c *portClaim) release() {
	a := c.a
	a.mu.Lock()
	if c.sp.waiters[c.from] == c {
		delete(c.sp.waiters, c.from)
	}
	c.sp.claims--
	if c.sp.claims == 0 {
		delete(a.shared, netip.AddrPortFrom(c.sp.ip, c.sp.port))
		c.sp.ln.Close()
		if c.sp.fromRange {
			delete(a.inUse, c.sp.port)
		}
	}
	a.mu.Unlock()
	for {
		select {
		case conn := <-c.conn:
			conn.Close()
		default:
			return
		}
	}
}
