package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode"

	"github.com/ftpsgate/ftpsgate/ftpctl"
	"github.com/ftpsgate/ftpsgate/ftpctl/ftptest"
	"github.com/ftpsgate/ftpsgate/tlsoffload/pebbletest"
)

// TestAttacks is issue 15's attack table end to end: the built binary with
// its defaults, real vsftpd and pure-ftpd behind it, curl, lftp and
// Python's ftplib as victims. Each row asserts that the victim's bytes are
// intact, that the attacker got none, and that the proxy's log names the
// attempt. proxy's TestAttacks has every row in process, where each was
// shown to fail on the main the issue was filed against.
func TestAttacks(t *testing.T) {
	t.Run("data-thief", func(t *testing.T) {
		for _, k := range []*serverKind{vsftpd, pureFTPd} {
			t.Run(k.name, func(t *testing.T) { testDataThief(t, k) })
		}
	})
	t.Run("ipv6-pasv-thief", testIPv6PASVThief)
	t.Run("user-after-login", testUserAfterLogin)
	t.Run("strangers-fill-max-clients", testStrangers)
	t.Run("passive-port-hoarding", testPortHoarding)
	t.Run("long-lines", testLongLines)
	t.Run("stock-ftplib", testStockFtplib)
	t.Run("hostile-names", testHostileNames)
}

// thief connects again and again, from src, to a passive port of the
// proxy, and takes whatever comes: with a TLS handshake of its own (no
// ticket), with the ticket of a session of its own, or with garbage that
// would spoil the port, in turn.
type thief struct {
	src      string
	stolen   atomic.Int64 // bytes received on any connection
	mu       sync.Mutex
	accepted []string // local addresses of the connections made
	cancel   context.CancelFunc
	done     chan struct{}
}

