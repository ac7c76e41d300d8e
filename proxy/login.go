package proxy

import (
	"context"
	"time"

	"github.com/ftpsgate/ftpsgate/ftpctl"
)

// phase is where a session stands in its login (RFC 959 section 4.1.1:
// USER, PASS, and ACCT when the server asks for it).
type phase uint8

const (
	phaseConnected phase = iota // no name yet, or the last login was refused: no backend
	phaseNamed                  // USER answered 331 by the proxy: a name waits for PASS, no backend
	phaseAccount                // the backend asked for ACCT (332): it is dialled, not logged in
	phaseLoggedIn               // the backend said 230 to the name in session.user
)

func (p phase) String() string {
	switch p {
	case phaseConnected:
		return "connected"
	case phaseNamed:
		return "named"
	case phaseAccount:
		return "account"
	}
	return "logged-in"
}

// loginStep is what one login command does in one phase.
type loginStep func(*session, ftpctl.Command) error

// loginSteps is the login state machine: what USER, PASS, ACCT and REIN
// do in each phase. The phase changes nowhere else than in the steps named
// here, and nothing but the phase says whether the session is logged in.
//
// Nothing a client sends before its password is stored or reserved: USER
// is answered by the proxy, and the backend is dialled only for PASS, so a
// stranger who never sends one holds no backend connection. The name that
// reaches logs, limits, pins and the status page is the one the backend
// accepted with its 230, and nothing afterwards changes it.
var loginSteps = [...]map[string]loginStep{
	phaseConnected: {
		"USER": (*session).userStep,
		"PASS": outOfOrder("Login with USER first."),
		"ACCT": outOfOrder("Login with USER first."),
		"REIN": (*session).rein,
	},
	phaseNamed: {
		"USER": (*session).userStep, // another name: the last one is forgotten
		"PASS": (*session).passStep,
		"ACCT": outOfOrder("Send PASS first."),
		"REIN": (*session).rein,
	},
	phaseAccount: {
		"USER": (*session).userStep, // starts over: the backend is let go
		"PASS": outOfOrder("Send ACCT: the server asked for an account."),
		"ACCT": (*session).acctStep,
		"REIN": (*session).rein,
	},
	phaseLoggedIn: {
		// RFC 959 lets a server refuse USER after login; vsftpd says 530
		// too. Relaying it would let a backend's answer rename the session.
		"USER": (*session).userAfterLogin,
		"PASS": outOfOrder("Already logged in."),
		"ACCT": (*session).relay, // an account for storage (RFC 959 section 4.1.1)
		"REIN": (*session).rein,
	},
}

// maxUserName bounds a user name: longer than any real one (Linux allows
// 32 bytes, an e-mail address 254), short enough that a stranger's name
// costs little in logs and, once accepted, as an affinity key.
const maxUserName = 256

// login runs the login state machine's step for cmd.
func (s *session) login(cmd ftpctl.Command) error {
	return loginSteps[s.phase][cmd.Verb](s, cmd)
}

// setPhase is the one place the login phase changes.
func (s *session) setPhase(p phase) {
	if p == phaseLoggedIn && s.loginPlace {
		s.srv.admission.give(s.addr, loginPlace) // another of its address may log in
		s.loginPlace = false
	}
	s.phase = p
}

// outOfOrder answers a login command sent in a phase where it means
// nothing.
func outOfOrder(text string) loginStep {
	return func(s *session, _ ftpctl.Command) error {
		return s.reply(ftpctl.CodeBadSequence, text)
	}
}

// userStep takes a name for the login to come and asks for the password;
// no backend hears of it until PASS.
func (s *session) userStep(cmd ftpctl.Command) error {
	switch name := cmd.Arg; {
	case name == "":
		return s.reply(ftpctl.CodeArgSyntaxError, "USER needs a user name.")
	case len(name) > maxUserName:
		s.log.Warn().Str("limit", limitUserName).Int("bytes", len(name)).Msg("user name too long")
		s.cfg.Metrics.limitHit(limitUserName)
		return s.reply(ftpctl.CodeArgSyntaxError, "User name too long.")
	case s.ctl != protected && !s.cfg.PlainAllowed:
		s.log.Warn().Str("tried_user", name).Msg("login refused: no TLS")
		return s.reply(ftpctl.CodeNotLoggedIn, "TLS required: send AUTH TLS before USER.")
	}
	if s.backend != nil { // phaseAccount: a new login starts from nothing
		s.dropBackend()
	}
	s.tried = cmd.Arg
	s.setPhase(phaseNamed)
	return s.reply(ftpctl.CodeNeedPassword, "Please specify the password.")
}

