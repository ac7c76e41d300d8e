package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/ftpctl"
	"github.com/ftpsgate/ftpsgate/ftpctl/ftptest"
)

// TestPassivePortSharing holds 500 sessions from 100 client addresses with
// a passive port each pending at once on a range of 10 ports, then lets
// every one transfer its own file.
func TestPassivePortSharing(t *testing.T) {
	const (
		clients  = 100
		perIP    = 5
		sessions = clients * perIP
	)
	files := make([][]byte, sessions)
	h := newHarness(t, func(c *Config) {
		c.PlainAllowed = true
		c.PassivePorts = PortRange{First: 31710, Last: 31719}
		c.PassivePortSharing = true
	}, func(b *ftptest.Server) {
		for i := range files {
			files[i] = bytes.Repeat([]byte(fmt.Sprintf("file %d;", i)), 1000+i)
			b.FS.WriteFile(fmt.Sprintf("/f%d", i), files[i])
		}
	})

	pending := make(chan struct{}, sessions)
	release := make(chan struct{})
	errs := make(chan error, sessions)
	var wg sync.WaitGroup
	for i := range sessions {
		src := fmt.Sprintf("127.0.0.%d", 1+i%clients)
		wg.Go(func() { errs <- sharedSession(h.explicit(), src, i, files[i], pending, release) })
	}
	for range sessions {
		select {
		case <-pending:
		case err := <-errs:
			close(release)
			wg.Wait()
			t.Fatalf("before every session had its port: %v", err)
		case <-time.After(2 * time.Minute):
			t.Fatal("sessions did not all get a passive port")
		}
	}
	if n := h.srv.ports.inUseCount(); n > 10 {
		t.Errorf("%d ports in use for %d pending sessions, want at most the 10 of the range", n, sessions)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	waitFor(t, "every shared port closed", func() bool { return h.srv.ports.inUseCount() == 0 })
}

// sharedSession logs in from src, asks for a passive port, reports it is
// pending, and once released connects and fetches file i.
func sharedSession(addr, src string, i int, want []byte, pending chan<- struct{}, release <-chan struct{}) error {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 30 * time.Second}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(3 * time.Minute))
	r := ftpctl.NewReader(bufio.NewReader(conn), 0)
	step := func(line string, code ftpctl.Code) (ftpctl.Reply, error) {
		if line != "" {
			if _, err := io.WriteString(conn, line+"\r\n"); err != nil {
				return ftpctl.Reply{}, err
			}
		}
		rep, err := r.ReadReply()
		if err == nil && rep.Code != code {
			err = fmt.Errorf("session %d from %s: %q got %d %s, want %d", i, src, line, rep.Code, rep.Text(), code)
		}
		return rep, err
	}
	for _, s := range []struct {
		line string
		code ftpctl.Code
	}{{"", 220}, {"USER alice", 331}, {"PASS s3cret-pw", 230}, {"TYPE I", 200}} {
		if _, err := step(s.line, s.code); err != nil {
			return err
		}
	}
	rep, err := step("EPSV", 229)
	if err != nil {
		return err
	}
	port, err := ftpctl.ParseEPSV(rep.Text())
	if err != nil {
		return err
	}
	pending <- struct{}{}
	<-release
	data, err := d.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
	if err != nil {
		return fmt.Errorf("session %d from %s: data: %w", i, src, err)
	}
	defer data.Close()
	if _, err := step(fmt.Sprintf("RETR /f%d", i), 150); err != nil {
		return err
	}
	got, err := io.ReadAll(data)
	if err != nil {
		return err
	}
	if _, err := step("", 226); err != nil {
		return err
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("session %d from %s: got %d bytes, want file %d's %d", i, src, len(got), i, len(want))
	}
	_, err = step("QUIT", 221)
	return err
}

// TestSharedPortTheft: on a shared port, a connection from an address no
// session waits for is refused, and the rightful client's transfer works.
func TestSharedPortTheft(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.PlainAllowed = true
		c.PassivePorts = PortRange{First: 31720, Last: 31720}
		c.PassivePortSharing = true
	}, func(b *ftptest.Server) { b.FS.WriteFile("/f", []byte("mine")) })
	rc := h.rawFrom(h.explicit(), "127.0.0.1")
	rc.expect(220)
	rc.cmd("USER alice", 331)
	rc.cmd("PASS s3cret-pw", 230)
	port := rc.epsv()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port)))

	thief, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	thief.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := thief.Read(make([]byte, 1)); err == nil {
		t.Fatalf("the thief read %d bytes", n)
	}
	thief.Close()

	data, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer data.Close()
	rc.cmd("RETR /f", 150)
	got, _ := io.ReadAll(data)
	rc.expect(226)
	if string(got) != "mine" {
		t.Fatalf("got %q", got)
	}
	if n := len(h.logs.records("data connection from another address refused")); n != 1 {
		t.Errorf("%d refusal records, want 1", n)
	}
}
