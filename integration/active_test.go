package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Active mode (PORT/EPRT), IPv6 and CCC with real clients: issue 6. The
// proxy dials the client, from its side of the control connection, and is
// the TLS server on that socket under PROT P (RFC 4217 section 7); toward
// the backend it uses the mode data_to_backend says.

// startProxyWith runs ftpsgate in front of backendAddr from a
// configuration file with the settings under test, plus flags.
func startProxyWith(t testing.TB, backendAddr, toBackend string, allowCCC bool, flags ...string) *proxyProc {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "ftpsgate.toml")
	// lftp and curl start the data connections' TLS afresh after CCC: with
	// CCC, data connections cannot be required to resume (check says so).
	writeFile(t, cfg, fmt.Sprintf("[tls]\nallow_ccc = %v\nrequire_session_reuse = %v\n\n[[backend]]\naddress = %q\ndata_to_backend = %q\n",
		allowCCC, !allowCCC, backendAddr, toBackend), 0o600)
	return startProxy(t, append([]string{"--config", cfg}, flags...)...)
}

// xferCase is one client run: upload a file as name, list, download it.
type xferCase struct {
	proxy    *proxyProc
	user     string
	password string
	protP    bool
	active   bool   // PORT/EPRT, else EPSV/PASV
	ccc      bool   // clear the control channel after login
	cccMode  string // curl's --ftp-ssl-ccc-mode: who starts the TLS closure
	name     string
	up       string // local file to upload
	dl       string // where the download goes
}

func (x xferCase) protLetter() string {
	if x.protP {
		return "P"
	}
	return "C"
}

// xferClient is a client program that can run an xferCase and return its
// protocol trace.
type xferClient struct {
	name      string
	tool      string
	protCOnly bool // see curlActive
	run       func(t testing.TB, x xferCase) (string, error)
	sent      *regexp.Regexp // the commands sent, from the trace
}

var (
	lftpX = &xferClient{name: "lftp", tool: "lftp", run: lftpXfer, sent: lftpClient.traceSent}
	// curl 7.88 cannot do active mode under PROT P, against native servers
	// too: it hangs, or (here) fails with "(18) sa_addr inet_ntop() failed"
	// as soon as it has accepted the data connection. Active curl runs with
	// PROT C only.
	curlX   = &xferClient{name: "curl", tool: "curl", protCOnly: true, run: curlXfer, sent: curlClient.traceSent}
	pythonX = &xferClient{name: "python", tool: "python3", run: pythonXfer, sent: pythonClient.traceSent}
)

func lftpXfer(t testing.TB, x xferCase) (string, error) {
	yes := map[bool]string{false: "no", true: "yes"}
	script := fmt.Sprintf(`set cmd:fail-exit yes
set net:max-retries 1
set net:timeout 30
set ssl:verify-certificate no
set ftp:ssl-force yes
set ftp:ssl-protect-data %[1]s
set ftp:ssl-protect-list %[1]s
set ftp:passive-mode %[2]s
set ftp:ssl-use-ccc %[3]s
open -u %[4]s,%[5]s ftp://%[6]s
put %[7]s -o %[8]s
ls
get %[8]s -o %[9]s
bye
`, yes[x.protP], yes[!x.active], yes[x.ccc], x.user, x.password, x.proxy.explicit, x.up, x.name, x.dl)
	path := filepath.Join(t.TempDir(), "script.lftp")
	writeFile(t, path, script, 0o600)
	stdout, stderr, err := runSplit(3*time.Minute, "lftp", "-d", "-f", path)
	return stdout + stderr, err
}

