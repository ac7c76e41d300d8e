package proxy

import (
	"context"
	"net/netip"
	"os"
	"sync"
	"time"
)

// Limits bound what all clients, one client address and one session may
// take. Each limit hit is logged and counted (Metrics: limit hits by
// limit). The zero value of each is the default shown, a bound: a proxy on
// port 21 of the internet meets scanners and password guessers on its
// first day, and what weakens a bound is said, not implied.
type Limits struct {
	// MaxSessions is how many sessions are served at once; a client past
	// it is answered 421 and closed. Zero: 4096. NoLimit: none.
	MaxSessions int
	// MaxSessionsPerIP is how many sessions one client address (an IPv4
	// address, an IPv6 prefix of IPv6Prefix bits) may hold at once,
	// logged in or not; past it, 421. Generous, as a corporate NAT or a
	// parallel mirror opens dozens of sessions from one address. Zero:
	// 100. NoLimit: none.
	MaxSessionsPerIP int
	// MaxLoginsPerIP is how many sessions of one client address may be
	// logging in at once: connected, and not yet logged in. A session past
	// it waits, before its greeting and its TLS handshake, until one of
	// them logs in or leaves (or its login timeout passes), so a burst of
	// real clients goes through a few at a time while strangers who
	// connect and never log in hold only this many sessions' worth of
	// handshakes and login timeouts. Zero: 8. NoLimit: none.
	MaxLoginsPerIP int
	// MaxPassivePortsPerIP is how many passive ports the sessions of one
	// client address may hold at once (a port is held from PASV or EPSV
	// until its data connection is made): past it, PASV and EPSV wait for
	// one of them to be given back, 5 seconds at most, and then get 425,
	// so that one client cannot take every port of the range with a
	// session per port while a burst of a parallel mirror's goes through.
	// Zero: 16. NoLimit: none.
	MaxPassivePortsPerIP int
	// IPv6Prefix is how many leading bits of an IPv6 client address the
	// per-address limits count as one address: a single host is usually
	// given a whole /64 to pick addresses from. 128 counts each address.
	// Zero: 64.
	IPv6Prefix int
	// MaxFailedLogins is how many refused logins a session may have; the
	// last refusal is followed by 421 and the close, so that guessing
	// passwords costs a connection each few tries. Zero: 3.
	MaxFailedLogins int
	// SessionRate, UserRate and GlobalRate cap data transfers in bytes per
	// second: each session's, the sum of one user's sessions', and the sum
	// of all. The control connection is never slowed. Zero: no cap.
	SessionRate, UserRate, GlobalRate int64
}

// NoLimit, as a Limits count, lifts that limit.
const NoLimit = -1

// Defaults of the Limits counts.
const (
	DefaultMaxSessions          = 4096
	DefaultMaxSessionsPerIP     = 100
	DefaultMaxLoginsPerIP       = 8
	DefaultMaxPassivePortsPerIP = 16
	DefaultIPv6Prefix           = 64
)

func (l Limits) maxFailedLogins() int { return orDefaultInt(l.MaxFailedLogins, 3) }

// bound is a count limit with its default: 0 for none.
func bound(n, def int) int {
	switch {
	case n == NoLimit:
		return 0
	case n == 0:
		return def
	}
	return n
}

func (l Limits) maxSessions() int      { return bound(l.MaxSessions, DefaultMaxSessions) }
func (l Limits) maxSessionsPerIP() int { return bound(l.MaxSessionsPerIP, DefaultMaxSessionsPerIP) }
func (l Limits) maxLoginsPerIP() int   { return bound(l.MaxLoginsPerIP, DefaultMaxLoginsPerIP) }
func (l Limits) maxPassivePortsPerIP() int {
	return bound(l.MaxPassivePortsPerIP, DefaultMaxPassivePortsPerIP)
}

// clientKey is the address the per-address limits count ip under: the
// address itself for IPv4, its IPv6Prefix for IPv6.
func (l Limits) clientKey(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	bits := ip.BitLen()
	if ip.Is6() {
		bits = min(orDefaultInt(l.IPv6Prefix, DefaultIPv6Prefix), 128)
	}
	p, _ := ip.Prefix(bits)
	return p
}

