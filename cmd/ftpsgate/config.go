package main

import (
	"bufio"
	"bytes"
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/ftpsgate/ftpsgate/proxy"
	"github.com/ftpsgate/ftpsgate/tlsoffload"
)

// fileConfig is the TOML file as written. Values stay raw here and become
// typed once, in build, where each bad one is reported with its line.
type fileConfig struct {
	Listen struct {
		Explicit     string `toml:"explicit"`
		Implicit     string `toml:"implicit"`
		PublicHost   string `toml:"public_host"`
		PassivePorts string `toml:"passive_ports"`
		PortSharing  bool   `toml:"passive_port_sharing"`
		Banner       string `toml:"banner"`
		// PassiveAddress entries map client networks to 227 addresses.
		PassiveAddress []struct {
			Clients []string `toml:"clients"`
			Address string   `toml:"address"`
		} `toml:"passive_address"`
		ActiveSourcePort        int      `toml:"active_source_port"`
		AllowForeignDataAddress bool     `toml:"allow_foreign_data_address"`
		TrustedProxies          []string `toml:"trusted_proxies"`
		DataProxyProtocol       bool     `toml:"data_proxy_protocol"`
	} `toml:"listen"`
	TLS struct {
		CertFile    string `toml:"cert_file"`
		KeyFile     string `toml:"key_file"`
		Certificate []struct {
			CertFile string `toml:"cert_file"`
			KeyFile  string `toml:"key_file"`
		} `toml:"certificate"`
		StateDir              string `toml:"state_dir"`
		ReloadInterval        string `toml:"reload_interval"`
		MinVersion            string `toml:"min_version"`
		ClientCAFile          string `toml:"client_ca_file"`
		ClientAuth            string `toml:"client_auth"`
		TicketKeyFile         string `toml:"ticket_key_file"`
		TicketRotation        string `toml:"ticket_rotation"`
		Require               *bool  `toml:"require"`
		RequireDataProtection bool   `toml:"require_data_protection"`
		RequireSessionReuse   *bool  `toml:"require_session_reuse"`
		AllowCCC              bool   `toml:"allow_ccc"`
		ACME                  struct {
			Domains         []string `toml:"domains"`
			Email           string   `toml:"email"`
			CacheDir        string   `toml:"cache_dir"`
			DirectoryURL    string   `toml:"directory_url"`
			DirectoryCAFile string   `toml:"directory_ca_file"`
			HTTPListen      string   `toml:"http_listen"`
			TLSALPNListen   string   `toml:"tls_alpn_listen"`
			RenewBefore     string   `toml:"renew_before"`
			Cache           string   `toml:"cache"`
		} `toml:"acme"`
		CipherSuites []string `toml:"cipher_suites"`
	} `toml:"tls"`
	Backend []backendConfig `toml:"backend"`
	Route   []struct {
		Name    string          `toml:"name"`
		SNI     []string        `toml:"sni"`
		Host    []string        `toml:"host"`
		User    []string        `toml:"user"`
		Policy  string          `toml:"policy"`
		Backend []backendConfig `toml:"backend"`
	} `toml:"route"`
	Balance struct {
		Policy       string `toml:"policy"`
		Affinity     string `toml:"affinity"`
		AffinityTTL  string `toml:"affinity_ttl"`
		AffinityMax  int    `toml:"affinity_max"`
		Store        string `toml:"store"`
		StateFile    string `toml:"state_file"`
		RedisURL     string `toml:"redis_url"`
		SaveInterval string `toml:"save_interval"`
		Retries      int    `toml:"retries"`
	} `toml:"balance"`
	Health struct {
		Enabled           *bool  `toml:"enabled"`
		Interval          string `toml:"interval"`
		Timeout           string `toml:"timeout"`
		Fall              int    `toml:"fall"`
		Rise              int    `toml:"rise"`
		ProbeUser         string `toml:"probe_user"`
		ProbePasswordFile string `toml:"probe_password_file"`
		EjectBackoff      string `toml:"eject_backoff"`
	} `toml:"health"`
	Timeouts struct {
		Handshake   string `toml:"handshake"`
		Idle        string `toml:"idle"`
		DataIdle    string `toml:"data_idle"`
		DataConnect string `toml:"data_connect"`
		BackendDial string `toml:"backend_dial"`
		Login       string `toml:"login"`
		Drain       string `toml:"drain"`
	} `toml:"timeouts"`
	Limits struct {
		MaxLine int `toml:"max_line"`
		// The count limits: absent is the default, 0 no limit.
		MaxSessions          *int   `toml:"max_sessions"`
		MaxSessionsPerIP     *int   `toml:"max_sessions_per_ip"`
		MaxLoginsPerIP       *int   `toml:"max_logins_per_ip"`
		MaxPassivePortsPerIP *int   `toml:"max_passive_ports_per_ip"`
		IPv6Prefix           int    `toml:"ipv6_prefix"`
		MaxFailedLogins      int    `toml:"max_failed_logins"`
		SessionRate          string `toml:"session_rate"`
		UserRate             string `toml:"user_rate"`
		GlobalRate           string `toml:"global_rate"`
	} `toml:"limits"`
	Log struct {
		Level      string `toml:"level"`
		Format     string `toml:"format"`
		File       string `toml:"file"`
		MaxSizeMB  int    `toml:"max_size_mb"`
		MaxBackups int    `toml:"max_backups"`
		MaxAgeDays int    `toml:"max_age_days"`
		Compress   bool   `toml:"compress"`
		Xferlog    string `toml:"xferlog"`
	} `toml:"log"`
	Admin struct {
		Listen       string   `toml:"listen"`
		Pprof        bool     `toml:"pprof"`
		User         string   `toml:"user"`
		PasswordFile string   `toml:"password_file"`
		Hosts        []string `toml:"hosts"`
	} `toml:"admin"`
}

