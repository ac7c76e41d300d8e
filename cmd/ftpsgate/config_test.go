package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ftpsgate/ftpsgate/ftpctl/ftptest"
	"github.com/ftpsgate/ftpsgate/proxy"
	"github.com/ftpsgate/ftpsgate/tlsoffload"
)

// runCLI runs the command line in-process and returns stdout, stderr and
// the error.
func runCLI(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := runCLITo(&out, &errOut, args...)
	return out.String(), errOut.String(), err
}

// runCLITo is runCLI writing to the given writers, for a test that reads
// them while the command runs.
func runCLITo(out, errOut io.Writer, args ...string) error {
	app := newApp()
	app.Writer, app.ErrWriter = out, errOut
	app.ExitErrHandler = func(*cli.Context, error) {}
	return app.Run(append([]string{"ftpsgate"}, args...))
}

// exampleWithCerts copies examples/ftpsgate.toml with its certificate paths
// pointing at a certificate made for the test.
func exampleWithCerts(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cert, err := tlsoffload.SelfSigned([]string{"ftp.example.com"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	os.WriteFile(filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600)
	os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600)
	os.WriteFile(filepath.Join(dir, "probe-password"), []byte("probe-pw\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "admin-password"), []byte("admin-pw\n"), 0o600)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	os.WriteFile(filepath.Join(dir, "client-ca.pem"), certPEM, 0o600)
	os.WriteFile(filepath.Join(dir, "backend-ca.pem"), certPEM, 0o600)
	other, _ := tlsoffload.SelfSigned([]string{"partners.example.com"}, time.Hour)
	otherKey, _ := x509.MarshalPKCS8PrivateKey(other.PrivateKey)
	os.WriteFile(filepath.Join(dir, "partners.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: other.Certificate[0]}), 0o600)
	os.WriteFile(filepath.Join(dir, "partners-key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: otherKey}), 0o600)
	os.WriteFile(filepath.Join(dir, "ticket-keys"), []byte("# current first\nMDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"), 0o600)
	state := filepath.Join(dir, "state")
	os.MkdirAll(filepath.Join(state, "acme"), 0o700)
	src, err := os.ReadFile("../../examples/ftpsgate.toml")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "ftpsgate.toml")
	src = bytes.ReplaceAll(src, []byte("/etc/ftpsgate/"), []byte(dir+"/"))
	src = bytes.ReplaceAll(src, []byte("/var/lib/ftpsgate"), []byte(state))
	os.WriteFile(path, src, 0o600)
	return path
}

func TestExamplesCheck(t *testing.T) {
	for _, path := range []string{exampleWithCerts(t), "../../examples/minimal.toml"} {
		out, errOut, err := runCLI(t, "check", "--config", path)
		if err != nil || !strings.Contains(out, ": ok") {
			t.Errorf("check %s: %v\n%s%s", path, err, out, errOut)
		}
	}
}

// TestExampleDocumentsEveryKey: every key the loader accepts appears in
// examples/ftpsgate.toml, so the example stays the reference.
func TestExampleDocumentsEveryKey(t *testing.T) {
	src, err := os.ReadFile("../../examples/ftpsgate.toml")
	if err != nil {
		t.Fatal(err)
	}
	lines := indexKeys(src)
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			key := strings.Split(f.Tag.Get("toml"), ",")[0]
			if prefix != "" {
				key = prefix + "." + key
			}
			ft := f.Type
			if ft.Kind() == reflect.Slice {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				walk(key, ft)
				continue
			}
			if _, ok := lines.lines[key]; !ok {
				t.Errorf("key %q is not documented in examples/ftpsgate.toml", key)
			}
		}
	}
	walk("", reflect.TypeOf(fileConfig{}))
}

func TestExampleValues(t *testing.T) {
	fc, lines, err := loadFile(exampleWithCerts(t))
	if err != nil {
		t.Fatal(err)
	}
	st, err := fc.build("example", lines)
	if err != nil {
		t.Fatal(err)
	}
	pc := st.proxy
	if pc.Listen != ":21" || pc.Implicit != ":990" {
		t.Errorf("listeners %q %q", pc.Listen, pc.Implicit)
	}
	if pc.PassivePorts != (proxy.PortRange{First: 50000, Last: 50999}) {
		t.Errorf("passive ports %v", pc.PassivePorts)
	}
	if pc.PublicHost.String() != "203.0.113.10" {
		t.Errorf("public host %v", pc.PublicHost)
	}
	if len(pc.Backends) != 2 || pc.Backends[1].Address != "10.0.0.6:21" || pc.Backends[1].Name != "ftp-b" ||
		pc.Backends[1].TLS.Mode() != "explicit" || pc.Backends[0].TLS.Mode() != "off" {
		t.Errorf("backends %+v", pc.Backends)
	}
	if pc.Timeouts.Idle != 5*time.Minute || pc.Timeouts.DataConnect != 30*time.Second {
		t.Errorf("timeouts %+v", pc.Timeouts)
	}
	if pc.PlainAllowed {
		t.Error("require = true gave PlainAllowed")
	}
	if pc.Backends[0].Weight != 2 || pc.Balance.Affinity != proxy.SourceAffinity || pc.Balance.AffinityTTL != time.Hour {
		t.Errorf("balance %+v, backend %+v", pc.Balance, pc.Backends[0])
	}
	if pc.Health.ProbeUser != "healthcheck" || pc.Health.ProbePassword != "probe-pw" || pc.Health.Fall != 3 {
		t.Errorf("health %+v", pc.Health)
	}
	if len(pc.Routes) != 1 || pc.Routes[0].Policy != proxy.LeastConn || pc.Routes[0].Backends[0].Name != "partners-a" ||
		pc.Routes[0].User[0] != "partner-*" {
		t.Errorf("routes %+v", pc.Routes)
	}
	if !slices.Equal(st.tls.CipherSuites, tlsoffload.DefaultCipherSuites()) {
		t.Errorf("the example's cipher_suites %v are not the default ones", st.tls.CipherSuites)
	}
	if st.admin.user != "admin" || st.admin.password != "admin-pw" {
		t.Errorf("admin user %q, password %q", st.admin.user, st.admin.password)
	}
	if st.store.kind != "file" || !strings.HasSuffix(st.store.stateFile, "/state/affinity.json") {
		t.Errorf("store %+v", st.store)
	}
	if len(pc.PassiveAddresses) != 1 || pc.PassiveAddresses[0].Address.String() != "10.0.0.2" ||
		len(pc.PassiveAddresses[0].Clients) != 2 || pc.PassiveAddresses[0].Clients[1].String() != "192.168.0.0/16" {
		t.Errorf("passive addresses %+v", pc.PassiveAddresses)
	}
	if pc.ActiveSourcePort != 20 || pc.AllowForeignDataAddress || pc.AllowCCC {
		t.Errorf("active_source_port %d, allow_foreign_data_address %v, allow_ccc %v",
			pc.ActiveSourcePort, pc.AllowForeignDataAddress, pc.AllowCCC)
	}
	if pc.Backends[0].DataToBackend != proxy.DataAuto || pc.Routes[0].Backends[0].DataToBackend != proxy.DataPassive {
		t.Errorf("data_to_backend %v, route's %v", pc.Backends[0].DataToBackend, pc.Routes[0].Backends[0].DataToBackend)
	}
}

// TestCheckDataKeys: the data-connection keys report bad values with
// their lines.
func TestCheckDataKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(path, []byte(`[listen]
active_source_port = 70000

[[listen.passive_address]]
clients = ["10.0.0.0/33"]
address = "2001:db8::1"

[[listen.passive_address]]
address = "10.0.0.2"

[[backend]]
address = "127.0.0.1:2100"
data_to_backend = "sideways"
`), 0o600)
	_, errOut, err := runCLI(t, "check", "--config", path)
	if err == nil {
		t.Fatal("check accepted a bad file")
	}
	for _, want := range []string{
		path + ":2: listen.active_source_port 70000",
		path + ":5: listen.passive_address.clients \"10.0.0.0/33\"",
		path + ":6: listen.passive_address.address \"2001:db8::1\"",
		path + ":8: listen.passive_address: clients is empty",
		path + ":13: backend 127.0.0.1:2100: data_to_backend \"sideways\"",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("check output lacks %q:\n%s", want, errOut)
		}
	}
}

// TestCheckReportsEachErrorWithItsLine: a file with several mistakes gets
// one line per mistake, each naming its line.
func TestCheckReportsEachErrorWithItsLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(path, []byte(`[listen]
explicit = ":2121"
passive_ports = "60000-50000"
publik_host = "1.2.3.4"

[tls]
min_version = "1.1"

[[backend]]
address = "no-port"

[timeouts]
idle = "forever"

[log]
format = "xml"

[admin]
user = "ops"
`), 0o600)
	_, errOut, err := runCLI(t, "check", "--config", path)
	if err == nil {
		t.Fatal("check accepted a bad file")
	}
	for _, want := range []string{
		path + ":4: unknown key \"listen.publik_host\"",
		path + ":3: listen.passive_ports",
		path + ":7: tls.min_version",
		path + ":10: backend.address \"no-port\"",
		path + ":13: timeouts.idle \"forever\"",
		path + ":16: log.format \"xml\"",
		path + ":19: admin.user without password_file",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("check output lacks %q:\n%s", want, errOut)
		}
	}
}

