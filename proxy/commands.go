package proxy

import (
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/ftpsgate/ftpsgate/ftpctl"
)

// need is what a command requires of the session before it may run.
type need uint8

const (
	anytime  need = iota
	loggedIn      // the backend said 230
)

type rule struct {
	need need
	do   func(*session, ftpctl.Command) error
}

// commands is the proxy's whole policy: what happens to each verb. A verb
// not listed is relayed verbatim once logged in, and refused with 530
// before that.
var commands = map[string]rule{
	"AUTH": {do: (*session).auth},                    // TLS ends here, RFC 4217 section 4
	"PBSZ": {do: (*session).pbsz},                    // answered locally: never reaches the backend
	"PROT": {do: (*session).protect},                 // answered locally
	"CCC":  {need: loggedIn, do: (*session).ccc},     // TLS off after login, if tls.allow_ccc: RFC 4217 section 6
	"FEAT": {do: (*session).feat},                    // ours merged with the backend's
	"NOOP": {do: (*session).noop},                    // answered locally
	"QUIT": {do: (*session).quit},                    // answered locally, backend told politely
	"USER": {do: (*session).login},                   // answered locally: loginSteps (login.go)
	"PASS": {do: (*session).login},                   // backend dialled here; never logged
	"ACCT": {do: (*session).login},                   // never logged
	"REIN": {do: (*session).login},                   // refused: a new login is a new connection
	"HOST": {do: (*session).hostCmd},                 // remembered, replayed to the backend
	"OPTS": {do: (*session).opts},                    // UTF8 ON remembered before login
	"SYST": {do: (*session).syst},                    // local before login, the backend's after
	"PASV": {need: loggedIn, do: (*session).passive}, // 227 rewritten: the client connects to the proxy
	"EPSV": {need: loggedIn, do: (*session).passive}, // 229 rewritten
	"PORT": {need: loggedIn, do: (*session).active},  // bounce-checked: the proxy dials the client
	"EPRT": {need: loggedIn, do: (*session).active},  // bounce-checked, RFC 2428
	"LPRT": {do: (*session).refuseLong},
	"LPSV": {do: (*session).refuseLong},
	"ADAT": {do: (*session).notImplemented},
	"MIC":  {do: (*session).notImplemented},
	"CONF": {do: (*session).notImplemented},
	"ENC":  {do: (*session).notImplemented},
	"RETR": {need: loggedIn, do: (*session).transfer},
	"LIST": {need: loggedIn, do: (*session).transfer},
	"NLST": {need: loggedIn, do: (*session).transfer},
	"MLSD": {need: loggedIn, do: (*session).transfer},
	"STOR": {need: loggedIn, do: (*session).transfer},
	"STOU": {need: loggedIn, do: (*session).transfer},
	"APPE": {need: loggedIn, do: (*session).transfer},
}

// transferDirection is the way data flows for each data-transfer verb.
var transferDirection = map[string]direction{
	"RETR": download, "LIST": download, "NLST": download, "MLSD": download,
	"STOR": upload, "STOU": upload, "APPE": upload,
}

func (s *session) dispatch(cmd ftpctl.Command) error {
	r, ok := commands[cmd.Verb]
	if !ok {
		if s.phase != phaseLoggedIn {
			return s.reply(ftpctl.CodeNotLoggedIn, "Please log in with USER and PASS.")
		}
		return s.relay(cmd)
	}
	if r.need == loggedIn && s.phase != phaseLoggedIn {
		return s.reply(ftpctl.CodeNotLoggedIn, "Please log in with USER and PASS.")
	}
	return r.do(s, cmd)
}

