package ftptest

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/ftpsgate/ftpsgate/ftpctl"
)

const testTimeout = 10 * time.Second

// newTestServer starts a server after configure has set its fields, and
// closes it when the test ends, checking that no session is left.
func newTestServer(t *testing.T, configure func(*Server)) *Server {
	t.Helper()
	srv := NewUnstartedServer()
	if configure != nil {
		configure(srv)
	}
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		if n := srv.ActiveSessions(); n != 0 {
			t.Errorf("ActiveSessions after Close = %d, want 0", n)
		}
	})
	return srv
}

// dialClient returns a jlaffaye/ftp client logged in as test/test.
func dialClient(t *testing.T, srv *Server, opts ...ftp.DialOption) *ftp.ServerConn {
	t.Helper()
	opts = append([]ftp.DialOption{ftp.DialWithTimeout(testTimeout)}, opts...)
	c, err := ftp.Dial(srv.Addr(), opts...)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Quit() })
	if err := c.Login("test", "test"); err != nil {
		t.Fatalf("Login: %v", err)
	}
	return c
}

// ctl is a raw control connection.
type ctl struct {
	t        *testing.T
	conn     net.Conn
	r        *ftpctl.Reader
	greeting ftpctl.Reply
}

func dialCtl(t *testing.T, srv *Server) *ctl {
	t.Helper()
	conn, err := net.DialTimeout("tcp", srv.Addr(), testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(2 * testTimeout))
	c := &ctl{t: t, conn: conn, r: ftpctl.NewReader(bufio.NewReader(conn), 0)}
	c.greeting = c.expect(ftpctl.CodeReady)
	return c
}

func (c *ctl) send(lines ...string) {
	c.t.Helper()
	var b []byte
	for _, l := range lines {
		b = append(b, l...)
		b = append(b, '\r', '\n')
	}
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatalf("send %q: %v", lines, err)
	}
}

func (c *ctl) expect(code ftpctl.Code) ftpctl.Reply {
	c.t.Helper()
	r, err := c.r.ReadReply()
	if err != nil {
		c.t.Fatalf("reading reply (want %d): %v", code, err)
	}
	if r.Code != code {
		c.t.Fatalf("reply %q, want code %d", r.String(), code)
	}
	return r
}

func (c *ctl) cmd(line string, code ftpctl.Code) ftpctl.Reply {
	c.t.Helper()
	c.send(line)
	return c.expect(code)
}

func (c *ctl) login() {
	c.t.Helper()
	c.cmd("USER test", ftpctl.CodeNeedPassword)
	c.cmd("PASS test", ftpctl.CodeLoggedIn)
}

// pasv sends PASV and returns the port of the 227 reply.
func (c *ctl) pasv() uint16 {
	c.t.Helper()
	r := c.cmd("PASV", ftpctl.CodeEnteringPassive)
	ap, err := ftpctl.ParsePASV(r.Text())
	if err != nil {
		c.t.Fatal(err)
	}
	return ap.Port()
}

// dialData connects to the passive port from the address from.
func dialData(t *testing.T, port uint16, from string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: testTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	conn, err := d.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(2 * testTimeout))
	return conn
}

// randomBytes returns n bytes of test data: a random 64 KiB block repeated,
// each 4 KiB stamped with its offset so that misplaced data shows.
func randomBytes(n int) []byte {
	block := make([]byte, 64<<10)
	rand.NewChaCha8([32]byte{1}).Read(block)
	b := bytes.Repeat(block, n/len(block)+1)[:n]
	for off := 0; off+8 <= n; off += 4 << 10 {
		binary.BigEndian.PutUint64(b[off:], uint64(off))
	}
	return b
}

// TestMain fails the run if any goroutine of a server outlived its Close.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := leakedGoroutines(); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines outlived their server:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