func TestCheckSyntaxError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(path, []byte("[listen]\nexplicit = \":21\"\nimplicit = \n"), 0o600)
	_, errOut, err := runCLI(t, "check", "--config", path)
	if err == nil || !strings.Contains(errOut, path+":3:") {
		t.Errorf("syntax error not reported with its line: %v\n%s", err, errOut)
	}
}

func TestFlagsOverrideFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f.toml")
	os.WriteFile(path, []byte("[listen]\nexplicit = \":21\"\n[[backend]]\naddress = \"10.0.0.1:21\"\n"), 0o600)
	var got settings
	app := newApp()
	for _, c := range app.Commands {
		if c.Name == "serve" {
			c.Action = func(c *cli.Context) error {
				var err error
				got, err = loadSettings(c)
				return err
			}
		}
	}
	err := app.Run([]string{"ftpsgate", "serve", "--config", path, "--listen", "127.0.0.1:2121",
		"--backend", "10.0.0.7:21", "--backend", "10.0.0.8:21", "--passive-ports", "40000-40009", "--public-host", "198.51.100.1"})
	if err != nil {
		t.Fatal(err)
	}
	pc := got.proxy
	if pc.Listen != "127.0.0.1:2121" || len(pc.Backends) != 2 || pc.Backends[0].Address != "10.0.0.7:21" ||
		pc.PassivePorts.First != 40000 || pc.PublicHost.String() != "198.51.100.1" {
		t.Errorf("flags did not override the file: %+v", pc)
	}
}

