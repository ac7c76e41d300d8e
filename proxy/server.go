package proxy

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/ftpsgate/ftpsgate/persist"
	"github.com/ftpsgate/ftpsgate/tlsoffload"
)

// listenerKind says how a listener's clients start: in plaintext, expected
// to send AUTH TLS, or with TLS from the first byte.
type listenerKind uint8

const (
	explicitTLS listenerKind = iota
	implicitTLS
)

func (k listenerKind) String() string {
	if k == implicitTLS {
		return "implicit"
	}
	return "explicit"
}

// Server accepts FTPS clients and relays their sessions to the backends.
type Server struct {
	cfg   Config                     // as given to New: its listeners, TLS, store and metrics hold for good
	gen   atomic.Pointer[generation] // what new sessions get; Reload swaps it
	store persist.Store
	ports *portAllocator

	admission  admission                   // session counts for the limits
	userRates  userRates                   // one rate limiter per user with a live session
	globalRate atomic.Pointer[rateLimiter] // nil: no global cap

	mu        sync.Mutex
	listeners map[listenerKind]net.Listener // guarded by mu
	sessions  map[*session]struct{}         // guarded by mu
	wg        sync.WaitGroup                // accept loops and sessions
	bgCtx     context.Context               // Serve's, for the health checks of a reload; guarded by mu

	shuttingDown bool               // Shutdown has begun; guarded by mu
	stopServe    context.CancelFunc // Serve's hard stop, nil outside Serve; guarded by mu
	drained      chan struct{}      // closed when Shutdown returns

	started time.Time    // for Status
	recent  transferRing // the last ended transfers, for Status
}

// New checks cfg and returns a Server that is not yet listening.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:       cfg,
		store:     cfg.Balance.Store,
		ports:     newPortAllocator(cfg.PassivePorts),
		listeners: make(map[listenerKind]net.Listener),
		sessions:  make(map[*session]struct{}),
		drained:   make(chan struct{}),
		started:   time.Now(),
	}
	if s.store == nil && cfg.Balance.Affinity != NoAffinity {
		s.store = persist.NewTable(0)
	}
	s.gen.Store(newGeneration(cfg, nil))
	s.setGlobalRate(cfg.Limits.GlobalRate)
	cfg.Metrics.watch(s)
	return s, nil
}

// generation is what one configuration gives sessions: the Config and the
// pools built from it. A session keeps the generation it began with to its
// end, so a reload never changes the rules under a session in flight.
type generation struct {
	cfg Config
	// openData is the data connections' TLS configuration with
	// AllowUnresumedData (tlsoffload.OpenDataConfig); nil without.
	openData *tls.Config
	pool     *pool              // the default pool
	routes   []route            // matched in order before the default pool
	stop     context.CancelFunc // ends its health checks; nil until started
}

// newGeneration builds the pools of cfg; backends that prev had in a pool
// of the same name keep their state.
func newGeneration(cfg Config, prev *generation) *generation {
	prevPool := func(name string) *pool {
		if prev == nil {
			return nil
		}
		for _, p := range prev.pools() {
			if p.name == name {
				return p
			}
		}
		return nil
	}
	g := &generation{cfg: cfg, pool: newPool("default", cfg.Balance.Policy, cfg.Backends, prevPool("default"))}
	if cfg.AllowUnresumedData && cfg.TLSConfig != nil {
		g.openData = tlsoffload.OpenDataConfig(cfg.TLSConfig)
	}
	for i, r := range cfg.Routes {
		name := r.Name
		if name == "" {
			name = "route-" + strconv.Itoa(i)
		}
		g.routes = append(g.routes, route{Route: r, pool: newPool(name, r.Policy, r.Backends, prevPool(name))})
	}
	return g
}

// pools returns the default pool and every route's.
func (g *generation) pools() []*pool {
	ps := []*pool{g.pool}
	for _, r := range g.routes {
		ps = append(ps, r.pool)
	}
	return ps
}

// poolFor returns the pool of the first route that matches, or the default.
func (g *generation) poolFor(sni, host, user string) *pool {
	for i := range g.routes {
		if g.routes[i].matches(sni, host, user) {
			return g.routes[i].pool
		}
	}
	return g.pool
}

// setGlobalRate installs the global data rate cap; transfers running keep
// the limiter they have, which a new rate reaches at once.
func (s *Server) setGlobalRate(rate int64) {
	switch l := s.globalRate.Load(); {
	case rate <= 0:
		s.globalRate.Store(nil)
	case l == nil:
		s.globalRate.Store(newRateLimiter(rate))
	default:
		l.setRate(rate)
	}
}

