// Package redistest runs a real redis-server on a loopback port for a test,
// like net/http/httptest does for HTTP servers: the affinity store's tests
// and the proxy's fleet tests share it.
//
//	srv := redistest.Start(t) // skipped without redis-server, failed under CI=true
//	store, err := persist.OpenRedis(srv.URL(), "")
//
// Linux only: Pdeathsig makes sure no redis-server outlives a killed test
// binary.

//go:build linux

package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Server is a real redis-server on a loopback port, for one test.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	port int

	mu     sync.Mutex    // guards cmd and exited
	cmd    *exec.Cmd     // nil while stopped
	exited chan struct{} // closed when cmd has been waited for
}

// Start starts a redis-server without persistence on a free loopback
// port, and stops it when the test ends. Without redis-server (Debian
// package redis-server) the test is skipped, or failed under CI=true.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if _, serr := os.Stat("/usr/bin/redis-server"); serr != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("redis-server is not installed (CI=true: a missing tool is a failure; apt-get install redis-server)")
			}
			t.Skip("redis-server is not installed (apt-get install redis-server)")
		}
		bin = "/usr/bin/redis-server"
	}
	r := &Server{t: t, bin: bin, dir: t.TempDir()}
	t.Cleanup(r.Stop)
	// The free port may be taken again before redis-server binds it.
	for try := 0; ; try++ {
		r.port = FreePort(t)
		err := r.start()
		if err == nil {
			return r
		}
		if try == 2 {
			t.Fatal(err)
		}
	}
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// URL returns the server's URL, database 0.
func (r *Server) URL() string {
	return fmt.Sprintf("redis://127.0.0.1:%d/0", r.port)
}

// start runs redis-server on r.port and waits until it answers PING.
func (r *Server) start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		return errors.New("redis-server already running")
	}
	logPath := filepath.Join(r.dir, "redis.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(r.bin,
		"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", r.dir,
		"--daemonize", "no", "--protected-mode", "yes")
	cmd.Stdout, cmd.Stderr = logf, logf
	// Cleanup kills it; should the test binary die first (a -timeout
	// panic), the kernel does.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	r.cmd, r.exited = cmd, exited
	deadline := time.Now().Add(10 * time.Second)
	for pingRedis(r.port) != nil {
		select {
		case <-exited:
			r.cmd = nil
			log, _ := os.ReadFile(logPath)
			return fmt.Errorf("redis-server on port %d exited at start; its log:\n%s", r.port, log)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logPath)
			return fmt.Errorf("redis-server on port %d did not answer PING within 10s; its log:\n%s", r.port, log)
		}
	}
	return nil
}

// Restart starts redis-server again on the same port.
func (r *Server) Restart() {
	r.t.Helper()
	if err := r.start(); err != nil {
		r.t.Fatal(err)
	}
}

// Stop kills redis-server, as a crash would, and reaps it.
func (r *Server) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	r.cmd.Process.Kill() // SIGKILL works on a stopped process too
	<-r.exited
	r.cmd = nil
}

// Signal sends sig to the running redis-server.
func (r *Server) Signal(sig syscall.Signal) {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		r.t.Fatal("redis-server not running")
	}
	if err := r.cmd.Process.Signal(sig); err != nil {
		r.t.Fatal(err)
	}
}

// pingRedis sends one PING to the redis on port and expects +PONG.
func pingRedis(port int) error {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}
