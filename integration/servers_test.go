package integration

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/ftpctl"
)

// The real FTP servers run as plain-FTP backends, unpacked by setup.sh (they
// are not installed: Debian's FTP server packages conflict with each other).
// Each one gets its own configuration, home directory and logs in a fresh
// directory, listens on a fixed loopback port below the kernel's ephemeral
// range (so no client socket can be sitting on it), and is stopped, with
// every process it forked, when its test ends.

// The test account every backend knows, with the same password. It is a
// system user (vsftpd authenticates through PAM against /etc/shadow) whose
// password hash is cheap: yescrypt, Debian's default, costs ~40 ms of CPU
// per login, which 50 parallel sessions on two cores would feel.
const (
	testUser     = "ftpsgate-test"
	testPassword = "interop-pw-4217"
	// pamService is the PAM service vsftpd uses: pam_unix alone, without
	// the stock service's pam_shells and pam_listfile checks.
	pamService = "ftpsgate-test-vsftpd"
)

// natAddress is what every backend writes into its 227 replies, as a
// backend behind NAT announces its public address: the proxy must dial the
// backend's control IP with the port from 227 and ignore the address. It is
// loopback, so a proxy that dialled it anyway would be refused (nothing
// listens there), never reach another host.
const natAddress = "127.0.0.2"

// serverKind is one FTP server implementation and where it listens.
type serverKind struct {
	name     string // as in test names
	pkg      string // the folder setup.sh unpacked it into
	binary   string // inside the package
	port     int    // control connection, if free
	pasvLow  int    // passive port range
	pasvHigh int
	// configure writes the server's configuration for b into b.dir and
	// returns its command line (arguments after the binary, or after
	// launcher).
	configure func(t testing.TB, b *backend) []string
	// launcher, if set, is the program (on PATH) started instead of the
	// binary: socat, for a server that inetd would start per connection.
	launcher string
	// syslog: the server logs only to syslog (syslogSink shows it).
	syslog bool
	// abortOncePerSession: ABOR during a transfer is safe only once per
	// session (inetutils: README, Backends), so abort tests start a
	// session for each.
	abortOncePerSession bool
}

var (
	vsftpd = &serverKind{name: "vsftpd", pkg: "vsftpd", binary: "usr/sbin/vsftpd",
		port: 21021, pasvLow: 21100, pasvHigh: 21999, configure: configureVsftpd}
	pureFTPd = &serverKind{name: "pure-ftpd", pkg: "pure-ftpd", binary: "usr/sbin/pure-ftpd",
		port: 22021, pasvLow: 22100, pasvHigh: 23999, configure: configurePureFTPd, syslog: true}
	proFTPD = &serverKind{name: "proftpd", pkg: "proftpd-core", binary: "usr/sbin/proftpd",
		port: 24021, pasvLow: 24100, pasvHigh: 24999, configure: configureProFTPD}
	// inetutils has no passive range: its PASV ports are ephemeral.
	inetutils = &serverKind{name: "inetutils", pkg: "inetutils-ftpd", binary: "usr/sbin/ftpd",
		port: 26021, configure: configureInetutils, launcher: "socat", syslog: true, abortOncePerSession: true}
)

// serverKinds are the backends of the matrix, in the order they run.
var serverKinds = []*serverKind{vsftpd, pureFTPd, proFTPD, inetutils}

// backend is one running FTP server.
type backend struct {
	kind     *serverKind
	dir      string   // configuration, logs, and the home below
	home     string   // the test user's FTP root (chrooted: "/" to clients)
	port     int      // of the control connection: k.port unless taken
	addr     string   // host:port of the control connection
	logs     []string // files printed when the test fails
	features []string // its FEAT lines, asked directly (not through the proxy)
	acct     testAccount
	cmd      *exec.Cmd
	done     chan error
	sysMark  int // where pure-ftpd's messages start in syslogSink

	// featBeforeLogin: it answers FEAT before login, where the proxy's
	// health checks ask (inetutils wants a login first).
	featBeforeLogin bool
}

// hasFeature reports whether the backend advertises name in FEAT (MLST for
// MLSD, per RFC 3659 section 7.8).
func (b *backend) hasFeature(name string) bool {
	return slices.ContainsFunc(b.features, func(f string) bool { return ftpctl.FeatureName(f) == name })
}