type backendConfig struct {
	Address            string `toml:"address"`
	Name               string `toml:"name"`
	Weight             int    `toml:"weight"`
	TLS                string `toml:"tls"`
	CAFile             string `toml:"ca_file"`
	InsecureSkipVerify bool   `toml:"insecure_skip_verify"`
	ServerName         string `toml:"server_name"`
	DataToBackend      string `toml:"data_to_backend"`
	ProxyProtocol      string `toml:"proxy_protocol"`
}

// settings is a loaded configuration: the parts each package takes.
type settings struct {
	proxy     proxy.Config
	tls       tlsoffload.Config
	store     storeSettings
	acmeRedis string // the Redis URL of a shared ACME cache, if any
	logLevel  string
	logFormat string
	admin     adminSettings
	xferlog   string             // the xferlog file; empty: none
	logFile   *lumberjack.Logger // nil: standard output
	drain     time.Duration      // zero: defaultDrain
	// reload reads the configuration again, from the same file and flags,
	// on SIGHUP; nil: SIGHUP reloads the certificates only.
	reload func() (settings, error)
	// warnings are values that work but give something up (an insecure
	// cipher suite): check prints them and passes, serve logs them.
	warnings []configError
}

// defaultDrain is how long SIGTERM lets transfers finish when
// timeouts.drain is not set.
const defaultDrain = 30 * time.Second

// drainTimeout is timeouts.drain, or its default.
func (st settings) drainTimeout() time.Duration { return cmp.Or(st.drain, defaultDrain) }

// storeSettings says where affinity pins live; the store is opened by
// serve, not by check.
type storeSettings struct {
	kind       string // "memory", "file" or "redis"
	stateFile  string
	redisURL   string
	maxEntries int
}

// configError is one problem in the file, with the line it is on (0 when the
// problem is a missing key).
type configError struct {
	File string
	Line int
	Msg  string
}

func (e configError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// loadFile reads a configuration file. Unknown keys are errors, each with
// its line, returned beside the decoded file so that build can report the
// bad values too; a TOML syntax error returns no file.
func loadFile(path string) (*fileConfig, *keyLines, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var fc fileConfig
	md, err := toml.Decode(string(data), &fc)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, nil, configError{path, pe.Position.Line, pe.Message}
		}
		return nil, nil, configError{path, 0, err.Error()}
	}
	lines := indexKeys(data)
	var errs []error
	for _, k := range md.Undecoded() {
		errs = append(errs, configError{path, lines.line(k...), fmt.Sprintf("unknown key %q", k.String())})
	}
	return &fc, lines, errors.Join(errs...)
}

