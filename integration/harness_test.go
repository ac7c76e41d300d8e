package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binary is the ftpsgate executable under test, built once by TestMain
// (or given as FTPSGATE_BIN).
var binary string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	// The tests may have put a socket on /dev/log for pure-ftpd's log.
	defer syslogSink.close()
	if b := os.Getenv("FTPSGATE_BIN"); b != "" {
		binary = b
		return checkLogs(m.Run())
	}
	dir, err := os.MkdirTemp("", "ftpsgate-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "ftpsgate")
	build := exec.Command("go", "build", "-race", "-o", binary, "../cmd/ftpsgate")
	if os.Getenv("FTPSGATE_NORACE") != "" {
		build = exec.Command("go", "build", "-o", binary, "../cmd/ftpsgate")
	}
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building ftpsgate:", err)
		return 1
	}
	return checkLogs(m.Run())
}

// needTool returns the path of a tool, skipping the test when it is missing
// (failing it under CI=true).
func needTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed (CI=true: a missing tool is a failure; run integration/setup.sh)", name)
		}
		t.Skipf("%s is not installed; run integration/setup.sh", name)
	}
	return p
}

// proxyProc is a running ftpsgate serve.
type proxyProc struct {
	cmd      *exec.Cmd
	logPath  string
	explicit string // host:port
	implicit string
	done     chan error
}

// startProxy runs "ftpsgate serve" with args plus loopback listeners on
// ephemeral ports, waits for it to listen, and stops it with the test. The
// proxy's log is printed when the test fails.
func startProxy(t testing.TB, args ...string) *proxyProc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "ftpsgate.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	full := append([]string{"serve", "--listen", "127.0.0.1:0", "--implicit-listen", "127.0.0.1:0", "--log-level", "debug"}, args...)
	cmd := exec.Command(binary, full...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// A test binary killed by -timeout runs no cleanup: the proxy must not
	// outlive it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proxyProc{cmd: cmd, logPath: logPath, done: make(chan error, 1)}
	go func() {
		p.done <- cmd.Wait()
		logFile.Close()
	}()
	t.Cleanup(func() {
		p.stop(t)
		suiteLog.ScanFile(logPath) // before t.TempDir goes
		if t.Failed() {
			t.Logf("ftpsgate %s\n--- proxy log ---\n%s", strings.Join(full, " "), p.log())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for p.explicit == "" || p.implicit == "" {
		select {
		case err := <-p.done:
			t.Fatalf("ftpsgate exited before listening: %v\n%s", err, p.log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("ftpsgate did not listen in time\n%s", p.log())
		}
		for _, rec := range p.records("listening") {
			switch rec["listener"] {
			case "explicit":
				p.explicit, _ = rec["addr"].(string)
			case "implicit":
				p.implicit, _ = rec["addr"].(string)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p
}

// stop ends the proxy with SIGTERM, as an init system would, and checks it
// exits cleanly.
func (p *proxyProc) stop(t testing.TB) {
	if p.cmd.ProcessState != nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("ftpsgate exited with %v after SIGTERM", err)
		}
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		t.Errorf("ftpsgate did not exit within 15s of SIGTERM")
		<-p.done
	}
}

func (p *proxyProc) log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// records returns the proxy's JSON log records with message msg.
func (p *proxyProc) records(msg string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(p.log()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["message"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// run runs a client command with a timeout and returns its combined output.
func run(t testing.TB, timeout time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // see startProxy
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s timed out after %v: %w", name, timeout, err)
	}
	return out.String(), err
}

// writeRandomFile writes n pseudo-random bytes to a new file and returns its
// path and SHA-256.
func writeRandomFile(t testing.TB, dir string, n int64) (string, string) {
	t.Helper()
	path := filepath.Join(dir, fmt.Sprintf("random-%d.bin", n))
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, h), newPRNG(uint64(n)), n); err != nil {
		t.Fatal(err)
	}
	return path, hex.EncodeToString(h.Sum(nil))
}

func fileSHA256(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil))
}

func bytesSHA256(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// prng is a fast deterministic byte stream (xorshift64*): test files of
// hundreds of MiB without waiting for crypto/rand.
type prng struct {
	mu sync.Mutex
	s  uint64
}

func newPRNG(seed uint64) *prng { return &prng{s: seed*0x9E3779B97F4A7C15 | 1} }

func (r *prng) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := 0; i < len(p); i += 8 {
		r.s ^= r.s >> 12
		r.s ^= r.s << 25
		r.s ^= r.s >> 27
		v := r.s * 2685821657736338717
		for j := 0; j < 8 && i+j < len(p); j++ {
			p[i+j] = byte(v >> (8 * j))
		}
	}
	return len(p), nil
}