func TestVersion(t *testing.T) {
	out, _, err := runCLI(t, "version")
	if err != nil || !strings.HasPrefix(out, "ftpsgate ") {
		t.Errorf("version: %q %v", out, err)
	}
}

// TestCheckCertificateFiles: check loads the certificate files and reports
// a missing one with the line that names it.
func TestCheckCertificateFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tls.toml")
	os.WriteFile(path, []byte(`[tls]
cert_file = "/nonexistent/cert.pem"
key_file = "/nonexistent/key.pem"

[[backend]]
address = "127.0.0.1:2100"
`), 0o600)
	_, errOut, err := runCLI(t, "check", "--config", path)
	if err == nil || !strings.Contains(errOut, path+":2:") {
		t.Errorf("a missing certificate file was not reported at line 2: %v\n%s", err, errOut)
	}
}

func TestTLSKey(t *testing.T) {
	for field, want := range map[string]string{
		"CertFile":                "tls.cert_file",
		"ClientCAFile":            "tls.client_ca_file",
		"ACME.Domains[2]":         "tls.acme.domains.2",
		"Certificates[0].KeyFile": "tls.certificate.0.key_file",
		"ACME.DirectoryCAFile":    "tls.acme.directory_ca_file",
		"ACME.TLSALPNListen":      "tls.acme.tls_alpn_listen",
	} {
		if got := strings.Join(tlsKey(field), "."); got != want {
			t.Errorf("tlsKey(%q) = %q, want %q", field, got, want)
		}
	}
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "1000": 1000, "10MiB": 10 << 20, "500 KB/s": 500_000, "1.5GB": 1_500_000_000, "64KiB/s": 64 << 10,
	} {
		if got, err := parseRate(in); err != nil || got != want {
			t.Errorf("parseRate(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "fast", "-1MB", "10 mb", "1e30", "10MiBps"} {
		if got, err := parseRate(in); err == nil {
			t.Errorf("parseRate(%q) = %d, want an error", in, got)
		}
	}
}

// TestCheckCipherSuites: [tls] cipher_suites takes Go's names of TLS 1.2
// suites; an insecure one is a warning saying what it gives up (check
// still passes), an unknown or TLS 1.3 name or an empty list an error,
// each with the key's line.
func TestCheckCipherSuites(t *testing.T) {
	t.Parallel()
	const backend = "\n[[backend]]\naddress = \"127.0.0.1:2100\"\n"
	for _, tc := range []struct {
		name   string
		tls    string
		ok     bool
		ids    []uint16
		stderr []string // each a line check prints, after the file's path
	}{
		{"default", `min_version = "1.2"`, true, nil, nil},
		{"secure CBC for an old client", `cipher_suites = ["TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]`, true,
			[]uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}, nil},
		{"insecure suites", "cipher_suites = [\n  \"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\",\n  \"TLS_RSA_WITH_AES_128_CBC_SHA\",\n  \"TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA\",\n]", true,
			[]uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA},
			[]string{
				":2: tls.cipher_suites: TLS_RSA_WITH_AES_128_CBC_SHA gives up no forward secrecy (RSA key exchange: whoever obtains the private key decrypts every recorded session); CBC instead of an AEAD cipher (padding-oracle attacks such as Lucky13) (warning)",
				":2: tls.cipher_suites: TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA gives up 3DES, whose 64-bit blocks let a long session's plaintext be recovered (Sweet32) (warning)",
			}},
		{"TLS 1.2 suites under min_version 1.3", "min_version = \"1.3\"\ncipher_suites = [\"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\"]", true,
			[]uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256},
			[]string{":3: tls.cipher_suites has no effect with min_version = \"1.3\": they are TLS 1.2 suites (warning)"}},
		{"unknown and TLS 1.3 names", "cipher_suites = [\"ECDHE-RSA-AES128-GCM-SHA256\", \"TLS_AES_256_GCM_SHA384\"]", false, nil,
			[]string{
				`:2: tls.cipher_suites: unknown cipher suite "ECDHE-RSA-AES128-GCM-SHA256": want a TLS 1.2 suite as Go names it`,
				":2: tls.cipher_suites: TLS_AES_256_GCM_SHA384 is a TLS 1.3 suite: Go always offers all three TLS 1.3 suites and lets none be chosen",
			}},
		{"empty", "cipher_suites = []", false, nil, []string{":2: tls.cipher_suites is empty"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "ftpsgate.toml")
			os.WriteFile(path, []byte("[tls]\n"+tc.tls+"\n"+backend), 0o600)
			out, errOut, err := runCLISerial(t, "check", "--config", path)
			if ok := err == nil && strings.Contains(out, ": ok"); ok != tc.ok {
				t.Errorf("check: %v, want ok=%v\n%s%s", err, tc.ok, out, errOut)
			}
			for _, want := range tc.stderr {
				if !strings.Contains(errOut, path+want) {
					t.Errorf("check output lacks %q:\n%s", path+want, errOut)
				}
			}
			if len(tc.stderr) == 0 && errOut != "" {
				t.Errorf("check printed:\n%s", errOut)
			}
			if !tc.ok {
				return
			}
			fc, lines, err := loadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			st, err := fc.build(path, lines)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(st.tls.CipherSuites, tc.ids) {
				t.Errorf("tls.CipherSuites = %v, want %v", st.tls.CipherSuites, tc.ids)
			}
		})
	}
}