func leakedGoroutines() string {
	buf := make([]byte, 1<<20)
	var leaked []string
	for range 50 {
		leaked = leaked[:0]
		n := runtime.Stack(buf, true)
		for _, g := range strings.Split(string(buf[:n]), "\n\n") {
			if strings.Contains(g, "ftptest.(*Server)") || strings.Contains(g, "ftptest.(*session)") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 {
			return ""
		}
		time.Sleep(10 * time.Millisecond) // one may be returning right now
	}
	return strings.Join(leaked, "\n\n")
}

func TestClientRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts []ftp.DialOption
	}{
		{"EPSV", nil},
		{"PASV", []ftp.DialOption{ftp.DialWithDisabledEPSV(true)}},
		{"LIST", []ftp.DialOption{ftp.DialWithDisabledMLSD(true)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newTestServer(t, nil)
			c := dialClient(t, srv, tc.opts...)

			if err := c.MakeDir("/pub"); err != nil {
				t.Fatalf("MakeDir: %v", err)
			}
			if err := c.ChangeDir("pub"); err != nil {
				t.Fatalf("ChangeDir: %v", err)
			}
			if dir, err := c.CurrentDir(); err != nil || dir != "/pub" {
				t.Fatalf("CurrentDir = %q, %v", dir, err)
			}
			data := append(randomBytes(100_000), "\r\n\n\r\x00\xff"...)
			if err := c.Stor("a.bin", bytes.NewReader(data)); err != nil {
				t.Fatalf("Stor: %v", err)
			}
			if got, ok := srv.FS.ReadFile("/pub/a.bin"); !ok || !bytes.Equal(got, data) {
				t.Fatalf("stored %d bytes, want %d byte-exact", len(got), len(data))
			}
			if err := c.Append("a.bin", strings.NewReader("tail")); err != nil {
				t.Fatalf("Append: %v", err)
			}
			data = append(data, "tail"...)
			if err := c.StorFrom("a.bin", bytes.NewReader(data[50_000:]), 50_000); err != nil {
				t.Fatalf("StorFrom: %v", err)
			}
			if got, _ := srv.FS.ReadFile("/pub/a.bin"); !bytes.Equal(got, data) {
				t.Fatalf("after REST+STOR: %d bytes, want %d byte-exact", len(got), len(data))
			}

			if n, err := c.FileSize("a.bin"); err != nil || n != int64(len(data)) {
				t.Fatalf("FileSize = %d, %v; want %d", n, err, len(data))
			}
			mod := time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)
			srv.FS.SetModTime("/pub/a.bin", mod)
			if got, err := c.GetTime("a.bin"); err != nil || !got.Equal(mod) {
				t.Fatalf("GetTime = %v, %v; want %v", got, err, mod)
			}

			r, err := c.Retr("a.bin")
			if err != nil {
				t.Fatalf("Retr: %v", err)
			}
			got, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Close(); err != nil {
				t.Fatalf("Retr Close: %v", err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("Retr: %d bytes, want %d byte-exact", len(got), len(data))
			}
			r, err = c.RetrFrom("a.bin", 1234)
			if err != nil {
				t.Fatalf("RetrFrom: %v", err)
			}
			got, _ = io.ReadAll(r)
			if err := r.Close(); err != nil {
				t.Fatalf("RetrFrom Close: %v", err)
			}
			if !bytes.Equal(got, data[1234:]) {
				t.Fatalf("RetrFrom: %d bytes, want %d", len(got), len(data)-1234)
			}

			if err := c.MakeDir("sub"); err != nil {
				t.Fatal(err)
			}
			entries, err := c.List("")
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			var names []string
			for _, e := range entries {
				names = append(names, e.Name)
				if e.Name == "a.bin" && (e.Type != ftp.EntryTypeFile || e.Size != uint64(len(data))) {
					t.Errorf("entry %+v", e)
				}
				if e.Name == "sub" && e.Type != ftp.EntryTypeFolder {
					t.Errorf("entry %+v", e)
				}
			}
			if !slices.Equal(names, []string{"a.bin", "sub"}) {
				t.Fatalf("List names = %q", names)
			}
			if names, err := c.NameList("/pub"); err != nil || !slices.Equal(names, []string{"a.bin", "sub"}) {
				t.Fatalf("NameList = %q, %v", names, err)
			}

			if err := c.Rename("a.bin", "sub/b.bin"); err != nil {
				t.Fatalf("Rename: %v", err)
			}
			if _, ok := srv.FS.ReadFile("/pub/sub/b.bin"); !ok {
				t.Fatal("renamed file missing")
			}
			if err := c.RemoveDir("sub"); err == nil {
				t.Fatal("RemoveDir of a non-empty directory succeeded")
			}
			if err := c.Delete("sub/b.bin"); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			if err := c.Delete("sub/b.bin"); err == nil {
				t.Fatal("second Delete succeeded")
			}
			if err := c.RemoveDir("sub"); err != nil {
				t.Fatalf("RemoveDir: %v", err)
			}
			if err := c.ChangeDirToParent(); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Retr("missing"); err == nil {
				t.Fatal("Retr of a missing file succeeded")
			}
			if err := c.NoOp(); err != nil {
				t.Fatalf("NoOp after a failed Retr: %v", err)
			}
		})
	}
}