// passStep logs in: the backend is chosen (routes and user_hash by the
// name) and dialled now, and told USER and then PASS; its verdict is the
// answer to the client's PASS. A backend that logs the name in without a
// password (230 to USER) is not sent the password at all.
func (s *session) passStep(cmd ftpctl.Command) error {
	if err := s.connectBackend(); err != nil {
		return err
	}
	rep, err := s.backend.roundTrip(ftpctl.Command{Verb: "USER", Arg: s.tried}, s.cfg.Timeouts.idle())
	if err != nil {
		return s.backendLost(err)
	}
	if rep.Code == ftpctl.CodeNeedPassword {
		if rep, err = s.loginReply(cmd); err != nil {
			return err
		}
	}
	// Else 230 (no password needed), 332 (an account first), or a
	// refusal of the name: either way the answer to the client's PASS.
	return s.loginVerdict(rep)
}

// acctStep relays the account the backend asked for.
func (s *session) acctStep(cmd ftpctl.Command) error {
	rep, err := s.loginReply(cmd)
	if err != nil {
		return err
	}
	return s.loginVerdict(rep)
}

// loginReply sends the backend a login command and returns its final
// reply, relaying any 1xx before it; the final one is loginVerdict's to
// send.
func (s *session) loginReply(cmd ftpctl.Command) (ftpctl.Reply, error) {
	if err := s.backend.send(cmd, s.cfg.Timeouts.idle()); err != nil {
		return ftpctl.Reply{}, s.backendLost(err)
	}
	for {
		rep, err := s.backend.readReply()
		if err != nil {
			return rep, s.backendLost(err)
		}
		if rep.Code.Final() {
			return rep, nil
		}
		if err := s.send(rep); err != nil {
			return rep, err
		}
	}
}

// loginVerdict follows the backend's final reply to a login and sends it
// to the client: 230 logs in (before the client hears of it, so that
// whatever it does next finds the session logged in and pinned), 332
// waits for ACCT, and anything else is a refused login that lets the
// backend go.
func (s *session) loginVerdict(rep ftpctl.Reply) error {
	switch rep.Code {
	case ftpctl.CodeLoggedIn:
		s.loggedIn()
		if err := s.send(rep); err != nil {
			return err
		}
		return s.learnFeatures()
	case ftpctl.CodeNeedAccount:
		s.setPhase(phaseAccount)
		return s.send(rep)
	case ftpctl.CodeNotAvailable:
		s.send(rep)
		s.log.Warn().Str("text", rep.Text()).Msg("backend closing the session")
		return errBackendLost
	}
	if err := s.send(rep); err != nil {
		return err
	}
	s.log.Warn().Str("tried_user", s.tried).Int("code", int(rep.Code)).Msg("login failed")
	s.cfg.Metrics.login(false)
	s.dropBackend()
	s.tried = ""
	s.setPhase(phaseConnected)
	if s.failedLogins++; s.failedLogins >= s.cfg.Limits.maxFailedLogins() {
		s.log.Warn().Str("limit", limitFailedLogins).Int("failed", s.failedLogins).Msg("too many failed logins")
		s.cfg.Metrics.limitHit(limitFailedLogins)
		s.reply(ftpctl.CodeNotAvailable, "Too many failed logins, closing control connection.")
		return errLoginFailures
	}
	return nil
}

// loggedIn makes the name the backend accepted the session's user, for
// good, and only now pins it to its backend.
func (s *session) loggedIn() {
	s.user, s.tried = s.tried, ""
	s.setPhase(phaseLoggedIn)
	s.log = s.log.With().Str("user", s.user).Logger()
	s.log.Info().Msg("login")
	s.cfg.Metrics.login(true)
	if key := s.affinityKey(s.pool); key != "" {
		s.pin(key, s.member)
	}
}

// learnFeatures asks the backend the session has just logged in to for
// its features, while nobody knows them: a backend that refuses FEAT
// before login (GNU inetutils ftpd: 530) tells them now, and the proxy's
// own FEAT has them before login from the next session on (lftp asks only
// then). Once known, no session asks again.
func (s *session) learnFeatures() error {
	if s.member.knowsFeatures() {
		return nil
	}
	rep, err := s.backend.roundTrip(ftpctl.Command{Verb: "FEAT"}, s.cfg.Timeouts.idle())
	if err != nil {
		return s.backendLost(err)
	}
	if feats, ok := featuresOf(rep); ok && s.member.learnFeatures(feats, featuresFromLogin) {
		s.log.Info().Str("source", featuresFromLogin).Strs("features", feats).Msg("backend features")
	}
	return nil
}

// userAfterLogin refuses a change of user: the session stays who the
// backend accepted.
func (s *session) userAfterLogin(cmd ftpctl.Command) error {
	tried := cmd.Arg
	if len(tried) > maxUserName {
		tried = tried[:maxUserName]
	}
	s.log.Warn().Str("tried_user", tried).Msg("change of user refused")
	return s.reply(ftpctl.CodeNotLoggedIn, "Already logged in: cannot change to another user.")
}

// rein refuses REIN: it would reset TLS state as well (RFC 4217 section
// 13), and a new login is a new connection.
func (s *session) rein(ftpctl.Command) error {
	return s.reply(ftpctl.CodeNotImplemented, "REIN not supported: reconnect to log in again.")
}

