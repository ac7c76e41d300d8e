// Package tlsoffload builds the frontend TLS of ftpsgate and everything it
// depends on: where certificates come from (PEM files chosen by SNI, a
// self-signed certificate kept in a state directory, ACME with
// golang.org/x/crypto/acme/autocert), their hot reload, session-ticket keys
// (rotated, optionally shared by several instances through a file, and bound
// to one FTP session so a data connection can prove it resumed its control
// session), the TLS policy, and the client-side TLS toward backends that speak
// FTPS themselves.
//
// All certificate sources sit behind one GetCertificate callback; the
// *tls.Config it belongs to is built once, and per-connection variants are
// clones. The package never logs: what happens (a certificate loaded,
// reloaded, obtained, renewed; a failure and why) is reported to
// Config.OnEvent, and the caller logs it.
//
//	off, err := tlsoffload.New(tlsoffload.Config{
//		CertFile: "cert.pem", KeyFile: "key.pem",
//		StateDir: "/var/lib/ftpsgate",
//		OnEvent:  func(e tlsoffload.Event) { logger.Info().Stringer("kind", e.Kind).Msg(e.String()) },
//	})
//	if err != nil { ... }
//	if err := off.Start(ctx); err != nil { ... } // ACME: challenge listeners, first certificates
//	go off.Run(ctx)                               // file polling, renewal checks, ticket-key rotation
//	// on SIGHUP: off.Reload()
//	ln := tls.NewListener(inner, off.TLSConfig())
//
// # Wiring it into a server
//
// Start, with the server's context, binds the ACME challenge listeners (port
// 80 for http-01, and 443 for tls-alpn-01 if configured), which then live as
// long as that context, and obtains every missing certificate before it
// returns. Its *ObtainError results are not fatal (Run retries with
// backoff); any other error is (a port that cannot be bound). Run, with the
// same context, does the periodic work and returns once everything it
// started has stopped. Reload re-reads the files on SIGHUP.
//
// Control and data connections use TLSConfig, one config for both, so a
// data connection can resume the control session with a ticket. When data
// connections must resume their own control session
// (tls.require_session_reuse), each connection gets its own config instead:
// ControlConfig(id) for the control connection, DataConfig(id) for each
// data connection, id being the FTP session's id; DidResume false after a
// DataConfig handshake means no resumption (refuse the transfer with 522),
// a handshake error wrapping ErrForeignTicket means another session's
// ticket.
//
// For a backend with tls = "explicit" or "implicit", NewBackendTLS once per
// backend, then SessionConfig once per client session, used for that
// session's control connection and all its data connections.
//
// Config.Check validates a configuration for `ftpsgate check`.
package tlsoffload

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config says where certificates come from and which TLS to accept. The zero
// value works: a self-signed certificate for localhost, TLS 1.2 and newer,
// ticket keys rotated every 12 hours.
type Config struct {
	// CertFile and KeyFile are a PEM certificate chain and its key: the
	// default certificate, served to clients that send no SNI or a name no
	// certificate covers. Both empty with no Certificates and no ACME: a
	// self-signed certificate is used.
	CertFile, KeyFile string
	// Certificates are more certificate/key pairs, chosen by the client's
	// SNI among the DNS names (exact and "*." wildcards) of each
	// certificate. Without CertFile, the first one is the default.
	Certificates []KeyPair
	// SelfSignedNames are the DNS names and IP addresses a generated
	// certificate is valid for. Zero: localhost, 127.0.0.1 and ::1.
	SelfSignedNames []string
	// StateDir keeps the self-signed certificate (selfsigned.pem), so that it
	// does not change at every restart, and, when ACME.CacheDir is empty, the
	// ACME cache (StateDir/acme). Zero: nothing is kept; a new self-signed
	// certificate at every start.
	StateDir string
	// ACME obtains and renews certificates from an ACME CA. Zero (no
	// Domains): no ACME.
	ACME ACMEConfig
	// ReloadInterval is how often Run looks at the certificate files (and the
	// ticket key file) for changes. Zero: every minute. Negative: never;
	// only Reload (SIGHUP) picks changes up.
	ReloadInterval time.Duration
	// MinVersion is the oldest TLS version accepted. Zero: TLS 1.2; older
	// versions have known attacks and no FTPS client needs them.
	MinVersion uint16
	// CipherSuites are the TLS 1.2 cipher suites offered, as
	// ParseCipherSuite returns them; crypto/tls ranks them itself, so
	// their order does not matter, and offers all three TLS 1.3 suites
	// whatever this says. Zero: the ECDHE suites with AES-GCM or
	// ChaCha20-Poly1305 (DefaultCipherSuites), so a TLS 1.2 client that
	// offers only CBC suites is refused.
	CipherSuites []uint16
	// ClientCAFile is a PEM file of the CAs that sign client certificates.
	// Zero: client certificates are not asked for.
	ClientCAFile string
	// ClientAuth says what to do with client certificates: "request" (ask;
	// verify against ClientCAFile when one is sent) or "require" (no
	// verified certificate, no handshake). Zero: "request" when ClientCAFile
	// is set, otherwise none are asked for.
	ClientAuth string
	// TicketRotation is how often Run makes a new session-ticket key; the
	// previous keys are kept for resumption (3 keys in all, so a ticket stays
	// usable for at least two periods). Zero: 12 hours. Negative: never.
	// Ignored with TicketKeyFile: whoever writes that file rotates.
	TicketRotation time.Duration
	// TicketKeyFile holds session-ticket keys shared by several instances,
	// so a client resumes on any of them. Format: one key per line, 32 random
	// bytes in standard base64 (`openssl rand -base64 32`); the first line
	// encrypts new tickets, every line decrypts; blank lines and lines
	// starting with # are ignored; at most 8 keys. Whoever writes it rotates
	// it, by putting a new key on top and dropping the oldest, then renaming
	// the new file into place:
	//
	//	{ openssl rand -base64 32; head -n 2 keys; } > keys.new && mv keys.new keys
	//
	// It is re-read by Reload and by Run's polling. Zero: keys are random and
	// local to this process.
	TicketKeyFile string
	// OnEvent receives what happens to certificates and keys, for the
	// caller to log. It is called from several goroutines, never during a
	// handshake, and must not block for long nor call Reload. Zero: events
	// are dropped.
	OnEvent func(Event)
}