func curlXfer(t testing.TB, x xferCase) (string, error) {
	url := "ftp://" + x.proxy.explicit + "/" + x.name
	base := []string{"--silent", "--show-error", "--verbose", "--insecure", "--globoff", "--max-time", "120",
		"--user", x.user + ":" + x.password}
	if x.protP {
		base = append(base, "--ssl-reqd")
	} else {
		base = append(base, "--ftp-ssl-control")
	}
	if x.active {
		// The control connection's local address: 127.0.0.1 or ::1.
		base = append(base, "--ftp-port", "-")
	}
	if x.ccc {
		base = append(base, "--ftp-ssl-ccc")
		if x.cccMode != "" {
			base = append(base, "--ftp-ssl-ccc-mode", x.cccMode)
		}
	}
	var trace strings.Builder
	for _, args := range [][]string{{"--upload-file", x.up, url}, {"--output", x.dl, url}} {
		out, err := run(t, 3*time.Minute, "curl", append(base, args...)...)
		trace.WriteString(out)
		if err != nil {
			return trace.String(), err
		}
	}
	return trace.String(), nil
}

func pythonXfer(t testing.TB, x xferCase) (string, error) {
	host, port := splitHostPort(x.proxy.explicit)
	args := []string{"testdata/ftpactive.py", "--host", host, "--port", port,
		"--user", x.user, "--password", x.password, "--prot", x.protLetter(),
		"--up", x.up, "--name", x.name, "--dl", x.dl}
	if x.ccc {
		args = append(args, "--ccc")
	}
	if !x.active {
		t.Fatal("ftpactive.py runs active mode only")
	}
	return run(t, 3*time.Minute, "python3", args...)
}

func splitHostPort(addr string) (string, string) {
	i := strings.LastIndexByte(addr, ':')
	return strings.Trim(addr[:i], "[]"), addr[i+1:]
}

// check runs x with cl and checks the files (the download, and stored
// reports what the backend holds as name), the commands the client sent,
// and the proxy's transfer records.
func (x xferCase) check(t *testing.T, cl *xferClient, stored func() ([]byte, error), backendData string) {
	t.Helper()
	trace, err := cl.run(t, x)
	if err != nil {
		t.Fatalf("%s: %v\n%s", cl.name, err, tailLines(trace, 120))
	}
	defer func() {
		if t.Failed() {
			t.Logf("%s trace:\n%s", cl.name, tailLines(trace, 200))
		}
	}()
	want := fileSHA256(t, x.up)
	if got, err := stored(); err != nil {
		t.Errorf("the backend does not hold %s: %v", x.name, err)
	} else if bytesSHA256(got) != want {
		t.Errorf("the backend holds %d bytes of %s with another hash", len(got), x.name)
	}
	if got := fileSHA256(t, x.dl); got != want {
		t.Errorf("downloaded %s with hash %s, want %s", x.name, got, want)
	}

	var sent []string
	for _, m := range cl.sent.FindAllStringSubmatch(trace, -1) {
		sent = append(sent, m[1])
	}
	active := hasCommand(sent, "PORT ") || hasCommand(sent, "EPRT ")
	passive := hasCommand(sent, "PASV") || hasCommand(sent, "EPSV")
	if active != x.active || passive == x.active {
		t.Errorf("%s sent PORT/EPRT %v and PASV/EPSV %v, in %s mode", cl.name, active, passive,
			map[bool]string{false: "passive", true: "active"}[x.active])
	}
	if x.ccc && !hasCommand(sent, "CCC") {
		t.Errorf("%s never sent CCC", cl.name)
	}
	if cl == pythonX && x.protP {
		// ftpactive.py offers the control session on every data connection.
		resumed := strings.Count(trace, "data-tls resumed=True")
		if n := strings.Count(trace, "data-tls "); n != 3 || resumed != n {
			t.Errorf("%d of %d PROT P data connections resumed the control TLS session, want 3 of 3", resumed, n)
		}
	}

	clientData := map[bool]string{false: "passive", true: "active"}[x.active]
	var seen []string
	for _, r := range x.proxy.records("transfer") {
		if r["path"] != x.name {
			continue
		}
		seen = append(seen, fmt.Sprint(r["verb"]))
		if r["client_data"] != clientData || r["backend_data"] != backendData || r["prot"] != x.protLetter() || r["code"] != float64(226) {
			t.Errorf("transfer record %v: want client_data %s, backend_data %s, prot %s, code 226",
				r, clientData, backendData, x.protLetter())
		}
		if x.protP && r["data_tls_version"] == nil {
			t.Errorf("PROT P transfer record without data TLS: %v", r)
		}
	}
	if strings.Join(seen, ",") != "STOR,RETR" {
		t.Errorf("transfer records of %s: %v, want STOR then RETR", x.name, seen)
	}
}

