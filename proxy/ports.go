package proxy

import (
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"syscall"
)

// errNoPassivePort is returned when every port of the passive range is
// taken.
var errNoPassivePort = errors.New("proxy: no free passive port")

// errPortTaken is one port of the range that cannot be had; listen goes on
// to another.
var errPortTaken = errors.New("proxy: passive port taken")

// maxBindFailures bounds how many ports of the range are tried when the
// system refuses them (another program holds them), so a crowded range costs
// a few system calls, not thousands.
const maxBindFailures = 64

// portAllocator hands out passive data listeners from a range. A port is
// never handed to two sessions at once: the allocator remembers its own, and
// the system refuses ports held by anyone else.
type portAllocator struct {
	mu    sync.Mutex
	r     PortRange       // guarded by mu
	inUse map[uint16]bool // guarded by mu; ports of an older range stay until released
	// shared are the ports open for passive port sharing, by address.
	shared map[netip.AddrPort]*sharedPort // guarded by mu
}

func newPortAllocator(r PortRange) *portAllocator {
	return &portAllocator{r: r, inUse: make(map[uint16]bool)}
}

// randomProbes is how many ports are drawn at random before the range is
// walked: with the range mostly free, each port is equally likely.
const randomProbes = 32

// listen opens a listener on ip with a port drawn at random from the
// range, so that the next port cannot be predicted and raced to (port
// theft, RFC 2577 section 5). The returned release must be called once
// the listener is closed.
func (a *portAllocator) listen(ip netip.Addr) (net.Listener, func(), error) {
	a.mu.Lock()
	r := a.r
	a.mu.Unlock()
	if r.Size() == 0 {
		ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
		if err != nil {
			return nil, nil, err
		}
		return ln, func() {}, nil
	}
	size := r.Size()
	failures := 0
	var lastErr error
	// try returns errPortTaken when another port should be tried.
	try := func(port uint16) (net.Listener, func(), error) {
		if !a.reserve(port) {
			return nil, nil, errPortTaken
		}
		ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, port)))
		if err == nil {
			return ln, func() { a.unreserve(port) }, nil
		}
		a.unreserve(port)
		if errors.Is(err, syscall.EADDRNOTAVAIL) {
			return nil, nil, err // the address is not ours: no port will do
		}
		lastErr = err
		failures++
		return nil, nil, errPortTaken
	}
	// Random draws first; then, for a crowded range, a walk from a random
	// place that finds the last free ports.
	for range min(randomProbes, size) {
		if ln, free, err := try(r.First + uint16(rand.IntN(size))); err != errPortTaken {
			return ln, free, err
		}
	}
	start := rand.IntN(size)
	for i := 0; i < size && failures < maxBindFailures; i++ {
		if ln, free, err := try(r.First + uint16((start+i)%size)); err != errPortTaken {
			return ln, free, err
		}
	}
	if lastErr != nil {
		return nil, nil, errors.Join(errNoPassivePort, lastErr)
	}
	return nil, nil, errNoPassivePort
}

// setRange makes r the range of later listeners (a reload).
func (a *portAllocator) setRange(r PortRange) {
	a.mu.Lock()
	a.r = r
	a.mu.Unlock()
}

func (a *portAllocator) reserve(port uint16) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.inUse[port] {
		return false
	}
	a.inUse[port] = true
	return true
}

func (a *portAllocator) unreserve(port uint16) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.inUse, port)
}

// inUseCount is the number of passive ports held now.
func (a *portAllocator) inUseCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.inUse)
}