func startThief(t *testing.T, target, src string, ticket *tls.Config) *thief {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	th := &thief{src: src, cancel: cancel, done: make(chan struct{})}
	fresh := &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"}
	go func() {
		defer close(th.done)
		for i := 0; ctx.Err() == nil; i++ {
			d := net.Dialer{Timeout: time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
			conn, err := d.DialContext(ctx, "tcp", target)
			if err != nil {
				time.Sleep(time.Millisecond) // the port is closed between transfers
				continue
			}
			th.mu.Lock()
			th.accepted = append(th.accepted, conn.LocalAddr().String())
			th.mu.Unlock()
			stop := context.AfterFunc(ctx, func() { conn.Close() })
			conn.SetDeadline(time.Now().Add(20 * time.Second))
			var r io.Reader = conn
			switch i % 3 {
			case 0:
				r = tls.Client(conn, fresh)
			case 1:
				r = tls.Client(conn, ticket)
			case 2:
				io.WriteString(conn, "GET / HTTP/1.0\r\n\r\n")
			}
			n, _ := io.Copy(io.Discard, r)
			th.stolen.Add(n)
			stop()
			conn.Close()
		}
	}()
	t.Cleanup(th.stop)
	return th
}

func (th *thief) stop() {
	th.cancel()
	<-th.done
}

// refused checks that the proxy logged at least one of the thief's
// connections as refused, and that it got nothing.
func (th *thief) refused(t *testing.T, p *proxyProc) {
	t.Helper()
	th.stop()
	if n := th.stolen.Load(); n != 0 {
		t.Errorf("the thief got %d bytes", n)
	}
	th.mu.Lock()
	mine := map[string]bool{}
	for _, a := range th.accepted {
		mine[a] = true
	}
	th.mu.Unlock()
	n := 0
	for _, line := range strings.Split(p.log(), "\n") {
		var rec map[string]any
		if !strings.Contains(line, "refused") || json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		if from, _ := rec["from"].(string); mine[from] {
			n++
		}
	}
	if n == 0 {
		t.Errorf("none of the thief's %d connections was logged as refused", len(mine))
	}
	t.Logf("the thief made %d connections to the port; %d were logged as refused", len(mine), n)
}

// ownSession logs a session of the attacker's in through the proxy, and
// returns its TLS configuration: its cache holds a ticket of its own.
func ownSession(t *testing.T, p *proxyProc, src, user, password string) *tls.Config {
	t.Helper()
	c := dialFrom(t, src, p.explicit)
	c.expect(220)
	cfg := &tls.Config{InsecureSkipVerify: true, ServerName: "localhost", ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	c.secure(cfg)
	c.login(user, password) // the TLS 1.3 ticket comes with these reads
	return cfg
}

// victim is one real client uploading a file through the proxy and
// downloading it back, under PROT P.
type victim struct {
	name, tool string
	run        func(t *testing.T, p *proxyProc, up, name, dl string) (string, error)
}

var victims = []victim{
	{"curl", "curl", func(t *testing.T, p *proxyProc, up, name, dl string) (string, error) {
		url := "ftp://" + p.explicit + "/" + name
		base := []string{"--silent", "--show-error", "--insecure", "--ssl-reqd", "--max-time", "120",
			"--user", testUser + ":" + testPassword}
		out, err := run(t, 3*time.Minute, "curl", append(base, "--upload-file", up, url)...)
		if err != nil {
			return out, err
		}
		more, err := run(t, 3*time.Minute, "curl", append(base, "--output", dl, url)...)
		return out + more, err
	}},
	{"lftp", "lftp", func(t *testing.T, p *proxyProc, up, name, dl string) (string, error) {
		script := fmt.Sprintf("set cmd:fail-exit yes\nset net:max-retries 1\nset net:timeout 30\n"+
			"set ssl:verify-certificate no\nset ftp:ssl-force yes\nset ftp:ssl-protect-data yes\n"+
			"open -u %s,%s ftp://%s\nput %s -o %s\nget %s -o %s\nbye\n",
			testUser, testPassword, p.explicit, up, name, name, dl)
		path := filepath.Join(t.TempDir(), "script.lftp")
		writeFile(t, path, script, 0o600)
		return run(t, 3*time.Minute, "lftp", "-f", path)
	}},
	{"ftplib", "python3", func(t *testing.T, p *proxyProc, up, name, dl string) (string, error) {
		host, port := splitHostPort(p.explicit)
		return run(t, 3*time.Minute, "python3", "testdata/ftpscript.py", "--host", host, "--port", port,
			"--user", testUser, "--password", testPassword, "--up", up, "--name", name, "--dl", dl)
	}},
}

// testDataThief: a thief on the victims' own address connects to the one
// passive port of the proxy again and again while curl, lftp and ftplib
// each upload a file and download it back. Every file arrives whole both
// ways, and the thief gets nothing. On the old main the thief took whole
// PROT P downloads (no ticket needed), and a racer made the victim's
// transfers fail with 522.
func testDataThief(t *testing.T, k *serverKind) {
	b := startBackend(t, k)
	port := pebbletest.FreePort(t)
	p := startProxy(t, "--backend", b.addr, "--passive-ports", fmt.Sprintf("%d-%d", port, port))
	ticket := ownSession(t, p, "127.0.0.1", testUser, testPassword)
	th := startThief(t, fmt.Sprintf("127.0.0.1:%d", port), "127.0.0.1", ticket)
	for _, v := range victims {
		t.Run(v.name, func(t *testing.T) {
			needTool(t, v.tool)
			dir := t.TempDir()
			up, want := writeLocal(t, dir, "up.bin", 2_000_003, uint64(len(v.name)))
			dl := filepath.Join(dir, "dl.bin")
			name := "attacked-" + v.name + ".bin"
			if out, err := v.run(t, p, up, name, dl); err != nil {
				t.Fatalf("%s: %v\n%s", v.name, err, out)
			}
			stored, err := os.ReadFile(filepath.Join(b.home, name))
			if err != nil || !bytes.Equal(stored, want) {
				t.Errorf("upload: the backend holds %d bytes of %d (%v)", len(stored), len(want), err)
			}
			if got, err := os.ReadFile(dl); err != nil || !bytes.Equal(got, want) {
				t.Errorf("download: %d bytes of %d (%v)", len(got), len(want), err)
			}
		})
	}
	th.refused(t, p)
}

// testIPv6PASVThief: ftplib over IPv6, made to send PASV as old clients
// do (curl, lftp and stock ftplib use EPSV on IPv6), is told public_host,
// an IPv4 address; a host on another address connects to that port again
// and again. ftplib's files arrive whole both ways and the thief gets
// nothing; under PROT C that PASV is refused, pointing to EPSV. On the
// old main, such a thief took a 3.8 MB PROT P download while the victim
// got "connection refused" and the proxy logged 226.
func testIPv6PASVThief(t *testing.T) {
	needTool(t, "python3")
	if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
		skipOrFail(t, "no IPv6 loopback: %v", err)
	} else {
		ln.Close()
	}
	b := startBackend(t, vsftpd)
	port := pebbletest.FreePort(t)
	p := startProxy(t, "--backend", b.addr, "--listen", "[::1]:0", "--implicit-listen", "[::1]:0",
		"--public-host", "127.0.0.1", "--passive-ports", fmt.Sprintf("%d-%d", port, port))
	th := startThief(t, fmt.Sprintf("127.0.0.1:%d", port), "127.0.0.2", &tls.Config{InsecureSkipVerify: true})
	host, ctlPort := splitHostPort(p.explicit)
	for i := range 3 {
		dir := t.TempDir()
		up, want := writeLocal(t, dir, "up.bin", 1_000_003, uint64(i))
		dl := filepath.Join(dir, "dl.bin")
		name := fmt.Sprintf("v6-%d.bin", i)
		out, err := run(t, 2*time.Minute, "python3", "testdata/ftpscript.py", "--host", host, "--port", ctlPort, "--pasv",
			"--user", testUser, "--password", testPassword, "--up", up, "--name", name, "--dl", dl)
		if err != nil {
			t.Fatalf("ftplib: %v\n%s", err, out)
		}
		if stored, err := os.ReadFile(filepath.Join(b.home, name)); err != nil || !bytes.Equal(stored, want) {
			t.Errorf("upload: the backend holds %d bytes of %d (%v)", len(stored), len(want), err)
		}
		if got, err := os.ReadFile(dl); err != nil || !bytes.Equal(got, want) {
			t.Errorf("download: %d bytes of %d (%v)", len(got), len(want), err)
		}
	}
	th.refused(t, p)
	// PROT C: nothing could tell the client's data connection from anyone's.
	c := dialFrom(t, "::1", p.explicit)
	c.expect(220)
	c.secure(nil)
	c.login(testUser, testPassword)
	if rep := c.cmd("PASV", 522); !strings.Contains(rep.Text(), "EPSV") {
		t.Errorf("PASV over IPv6 under PROT C: %q does not point to EPSV", rep.Text())
	}
	c.cmd("EPSV", 229)
}

// testUserAfterLogin: a logged-in user sends USER for another name, then
// PASS. The proxy refuses both itself; the transfers that follow are
// logged as the user the backend accepted. On the old main the proxy
// took the new name, logged a second login and attributed every later
// transfer to it.
func testUserAfterLogin(t *testing.T) {
	b := startBackend(t, vsftpd)
	writeFile(t, filepath.Join(b.home, "mine.txt"), "only mine\n", 0o644)
	p := startProxy(t, "--backend", b.addr)
	c := dialFrom(t, "127.0.0.1", p.explicit)
	c.expect(220)
	cfg := &tls.Config{InsecureSkipVerify: true, ServerName: "localhost", ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	c.secure(cfg)
	c.login(testUser, testPassword)
	c.cmd("USER root", 530)
	c.cmd("PASS anything", 503)
	c.cmd("PBSZ 0", 200)
	c.cmd("PROT P", 200)
	port, err := ftpctl.ParseEPSV(c.cmd("EPSV", 229).Text())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	c.send("RETR mine.txt")
	c.expect(150)
	got, _ := io.ReadAll(tls.Client(raw, cfg))
	c.expect(226)
	if string(got) != "only mine\n" {
		t.Errorf("got %q", got)
	}
	c.cmd("QUIT", 221)
	waitRecords(t, p, "transfer", 1)
	for _, msg := range []string{"login", "transfer"} {
		recs := p.records(msg)
		if len(recs) != 1 || recs[0]["user"] != testUser {
			t.Errorf("%s records: %v, want one of user %s", msg, recs, testUser)
		}
	}
	if recs := p.records("change of user refused"); len(recs) != 1 || recs[0]["tried_user"] != "root" {
		t.Errorf("change of user refused records: %v", recs)
	}
}

// limitedVsftpd is vsftpd taking at most n clients, from any address.
func limitedVsftpd(n int) *serverKind {
	k := *vsftpd
	k.configure = func(t testing.TB, b *backend) []string {
		args := configureVsftpd(t, b)
		conf, err := os.ReadFile(args[0])
		if err != nil {
			t.Fatal(err)
		}
		limited := strings.NewReplacer("max_clients=500", fmt.Sprintf("max_clients=%d", n),
			"max_per_ip=500", fmt.Sprintf("max_per_ip=%d", n)).Replace(string(conf))
		writeFile(t, args[0], limited, 0o600)
		return args
	}
	return &k
}

// testStrangers: 200 sessions from one address secure themselves and send
// USER, and never PASS, in front of a vsftpd that takes 20 clients. They
// cost vsftpd nothing: a real user from another address logs in and
// downloads, and vsftpd never turned anyone away. On the old main each
// USER held a vsftpd connection for the login timeout: 50 of them filled
// max_clients=50, the real user got 421 and the backend was ejected.
func testStrangers(t *testing.T) {
	needTool(t, "curl")
	b := startBackend(t, limitedVsftpd(20))
	want := bytes.Repeat([]byte("for real users. "), 50_000)
	writeFile(t, filepath.Join(b.home, "real.bin"), string(want), 0o644)
	p := startProxy(t, "--backend", b.addr)

	const n = 200
	var (
		wg    sync.WaitGroup
		named atomic.Int32
	)
	for range n {
		conn, err := net.Dial("tcp", p.explicit)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		wg.Go(func() {
			conn.SetDeadline(time.Now().Add(3 * time.Second))
			r := ftpctl.NewReader(bufio.NewReader(conn), 0)
			if rep, err := r.ReadReply(); err != nil || rep.Code != 220 {
				return // waiting for a login place: held back before its greeting
			}
			io.WriteString(conn, "AUTH TLS\r\n")
			if rep, err := r.ReadReply(); err != nil || rep.Code != 234 {
				return
			}
			tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true})
			if err := tc.Handshake(); err != nil {
				return
			}
			io.WriteString(tc, "USER "+testUser+"\r\n")
			if rep, err := ftpctl.NewReader(bufio.NewReader(tc), 0).ReadReply(); err == nil && rep.Code == 331 {
				named.Add(1)
			}
		})
	}
	wg.Wait()
	if named.Load() == 0 {
		t.Fatal("no stranger got as far as USER")
	}
	dl := filepath.Join(t.TempDir(), "real.bin")
	out, err := run(t, time.Minute, "curl", "--silent", "--show-error", "--insecure", "--ssl-reqd", "--max-time", "60",
		"--interface", "127.0.0.2", "--user", testUser+":"+testPassword, "--output", dl, "ftp://"+p.explicit+"/real.bin")
	if err != nil {
		t.Fatalf("the real user: %v\n%s", err, out)
	}
	if got, err := os.ReadFile(dl); err != nil || !bytes.Equal(got, want) {
		t.Errorf("the real user's download: %d bytes of %d (%v)", len(got), len(want), err)
	}
	if len(p.records("backend ejected")) > 0 || len(p.records("no backend reachable")) > 0 {
		t.Error("the backend was ejected or unreachable")
	}
	if strings.Contains(b.logText(), "too many connected users") {
		t.Error("vsftpd turned clients away: strangers held its connections")
	}
	if len(p.records("session waits for a login place")) == 0 {
		t.Error("no session waited for a login place: the limit was never hit")
	}
	t.Logf("%d of %d strangers got as far as USER", named.Load(), n)
}