// TestActiveClients: lftp, curl and Python ftplib in active mode, PROT C
// and PROT P, upload and download compared by hash, through vsftpd and
// pure-ftpd, with data_to_backend passive and active.
func TestActiveClients(t *testing.T) {
	for _, k := range []*serverKind{vsftpd, pureFTPd} {
		t.Run(k.name, func(t *testing.T) {
			b := startBackend(t, k)
			for _, toBackend := range []string{"passive", "active"} {
				t.Run("to-backend-"+toBackend, func(t *testing.T) {
					p := startProxyWith(t, b.addr, toBackend, false)
					for _, cl := range []*xferClient{lftpX, curlX, pythonX} {
						for _, protP := range []bool{false, true} {
							if protP && cl.protCOnly {
								continue
							}
							x := xferCase{proxy: p, user: testUser, password: testPassword, protP: protP, active: true,
								name: fmt.Sprintf("active-%s-%s-prot%s.bin", toBackend, cl.name, map[bool]string{false: "C", true: "P"}[protP])}
							t.Run(cl.name+"/prot"+x.protLetter(), func(t *testing.T) {
								needTool(t, cl.tool)
								t.Parallel()
								dir := t.TempDir()
								x.up, _ = writeLocal(t, dir, "up.bin", 3_000_017, uint64(len(x.name))*7919)
								x.dl = filepath.Join(dir, "dl.bin")
								x.check(t, cl, func() ([]byte, error) { return os.ReadFile(filepath.Join(b.home, x.name)) }, toBackend)
							})
						}
					}
				})
			}
		})
	}
}

// TestIPv6Clients: a proxy listening on ::1 only; curl and lftp transfer
// over EPSV and EPRT, upload and download compared by hash.
func TestIPv6Clients(t *testing.T) {
	backend := memBackend(t)
	p := startProxyWith(t, backend.Addr(), "auto", false, "--listen", "[::1]:0", "--implicit-listen", "[::1]:0")
	if !strings.HasPrefix(p.explicit, "[::1]:") {
		t.Fatalf("the proxy listens on %s, want [::1]", p.explicit)
	}
	for _, cl := range []*xferClient{curlX, lftpX} {
		for _, active := range []bool{false, true} {
			protP := !(active && cl.protCOnly)
			x := xferCase{proxy: p, user: "curl", password: "curl-pw", protP: protP, active: active,
				name: fmt.Sprintf("v6-%s-%v.bin", cl.name, map[bool]string{false: "epsv", true: "eprt"}[active])}
			t.Run(cl.name+"/"+strings.TrimSuffix(strings.TrimPrefix(x.name, "v6-"+cl.name+"-"), ".bin"), func(t *testing.T) {
				needTool(t, cl.tool)
				t.Parallel()
				dir := t.TempDir()
				x.up, _ = writeLocal(t, dir, "up.bin", 2_000_003, uint64(len(x.name)))
				x.dl = filepath.Join(dir, "dl.bin")
				x.check(t, cl, func() ([]byte, error) {
					b, ok := backend.FS.ReadFile("/" + x.name)
					if !ok {
						return nil, os.ErrNotExist
					}
					return b, nil
				}, map[bool]string{false: "passive", true: "active"}[active])
				// On IPv6 only the extended commands can work (RFC 2428).
				for _, r := range p.records("command") {
					if cmd, _ := r["command"].(string); strings.HasPrefix(cmd, "PASV") || strings.HasPrefix(cmd, "PORT") {
						t.Errorf("a client sent %q over IPv6", cmd)
					}
				}
			})
		}
	}
}

