package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/ftpsgate/ftpsgate/persist"
	"github.com/ftpsgate/ftpsgate/tlsoffload"
)

// Config is everything a Server needs. The zero value of each field works
// unless its comment says otherwise; defaults live in the getters below.
type Config struct {
	// Listen is the explicit-FTPS listener (AUTH TLS), e.g. ":21". Empty: none.
	Listen string
	// Implicit is the implicit-FTPS listener (TLS from the first byte), e.g.
	// ":990". Empty: none. At least one of Listen and Implicit is required.
	Implicit string

	// PublicHost is the address written into 227 replies (IPv4: a 227
	// carries nothing else). Zero: the local address of the client's control
	// connection, right when clients reach the proxy directly; behind NAT it
	// must be the public address. It also answers PASV on an IPv6 control
	// connection: that client's data connection then arrives over IPv4 from
	// an address the proxy cannot tie to it, so it is taken only under
	// PROT P, from whoever proves to be the client by resuming its TLS
	// session (AllowUnresumedData turns that off). Otherwise, and without
	// PublicHost, PASV on IPv6 is answered 522, telling the client to use
	// EPSV.
	PublicHost netip.Addr
	// PassivePorts is the range passive data listeners are taken from. Zero:
	// any ephemeral port the system hands out.
	PassivePorts PortRange
	// PassivePortSharing lets one passive port wait for the data
	// connections of several sessions at once, if their clients have
	// different IP addresses: each connection goes to the session of its
	// source address. A small range then serves many concurrent sessions;
	// a client's sessions still need a port each. Zero: a port serves one
	// session at a time.
	PassivePortSharing bool
	// PassiveAddresses announce another address than PublicHost in 227
	// replies to clients of some networks, typically the private address
	// to the LAN and PublicHost to the internet when the proxy sits behind
	// NAT. The first entry whose Clients holds the client's IP wins. A 229
	// reply carries only a port (RFC 2428 section 3), so these apply to PASV
	// only. Zero: everyone gets PublicHost.
	PassiveAddresses []PassiveAddress

	// TrustedProxies are the addresses of the L4 balancers in front of the
	// listeners (HAProxy with send-proxy-v2, a cloud NLB with the PROXY
	// protocol on). A connection from one of them must open with a PROXY
	// header, v1 or v2, whose client address then stands for the client
	// everywhere: logs, limits, affinity, source_hash, the data-connection
	// check. Without a header it is closed (else every client would look
	// like the balancer); a header from any other address is refused, the
	// connection closed and the address logged. Clients that are not in
	// these networks may still connect directly, without a header. Zero:
	// no header is believed, and one is refused from everyone.
	TrustedProxies []netip.Prefix
	// DataProxyProtocol makes the passive data ports expect a PROXY header
	// from TrustedProxies too, so that the data-connection check compares
	// the client's real address when the data ports also sit behind the
	// balancer. Zero: a proxied session's data connection is expected
	// from the balancer that carried its control connection, which anyone
	// behind that balancer shares.
	DataProxyProtocol bool

	// ActiveSourcePort is the local port active-mode data connections to
	// clients are dialled from; 20 is what firewalls that expect classic
	// active FTP (RFC 959 section 3.2, L-1) allow. Binding a port below
	// 1024 needs root or CAP_NET_BIND_SERVICE: when the bind fails, the
	// connection is dialled from an ephemeral port and a warning logged.
	// Zero: an ephemeral port.
	ActiveSourcePort uint16
	// AllowForeignDataAddress lets PORT and EPRT name another host than the
	// client (server-to-server "FXP" transfers). That is the FTP bounce
	// attack (RFC 2577 section 3): the proxy would connect wherever a client
	// tells it, from inside the network. Ports below 1024 stay refused
	// either way. Zero: PORT and EPRT must name the client's own IP.
	AllowForeignDataAddress bool

	// Backends are the plain FTP servers behind the proxy, the default pool;
	// one is required. Balance says how a session is given one.
	Backends []Backend
	// Routes send matching sessions (by SNI, HOST or user) to backends of
	// their own; the first route that matches wins, else the default pool.
	Routes  []Route
	Balance Balance
	Health  Health

	// TLSConfig serves the control and data connections alike, so a data
	// connection can resume the control connection's TLS session. Required.
	TLSConfig *tls.Config
	// SessionTLS, if set, returns one session's control and data TLS
	// configurations, whose tickets are bound to that session
	// (tlsoffload's ControlConfig and DataConfig). Zero: they are made
	// from TLSConfig (tlsoffload.SessionConfigs). Unused with
	// AllowUnresumedData.
	SessionTLS func(sessionID string) (control, data *tls.Config)
	// AllowUnresumedData lets a PROT P data connection in without resuming
	// the TLS session of its own control connection, as stock Python
	// ftplib makes them. Then the only check on a passive data connection
	// is its source address: anyone on the client's address (its NAT, a
	// shared host) who connects first takes the transfer, and PASV on an
	// IPv6 control connection, whose data connection comes over IPv4 from
	// an address nothing ties to the client, is refused. Zero: a data
	// connection proves it belongs to its session by resuming it, as
	// vsftpd's require_ssl_reuse and ProFTPD's mod_tls ask by default; one
	// that does not is refused (522), and the port waits on for the
	// rightful client.
	AllowUnresumedData bool
	// PlainAllowed lets clients log in without AUTH TLS (tls.require = false).
	// Zero: USER before AUTH TLS is answered 530, so no password crosses the
	// network in clear.
	PlainAllowed bool
	// RequireDataProtection refuses unprotected data connections: PROT C is
	// answered 536 and a data command before PROT P 534. Zero: PROT C allowed.
	RequireDataProtection bool
	// AllowCCC lets a logged-in client end TLS on the control connection
	// with CCC (RFC 4217 section 6), so that NAT devices and firewalls can
	// read its PORT and PASV exchanges; data connections stay as PROT set
	// them. Everything said on the control connection afterwards, file
	// names included, travels in clear. Zero: CCC is refused with 534.
	AllowCCC bool

	// Banner is the text of the proxy's 220 greeting. Zero: "ftpsgate ready".
	Banner string
	// MaxLine bounds a command line; longer ones are answered 500 and discarded
	// without being buffered. Zero: ftpctl.DefaultMaxLine (4 KiB).
	MaxLine int

	Timeouts Timeouts
	Limits   Limits

	// Logger receives one record per session event and per transfer. Zero:
	// a disabled logger.
	Logger zerolog.Logger
	// Metrics counts sessions, handshakes, logins, transfers and backend
	// events, and New registers the gauges read from the Server with it.
	// Zero (nil): nothing is counted.
	Metrics *Metrics
	// OnTransfer, if set, is called once per ended transfer, after its
	// record is logged and before its final reply is sent (an xferlog
	// writer). It runs on the session's goroutine, concurrently for
	// different sessions, so it must be safe for that and quick.
	OnTransfer func(TransferEvent)
}