// KeyPair names a PEM certificate chain file and its key file.
type KeyPair struct {
	CertFile, KeyFile string
}

// Offload holds the frontend TLS configuration and its certificate sources.
// Its methods are safe for concurrent use.
type Offload struct {
	cfg    Config
	config *tls.Config // built once in New; only its ticket keys change, through SetSessionTicketKeys

	certs      atomic.Pointer[certSet] // files and self-signed; swapped whole on reload
	acme       *acmeSource             // nil without ACME
	selfSigned bool

	reloadMu sync.Mutex // serializes Reload and polling
	pairs    []*pairState
	selfCert *tls.Certificate // the self-signed certificate; guarded by reloadMu

	tickets ticketKeys

	started atomic.Bool // Start has run (or is running)
	running atomic.Bool // Run is running
	wg      sync.WaitGroup
}

// New loads or generates the certificates and builds the TLS configuration.
// It binds no socket and makes no network request: ACME certificates found in
// the cache are served at once, missing ones are obtained by Start.
func New(c Config) (*Offload, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	o := &Offload{cfg: c}

	for _, p := range c.pairs() {
		cert, sum, err := loadPair(p)
		if err != nil {
			return nil, err
		}
		o.pairs = append(o.pairs, &pairState{KeyPair: p, cert: cert, sum: sum})
		o.emit(certEvent(EventLoaded, p.CertFile, cert, nil))
	}
	if len(c.ACME.Domains) > 0 {
		a, err := newACMESource(o, c.ACME)
		if err != nil {
			return nil, err
		}
		o.acme = a
	}
	if len(o.pairs) == 0 && o.acme == nil {
		cert, err := o.loadSelfSigned(time.Now())
		if err != nil {
			return nil, err
		}
		o.selfCert, o.selfSigned = cert, true
	}
	o.certs.Store(o.buildSet())

	if err := o.initTickets(); err != nil {
		return nil, err
	}
	clientAuth, clientCAs, err := c.clientAuth()
	if err != nil {
		return nil, err
	}
	o.config = &tls.Config{
		MinVersion:     c.minVersion(),
		CipherSuites:   c.cipherSuites(),
		GetCertificate: o.getCertificate,
		// RFC 7301 registers "ftp"; a client that offers ALPN without it is
		// refused by crypto/tls. FTPS clients (curl, lftp, ftplib) send no
		// ALPN at all, which is accepted. acme-tls/1 is only offered on
		// ACME.TLSALPNListen, never here.
		NextProtos: []string{"ftp"},
		ClientAuth: clientAuth,
		ClientCAs:  clientCAs,
	}
	o.config.SetSessionTicketKeys(o.tickets.current())
	return o, nil
}