// build turns the file's values (after flags have overridden them) into
// typed configuration, reporting every bad value.
func (fc *fileConfig) build(src string, lines *keyLines) (settings, error) {
	var (
		st   settings
		errs []error
	)
	bad := func(msg string, key ...string) {
		errs = append(errs, configError{src, lines.line(key...), msg})
	}
	// warn records a value that works but gives something up.
	warn := func(msg string, key ...string) {
		st.warnings = append(st.warnings, configError{src, lines.line(key...), msg})
	}
	pc := &st.proxy
	pc.Listen, pc.Implicit = fc.Listen.Explicit, fc.Listen.Implicit
	if pc.Listen == "" && pc.Implicit == "" {
		pc.Listen = ":21"
	}
	pc.Banner = fc.Listen.Banner
	if h := fc.Listen.PublicHost; h != "" {
		ip, err := netip.ParseAddr(h)
		switch {
		case err != nil:
			bad(fmt.Sprintf("listen.public_host %q: want an IPv4 address", h), "listen", "public_host")
		case !ip.Unmap().Is4():
			bad(fmt.Sprintf("listen.public_host %q: PASV replies carry only IPv4 addresses", h), "listen", "public_host")
		default:
			pc.PublicHost = ip.Unmap()
		}
	}
	pc.PassivePortSharing = fc.Listen.PortSharing
	if r := fc.Listen.PassivePorts; r != "" {
		pr, err := proxy.ParsePortRange(r)
		if err != nil {
			bad(fmt.Sprintf("listen.passive_ports %q: want FIRST-LAST, e.g. 50000-50999", r), "listen", "passive_ports")
		}
		pc.PassivePorts = pr
	}
	for i, pa := range fc.Listen.PassiveAddress {
		key := []string{"listen", "passive_address", strconv.Itoa(i)}
		entry := proxy.PassiveAddress{}
		ip, err := netip.ParseAddr(pa.Address)
		if err != nil || !ip.Unmap().Is4() {
			bad(fmt.Sprintf("listen.passive_address.address %q: want an IPv4 address (PASV replies carry no other)", pa.Address), append(key, "address")...)
		}
		entry.Address = ip.Unmap()
		if len(pa.Clients) == 0 {
			bad("listen.passive_address: clients is empty: give the client networks, e.g. [\"10.0.0.0/8\"]", append(key, "clients")...)
		}
		for _, c := range pa.Clients {
			p, err := netip.ParsePrefix(c)
			if err != nil {
				bad(fmt.Sprintf("listen.passive_address.clients %q: want a network such as \"192.168.0.0/16\" or \"2001:db8::/32\"", c), append(key, "clients")...)
				continue
			}
			entry.Clients = append(entry.Clients, p.Masked())
		}
		pc.PassiveAddresses = append(pc.PassiveAddresses, entry)
	}
	if p := fc.Listen.ActiveSourcePort; p < 0 || p > 65535 {
		bad(fmt.Sprintf("listen.active_source_port %d: want 0 (any) or a port, usually 20", p), "listen", "active_source_port")
	} else {
		pc.ActiveSourcePort = uint16(p)
	}
	pc.AllowForeignDataAddress = fc.Listen.AllowForeignDataAddress
	for _, tp := range fc.Listen.TrustedProxies {
		p, err := netip.ParsePrefix(tp)
		if err != nil {
			if ip, ierr := netip.ParseAddr(tp); ierr == nil {
				p, err = ip.Unmap().Prefix(ip.Unmap().BitLen())
			}
		}
		if err != nil {
			bad(fmt.Sprintf("listen.trusted_proxies %q: want an address or a network such as \"10.0.0.0/8\"", tp), "listen", "trusted_proxies")
			continue
		}
		pc.TrustedProxies = append(pc.TrustedProxies, p.Masked())
	}
	pc.DataProxyProtocol = fc.Listen.DataProxyProtocol
	if pc.DataProxyProtocol && len(fc.Listen.TrustedProxies) == 0 {
		bad("listen.data_proxy_protocol needs listen.trusted_proxies: the balancers whose headers are believed", "listen", "data_proxy_protocol")
	}

	t := fc.TLS
	st.tls = tlsoffload.Config{
		CertFile: t.CertFile, KeyFile: t.KeyFile, StateDir: t.StateDir,
		ClientCAFile: t.ClientCAFile, ClientAuth: t.ClientAuth, TicketKeyFile: t.TicketKeyFile,
		ACME: tlsoffload.ACMEConfig{
			Domains: t.ACME.Domains, Email: t.ACME.Email, CacheDir: t.ACME.CacheDir,
			DirectoryURL: t.ACME.DirectoryURL, DirectoryCAFile: t.ACME.DirectoryCAFile,
			HTTPListen: t.ACME.HTTPListen, TLSALPNListen: t.ACME.TLSALPNListen,
		},
	}
	for _, c := range t.Certificate {
		st.tls.Certificates = append(st.tls.Certificates, tlsoffload.KeyPair{CertFile: c.CertFile, KeyFile: c.KeyFile})
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		bad("tls.cert_file and tls.key_file go together", "tls")
	}
	switch t.ClientAuth {
	case "", "none", "request", "require":
	default:
		bad(fmt.Sprintf("tls.client_auth %q: want request or require", t.ClientAuth), "tls", "client_auth")
	}
	pc.AllowUnresumedData = t.RequireSessionReuse != nil && !*t.RequireSessionReuse
	switch t.ACME.Cache {
	case "", "dir":
	case "redis":
		st.acmeRedis = fc.Balance.RedisURL
		if !strings.HasPrefix(st.acmeRedis, "redis://") && !strings.HasPrefix(st.acmeRedis, "rediss://") {
			bad("tls.acme.cache = \"redis\" needs [balance] redis_url", "tls", "acme", "cache")
		}
	default:
		bad(fmt.Sprintf("tls.acme.cache %q: want \"dir\" or \"redis\"", t.ACME.Cache), "tls", "acme", "cache")
	}
	switch fc.TLS.MinVersion {
	case "", "1.2":
		st.tls.MinVersion = tls.VersionTLS12
	case "1.3":
		st.tls.MinVersion = tls.VersionTLS13
	default:
		bad(fmt.Sprintf("tls.min_version %q: want \"1.2\" or \"1.3\"", fc.TLS.MinVersion), "tls", "min_version")
	}
	if t.CipherSuites != nil && len(t.CipherSuites) == 0 {
		bad("tls.cipher_suites is empty: leave it out for the default AEAD suites, or set min_version = \"1.3\" to refuse TLS 1.2", "tls", "cipher_suites")
	}
	for _, name := range t.CipherSuites {
		id, weakness, err := tlsoffload.ParseCipherSuite(name)
		if err != nil {
			bad("tls.cipher_suites: "+err.Error(), "tls", "cipher_suites")
			continue
		}
		if weakness != "" {
			warn(fmt.Sprintf("tls.cipher_suites: %s gives up %s", name, weakness), "tls", "cipher_suites")
		}
		st.tls.CipherSuites = append(st.tls.CipherSuites, id)
	}
	if len(t.CipherSuites) > 0 && st.tls.MinVersion == tls.VersionTLS13 {
		warn("tls.cipher_suites has no effect with min_version = \"1.3\": they are TLS 1.2 suites", "tls", "cipher_suites")
	}
	pc.PlainAllowed = fc.TLS.Require != nil && !*fc.TLS.Require
	pc.RequireDataProtection = fc.TLS.RequireDataProtection
	pc.AllowCCC = fc.TLS.AllowCCC
	if pc.AllowUnresumedData {
		warn("tls.require_session_reuse = false: a PROT P data connection is taken without proof that it is the client's; "+
			"anyone on the client's address (its NAT, a shared host) who reaches the passive port first can take or spoil the transfer, "+
			"and PASV from IPv6 clients answered with public_host is refused. Stock Python ftplib needs this; "+
			"three lines make it resume instead (README, \"Scripts\")", "tls", "require_session_reuse")
	} else if pc.AllowCCC {
		warn("tls.allow_ccc with require_session_reuse: lftp and curl start their data connections' TLS afresh after CCC, "+
			"so their PROT P transfers after CCC get 522; set require_session_reuse = false for them", "tls", "allow_ccc")
	}

	if len(fc.Backend) == 0 {
		bad("no backend: add a [[backend]] with an address, or pass --backend HOST:PORT")
	}
	backends := func(bs []backendConfig, table ...string) []proxy.Backend {
		var out []proxy.Backend
		names := map[string]bool{}
		for i, b := range bs {
			key := append(append([]string{}, table...), strconv.Itoa(i))
			if _, err := netip.ParseAddrPort(b.Address); err != nil && !hostPort(b.Address) {
				bad(fmt.Sprintf("backend.address %q: want HOST:PORT", b.Address), append(key, "address")...)
			}
			if b.Weight < 0 || b.Weight > 1000 {
				bad(fmt.Sprintf("backend.weight %d: want 1 to 1000", b.Weight), append(key, "weight")...)
			}
			name := b.Name
			if name == "" {
				name = b.Address
			}
			if names[name] {
				bad(fmt.Sprintf("backend %q appears twice in one pool: give each a distinct name", name), append(key, "name")...)
			}
			names[name] = true
			bt, err := tlsoffload.NewBackendTLS(tlsoffload.BackendConfig{
				Mode: b.TLS, CAFile: b.CAFile, InsecureSkipVerify: b.InsecureSkipVerify, ServerName: b.ServerName,
			})
			if err != nil {
				bad(fmt.Sprintf("backend %s: %s", name, strings.TrimPrefix(err.Error(), "tlsoffload: ")), append(key, "tls")...)
			}
			mode, err := proxy.ParseDataMode(b.DataToBackend)
			if err != nil {
				bad(fmt.Sprintf("backend %s: data_to_backend %q: want auto, passive or active", name, b.DataToBackend), append(key, "data_to_backend")...)
			}
			pp, err := proxy.ParseProxyVersion(b.ProxyProtocol)
			if err != nil {
				bad(fmt.Sprintf("backend %s: proxy_protocol %q: want v1, v2 or off", name, b.ProxyProtocol), append(key, "proxy_protocol")...)
			}
			out = append(out, proxy.Backend{Address: b.Address, Name: b.Name, Weight: b.Weight, TLS: bt, DataToBackend: mode, ProxyProtocol: pp})
		}
		return out
	}
	pc.Backends = backends(fc.Backend, "backend")
	policy := func(raw string, key ...string) proxy.Policy {
		if raw == "" {
			return proxy.RoundRobin
		}
		p, err := proxy.ParsePolicy(raw)
		if err != nil {
			bad(strings.TrimPrefix(err.Error(), "proxy: "), key...)
		}
		return p
	}
	for i, r := range fc.Route {
		key := []string{"route", strconv.Itoa(i)}
		if len(r.SNI)+len(r.Host)+len(r.User) == 0 {
			bad(fmt.Sprintf("route %q matches nothing: give it sni, host or user", r.Name), key...)
		}
		if len(r.Backend) == 0 {
			bad(fmt.Sprintf("route %q has no [[route.backend]]", r.Name), key...)
		}
		for _, u := range r.User {
			if _, err := path.Match(u, ""); err != nil {
				bad(fmt.Sprintf("route.user pattern %q: %v", u, err), append(key, "user")...)
			}
		}
		pc.Routes = append(pc.Routes, proxy.Route{
			Name: r.Name, SNI: r.SNI, Host: r.Host, User: r.User,
			Policy:   policy(r.Policy, append(key, "policy")...),
			Backends: backends(r.Backend, "route", "backend"),
		})
	}

	bal := &pc.Balance
	bal.Policy = policy(fc.Balance.Policy, "balance", "policy")
	aff, err := proxy.ParseAffinity(fc.Balance.Affinity)
	if err != nil {
		bad(strings.TrimPrefix(err.Error(), "proxy: "), "balance", "affinity")
	}
	bal.Affinity = aff
	bal.Retries = fc.Balance.Retries
	if bal.Retries < 0 {
		bad("balance.retries: want 0 (every backend) or more", "balance", "retries")
	}
	st.store = storeSettings{kind: "memory", stateFile: fc.Balance.StateFile, redisURL: fc.Balance.RedisURL, maxEntries: fc.Balance.AffinityMax}
	switch fc.Balance.Store {
	case "", "file":
		if st.store.stateFile != "" {
			st.store.kind = "file"
		}
	case "redis":
		st.store.kind = "redis"
		if !strings.HasPrefix(st.store.redisURL, "redis://") && !strings.HasPrefix(st.store.redisURL, "rediss://") {
			bad(fmt.Sprintf("balance.redis_url %q: want redis://host:port/db", st.store.redisURL), "balance", "redis_url")
		}
	default:
		bad(fmt.Sprintf("balance.store %q: want file or redis", fc.Balance.Store), "balance", "store")
	}
	if fc.Balance.AffinityMax < 0 {
		bad("balance.affinity_max: want a positive number of pins", "balance", "affinity_max")
	}

	h := &pc.Health
	h.Disabled = fc.Health.Enabled != nil && !*fc.Health.Enabled
	h.Fall, h.Rise = fc.Health.Fall, fc.Health.Rise
	if h.Fall < 0 || h.Rise < 0 {
		bad("health.fall and health.rise: want 1 or more", "health")
	}
	h.ProbeUser = fc.Health.ProbeUser
	if f := fc.Health.ProbePasswordFile; f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			bad(fmt.Sprintf("health.probe_password_file: %v", err), "health", "probe_password_file")
		}
		h.ProbePassword = strings.TrimRight(string(b), "\r\n")
	}
	if h.ProbeUser == "" && fc.Health.ProbePasswordFile != "" {
		bad("health.probe_password_file without probe_user", "health", "probe_password_file")
	}

	for _, d := range []struct {
		table, key string
		raw        string
		dst        *time.Duration
	}{
		{"timeouts", "handshake", fc.Timeouts.Handshake, &pc.Timeouts.Handshake},
		{"timeouts", "idle", fc.Timeouts.Idle, &pc.Timeouts.Idle},
		{"timeouts", "data_idle", fc.Timeouts.DataIdle, &pc.Timeouts.DataIdle},
		{"timeouts", "data_connect", fc.Timeouts.DataConnect, &pc.Timeouts.DataConnect},
		{"timeouts", "backend_dial", fc.Timeouts.BackendDial, &pc.Timeouts.BackendDial},
		{"timeouts", "login", fc.Timeouts.Login, &pc.Timeouts.Login},
		{"timeouts", "drain", fc.Timeouts.Drain, &st.drain},
		{"balance", "affinity_ttl", fc.Balance.AffinityTTL, &bal.AffinityTTL},
		{"balance", "save_interval", fc.Balance.SaveInterval, &bal.SaveInterval},
		{"health", "interval", fc.Health.Interval, &h.Interval},
		{"health", "timeout", fc.Health.Timeout, &h.Timeout},
		{"health", "eject_backoff", fc.Health.EjectBackoff, &h.EjectBackoff},
		{"tls", "reload_interval", t.ReloadInterval, &st.tls.ReloadInterval},
		{"tls", "ticket_rotation", t.TicketRotation, &st.tls.TicketRotation},
		{"tls.acme", "renew_before", t.ACME.RenewBefore, &st.tls.ACME.RenewBefore},
	} {
		if d.raw == "" {
			continue
		}
		v, err := time.ParseDuration(d.raw)
		if err != nil || v <= 0 {
			bad(fmt.Sprintf("%s.%s %q: want a positive duration such as \"30s\" or \"5m\"", d.table, d.key, d.raw), strings.Split(d.table+"."+d.key, ".")...)
		}
		*d.dst = v
	}
	if n := fc.Limits.MaxLine; n != 0 && (n < 512 || n > 1<<20) {
		bad(fmt.Sprintf("limits.max_line %d: want 512 to 1048576 bytes", n), "limits", "max_line")
	}
	pc.MaxLine = fc.Limits.MaxLine
	lim := &pc.Limits
	for _, n := range []struct {
		key     string
		v       *int
		dst     *int
		givesUp string // what 0 gives up, for check
	}{
		{"max_sessions", fc.Limits.MaxSessions, &lim.MaxSessions,
			"enough connections exhaust the proxy's file descriptors and memory"},
		{"max_sessions_per_ip", fc.Limits.MaxSessionsPerIP, &lim.MaxSessionsPerIP,
			"one address can take every session max_sessions allows"},
		{"max_logins_per_ip", fc.Limits.MaxLoginsPerIP, &lim.MaxLoginsPerIP,
			"one address can hold as many sessions that never log in as max_sessions_per_ip allows, each for timeouts.login"},
		{"max_passive_ports_per_ip", fc.Limits.MaxPassivePortsPerIP, &lim.MaxPassivePortsPerIP,
			"one logged-in client can hold every port of passive_ports, a session per port, and others get 425"},
	} {
		switch {
		case n.v == nil: // the default
		case *n.v < 0:
			bad(fmt.Sprintf("limits.%s %d: want 0 (no limit) or more", n.key, *n.v), "limits", n.key)
		case *n.v == 0:
			*n.dst = proxy.NoLimit
			warn(fmt.Sprintf("limits.%s = 0: no limit; %s", n.key, n.givesUp), "limits", n.key)
		default:
			*n.dst = *n.v
		}
	}
	if n := fc.Limits.MaxFailedLogins; n < 0 {
		bad(fmt.Sprintf("limits.max_failed_logins %d: want 1 or more (0 is the default, 3)", n), "limits", "max_failed_logins")
	}
	lim.MaxFailedLogins = fc.Limits.MaxFailedLogins
	if n := fc.Limits.IPv6Prefix; n < 0 || n > 128 {
		bad(fmt.Sprintf("limits.ipv6_prefix %d: want 1 to 128 (64, the default, counts a /64 as one client)", n), "limits", "ipv6_prefix")
	} else {
		lim.IPv6Prefix = n
	}
	for _, r := range []struct {
		key string
		raw string
		dst *int64
	}{
		{"session_rate", fc.Limits.SessionRate, &lim.SessionRate},
		{"user_rate", fc.Limits.UserRate, &lim.UserRate},
		{"global_rate", fc.Limits.GlobalRate, &lim.GlobalRate},
	} {
		if r.raw == "" {
			continue
		}
		v, err := parseRate(r.raw)
		if err != nil {
			bad(fmt.Sprintf("limits.%s %q: %v", r.key, r.raw, err), "limits", r.key)
		}
		*r.dst = v
	}

	st.logLevel, st.logFormat = fc.Log.Level, fc.Log.Format
	st.xferlog, st.admin = fc.Log.Xferlog, adminSettings{listen: fc.Admin.Listen, pprof: fc.Admin.Pprof}
	if _, _, err := net.SplitHostPort(st.admin.listen); st.admin.listen != "" && err != nil {
		bad(fmt.Sprintf("admin.listen %q: want host:port, e.g. 127.0.0.1:9100", st.admin.listen), "admin", "listen")
	}
	st.admin.user = cmp.Or(fc.Admin.User, "admin")
	if f := fc.Admin.PasswordFile; f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			bad(fmt.Sprintf("admin.password_file: %v", err), "admin", "password_file")
		} else if st.admin.password = strings.TrimRight(string(b), "\r\n"); st.admin.password == "" {
			bad(fmt.Sprintf("admin.password_file %s is empty", f), "admin", "password_file")
		}
	}
	if fc.Admin.User != "" && fc.Admin.PasswordFile == "" {
		bad("admin.user without password_file", "admin", "user")
	}
	// The status page shows who is logged in, from where, and which files
	// they move: anyone who can reach the listener can read it.
	if _, _, err := net.SplitHostPort(st.admin.listen); err == nil && fc.Admin.PasswordFile == "" && !loopbackListen(st.admin.listen) {
		bad(fmt.Sprintf("admin.listen %q is reachable from other machines: set admin.password_file, or listen on 127.0.0.1", st.admin.listen), "admin", "listen")
	}
	for _, h := range fc.Admin.Hosts {
		name, ok := adminHostName(h)
		if !ok {
			bad(fmt.Sprintf("admin.hosts %q: want a host name without port, e.g. \"status.example.com\"", h), "admin", "hosts")
			continue
		}
		st.admin.hosts = append(st.admin.hosts, name)
	}
	if _, err := parseLevel(st.logLevel); err != nil {
		bad(err.Error(), "log", "level")
	}
	switch st.logFormat {
	case "", "json", "console":
	default:
		bad(fmt.Sprintf("log.format %q: want \"json\" or \"console\"", st.logFormat), "log", "format")
	}
	for _, n := range []struct {
		key string
		v   int
	}{{"max_size_mb", fc.Log.MaxSizeMB}, {"max_backups", fc.Log.MaxBackups}, {"max_age_days", fc.Log.MaxAgeDays}} {
		if n.v < 0 {
			bad(fmt.Sprintf("log.%s %d: want 0 (the default) or more", n.key, n.v), "log", n.key)
		}
	}
	if fc.Log.File != "" {
		st.logFile = &lumberjack.Logger{
			Filename:   fc.Log.File,
			MaxSize:    cmp.Or(fc.Log.MaxSizeMB, 100),
			MaxBackups: cmp.Or(fc.Log.MaxBackups, 10),
			MaxAge:     fc.Log.MaxAgeDays, // 0 keeps old files whatever their age
			Compress:   fc.Log.Compress,
		}
	}
	return st, errors.Join(errs...)
}