// Timeouts bound every blocking step; a zero field takes the default shown.
type Timeouts struct {
	Handshake   time.Duration // TLS handshake, control and data: 10s
	Idle        time.Duration // control connection without a command, not while data moves: 5m
	DataIdle    time.Duration // data connection without a byte either way it should flow: Idle
	DataConnect time.Duration // a data connection being made: a proxy port waiting for the client (passive) or backend (active), a dial to a client (active): 30s
	BackendDial time.Duration // dialling a backend and reading its 220: 10s
	Login       time.Duration // from connecting to a successful login (a 230): 1m
}

func (t Timeouts) handshake() time.Duration   { return orDefault(t.Handshake, 10*time.Second) }
func (t Timeouts) idle() time.Duration        { return orDefault(t.Idle, 5*time.Minute) }
func (t Timeouts) dataIdle() time.Duration    { return orDefault(t.DataIdle, t.idle()) }
func (t Timeouts) dataConnect() time.Duration { return orDefault(t.DataConnect, 30*time.Second) }
func (t Timeouts) backendDial() time.Duration { return orDefault(t.BackendDial, 10*time.Second) }
func (t Timeouts) login() time.Duration       { return orDefault(t.Login, time.Minute) }

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// sessionTLS returns the control and data TLS configurations of session
// id: bound to it unless AllowUnresumedData, when they are TLSConfig and
// openData (tlsoffload.OpenDataConfig of it, made once per generation).
func (c *Config) sessionTLS(id string, openData *tls.Config) (control, data *tls.Config) {
	switch {
	case c.AllowUnresumedData:
		return c.TLSConfig, openData
	case c.SessionTLS != nil:
		return c.SessionTLS(id)
	}
	return tlsoffload.SessionConfigs(c.TLSConfig, id)
}

func (c *Config) banner() string {
	if c.Banner == "" {
		return "ftpsgate ready"
	}
	return c.Banner
}

// PassiveAddress maps client networks to the address their 227 replies
// announce.
type PassiveAddress struct {
	Clients []netip.Prefix // client networks, IPv4 or IPv6
	Address netip.Addr     // IPv4: a 227 reply carries nothing else
}