func TestLargeFile(t *testing.T) {
	t.Parallel()
	size := 100 << 20
	if testing.Short() {
		size = 8 << 20
	}
	srv := newTestServer(t, nil)
	data := randomBytes(size)
	c := dialClient(t, srv)
	start := time.Now()
	if err := c.Stor("big", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	r, err := c.Retr("big")
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, r)
	if err != nil || n != int64(size) {
		t.Fatalf("Retr: %d bytes, %v", n, err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := srv.FS.ReadFile("big"); !bytes.Equal(got, data) {
		t.Fatal("upload not byte-exact")
	}
	t.Logf("%d MiB up and down in %v", size>>20, time.Since(start))
}

func TestMultilineGreeting(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, func(s *Server) {
		s.Greeting = []string{"Welcome", "220 lines that look final are indented", "ready"}
	})
	c := dialCtl(t, srv)
	if got := c.greeting.Lines; len(got) != 3 || got[0] != "Welcome" || got[2] != "ready" {
		t.Fatalf("greeting lines %q", got)
	}
	c.cmd("QUIT", ftpctl.CodeClosing)

	def := dialCtl(t, newTestServer(t, nil))
	if def.greeting.Multiline() || def.greeting.Text() != "ftptest ready" {
		t.Fatalf("default greeting %q", def.greeting.String())
	}
}

func TestPASVAddress(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		addr netip.Addr
		want netip.Addr
	}{
		{"default is the control local address", netip.Addr{}, netip.MustParseAddr("127.0.0.1")},
		{"configured", netip.MustParseAddr("10.255.255.1"), netip.MustParseAddr("10.255.255.1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newTestServer(t, func(s *Server) { s.PASVAddress = tc.addr })
			srv.FS.WriteFile("/f", []byte("data"))
			c := dialCtl(t, srv)
			c.login()
			r := c.cmd("PASV", ftpctl.CodeEnteringPassive)
			ap, err := ftpctl.ParsePASV(r.Text())
			if err != nil {
				t.Fatal(err)
			}
			if ap.Addr() != tc.want || ap.Port() == 0 {
				t.Fatalf("227 names %v, want %v", ap, tc.want)
			}
			// The listener is on the control connection's IP whatever 227 says.
			data := dialData(t, ap.Port(), "127.0.0.1")
			c.cmd("RETR f", ftpctl.CodeFileStatusOK)
			if got, err := io.ReadAll(data); err != nil || string(got) != "data" {
				t.Fatalf("data %q, %v", got, err)
			}
			c.expect(ftpctl.CodeTransferComplete)
		})
	}
}

func TestEPSV(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, nil)
	srv.FS.WriteFile("/f", []byte("data"))
	c := dialCtl(t, srv)
	c.login()
	for _, arg := range []string{"", " 1"} {
		r := c.cmd("EPSV"+arg, ftpctl.CodeEnteringExtPassive)
		port, err := ftpctl.ParseEPSV(r.Text())
		if err != nil {
			t.Fatal(err)
		}
		data := dialData(t, port, "127.0.0.1")
		c.cmd("RETR f", ftpctl.CodeFileStatusOK)
		if got, _ := io.ReadAll(data); string(got) != "data" {
			t.Fatalf("data %q", got)
		}
		c.expect(ftpctl.CodeTransferComplete)
	}
	c.cmd("EPSV 2", ftpctl.CodeNetProtoNotSupp)
	c.cmd("EPSV 7", ftpctl.CodeArgSyntaxError)
	c.cmd("EPSV ALL", ftpctl.CodeOK)
	c.cmd("PASV", 503)
	c.cmd("PORT 127,0,0,1,40,0", 503)
	c.cmd("EPSV", ftpctl.CodeEnteringExtPassive)
}

func TestDisableEPSV(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, func(s *Server) { s.DisableEPSV = true })
	c := dialCtl(t, srv)
	feat := c.cmd("FEAT", ftpctl.CodeSystemStatus)
	feats := ftpctl.ParseFeat(feat)
	if slices.Contains(feats, "EPSV") || !slices.Contains(feats, "PASV") {
		t.Fatalf("FEAT %q", feats)
	}
	c.login()
	c.cmd("EPSV", ftpctl.CodeNotImplemented)
	c.cmd("EPSV ALL", ftpctl.CodeNotImplemented)
	c.pasv()

	// A client that tries EPSV first falls back to PASV.
	srv.FS.WriteFile("/f", []byte("x"))
	client := dialClient(t, srv)
	if n, err := client.FileSize("f"); err != nil || n != 1 {
		t.Fatal(n, err)
	}
	if _, err := client.List("/"); err != nil {
		t.Fatalf("List without EPSV: %v", err)
	}
}

// TestDisablePassiveAndActive: a backend that does only one data mode
// refuses the other's commands with 502 and leaves them out of FEAT.
func TestDisablePassiveAndActive(t *testing.T) {
	t.Parallel()
	activeOnly := newTestServer(t, func(s *Server) { s.DisablePassive = true })
	c := dialCtl(t, activeOnly)
	feats := ftpctl.ParseFeat(c.cmd("FEAT", ftpctl.CodeSystemStatus))
	if slices.Contains(feats, "PASV") || slices.Contains(feats, "EPSV") || !slices.Contains(feats, "EPRT") {
		t.Errorf("FEAT without passive mode: %q", feats)
	}
	c.login()
	c.cmd("PASV", ftpctl.CodeNotImplemented)
	c.cmd("EPSV", ftpctl.CodeNotImplemented)
	c.cmd("PORT 127,0,0,1,40,0", ftpctl.CodeOK)

	passiveOnly := newTestServer(t, func(s *Server) { s.DisableActive = true })
	c = dialCtl(t, passiveOnly)
	feats = ftpctl.ParseFeat(c.cmd("FEAT", ftpctl.CodeSystemStatus))
	if slices.Contains(feats, "EPRT") || !slices.Contains(feats, "PASV") || !slices.Contains(feats, "EPSV") {
		t.Errorf("FEAT without active mode: %q", feats)
	}
	c.login()
	c.cmd("PORT 127,0,0,1,40,0", ftpctl.CodeNotImplemented)
	c.cmd("EPRT |1|127.0.0.1|10240|", ftpctl.CodeNotImplemented)
	c.pasv()
}

