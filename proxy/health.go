package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/rs/zerolog"

	"github.com/ftpsgate/ftpsgate/ftpctl"
)

// Health configures how backends are watched: active checks on a schedule,
// and passive ejection of a backend that a live session failed to reach.
type Health struct {
	// Disabled turns active checks off; passive ejection stays.
	Disabled bool
	// Interval between two checks of a backend. Zero: 10s.
	Interval time.Duration
	// Timeout of one check, from dial to QUIT. Zero: 5s.
	Timeout time.Duration
	// Fall consecutive failed checks mark a backend down; Rise consecutive
	// good ones mark it up again. Zero: 3 and 2.
	Fall, Rise int
	// ProbeUser and ProbePassword, when set, make every check log in, open a
	// passive data connection and LIST, proving more than a greeting.
	ProbeUser, ProbePassword string
	// EjectBackoff is how long a backend that a session failed to dial or
	// that did not greet is left out; it doubles on each further failure, up
	// to 5 minutes, and resets on success. Zero: 10s.
	EjectBackoff time.Duration
}

func (h Health) interval() time.Duration { return orDefault(h.Interval, 10*time.Second) }
func (h Health) timeout() time.Duration  { return orDefault(h.Timeout, 5*time.Second) }
func (h Health) fall() int               { return orDefaultInt(h.Fall, 3) }
func (h Health) rise() int               { return orDefaultInt(h.Rise, 2) }
func (h Health) ejectBackoff() time.Duration {
	return orDefault(h.EjectBackoff, 10*time.Second)
}

// maxEjectBackoff caps passive ejection, so a backend that recovers is
// tried again within minutes even without active checks.
const maxEjectBackoff = 5 * time.Minute