// Backend is one FTP server behind the proxy.
type Backend struct {
	Address string // host:port
	Name    string // for logs and affinity pins; zero: Address
	Weight  int    // share of sessions relative to the others; zero: 1
	// DataToBackend is how the proxy sets up data connections toward this
	// backend, whatever the client chose toward the proxy. Zero: DataAuto.
	DataToBackend DataMode
	// TLS is how to speak TLS to a backend that is an FTPS server itself.
	// nil (or mode "off"): plain FTP, the point of offloading.
	TLS *tlsoffload.BackendTLS
	// ProxyProtocol sends a PROXY header, before anything else, on each
	// control connection to this backend, so that it sees the client's
	// address (ProFTPD's mod_proxy_protocol, pure-ftpd built with it):
	// the client's real address as source, the address the client reached
	// as destination, and with v2 the session id in a TLV of type
	// SessionIDTLV. Health checks send v2's LOCAL command or v1's "PROXY
	// UNKNOWN" instead. Data connections carry no header. Zero: ProxyOff.
	ProxyProtocol ProxyVersion
}

// tlsMode is the backend's TLS mode, "off" when none is configured.
func (b Backend) tlsMode() string {
	if b.TLS == nil {
		return tlsoffload.BackendOff
	}
	return b.TLS.Mode()
}

// DataMode is how one side of a data connection is set up.
type DataMode uint8

const (
	// DataAuto (toward a backend only) uses the mode the client chose
	// toward the proxy, and the other one when the backend refuses it.
	DataAuto DataMode = iota
	// DataPassive: PASV or EPSV; the proxy connects to the backend's port
	// (toward a client: the client connects to the proxy's).
	DataPassive
	// DataActive: PORT or EPRT; the backend connects to a port the proxy
	// opened (toward a client: the proxy connects to the client's).
	DataActive
)

// ParseDataMode parses "auto", "passive" or "active".
func ParseDataMode(s string) (DataMode, error) {
	switch s {
	case "", "auto":
		return DataAuto, nil
	case "passive":
		return DataPassive, nil
	case "active":
		return DataActive, nil
	}
	return 0, fmt.Errorf("proxy: data mode %q: want auto, passive or active", s)
}

func (m DataMode) String() string {
	switch m {
	case DataPassive:
		return "passive"
	case DataActive:
		return "active"
	}
	return "auto"
}

// other is the mode a DataAuto backend falls back to.
func (m DataMode) other() DataMode {
	if m == DataActive {
		return DataPassive
	}
	return DataActive
}

// Balance says how sessions are spread over a pool and kept on a backend.
type Balance struct {
	// Policy chooses among the available backends. Zero: RoundRobin.
	Policy Policy
	// Affinity pins a client (by IP) or a user to the backend it was given,
	// for AffinityTTL after its last session began. Zero: no pins.
	Affinity Affinity
	// AffinityTTL is how long a pin lasts. Zero: 1h.
	AffinityTTL time.Duration
	// Store holds the pins. nil with Affinity set: an in-memory table. A
	// store with a Save() error method is saved every SaveInterval and at
	// shutdown.
	Store persist.Store
	// SaveInterval between two saves of the store. Zero: 1m.
	SaveInterval time.Duration
	// Retries is how many other backends are tried after the chosen one
	// could not be dialled or did not greet. Zero: every backend of the pool.
	Retries int
}

func (b Balance) affinityTTL() time.Duration  { return orDefault(b.AffinityTTL, time.Hour) }
func (b Balance) saveInterval() time.Duration { return orDefault(b.SaveInterval, time.Minute) }

// Affinity is what a pin is keyed on.
type Affinity uint8

const (
	NoAffinity     Affinity = iota
	SourceAffinity          // the client's IP address
	UserAffinity            // the user name
)

// ParseAffinity parses "none", "source_ip" or "user".
func ParseAffinity(s string) (Affinity, error) {
	switch s {
	case "", "none":
		return NoAffinity, nil
	case "source_ip":
		return SourceAffinity, nil
	case "user":
		return UserAffinity, nil
	}
	return 0, fmt.Errorf("proxy: affinity %q: want none, source_ip or user", s)
}

func (b Backend) name() string {
	if b.Name == "" {
		return b.Address
	}
	return b.Name
}

// PortRange is an inclusive range of TCP ports. The zero value means "any".
type PortRange struct {
	First, Last uint16
}

// ParsePortRange parses "50000-50999" (or a single port).
func ParsePortRange(s string) (PortRange, error) {
	lo, hi, found := strings.Cut(strings.TrimSpace(s), "-")
	if !found {
		hi = lo
	}
	first, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
	last, err2 := strconv.ParseUint(strings.TrimSpace(hi), 10, 16)
	if err1 != nil || err2 != nil || first == 0 || last < first {
		return PortRange{}, fmt.Errorf("proxy: port range %q: want FIRST-LAST with 1 <= FIRST <= LAST <= 65535", s)
	}
	return PortRange{First: uint16(first), Last: uint16(last)}, nil
}