func TestAbortMidTransfer(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, nil)
	srv.FS.WriteFile("/big", randomBytes(64<<20))
	c := dialCtl(t, srv)
	c.login()
	data := dialData(t, c.pasv(), "127.0.0.1")
	c.cmd("RETR big", ftpctl.CodeFileStatusOK)
	if _, err := io.ReadFull(data, make([]byte, 1<<16)); err != nil {
		t.Fatal(err)
	}
	// Telnet IP and Synch before ABOR, as RFC 959 section 4.1.3 asks clients to send.
	c.send("\xff\xf4\xff\xf2ABOR")
	c.expect(ftpctl.CodeTransferAborted)
	c.expect(ftpctl.CodeTransferComplete)
	if _, err := io.Copy(io.Discard, data); err != nil && !isReset(err) {
		t.Fatalf("data connection after ABOR: %v", err)
	}
	c.cmd("NOOP", ftpctl.CodeOK)
	c.cmd("ABOR", ftpctl.CodeTransferComplete) // nothing to abort
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op)
}

func TestAbortUpload(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, nil)
	c := dialCtl(t, srv)
	c.login()
	data := dialData(t, c.pasv(), "127.0.0.1")
	c.cmd("STOR up", ftpctl.CodeFileStatusOK)
	if _, err := data.Write([]byte("partial")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	c.send("ABOR")
	c.expect(ftpctl.CodeTransferAborted)
	c.expect(ftpctl.CodeTransferComplete)
	// What arrived before ABOR is kept, like vsftpd; under load that may be
	// less than was sent.
	if got, ok := srv.FS.ReadFile("up"); !ok || !strings.HasPrefix("partial", string(got)) {
		t.Fatalf("partial upload %q, %v", got, ok)
	}
	// The file is there, but the server knows the upload did not complete.
	if got, want := srv.Transfers(), []Transfer{{Verb: "STOR", Arg: "up", Code: ftpctl.CodeTransferAborted}}; !slices.Equal(got, want) {
		t.Fatalf("Transfers() = %v, want %v", got, want)
	}
}

// TestTransfersRecorded: a clean end is recorded as 226, a reset data
// connection as 426, before the final reply is sent.
func TestTransfersRecorded(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, nil)
	c := dialCtl(t, srv)
	c.login()
	data := dialData(t, c.pasv(), "127.0.0.1")
	c.cmd("STOR whole", ftpctl.CodeFileStatusOK)
	data.Write([]byte("all of it"))
	data.Close()
	c.expect(ftpctl.CodeTransferComplete)
	data = dialData(t, c.pasv(), "127.0.0.1")
	c.cmd("STOR cut", ftpctl.CodeFileStatusOK)
	data.Write([]byte("some of it"))
	data.(*net.TCPConn).SetLinger(0) // a reset, not a clean end
	data.Close()
	c.expect(ftpctl.CodeTransferAborted)
	want := []Transfer{{"STOR", "whole", ftpctl.CodeTransferComplete}, {"STOR", "cut", ftpctl.CodeTransferAborted}}
	if got := srv.Transfers(); !slices.Equal(got, want) {
		t.Fatalf("Transfers() = %v, want %v", got, want)
	}
}

func TestAbortBeforeDataConnection(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, nil)
	srv.FS.WriteFile("/f", []byte("x"))
	c := dialCtl(t, srv)
	c.login()
	c.pasv()
	c.send("RETR f")
	c.send("ABOR")
	c.expect(ftpctl.CodeTransferAborted)
	c.expect(ftpctl.CodeTransferComplete)
	c.cmd("NOOP", ftpctl.CodeOK)
}

func TestDataConnectionFromOtherIPRefused(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, nil)
	srv.FS.WriteFile("/f", []byte("secret"))
	c := dialCtl(t, srv)
	c.login()
	port := c.pasv()

	thief := dialData(t, port, "127.0.0.2")
	if got, err := io.ReadAll(thief); len(got) != 0 || (err != nil && !isReset(err)) {
		t.Fatalf("connection from 127.0.0.2 read %q, %v; want it closed", got, err)
	}
	if n := srv.RefusedDataConns(); n != 1 {
		t.Fatalf("RefusedDataConns = %d, want 1", n)
	}
	data := dialData(t, port, "127.0.0.1")
	c.cmd("RETR f", ftpctl.CodeFileStatusOK)
	if got, _ := io.ReadAll(data); string(got) != "secret" {
		t.Fatalf("data %q", got)
	}
	c.expect(ftpctl.CodeTransferComplete)
}

func TestEarlyDataConnection(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, nil)
	srv.FS.WriteFile("/f", []byte("early"))
	c := dialCtl(t, srv)
	c.login()
	data := dialData(t, c.pasv(), "127.0.0.1")
	// The connection is accepted and held while other commands run.
	time.Sleep(50 * time.Millisecond)
	c.cmd("TYPE I", ftpctl.CodeOK)
	c.cmd("REST 1", ftpctl.CodePending)
	c.cmd("RETR f", ftpctl.CodeFileStatusOK)
	if got, _ := io.ReadAll(data); string(got) != "arly" {
		t.Fatalf("data %q", got)
	}
	c.expect(ftpctl.CodeTransferComplete)
}