// testPortHoarding: one client address opens a session per passive port
// and holds each; past its share the next PASV waits and is refused, and
// a client from another address still gets a port and its file. On the
// old main the hoarder took the whole range and the other client got
// 425.
func testPortHoarding(t *testing.T) {
	needTool(t, "curl")
	b := startBackend(t, vsftpd)
	writeFile(t, filepath.Join(b.home, "f.txt"), "through a free port\n", 0o644)
	first := pebbletest.FreePort(t)
	for first > 65000 { // room for 20 ports above it
		first = pebbletest.FreePort(t)
	}
	p := startProxy(t, "--backend", b.addr, "--passive-ports", fmt.Sprintf("%d-%d", first, first+19))
	held := 0
	for range 17 {
		c := dialFrom(t, "127.0.0.1", p.explicit)
		c.expect(220)
		c.secure(nil)
		c.login(testUser, testPassword)
		c.send("EPSV")
		rep, err := c.r.ReadReply()
		if err != nil {
			t.Fatal(err)
		}
		if rep.Code == ftpctl.CodeEnteringExtPassive {
			held++
		}
	}
	if held != 16 {
		t.Errorf("one address held %d passive ports, want its share of 16", held)
	}
	dl := filepath.Join(t.TempDir(), "f.txt")
	out, err := run(t, time.Minute, "curl", "--silent", "--show-error", "--insecure", "--ssl-reqd", "--max-time", "60",
		"--interface", "127.0.0.2", "--user", testUser+":"+testPassword, "--output", dl, "ftp://"+p.explicit+"/f.txt")
	if err != nil {
		t.Fatalf("the other client: %v\n%s", err, out)
	}
	if got, _ := os.ReadFile(dl); string(got) != "through a free port\n" {
		t.Errorf("the other client got %q", got)
	}
	if len(p.records("passive port refused: the client's address holds its share")) == 0 {
		t.Error("the hoarder's refusal was not logged")
	}
}