// Names of the limits, as logs and metrics give them.
const (
	limitSessions      = "max_sessions"
	limitSessionsPerIP = "max_sessions_per_ip"
	limitLoginsPerIP   = "max_logins_per_ip"
	limitPortsPerIP    = "max_passive_ports_per_ip"
	limitFailedLogins  = "max_failed_logins"
	limitLoginTimeout  = "login_timeout"
	limitLineLength    = "max_line"
	limitUserName      = "user_name"
	limitPassivePorts  = "passive_ports"
)

// admission counts what sessions hold, in all and by client address, for
// the count limits of Limits.
type admission struct {
	mu    sync.Mutex
	total int                         // admitted sessions; guarded by mu
	addrs map[netip.Prefix]*addrUsage // guarded by mu; an entry while anything is held
}

// addrUsage is what the sessions of one client address hold.
type addrUsage struct {
	sessions int // admitted
	// places held, by kind: login places (sessions greeted and not
	// logged in yet) and passive ports.
	held [placeKinds]int
	// freed[k] is closed, and replaced, when a place of kind k is given
	// back: its waiters try again.
	freed [placeKinds]chan struct{}
}

// placeKind is a kind of place a client address has a share of.
type placeKind uint8

const (
	loginPlace placeKind = iota // Limits.MaxLoginsPerIP
	portPlace                   // Limits.MaxPassivePortsPerIP
	placeKinds
)

// max is how many places of kind k an address may hold; 0: no limit.
func (k placeKind) max(l Limits) int {
	if k == loginPlace {
		return l.maxLoginsPerIP()
	}
	return l.maxPassivePortsPerIP()
}

// usage returns a's entry for addr, made if need be. Called with mu held.
func (a *admission) usage(addr netip.Prefix) *addrUsage {
	u := a.addrs[addr]
	if u == nil {
		if a.addrs == nil {
			a.addrs = make(map[netip.Prefix]*addrUsage)
		}
		u = &addrUsage{}
		for k := range u.freed {
			u.freed[k] = make(chan struct{})
		}
		a.addrs[addr] = u
	}
	return u
}

// forget drops addr's entry once it holds nothing. Called with mu held.
func (a *admission) forget(addr netip.Prefix, u *addrUsage) {
	if u.sessions <= 0 && u.held == [placeKinds]int{} {
		delete(a.addrs, addr)
	}
}

// admit takes a place for a session from addr, or names the limit that
// refuses it.
func (a *admission) admit(l Limits, addr netip.Prefix) (refused string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	u := a.addrs[addr]
	switch {
	case l.maxSessions() > 0 && a.total >= l.maxSessions():
		return limitSessions
	case u != nil && l.maxSessionsPerIP() > 0 && u.sessions >= l.maxSessionsPerIP():
		return limitSessionsPerIP
	}
	a.total++
	a.usage(addr).sessions++
	return ""
}

// leave gives back an admitted session's place, and its login place if it
// still holds one.
func (a *admission) leave(addr netip.Prefix, holdsLogin bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	u := a.usage(addr)
	a.total--
	u.sessions--
	if holdsLogin {
		u.free(loginPlace)
	}
	a.forget(addr, u)
}