func TestDataTimeout(t *testing.T) {
	t.Parallel()
	for _, before := range []bool{false, true} {
		t.Run(fmt.Sprintf("ReplyBeforeData=%v", before), func(t *testing.T) {
			t.Parallel()
			srv := newTestServer(t, func(s *Server) {
				s.DataTimeout = 100 * time.Millisecond
				s.ReplyBeforeData = before
			})
			srv.FS.WriteFile("/f", []byte("x"))
			c := dialCtl(t, srv)
			c.login()
			c.pasv()
			c.send("RETR f")
			if before {
				c.expect(ftpctl.CodeFileStatusOK)
			}
			c.expect(ftpctl.CodeCannotOpenData)
			c.cmd("RETR f", ftpctl.CodeCannotOpenData) // the PASV was used up
		})
	}
}

func TestActiveMode(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, nil)
	srv.FS.WriteFile("/f", []byte("active data"))
	c := dialCtl(t, srv)
	c.login()
	for _, verb := range []string{"PORT", "EPRT"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ap := ln.Addr().(*net.TCPAddr).AddrPort()
		arg := ftpctl.FormatPORT(ap)
		if verb == "EPRT" {
			arg = ftpctl.FormatEPRT(ap)
		}
		c.cmd(verb+" "+arg, ftpctl.CodeOK)
		c.send("RETR f")
		data, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		c.expect(ftpctl.CodeFileStatusOK)
		if got, _ := io.ReadAll(data); string(got) != "active data" {
			t.Fatalf("%s: data %q", verb, got)
		}
		data.Close()
		c.expect(ftpctl.CodeTransferComplete)
	}
	c.cmd("PORT 10,1,2,3,40,1", ftpctl.CodeSyntaxError)    // third party: bounce
	c.cmd("PORT 127,0,0,1,0,21", ftpctl.CodeSyntaxError)   // privileged port
	c.cmd("EPRT |2|::1|4000|", ftpctl.CodeNetProtoNotSupp) // IPv6 on an IPv4 session
	c.cmd("EPRT |3|x|4000|", ftpctl.CodeNetProtoNotSupp)
	c.cmd("PORT 1,2,3", ftpctl.CodeArgSyntaxError)
	c.cmd("EPRT garbage", ftpctl.CodeArgSyntaxError)

	// Nobody listens: 425 once the dial fails.
	dead, release, err := RefusingAddr()
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	ap := netip.MustParseAddrPort(dead)
	c.cmd("PORT "+ftpctl.FormatPORT(ap), ftpctl.CodeOK)
	c.cmd("RETR f", ftpctl.CodeCannotOpenData)
}

func TestLockstep(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, nil)
	srv.FS.WriteFile("/f", randomBytes(4<<20))
	c := dialCtl(t, srv)
	c.login()
	data := dialData(t, c.pasv(), "127.0.0.1")
	c.send("RETR f", "NOOP", "PWD")
	c.expect(ftpctl.CodeFileStatusOK)
	if n, err := io.Copy(io.Discard, data); err != nil || n != 4<<20 {
		t.Fatal(n, err)
	}
	c.expect(ftpctl.CodeTransferComplete)
	c.expect(ftpctl.CodeOK)
	c.expect(257)
}

func TestCommandsRecorded(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, nil)
	c := dialCtl(t, srv)
	c.login()
	c.cmd("pwd", 257)
	c.cmd("NOPE arg", ftpctl.CodeNotImplemented)
	c.cmd("QUIT", ftpctl.CodeClosing)
	want := []string{"USER test", "PASS test", "pwd", "NOPE arg", "QUIT"}
	if got := srv.Commands(); !slices.Equal(got, want) {
		t.Fatalf("Commands() = %q, want %q", got, want)
	}
}

func TestSessionsAndClose(t *testing.T) {
	t.Parallel()
	srv := NewServer()
	t.Cleanup(srv.Close)
	var conns []*ctl
	for range 3 {
		c := dialCtl(t, srv)
		c.login()
		conns = append(conns, c)
	}
	if n := srv.ActiveSessions(); n != 3 {
		t.Fatalf("ActiveSessions = %d, want 3", n)
	}
	conns[0].cmd("QUIT", ftpctl.CodeClosing)
	waitSessions(t, srv, 2)

	// A transfer stuck on a client that does not read must not hold Close up.
	srv.FS.WriteFile("/big", randomBytes(32<<20))
	dialData(t, conns[1].pasv(), "127.0.0.1")
	conns[1].cmd("RETR big", ftpctl.CodeFileStatusOK)
	conns[2].pasv() // a listener waiting for a connection

	done := make(chan struct{})
	go func() { srv.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(testTimeout):
		t.Fatal("Close hangs")
	}
	if n := srv.ActiveSessions(); n != 0 {
		t.Fatalf("ActiveSessions after Close = %d", n)
	}
	if _, err := net.Dial("tcp", srv.Addr()); err == nil {
		t.Fatal("listener still open after Close")
	}
	srv.Close() // twice is fine
}