// current returns the generation new sessions get.
func (s *Server) current() *generation { return s.gen.Load() }

// logger is the current configuration's logger: a reload may change its level.
func (s *Server) logger() *zerolog.Logger { return &s.current().cfg.Logger }

// pools returns the current generation's pools.
func (s *Server) pools() []*pool { return s.current().pools() }

// Reload makes cfg the configuration of new sessions: backends, routes,
// balance policy, health checks, timeouts, limits, passive ports and
// addresses, TLS rules and the banner. Sessions in flight keep the
// configuration they began with. A backend kept (same pool, name and
// address) keeps its health and live-session count. What cannot change
// without a restart keeps its value from New, and Reload says which of it
// differed: the listen addresses, the TLS configuration, the affinity
// store, the metrics, and the transfer hook. An invalid cfg changes
// nothing and its error says why.
func (s *Server) Reload(cfg Config) (kept []string, err error) {
	if cfg.Listen != s.cfg.Listen || cfg.Implicit != s.cfg.Implicit {
		kept = append(kept, "listen addresses")
	}
	if cfg.Balance.Affinity != NoAffinity && s.store == nil {
		// Pins need a store, opened at the start.
		kept = append(kept, "balance.affinity")
		cfg.Balance.Affinity = NoAffinity
	}
	cfg.Listen, cfg.Implicit = s.cfg.Listen, s.cfg.Implicit
	cfg.TLSConfig, cfg.SessionTLS = s.cfg.TLSConfig, s.cfg.SessionTLS
	cfg.Balance.Store, cfg.Metrics, cfg.OnTransfer = s.cfg.Balance.Store, s.cfg.Metrics, s.cfg.OnTransfer
	if err := cfg.Validate(); err != nil {
		return nil, err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.current()
	g := newGeneration(cfg, old)
	s.ports.setRange(cfg.PassivePorts)
	s.setGlobalRate(cfg.Limits.GlobalRate)
	if s.bgCtx != nil {
		if old.stop != nil {
			old.stop()
		}
		s.startChecks(s.bgCtx, g)
	}
	s.gen.Store(g)
	return kept, nil
}

// Listen opens the configured listeners, so that a caller learns of a port
// in use before serving, and tests can listen on port 0 and ask Addr.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for kind, addr := range map[listenerKind]string{explicitTLS: s.cfg.Listen, implicitTLS: s.cfg.Implicit} {
		if addr == "" || s.listeners[kind] != nil {
			continue
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			for _, l := range s.listeners {
				l.Close()
			}
			clear(s.listeners)
			return err
		}
		s.listeners[kind] = ln
	}
	return nil
}

// ExplicitAddr returns the explicit listener's address, or nil.
func (s *Server) ExplicitAddr() net.Addr { return s.addr(explicitTLS) }

// ImplicitAddr returns the implicit listener's address, or nil.
func (s *Server) ImplicitAddr() net.Addr { return s.addr(implicitTLS) }

func (s *Server) addr(kind listenerKind) net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ln := s.listeners[kind]; ln != nil {
		return ln.Addr()
	}
	return nil
}

// Serve accepts clients on every listener (calling Listen first if needed)
// until ctx is done, then closes the listeners, ends every session and
// returns once all of them are gone. After Shutdown has closed the
// listeners, Serve waits for Shutdown to return (or ctx to be done) before
// it ends what is left.
func (s *Server) Serve(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	s.mu.Lock()
	s.stopServe = cancel
	errc := make(chan error, len(s.listeners))
	for kind, ln := range s.listeners {
		s.logger().Info().Str("listener", kind.String()).Stringer("addr", ln.Addr()).Msg("listening")
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			errc <- s.acceptLoop(ctx, ln, kind)
		}()
	}
	n := len(s.listeners)
	s.mu.Unlock()

	s.startBackground(ctx)

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc: // a listener failed for good, or Shutdown closed it
		n--
	}
	s.mu.Lock()
	draining := s.shuttingDown
	s.mu.Unlock()
	if draining {
		err = nil
		select {
		case <-s.drained:
		case <-ctx.Done():
		}
	}
	cancel()
	s.mu.Lock()
	s.bgCtx = nil // no reload may start checks while wg is waited for
	for _, ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
	for ; n > 0; n-- {
		<-errc
	}
	s.wg.Wait()
	s.mu.Lock()
	s.stopServe = nil
	s.mu.Unlock()
	s.saveStore()
	return err
}

