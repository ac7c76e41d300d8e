package proxy

import (
	"errors"
	"net"
	"strings"

	"github.com/rs/zerolog"
)

// peerAlert returns the TLS alert the peer sent, if err carries one:
// "unknown certificate authority" from a client that does not trust our
// certificate, "bad certificate", "protocol version"... crypto/tls reports
// a received alert as a *net.OpError with Op "remote error" around its
// unexported alert type; an alert we sent is not in the error.
func peerAlert(err error) string {
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "remote error" || oe.Err == nil {
		return ""
	}
	return strings.TrimPrefix(oe.Err.Error(), "tls: ")
}

// handshakeAlert returns the alert a client sent to end its control
// handshake: from the error, or, when crypto/tls could not read it, from
// the record itself.
func (s *session) handshakeAlert(err error) string {
	if a := peerAlert(err); a != "" {
		return a
	}
	if s.record != nil {
		if a, ok := s.record.lastAlert(); ok {
			return strings.TrimPrefix(a.Error(), "tls: ")
		}
	}
	return ""
}

// withAlert adds the peer's TLS alert in err, if any, to a log event as
// "alert".
func withAlert(ev *zerolog.Event, err error) *zerolog.Event {
	if a := peerAlert(err); a != "" {
		ev = ev.Str("alert", a)
	}
	return ev
}