// await takes a place of kind k for addr, waiting until one is free, the
// deadline passes or ctx ends; waiting is called once if it has to wait.
// The error is ctx's, or os.ErrDeadlineExceeded.
func (a *admission) await(ctx context.Context, l Limits, addr netip.Prefix, k placeKind, deadline time.Time, waiting func()) error {
	var timer *time.Timer
	for {
		a.mu.Lock()
		u := a.usage(addr)
		if n := k.max(l); n == 0 || u.held[k] < n {
			u.held[k]++
			a.mu.Unlock()
			if timer != nil {
				timer.Stop()
			}
			return nil
		}
		freed := u.freed[k]
		a.forget(addr, u)
		a.mu.Unlock()
		if timer == nil {
			waiting()
			timer = time.NewTimer(time.Until(deadline))
			defer timer.Stop()
		}
		select {
		case <-freed:
		case <-timer.C:
			return os.ErrDeadlineExceeded
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// give gives back a place of kind k of addr.
func (a *admission) give(addr netip.Prefix, k placeKind) {
	a.mu.Lock()
	defer a.mu.Unlock()
	u := a.usage(addr)
	u.free(k)
	a.forget(addr, u)
}

// free gives back a place of kind k and wakes its waiters. Called with
// admission.mu held.
func (u *addrUsage) free(k placeKind) {
	u.held[k]--
	close(u.freed[k])
	u.freed[k] = make(chan struct{})
}

// held returns the sessions admitted, the places of each kind held by all
// addresses, and how many addresses hold anything: for tests that check
// they all come back.
func (a *admission) held() (sessions int, places [placeKinds]int, addrs int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, u := range a.addrs {
		for k, n := range u.held {
			places[k] += n
		}
	}
	return a.total, places, len(a.addrs)
}

// rateLimiter is a token bucket in bytes shared by the data connections it
// caps. A taker may run into debt and then waits it off, so a large read
// never waits forever and concurrent takers queue in arrival order.
type rateLimiter struct {
	mu     sync.Mutex
	rate   float64 // bytes per second; guarded by mu
	tokens float64 // guarded by mu
	last   time.Time
}

func newRateLimiter(rate int64) *rateLimiter {
	l := &rateLimiter{last: time.Now()}
	l.setRate(rate)
	l.tokens = l.burst()
	return l
}

// burst is how much may pass at once after a pause: a tenth of a second's
// worth, and at least one chunk.
func (l *rateLimiter) burst() float64 { return max(l.rate/10, float64(rateChunk(int64(l.rate)))) }

func (l *rateLimiter) setRate(rate int64) {
	l.mu.Lock()
	l.rate = float64(rate)
	l.mu.Unlock()
}

// take removes n bytes' worth of tokens and returns how long to wait
// before sending them.
func (l *rateLimiter) take(n int) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	l.tokens = min(l.burst(), l.tokens+now.Sub(l.last).Seconds()*l.rate)
	l.last = now
	l.tokens -= float64(n)
	if l.tokens >= 0 {
		return 0
	}
	return time.Duration(-l.tokens / l.rate * float64(time.Second))
}

// rateChunk is the most a capped copy reads at once: about a twentieth of a
// second's worth, so the pace is smooth, between 1 KiB and a full buffer.
func rateChunk(rate int64) int {
	return int(min(max(rate/20, 1<<10), copyBufSize))
}

// throttle is the set of limiters one transfer passes through.
type throttle struct {
	ctx      context.Context // the data channel's: an abort ends a wait
	limiters []*rateLimiter
	chunk    int
}

// newThrottle returns nil when no limiter applies, the common case.
func newThrottle(ctx context.Context, ls ...*rateLimiter) *throttle {
	t := &throttle{ctx: ctx, chunk: copyBufSize}
	for _, l := range ls {
		if l != nil {
			t.limiters = append(t.limiters, l)
			l.mu.Lock()
			t.chunk = min(t.chunk, rateChunk(int64(l.rate)))
			l.mu.Unlock()
		}
	}
	if len(t.limiters) == 0 {
		return nil
	}
	return t
}

// wait blocks until n bytes may be sent under every limiter.
func (t *throttle) wait(n int) error {
	var d time.Duration
	for _, l := range t.limiters {
		d = max(d, l.take(n))
	}
	if d <= 0 {
		return nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-t.ctx.Done():
		return t.ctx.Err()
	}
}

// userRates holds one limiter per user with a live session, so that all of
// a user's sessions share the cap.
type userRates struct {
	mu    sync.Mutex
	users map[string]*userRate // guarded by mu
}

type userRate struct {
	*rateLimiter
	refs int
}

// acquire returns user's limiter at rate, shared with the user's other
// sessions; release gives it back.
func (u *userRates) acquire(user string, rate int64) (l *rateLimiter, release func()) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.users == nil {
		u.users = make(map[string]*userRate)
	}
	ur := u.users[user]
	if ur == nil {
		ur = &userRate{rateLimiter: newRateLimiter(rate)}
		u.users[user] = ur
	} else {
		ur.setRate(rate) // the newest configuration's
	}
	ur.refs++
	return ur.rateLimiter, func() {
		u.mu.Lock()
		defer u.mu.Unlock()
		if ur.refs--; ur.refs == 0 {
			delete(u.users, user)
		}
	}
}