// Shutdown stops the server gracefully, as http.Server.Shutdown does: it
// closes the listeners, answers 421 to every session waiting for a command
// and closes it, and lets a session in the middle of a command, a transfer
// above all, finish it (final reply included) before the same 421. When
// ctx is done first, whatever is left is closed as Serve does when its own
// context ends. Shutdown returns once every session is gone: nil, or
// ctx's error if it had to cut sessions short. Serve then returns.
func (s *Server) Shutdown(ctx context.Context) error {
	began := time.Now()
	s.mu.Lock()
	if s.shuttingDown {
		s.mu.Unlock()
		return errors.New("proxy: Shutdown called twice")
	}
	s.shuttingDown = true
	for _, ln := range s.listeners {
		ln.Close()
	}
	idle := 0
	for sess := range s.sessions {
		if sess.drain() {
			idle++
		}
	}
	total := len(s.sessions)
	s.mu.Unlock()
	defer close(s.drained)
	s.logger().Info().Int("sessions", total).Int("idle", idle).Int("busy", total-idle).Msg("draining")

	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	var err error
	cut := 0
	for {
		n := s.ActiveSessions()
		if n == 0 {
			break
		}
		if err == nil {
			select {
			case <-ctx.Done():
				// The hard stop: closes every client connection.
				err, cut = ctx.Err(), n
				s.mu.Lock()
				if s.stopServe != nil {
					s.stopServe()
				}
				s.mu.Unlock()
				continue
			case <-t.C:
			}
		} else {
			<-t.C
		}
	}
	ev := s.logger().Info()
	if cut > 0 {
		ev = s.logger().Warn()
	}
	ev.Int("sessions", total).Int("cut", cut).Dur("duration", time.Since(began)).Msg("drained")
	return err
}

// startBackground starts the health checks and the saving of the affinity
// store, all ending with ctx.
func (s *Server) startBackground(ctx context.Context) {
	s.mu.Lock()
	s.bgCtx = ctx
	s.startChecks(ctx, s.current())
	s.mu.Unlock()
	if _, ok := s.store.(saver); ok {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			t := time.NewTicker(s.cfg.Balance.saveInterval())
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					s.saveStore()
				}
			}
		}()
	}
}

// startChecks starts the health checks of g's backends, ending with ctx or
// when a reload replaces g. Called with s.mu held.
func (s *Server) startChecks(ctx context.Context, g *generation) {
	if g.cfg.Health.Disabled {
		return
	}
	ctx, g.stop = context.WithCancel(ctx)
	for _, p := range g.pools() {
		for _, m := range p.members {
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.watch(ctx, g.cfg.Health, p, m)
			}()
		}
	}
}

// saver is a store that keeps its pins in a file.
type saver interface{ Save() error }

func (s *Server) saveStore() {
	if sv, ok := s.store.(saver); ok {
		if err := sv.Save(); err != nil {
			s.logger().Error().Err(err).Msg("affinity state not saved")
		}
	}
}

// ActiveSessions returns the number of sessions being served.
func (s *Server) ActiveSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

func (s *Server) acceptLoop(ctx context.Context, ln net.Listener, kind listenerKind) error {
	var delay time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of file descriptors and the like: back off as net/http does
			// rather than spin, and keep serving.
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.logger().Warn().Err(err).Dur("retry_in", delay).Msg("accept failed")
				select {
				case <-time.After(delay):
				case <-ctx.Done():
					return nil
				}
				continue
			}
			s.logger().Error().Err(err).Str("listener", kind.String()).Msg("listener failed")
			return err
		}
		delay = 0
		sess := newSession(s, conn, kind)
		s.mu.Lock()
		s.sessions[sess] = struct{}{}
		if s.shuttingDown { // accepted as Shutdown closed the listener
			sess.drain()
		}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			sess.serve(ctx)
			s.mu.Lock()
			delete(s.sessions, sess)
			s.mu.Unlock()
		}()
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// newID returns a random session id: short enough to read in a log, long
// enough not to repeat among the sessions of a day.
func newID() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// keepAlive turns on TCP keepalive, so a peer that vanished without a FIN is
// noticed on idle control connections and stalled data connections.
func keepAlive(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: 60 * time.Second, Interval: 15 * time.Second, Count: 4})
	}
}
