package proxy

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"syscall"

	"github.com/ftpsgate/ftpsgate/ftpctl"
)

// passive answers PASV and EPSV (RFC 959 section 4.1.1, RFC 2428 section
// 3): the backend's half of the data channel is set up as data_to_backend
// says, and the client is told to connect to a port of the proxy's.
func (s *session) passive(cmd ftpctl.Command) error {
	extended := cmd.Verb == "EPSV"
	arg := strings.ToUpper(strings.TrimSpace(cmd.Arg))
	switch {
	case extended && arg == "ALL":
		// RFC 2428 section 4: from now on only EPSV sets up data connections.
		s.epsvAll = true
		return s.reply(ftpctl.CodeOK, "EPSV ALL ok.")
	case extended && arg != "" && arg != familyOf(s.announced()):
		return s.reply(ftpctl.CodeNetProtoNotSupp, "Network protocol not supported, use ("+familyOf(s.announced())+")")
	case !extended && s.epsvAll:
		return s.reply(ftpctl.CodeBadSequence, "PASV not allowed after EPSV ALL.")
	case s.cfg.RequireDataProtection && s.prot != 'P':
		return s.reply(ftpctl.CodePolicyDenied, "Data connections must be protected: use PROT P.")
	}
	listenIP, announce := s.localIP, netip.Addr{}
	if !extended {
		if announce = s.pasvAddress(); !announce.IsValid() {
			// A 227 reply carries only an IPv4 address (RFC 2428 section 1).
			return s.reply(ftpctl.CodeNetProtoNotSupp, "PASV needs IPv4: use EPSV.")
		}
		if !s.localIP.Is4() {
			// PASV on an IPv6 control connection, answered with public_host:
			// the client's data connection comes over IPv4.
			listenIP = announce
		}
	}
	s.dropData()
	back, backMode, err := s.backendEnd(DataPassive)
	if err != nil || back == nil {
		return err // a refusal has been answered
	}
	reach := s.announced() // what the client connects to
	if !extended {
		reach = announce
	}
	client, err := s.listenClient(listenIP, reach)
	if err != nil {
		back.release()
		if errors.Is(err, errNoPassivePort) {
			s.log.Warn().Err(err).Str("limit", limitPassivePorts).Stringer("passive_ports", s.cfg.PassivePorts).
				Int("in_use", s.srv.ports.inUseCount()).Msg("passive ports exhausted")
			s.cfg.Metrics.limitHit(limitPassivePorts)
		} else {
			s.log.Error().Err(err).Msg("no passive port")
		}
		return s.reply(ftpctl.CodeCannotOpenData, "Can't open passive connection.")
	}
	s.data = s.openData(client, DataPassive, back, backMode)
	s.log.Debug().Uint16("port", client.port()).Stringer("backend_data", backMode).Msg("passive")
	if extended {
		return s.reply(ftpctl.CodeEnteringExtPassive, ftpctl.FormatEPSV(client.port()))
	}
	return s.reply(ftpctl.CodeEnteringPassive, ftpctl.FormatPASV(netip.AddrPortFrom(announce, client.port())))
}

// pasvAddress is the address a 227 reply announces to this client: that of
// the first passive_address entry whose networks hold the client, else
// public_host, else the address the client reached. Zero when none is IPv4
// (an IPv6 control connection and no public_host).
func (s *session) pasvAddress() netip.Addr {
	for _, pa := range s.cfg.PassiveAddresses {
		for _, p := range pa.Clients {
			if p.Contains(s.clientIP) {
				return pa.Address.Unmap()
			}
		}
	}
	if s.cfg.PublicHost.IsValid() {
		return s.cfg.PublicHost.Unmap()
	}
	if ip := s.announced(); ip.Is4() {
		return ip
	}
	return netip.Addr{}
}