// testLongLines: 100 KB of a command line without its CRLF, before AUTH
// and inside TLS: 500 at once, then 421 and the end of the session,
// whatever else comes. On the old main the proxy read on in silence until
// the idle timeout.
func testLongLines(t *testing.T) {
	b := memBackend(t)
	p := startProxy(t, "--backend", b.Addr())
	long := strings.Repeat("A", 100<<10)
	for _, secure := range []bool{false, true} {
		c := dialFrom(t, "127.0.0.1", p.explicit)
		c.conn.SetDeadline(time.Now().Add(20 * time.Second)) // the idle timeout is 5 minutes
		c.expect(220)
		if secure {
			c.secure(nil)
		}
		go io.WriteString(c.conn, "USER "+long) // the proxy stops reading it
		c.expect(500)
		c.expect(421)
		if rep, err := c.r.ReadReply(); err == nil {
			t.Errorf("after 421: %d %q", rep.Code, rep.Lines)
		}
	}
	waitRecords(t, p, "command line too long: closing", 2)
}

// testStockFtplib: Python's ftplib as it comes never resumes the control
// session on its data connections, and gets a 522 whose text says what to
// do, in seconds; with the lines README.md gives script authors
// (testdata/ftpscript.py's ResumingFTP_TLS) the same script works.
func testStockFtplib(t *testing.T) {
	needTool(t, "python3")
	b := startBackend(t, vsftpd)
	p := startProxy(t, "--backend", b.addr)
	host, port := splitHostPort(p.explicit)
	dir := t.TempDir()
	up, want := writeLocal(t, dir, "up.bin", 100_001, 42)
	args := []string{"testdata/ftpscript.py", "--host", host, "--port", port, "--user", testUser, "--password", testPassword,
		"--up", up, "--name", "script.bin", "--dl", filepath.Join(dir, "dl.bin")}
	out, err := run(t, 2*time.Minute, "python3", append(args, "--stock")...)
	if err == nil || !strings.Contains(out, "522") || !strings.Contains(out, "session=self.sock.session") {
		t.Errorf("stock ftplib: want a 522 saying what to do, got %v\n%s", err, out)
	}
	t.Logf("stock ftplib: %s", strings.TrimSpace(out))
	if len(p.records("data connection did not resume the control TLS session: refused (tls.require_session_reuse)")) == 0 {
		t.Error("the refusal was not logged")
	}
	if out, err := run(t, 2*time.Minute, "python3", args...); err != nil {
		t.Fatalf("ftplib with ResumingFTP_TLS: %v\n%s", err, out)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "dl.bin")); err != nil || !bytes.Equal(got, want) {
		t.Errorf("download: %d bytes of %d (%v)", len(got), len(want), err)
	}
	// The lines README.md shows are the ones this run proved.
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	script, err := os.ReadFile("testdata/ftpscript.py")
	if err != nil {
		t.Fatal(err)
	}
	_, shown, _ := strings.Cut(string(readme), "class ResumingFTP_TLS(ftplib.FTP_TLS):")
	shown, _, _ = strings.Cut(shown, "\n\n")
	if strings.TrimSpace(shown) == "" {
		t.Fatal("README.md shows no ResumingFTP_TLS")
	}
	for _, line := range strings.Split(shown, "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.Contains(string(script), l) {
			t.Errorf("README.md's ResumingFTP_TLS has %q, which testdata/ftpscript.py does not", l)
		}
	}
}

