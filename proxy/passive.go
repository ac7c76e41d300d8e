package proxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

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
	reach := s.announced() // what the client connects to
	if !extended {
		reach = announce
	}
	if !s.sourceCheckable(listenIP, reach) && (s.cfg.AllowUnresumedData || s.prot != 'P') {
		// Anyone could connect to that port, and nothing would tell the
		// client from them: only a data connection resuming the client's
		// TLS session could.
		s.log.Info().Str("verb", cmd.Verb).Bool("require_session_reuse", !s.cfg.AllowUnresumedData).
			Str("prot", string(s.prot)).Msg("PASV refused: its data connection could not be tied to the client")
		return s.reply(ftpctl.CodeNetProtoNotSupp, uncheckedPASV)
	}
	s.dropData()
	var (
		back     dataEnd
		backMode = DataPassive
		err      error
	)
	if s.backend.DataToBackend != DataActive {
		// The backend's reply is read while the client connects; a
		// refusal is answered to the transfer command (settleAhead).
		back, err = s.backendPassiveAhead()
		if err != nil {
			return err
		}
	} else if back, backMode, err = s.backendEnd(DataPassive); err != nil || back == nil {
		return err // a refusal has been answered
	}
	client, err := s.listenClient(listenIP, reach)
	if err != nil {
		back.release()
		switch {
		case errors.Is(err, errPassivePortsPerIP):
			s.log.Warn().Str("limit", limitPortsPerIP).Int(limitPortsPerIP, s.cfg.Limits.maxPassivePortsPerIP()).
				Dur("waited", portWait).Msg("passive port refused: the client's address holds its share")
			return s.reply(ftpctl.CodeCannotOpenData, "Too many passive ports open from your address.")
		case errors.Is(err, errNoPassivePort):
			s.log.Warn().Err(err).Str("limit", limitPassivePorts).Stringer("passive_ports", s.cfg.PassivePorts).
				Int("in_use", s.srv.ports.inUseCount()).Msg("passive ports exhausted")
			s.cfg.Metrics.limitHit(limitPassivePorts)
		default:
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

// uncheckedPASV answers a PASV whose data connection could not be tied to
// the client.
const uncheckedPASV = "Use EPSV: a PASV data connection over IPv4 cannot be tied to your IPv6 address."

// portWait is how long PASV or EPSV waits for a port when the client's
// address holds its share (Limits.MaxPassivePortsPerIP): a burst of a
// parallel mirror's sessions, each holding its port for a few
// milliseconds, goes through; a client that holds its ports for good
// keeps only its share.
const portWait = 5 * time.Second

// errPassivePortsPerIP is a passive port refused because the client's
// address held Limits.MaxPassivePortsPerIP for portWait.
var errPassivePortsPerIP = errors.New("proxy: the client's address holds its share of passive ports")

// sourceCheckable reports whether a passive data connection to ip, which
// the client was told to reach at reach, comes from an address the proxy
// can compare with the client's: not so when a PASV on IPv6 was answered
// with an IPv4 address, as nothing ties the client's IPv4 address to its
// IPv6 one.
func (s *session) sourceCheckable(ip, reach netip.Addr) bool {
	from := s.dataPeer()
	// The family the checked source arrives in: the client's connects to
	// reach; a balancer's, to ip.
	seen := reach
	if from != s.clientIP {
		seen = ip
	}
	return seen.Is4() == from.Is4()
}

// listenClient opens the port, from passive_ports, that a passive client
// connects to, on ip: the address the client reached, or for PASV on IPv6
// the announced IPv4 address, or any local IPv4 address when that one is
// not the host's own (NAT). reach is the address the client is told to
// connect to (a balancer's, when one is in front). The port counts toward
// the client address's share (Limits.MaxPassivePortsPerIP) until it is
// released.
func (s *session) listenClient(ip, reach netip.Addr) (*listenEnd, error) {
	err := s.srv.admission.await(s.ctx, s.cfg.Limits, s.addr, portPlace, time.Now().Add(portWait), func() {
		s.log.Info().Str("limit", limitPortsPerIP).Int(limitPortsPerIP, s.cfg.Limits.maxPassivePortsPerIP()).
			Msg("passive port waits for the client address's share")
		s.cfg.Metrics.limitHit(limitPortsPerIP)
	})
	if err != nil {
		return nil, errPassivePortsPerIP
	}
	giveBack := func() { s.srv.admission.give(s.addr, portPlace) }
	from := s.dataPeer()
	checkable := s.sourceCheckable(ip, reach)
	if s.cfg.PassivePortSharing && checkable && s.dataTrust() == nil {
		// A shared port tells sessions apart by the connection's source,
		// before anything is read: not by a PROXY header, so with
		// data_proxy_protocol each session keeps a port of its own.
		c, err := s.srv.ports.listenShared(ip, from, s.srv.logger)
		if err != nil && ip != s.localIP && errors.Is(err, syscall.EADDRNOTAVAIL) {
			c, err = s.srv.ports.listenShared(netip.IPv4Unspecified(), from, s.srv.logger)
		}
		if err != nil {
			giveBack()
			return nil, err
		}
		end := newSharedEnd(c, s.cfg.Timeouts.dataConnect(), s.log)
		end.free = func() { c.release(); giveBack() }
		return end, nil
	}
	ln, free, err := s.srv.ports.listen(ip)
	if err != nil && ip != s.localIP && errors.Is(err, syscall.EADDRNOTAVAIL) {
		ln, free, err = s.srv.ports.listen(netip.IPv4Unspecified())
	}
	if err != nil {
		giveBack()
		return nil, err
	}
	if !checkable {
		// Taken from anyone, and then only from whoever resumes the
		// client's TLS session (passive refuses it otherwise).
		from = netip.Addr{}
		s.log.Info().Msg("PASV on IPv6 answered with an IPv4 address: the data connection must prove itself by TLS session resumption")
	}
	end := newListenEnd(partyClient, ln.(*net.TCPListener), func() { free(); giveBack() }, from, false, s.cfg.Timeouts.dataConnect(), s.log)
	end.trust = s.dataTrust()
	end.refused = func() { s.cfg.Metrics.proxyHeaderRefused("data") }
	return end, nil
}

// backendPassive asks the backend for a passive port, with EPSV or PASV as
// it supports, and returns the end that dials it. A refusal is returned
// as the reply with a nil end.
func (s *session) backendPassive() (dataEnd, ftpctl.Reply, error) {
	bc := s.backend
	verb := bc.passiveVerb()
	for try := 0; ; try++ {
		rep, err := bc.roundTrip(ftpctl.Command{Verb: verb}, s.cfg.Timeouts.idle())
		if err != nil {
			return nil, rep, s.backendLost(err)
		}
		end, rep, other := bc.passiveAnswer(verb, rep, try, s.log, s.cfg.Timeouts.backendDial())
		if other == "" {
			return end, rep, nil
		}
		bc.epsv, verb = !bc.epsv, other
	}
}

// passiveVerb is what asks the backend for a passive port, once no reply
// is pending.
func (bc *backendConn) passiveVerb() string {
	bc.wait()
	if bc.epsv {
		return "EPSV"
	}
	return "PASV"
}

// passiveAnswer reads the backend's reply to verb, its try-th: the end that
// dials the port it names, or a refusal with a nil end, or the other verb
// to ask with when the backend lacks this one (a 500 or 502 to the first).
// Only the port is used: a 227 may name a private, NATed or 0.0.0.0
// address, and the data connection goes to the backend's control IP, from
// the proxy's side of the control connection (backends refuse data from
// another IP than control).
func (bc *backendConn) passiveAnswer(verb string, rep ftpctl.Reply, try int, log zerolog.Logger, dialTimeout time.Duration) (dataEnd, ftpctl.Reply, string) {
	var (
		port uint16
		err  error
	)
	switch {
	case verb == "PASV" && rep.Code == ftpctl.CodeEnteringPassive:
		var ap netip.AddrPort
		ap, err = ftpctl.ParsePASV(rep.Text())
		port = ap.Port()
	case verb == "EPSV" && rep.Code == ftpctl.CodeEnteringExtPassive:
		port, err = ftpctl.ParseEPSV(rep.Text())
	case rep.Code.Class() == ftpctl.ClassPermanent && try == 0 && bc.ip.Is4():
		if verb == "EPSV" {
			return nil, rep, "PASV"
		}
		return nil, rep, "EPSV"
	default:
		return nil, rep, ""
	}
	if err != nil || port == 0 {
		log.Warn().Err(err).Str("reply", rep.Text()).Msg("backend passive reply unusable")
		return nil, ftpctl.NewReply(ftpctl.CodeCannotOpenData, "Can't open passive connection."), ""
	}
	return &dialEnd{
		party:   partyBackend,
		target:  netip.AddrPortFrom(bc.ip, port),
		from:    netip.AddrPortFrom(bc.localIP, 0),
		timeout: dialTimeout,
		log:     log,
	}, rep, ""
}

// aheadEnd is a backend's passive end asked for without waiting: PASV or
// EPSV goes to the backend as the client's PASV or EPSV is answered, and
// its reply is read in the background while the client connects and sends
// its transfer command. That takes a backend round trip off every file of
// a client that sends PASV, RETR, PASV, RETR... The backend connection
// carries no other command until the reply is in (backendConn.pending),
// and the transfer command goes out only once the end is settled: the
// port to dial, or after a refusal the fallback the session chose.
type aheadEnd struct {
	replied chan struct{} // the background read is over
	settled chan struct{} // end is final; open may go on
	// Set before replied closes, or by settle:
	end     dataEnd      // nil: refused, or the read failed
	refusal ftpctl.Reply // the backend's, or the proxy's for an unusable reply
	err     error        // the backend connection failed

	mu       sync.Mutex
	released bool // guarded by mu, as is end once replied is closed
}

// settle makes end, the fallback after a refusal, the final end. The
// channel may be over already: then end is released at once.
func (e *aheadEnd) settle(end dataEnd) {
	e.mu.Lock()
	e.end = end
	released := e.released
	e.mu.Unlock()
	close(e.settled)
	if released {
		end.release()
	}
}

func (e *aheadEnd) open(ctx context.Context, started <-chan struct{}) (net.Conn, error) {
	select {
	case <-e.settled:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if e.end == nil {
		return nil, errDataConnect
	}
	return e.end.open(ctx, started)
}

func (e *aheadEnd) release() {
	e.mu.Lock()
	e.released = true
	var end dataEnd
	select {
	case <-e.replied:
		end = e.end
	default:
	}
	e.mu.Unlock()
	if end != nil {
		end.release()
	}
}

// backendPassiveAhead sends PASV or EPSV to the backend and reads the reply
// in the background (aheadEnd).
func (s *session) backendPassiveAhead() (*aheadEnd, error) {
	bc, log, idle, dialTimeout := s.backend, s.log, s.cfg.Timeouts.idle(), s.cfg.Timeouts.backendDial()
	verb := bc.passiveVerb()
	if err := bc.send(ftpctl.Command{Verb: verb}, idle); err != nil {
		return nil, s.backendLost(err)
	}
	e := &aheadEnd{replied: make(chan struct{}), settled: make(chan struct{})}
	bc.pending = e.replied
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(e.replied)
		defer func() {
			if e.err != nil {
				// A reply still to come would be taken for the next
				// command's: the connection is done, and the next
				// command finds it lost.
				bc.conn.Close()
			}
		}()
		for try := 0; ; try++ {
			rep, err := bc.finalReply()
			if err != nil {
				e.err = err
				return
			}
			end, rep, other := bc.passiveAnswer(verb, rep, try, log, dialTimeout)
			if other == "" {
				e.end, e.refusal = end, rep
				if end != nil {
					close(e.settled)
				}
				return
			}
			// The backend connection is this goroutine's until replied
			// closes.
			bc.epsv, verb = !bc.epsv, other
			if err := bc.sendNow(ftpctl.Command{Verb: verb}, idle); err != nil {
				e.err = err
				return
			}
		}
	}()
	return e, nil
}

// settleAhead waits for the backend's answer to a passive end asked ahead
// and, after a refusal, sets the end up in the fallback mode when
// data_to_backend allows one, before dc's transfer command goes out. A
// refusal with no fallback is answered here: the end stays nil, the
// channel is aborted, and ok is false.
func (s *session) settleAhead(dc *dataChannel) (ok bool, err error) {
	e, isAhead := dc.backend.(*aheadEnd)
	if !isAhead {
		return true, nil
	}
	<-e.replied
	select {
	case <-e.settled:
		return true, nil
	default:
	}
	if e.err != nil {
		dc.abort()
		return false, s.backendLost(e.err)
	}
	if err := s.refusedSetup(DataPassive, e.refusal); err != nil {
		dc.abort()
		return false, err
	}
	if s.backend.DataToBackend == DataAuto {
		end, _, err := s.askBackend(DataActive)
		if err != nil {
			dc.abort()
			return false, err
		}
		if end != nil {
			dc.backMode = DataActive
			e.settle(end)
			return true, nil
		}
	}
	dc.abort()
	// The backend's refusal was of PASV or EPSV: to the transfer command
	// it is a data connection that cannot be opened.
	return false, s.reply(ftpctl.CodeCannotOpenData, "Can't open data connection.")
}

// familyOf is ip's network protocol number in EPSV and EPRT (RFC 2428).
func familyOf(ip netip.Addr) string {
	if ip.Is4() {
		return "1"
	}
	return "2"
}