func waitSessions(t *testing.T, srv *Server, want int) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for srv.ActiveSessions() != want {
		if time.Now().After(deadline) {
			t.Fatalf("ActiveSessions = %d, want %d", srv.ActiveSessions(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCloseClientConnections(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, nil)
	c := dialCtl(t, srv)
	c.login()
	srv.CloseClientConnections()
	if n := srv.ActiveSessions(); n != 0 {
		t.Fatalf("ActiveSessions = %d", n)
	}
	if _, err := c.r.ReadReply(); err == nil {
		t.Fatal("control connection still open")
	}
	// The server still accepts.
	dialCtl(t, srv).login()
}

func TestLoginRequired(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, func(s *Server) { s.Users = map[string]string{"alice": "secret"} })
	c := dialCtl(t, srv)
	for _, tc := range []struct {
		line string
		want ftpctl.Code
	}{
		{"PWD", ftpctl.CodeNotLoggedIn},
		{"LIST", ftpctl.CodeNotLoggedIn},
		{"PASV", ftpctl.CodeNotLoggedIn},
		{"RETR f", ftpctl.CodeNotLoggedIn},
		{"ABOR", ftpctl.CodeNotLoggedIn},
		{"XYZZY", ftpctl.CodeNotImplemented},
		{"AUTH TLS", ftpctl.CodeNotImplemented},
		{"SYST", 215},
		{"NOOP", ftpctl.CodeOK},
		{"HELP", 214},
		{"FEAT", ftpctl.CodeSystemStatus},
		{"OPTS UTF8 ON", ftpctl.CodeOK},
		{"PASS secret", 503},
		{"USER test", ftpctl.CodeNeedPassword},
		{"PASS test", ftpctl.CodeNotLoggedIn},
		{"PWD", ftpctl.CodeNotLoggedIn},
		{"USER alice", ftpctl.CodeNeedPassword},
		{"PASS wrong", ftpctl.CodeNotLoggedIn},
		{"USER alice", ftpctl.CodeNeedPassword},
		{"PASS secret", ftpctl.CodeLoggedIn},
		{"PWD", 257},
		{"USER bob", ftpctl.CodeNotLoggedIn},
	} {
		c.cmd(tc.line, tc.want)
	}
}

func TestReplies(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, nil)
	srv.FS.WriteFile(`/d/with "quotes"/f.txt`, []byte("12345"))
	srv.FS.SetModTime(`/d/with "quotes"/f.txt`, time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC))
	c := dialCtl(t, srv)
	c.login()
	for _, tc := range []struct {
		line string
		want ftpctl.Code
		text string // first line's text, if not ""
	}{
		{"SYST", 215, "UNIX Type: L8"},
		{"TYPE A", ftpctl.CodeOK, ""},
		{"TYPE A N", ftpctl.CodeOK, ""},
		{"TYPE L 8", ftpctl.CodeOK, ""},
		{"TYPE I", ftpctl.CodeOK, ""},
		{"TYPE E", ftpctl.CodeParamNotImpl, ""},
		{"TYPE Q", ftpctl.CodeArgSyntaxError, ""},
		{"TYPE", ftpctl.CodeArgSyntaxError, ""},
		{"MODE S", ftpctl.CodeOK, ""},
		{"MODE B", ftpctl.CodeParamNotImpl, ""},
		{"MODE X", ftpctl.CodeArgSyntaxError, ""},
		{"STRU F", ftpctl.CodeOK, ""},
		{"STRU R", ftpctl.CodeParamNotImpl, ""},
		{"PWD", 257, `"/" is the current directory`},
		{"CWD /nope", ftpctl.CodeFileUnavailable, ""},
		{`CWD d/with "quotes"`, ftpctl.CodeFileActionOK, ""},
		{"XPWD", 257, `"/d/with ""quotes""" is the current directory`},
		{"SIZE f.txt", ftpctl.CodeFileStatus, "5"},
		{"SIZE /d", ftpctl.CodeFileUnavailable, ""},
		{"SIZE nope", ftpctl.CodeFileUnavailable, ""},
		{"MDTM f.txt", ftpctl.CodeFileStatus, "20200102030405"},
		{"MDTM nope", ftpctl.CodeFileUnavailable, ""},
		{"CDUP", ftpctl.CodeFileActionOK, ""},
		{"XCUP", ftpctl.CodeFileActionOK, ""},
		{"CDUP", ftpctl.CodeFileActionOK, ""},
		{"PWD", 257, `"/" is the current directory`},
		{"RNTO x", 503, ""},
		{"RNFR nope", ftpctl.CodeFileUnavailable, ""},
		{"RNFR d", ftpctl.CodePending, ""},
		{"NOOP", ftpctl.CodeOK, ""},
		{"RNTO e", 503, ""}, // RNTO must follow RNFR directly
		{"RMD d", ftpctl.CodeFileUnavailable, ""},
		{"MKD d", ftpctl.CodeFileUnavailable, ""},
		{"XMKD /new", 257, `"/new" created`},
		{"XRMD /new", ftpctl.CodeFileActionOK, ""},
		{"MKD /a/b", ftpctl.CodeFileUnavailable, ""},
		{"DELE d", ftpctl.CodeFileUnavailable, ""},
		{"REST abc", ftpctl.CodeArgSyntaxError, ""},
		{"REST -1", ftpctl.CodeArgSyntaxError, ""},
		{"REST 0", ftpctl.CodePending, ""},
		{"RETR f", ftpctl.CodeCannotOpenData, "Use PORT or PASV first."},
		{"OPTS UTF8 ON", ftpctl.CodeOK, ""},
		{"OPTS NOPE", ftpctl.CodeArgSyntaxError, ""},
		{"ALLO 100", ftpctl.CodeNotNeeded, ""},
		{"SITE CHMOD 777 x", ftpctl.CodeNotImplemented, ""},
		{"1234", ftpctl.CodeSyntaxError, ""},
		{"", ftpctl.CodeSyntaxError, ""},
		{"\x00\xff\xfe garbage", ftpctl.CodeSyntaxError, ""},
		{"CWD", ftpctl.CodeArgSyntaxError, ""},
		{"HELP RETR", 214, ""},
		{strings.Repeat("A", ftpctl.DefaultMaxLine+10), ftpctl.CodeSyntaxError, "Command line too long."},
		{"NOOP", ftpctl.CodeOK, ""},
	} {
		r := c.cmd(tc.line, tc.want)
		if tc.text != "" && r.Text() != tc.text {
			t.Errorf("%.20q: text %q, want %q", tc.line, r.Text(), tc.text)
		}
	}

	r := c.cmd(`MLST /d/with "quotes"/f.txt`, ftpctl.CodeFileActionOK)
	want := ` type=file;size=5;modify=20200102030405; /d/with "quotes"/f.txt`
	if len(r.Lines) != 3 || r.Lines[1] != want {
		t.Errorf("MLST reply %q, want middle line %q", r.Lines, want)
	}
	r = c.cmd("OPTS MLST type;size;", ftpctl.CodeOK)
	if r.Text() != "MLST OPTS type;size;" {
		t.Errorf("OPTS MLST: %q", r.Text())
	}
	r = c.cmd("FEAT", ftpctl.CodeSystemStatus)
	if !slices.Contains(ftpctl.ParseFeat(r), "MLST type*;size*;modify;") {
		t.Errorf("FEAT after OPTS MLST: %q", r.Lines)
	}
	r = c.cmd("STAT", ftpctl.CodeSystemStatus)
	if !r.Multiline() {
		t.Errorf("STAT: %q", r.Lines)
	}
	r = c.cmd("STAT /d", ftpctl.CodeFileStatus)
	if len(r.Lines) != 3 || !strings.HasPrefix(r.Lines[1], "drwxr-xr-x") {
		t.Errorf("STAT /d: %q", r.Lines)
	}
	r = c.cmd("HELP", 214)
	if !r.Multiline() || !strings.Contains(r.String(), "RETR") {
		t.Errorf("HELP: %q", r.Lines)
	}
	c.cmd("QUIT", ftpctl.CodeClosing)
	if _, err := c.r.ReadLine(); err == nil {
		t.Error("connection open after QUIT")
	}
}