// hostPort reports whether s looks like "name:port" with a numeric port.
func hostPort(s string) bool {
	i := strings.LastIndexByte(s, ':')
	if i <= 0 {
		return false
	}
	p, err := strconv.ParseUint(s[i+1:], 10, 16)
	return err == nil && p > 0 && !strings.ContainsAny(s[:i], " /")
}

// keyLines maps dotted key paths to the lines they are set on, so errors
// found after decoding can still name their line. Arrays of tables are
// numbered: backend.0.address.
type keyLines struct {
	lines map[string]int
}

func indexKeys(data []byte) *keyLines {
	kl := &keyLines{lines: make(map[string]int)}
	table := ""
	arrays := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		switch {
		case l == "" || l[0] == '#':
		case strings.HasPrefix(l, "[["):
			name := strings.TrimSpace(strings.Trim(strings.SplitN(l, "#", 2)[0], "[] \t"))
			table = name + "." + strconv.Itoa(arrays[name])
			arrays[name]++
			kl.set(table, n)
			kl.set(name, n)
		case l[0] == '[':
			table = strings.TrimSpace(strings.Trim(strings.SplitN(l, "#", 2)[0], "[] \t"))
			kl.set(table, n)
		default:
			key, _, ok := strings.Cut(l, "=")
			if !ok {
				continue
			}
			key = strings.Trim(strings.TrimSpace(key), `"'`)
			if table != "" {
				key = table + "." + key
			}
			kl.set(key, n)
			// Undecoded keys of arrays of tables come without the index.
			var plain []string
			for _, part := range strings.Split(key, ".") {
				if _, err := strconv.Atoi(part); err != nil {
					plain = append(plain, part)
				}
			}
			kl.set(strings.Join(plain, "."), n)
		}
	}
	return kl
}