// listenClient opens the port, from passive_ports, that a passive client
// connects to, on ip: the address the client reached, or for PASV on IPv6
// the announced IPv4 address, or any local IPv4 address when that one is
// not the host's own (NAT). reach is the address the client is told to
// connect to (a balancer's, when one is in front).
func (s *session) listenClient(ip, reach netip.Addr) (*listenEnd, error) {
	from := s.dataPeer()
	// The family the checked source arrives in: the client's connects to
	// reach; a balancer's, to ip.
	seen := reach
	if from != s.clientIP {
		seen = ip
	}
	if s.cfg.PassivePortSharing && seen.Is4() == from.Is4() && s.dataTrust() == nil {
		// A shared port tells sessions apart by the connection's source,
		// before anything is read: not by a PROXY header, so with
		// data_proxy_protocol each session keeps a port of its own.
		c, err := s.srv.ports.listenShared(ip, from, s.srv.logger)
		if err != nil && ip != s.localIP && errors.Is(err, syscall.EADDRNOTAVAIL) {
			c, err = s.srv.ports.listenShared(netip.IPv4Unspecified(), from, s.srv.logger)
		}
		if err != nil {
			return nil, err
		}
		return newSharedEnd(c, s.cfg.Timeouts.dataConnect(), s.log), nil
	}
	ln, free, err := s.srv.ports.listen(ip)
	if err != nil && ip != s.localIP && errors.Is(err, syscall.EADDRNOTAVAIL) {
		ln, free, err = s.srv.ports.listen(netip.IPv4Unspecified())
	}
	if err != nil {
		return nil, err
	}
	if seen.Is4() != from.Is4() {
		// Nothing ties the client's IPv4 address to its IPv6 one: the first
		// connection is taken (Config.PublicHost says so).
		from = netip.Addr{}
		s.log.Info().Msg("PASV on IPv6 answered with an IPv4 address: the data connection's source is not checked")
	}
	end := newListenEnd(partyClient, ln.(*net.TCPListener), free, from, false, s.cfg.Timeouts.dataConnect(), s.log)
	end.trust = s.dataTrust()
	end.refused = func() { s.cfg.Metrics.proxyHeaderRefused("data") }
	return end, nil
}

// backendPassive asks the backend for a passive port, with EPSV or PASV as
// it supports, and returns the end that dials it. Only the port is used: a
// 227 may name a private, NATed or 0.0.0.0 address, and the data connection
// goes to the backend's control IP, from the proxy's side of the control
// connection (backends refuse data from another IP than control). A
// refusal is returned as the reply with a nil end.
func (s *session) backendPassive() (dataEnd, ftpctl.Reply, error) {
	for try := 0; try < 2; try++ {
		verb := "PASV"
		if s.backEPSV {
			verb = "EPSV"
		}
		rep, err := s.backend.roundTrip(ftpctl.Command{Verb: verb}, s.cfg.Timeouts.idle())
		if err != nil {
			return nil, rep, s.backendLost(err)
		}
		var port uint16
		switch {
		case verb == "PASV" && rep.Code == ftpctl.CodeEnteringPassive:
			var ap netip.AddrPort
			ap, err = ftpctl.ParsePASV(rep.Text())
			port = ap.Port()
		case verb == "EPSV" && rep.Code == ftpctl.CodeEnteringExtPassive:
			port, err = ftpctl.ParseEPSV(rep.Text())
		case rep.Code.Class() == ftpctl.ClassPermanent && try == 0 && s.backend.ip.Is4():
			// 500/502: the backend lacks this verb; try the other one.
			s.backEPSV = !s.backEPSV
			continue
		default:
			return nil, rep, nil
		}
		if err != nil || port == 0 {
			s.log.Warn().Err(err).Str("reply", rep.Text()).Msg("backend passive reply unusable")
			return nil, ftpctl.NewReply(ftpctl.CodeCannotOpenData, "Can't open passive connection."), nil
		}
		return &dialEnd{
			party:   partyBackend,
			target:  netip.AddrPortFrom(s.backend.ip, port),
			from:    netip.AddrPortFrom(s.backend.localIP, 0),
			timeout: s.cfg.Timeouts.backendDial(),
			log:     s.log,
		}, rep, nil
	}
	return nil, ftpctl.NewReply(ftpctl.CodeCannotOpenData, "Can't open passive connection."), nil
}

// familyOf is ip's network protocol number in EPSV and EPRT (RFC 2428).
func familyOf(ip netip.Addr) string {
	if ip.Is4() {
		return "1"
	}
	return "2"
}