// hostileName is a row of testdata/hostile-names.txt: a value a client
// chooses and how every operator-facing output shows it.
type hostileName struct{ name, in, want, tail string }

func loadHostileNames(t *testing.T) []hostileName {
	t.Helper()
	data, err := os.ReadFile("../testdata/hostile-names.txt")
	if err != nil {
		t.Fatal(err)
	}
	var out []hostileName
	for i, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 4 {
			t.Fatalf("testdata/hostile-names.txt:%d: %d fields, want 4", i+1, len(f))
		}
		var h [4]string
		for j := range f {
			if h[j], err = strconv.Unquote(f[j]); err != nil {
				t.Fatalf("testdata/hostile-names.txt:%d: %v", i+1, err)
			}
		}
		out = append(out, hostileName{h[0], h[1], h[2], h[3]})
	}
	return out
}

// testHostileNames: the table of hostile names, as user names and as
// paths, through the binary: each user logs in, uploads a file of its own
// name and stays; then the status page, ftpsgate tail on the log and the
// xferlog file must each show every name as the table says, with none of
// its raw bytes. Names with CR, LF or NUL cannot travel in a command line
// (the proxy refuses CR and NUL, LF ends the line) and are left out here;
// cmd/ftpsgate's TestHostileNames shows them through the same outputs.
func testHostileNames(t *testing.T) {
	names := loadHostileNames(t)
	b := ftptest.NewUnstartedServer()
	b.Users = map[string]string{}
	var sent []hostileName
	for _, h := range names {
		if strings.ContainsAny(h.in, "\r\n\x00") {
			continue
		}
		b.Users[h.in] = "pw"
		b.FS.WriteFile(h.in, nil) // its directories too
		sent = append(sent, h)
	}
	b.Start()
	t.Cleanup(b.Close)
	dir := t.TempDir()
	xferlog := filepath.Join(dir, "xferlog")
	admin := fmt.Sprintf("127.0.0.1:%d", pebbletest.FreePort(t))
	cfg := filepath.Join(dir, "ftpsgate.toml")
	writeFile(t, cfg, fmt.Sprintf("[log]\nxferlog = %q\n\n[admin]\nlisten = %q\n\n[[backend]]\naddress = %q\n",
		xferlog, admin, b.Addr()), 0o600)
	p := startProxy(t, "--config", cfg)

	for _, h := range sent {
		c := dialFrom(t, "127.0.0.1", p.explicit)
		c.expect(220)
		c.secure(nil)
		c.login(h.in, "pw")
		port, err := ftpctl.ParseEPSV(c.cmd("EPSV", 229).Text())
		if err != nil {
			t.Fatal(err)
		}
		raw, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
		if err != nil {
			t.Fatal(err)
		}
		c.send("STOR " + h.in)
		if rep, err := c.r.ReadReply(); err != nil || rep.Code != 150 {
			t.Fatalf("STOR %q: %d %q (%v)", h.in, rep.Code, rep.Lines, err)
		}
		io.WriteString(raw, "x")
		raw.Close()
		c.expect(226) // and the session stays, for the status page
	}
	waitRecords(t, p, "transfer", len(sent))

	page, err := httpGet("http://" + admin + "/")
	if err != nil {
		t.Fatal(err)
	}
	tailed, err := run(t, time.Minute, binary, "tail", p.logPath) // not a terminal: no colour
	if err != nil {
		t.Fatalf("ftpsgate tail: %v\n%s", err, tailed)
	}
	xfer, err := os.ReadFile(xferlog)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range sent {
		t.Run(h.name, func(t *testing.T) {
			tailWant := h.want
			if h.tail != "" {
				tailWant = h.tail
			}
			for _, o := range []struct{ name, text, want string }{
				{"status page", html.UnescapeString(page), h.want},
				{"ftpsgate tail", tailed, tailWant},
				{"xferlog", string(xfer), strings.ReplaceAll(h.want, " ", "_")},
			} {
				if !strings.Contains(o.text, o.want) {
					t.Errorf("%s does not show %q", o.name, o.want)
				}
				if h.in != h.want && strings.Contains(o.text, h.in) {
					t.Errorf("%s shows %q raw", o.name, h.in)
				}
			}
		})
	}
	// Nothing a client chose reached an output raw: no control, format or
	// blank-looking character at all, whoever's it was.
	for _, o := range []struct{ name, text string }{{"status page", page}, {"ftpsgate tail", tailed}, {"xferlog", string(xfer)}} {
		for _, r := range o.text {
			if r != '\n' && (unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029' || r == '\u3164') {
				t.Errorf("%s holds %U", o.name, r)
				break
			}
		}
	}
}

// httpGet returns the body of a GET of url.
func httpGet(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(body), err
}