// transferText runs a passive transfer command and returns what came over
// the data connection.
func transferText(t *testing.T, c *ctl, line string) string {
	t.Helper()
	data := dialData(t, c.pasv(), "127.0.0.1")
	c.cmd(line, ftpctl.CodeFileStatusOK)
	got, err := io.ReadAll(data)
	if err != nil {
		t.Fatal(err)
	}
	c.expect(ftpctl.CodeTransferComplete)
	return string(got)
}

func TestListings(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, nil)
	mod := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, p := range []string{"/dir/a.txt", "/dir/b.bin", "/dir/sub/c"} {
		srv.FS.WriteFile(p, []byte("hello"))
		srv.FS.SetModTime(p, mod)
	}
	srv.FS.SetModTime("/dir/sub", mod)
	c := dialCtl(t, srv)
	c.login()

	for _, tc := range []struct{ line, want string }{
		{"NLST /dir", "a.txt\r\nb.bin\r\nsub\r\n"},
		{"NLST -a /dir", "a.txt\r\nb.bin\r\nsub\r\n"},
		{"NLST /dir/*.txt", "a.txt\r\n"},
		{"MLSD /dir", "type=file;size=5;modify=20200102030405; a.txt\r\n" +
			"type=file;size=5;modify=20200102030405; b.bin\r\n" +
			"type=dir;modify=20200102030405; sub\r\n"},
		{"LIST -la /dir/a.txt", "-rw-r--r--    1 ftp      ftp                 5 Jan 02  2020 /dir/a.txt\r\n"},
		{"LIST /dir/sub", "-rw-r--r--    1 ftp      ftp                 5 Jan 02  2020 c\r\n"},
		{"LIST /dir/none*", ""},
	} {
		if got := transferText(t, c, tc.line); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.line, got, tc.want)
		}
	}
	c.cmd("CWD /dir", ftpctl.CodeFileActionOK)
	if got := transferText(t, c, "LIST -a"); strings.Count(got, "\r\n") != 3 || !strings.HasPrefix(got, "-rw-r--r--") {
		t.Errorf("LIST -a: %q", got)
	}
	c.pasv()
	c.cmd("MLSD a.txt", ftpctl.CodeArgSyntaxError)
	c.pasv()
	c.cmd("LIST /nope", ftpctl.CodeFileUnavailable)
}