// auth starts TLS on the control connection (RFC 4217 section 4).
func (s *session) auth(cmd ftpctl.Command) error {
	mech := strings.ToUpper(strings.TrimSpace(cmd.Arg))
	switch {
	case s.ctl == protected:
		return s.reply(ftpctl.CodeBadSequence, "Already using TLS.")
	case s.ctl == cleared:
		return s.reply(ftpctl.CodeBadSequence, "TLS cannot start again after CCC.")
	case s.phase != phaseConnected:
		return s.reply(ftpctl.CodeBadSequence, "AUTH must come before USER.")
	case mech != "TLS" && mech != "TLS-C" && mech != "SSL" && mech != "TLS-P":
		return s.reply(ftpctl.CodeParamNotImpl, "AUTH type not supported; use AUTH TLS.")
	}
	if err := s.reply(ftpctl.CodeAuthOK, "AUTH "+mech+" successful."); err != nil {
		return err
	}
	// Bytes behind AUTH that arrived before the handshake: a ClientHello sent
	// eagerly belongs to TLS; anything else is plaintext that an attacker on
	// the path could have injected, and must not be run as commands after
	// TLS (the STARTTLS injection class, CVE-2011-0411).
	var pending []byte
	if n := s.br.Buffered(); n > 0 {
		b, _ := s.br.Peek(n)
		if b[0] != 0x16 {
			s.log.Warn().Int("bytes", n).Msg("plaintext pipelined behind AUTH refused; closing")
			return errInjection
		}
		pending = append([]byte(nil), b...)
	}
	if err := s.startTLS(pending); err != nil {
		return err
	}
	// State learned in plaintext is not trusted after TLS.
	s.prot, s.host, s.utf8 = 'C', "", false
	if mech == "SSL" || mech == "TLS-P" {
		// Pre-RFC 4217 clients expect AUTH SSL to protect data as well.
		s.prot = 'P'
	}
	return nil
}

func (s *session) pbsz(cmd ftpctl.Command) error {
	if s.ctl == unprotected {
		return s.reply(ftpctl.CodeBadSequence, "PBSZ requires AUTH TLS first.")
	}
	// TLS is a streaming protection mechanism: the buffer size is 0
	// whatever the client asked (RFC 4217 section 8).
	return s.reply(ftpctl.CodeOK, "PBSZ=0")
}

func (s *session) protect(cmd ftpctl.Command) error {
	if s.ctl == unprotected {
		return s.reply(ftpctl.CodeBadSequence, "PROT requires AUTH TLS first.")
	}
	switch level := strings.ToUpper(strings.TrimSpace(cmd.Arg)); level {
	case "C":
		if s.cfg.RequireDataProtection {
			return s.reply(ftpctl.CodePolicyDenied, "Data connections must be protected: use PROT P.")
		}
		s.prot = 'C'
		return s.reply(ftpctl.CodeOK, "Protection level set to Clear.")
	case "P":
		s.prot = 'P'
		return s.reply(ftpctl.CodeOK, "Protection level set to Private.")
	case "S", "E":
		return s.reply(ftpctl.CodeProtNotSupported, "Protection level not supported.")
	}
	return s.reply(ftpctl.CodeParamNotImpl, "Unknown protection level.")
}

// ownFeatures are the features the proxy itself provides, whatever the
// backend has.
var ownFeatures = []string{"AUTH TLS", "AUTH SSL", "PBSZ", "PROT", "PASV", "EPSV", "EPRT"}

// notRelayedFeatures are backend features the proxy answers for, or cannot
// pass on: security and data-connection ones.
var notRelayedFeatures = []string{"AUTH", "PBSZ", "PROT", "CCC", "ADAT", "PASV", "EPSV", "EPRT", "LPSV", "LPRT", "SPSV", "HOST", "SSCN", "CPSV"}

func (s *session) feat(ftpctl.Command) error {
	feats := slices.Clone(ownFeatures)
	if s.cfg.AllowCCC {
		feats = append(feats, "CCC")
	}
	if common, ok := s.gen.poolFor(s.sni, s.host, s.routedName()).commonFeatures(); ok {
		// What every backend of the pool has in common, as its health
		// checks found: the session might be on any of them.
		for _, f := range common {
			if !slices.Contains(notRelayedFeatures, ftpctl.FeatureName(f)) {
				feats = append(feats, f)
			}
		}
	} else if s.backend != nil {
		rep, err := s.backend.roundTrip(ftpctl.Command{Verb: "FEAT"}, s.cfg.Timeouts.idle())
		if err != nil {
			return s.backendLost(err)
		}
		for _, f := range ftpctl.ParseFeat(rep) {
			if !slices.Contains(notRelayedFeatures, ftpctl.FeatureName(f)) {
				feats = append(feats, f)
			}
		}
	}
	if s.phase == phaseConnected && s.host == "" {
		feats = append(feats, "HOST")
	}
	return s.send(ftpctl.FeatReply(feats))
}

