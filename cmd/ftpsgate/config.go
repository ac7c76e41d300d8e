package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

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
		Banner       string `toml:"banner"`
	} `toml:"listen"`
	TLS struct {
		CertFile              string `toml:"cert_file"`
		KeyFile               string `toml:"key_file"`
		MinVersion            string `toml:"min_version"`
		Require               *bool  `toml:"require"`
		RequireDataProtection bool   `toml:"require_data_protection"`
	} `toml:"tls"`
	Backend []struct {
		Address string `toml:"address"`
		Name    string `toml:"name"`
	} `toml:"backend"`
	Timeouts struct {
		Handshake   string `toml:"handshake"`
		Idle        string `toml:"idle"`
		DataConnect string `toml:"data_connect"`
		BackendDial string `toml:"backend_dial"`
	} `toml:"timeouts"`
	Limits struct {
		MaxLine int `toml:"max_line"`
	} `toml:"limits"`
	Log struct {
		Level  string `toml:"level"`
		Format string `toml:"format"`
	} `toml:"log"`
}

// settings is a loaded configuration: the parts each package takes.
type settings struct {
	proxy     proxy.Config
	tls       tlsoffload.Config
	logLevel  string
	logFormat string
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
func (fc *fileConfig) build(path string, lines *keyLines) (settings, error) {
	var (
		st   settings
		errs []error
	)
	bad := func(msg string, key ...string) {
		errs = append(errs, configError{path, lines.line(key...), msg})
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
	if r := fc.Listen.PassivePorts; r != "" {
		pr, err := proxy.ParsePortRange(r)
		if err != nil {
			bad(fmt.Sprintf("listen.passive_ports %q: want FIRST-LAST, e.g. 50000-50999", r), "listen", "passive_ports")
		}
		pc.PassivePorts = pr
	}

	st.tls = tlsoffload.Config{CertFile: fc.TLS.CertFile, KeyFile: fc.TLS.KeyFile}
	if (fc.TLS.CertFile == "") != (fc.TLS.KeyFile == "") {
		bad("tls.cert_file and tls.key_file go together", "tls")
	}
	switch fc.TLS.MinVersion {
	case "", "1.2":
		st.tls.MinVersion = tls.VersionTLS12
	case "1.3":
		st.tls.MinVersion = tls.VersionTLS13
	default:
		bad(fmt.Sprintf("tls.min_version %q: want \"1.2\" or \"1.3\"", fc.TLS.MinVersion), "tls", "min_version")
	}
	pc.PlainAllowed = fc.TLS.Require != nil && !*fc.TLS.Require
	pc.RequireDataProtection = fc.TLS.RequireDataProtection

	if len(fc.Backend) == 0 {
		bad("no backend: add a [[backend]] with an address, or pass --backend HOST:PORT")
	}
	for i, b := range fc.Backend {
		if _, err := netip.ParseAddrPort(b.Address); err != nil && !hostPort(b.Address) {
			bad(fmt.Sprintf("backend.address %q: want HOST:PORT", b.Address), "backend", strconv.Itoa(i), "address")
		}
		pc.Backends = append(pc.Backends, proxy.Backend{Address: b.Address, Name: b.Name})
	}

	for _, d := range []struct {
		key string
		raw string
		dst *time.Duration
	}{
		{"handshake", fc.Timeouts.Handshake, &pc.Timeouts.Handshake},
		{"idle", fc.Timeouts.Idle, &pc.Timeouts.Idle},
		{"data_connect", fc.Timeouts.DataConnect, &pc.Timeouts.DataConnect},
		{"backend_dial", fc.Timeouts.BackendDial, &pc.Timeouts.BackendDial},
	} {
		if d.raw == "" {
			continue
		}
		v, err := time.ParseDuration(d.raw)
		if err != nil || v <= 0 {
			bad(fmt.Sprintf("timeouts.%s %q: want a positive duration such as \"30s\" or \"5m\"", d.key, d.raw), "timeouts", d.key)
		}
		*d.dst = v
	}
	if n := fc.Limits.MaxLine; n != 0 && (n < 512 || n > 1<<20) {
		bad(fmt.Sprintf("limits.max_line %d: want 512 to 1048576 bytes", n), "limits", "max_line")
	}
	pc.MaxLine = fc.Limits.MaxLine

	st.logLevel, st.logFormat = fc.Log.Level, fc.Log.Format
	if _, err := parseLevel(st.logLevel); err != nil {
		bad(err.Error(), "log", "level")
	}
	switch st.logFormat {
	case "", "json", "console":
	default:
		bad(fmt.Sprintf("log.format %q: want \"json\" or \"console\"", st.logFormat), "log", "format")
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
			if parts := strings.Split(key, "."); len(parts) == 3 {
				if _, err := strconv.Atoi(parts[1]); err == nil {
					kl.set(parts[0]+"."+parts[2], n)
				}
			}
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