// TestCCCClients: with tls.allow_ccc, clients that clear the control
// channel after login (lftp's ftp:ssl-use-ccc, ftplib's ccc()) go on in
// plaintext: a listing and transfers, PROT P data still in TLS, in passive
// and active mode.
func TestCCCClients(t *testing.T) {
	backend := memBackend(t)
	p := startProxyWith(t, backend.Addr(), "auto", true)
	// Who closes TLS first differs: lftp, ftplib and curl's active mode
	// start, curl's default (passive) mode waits for the server and sends
	// no close_notify of its own.
	cases := []struct {
		cl      *xferClient
		active  bool
		cccMode string
	}{{lftpX, false, ""}, {lftpX, true, ""}, {pythonX, true, ""}, {curlX, false, "passive"}, {curlX, false, "active"}}
	t.Run("clients", func(t *testing.T) {
		for _, c := range cases {
			x := xferCase{proxy: p, user: "curl", password: "curl-pw", protP: true, active: c.active, ccc: true, cccMode: c.cccMode,
				name: fmt.Sprintf("ccc-%s-%s.bin", c.cl.name, map[bool]string{false: "passive", true: "active"}[c.active])}
			if c.cccMode != "" {
				x.name = strings.TrimSuffix(x.name, ".bin") + "-ccc-" + c.cccMode + ".bin"
			}
			t.Run(strings.TrimSuffix(strings.TrimPrefix(x.name, "ccc-"), ".bin"), func(t *testing.T) {
				needTool(t, c.cl.tool)
				t.Parallel()
				dir := t.TempDir()
				x.up, _ = writeLocal(t, dir, "up.bin", 1_500_007, uint64(len(x.name)))
				x.dl = filepath.Join(dir, "dl.bin")
				x.check(t, c.cl, func() ([]byte, error) {
					b, ok := backend.FS.ReadFile("/" + x.name)
					if !ok {
						return nil, os.ErrNotExist
					}
					return b, nil
				}, map[bool]string{false: "passive", true: "active"}[c.active])
			})
		}
	})
	// Every session cleared its control connection.
	waitRecords(t, p, "control connection cleared (CCC)", len(cases))
}

// TestActiveBackendTLS: toward a backend that is an FTPS server itself
// (vsftpd requiring TLS and session reuse on data connections), active mode
// works too: vsftpd connects to the proxy's listener and the proxy, the FTP
// client there, runs the TLS client on that socket (RFC 4217 section 7),
// resuming its control session. Clients in both modes, PROT P.
func TestActiveBackendTLS(t *testing.T) {
	b := startBackend(t, vsftpdTLS)
	cfg := filepath.Join(t.TempDir(), "ftpsgate.toml")
	writeFile(t, cfg, fmt.Sprintf(`
[[backend]]
address = %q
tls = "explicit"
ca_file = %q
server_name = "localhost"
data_to_backend = "active"
`, b.addr, backendCertFile(b)), 0o600)
	p := startProxy(t, "--config", cfg)
	for _, active := range []bool{false, true} {
		x := xferCase{proxy: p, user: testUser, password: testPassword, protP: true, active: active,
			name: fmt.Sprintf("tls-backend-%s.bin", map[bool]string{false: "passive", true: "active"}[active])}
		t.Run("client-"+map[bool]string{false: "passive", true: "active"}[active], func(t *testing.T) {
			needTool(t, lftpX.tool)
			dir := t.TempDir()
			x.up, _ = writeLocal(t, dir, "up.bin", 2_500_009, uint64(len(x.name)))
			x.dl = filepath.Join(dir, "dl.bin")
			x.check(t, lftpX, func() ([]byte, error) { return os.ReadFile(filepath.Join(b.home, x.name)) }, "active")
		})
	}
}