func (kl *keyLines) set(key string, line int) {
	if _, ok := kl.lines[key]; !ok {
		kl.lines[key] = line
	}
}

// line returns the line of the longest prefix of key that was set, or 0.
func (kl *keyLines) line(key ...string) int {
	if kl == nil {
		return 0
	}
	for n := len(key); n > 0; n-- {
		if l, ok := kl.lines[strings.Join(key[:n], ".")]; ok {
			return l
		}
	}
	return 0
}

// parseRate reads a data rate in bytes per second: "10MiB", "500 KB/s",
// "1.5GB", or a plain number of bytes; "0" is no cap. KB, MB and GB are powers of 1000,
// KiB, MiB and GiB of 1024, as everywhere else.
func parseRate(s string) (int64, error) {
	num := strings.TrimSuffix(strings.TrimSpace(s), "/s")
	unit := strings.TrimLeft(num, "0123456789.")
	num = strings.TrimSpace(strings.TrimSuffix(num, unit))
	mult, ok := map[string]float64{
		"": 1, "B": 1,
		"KB": 1e3, "MB": 1e6, "GB": 1e9,
		"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30,
	}[strings.TrimSpace(unit)]
	v, err := strconv.ParseFloat(num, 64)
	if !ok || err != nil || v < 0 || v*mult > 1<<50 {
		return 0, errors.New(`want a rate in bytes per second, such as "10MiB" or "500KB", or "0" for no cap`)
	}
	if v == 0 {
		return 0, nil
	}
	return max(int64(v*mult), 1), nil
}