// TLSConfig returns the configuration for control and data connections. It
// must not be modified (clone it instead): one shared config keeps one set of
// ticket keys, so data connections resume the control session. Tickets it
// issues are not bound to a session; see ControlConfig and DataConfig.
func (o *Offload) TLSConfig() *tls.Config { return o.config }

// SelfSigned reports whether the certificate was generated, not loaded.
func (o *Offload) SelfSigned() bool { return o.selfSigned }

// Certificate returns the default certificate: the one served to clients
// without SNI. It is nil only with ACME, before the first certificate of the
// first domain has been obtained.
func (o *Offload) Certificate() *tls.Certificate {
	c, _ := o.defaultCertificate()
	return c
}

// Fingerprint returns the SHA-256 fingerprint of the default leaf, as
// clients show it ("AB:CD:..."), so an operator can compare. It is empty
// when there is no certificate yet.
func (o *Offload) Fingerprint() string {
	c := o.Certificate()
	if c == nil || len(c.Certificate) == 0 {
		return ""
	}
	return fingerprint(c.Certificate[0])
}

func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

// getCertificate is the one seam every certificate source goes through. It
// is safe for concurrent use as a GetCertificate callback, takes no lock and
// never starts an ACME order: it only reads snapshots that Reload, Start and
// Run replace.
func (o *Offload) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if name != "" && net.ParseIP(name) == nil {
		set := o.certs.Load()
		if c := pick(set.exact[name], hello); c != nil {
			return c, nil
		}
		if o.acme != nil {
			if c := o.acme.certificate(name); c != nil {
				return c, nil
			}
		}
		if i := strings.IndexByte(name, '.'); i > 0 {
			if c := pick(set.wildcard[name[i+1:]], hello); c != nil {
				return c, nil
			}
		}
	}
	return o.defaultCertificate()
}

// defaultCertificate is what clients without SNI, with an IP or with a name
// no certificate covers get: the first file pair, else the first ACME
// domain's, else the self-signed one.
func (o *Offload) defaultCertificate() (*tls.Certificate, error) {
	if c := o.certs.Load().def; c != nil {
		return c, nil
	}
	if o.acme != nil {
		if c := o.acme.defaultCertificate(); c != nil {
			return c, nil
		}
		return nil, fmt.Errorf("tlsoffload: no certificate for %s yet", o.acme.domains[0].name)
	}
	return nil, errors.New("tlsoffload: no certificate")
}

// pick returns the first candidate the client can use (an ECDSA and an RSA
// certificate may share a name), else the first one.
func pick(cands []*tls.Certificate, hello *tls.ClientHelloInfo) *tls.Certificate {
	if len(cands) <= 1 {
		if len(cands) == 0 {
			return nil
		}
		return cands[0]
	}
	for _, c := range cands {
		if hello.SupportsCertificate(c) == nil {
			return c
		}
	}
	return cands[0]
}

