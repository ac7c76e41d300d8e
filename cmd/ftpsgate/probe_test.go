package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"

	"github.com/ftpsgate/ftpsgate/ftpctl/ftptest"
	"github.com/ftpsgate/ftpsgate/proxy"
	"github.com/ftpsgate/ftpsgate/tlsoffload"
)

// probeEnv is a proxy serving in-process in front of an in-memory
// backend, and a configuration file that describes them, for probe.
type probeEnv struct {
	dir     string
	config  string
	backend *ftptest.Server
	srv     *proxy.Server
}

// newProbeEnv starts the backend (user alice, password s3cret-pw) and the
// proxy, with a certificate for localhost and 127.0.0.1, and writes
// ftpsgate.toml with their addresses followed by extra. backendFn and
// proxyFn, if not nil, change the backend and the proxy's configuration.
func newProbeEnv(t *testing.T, extra string, backendFn func(*ftptest.Server), proxyFn func(*proxy.Config)) *probeEnv {
	t.Helper()
	e := &probeEnv{dir: t.TempDir()}
	cert, err := tlsoffload.SelfSigned([]string{"localhost", "127.0.0.1"}, 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(e.dir, "cert.pem"), filepath.Join(e.dir, "key.pem")
	writeFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})))
	writeFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key})))
	writeFile(t, filepath.Join(e.dir, "password"), "s3cret-pw\n")
	writeFile(t, filepath.Join(e.dir, "wrong-password"), "not-the-password\n")

	e.backend = ftptest.NewUnstartedServer()
	e.backend.Users = map[string]string{"alice": "s3cret-pw"}
	e.backend.FS.WriteFile("/hello.txt", []byte("hello\n"))
	e.backend.FS.WriteFile("/pub/file.bin", []byte("data"))
	if backendFn != nil {
		backendFn(e.backend)
	}
	e.backend.Start()
	t.Cleanup(e.backend.Close)

	off, err := tlsoffload.New(tlsoffload.Config{CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	cfg := proxy.Config{
		Listen:    "127.0.0.1:0",
		Implicit:  "127.0.0.1:0",
		Backends:  []proxy.Backend{{Address: e.backend.Addr(), Name: "mem"}},
		TLSConfig: off.TLSConfig(),
		Logger:    zerolog.New(suiteLog).Level(zerolog.DebugLevel).With().Timestamp().Logger(),
	}
	if proxyFn != nil {
		proxyFn(&cfg)
	}
	if e.srv, err = proxy.New(cfg); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})

	e.config = filepath.Join(e.dir, "ftpsgate.toml")
	writeFile(t, e.config, fmt.Sprintf(`# written by newProbeEnv
[listen]
explicit = %q
implicit = %q

[tls]
cert_file = %q
key_file = %q

[[backend]]
name = "mem"
address = %q
%s`, e.srv.ExplicitAddr(), e.srv.ImplicitAddr(), certFile, keyFile, e.backend.Addr(), extra))
	return e
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// probe runs `ftpsgate probe` on the environment's configuration and
// returns its output and exit code.
func (e *probeEnv) probe(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, errOut, err := runCLISerial(t, append([]string{"probe", "--config", e.config, "--timeout", "5s"}, args...)...)
	suiteLog.ScanLines([]byte(out + errOut))
	code := 0
	if err != nil {
		var ec cli.ExitCoder
		if !errors.As(err, &ec) {
			t.Fatalf("probe: %v\n%s%s", err, out, errOut)
		}
		code = ec.ExitCode()
	}
	return out, code
}

// expectLines checks that out has, in this order, lines matching each of
// patterns (regular expressions of whole lines); other lines may come
// between them.
func expectLines(t *testing.T, out string, patterns ...string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	i := 0
	for _, p := range patterns {
		re := regexp.MustCompile("^" + p + "$")
		for i < len(lines) && !re.MatchString(lines[i]) {
			i++
		}
		if i == len(lines) {
			t.Fatalf("no line matching %q (in order) in:\n%s", p, out)
		}
		i++
	}
}

