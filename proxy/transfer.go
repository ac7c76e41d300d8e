package proxy

import (
	"crypto/tls"
	"errors"
	"time"

	"github.com/ftpsgate/ftpsgate/ftpctl"
)

type replyResult struct {
	rep ftpctl.Reply
	err error
}

// transfer relays a data-transfer command over the pending data channel.
// 1xx replies pass at once; the final reply waits until every byte has
// reached the receiver, or a client could see 226 before its last bytes.
// ABOR from the client cuts in; any other command waits its turn.
func (s *session) transfer(cmd ftpctl.Command) error {
	dc := s.data
	s.data = nil
	if dc == nil {
		return s.relay(cmd) // no PASV or PORT first: the backend says 425 itself
	}
	if s.cfg.RequireDataProtection && s.prot != 'P' {
		dc.abort()
		return s.reply(ftpctl.CodePolicyDenied, "Data connections must be protected: use PROT P.")
	}
	if dc.unchecked && s.prot != 'P' {
		// PROT C after a PASV that only PROT P could tie to the client.
		dc.abort()
		return s.reply(ftpctl.CodeNetProtoNotSupp, uncheckedPASV)
	}
	if ok, err := s.settleAhead(dc); !ok {
		return err
	}
	dir := transferDirection[cmd.Verb]
	began := time.Now()
	if err := s.backend.send(cmd, s.cfg.Timeouts.idle()); err != nil {
		dc.abort()
		return s.backendLost(err)
	}
	dc.begin(transferStart{protect: s.prot == 'P', dir: dir, limiters: s.limiters()})
	s.showTransfer(&liveTransfer{verb: cmd.Verb, path: cmd.Arg, dir: dir, prot: s.prot, started: began, dc: dc})
	defer s.showTransfer(nil)
	// The final reply comes when the data is through, however long that
	// takes: the data relay's own idle timeout bounds a stalled transfer.
	s.backend.conn.SetReadDeadline(time.Time{})
	replies := s.readReplies()

	// While data moves the client may say nothing for long: no idle
	// deadline on the control connection now.
	s.conn.SetReadDeadline(time.Time{})
	commands := s.readAhead()

	var (
		final    *ftpctl.Reply
		dataDone <-chan struct{}
		// dataOver: the data side ended before the final reply came. The
		// backend then has the idle timeout to send it, or a backend that
		// hung would hold the session for ever.
		dataOver = dc.finished(dir)
	)
	for {
		select {
		case <-dataOver:
			dataOver = nil
			if final == nil {
				s.backend.conn.SetReadDeadline(time.Now().Add(s.cfg.Timeouts.idle()))
			}
		case rr, ok := <-replies:
			if !ok {
				replies = nil
				continue
			}
			if rr.err != nil {
				dc.abort()
				return s.backendLost(rr.err)
			}
			if !rr.rep.Code.Final() {
				if err := s.send(rr.rep); err != nil {
					dc.abort()
					return err
				}
				continue
			}
			if rr.rep.Code.Class() != ftpctl.ClassCompletion {
				// The backend gave up (425, 426, 451, 550...): so do we.
				// If it did because the client's data connection was
				// refused (and reset toward the backend), the client is
				// told why.
				rep := rr.rep
				select {
				case <-dc.finished(dir):
					if _, err := dc.result(dir); errors.Is(err, errNoSessionReuse) {
						rep, _ = clientDataFailure(err)
					}
				default:
				}
				dc.abort()
				return s.endTransfer(cmd, dir, dc, rep, began)
			}
			final, dataDone, dataOver = &rr.rep, dc.finished(dir), nil
		case <-dataDone:
			rep := *final
			if _, err := dc.result(dir); err != nil {
				var said bool
				if rep, said = clientDataFailure(err); !said {
					withAlert(s.log.Warn().Err(err), err).Str("verb", cmd.Verb).Msg("data connection failed")
					rep = ftpctl.NewReply(ftpctl.CodeTransferAborted, "Data connection failed; transfer aborted.")
				}
			}
			return s.endTransfer(cmd, dir, dc, rep, began)
		case r := <-commands:
			if r.err == nil && r.cmd.Verb == "ABOR" {
				s.ahead = nil
				return s.abortTransfer(cmd, dir, dc, replies, final, began)
			}
			// Anything else is answered after the transfer, in order:
			// put it back for readCommand.
			back := make(chan commandResult, 1)
			back <- r
			s.ahead, commands = back, nil
		case <-s.ctx.Done():
			dc.abort()
			return errShutdown
		}
	}
}