func orDefaultInt(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// watch checks m every interval until ctx is done.
func (s *Server) watch(ctx context.Context, h Health, p *pool, m *member) {
	t := time.NewTicker(h.interval())
	defer t.Stop()
	for {
		feats, from, err := checkBackend(ctx, m.Backend, h)
		if ctx.Err() != nil {
			return
		}
		s.recordCheck(h, p, m, feats, from, err)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// recordCheck applies one check's result to m and logs a change of state.
// feats are the features the check learnt, nil when it learnt none (they
// stay as they were).
func (s *Server) recordCheck(h Health, p *pool, m *member, feats []string, from string, err error) {
	m.mu.Lock()
	m.lastCheck, m.checkErr = time.Now(), err
	if err == nil {
		m.fails, m.rises = 0, m.rises+1
		m.ejectedUntil, m.backoff = time.Time{}, 0
	} else {
		m.fails, m.rises = m.fails+1, 0
	}
	fails, rises := m.fails, m.rises
	m.mu.Unlock()
	s.cfg.Metrics.check(p, m, err)

	log := s.logger().With().Str("pool", p.name).Str("backend", m.name()).Logger()
	if err == nil && feats != nil && m.learnFeatures(feats, from) {
		log.Info().Str("source", from).Strs("features", feats).Msg("backend features")
	}
	switch {
	case err == nil && m.down.Load() && rises >= h.rise():
		m.down.Store(false)
		log.Info().Int("rise", rises).Msg("backend up")
	case err != nil && !m.down.Load() && fails >= h.fall():
		m.down.Store(true)
		log.Warn().Err(err).Int("fall", fails).Msg("backend down")
	case err != nil:
		log.Debug().Err(err).Int("fails", fails).Msg("backend check failed")
	}
}

// eject leaves m out of new sessions for a growing back-off after a
// session failed to reach it; log is that session's, so the record says
// whose dial failed.
func (s *Server) eject(log zerolog.Logger, h Health, m *member, err error) {
	m.mu.Lock()
	m.backoff = min(max(2*m.backoff, h.ejectBackoff()), maxEjectBackoff)
	m.ejectedUntil = time.Now().Add(m.backoff)
	backoff := m.backoff
	m.mu.Unlock()
	log.Warn().Err(err).Str("backend", m.name()).Dur("backoff", backoff).Msg("backend ejected")
}

// reached records that a session got a greeting from m.
func (m *member) reached() {
	m.mu.Lock()
	m.backoff = 0
	m.mu.Unlock()
}

// Who learnt a backend's features (the source field of the "backend
// features" record).
const (
	featuresFromCheck = "health check"       // FEAT before login
	featuresFromProbe = "health probe login" // FEAT after the probe user's login
	featuresFromLogin = "a session's login"  // FEAT after a session's login
)

// featuresOf reads a reply to FEAT: the features of a 211; none for 500
// or 502, a server without FEAT (RFC 2389 section 3.2 says it has no
// extensions then); unknown (ok false) for anything else, such as GNU
// inetutils ftpd's "530 Please login with USER and PASS." before login,
// which says nothing about what it offers once logged in.
func featuresOf(rep ftpctl.Reply) (feats []string, ok bool) {
	switch {
	case rep.Code == ftpctl.CodeSystemStatus:
		if feats = ftpctl.ParseFeat(rep); feats == nil {
			feats = []string{} // "211 No features."
		}
		return feats, true
	case rep.Code == ftpctl.CodeSyntaxError || rep.Code == ftpctl.CodeNotImplemented:
		return []string{}, true
	}
	return nil, false
}

// checkBackend connects to b, reads its 220, asks FEAT, optionally logs in
// and lists over a data connection, and says QUIT. It returns the
// backend's features (empty, not nil, when it has none; nil when it would
// not say before login and no probe login could ask), and who learnt them.
func checkBackend(ctx context.Context, b Backend, h Health) (feats []string, from string, err error) {
	ctx, cancel := context.WithTimeout(ctx, h.timeout())
	defer cancel()
	bc, err := dialBackend(ctx, b, h.timeout(), 0, nil)
	if err != nil {
		return nil, "", err
	}
	defer bc.conn.Close()
	stop := context.AfterFunc(ctx, func() { bc.conn.Close() })
	defer stop()

	rep, err := bc.roundTrip(ftpctl.Command{Verb: "FEAT"}, h.timeout())
	if err != nil {
		return nil, "", fmt.Errorf("FEAT: %w", err)
	}
	feats, known := featuresOf(rep)
	from = featuresFromCheck
	if h.ProbeUser != "" {
		if err := probeLogin(bc, h); err != nil {
			return nil, "", err
		}
		if !known {
			// Logged in, it may say now.
			if rep, err := bc.roundTrip(ftpctl.Command{Verb: "FEAT"}, h.timeout()); err == nil {
				feats, _ = featuresOf(rep)
				from = featuresFromProbe
			}
		}
	}
	bc.roundTrip(ftpctl.Command{Verb: "QUIT"}, h.timeout())
	return feats, from, nil
}

// probeLogin is the deep check: a real login and a LIST over a data
// connection set up as the sessions' would be (data_to_backend).
func probeLogin(bc *backendConn, h Health) error {
	t := h.timeout()
	rep, err := bc.roundTrip(ftpctl.Command{Verb: "USER", Arg: h.ProbeUser}, t)
	if err == nil && rep.Code == ftpctl.CodeNeedPassword {
		rep, err = bc.roundTrip(ftpctl.Command{Verb: "PASS", Arg: h.ProbePassword}, t)
	}
	if err != nil {
		return fmt.Errorf("probe login: %w", err)
	}
	if rep.Code != ftpctl.CodeLoggedIn {
		return fmt.Errorf("probe login: %w", &ftpctl.ReplyError{Command: "PASS", Reply: rep})
	}
	open, release, err := probeData(bc, t)
	if err != nil {
		return err
	}
	defer release()
	if err := bc.send(ftpctl.Command{Verb: "LIST"}, t); err != nil {
		return fmt.Errorf("probe LIST: %w", err)
	}
	for {
		rep, err = bc.readReply()
		if err != nil {
			return fmt.Errorf("probe LIST: %w", err)
		}
		if rep.Code.Final() {
			break
		}
		data, err := open()
		if err != nil {
			return fmt.Errorf("probe data connection: %w", err)
		}
		data.SetDeadline(time.Now().Add(t))
		if _, err := io.Copy(io.Discard, data); err != nil {
			return fmt.Errorf("probe LIST data: %w", err)
		}
	}
	if rep.Code.Class() != ftpctl.ClassCompletion {
		return fmt.Errorf("probe LIST: %w", &ftpctl.ReplyError{Command: "LIST", Reply: rep})
	}
	return nil
}

// probeData sets up the probe's data connection: PASV, dialled at once,
// unless data_to_backend is active (or auto, and the backend refuses PASV):
// then PORT, or EPRT toward IPv6, with a listener that takes the backend's
// connection once LIST has been sent. open returns the connection, release
// frees what is left.
func probeData(bc *backendConn, t time.Duration) (open func() (net.Conn, error), release func(), err error) {
	if bc.DataToBackend != DataActive {
		rep, err := bc.roundTrip(ftpctl.Command{Verb: "PASV"}, t)
		if err != nil {
			return nil, nil, fmt.Errorf("probe PASV: %w", err)
		}
		if rep.Code == ftpctl.CodeEnteringPassive {
			ap, err := ftpctl.ParsePASV(rep.Text())
			if err != nil {
				return nil, nil, fmt.Errorf("probe PASV: %w", err)
			}
			d := net.Dialer{Timeout: t, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(bc.localIP, 0))}
			data, err := d.Dial("tcp", netip.AddrPortFrom(bc.ip, ap.Port()).String())
			if err != nil {
				return nil, nil, fmt.Errorf("probe data connection: %w", err)
			}
			return func() (net.Conn, error) { return data, nil }, func() { data.Close() }, nil
		}
		if bc.DataToBackend == DataPassive || rep.Code.Class() != ftpctl.ClassPermanent {
			return nil, nil, fmt.Errorf("probe PASV: %w", &ftpctl.ReplyError{Command: "PASV", Reply: rep})
		}
	}
	ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(bc.localIP, 0)))
	if err != nil {
		return nil, nil, fmt.Errorf("probe data listener: %w", err)
	}
	ap := netip.AddrPortFrom(bc.localIP, uint16(ln.Addr().(*net.TCPAddr).Port))
	cmd := ftpctl.Command{Verb: "PORT", Arg: ftpctl.FormatPORT(ap)}
	if !ap.Addr().Is4() {
		cmd = ftpctl.Command{Verb: "EPRT", Arg: ftpctl.FormatEPRT(ap)}
	}
	rep, err := bc.roundTrip(cmd, t)
	if err == nil && rep.Code.Class() != ftpctl.ClassCompletion {
		err = &ftpctl.ReplyError{Command: cmd.Verb, Reply: rep}
	}
	if err != nil {
		ln.Close()
		return nil, nil, fmt.Errorf("probe %s: %w", cmd.Verb, err)
	}
	var data net.Conn
	open = func() (net.Conn, error) {
		if data != nil {
			return data, nil
		}
		ln.SetDeadline(time.Now().Add(t))
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return nil, err
			}
			if addrOf(c.RemoteAddr()) == bc.ip {
				data = c
				return c, nil
			}
			c.Close() // not the backend
		}
	}
	release = func() {
		ln.Close()
		if data != nil {
			data.Close()
		}
	}
	return open, release, nil
}

var errNoCandidate = errors.New("proxy: no backend could be reached")