func TestGarbageDoesNotPanic(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, nil)
	r := rand.New(rand.NewPCG(1, 2))
	verbs := append(slices.Collect(func(yield func(string) bool) {
		for v := range commands {
			if !yield(v) {
				return
			}
		}
	}), "ABOR", "\xff\xf4")
	slices.Sort(verbs)
	c := dialCtl(t, srv)
	c.login()
	for i := range 2000 {
		arg := make([]byte, r.IntN(20))
		for j := range arg {
			arg[j] = byte(r.IntN(256))
			if arg[j] == '\n' || arg[j] == '\r' {
				arg[j] = '|'
			}
		}
		verb := verbs[r.IntN(len(verbs))]
		if verb == "QUIT" || verb == "RETR" || verb == "STOR" || verb == "APPE" || verb == "STOU" ||
			verb == "LIST" || verb == "NLST" || verb == "MLSD" {
			continue // those end the session or wait for a data connection
		}
		c.send(verb + " " + string(arg))
		if _, err := c.r.ReadReply(); err != nil {
			t.Fatalf("command %d %q: %v", i, verb+" "+string(arg), err)
		}
	}
	c.cmd("NOOP", ftpctl.CodeOK)
}

func TestFS(t *testing.T) {
	t.Parallel()
	fs := NewFS()
	fs.WriteFile("a/b/c", []byte("x"))
	if got, ok := fs.ReadFile("/a/b/c"); !ok || string(got) != "x" {
		t.Fatal(got, ok)
	}
	if _, ok := fs.ReadFile("/a/b"); ok {
		t.Fatal("ReadFile of a directory")
	}
	fs.Mkdir("/a/e/f")
	if err := fs.rename("/a", "/a/e/x"); err == nil {
		t.Fatal("moved a directory into itself")
	}
	if err := fs.rename("/a", "/z"); err != nil {
		t.Fatal(err)
	}
	if _, ok := fs.ReadFile("/z/b/c"); !ok {
		t.Fatal("rename lost children")
	}
	if n, _ := fs.list("/"); len(n) != 1 || n[0].name != "z" {
		t.Fatalf("root after rename: %v", n)
	}
	if err := fs.rmdir("/z/e"); !errors.Is(err, errNotEmpty) {
		t.Fatal(err)
	}
	if !fs.Remove("/z") || fs.Remove("/z") {
		t.Fatal("Remove")
	}
	var zero FS
	zero.WriteFile("/x", []byte("y"))
	if n, err := zero.list("/"); err != nil || len(n) != 1 {
		t.Fatal(n, err)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("WriteFile below a file did not panic")
		}
	}()
	zero.WriteFile("/x/y", nil)
}

// TestPassivePortRange: with PassivePortMin and PassivePortMax, passive
// listeners take the ports of the range in turn.
func TestPassivePortRange(t *testing.T) {
	t.Parallel()
	lo := freePorts(t, 3)
	srv := newTestServer(t, func(s *Server) { s.PassivePortMin, s.PassivePortMax = lo, lo+2 })
	srv.FS.WriteFile("/f", []byte("data"))
	c := dialCtl(t, srv)
	c.login()
	var got []uint16
	for range 4 {
		got = append(got, c.pasv()) // each PASV closes the previous listener
	}
	if want := []uint16{lo, lo + 1, lo + 2, lo}; !slices.Equal(got, want) {
		t.Fatalf("ports %v, want %v", got, want)
	}
	data := dialData(t, got[3], "127.0.0.1")
	c.cmd("RETR f", ftpctl.CodeFileStatusOK)
	if b, _ := io.ReadAll(data); string(b) != "data" {
		t.Fatalf("data %q", b)
	}
	c.expect(ftpctl.CodeTransferComplete)
}

// freePorts returns the first of n consecutive loopback ports that are
// free now.
func freePorts(t *testing.T, n int) uint16 {
	t.Helper()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lo := uint16(ln.Addr().(*net.TCPAddr).Port)
		ln.Close()
		ok := lo < 65535-uint16(n)
		for i := 0; ok && i < n; i++ {
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(lo)+i)))
			if ok = err == nil; ok {
				l.Close()
			}
		}
		if ok {
			return lo
		}
	}
	t.Fatal("no free port range")
	return 0
}

// TestDiscardUploads: the upload is read whole and answered 226, and the
// file is left empty.
func TestDiscardUploads(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, func(s *Server) { s.DiscardUploads = true })
	c := dialCtl(t, srv)
	c.login()
	data := dialData(t, c.pasv(), "127.0.0.1")
	c.cmd("STOR big", ftpctl.CodeFileStatusOK)
	if _, err := data.Write(bytes.Repeat([]byte("x"), 1<<20)); err != nil {
		t.Fatal(err)
	}
	data.Close()
	c.expect(ftpctl.CodeTransferComplete)
	if got, ok := srv.FS.ReadFile("/big"); !ok || len(got) != 0 {
		t.Fatalf("stored %d bytes (exists %v), want an empty file", len(got), ok)
	}
}
