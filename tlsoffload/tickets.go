package tlsoffload

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
)

const (
	// ticketKeysKept is how many generated keys are kept: the current one,
	// which encrypts, and the previous ones, which still decrypt.
	ticketKeysKept = 3
	// maxTicketKeys bounds a TicketKeyFile.
	maxTicketKeys = 8
	// bindingPrefix starts the SessionState.Extra entry that names the FTP
	// session a ticket was issued to.
	bindingPrefix = "ftpsgate/session:"
	// unproven is the binding of the tickets issued on a data connection
	// that did not resume its session: no session's, ever.
	unproven = "\x00unproven"
)

// ErrForeignTicket is wrapped by the handshake error of a DataConfig
// connection that presented a ticket issued to another FTP session (or to no
// session): a client mixing up sessions, or one trying to pass off a stolen
// ticket.
var ErrForeignTicket = errors.New("tlsoffload: data connection presented another session's ticket")

// ticketKeys are the session-ticket keys in use, first one encrypting.
type ticketKeys struct {
	mu       sync.Mutex // guards keys and fileSum
	keys     [][32]byte
	fileSum  [32]byte // of TicketKeyFile's contents when keys were read from it
	seenBad  [32]byte // contents a poll found broken, reported on a second look
	reported [32]byte // contents last reported broken
}

func (t *ticketKeys) current() [][32]byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.keys
}

// initTickets reads TicketKeyFile, or makes the first random key.
func (o *Offload) initTickets() error {
	if o.cfg.TicketKeyFile != "" {
		keys, sum, err := readTicketKeyFile(o.cfg.TicketKeyFile)
		if err != nil {
			return err
		}
		o.tickets.keys, o.tickets.fileSum = keys, sum
		return nil
	}
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		return fmt.Errorf("tlsoffload: %w", err)
	}
	o.tickets.keys = [][32]byte{k}
	return nil
}

// rotateTickets puts a new random key first and drops the oldest beyond
// ticketKeysKept. With a TicketKeyFile it does nothing: the file's writer
// rotates.
func (o *Offload) rotateTickets() error {
	if o.cfg.TicketKeyFile != "" {
		return nil
	}
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		o.emit(Event{Kind: EventFailed, Source: "ticket rotation", Err: err})
		return fmt.Errorf("tlsoffload: %w", err)
	}
	o.tickets.mu.Lock()
	keys := append([][32]byte{k}, o.tickets.keys...)
	if len(keys) > ticketKeysKept {
		keys = keys[:ticketKeysKept]
	}
	o.tickets.keys = keys
	o.config.SetSessionTicketKeys(keys)
	o.tickets.mu.Unlock()
	o.emit(Event{Kind: EventTicketKeys, Source: "ticket rotation"})
	return nil
}

// reloadTicketKeys reads TicketKeyFile again; a broken file keeps the keys
// in use. Called with Offload.reloadMu held.
func (o *Offload) reloadTicketKeys(explicit bool) error {
	path := o.cfg.TicketKeyFile
	if path == "" {
		return nil
	}
	keys, sum, err := readTicketKeyFile(path)
	t := &o.tickets
	t.mu.Lock()
	defer t.mu.Unlock()
	if err == nil && sum == t.fileSum {
		return nil
	}
	if err != nil {
		if !explicit && sum != t.seenBad {
			t.seenBad = sum
			return nil
		}
		err = fmt.Errorf("%w (keeping the %d keys in use)", err, len(t.keys))
		if explicit || sum != t.reported {
			t.reported = sum
			o.emit(Event{Kind: EventFailed, Source: path, Err: err})
		}
		return err
	}
	// A good file forgets the broken ones: the same broken contents
	// written again later are news again, as for certificate pairs.
	t.keys, t.fileSum, t.seenBad, t.reported = keys, sum, [32]byte{}, [32]byte{}
	o.config.SetSessionTicketKeys(keys)
	o.emit(Event{Kind: EventTicketKeys, Source: path})
	return nil
}