// TestServeLogsConfigWarnings: serve logs each warning check prints, once,
// as a warn record naming the file and line.
func TestServeLogsConfigWarnings(t *testing.T) {
	t.Parallel()
	mem := ftptest.NewServer()
	t.Cleanup(mem.Close)
	path := filepath.Join(t.TempDir(), "ftpsgate.toml")
	os.WriteFile(path, []byte(fmt.Sprintf("[listen]\nexplicit = \"127.0.0.1:0\"\n\n[tls]\ncipher_suites = [\"TLS_RSA_WITH_AES_128_GCM_SHA256\"]\n\n[[backend]]\naddress = %q\n", mem.Addr())), 0o600)
	fc, lines, err := loadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := fc.build(path, lines)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	log, err := newLogger(io.MultiWriter(logs, suiteLog), "info", "json")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, st, log, func(*proxy.Server) { cancel() }) }()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var warnings []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		if r["message"] == "configuration warning" {
			warnings = append(warnings, r)
		}
	}
	if len(warnings) != 1 {
		t.Fatalf("%d configuration warnings logged, want 1:\n%s", len(warnings), logs)
	}
	w := warnings[0]
	if w["level"] != "warn" || w["config"] != path || w["line"] != 5.0 ||
		!strings.HasPrefix(w["warning"].(string), "tls.cipher_suites: TLS_RSA_WITH_AES_128_GCM_SHA256 gives up no forward secrecy") {
		t.Errorf("warning record %v", w)
	}
}

