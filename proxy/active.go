package proxy

import (
	"net"
	"net/netip"
	"strings"

	"github.com/ftpsgate/ftpsgate/ftpctl"
)

// active answers PORT and EPRT (RFC 959 section 4.1.2, RFC 2428 section
// 2). An address that passes the bounce checks gets the backend's half of
// the data channel set up as data_to_backend says; the proxy dials the
// client once the transfer command has reached the backend.
func (s *session) active(cmd ftpctl.Command) error {
	switch {
	case s.epsvAll:
		// RFC 2428 section 4: after EPSV ALL only EPSV sets up data connections.
		return s.reply(ftpctl.CodeBadSequence, cmd.Verb+" not allowed after EPSV ALL.")
	case s.cfg.RequireDataProtection && s.prot != 'P':
		return s.reply(ftpctl.CodePolicyDenied, "Data connections must be protected: use PROT P.")
	}
	ap, refusal, ok := s.activeAddress(cmd)
	if !ok {
		return s.send(refusal)
	}
	if reason := s.bounce(ap); reason != "" {
		// The FTP bounce attack (RFC 2577 section 3). 504, "command not
		// implemented for that parameter" (RFC 959), is what RFC 2577 suggests
		// for a privileged port, and says the truth for a foreign address
		// too: the command is well-formed, so 500 and 501 (syntax errors)
		// would mislead; RFC 2428 assigns EPRT only 522, for the family.
		s.log.Warn().Str("verb", cmd.Verb).Stringer("address", ap).Str("reason", reason).
			Msg("active data address refused (FTP bounce)")
		return s.reply(ftpctl.CodeParamNotImpl, cmd.Verb+" refused: "+reason+".")
	}
	s.dropData()
	back, backMode, err := s.backendEnd(DataActive)
	if err != nil || back == nil {
		return err // a refusal has been answered
	}
	client := &dialEnd{
		party:      partyClient,
		target:     ap,
		from:       netip.AddrPortFrom(s.localIP, s.cfg.ActiveSourcePort),
		afterStart: true,
		timeout:    s.cfg.Timeouts.dataConnect(),
		log:        s.log,
	}
	s.data = s.openData(client, DataActive, back, backMode)
	s.log.Debug().Stringer("client_address", ap).Stringer("backend_data", backMode).Msg("active")
	return s.reply(ftpctl.CodeOK, cmd.Verb+" command successful.")
}

// activeAddress parses the address of PORT or EPRT. The address family must
// be that of the control connection (522 otherwise, RFC 2428 section 2):
// the data connection is dialled from the proxy's side of it.
//
// An unspecified address (0.0.0.0, ::) stands for the client's own: lftp
// sends EPRT |2|::|port| when its data socket listens on the wildcard, and
// taken literally it would have the proxy connect to its own host.
func (s *session) activeAddress(cmd ftpctl.Command) (netip.AddrPort, ftpctl.Reply, bool) {
	want := familyOf(s.clientIP)
	var (
		ap  netip.AddrPort
		err error
	)
	if cmd.Verb == "PORT" {
		if want != "1" {
			return ap, ftpctl.NewReply(ftpctl.CodeNetProtoNotSupp, "PORT needs IPv4: use EPRT."), false
		}
		if ap, err = ftpctl.ParsePORT(cmd.Arg); err != nil {
			return ap, ftpctl.NewReply(ftpctl.CodeArgSyntaxError, "Syntax error in PORT argument."), false
		}
	} else {
		if fam, ok := eprtFamily(cmd.Arg); ok && fam != want {
			return ap, ftpctl.NewReply(ftpctl.CodeNetProtoNotSupp, "Network protocol not supported, use ("+want+")"), false
		}
		if ap, err = ftpctl.ParseEPRT(cmd.Arg); err != nil {
			return ap, ftpctl.NewReply(ftpctl.CodeArgSyntaxError, "Syntax error in EPRT argument."), false
		}
	}
	if ap.Addr().IsUnspecified() {
		ap = netip.AddrPortFrom(s.clientIP, ap.Port())
	}
	return ap, ftpctl.Reply{}, true
}

// eprtFamily returns the network protocol field of an EPRT argument shaped
// "|x|y|z|" with any delimiter (RFC 2428 section 2).
func eprtFamily(arg string) (string, bool) {
	arg = strings.TrimSpace(arg)
	if len(arg) < 4 || arg[0] != arg[len(arg)-1] {
		return "", false
	}
	f := strings.Split(arg[1:len(arg)-1], arg[:1])
	if len(f) != 3 {
		return "", false
	}
	return f[0], true
}

// bounce returns why an active data address is refused, or "". A client
// may name only its own address, and never a privileged port: otherwise it
// could make the proxy connect anywhere its network reaches and send
// anything it uploaded there (RFC 2577 section 3). AllowForeignDataAddress
// lifts the first rule, never the second.
func (s *session) bounce(ap netip.AddrPort) string {
	switch {
	case ap.Port() < 1024:
		return "data port must be 1024 or above"
	case ap.Addr().Unmap() != s.clientIP && !s.cfg.AllowForeignDataAddress:
		return "data address must be your own"
	}
	return ""
}

// backendActive opens a port on the proxy's side of the backend control
// connection and sends the backend PORT (EPRT toward IPv6) with it, so
// that the backend connects there for the next transfer. Only a connection
// from the backend's control IP is taken. A refusal is returned as the
// reply with a nil end.
func (s *session) backendActive() (dataEnd, ftpctl.Reply, error) {
	ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(s.backend.localIP, 0)))
	if err != nil {
		s.log.Error().Err(err).Msg("no port for the backend's data connection")
		return nil, ftpctl.NewReply(ftpctl.CodeCannotOpenData, "Can't open data connection."), nil
	}
	ap := netip.AddrPortFrom(s.backend.localIP, uint16(ln.Addr().(*net.TCPAddr).Port))
	cmd := ftpctl.Command{Verb: "PORT", Arg: ftpctl.FormatPORT(ap)}
	if !ap.Addr().Is4() {
		cmd = ftpctl.Command{Verb: "EPRT", Arg: ftpctl.FormatEPRT(ap)}
	}
	rep, err := s.backend.roundTrip(cmd, s.cfg.Timeouts.idle())
	if err != nil {
		ln.Close()
		return nil, rep, s.backendLost(err)
	}
	if rep.Code.Class() != ftpctl.ClassCompletion {
		ln.Close()
		return nil, rep, nil
	}
	return newListenEnd(partyBackend, ln, func() {}, s.backend.ip, true, s.cfg.Timeouts.dataConnect(), s.log), rep, nil
}
