package proxy

import (
	"context"
	"net/netip"
	"sync"
	"time"
)

// Limits bound what all clients, one client and one session may take.
// Each limit hit is logged and counted (Metrics: limit hits by limit).
type Limits struct {
	// MaxSessions is how many sessions are served at once; a client past
	// it is answered 421 and closed. Zero: no limit.
	MaxSessions int
	// MaxSessionsPerIP is how many sessions one client IP may hold at
	// once; past it, 421. Zero: no limit.
	MaxSessionsPerIP int
	// MaxFailedLogins is how many refused logins a session may have; the
	// last refusal is followed by 421 and the close, so that guessing
	// passwords costs a connection each few tries. Zero: 3.
	MaxFailedLogins int
	// SessionRate, UserRate and GlobalRate cap data transfers in bytes per
	// second: each session's, the sum of one user's sessions', and the sum
	// of all. The control connection is never slowed. Zero: no cap.
	SessionRate, UserRate, GlobalRate int64
}

func (l Limits) maxFailedLogins() int { return orDefaultInt(l.MaxFailedLogins, 3) }

// Names of the limits, as logs and metrics give them.
const (
	limitSessions      = "max_sessions"
	limitSessionsPerIP = "max_sessions_per_ip"
	limitFailedLogins  = "max_failed_logins"
	limitLoginTimeout  = "login_timeout"
	limitLineLength    = "max_line"
	limitPassivePorts  = "passive_ports"
)

// admission counts sessions for MaxSessions and MaxSessionsPerIP.
type admission struct {
	mu    sync.Mutex
	total int                // admitted sessions; guarded by mu
	perIP map[netip.Addr]int // guarded by mu
}

// admit takes a place for a session from ip, or names the limit that
// refuses it.
func (a *admission) admit(l Limits, ip netip.Addr) (refused string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case l.MaxSessions > 0 && a.total >= l.MaxSessions:
		return limitSessions
	case l.MaxSessionsPerIP > 0 && a.perIP[ip] >= l.MaxSessionsPerIP:
		return limitSessionsPerIP
	}
	if a.perIP == nil {
		a.perIP = make(map[netip.Addr]int)
	}
	a.total++
	a.perIP[ip]++
	return ""
}

// leave gives back an admitted session's place.
func (a *admission) leave(ip netip.Addr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.total--
	if a.perIP[ip]--; a.perIP[ip] <= 0 {
		delete(a.perIP, ip)
	}
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