// TestCheckAdminListen: check (and serve, which loads the same way)
// refuses an admin listener reachable from other machines without
// password_file, with the line of listen; [admin] hosts takes host names
// only.
func TestCheckAdminListen(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		listen   string
		password bool
		hosts    string
		err      string // the error after "FILE:LINE: "; "" for none
	}{
		{"127.0.0.1:9100", false, "", ""},
		{"127.0.0.2:9100", false, "", ""},
		{"[::1]:9100", false, "", ""},
		{"localhost:9100", false, "", ""},
		{":9100", false, "", `2: admin.listen ":9100" is reachable from other machines: set admin.password_file, or listen on 127.0.0.1`},
		{"0.0.0.0:9100", false, "", `2: admin.listen "0.0.0.0:9100" is reachable from other machines`},
		{"[::]:9100", false, "", `2: admin.listen "[::]:9100" is reachable from other machines`},
		{"10.0.0.7:9100", false, "", `2: admin.listen "10.0.0.7:9100" is reachable from other machines`},
		{"status.example.com:9100", false, "", `2: admin.listen "status.example.com:9100" is reachable from other machines`},
		{":9100", true, "", ""},
		{"10.0.0.7:9100", true, `["status.example.com", "Grafana.Example.com."]`, ""},
		{"127.0.0.1:9100", false, `["status.example.com:9100"]`, `3: admin.hosts "status.example.com:9100": want a host name without port`},
		{"127.0.0.1:9100", false, `["*.example.com"]`, `3: admin.hosts "*.example.com": want a host name without port`},
		{"127.0.0.1:9100", false, `["https://status.example.com"]`, `3: admin.hosts "https://status.example.com"`},
	} {
		t.Run(tc.listen+" "+tc.hosts, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			cfg := fmt.Sprintf("[admin]\nlisten = %q\n", tc.listen)
			if tc.hosts != "" {
				cfg += "hosts = " + tc.hosts + "\n"
			}
			if tc.password {
				os.WriteFile(filepath.Join(dir, "pw"), []byte("s3cret\n"), 0o600)
				cfg += fmt.Sprintf("password_file = %q\n", filepath.Join(dir, "pw"))
			}
			path := filepath.Join(dir, "ftpsgate.toml")
			os.WriteFile(path, []byte(cfg+"\n[[backend]]\naddress = \"127.0.0.1:2100\"\n"), 0o600)
			out, errOut, err := runCLISerial(t, "check", "--config", path)
			if tc.err == "" {
				if err != nil || !strings.Contains(out, ": ok") {
					t.Errorf("check: %v\n%s%s", err, out, errOut)
				}
				return
			}
			if err == nil || !strings.Contains(errOut, path+":"+tc.err) {
				t.Errorf("check: %v, want %s:%s\n%s%s", err, path, tc.err, out, errOut)
			}
		})
	}

	// serve refuses the same file before it opens anything.
	path := filepath.Join(t.TempDir(), "ftpsgate.toml")
	os.WriteFile(path, []byte("[listen]\nexplicit = \"127.0.0.1:0\"\n\n[admin]\nlisten = \"0.0.0.0:0\"\n\n[[backend]]\naddress = \"127.0.0.1:2100\"\n"), 0o600)
	done := make(chan error, 1)
	go func() { _, _, err := runCLISerial(t, "serve", "--config", path); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), path+`:5: admin.listen "0.0.0.0:0" is reachable from other machines`) {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve started with an admin listener open to other machines and no password")
	}
}

