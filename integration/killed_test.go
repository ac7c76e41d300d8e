package integration

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net/textproto"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
)

// TestBackendKilled: vsftpd killed with SIGKILL (the whole service: its
// listener and its session processes, as an OOM kill or systemctl kill
// does) in the middle of a download through the proxy. The client is told
// the transfer failed (421: the backend's control connection is gone, so
// the session is), not left hanging or given a 226; and the proxy then
// serves a new session through the other backend of the pool, failing over
// from the dead one if the policy picks it.
func TestBackendKilled(t *testing.T) {
	first := startBackend(t, vsftpd)
	second := startBackend(t, vsftpd)
	data := make([]byte, 64<<20)
	newPRNG(7).Read(data)
	for _, b := range []*backend{first, second} {
		if err := os.WriteFile(filepath.Join(b.home, "big.bin"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := startProxy(t, "--backend", first.addr, "--backend", second.addr)
	dial := func() *ftp.ServerConn {
		t.Helper()
		c, err := ftp.Dial(p.explicit, ftp.DialWithTimeout(20*time.Second),
			ftp.DialWithExplicitTLS(&tls.Config{InsecureSkipVerify: true, ServerName: "localhost", ClientSessionCache: tls.NewLRUClientSessionCache(4)}))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Login(testUser, testPassword); err != nil {
			t.Fatal(err)
		}
		return c
	}

	c := dial()
	defer c.Quit()
	r, err := c.Retr("big.bin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(r, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	logins := p.records("login")
	if len(logins) != 1 {
		t.Fatalf("%d login records, want 1", len(logins))
	}
	victim, survivor := first, second
	if logins[0]["backend"] == second.addr {
		victim, survivor = second, first
	}
	// vsftpd's session processes leave its process group: each is found
	// by its ancestry and killed with the master.
	pids := append(descendants(victim.cmd.Process.Pid), victim.cmd.Process.Pid)
	if len(pids) < 2 {
		t.Fatalf("vsftpd has no session process: %v", pids)
	}
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	<-victim.done
	victim.done <- nil // for the cleanup's stop

	done := make(chan error, 1)
	go func() {
		io.Copy(io.Discard, r)
		done <- r.Close()
	}()
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("the client was left hanging after the backend was killed")
	}
	var te *textproto.Error
	if !errors.As(err, &te) || (te.Code != ftp.StatusNotAvailable && te.Code != ftp.StatusTransfertAborted) {
		t.Fatalf("the transfer ended with %v, want 421 or 426", err)
	}
	t.Logf("the client got: %v", err)
	waitRecords(t, p, "backend connection lost", 1)

	// A new session: on the survivor, directly or after failing over.
	c2 := dial()
	defer c2.Quit()
	r2, err := c2.Retr("big.bin")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r2)
	if err != nil {
		t.Fatal(err)
	}
	if err := r2.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("downloaded %d bytes after the kill, not the file", len(got))
	}
	logins = p.records("login")
	if last := logins[len(logins)-1]; last["backend"] != survivor.addr {
		t.Errorf("the new session logged in on %v, want the survivor %s", last["backend"], survivor.addr)
	}
}

// descendants returns the pids of every process below pid, read from
// /proc.
func descendants(pid int) []int {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after
		// its closing parenthesis.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(fields[1]); err == nil {
			children[ppid] = append(children[ppid], child)
		}
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}