// emit hands e to Config.OnEvent, if any.
func (o *Offload) emit(e Event) {
	if o.cfg.OnEvent != nil {
		o.cfg.OnEvent(e)
	}
}

// EventKind says what an Event reports.
type EventKind uint8

// The kinds of Event. A caller logs EventFailed as an error (or a warning
// while an older certificate is still served), EventGenerated as a warning
// (clients will not trust a self-signed certificate), the others as
// information.
const (
	// EventLoaded: a certificate was loaded at start, from a file, the state
	// directory or the ACME cache.
	EventLoaded EventKind = iota + 1
	// EventGenerated: a self-signed certificate was generated (and saved in
	// StateDir when set). Source is "self-signed".
	EventGenerated
	// EventReloaded: a changed certificate file was loaded; new handshakes
	// use it, connections already established keep theirs.
	EventReloaded
	// EventObtained: ACME issued a certificate for a domain that had none.
	EventObtained
	// EventRenewed: ACME issued a replacement for a domain's certificate.
	EventRenewed
	// EventTicketKeys: the session-ticket keys changed (rotation, or a new
	// TicketKeyFile). Names and Serial are empty.
	EventTicketKeys
	// EventFailed: something failed; Err says what, with the CA's message
	// for ACME. Whatever was served before is still served.
	EventFailed
)

var eventKindNames = [...]string{
	EventLoaded:     "loaded",
	EventGenerated:  "generated",
	EventReloaded:   "reloaded",
	EventObtained:   "obtained",
	EventRenewed:    "renewed",
	EventTicketKeys: "ticket keys",
	EventFailed:     "failed",
}

func (k EventKind) String() string {
	if int(k) < len(eventKindNames) && eventKindNames[k] != "" {
		return eventKindNames[k]
	}
	return fmt.Sprintf("EventKind(%d)", k)
}

// Event reports something that happened to a certificate or to the ticket
// keys, for the caller to log.
type Event struct {
	Kind EventKind
	// Source is where it happened: a certificate file's path, "self-signed",
	// "acme", "acme renewal", "ticket rotation" or the ticket key file.
	Source string
	// Names are the certificate's DNS names and IP addresses, or the ACME
	// domain concerned.
	Names []string
	// Serial is the certificate's serial number in hex; NotAfter its expiry.
	Serial   string
	NotAfter time.Time
	// Err is why it failed (EventFailed only).
	Err error
}

// String is a one-line summary, e.g. "reloaded cert.pem: ftp.example.com
// serial 1f.. until 2026-01-02T03:04:05Z".
func (e Event) String() string {
	var b strings.Builder
	b.WriteString(e.Kind.String())
	if e.Source != "" {
		b.WriteString(" " + e.Source)
	}
	if len(e.Names) > 0 {
		b.WriteString(": " + strings.Join(e.Names, ","))
	}
	if e.Serial != "" {
		b.WriteString(" serial " + e.Serial)
	}
	if !e.NotAfter.IsZero() {
		b.WriteString(" until " + e.NotAfter.UTC().Format(time.RFC3339))
	}
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	return b.String()
}

// certEvent describes cert (which may be nil) for an event.
func certEvent(kind EventKind, source string, cert *tls.Certificate, err error) Event {
	e := Event{Kind: kind, Source: source, Err: err}
	if cert != nil && cert.Leaf != nil {
		e.Names = certNames(cert.Leaf)
		e.Serial = hex.EncodeToString(cert.Leaf.SerialNumber.Bytes())
		e.NotAfter = cert.Leaf.NotAfter
	}
	return e
}

func certNames(leaf *x509.Certificate) []string {
	names := append([]string(nil), leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 && leaf.Subject.CommonName != "" {
		names = append(names, leaf.Subject.CommonName)
	}
	return names
}

// serial is a certificate's serial number in hex, "" for none.
func serial(c *tls.Certificate) string {
	if c == nil || c.Leaf == nil {
		return ""
	}
	return hex.EncodeToString(c.Leaf.SerialNumber.Bytes())
}