// readTicketKeyFile parses the format documented at Config.TicketKeyFile.
// sum identifies the contents, or the error.
func readTicketKeyFile(path string) ([][32]byte, [32]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, sha256.Sum256([]byte(err.Error())), fmt.Errorf("tlsoffload: ticket key file: %w", err)
	}
	sum := sha256.Sum256(data)
	var keys [][32]byte
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := base64.StdEncoding.DecodeString(line)
		if err != nil || len(k) != 32 {
			return nil, sum, fmt.Errorf("tlsoffload: ticket key file %s line %d: want 32 bytes in base64 (openssl rand -base64 32)", path, n)
		}
		keys = append(keys, [32]byte(k))
	}
	switch {
	case len(keys) == 0:
		return nil, sum, fmt.Errorf("tlsoffload: ticket key file %s: no key", path)
	case len(keys) > maxTicketKeys:
		return nil, sum, fmt.Errorf("tlsoffload: ticket key file %s: %d keys, at most %d", path, len(keys), maxTicketKeys)
	}
	return keys, sum, nil
}

// ControlConfig returns the configuration for the control connection of FTP
// session sessionID, for use with DataConfig when data connections must
// resume their control session (tls.require_session_reuse). Tickets it
// issues carry sessionID (in SessionState.Extra, encrypted with the ticket
// keys). It resumes any ticket of this instance's (or of one sharing its
// TicketKeyFile), whichever session it was issued to: a client coming
// back, to this instance or another of the fleet, skips the full
// handshake. The tickets issued on that connection are bound to
// sessionID all the same (crypto/tls sends new ones on a resumed
// connection too, TLS 1.2 and 1.3), and those are what the client's data
// connections present. Call it once per connection: it is a clone of
// TLSConfig with the current ticket keys.
func (o *Offload) ControlConfig(sessionID string) *tls.Config {
	return boundConfig(o.config, sessionID)
}

// DataConfig returns the configuration for the data connections of FTP
// session sessionID. After each handshake:
//
//   - ConnectionState().DidResume is true: the client resumed a TLS session
//     of sessionID (its control connection's, or a previous data
//     connection's), issued by this instance or one sharing its
//     TicketKeyFile;
//   - DidResume is false: the client sent no usable ticket (none, expired,
//     or encrypted with a key no longer kept); with
//     tls.require_session_reuse the proxy refuses the transfer (522);
//   - the handshake failed with an error wrapping ErrForeignTicket: the
//     client presented a ticket issued to another session.
//
// No session ticket is sent on a data connection (see dataConfig). Call it
// once per session, or per connection: it is a clone of TLSConfig with the
// current ticket keys, and each handshake makes a configuration of its own.
func (o *Offload) DataConfig(sessionID string) *tls.Config {
	return dataConfig(o.config, sessionID, true)
}

// SessionConfigs is ControlConfig and DataConfig for a base configuration
// other than an Offload's: any whose session tickets are on (the
// default), shared by every session. Each call clones base.
func SessionConfigs(base *tls.Config, sessionID string) (control, data *tls.Config) {
	return boundConfig(base, sessionID), dataConfig(base, sessionID, true)
}

// OpenDataConfig is DataConfig for data connections that need not resume
// their own session (tls.require_session_reuse off): a ticket of any
// session of ours resumes, none is required, and none is sent.
func OpenDataConfig(base *tls.Config) *tls.Config {
	return dataConfig(base, "", false)
}

// boundConfig clones base for a control connection of sessionID: it
// resumes any ticket of ours and binds the tickets it issues to
// sessionID.
func boundConfig(base *tls.Config, sessionID string) *tls.Config {
	c := base.Clone()
	c.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		ss.Extra = withBinding(ss.Extra, sessionID)
		return c.EncryptTicket(cs, ss)
	}
	c.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		// nil when not ours, or from a key no longer kept: a full handshake.
		ss, _ := c.DecryptTicket(identity, cs)
		return ss, nil
	}
	return c
}