// TestProbeAllOK: a sound configuration, a running proxy, a valid
// account: every check passes, the self-signed certificate is a warning,
// and both data connections resumed the control session.
func TestProbeAllOK(t *testing.T) {
	t.Parallel()
	e := newProbeEnv(t, "", nil, nil)
	out, code := e.probe(t, "--user", "alice", "--password-file", filepath.Join(e.dir, "password"))
	if code != 0 || strings.Contains(out, "FAIL") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	ex, im := regexp.QuoteMeta(e.srv.ExplicitAddr().String()), regexp.QuoteMeta(e.srv.ImplicitAddr().String())
	expectLines(t, out,
		`ok    configuration .*ftpsgate\.toml: 1 backend, 0 routes`,
		`ok    backend mem \(`+regexp.QuoteMeta(e.backend.Addr())+`\), pool default: 220 ftptest ready; FEAT: .*\bEPSV\b.*`,
		`warn  certificate: .*cert\.pem is self-signed: clients must be told to trust it .*`,
		`      fix: see .*ftpsgate\.toml:7`,
		`ok    certificate .*cert\.pem: localhost, 127\.0\.0\.1, valid until \d{4}-\d\d-\d\d`,
		`ok    explicit listener `+ex+`: 220 ftpsgate ready`,
		`ok    TLS on `+ex+`: TLS 1\.3, TLS_\w+`,
		`warn  served certificate localhost, 127\.0\.0\.1, valid until \d{4}-\d\d-\d\d: self-signed, chain not verified`,
		`      fix: clients must be told to trust it \(SHA-256 fingerprint ([0-9A-F]{2}:){31}[0-9A-F]{2}\), .*`,
		`ok    implicit listener `+im+`: TLS 1\.3, TLS_\w+; 220 ftpsgate ready`,
		`ok    login as alice: 230 .*`,
		`ok    LIST over PASV via 127\.0\.0\.1:\d+, PROT P: TLS 1\.3, resumed the control TLS session; 2 entries, 226 .*`,
		`ok    LIST over EPSV via 127\.0\.0\.1:\d+, PROT P: TLS 1\.3, resumed the control TLS session; 2 entries, 226 .*`,
		`probe: no failure, 2 warnings`,
	)
	if n := strings.Count(strings.Join(e.backend.Commands(), "\n"), "LIST"); n != 2 {
		t.Errorf("the backend saw %d LIST, want 2 (one per data mode)", n)
	}
}