// UnmarshalText makes a PortRange a TOML string value.
func (r *PortRange) UnmarshalText(b []byte) error {
	p, err := ParsePortRange(string(b))
	if err != nil {
		return err
	}
	*r = p
	return nil
}

func (r PortRange) String() string {
	if r == (PortRange{}) {
		return "any"
	}
	return fmt.Sprintf("%d-%d", r.First, r.Last)
}

// Size is the number of ports in the range; 0 for "any".
func (r PortRange) Size() int {
	if r == (PortRange{}) {
		return 0
	}
	return int(r.Last) - int(r.First) + 1
}

// Validate reports every problem with c at once.
func (c *Config) Validate() error {
	var errs []error
	if c.Listen == "" && c.Implicit == "" {
		errs = append(errs, errors.New("proxy: no listener: set an explicit or an implicit listen address"))
	}
	for _, a := range []string{c.Listen, c.Implicit} {
		if a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			errs = append(errs, fmt.Errorf("proxy: listen address %q: %w", a, err))
		}
	}
	if len(c.Backends) == 0 {
		errs = append(errs, errors.New("proxy: no backend"))
	}
	errs = append(errs, validateBackends(c.Backends)...)
	for i, r := range c.Routes {
		if len(r.SNI)+len(r.Host)+len(r.User) == 0 {
			errs = append(errs, fmt.Errorf("proxy: route %d (%s) matches nothing: give it sni, host or user", i, r.Name))
		}
		if len(r.Backends) == 0 {
			errs = append(errs, fmt.Errorf("proxy: route %d (%s) has no backend", i, r.Name))
		}
		errs = append(errs, validateBackends(r.Backends)...)
	}
	if c.PublicHost.IsValid() && !c.PublicHost.Unmap().Is4() {
		errs = append(errs, fmt.Errorf("proxy: public host %s: PASV replies can carry only an IPv4 address", c.PublicHost))
	}
	for i, pa := range c.PassiveAddresses {
		if !pa.Address.Unmap().Is4() {
			errs = append(errs, fmt.Errorf("proxy: passive address %d (%s): PASV replies can carry only an IPv4 address", i, pa.Address))
		}
		if len(pa.Clients) == 0 {
			errs = append(errs, fmt.Errorf("proxy: passive address %d (%s) has no client network", i, pa.Address))
		}
		for _, p := range pa.Clients {
			if !p.IsValid() {
				errs = append(errs, fmt.Errorf("proxy: passive address %d (%s): invalid client network", i, pa.Address))
			}
		}
	}
	l := c.Limits
	for _, n := range []int{l.MaxSessions, l.MaxSessionsPerIP, l.MaxLoginsPerIP, l.MaxPassivePortsPerIP} {
		if n < NoLimit {
			errs = append(errs, errors.New("proxy: limits cannot be negative (NoLimit lifts one)"))
			break
		}
	}
	if l.MaxFailedLogins < 0 || l.SessionRate < 0 || l.UserRate < 0 || l.GlobalRate < 0 {
		errs = append(errs, errors.New("proxy: limits cannot be negative"))
	}
	if l.IPv6Prefix < 0 || l.IPv6Prefix > 128 {
		errs = append(errs, fmt.Errorf("proxy: IPv6 prefix /%d: want 1 to 128", l.IPv6Prefix))
	}
	for _, p := range c.TrustedProxies {
		if !p.IsValid() {
			errs = append(errs, errors.New("proxy: invalid trusted proxy network"))
		}
	}
	if c.DataProxyProtocol && len(c.TrustedProxies) == 0 {
		errs = append(errs, errors.New("proxy: data_proxy_protocol needs trusted_proxies"))
	}
	if c.TLSConfig == nil {
		errs = append(errs, errors.New("proxy: no TLS configuration"))
	}
	return errors.Join(errs...)
}

func validateBackends(bs []Backend) []error {
	var errs []error
	names := map[string]bool{}
	for _, b := range bs {
		if _, _, err := net.SplitHostPort(b.Address); err != nil {
			errs = append(errs, fmt.Errorf("proxy: backend address %q: %w", b.Address, err))
		}
		if names[b.name()] {
			errs = append(errs, fmt.Errorf("proxy: backend name %q used twice in a pool", b.name()))
		}
		names[b.name()] = true
		if b.Weight < 0 {
			errs = append(errs, fmt.Errorf("proxy: backend %s: negative weight", b.name()))
		}
		if b.ProxyProtocol > ProxyV2 {
			errs = append(errs, fmt.Errorf("proxy: backend %s: unknown PROXY protocol version %d", b.name(), b.ProxyProtocol))
		}
		if b.DataToBackend > DataActive {
			errs = append(errs, fmt.Errorf("proxy: backend %s: unknown data mode %d", b.name(), b.DataToBackend))
		}
	}
	return errs
}
