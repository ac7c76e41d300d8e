package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jlaffaye/ftp"

	"github.com/ftpsgate/ftpsgate/ftpctl/ftptest"
	"github.com/ftpsgate/ftpsgate/proxy"
)

var updateTailFixture = flag.Bool("update-tail-fixture", false, "rewrite testdata/tail.log from a live session (then update the expected lines of TestTailRecordedLog)")

// recordLog runs the proxy as serve does (run, with a self-signed
// certificate) in front of an in-memory backend and a second one that is
// down at first, drives sessions through it with jlaffaye/ftp, and returns
// the JSON log at debug level:
//   - alice, from 127.0.0.1, explicit FTPS: LIST and RETR and STOR over EPSV;
//   - bob, from 127.0.0.2: a wrong password;
//   - carol, from 127.0.0.3, implicit FTPS: RETR over PASV;
//
// then the second backend comes up, and the proxy stops.
func recordLog(t *testing.T) []byte {
	t.Helper()
	mem := ftptest.NewUnstartedServer()
	mem.Users = map[string]string{"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}
	mem.FS.WriteFile("/pub/file.bin", bytes.Repeat([]byte("ftpsgate"), 3<<17)) // 3 MiB
	mem.FS.WriteFile("/pub/readme.txt", []byte("Files for the partners.\n"))
	mem.FS.Mkdir("/incoming")
	mem.Start()
	t.Cleanup(mem.Close)
	spareAddr := freeAddr(t)

	logs := &syncBuffer{}
	log, err := newLogger(io.MultiWriter(logs, suiteLog), "debug", "json")
	if err != nil {
		t.Fatal(err)
	}
	var st settings
	st.proxy = proxy.Config{
		Listen:   "127.0.0.1:0",
		Implicit: "127.0.0.1:0",
		Backends: []proxy.Backend{{Address: mem.Addr(), Name: "mem"}, {Address: spareAddr, Name: "spare"}},
		Health:   proxy.Health{Interval: 200 * time.Millisecond, Timeout: time.Second, Fall: 1, Rise: 1},
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan *proxy.Server, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, st, log, func(s *proxy.Server) { ready <- s }) }()
	var srv *proxy.Server
	select {
	case srv = <-ready:
	case err := <-done:
		t.Fatalf("run: %v", err)
	}
	waitLog(t, logs, `"message":"backend down"`)

	client := &tls.Config{InsecureSkipVerify: true, ServerName: "localhost", ClientSessionCache: tls.NewLRUClientSessionCache(8)}
	dial := func(addr, from string, opts ...ftp.DialOption) *ftp.ServerConn {
		t.Helper()
		d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		c, err := ftp.Dial(addr, append([]ftp.DialOption{ftp.DialWithDialer(d)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	alice := dial(srv.ExplicitAddr().String(), "127.0.0.1", ftp.DialWithExplicitTLS(client))
	must(alice.Login("alice", "alice-pw"))
	_, err = alice.List("/pub")
	must(err)
	r, err := alice.Retr("/pub/file.bin")
	must(err)
	io.Copy(io.Discard, r)
	must(r.Close())
	must(alice.Stor("/incoming/notes.txt", strings.NewReader("uploaded through ftpsgate\n")))
	must(alice.Quit())

	bob := dial(srv.ExplicitAddr().String(), "127.0.0.2", ftp.DialWithExplicitTLS(client))
	if err := bob.Login("bob", "not-bobs-password"); err == nil {
		t.Fatal("bob logged in with a wrong password")
	}
	bob.Quit()

	carol := dial(srv.ImplicitAddr().String(), "127.0.0.3", ftp.DialWithTLS(client), ftp.DialWithDisabledEPSV(true))
	must(carol.Login("carol", "carol-pw"))
	r, err = carol.Retr("/pub/readme.txt")
	must(err)
	io.Copy(io.Discard, r)
	must(r.Close())
	must(carol.Quit())
	waitLog(t, logs, `"message":"session end"`, `"message":"session end"`, `"message":"session end"`)

	spare := ftptest.NewUnstartedServer()
	must(spare.StartOn(spareAddr))
	t.Cleanup(spare.Close)
	waitLog(t, logs, `"message":"backend up"`)
	cancel()
	must(<-done)
	return []byte(logs.String())
}

// waitLog waits until the log holds every one of subs, each counted as
// often as it is given.
func waitLog(t *testing.T, logs *syncBuffer, subs ...string) {
	t.Helper()
	want := map[string]int{}
	for _, s := range subs {
		want[s]++
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		s := logs.String()
		ok := true
		for sub, n := range want {
			ok = ok && strings.Count(s, sub) >= n
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %q in the log:\n%s", subs, s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// freeAddr returns a loopback address where nothing listens.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// cliMu serialises in-process runs of the command line for parallel
// tests: every run writes to urfave/cli's global HelpFlag, and to
// configFlag, which several commands share.
var cliMu sync.Mutex

func runCLISerial(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	cliMu.Lock()
	defer cliMu.Unlock()
	return runCLI(t, args...)
}

// syncBuffer is a writer safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestTailLiveLog: the log of real sessions through the proxy, printed
// by tail. Every record of README.md's list that occurred reads in its
// own form, not as key=value; a change of the proxy's field names shows
// here. With -update-tail-fixture the log becomes testdata/tail.log.
func TestTailLiveLog(t *testing.T) {
	t.Parallel()
	log := recordLog(t)
	if *updateTailFixture {
		// The launcher's stderr in the same file, as `>> file 2>&1` makes.
		fixture := append(append([]byte{}, log...), "ftpsgate: listen tcp :990: bind: address already in use\n"...)
		if err := os.WriteFile("testdata/tail.log", fixture, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "ftpsgate.log")
	if err := os.WriteFile(path, log, 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := runCLISerial(t, "tail", path)
	if err != nil {
		t.Fatalf("tail: %v\n%s", err, errOut)
	}
	const (
		tm   = `\d\d:\d\d:\d\d`
		dur  = `\d+(\.\d)?m?s`
		sess = ` \[session [0-9a-f]{12}\]`
		port = `:\d+`
	)
	for _, want := range []string{
		`^` + tm + ` WRN certificate generated self-signed: localhost, 127\.0\.0\.1, ::1 serial [0-9a-f]+ until \d{4}-\d\d-\d\d$`,
		`^` + tm + ` WRN backend spare \(pool default\) down after 1 failed check: .*connection refused$`,
		`^` + tm + ` INF 127\.0\.0\.1` + port + ` session start \(explicit\)` + sess + `$`,
		`^` + tm + ` INF 127\.0\.0\.1 tls established TLS 1\.3 TLS_\w+ sni localhost new session` + sess + `$`,
		`^` + tm + ` INF alice@127\.0\.0\.1 login on backend mem` + sess + `$`,
		`^` + tm + ` INF alice@127\.0\.0\.1 MLSD /pub download \d+ B in ` + dur + ` \(\d+(\.\d)? [KM]iB/s\) PROT P resumed 226` + sess + `$`,
		`^` + tm + ` INF alice@127\.0\.0\.1 RETR /pub/file\.bin download 3\.0 MiB in ` + dur + ` \(\d+\.\d [KMG]iB/s\) PROT P resumed 226` + sess + `$`,
		`^` + tm + ` INF alice@127\.0\.0\.1 STOR /incoming/notes\.txt upload 26 B in ` + dur + ` \(.*/s\) PROT P resumed 226` + sess + `$`,
		`^` + tm + ` INF alice@127\.0\.0\.1 session end \(quit\) after ` + dur + `: 3 transfers, 3\.0 MiB down, 26 B up` + sess + `$`,
		`^` + tm + ` WRN bob@127\.0\.0\.2 login failed 530 on backend mem` + sess + `$`,
		`^` + tm + ` INF 127\.0\.0\.3` + port + ` session start \(implicit\)` + sess + `$`,
		`^` + tm + ` INF carol@127\.0\.0\.3 RETR /pub/readme\.txt download 24 B in ` + dur + ` \(.*/s\) PROT P resumed 226` + sess + `$`,
		`^` + tm + ` INF backend spare \(pool default\) up after 1 good check$`,
		`^` + tm + ` DBG 127\.0\.0\.3 command PASS \*\*\*\*` + sess + `$`,
		`^` + tm + ` DBG passive session=[0-9a-f]{12} client=127\.0\.0\.3` + port + ` listener=implicit sni=localhost .* user=carol port=\d+ backend_data=passive$`,
		`^` + tm + ` INF ftpsgate stopped$`,
	} {
		if !regexp.MustCompile(`(?m)` + want).MatchString(out) {
			t.Errorf("no line matches %s", want)
		}
	}
	for _, msg := range []string{"session start", "tls established", "login", "login failed", "transfer", "session end", "backend down", "backend up", "certificate", "command"} {
		if strings.Contains(out, " "+msg+" session=") || strings.Contains(out, " "+msg+" client=") {
			t.Errorf("a %q record fell back to key=value", msg)
		}
	}
	if t.Failed() {
		t.Logf("tail output:\n%s", out)
	}
}

// TestTailRecordedLog: testdata/tail.log, recorded by TestTailLiveLog, and
// each filter, the output checked line by line.
func TestTailRecordedLog(t *testing.T) {
	t.Parallel()
	// In testdata/tail.log: alice (session de79b3f70366) from 127.0.0.1,
	// bob (a314075863d8, wrong password) from 127.0.0.2, carol
	// (8d8bfa2df1a5, implicit) from 127.0.0.3.
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{
			name: "level info and above: the debug records go, the launcher's line stays",
			args: []string{"--level", "info"},
			want: []string{
				"02:38:59 WRN certificate generated self-signed: localhost, 127.0.0.1, ::1 serial 2980cae37030a204cbb5bb65cbdfea4f until 2027-11-26",
				"02:38:59 WRN no certificate configured: serving a self-signed one; clients will warn fingerprint=49:68:67:CC:EC:F9:6F:8F:3C:19:A5:73:C6:F4:AF:50:5E:46:1E:42:CB:80:A0:6F:D4:D0:98:FD:C8:ED:69:3F",
				"02:38:59 INF ftpsgate started version=devel backends=2 passive_ports=any",
				"02:38:59 INF listening listener=explicit addr=127.0.0.1:34875",
				"02:38:59 INF listening listener=implicit addr=127.0.0.1:42525",
				"02:38:59 WRN backend spare (pool default) down after 1 failed check: dial tcp 127.0.0.1:38453: connect: connection refused",
				"02:38:59 INF 127.0.0.1:33543 session start (explicit) [session de79b3f70366]",
				"02:38:59 INF 127.0.0.1 tls established TLS 1.3 TLS_AES_128_GCM_SHA256 sni localhost new session [session de79b3f70366]",
				"02:38:59 INF alice@127.0.0.1 login on backend mem [session de79b3f70366]",
				"02:38:59 INF alice@127.0.0.1 MLSD /pub download 109 B in 1ms (89.1 KiB/s) PROT P resumed 226 [session de79b3f70366]",
				"02:38:59 INF alice@127.0.0.1 RETR /pub/file.bin download 3.0 MiB in 6ms (517.3 MiB/s) PROT P resumed 226 [session de79b3f70366]",
				"02:38:59 INF alice@127.0.0.1 STOR /incoming/notes.txt upload 26 B in 1ms (17.2 KiB/s) PROT P resumed 226 [session de79b3f70366]",
				"02:38:59 INF 127.0.0.2:52015 session start (explicit) [session a314075863d8]",
				"02:38:59 INF alice@127.0.0.1 session end (quit) after 13ms: 3 transfers, 3.0 MiB down, 26 B up [session de79b3f70366]",
				"02:38:59 INF 127.0.0.2 tls established TLS 1.3 TLS_AES_128_GCM_SHA256 sni localhost resumed [session a314075863d8]",
				"02:38:59 WRN bob@127.0.0.2 login failed 530 on backend mem [session a314075863d8]",
				"02:38:59 INF 127.0.0.3:38025 session start (implicit) [session 8d8bfa2df1a5]",
				"02:38:59 INF 127.0.0.3 tls established TLS 1.3 TLS_AES_128_GCM_SHA256 sni localhost resumed [session 8d8bfa2df1a5]",
				"02:38:59 INF 127.0.0.2 session end (quit) after 2ms: 0 transfers, 0 B down, 0 B up [session a314075863d8]",
				"02:38:59 INF carol@127.0.0.3 login on backend mem [session 8d8bfa2df1a5]",
				"02:38:59 INF carol@127.0.0.3 RETR /pub/readme.txt download 24 B in 2ms (11.9 KiB/s) PROT P resumed 226 [session 8d8bfa2df1a5]",
				"02:38:59 INF carol@127.0.0.3 session end (quit) after 4ms: 1 transfer, 24 B down, 0 B up [session 8d8bfa2df1a5]",
				"02:39:00 INF backend spare (pool default) up after 1 good check",
				"02:39:00 INF ftpsgate stopped",
				"ftpsgate: listen tcp :990: bind: address already in use",
			},
		},
		{
			name: "one session",
			args: []string{"--session", "a314075863d8"},
			want: []string{
				"02:38:59 INF 127.0.0.2:52015 session start (explicit) [session a314075863d8]",
				"02:38:59 DBG 127.0.0.2 command AUTH TLS [session a314075863d8]",
				"02:38:59 INF 127.0.0.2 tls established TLS 1.3 TLS_AES_128_GCM_SHA256 sni localhost resumed [session a314075863d8]",
				"02:38:59 DBG 127.0.0.2 command USER bob [session a314075863d8]",
				"02:38:59 DBG 127.0.0.2 command PASS **** [session a314075863d8]",
				"02:38:59 WRN bob@127.0.0.2 login failed 530 on backend mem [session a314075863d8]",
				"02:38:59 DBG 127.0.0.2 command QUIT [session a314075863d8]",
				"02:38:59 INF 127.0.0.2 session end (quit) after 2ms: 0 transfers, 0 B down, 0 B up [session a314075863d8]",
			},
		},
		{
			name: "a user whose login failed: the session's later records follow",
			args: []string{"--user", "bob"},
			want: []string{
				"02:38:59 WRN bob@127.0.0.2 login failed 530 on backend mem [session a314075863d8]",
				"02:38:59 DBG 127.0.0.2 command QUIT [session a314075863d8]",
				"02:38:59 INF 127.0.0.2 session end (quit) after 2ms: 0 transfers, 0 B down, 0 B up [session a314075863d8]",
			},
		},
		{
			name: "a user, info and above",
			args: []string{"--user", "alice", "--level", "info"},
			want: []string{
				"02:38:59 INF alice@127.0.0.1 login on backend mem [session de79b3f70366]",
				"02:38:59 INF alice@127.0.0.1 MLSD /pub download 109 B in 1ms (89.1 KiB/s) PROT P resumed 226 [session de79b3f70366]",
				"02:38:59 INF alice@127.0.0.1 RETR /pub/file.bin download 3.0 MiB in 6ms (517.3 MiB/s) PROT P resumed 226 [session de79b3f70366]",
				"02:38:59 INF alice@127.0.0.1 STOR /incoming/notes.txt upload 26 B in 1ms (17.2 KiB/s) PROT P resumed 226 [session de79b3f70366]",
				"02:38:59 INF alice@127.0.0.1 session end (quit) after 13ms: 3 transfers, 3.0 MiB down, 26 B up [session de79b3f70366]",
			},
		},
		{
			name: "a client IP",
			args: []string{"--client", "127.0.0.3", "--level", "info"},
			want: []string{
				"02:38:59 INF 127.0.0.3:38025 session start (implicit) [session 8d8bfa2df1a5]",
				"02:38:59 INF 127.0.0.3 tls established TLS 1.3 TLS_AES_128_GCM_SHA256 sni localhost resumed [session 8d8bfa2df1a5]",
				"02:38:59 INF carol@127.0.0.3 login on backend mem [session 8d8bfa2df1a5]",
				"02:38:59 INF carol@127.0.0.3 RETR /pub/readme.txt download 24 B in 2ms (11.9 KiB/s) PROT P resumed 226 [session 8d8bfa2df1a5]",
				"02:38:59 INF carol@127.0.0.3 session end (quit) after 4ms: 1 transfer, 24 B down, 0 B up [session 8d8bfa2df1a5]",
			},
		},
		{
			name: "a client network and a level",
			args: []string{"--client", "127.0.0.2/31", "--level", "warn"},
			want: []string{
				"02:38:59 WRN bob@127.0.0.2 login failed 530 on backend mem [session a314075863d8]",
			},
		},
		{
			name: "warnings: records and the launcher's line",
			args: []string{"--level", "warn"},
			want: []string{
				"02:38:59 WRN certificate generated self-signed: localhost, 127.0.0.1, ::1 serial 2980cae37030a204cbb5bb65cbdfea4f until 2027-11-26",
				"02:38:59 WRN no certificate configured: serving a self-signed one; clients will warn fingerprint=49:68:67:CC:EC:F9:6F:8F:3C:19:A5:73:C6:F4:AF:50:5E:46:1E:42:CB:80:A0:6F:D4:D0:98:FD:C8:ED:69:3F",
				"02:38:59 WRN backend spare (pool default) down after 1 failed check: dial tcp 127.0.0.1:38453: connect: connection refused",
				"02:38:59 WRN bob@127.0.0.2 login failed 530 on backend mem [session a314075863d8]",
				"ftpsgate: listen tcp :990: bind: address already in use",
			},
		},
		{
			name: "the last records",
			args: []string{"-n", "3"},
			want: []string{
				"02:39:00 INF backend spare (pool default) up after 1 good check",
				"02:39:00 INF ftpsgate stopped",
				"ftpsgate: listen tcp :990: bind: address already in use",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, errOut, err := runCLISerial(t, append(append([]string{"tail"}, tc.args...), "testdata/tail.log")...)
			if err != nil {
				t.Fatalf("%v\n%s", err, errOut)
			}
			got := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			for i := range max(len(got), len(tc.want)) {
				var g, w string
				if i < len(got) {
					g = got[i]
				}
				if i < len(tc.want) {
					w = tc.want[i]
				}
				if g != w {
					t.Errorf("line %d:\n got %q\nwant %q", i+1, g, w)
				}
			}
		})
	}
}

// TestTailForms: one record of each kind, written as the proxy writes
// them, and the line tail makes of it.
func TestTailForms(t *testing.T) {
	t.Parallel()
	const ctx = `"session":"3fa2c1d0e9b7","client":"203.0.113.7:50123","listener":"explicit"`
	for _, tc := range []struct {
		name, in, want string
	}{
		{
			"transfer, as README.md shows it",
			`{"level":"info",` + ctx + `,"sni":"ftp.example.com","tls_version":"TLS 1.3","cipher":"TLS_AES_128_GCM_SHA256","resumed":false,"backend":"mem","user":"alice","verb":"RETR","path":"/pub/file.iso","direction":"download","bytes":1073741824,"duration":9800,"prot":"P","code":226,"client_data":"passive","backend_data":"passive","bytes_per_sec":109565843.26530612,"data_resumed":true,"data_tls_version":"TLS 1.3","time":"2026-03-01T12:00:01+01:00","message":"transfer"}`,
			"12:00:01 INF alice@203.0.113.7 RETR /pub/file.iso download 1.0 GiB in 9.8s (104.5 MiB/s) PROT P resumed 226 [session 3fa2c1d0e9b7]",
		},
		{
			"failed upload in clear, long",
			`{"level":"warn",` + ctx + `,"user":"bob","verb":"STOR","path":"big file.tar","direction":"upload","bytes":5000,"duration":125000,"prot":"C","code":426,"bytes_per_sec":40,"time":"2026-03-01T12:00:01Z","message":"transfer"}`,
			"12:00:01 WRN bob@203.0.113.7 STOR big file.tar upload 4.9 KiB in 2m5s (40 B/s) PROT C 426 [session 3fa2c1d0e9b7]",
		},
		{
			"protected transfer that did not resume",
			`{"level":"info",` + ctx + `,"user":"carol","verb":"LIST","path":"","direction":"download","bytes":0,"duration":0.4,"prot":"P","code":226,"data_resumed":false,"data_tls_version":"TLS 1.2","time":"2026-03-01T12:00:01Z","message":"transfer"}`,
			"12:00:01 INF carol@203.0.113.7 LIST download 0 B in 0ms PROT P not resumed 226 [session 3fa2c1d0e9b7]",
		},
		{
			"session end with an error",
			`{"level":"warn",` + ctx + `,"user":"alice","error":"proxy: backend connection lost","reason":"backend lost","duration":61234.5,"bytes_down":1536,"bytes_up":0,"transfers":1,"time":"2026-03-01T12:00:01Z","message":"session end"}`,
			"12:00:01 WRN alice@203.0.113.7 session end (backend lost) after 1m1s: 1 transfer, 1.5 KiB down, 0 B up: proxy: backend connection lost [session 3fa2c1d0e9b7]",
		},
		{
			"login through a route",
			`{"level":"info",` + ctx + `,"backend":"partners-1","route":"partners","user":"p-acme","time":"2026-03-01T12:00:01Z","message":"login"}`,
			"12:00:01 INF p-acme@203.0.113.7 login on backend partners-1 (route partners) [session 3fa2c1d0e9b7]",
		},
		{
			"backend ejected",
			`{"level":"warn",` + ctx + `,"error":"dial tcp 10.0.0.6:21: i/o timeout","backend":"ftp2","backoff":20000,"time":"2026-03-01T12:00:01Z","message":"backend ejected"}`,
			"12:00:01 WRN 203.0.113.7 backend ftp2 ejected for 20.0s: dial tcp 10.0.0.6:21: i/o timeout [session 3fa2c1d0e9b7]",
		},
		{
			"certificate failure",
			`{"level":"error","error":"open /etc/ftpsgate/cert.pem: permission denied","source":"/etc/ftpsgate/cert.pem","event":"failed","time":"2026-03-01T12:00:01Z","message":"certificate"}`,
			"12:00:01 ERR certificate failed /etc/ftpsgate/cert.pem: open /etc/ftpsgate/cert.pem: permission denied",
		},
		{
			"unknown record: fields in order, quoted when needed",
			`{"level":"error","pool":"default","tried":2,"ok":true,"text":"","note":"a \"quoted\" word","time":"2026-03-01T12:00:01Z","message":"no backend reachable"}`,
			`12:00:01 ERR no backend reachable pool=default tried=2 ok=true text="" note="a \"quoted\" word"`,
		},
		{
			"unix time, no level",
			`{"message":"hello","time":1772366401}`,
			time.Unix(1772366401, 0).Format(time.TimeOnly) + " ??? hello", // local time: the number has no zone
		},
		{
			"no time at all",
			`{"level":"debug","message":"hello"}`,
			"--:--:-- DBG hello",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, ok := parseRecord([]byte(tc.in))
			if !ok {
				t.Fatalf("not parsed: %s", tc.in)
			}
			if got := (&recordPrinter{}).format(rec); got != tc.want {
				t.Errorf("\n got %q\nwant %q", got, tc.want)
			}
			colored := (&recordPrinter{color: true}).format(rec)
			if !strings.Contains(colored, "\x1b[") {
				t.Errorf("no colour in %q", colored)
			}
			if plain := regexp.MustCompile("\x1b\\[[0-9;]*m").ReplaceAllString(colored, ""); plain != (&recordPrinter{}).format(rec) {
				t.Errorf("colour changes the text:\n%q\n%q", plain, (&recordPrinter{}).format(rec))
			}
		})
	}
}

func TestParseRecord(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		``, `   `, `plain text`, `[1,2]`, `{"a":1`, `{"a":1} trailing`, `{"a":}`, `{1:2}`, `"string"`,
	} {
		if _, ok := parseRecord([]byte(in)); ok {
			t.Errorf("parseRecord(%q) accepted", in)
		}
	}
	rec, ok := parseRecord([]byte(` {"a":"x","b":{"c":[1,2]},"a":"y"} `))
	if !ok {
		t.Fatal("valid record refused")
	}
	if got := rec.str("a"); got != "y" {
		t.Errorf(`repeated key: got %q, want the last, "y"`, got)
	}
	if got := rec.str("b"); got != `{"c":[1,2]}` {
		t.Errorf("object field: got %q", got)
	}
}

func TestFormatBytesAndMillis(t *testing.T) {
	t.Parallel()
	for n, want := range map[float64]string{
		0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 1 << 20: "1.0 MiB",
		3 << 30: "3.0 GiB", 1 << 40: "1.0 TiB", 1 << 62: "4.0 EiB",
	} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%v) = %q, want %q", n, got, want)
		}
	}
	for ms, want := range map[float64]string{
		0: "0ms", 0.4: "0ms", 7.6: "8ms", 999: "999ms", 1000: "1.0s", 9800: "9.8s", 59949: "59.9s", 61234.5: "1m1s", 3723000: "1h2m3s",
	} {
		if got := formatMillis(ms); got != want {
			t.Errorf("formatMillis(%v) = %q, want %q", ms, got, want)
		}
	}
}

func TestTailFlagErrors(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"tail", "--client", "somewhere", "testdata/tail.log"},
		{"tail", "--level", "loud", "testdata/tail.log"},
		{"tail", "testdata/tail.log", "other.log"},
		{"tail", "testdata/no-such.log"},
	} {
		if _, _, err := runCLISerial(t, args...); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}

// TestTailReadsAStream: a stream (stdin) is read to its end; its last line
// may lack a newline.
func TestTailReadsAStream(t *testing.T) {
	t.Parallel()
	filter, _ := newRecordFilter("", "", "", "")
	var out bytes.Buffer
	tl := &tailer{out: &out, filter: filter, lines: -1}
	in := `{"level":"info","time":"2026-03-01T12:00:01Z","message":"one"}` + "\n\nnot json\n" + `{"level":"info","time":"2026-03-01T12:00:02Z","message":"two"}`
	if err := tl.read(iotest.OneByteReader(strings.NewReader(in))); err != nil {
		t.Fatal(err)
	}
	if want := "12:00:01 INF one\nnot json\n12:00:02 INF two\n"; out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
}

// TestTailFollow: tail -f on a file that grows (a line even arriving in
// two writes), is rotated (renamed, the writer finishing in the old file,
// a new file created at the same path) and then truncated in place.
func TestTailFollow(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "ftpsgate.log")
	rec := func(msg string) string {
		return `{"level":"info","session":"3fa2c1d0e9b7","time":"2026-03-01T12:00:01Z","message":"` + msg + `"}` + "\n"
	}
	w, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { w.Close() }()
	write := func(s string) {
		t.Helper()
		if _, err := w.WriteString(s); err != nil {
			t.Fatal(err)
		}
	}
	write(rec("one") + rec("two"))

	filter, _ := newRecordFilter("3fa2c1d0e9b7", "", "", "")
	out := &syncBuffer{}
	tl := &tailer{out: out, filter: filter, follow: true, lines: 1, poll: 10 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tl.file(ctx, path) }()
	defer func() {
		cancel()
		<-done
	}()
	var want []string
	expect := func(msgs ...string) {
		t.Helper()
		for _, m := range msgs {
			want = append(want, "12:00:01 INF "+m+" session=3fa2c1d0e9b7")
		}
		deadline := time.Now().Add(10 * time.Second)
		for out.String() != strings.Join(want, "\n")+"\n" {
			if time.Now().After(deadline) {
				t.Fatalf("output:\n%s\nwant:\n%s", out.String(), strings.Join(want, "\n"))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	expect("two") // -n 1: the last record before following

	write(rec("three"))
	expect("three")
	r := rec("four")
	write(r[:20])
	time.Sleep(50 * time.Millisecond) // several polls see half a line
	write(r[20:])
	expect("four")

	// Rotation: the writer's file is renamed away and it writes once more
	// there before it reopens the path.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	write(rec("five"))
	w.Close()
	if w, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); err != nil {
		t.Fatal(err)
	}
	write(rec("six") + rec("seven"))
	expect("five", "six", "seven")

	// Truncation in place (copytruncate): read again from the start.
	if err := w.Truncate(0); err != nil {
		t.Fatal(err)
	}
	write(rec("eight"))
	expect("eight")

	cancel()
	if err := <-done; err != nil {
		t.Errorf("tail -f ended with %v", err)
	}
	done <- nil // for the deferred wait
}

// TestTailEscapesClientText: values a client chose (a user name, a path,
// an SNI, a reason or error echoing them) reach the operator's terminal
// escaped, in every form, in the generic key=value path, nested in
// arrays, and in lines that are not JSON.
func TestTailEscapesClientText(t *testing.T) {
	t.Parallel()
	const evil = `x\u001b]0;pwned\u0007\u001b[2J\u202egpj.exe\u2028`
	const shown = `x\x1b]0;pwned\a\x1b[2J\u202egpj.exe\u2028`
	const ctx = `"session":"3fa2c1d0e9b7","client":"203.0.113.7:50123"`
	in := strings.Join([]string{
		`{"level":"warn",` + ctx + `,"user":"` + evil + `","code":530,"backend":"mem","time":"2026-03-01T12:00:01Z","message":"login failed"}`,
		`{"level":"info",` + ctx + `,"user":"` + evil + `","reason":"` + evil + `","error":"` + evil + `","duration":1,"transfers":0,"bytes_down":0,"bytes_up":0,"time":"2026-03-01T12:00:01Z","message":"session end"}`,
		`{"level":"info",` + ctx + `,"user":"u","verb":"RETR","path":"` + evil + `","direction":"download","bytes":1,"code":226,"time":"2026-03-01T12:00:01Z","message":"transfer"}`,
		`{"level":"info",` + ctx + `,"sni":"` + evil + `","tls_version":"TLS 1.3","cipher":"C","time":"2026-03-01T12:00:01Z","message":"tls established"}`,
		`{"level":"debug",` + ctx + `,"command":"USER ` + evil + `","time":"2026-03-01T12:00:01Z","message":"command"}`,
		`{"level":"warn","event":"failed","names":["` + evil + `"],"time":"2026-03-01T12:00:01Z","message":"certificate"}`,
		`{"level":"warn","` + evil + `":{"k":["` + evil + `"]},"time":"2026-03-01T12:00:01Z","message":"` + evil + `"}`,
		"not json \x1b[31m\xff\u202e",
	}, "\n")
	filter, _ := newRecordFilter("", "", "", "")
	var out bytes.Buffer
	tl := &tailer{out: &out, filter: filter, lines: -1, color: true}
	if err := tl.read(strings.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	got := regexp.MustCompile("\x1b\\[[0-9;]*m").ReplaceAllString(out.String(), "") // our own colours
	if !utf8.ValidString(got) {
		t.Errorf("output is not UTF-8: %q", got)
	}
	for _, r := range got {
		if r != '\n' && !unicode.IsGraphic(r) {
			t.Errorf("%U reached the terminal in:\n%s", r, got)
		}
	}
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	for i, want := range []string{
		"12:00:01 WRN " + shown + "@203.0.113.7 login failed 530 on backend mem [session 3fa2c1d0e9b7]",
		"12:00:01 INF " + shown + "@203.0.113.7 session end (" + shown + ") after 1ms: 0 transfers, 0 B down, 0 B up: " + shown + " [session 3fa2c1d0e9b7]",
		"12:00:01 INF u@203.0.113.7 RETR " + shown + " download 1 B 226 [session 3fa2c1d0e9b7]",
		"12:00:01 INF 203.0.113.7 tls established TLS 1.3 C sni " + shown + " [session 3fa2c1d0e9b7]",
		"12:00:01 DBG 203.0.113.7 command USER " + shown + " [session 3fa2c1d0e9b7]",
		"12:00:01 WRN certificate failed: " + shown,
		"12:00:01 WRN " + shown + " " + shown + `={"k":["` + strings.ReplaceAll(shown, `\`, `\\`) + `"]}`,
		`not json \x1b[31m\xff\u202e`,
	} {
		if i >= len(lines) || lines[i] != want {
			var g string
			if i < len(lines) {
				g = lines[i]
			}
			t.Errorf("line %d:\n got %q\nwant %q", i+1, g, want)
		}
	}
}

// TestTailClientMappedPrefix: an IPv4-mapped network means the IPv4
// network under it, its bits counted from the mapped part.
func TestTailClientMappedPrefix(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		flag, client string
		want         bool
	}{
		{"::ffff:192.0.2.0/120", "192.0.2.77:5000", true},
		{"::ffff:192.0.2.0/120", "192.0.3.1:5000", false},
		{"::ffff:192.0.2.0/120", "[::ffff:192.0.2.9]:5000", true},
		{"::ffff:192.0.2.7", "192.0.2.7:1", true},
		{"::ffff:192.0.2.7", "192.0.2.8:1", false},
		{"192.0.2.0/24", "192.0.2.200:1", true},
		{"2001:db8::/32", "[2001:db8::1]:1", true},
	} {
		f, err := newRecordFilter("", "", tc.flag, "")
		if err != nil {
			t.Fatalf("--client %s: %v", tc.flag, err)
		}
		rec, _ := parseRecord([]byte(`{"client":"` + tc.client + `","message":"session start"}`))
		if got := f.match(rec); got != tc.want {
			t.Errorf("--client %s, client %s: match %v, want %v", tc.flag, tc.client, got, tc.want)
		}
	}
}

// TestTailUserForgetsEndedSessions: --user remembers a user's sessions
// only until they end, so following a busy log does not grow without end.
func TestTailUserForgetsEndedSessions(t *testing.T) {
	t.Parallel()
	f, _ := newRecordFilter("", "bob", "", "")
	for i := range 100 {
		s := strconv.Itoa(i)
		for _, line := range []string{
			`{"session":"` + s + `","user":"bob","message":"login failed"}`,
			`{"session":"` + s + `","message":"command"}`,
			`{"session":"` + s + `","message":"session end"}`,
		} {
			rec, _ := parseRecord([]byte(line))
			if !f.match(rec) {
				t.Fatalf("%s: left out", line)
			}
		}
	}
	if len(f.userSessions) != 0 {
		t.Errorf("%d ended sessions still remembered", len(f.userSessions))
	}
}

// TestTailLastRecordsOfALargeFile: -n N reads the end of a large file,
// not all of it (the filter sees only the records near the end), and
// still prints the last N records whole.
func TestTailLastRecordsOfALargeFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "ftpsgate.log")
	var b strings.Builder
	const records = 20000 // about 1.6 MB
	for i := range records {
		fmt.Fprintf(&b, `{"level":"info","session":"s%d","user":"alice","time":"2026-03-01T12:00:01Z","message":"r%d"}`+"\n", i, i)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, follow := range []bool{false, true} {
		filter, _ := newRecordFilter("", "alice", "", "")
		out := &syncBuffer{}
		tl := &tailer{out: out, filter: filter, follow: follow, lines: 3, poll: 10 * time.Millisecond}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- tl.file(ctx, path) }()
		want := ""
		for i := records - 3; i < records; i++ {
			want += fmt.Sprintf("12:00:01 INF r%d session=s%d user=alice\n", i, i)
		}
		deadline := time.Now().Add(10 * time.Second)
		for out.String() != want && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if out.String() != want {
			t.Errorf("follow %v: got\n%s\nwant\n%s", follow, out.String(), want)
		}
		if n := len(filter.userSessions); n > records/4 {
			t.Errorf("follow %v: %d of %d records read for the last 3", follow, n, records)
		}
	}
}