// TestProbeFailures: each broken thing stops the probe at its own check,
// with a FAIL line saying what to change, and exit status 1.
func TestProbeFailures(t *testing.T) {
	t.Parallel()
	dead := freeAddr(t)
	for _, tc := range []struct {
		name     string
		extra    string
		backend  func(*ftptest.Server)
		proxy    func(*proxy.Config)
		password string
		args     []string
		want     []string
	}{
		{
			name: "dead backend",
			extra: `
[[backend]]
name = "spare"
address = "` + dead + `"
`,
			proxy: func(c *proxy.Config) {
				c.Backends = append(c.Backends, proxy.Backend{Address: dead, Name: "spare"})
			},
			want: []string{
				`ok    backend mem .*`,
				`FAIL  backend spare \(` + dead + `\), pool default: dial tcp ` + dead + `: connect: connection refused`,
				`      fix: start the FTP server at ` + dead + `, or correct its address \(.*ftpsgate\.toml:16\)`,
			},
		},
		{
			name: "certificate not valid for the name clients use",
			args: []string{"--server-name", "ftp.example.com"},
			want: []string{
				`ok    TLS on .*`,
				`FAIL  served certificate localhost, 127\.0\.0\.1, valid until .*: not valid for ftp\.example\.com`,
				`      fix: serve a certificate for ftp\.example\.com: tls\.cert_file and tls\.key_file, a \[\[tls\.certificate\]\], or tls\.acme\.domains`,
			},
		},
		{
			name:     "wrong password",
			password: "wrong-password",
			want: []string{
				`ok    implicit listener .*`,
				`FAIL  login as alice: 530 Login incorrect\.`,
				`      fix: check --user and --password-file against the accounts of the backends; the backend answered`,
			},
		},
		{
			name: "backend without passive mode, reached in passive mode",
			extra: `data_to_backend = "passive"
`,
			backend: func(s *ftptest.Server) { s.DisablePassive = true },
			want: []string{
				`ok    backend mem .*; FEAT: EPRT .*`,
				`FAIL  backend mem \(.*\), pool default refuses PASV and EPSV`,
				`      fix: enable passive mode on the server \(vsftpd: pasv_enable=YES\), or set data_to_backend = "active" \(.*ftpsgate\.toml:13\)`,
			},
		},
		{
			name: "route by a server name no certificate covers",
			extra: `
[[route]]
name = "partners"
sni = ["partners.example.com"]
[[route.backend]]
address = "` + "BACKEND" + `"
`,
			want: []string{
				`ok    backend .*, route partners: 220 .*`,
				`ok    certificate .*`,
				`FAIL  route partners: no certificate covers server name partners\.example\.com: those clients get the default certificate and refuse it`,
				`      fix: add a \[\[tls.certificate\]\] for partners\.example\.com, or add it to tls\.acme\.domains \(route at .*ftpsgate\.toml:16\)`,
			},
		},
		{
			name: "data connections that cannot resume",
			proxy: func(c *proxy.Config) {
				c.TLSConfig = c.TLSConfig.Clone()
				c.TLSConfig.SessionTicketsDisabled = true
				// Else the proxy refuses the transfer itself (522): the
				// probe's own check is what this case is about.
				c.AllowUnresumedData = true
			},
			want: []string{
				`ok    login as alice: 230 .*`,
				`FAIL  LIST over PASV via 127\.0\.0\.1:\d+: TLS 1\.3, but the data connection did not resume the control TLS session`,
				`      fix: clients resume .* tls\.ticket_key_file`,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newProbeEnv(t, tc.extra, tc.backend, tc.proxy)
			if strings.Contains(tc.extra, "BACKEND") {
				src, _ := os.ReadFile(e.config)
				writeFile(t, e.config, strings.ReplaceAll(string(src), "BACKEND", e.backend.Addr()))
			}
			pw := tc.password
			if pw == "" {
				pw = "password"
			}
			out, code := e.probe(t, append([]string{"--user", "alice", "--password-file", filepath.Join(e.dir, pw)}, tc.args...)...)
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			expectLines(t, out, tc.want...)
			if n := strings.Count(out, "FAIL"); n != 1 {
				t.Errorf("%d FAIL lines, want 1: the probe stops at the first", n)
			}
			last := strings.Split(strings.TrimSpace(out), "\n")
			if !strings.HasPrefix(last[len(last)-1], "      fix: ") {
				t.Errorf("the probe went on after its failure:\n%s", out)
			}
		})
	}
}

// TestProbeWithoutUser: the login steps are skipped with a warning; the
// rest passes and the exit status is 0.
func TestProbeWithoutUser(t *testing.T) {
	t.Parallel()
	e := newProbeEnv(t, "", nil, nil)
	out, code := e.probe(t)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	expectLines(t, out,
		`ok    implicit listener .*`,
		`warn  login, listings over PASV and EPSV, and TLS resumption of data connections not checked: no --user`,
		`      fix: give --user and --password-file .*`,
		`probe: no failure, 3 warnings`,
	)
	if strings.Contains(strings.Join(e.backend.Commands(), "\n"), "USER") {
		t.Error("a login reached the backend without --user")
	}
}