// interopDir is where setup.sh unpacked the servers.
func interopDir() string {
	if d := os.Getenv("FTPSGATE_INTEROP_DIR"); d != "" {
		return d
	}
	dir, _ := filepath.Abs(filepath.Join("..", ".cache", "interop"))
	return dir
}

// skipOrFail skips the test, or fails it under CI=true where the whole
// matrix must run.
func skipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true: "+format, args...)
	}
	t.Skipf(format, args...)
}

// startBackend starts a server of kind k with a fresh configuration and
// home, waits until it greets, and stops it (and all its processes) when t
// ends, printing its logs if t failed.
func startBackend(t testing.TB, k *serverKind) *backend {
	t.Helper()
	bin := filepath.Join(interopDir(), k.pkg, k.binary)
	if _, err := os.Stat(bin); err != nil {
		skipOrFail(t, "%s is not unpacked at %s; run integration/setup.sh", k.name, bin)
	}
	if os.Geteuid() != 0 {
		skipOrFail(t, "%s needs root: it switches to the test user after login", k.name)
	}
	prog := bin
	if k.launcher != "" {
		var err error
		if prog, err = exec.LookPath(k.launcher); err != nil {
			skipOrFail(t, "%s runs under %s, which is not installed; run integration/setup.sh", k.name, k.launcher)
		}
	}
	acct := ensureTestAccount(t)

	b := &backend{kind: k, port: controlPort(t, k), acct: acct, done: make(chan error, 1)}
	b.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port))
	b.dir = worldReadableTempDir(t, "ftpsgate-"+k.name+"-")
	b.home = filepath.Join(b.dir, "home")
	if err := os.Mkdir(b.home, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(b.home, acct.uid, acct.gid); err != nil {
		t.Fatal(err)
	}

	args := k.configure(t, b)
	out, err := os.OpenFile(filepath.Join(b.dir, "output.log"), os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	b.logs = append(b.logs, out.Name())
	b.cmd = exec.Command(prog, args...)
	b.cmd.Dir = b.dir
	// vsftpd reports start-up errors ("500 OOPS: ...") on file descriptor 0,
	// where an inetd would have put the client: give it the log.
	b.cmd.Stdin, b.cmd.Stdout, b.cmd.Stderr = out, out, out
	// Its own process group, so that stopping it reaches every session
	// process it forked. Pdeathsig: a test binary killed by -timeout runs
	// no cleanup, and the server must not outlive it (its session
	// processes end when the proxy, gone too, closes their connections).
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if k.syslog {
		b.sysMark = syslogSink.mark()
	}
	if err := b.cmd.Start(); err != nil {
		out.Close()
		t.Fatalf("starting %s: %v", k.name, err)
	}
	go func() {
		b.done <- b.cmd.Wait()
		out.Close()
	}()
	t.Cleanup(func() {
		b.stop(t)
		if t.Failed() {
			t.Logf("%s %s\n%s", prog, strings.Join(args, " "), b.logText())
		}
	})
	if err := b.waitReady(15 * time.Second); err != nil {
		t.Fatalf("%s did not come up: %v", k.name, err)
	}
	return b
}

// waitReady waits for the server's greeting, then asks it for FEAT
// directly, so tests know what the backend itself supports.
func (b *backend) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case err := <-b.done:
			b.done <- err
			return fmt.Errorf("exited: %v", err)
		default:
		}
		feats, before, err := askFeaturesAs(b.addr, testUser, testPassword)
		if err == nil {
			b.features, b.featBeforeLogin = feats, before
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// askFeatures connects to a plain FTP server, reads its greeting and
// returns its FEAT list.
func askFeatures(addr string) ([]string, error) {
	feats, _, err := askFeaturesAs(addr, "", "")
	return feats, err
}

// askFeaturesAs is askFeatures for a server that may refuse FEAT before
// login with 530, as inetutils ftpd does: it then logs in as user and asks
// again. before reports whether the server answered FEAT before login.
func askFeaturesAs(addr, user, password string) (feats []string, before bool, err error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return nil, false, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	r := ftpctl.NewReader(bufio.NewReader(conn), ftpctl.DefaultMaxLine)
	greeting, err := r.ReadReply()
	if err != nil {
		return nil, false, err
	}
	if greeting.Code != ftpctl.CodeReady {
		return nil, false, fmt.Errorf("greeting %d %s", greeting.Code, greeting.Text())
	}
	ask := func(line string) (ftpctl.Reply, error) {
		if _, err := conn.Write([]byte(line + "\r\n")); err != nil {
			return ftpctl.Reply{}, err
		}
		return r.ReadReply()
	}
	feat, err := ask("FEAT")
	if err != nil {
		return nil, false, err
	}
	before = feat.Code != ftpctl.CodeNotLoggedIn
	if !before && user != "" {
		for _, line := range []string{"USER " + user, "PASS " + password} {
			if _, err := ask(line); err != nil {
				return nil, false, err
			}
		}
		if feat, err = ask("FEAT"); err != nil {
			return nil, false, err
		}
	}
	ask("QUIT")
	return ftpctl.ParseFeat(feat), before, nil
}

// stop ends the server with SIGTERM to its process group, as an init system
// would, then makes sure no process of the group is left.
func (b *backend) stop(t testing.TB) {
	pgid := b.cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(10 * time.Second):
		t.Errorf("%s did not exit within 10s of SIGTERM", b.kind.name)
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-b.done
	}
	// Session processes outlive a killed master for a moment (ProFTPD's
	// and pure-ftpd's end their sessions on their own signal handling).
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(-pgid, 0) == nil {
		if time.Now().After(deadline) {
			t.Errorf("%s left processes behind; killing them", b.kind.name)
			syscall.Kill(-pgid, syscall.SIGKILL)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logText returns the server's logs, each under its name, the last lines
// of long ones.
func (b *backend) logText() string {
	var sb strings.Builder
	for _, path := range b.logs {
		data, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintf(&sb, "--- %s: %v\n", path, err)
			continue
		}
		fmt.Fprintf(&sb, "--- %s log %s ---\n%s\n", b.kind.name, filepath.Base(path), tailLines(string(data), 400))
	}
	if b.kind.syslog {
		fmt.Fprintf(&sb, "--- %s syslog ---\n%s\n", b.kind.name, tailLines(syslogSink.since(b.sysMark), 400))
	}
	return sb.String()
}

func tailLines(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) <= n {
		return s
	}
	return fmt.Sprintf("[... %d lines before ...]\n", len(lines)-n) + strings.Join(lines[len(lines)-n:], "")
}

// controlPort returns k's own control port if it is free, else one the
// kernel finds free (another test run on the machine holds k's): the
// server binds it a moment later.
func controlPort(t testing.TB, k *serverKind) int {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(k.port)))
	if err != nil {
		t.Logf("%s: port %d is taken (%v); using a free one", k.name, k.port, err)
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// worldReadableTempDir is t.TempDir for servers that read their home after
// dropping privileges: t.TempDir's folders are 0700 root.
func worldReadableTempDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func writeFile(t testing.TB, path, content string, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
}

// testAccount is the system user the servers log the test user in as.
type testAccount struct {
	uid, gid int
	hash     string // crypt(3) hash of testPassword, for the servers' own user files
}

var account struct {
	once sync.Once
	acct testAccount
	err  error
}

// ensureTestAccount creates (once per run, idempotently) the system user,
// sets its password with a cheap hash, and writes vsftpd's PAM service.
func ensureTestAccount(t testing.TB) testAccount {
	t.Helper()
	account.once.Do(func() { account.acct, account.err = setUpTestAccount() })
	if account.err != nil {
		t.Fatalf("test account %s: %v", testUser, account.err)
	}
	return account.acct
}

func setUpTestAccount() (testAccount, error) {
	// Home "/": vsftpd changes into the passwd home before its local_root,
	// and fails the login if that directory does not exist.
	u, err := user.Lookup(testUser)
	if err != nil {
		out, err := exec.Command("useradd", "--system", "--no-create-home", "--home-dir", "/",
			"--shell", "/usr/sbin/nologin", testUser).CombinedOutput()
		if err != nil {
			return testAccount{}, fmt.Errorf("useradd: %v: %s", err, out)
		}
		if u, err = user.Lookup(testUser); err != nil {
			return testAccount{}, err
		}
	} else if u.HomeDir != "/" {
		if out, err := exec.Command("usermod", "--home", "/", testUser).CombinedOutput(); err != nil {
			return testAccount{}, fmt.Errorf("usermod: %v: %s", err, out)
		}
	}
	// SHA-256 crypt with its minimum of 1000 rounds: well under a
	// millisecond per login.
	chpasswd := exec.Command("chpasswd", "--crypt-method", "SHA256", "--sha-rounds", "1000")
	chpasswd.Stdin = strings.NewReader(testUser + ":" + testPassword + "\n")
	if out, err := chpasswd.CombinedOutput(); err != nil {
		return testAccount{}, fmt.Errorf("chpasswd: %v: %s", err, out)
	}
	hash, err := shadowHash(testUser)
	if err != nil {
		return testAccount{}, err
	}
	pam := "# ftpsgate integration tests: vsftpd's test backend, pam_unix only.\n" +
		"auth required pam_unix.so\naccount required pam_unix.so\nsession required pam_permit.so\n"
	if err := os.WriteFile(filepath.Join("/etc/pam.d", pamService), []byte(pam), 0o644); err != nil {
		return testAccount{}, err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return testAccount{uid: uid, gid: gid, hash: hash}, nil
}

// shadowHash reads a user's password hash from /etc/shadow: the same hash
// then serves pure-ftpd's and ProFTPD's own user files, which take crypt(3)
// hashes.
func shadowHash(name string) (string, error) {
	data, err := os.ReadFile("/etc/shadow")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Split(line, ":")
		if len(fields) > 1 && fields[0] == name {
			return fields[1], nil
		}
	}
	return "", fmt.Errorf("%s not in /etc/shadow", name)
}

// configureVsftpd: standalone (listen=YES) in the foreground, local users
// through PAM, chrooted into their home.
func configureVsftpd(t testing.TB, b *backend) []string {
	empty := filepath.Join(b.dir, "empty") // secure_chroot_dir: root-owned, not writable
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(b.dir, "vsftpd.log")
	b.logs = append(b.logs, log)
	conf := filepath.Join(b.dir, "vsftpd.conf")
	writeFile(t, conf, fmt.Sprintf(`listen=YES
listen_ipv6=NO
listen_address=127.0.0.1
listen_port=%d
background=NO
anonymous_enable=NO
local_enable=YES
write_enable=YES
local_umask=022
pam_service_name=%s
local_root=%s
chroot_local_user=YES
allow_writeable_chroot=YES
secure_chroot_dir=%s
pasv_enable=YES
pasv_min_port=%d
pasv_max_port=%d
pasv_address=%s
max_clients=500
max_per_ip=500
syslog_enable=NO
xferlog_enable=YES
xferlog_std_format=NO
log_ftp_protocol=YES
vsftpd_log_file=%s
`, b.port, pamService, b.home, empty, b.kind.pasvLow, b.kind.pasvHigh, natAddress, log), 0o600)
	return []string{conf}
}

// configurePureFTPd: virtual users from its own puredb, built with pure-pw
// from a passwd-format file that reuses the system user's hash.
func configurePureFTPd(t testing.TB, b *backend) []string {
	passwd := filepath.Join(b.dir, "pureftpd.passwd")
	pdb := filepath.Join(b.dir, "pureftpd.pdb")
	// user:hash:uid:gid:gecos:home:... (pure-pw(8), 18 fields)
	writeFile(t, passwd, fmt.Sprintf("%s:%s:%d:%d::%s:::::::::::::\n",
		testUser, b.acct.hash, b.acct.uid, b.acct.gid, b.home), 0o600)
	purePw := filepath.Join(interopDir(), b.kind.pkg, "usr/bin/pure-pw")
	if out, err := exec.Command(purePw, "mkdb", pdb, "-f", passwd).CombinedOutput(); err != nil {
		t.Fatalf("pure-pw mkdb: %v: %s", err, out)
	}
	xfer := filepath.Join(b.dir, "transfer.log")
	b.logs = append(b.logs, xfer)
	ensureSyslogSink(t) // pure-ftpd's verbose log goes to syslog only
	return []string{
		"--bind", fmt.Sprintf("127.0.0.1,%d", b.port),
		"--login", "puredb:" + pdb,
		"--noanonymous",
		"--chrooteveryone",
		// pure-ftpd serves at most half as many clients as it has passive
		// ports, whatever --maxclientsnumber says: 1900 ports, 200 clients.
		"--passiveportrange", fmt.Sprintf("%d:%d", b.kind.pasvLow, b.kind.pasvHigh),
		"--forcepassiveip", natAddress,
		"--maxclientsnumber", "200",
		"--maxclientsperip", "200",
		"--minuid", "1", // the test user is a system user
		"--dontresolve",
		"--verboselog",
		"--altlog", "clf:" + xfer,
		"--pidfile", filepath.Join(b.dir, "pure-ftpd.pid"),
	}
}

// configureProFTPD: standalone in the foreground (-n), users from its own
// AuthUserFile, DefaultRoot jail, logs in the test directory.
func configureProFTPD(t testing.TB, b *backend) []string {
	passwd := filepath.Join(b.dir, "ftpd.passwd")
	group := filepath.Join(b.dir, "ftpd.group")
	writeFile(t, passwd, fmt.Sprintf("%s:%s:%d:%d::%s:/bin/sh\n", testUser, b.acct.hash, b.acct.uid, b.acct.gid, b.home), 0o600)
	writeFile(t, group, fmt.Sprintf("%s:x:%d:\n", testUser, b.acct.gid), 0o644)
	// A welcome message makes the 230 reply multi-line, as on many real
	// servers.
	welcome := filepath.Join(b.dir, "welcome.msg")
	writeFile(t, welcome, "Welcome to the ftpsgate test ProFTPD.\nThis line makes the 230 reply multi-line.\n", 0o644)
	syslog := filepath.Join(b.dir, "proftpd.log")
	protocol := filepath.Join(b.dir, "protocol.log")
	xfer := filepath.Join(b.dir, "xferlog")
	b.logs = append(b.logs, syslog, protocol, xfer)
	conf := filepath.Join(b.dir, "proftpd.conf")
	writeFile(t, conf, fmt.Sprintf(`ServerType standalone
ServerName "ftpsgate test ProFTPD"
DefaultAddress 127.0.0.1
SocketBindTight on
Port %d
UseIPv6 off
User %s
Group %s
ScoreboardFile %s/proftpd.scoreboard
PidFile %s/proftpd.pid
DelayTable %s/proftpd.delay
<IfModule mod_delay.c>
  # mod_delay pads logins to hide timing; the tests log in hundreds of times.
  DelayEngine off
</IfModule>
ControlsEngine off
WtmpLog off
UseReverseDNS off
AuthOrder mod_auth_file.c
AuthUserFile %s
AuthGroupFile %s
RequireValidShell off
DefaultRoot ~
PassivePorts %d %d
MasqueradeAddress %s
MaxInstances 250
Umask 022
AllowOverwrite on
AllowStoreRestart on
DisplayLogin %s
SystemLog %s
TransferLog %s
LogFormat protocol "%%t %%a %%u %%r -> %%s"
ExtendedLog %s ALL protocol
`, b.port, testUser, testUser, b.dir, b.dir, b.dir, passwd, group,
		b.kind.pasvLow, b.kind.pasvHigh, natAddress, welcome, syslog, xfer, protocol), 0o644)
	return []string{"--nodaemon", "--config", conf}
}

// configureInetutils: GNU inetutils ftpd as inetd runs it, a new process
// for every connection with the socket as its standard input and output
// (its own -D detaches and binds port 21 of every address). socat's fork
// and nofork do what inetd's "nowait" does: the process gets the socket
// itself, so getpeername, F_SETOWN and the Telnet Synch's urgent data
// (SIGURG) reach ftpd as they would under inetd; without nofork socat
// would relay through a socketpair and lose all three. socat is one process
// group with its children, which stop ends like any other server.
//
// ftpd has no configuration file and no option for a user's root: it
// chroots a user listed in /etc/ftpchroot into the passwd home, and lets
// in only users whose shell /etc/shells lists. The test user's home is "/"
// and its shell nologin, for vsftpd. Each session therefore starts in a
// mount namespace of its own (unshare), where a read-only overlay puts
// b.dir/etc on top of /etc: a passwd whose test user has b.home and
// /bin/sh, and an ftpchroot naming it. Nothing outside changes, and
// backends started at the same time each have their own. The password is
// checked against /etc/shadow (-a default, crypt(3)): Debian's build also
// offers PAM ("ftp" service), whose stock file comes only with the
// installed package.
func configureInetutils(t testing.TB, b *backend) []string {
	etc := filepath.Join(b.dir, "etc")
	if err := os.Mkdir(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	passwd, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(passwd), "\n")
	for i, line := range lines {
		if strings.HasPrefix(line, testUser+":") {
			// name:password:uid:gid:gecos:home:shell
			lines[i] = fmt.Sprintf("%s:x:%d:%d::%s:/bin/sh\n", testUser, b.acct.uid, b.acct.gid, b.home)
		}
	}
	writeFile(t, filepath.Join(etc, "passwd"), strings.Join(lines, ""), 0o644)
	writeFile(t, filepath.Join(etc, "ftpchroot"), testUser+"\n", 0o644)
	ensureSyslogSink(t) // ftpd logs to syslog only
	ftpd := filepath.Join(interopDir(), b.kind.pkg, b.kind.binary)
	session := filepath.Join(b.dir, "ftpd-session")
	// -l -l -d: every connection, file operation, command and reply to
	// syslog; -u 022 as the other servers' umask.
	writeFile(t, session, fmt.Sprintf(`#!/bin/sh
# One inetutils ftpd session; its connection is standard input and output.
if [ "$1" != in-namespace ]; then
	exec unshare --mount -- "$0" in-namespace
fi
mount -t overlay ftpsgate-etc -o ro,lowerdir=%s:/etc /etc || exit 1
exec %s -a default -l -l -d -u 022
`, etc, ftpd), 0o755)
	return []string{
		fmt.Sprintf("TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork", b.port),
		"EXEC:" + session + ",nofork",
	}
}

// syslogSink collects what programs send to /dev/log while no syslog daemon
// listens there (as on CI): pure-ftpd writes its verbose log nowhere else.
// The socket exists only while the tests run.
var syslogSink sinkBuffer

type sinkBuffer struct {
	once sync.Once
	mu   sync.Mutex
	buf  []byte // guarded by mu
	conn *net.UnixConn
	note string // why nothing is captured, if so
}

const devLog = "/dev/log"

func ensureSyslogSink(t testing.TB) {
	syslogSink.once.Do(syslogSink.listen)
}

func (s *sinkBuffer) listen() {
	if _, err := os.Lstat(devLog); err == nil {
		// A live syslog daemon keeps its log; a socket left by a killed test
		// run refuses connections and is replaced.
		if c, err := net.Dial("unixgram", devLog); err == nil {
			c.Close()
			s.note = "(pure-ftpd logs to the system's syslog on this machine)\n"
			return
		}
		os.Remove(devLog)
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: devLog, Net: "unixgram"})
	if err != nil {
		s.note = fmt.Sprintf("(no syslog capture: %v)\n", err)
		return
	}
	os.Chmod(devLog, 0o666) // pure-ftpd logs after dropping privileges too
	s.conn = conn
	go func() {
		b := make([]byte, 8192)
		for {
			n, err := conn.Read(b)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.buf = append(s.buf, b[:n]...)
			if n > 0 && b[n-1] != '\n' {
				s.buf = append(s.buf, '\n')
			}
			s.mu.Unlock()
		}
	}()
}

// close removes the socket; TestMain calls it once the tests are done.
func (s *sinkBuffer) close() {
	if s.conn != nil {
		s.conn.Close()
		os.Remove(devLog)
	}
}

func (s *sinkBuffer) mark() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.buf)
}

func (s *sinkBuffer) since(mark int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.note != "" {
		return s.note
	}
	return string(s.buf[min(mark, len(s.buf)):])
}

// startProxyFor starts a proxy in front of b and waits until the proxy's
// health check has learnt b's features. lftp asks FEAT only before login,
// where the proxy can answer only from what its checks found; a cell that
// raced the first check would see no MLST and never use MLSD.
func startProxyFor(t testing.TB, b *backend) *proxyProc {
	t.Helper()
	p := startProxy(t, "--backend", b.addr)
	if !b.hasFeature("SIZE") || !b.featBeforeLogin {
		// A backend that refuses FEAT before login (inetutils) teaches
		// the checks nothing: nothing to wait for.
		return p
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		feats, err := askFeatures(p.explicit)
		if err == nil && slices.ContainsFunc(feats, func(f string) bool { return ftpctl.FeatureName(f) == "SIZE" }) {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("the proxy's FEAT before login never listed %s's SIZE (features %q, error %v)", b.kind.name, feats, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