// connectBackend chooses the session's pool (route) and backend for the
// name it is logging in with, by affinity pin first, then by the pool's
// policy, dials it and fails over to the next candidates. It then replays
// what the client said before there was a backend.
func (s *session) connectBackend() error {
	p := s.gen.poolFor(s.sni, s.host, s.tried)
	limit := len(p.members)
	if r := s.cfg.Balance.Retries; r > 0 {
		limit = min(limit, 1+r)
	}
	cands := p.candidates(choice{clientIP: s.clientIP.String(), user: s.tried}, limit)
	if key := s.affinityKey(p); key != "" {
		cands = s.pinnedFirst(p, key, cands)
	}
	for _, m := range cands {
		bc, err := dialBackend(s.ctx, m.Backend, s.cfg.Timeouts.backendDial(), s.cfg.MaxLine, s.origin())
		if err != nil {
			if s.ctx.Err() != nil {
				return errShutdown
			}
			s.cfg.Metrics.dialError(p, m)
			s.srv.eject(s.log, s.cfg.Health, m, err)
			continue
		}
		m.reached()
		m.active.Add(1)
		s.pool, s.member, s.backend = p, m, bc
		s.stopBackend = context.AfterFunc(s.ctx, func() { bc.conn.Close() })
		bc.epsv = !bc.ip.Is4()
		s.unroutedLog = s.log
		s.log = s.log.With().Str("backend", m.name()).Logger()
		if p != s.gen.pool {
			s.log = s.log.With().Str("route", p.name).Logger()
		}
		if s.host != "" && m.supports("HOST") {
			s.replay(ftpctl.Command{Verb: "HOST", Arg: s.host})
		}
		if s.utf8 {
			s.replay(ftpctl.Command{Verb: "OPTS", Arg: "UTF8 ON"})
		}
		return nil
	}
	s.log.Error().Str("pool", p.name).Int("tried", len(cands)).Msg("no backend reachable")
	s.reply(ftpctl.CodeNotAvailable, "No backend available, closing control connection.")
	return errNoBackend
}

// dropBackend lets the backend of a login that did not succeed go: a
// session that is not logged in holds none.
func (s *session) dropBackend() {
	bc := s.backend
	if bc == nil {
		return
	}
	s.stopBackend()
	bc.send(ftpctl.Command{Verb: "QUIT"}, time.Second) // politely; its answer does not matter
	bc.conn.Close()
	s.member.active.Add(-1)
	s.pool, s.member, s.backend, s.stopBackend = nil, nil, nil, nil
	s.log = s.unroutedLog
}

// affinityKey is the key of the session's pin in pool p, or "" without
// affinity.
func (s *session) affinityKey(p *pool) string {
	switch s.cfg.Balance.Affinity {
	case SourceAffinity:
		return p.name + "|ip:" + s.clientIP.String()
	case UserAffinity:
		return p.name + "|user:" + s.routedName()
	}
	return ""
}

// pinnedFirst moves the backend the session is pinned to, if any, to the
// front of the candidates. A pin whose backend is unavailable is dropped
// for the policy's choice, which is pinned instead once the login
// succeeds.
func (s *session) pinnedFirst(p *pool, key string, cands []*member) []*member {
	ctx, cancel := context.WithTimeout(s.ctx, time.Second)
	defer cancel()
	name, ok, err := s.srv.store.Get(ctx, key)
	if err != nil {
		s.log.Warn().Err(err).Msg("affinity store unavailable: choosing by policy")
		s.cfg.Metrics.storeError("get")
		return cands
	}
	if !ok {
		return cands
	}
	m := p.lookup(name)
	switch {
	case m == nil:
		s.log.Info().Str("pinned", name).Msg("affinity pin to a removed backend: re-pinning")
	case !m.available(time.Now()):
		s.log.Info().Str("pinned", name).Msg("affinity pin to an unavailable backend: re-pinning")
	default:
		out := []*member{m}
		for _, c := range cands {
			if c != m {
				out = append(out, c)
			}
		}
		return out
	}
	return cands
}

// pin records (or refreshes) the session's backend under key.
func (s *session) pin(key string, m *member) {
	ctx, cancel := context.WithTimeout(s.ctx, time.Second)
	defer cancel()
	if err := s.srv.store.Set(ctx, key, m.name(), s.cfg.Balance.affinityTTL()); err != nil {
		s.log.Warn().Err(err).Msg("affinity pin not stored")
		s.cfg.Metrics.storeError("set")
	}
}

// replay sends the backend a command the proxy already answered; the
// backend's answer does not matter to the client.
func (s *session) replay(cmd ftpctl.Command) {
	if rep, err := s.backend.roundTrip(cmd, s.cfg.Timeouts.idle()); err != nil || rep.Code.Class() != ftpctl.ClassCompletion {
		s.log.Debug().Err(err).Str("command", cmd.Verb).Int("code", int(rep.Code)).Msg("backend declined replayed command")
	}
}