// TestProbeProxyNotRunning: nothing listens on the explicit address.
func TestProbeProxyNotRunning(t *testing.T) {
	t.Parallel()
	e := newProbeEnv(t, "", nil, nil)
	src, _ := os.ReadFile(e.config)
	dead := freeAddr(t)
	writeFile(t, e.config, strings.Replace(string(src), e.srv.ExplicitAddr().String(), dead, 1))
	out, code := e.probe(t)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	expectLines(t, out,
		`FAIL  explicit listener `+dead+`: dial tcp `+dead+`: connect: connection refused`,
		"      fix: start `ftpsgate serve --config .*ftpsgate.toml`, or check listen.explicit \\(.*ftpsgate\\.toml:3\\) and the firewall",
	)
}

func TestProbeFlags(t *testing.T) {
	t.Parallel()
	e := newProbeEnv(t, "", nil, nil)
	for _, args := range [][]string{
		{"probe"},
		{"probe", "--config", e.config, "--user", "alice"},
		{"probe", "--config", e.config, "--password-file", filepath.Join(e.dir, "password")},
		{"probe", "--config", e.config, "--user", "alice", "--password-file", filepath.Join(e.dir, "missing")},
	} {
		out, _, err := runCLISerial(t, args...)
		if err == nil || out != "" {
			t.Errorf("%q: err %v, output %q; want an error before any check", args, err, out)
		}
	}
	// A configuration with errors fails at the first step.
	bad := filepath.Join(e.dir, "bad.toml")
	writeFile(t, bad, "[listen]\nexplicit = \"127.0.0.1:2121\"\nbogus = 1\n")
	out, _, err := runCLISerial(t, "probe", "--config", bad)
	var ec cli.ExitCoder
	if !errors.As(err, &ec) || ec.ExitCode() != 1 {
		t.Errorf("bad configuration: %v", err)
	}
	expectLines(t, out,
		`FAIL  .*bad\.toml:3: unknown key "listen\.bogus"`,
		`FAIL  configuration .*bad\.toml`,
		"      fix: `ftpsgate check --config .*bad.toml` lists every error with its line",
	)
}

func TestDialAddress(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		":21":                "127.0.0.1:21",
		"0.0.0.0:990":        "127.0.0.1:990",
		"[::]:21":            "[::1]:21",
		"192.0.2.1:2121":     "192.0.2.1:2121",
		"ftp.example.com:21": "ftp.example.com:21",
	} {
		if got, _ := dialAddress(in); got != want {
			t.Errorf("dialAddress(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestProbeFromTrustedProxy: run from an address in listen.trusted_proxies,
// where the proxy refuses connections without a PROXY header, the probe
// sends one naming itself, on the data connections too with
// data_proxy_protocol, and every check passes.
func TestProbeFromTrustedProxy(t *testing.T) {
	t.Parallel()
	e := newProbeEnv(t, "", nil, func(c *proxy.Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		c.DataProxyProtocol = true
	})
	conf, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, e.config, strings.Replace(string(conf), "[listen]\n",
		"[listen]\ntrusted_proxies = [\"127.0.0.0/8\"]\ndata_proxy_protocol = true\n", 1))
	out, code := e.probe(t, "--user", "alice", "--password-file", filepath.Join(e.dir, "password"))
	if code != 0 || strings.Contains(out, "FAIL") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	expectLines(t, out,
		`ok    PROXY protocol: this host \(127\.0\.0\.1\) is in listen\.trusted_proxies \(.*ftpsgate\.toml:\d+\): the probe sends a v2 header naming itself`,
		`ok    explicit listener .*: 220 ftpsgate ready`,
		`ok    implicit listener .*; 220 ftpsgate ready`,
		`ok    login as alice: 230 .*`,
		`ok    LIST over PASV via .*resumed the control TLS session; 2 entries, 226 .*`,
		`ok    LIST over EPSV via .*resumed the control TLS session; 2 entries, 226 .*`,
	)
	if strings.Count(out, "PROXY protocol") != 1 {
		t.Errorf("the PROXY header is announced more than once:\n%s", out)
	}
}