func (s *session) noop(ftpctl.Command) error {
	return s.reply(ftpctl.CodeOK, "NOOP ok.")
}

func (s *session) quit(ftpctl.Command) error {
	// Politely, but without waiting long for a backend that won't answer,
	// also one still to answer a PASV asked ahead.
	if s.backend != nil && s.backend.waitFor(time.Second) {
		s.backend.roundTrip(ftpctl.Command{Verb: "QUIT"}, time.Second)
	}
	s.reply(ftpctl.CodeClosing, "Goodbye.")
	return errQuit
}

func (s *session) hostCmd(cmd ftpctl.Command) error {
	if s.phase != phaseConnected {
		return s.reply(ftpctl.CodeBadSequence, "HOST must come before USER.")
	}
	s.host = strings.TrimSpace(cmd.Arg)
	return s.reply(ftpctl.CodeReady, "HOST accepted.")
}

func (s *session) opts(cmd ftpctl.Command) error {
	if s.phase == phaseLoggedIn {
		return s.relay(cmd)
	}
	if strings.EqualFold(strings.TrimSpace(cmd.Arg), "UTF8 ON") {
		s.utf8 = true
		return s.reply(ftpctl.CodeOK, "UTF8 set to on.")
	}
	return s.reply(ftpctl.CodeNotLoggedIn, "Please log in with USER and PASS.")
}

func (s *session) syst(cmd ftpctl.Command) error {
	if s.phase == phaseLoggedIn {
		return s.relay(cmd)
	}
	return s.reply(215, "UNIX Type: L8")
}

// refuseLong answers LPRT and LPSV (RFC 1639), which no client needs:
// EPRT and EPSV do the same for IPv4 and IPv6.
func (s *session) refuseLong(cmd ftpctl.Command) error {
	if cmd.Verb == "LPRT" {
		return s.reply(ftpctl.CodeNotImplemented, "LPRT is not supported: use EPRT or PORT.")
	}
	return s.reply(ftpctl.CodeNotImplemented, "LPSV is not supported: use EPSV or PASV.")
}

func (s *session) notImplemented(ftpctl.Command) error {
	return s.reply(ftpctl.CodeNotImplemented, "Command not implemented.")
}

// relay sends cmd to the backend and forwards every reply to it.
func (s *session) relay(cmd ftpctl.Command) error {
	_, err := s.relayReply(cmd)
	return err
}

// relayReply is relay that also returns the final reply.
func (s *session) relayReply(cmd ftpctl.Command) (ftpctl.Reply, error) {
	if err := s.backend.send(cmd, s.cfg.Timeouts.idle()); err != nil {
		return ftpctl.Reply{}, s.backendLost(err)
	}
	for {
		rep, err := s.backend.readReply()
		if err != nil {
			return rep, s.backendLost(err)
		}
		if err := s.send(rep); err != nil {
			return rep, err
		}
		if rep.Code == ftpctl.CodeNotAvailable {
			s.log.Warn().Str("text", rep.Text()).Msg("backend closing the session")
			return rep, errBackendLost
		}
		if rep.Code.Final() {
			return rep, nil
		}
	}
}

// backendLost tells the client that the backend went away and ends the
// session.
func (s *session) backendLost(err error) error {
	if errors.Is(err, errClientClosed) {
		return err
	}
	var pe *ftpctl.ProtocolError
	if errors.As(err, &pe) || errors.Is(err, errTooManyPreliminary) {
		s.log.Warn().Err(err).Msg("backend sent a malformed reply")
	} else {
		s.log.Warn().Err(err).Msg("backend connection lost")
	}
	s.reply(ftpctl.CodeNotAvailable, "Backend connection lost, closing control connection.")
	return errors.Join(errBackendLost, err)
}