// TestCheckSecureDefaults: the defaults bound what a stranger and one
// address can take and bind data connections to their session; a file
// that weakens any of that passes check with a warning saying what it
// gives up, on the key's line, and the limits it sets reach the proxy.
func TestCheckSecureDefaults(t *testing.T) {
	t.Parallel()
	const backend = "\n[[backend]]\naddress = \"127.0.0.1:2100\"\n"
	for _, tc := range []struct {
		name   string
		file   string
		limits proxy.Limits
		reuse  bool     // data connections must resume
		stderr []string // each a line check prints, after the file's path
	}{
		{name: "defaults", file: "[tls]\nmin_version = \"1.2\"\n", reuse: true},
		{name: "session reuse off", file: "[tls]\nrequire_session_reuse = false\n",
			stderr: []string{":2: tls.require_session_reuse = false: a PROT P data connection is taken without proof that it is the client's"}},
		{name: "CCC with reuse", file: "[tls]\nallow_ccc = true\n", reuse: true,
			stderr: []string{":2: tls.allow_ccc with require_session_reuse: lftp and curl start their data connections' TLS afresh after CCC"}},
		{name: "limits lifted", file: "[limits]\nmax_sessions = 0\nmax_sessions_per_ip = 0\nmax_logins_per_ip = 0\nmax_passive_ports_per_ip = 0\n", reuse: true,
			limits: proxy.Limits{MaxSessions: proxy.NoLimit, MaxSessionsPerIP: proxy.NoLimit, MaxLoginsPerIP: proxy.NoLimit, MaxPassivePortsPerIP: proxy.NoLimit},
			stderr: []string{
				":2: limits.max_sessions = 0: no limit; enough connections exhaust",
				":3: limits.max_sessions_per_ip = 0: no limit;",
				":4: limits.max_logins_per_ip = 0: no limit;",
				":5: limits.max_passive_ports_per_ip = 0: no limit;",
			}},
		{name: "limits set", file: "[limits]\nmax_sessions = 10\nmax_sessions_per_ip = 5\nmax_logins_per_ip = 2\nmax_passive_ports_per_ip = 3\nipv6_prefix = 56\n", reuse: true,
			limits: proxy.Limits{MaxSessions: 10, MaxSessionsPerIP: 5, MaxLoginsPerIP: 2, MaxPassivePortsPerIP: 3, IPv6Prefix: 56}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "ftpsgate.toml")
			os.WriteFile(path, []byte(tc.file+backend), 0o600)
			out, errOut, err := runCLISerial(t, "check", "--config", path)
			if err != nil || !strings.Contains(out, ": ok") {
				t.Errorf("check: %v\n%s%s", err, out, errOut)
			}
			for _, want := range tc.stderr {
				if !strings.Contains(errOut, path+want) {
					t.Errorf("check output lacks %q:\n%s", path+want, errOut)
				}
			}
			if len(tc.stderr) == 0 && errOut != "" {
				t.Errorf("check printed:\n%s", errOut)
			}
			fc, lines, err := loadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			st, err := fc.build(path, lines)
			if err != nil {
				t.Fatal(err)
			}
			if st.proxy.Limits != tc.limits {
				t.Errorf("limits %+v, want %+v", st.proxy.Limits, tc.limits)
			}
			if st.proxy.AllowUnresumedData == tc.reuse {
				t.Errorf("AllowUnresumedData = %v, want %v", st.proxy.AllowUnresumedData, !tc.reuse)
			}
		})
	}
}