// clientDataFailure is the reply to a transfer whose data connection
// failed for a reason of the client's that it should be told, and whether
// err is one. Any other failure has been logged where it happened.
func clientDataFailure(err error) (ftpctl.Reply, bool) {
	switch {
	case errors.Is(err, errNoSessionReuse):
		// What to do, for the script authors who meet it: stock Python
		// ftplib never resumes (README, "Scripts").
		return ftpctl.NewReply(ftpctl.CodeNetProtoNotSupp,
			"Data connection refused: TLS session reuse required. Resume the control connection's TLS session on it "+
				"(Python ftplib: wrap_socket(conn, server_hostname=self.host, session=self.sock.session))."), true
	case errors.Is(err, errDataConnect):
		return ftpctl.NewReply(ftpctl.CodeCannotOpenData, "Can't open data connection."), true
	}
	return ftpctl.Reply{}, false
}

// readReplies reads the backend's replies to one command, up to and
// including the final one, in the background.
func (s *session) readReplies() <-chan replyResult {
	ch := make(chan replyResult, 4)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(ch)
		for {
			rep, err := s.backend.readReply()
			select {
			case ch <- replyResult{rep, err}:
			case <-s.ctx.Done():
				return
			}
			if err != nil || rep.Code.Final() {
				return
			}
		}
	}()
	return ch
}

// abortGrace is how long a backend has to answer ABOR before the proxy
// resets its data connection. The RFC 959 section 4.1.3 order is that the
// backend learns of the abort first: inetutils ftpd, writing to a data
// socket that was reset before it read ABOR, could die of SIGPIPE with
// ABOR unread, and the kernel then resets the control connection too.
// Servers that read ABOR during a transfer answer within a round trip;
// vsftpd (async_abor_enable=NO) answers only once its data connection
// breaks, and waits all of it every time: short, but long enough for a
// retransmitted segment (Linux's minimum RTO is 200 ms).
const abortGrace = 500 * time.Millisecond

// abortTransfer handles ABOR during a transfer (RFC 959 section 4.1.3): the
// backend is told, both data sockets close once it has answered (or had
// abortGrace to), and the client gets the transfer's final reply (426
// unless it had completed) and then ABOR's.
func (s *session) abortTransfer(cmd ftpctl.Command, dir direction, dc *dataChannel,
	replies <-chan replyResult, final *ftpctl.Reply, began time.Time) error {
	s.log.Info().Str("verb", cmd.Verb).Msg("transfer aborted by client")
	// Only a backend that may still be moving data needs interrupting.
	moving := final == nil
	select {
	case <-dc.finished(dir):
		moving = false
	default:
	}
	if err := s.backend.sendAbort(s.cfg.Timeouts.idle(), moving); err != nil {
		dc.abort()
		return s.backendLost(err)
	}
	// The data sockets go at the first of: the backend's first reply, the
	// grace period, the data side ending by itself.
	timer := time.NewTimer(abortGrace)
	defer timer.Stop()
	grace, dataDone := timer.C, dc.finished(dir)
	cut := func() {
		grace, dataDone = nil, nil
		dc.abort()
	}
	finalAfterAbor := final == nil
	for final == nil && replies != nil {
		var (
			rr replyResult
			ok bool
		)
		select {
		case rr, ok = <-replies:
		case <-grace:
			s.log.Debug().Dur("grace", abortGrace).Msg("no reply to ABOR in time; resetting the data connections")
			cut()
			continue
		case <-dataDone:
			cut()
			continue
		}
		cut()
		if !ok {
			break
		}
		if rr.err != nil {
			return s.backendLost(rr.err)
		}
		if rr.rep.Code.Final() {
			final = &rr.rep
			continue
		}
		// The client waits for final replies now; a preliminary one would
		// read as the answer to ABOR (ftplib raises on it). pure-ftpd sends
		// its transfer statistics as "150 0.004 seconds..." when its data
		// connection is cut.
		s.log.Debug().Int("code", int(rr.rep.Code)).Str("text", rr.rep.Text()).Msg("preliminary reply after ABOR dropped")
	}
	// A backend that had sent its final reply before ABOR is done with its
	// data socket: the loop did not run.
	dc.abort()
	rep := ftpctl.NewReply(ftpctl.CodeTransferAborted, "Transfer aborted.")
	if final != nil && final.Code.Class() != ftpctl.ClassCompletion {
		rep = *final
	}
	if finalAfterAbor && final != nil && final.Code.Class() == ftpctl.ClassCompletion {
		// A 2xx after ABOR answers either the transfer (it completed just
		// before) or ABOR itself (the transfer got no final reply).
		abor, err := s.settleAbort(*final)
		if err != nil {
			return err
		}
		if err := s.endTransfer(cmd, dir, dc, rep, began); err != nil {
			return err
		}
		return s.send(abor)
	}
	if err := s.endTransfer(cmd, dir, dc, rep, began); err != nil {
		return err
	}
	return s.relayAnswer()
}