// dataConfig clones base for the data connections of sessionID, or of any
// session (bound false). Each handshake gets a configuration of its own
// from GetConfigForClient, which resumes only a ticket of sessionID (bound)
// and sends no session ticket at all.
//
// A ticket sent on a data connection is never needed (the client resumes
// with its control connection's) and often never read: a client that
// uploads and closes without reading (OpenSSL's netkit ftp-ssl, scripts)
// leaves it in its socket's receive queue, and a socket closed with unread
// data sends a TCP reset, not a FIN, which the proxy must take for a
// client that vanished mid-upload. crypto/tls has no setting that accepts
// a ticket but sends none (OpenSSL's SSL_set_num_tickets(ssl, 0), which
// ProFTPD's mod_tls uses on data connections): tickets are turned off for
// a handshake whose ClientHello offers none to resume, and, in a
// configuration only that handshake uses, once its ticket has been looked
// at (UnwrapSession), before crypto/tls would send new ones.
func dataConfig(base *tls.Config, sessionID string, bound bool) *tls.Config {
	c := base.Clone()
	c.GetConfigForClient = func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
		cc := base.Clone()
		if !resumable(chi, base) {
			cc.SessionTicketsDisabled = true
			return cc, nil
		}
		cc.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
			// Reached only for TLS 1.2, whose tickets come inside the
			// handshake, where the client reads them.
			id := sessionID
			if !cs.DidResume {
				// A full handshake on a data connection proves nothing:
				// anyone who reaches the port can make one. Bound to the
				// session, its ticket would let its holder resume the
				// session on the next data connection and take the
				// transfer.
				id = unproven
			}
			ss.Extra = withBinding(ss.Extra, id)
			return cc.EncryptTicket(cs, ss)
		}
		cc.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
			ss, err := cc.DecryptTicket(identity, cs) // it does nothing once tickets are off
			if cs.Version == tls.VersionTLS13 {
				// Read by crypto/tls after this, on this handshake only.
				// TLS 1.2 sends its ticket inside the handshake, and needs
				// it on to encrypt one.
				cc.SessionTicketsDisabled = true
			}
			if err != nil || ss == nil {
				return nil, nil // not ours, or from a key no longer kept: full handshake
			}
			id, ok := binding(ss.Extra)
			switch {
			case !bound || ok && id == sessionID:
				return ss, nil
			case !ok:
				return nil, fmt.Errorf("%w (a ticket bound to no session, on session %q)", ErrForeignTicket, sessionID)
			}
			return nil, fmt.Errorf("%w (session %q's ticket, on session %q)", ErrForeignTicket, id, sessionID)
		}
		return cc, nil
	}
	return c
}

// resumable reports whether a handshake starting with this ClientHello
// may resume a session, so that tickets must stay on for it: under TLS
// 1.3, which it will be when both sides have it, only if it offers a
// pre_shared_key; under TLS 1.2 if it has the session_ticket extension
// (empty or not: the tickets of TLS 1.2 come inside the handshake, where
// the client reads them).
func resumable(chi *tls.ClientHelloInfo, base *tls.Config) bool {
	const sessionTicket, preSharedKey = 35, 41 // RFC 5077, RFC 8446
	want := uint16(sessionTicket)
	if slices.Contains(chi.SupportedVersions, tls.VersionTLS13) && (base.MaxVersion == 0 || base.MaxVersion >= tls.VersionTLS13) {
		want = preSharedKey
	}
	return slices.Contains(chi.Extensions, want)
}

// withBinding replaces any binding in extra with sessionID's.
func withBinding(extra [][]byte, sessionID string) [][]byte {
	out := make([][]byte, 0, len(extra)+1)
	for _, e := range extra {
		if !bytes.HasPrefix(e, []byte(bindingPrefix)) {
			out = append(out, e)
		}
	}
	return append(out, []byte(bindingPrefix+sessionID))
}

// binding returns the session id a ticket was bound to.
func binding(extra [][]byte) (string, bool) {
	for _, e := range extra {
		if id, ok := bytes.CutPrefix(e, []byte(bindingPrefix)); ok {
			return string(id), true
		}
	}
	return "", false
}