// settleAbort finds out which command a 2xx reply that followed ABOR
// answered, and returns ABOR's reply. RFC 959 section 4.1.3 has the
// backend answer the transfer (426, or 226 if it had completed) and then
// ABOR (225 or 226); pure-ftpd, when the proxy closed its data connection
// before it read ABOR, answers only ABOR. The replies alone cannot tell
// the two apart, and waiting for a second one that may never come would
// hang the session; a NOOP settles it, since its 200 answers nothing else.
func (s *session) settleAbort(first ftpctl.Reply) (ftpctl.Reply, error) {
	if err := s.backend.send(ftpctl.Command{Verb: "NOOP"}, s.cfg.Timeouts.idle()); err != nil {
		return first, s.backendLost(err)
	}
	abor := first
	for {
		rep, err := s.backend.readReply()
		if err != nil {
			return first, s.backendLost(err)
		}
		switch {
		case !rep.Code.Final():
		case rep.Code == ftpctl.CodeOK: // NOOP's: everything before it is told
			return abor, nil
		default: // first answered the transfer; this answers ABOR
			abor = rep
		}
	}
}

// relayAnswer forwards the backend's replies to a command the proxy sent on
// the client's behalf (ABOR), through the final one.
func (s *session) relayAnswer() error {
	for {
		rep, err := s.backend.readReply()
		if err != nil {
			return s.backendLost(err)
		}
		if err := s.send(rep); err != nil {
			return err
		}
		if rep.Code.Final() {
			return nil
		}
	}
}

// endTransfer forwards a transfer's final reply and logs the transfer.
func (s *session) endTransfer(cmd ftpctl.Command, dir direction, dc *dataChannel, rep ftpctl.Reply, began time.Time) error {
	// Every path here has either seen the direction finish or aborted the
	// channel, which finishes it promptly.
	<-dc.finished(dir)
	n, _ := dc.result(dir)
	s.showTransfer(nil) // before the backend's total grows by n: counted once
	if dir == upload {
		s.bytesUp += n
		s.member.bytesUp.Add(n)
	} else {
		s.bytesDown += n
		s.member.bytesDown.Add(n)
	}
	s.transfers++
	d := time.Since(began)
	s.transferEnded(TransferEvent{
		Time: time.Now(), Duration: d, Session: s.id, Client: s.clientIP, User: s.user,
		Backend: s.member.name(), Verb: cmd.Verb, Path: cmd.Arg, Direction: dir.String(),
		Bytes: n, Prot: string(s.prot), Code: int(rep.Code),
		Complete: rep.Code.Class() == ftpctl.ClassCompletion,
	})
	// The record is written once the client has its reply, which it waits
	// for: a file's latency is what a client of many small ones feels.
	err := s.send(rep)
	ev := s.log.Info()
	if rep.Code.Class() != ftpctl.ClassCompletion {
		ev = s.log.Warn()
	}
	ev = ev.Str("verb", cmd.Verb).Str("path", cmd.Arg).Str("direction", dir.String()).
		Int64("bytes", n).Dur("duration", d).Str("prot", string(s.prot)).Int("code", int(rep.Code)).
		Stringer("client_data", dc.clientMode).Stringer("backend_data", dc.backMode)
	if secs := d.Seconds(); secs > 0 {
		ev = ev.Float64("bytes_per_sec", float64(n)/secs)
	}
	if dc.clientAddr != "" {
		ev = ev.Str("data_from", dc.clientAddr) // whose data connection the transfer took
	}
	if dc.tlsVersion != 0 {
		ev = ev.Bool("data_resumed", dc.resumed).Str("data_tls_version", tls.VersionName(dc.tlsVersion))
	}
	ev.Msg("transfer")
	return err
}

// transferEnded counts a transfer and hands it to Config.OnTransfer.
func (s *session) transferEnded(e TransferEvent) {
	s.cfg.Metrics.transfer(e)
	s.srv.recent.add(e)
	if s.cfg.OnTransfer != nil {
		s.cfg.OnTransfer(e)
	}
}
