package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/ftpsgate/ftpsgate/ftpctl/ftptest"
)

// loadSettingsFile builds the settings of a configuration written to a
// temporary file.
func loadSettingsFile(t *testing.T, toml string) settings {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ftpsgate.toml")
	writeFile(t, path, toml)
	fc, lines, err := loadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := fc.build(path, lines)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestLogFileDefaults: without [log] file the log goes to standard output;
// with it, rotation keeps its documented defaults.
func TestLogFileDefaults(t *testing.T) {
	t.Parallel()
	base := "[[backend]]\naddress = \"127.0.0.1:2121\"\n"
	if st := loadSettingsFile(t, base); st.logFile != nil || st.drainTimeout() != 30*time.Second {
		t.Errorf("no [log] file: logFile %v, drain %v; want stdout and 30s", st.logFile, st.drainTimeout())
	}
	st := loadSettingsFile(t, base+"[timeouts]\ndrain = \"2s\"\n[log]\nfile = \"/var/log/x.log\"\n")
	if lf := st.logFile; lf == nil || lf.Filename != "/var/log/x.log" || lf.MaxSize != 100 || lf.MaxBackups != 10 || lf.MaxAge != 0 || lf.Compress {
		t.Errorf("defaults: %+v", lf)
	}
	if st.drainTimeout() != 2*time.Second {
		t.Errorf("drain %v, want 2s", st.drainTimeout())
	}

	path := filepath.Join(t.TempDir(), "bad.toml")
	writeFile(t, path, base+"[timeouts]\ndrain = \"0s\"\n[log]\nmax_backups = -1\n")
	fc, lines, err := loadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = fc.build(path, lines)
	for _, key := range []string{"timeouts.drain", "log.max_backups"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("build = %v, want an error naming %s", err, key)
		}
	}
}

// TestLogFileRotates: records go to the file, which is rotated at
// max_size_mb, and no more than max_backups old files are kept.
func TestLogFileRotates(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "ftpsgate.log")
	st := loadSettingsFile(t, fmt.Sprintf("[[backend]]\naddress = \"127.0.0.1:2121\"\n"+
		"[log]\nfile = %q\nmax_size_mb = 1\nmax_backups = 2\n", file))
	defer st.logFile.Close()
	log, err := newLogger(st.logFile, "info", "json")
	if err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("x", 1000)
	for i := range 4000 { // about 4 MB: three rotations at 1 MB
		log.Info().Int("n", i).Str("pad", pad).Msg("filler")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) == 0 || len(b) > 1<<20 {
		t.Errorf("current file holds %d bytes, want some and at most 1 MiB", len(b))
	}
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	var last struct{ N int }
	if err := json.Unmarshal(lines[len(lines)-1], &last); err != nil || last.N != 3999 {
		t.Errorf("last record %q: %v", lines[len(lines)-1], err)
	}
	// Old files are removed in lumberjack's background goroutine.
	deadline := time.Now().Add(10 * time.Second)
	for {
		old, _ := filepath.Glob(filepath.Join(dir, "ftpsgate-*.log"))
		if len(old) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rotated files: %q, want 2", old)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestServeDrainsOnSIGTERM runs `ftpsgate serve` in-process with its log in
// a file, sends the process SIGTERM in the middle of a download, and checks
// that the download completes intact with 226, the session then gets 421,
// and serve returns without error.
func TestServeDrainsOnSIGTERM(t *testing.T) {
	t.Parallel()
	want := bytes.Repeat([]byte("ftpsgate drain "), 1<<19) // 7.5 MiB
	mem := ftptest.NewUnstartedServer()
	mem.Users = map[string]string{"alice": "alice-pw"}
	mem.FS.WriteFile("/big.bin", want)
	mem.Start()
	t.Cleanup(mem.Close)

	dir := t.TempDir()
	logFile := filepath.Join(dir, "ftpsgate.log")
	cfg := filepath.Join(dir, "ftpsgate.toml")
	writeFile(t, cfg, fmt.Sprintf(`[listen]
explicit = "127.0.0.1:0"
[[backend]]
address = %q
[timeouts]
drain = "20s"
[log]
file = %q
`, mem.Addr(), logFile))

	done := make(chan error, 1)
	go func() {
		_, _, err := runCLISerial(t, "serve", "--config", cfg)
		done <- err
	}()
	readLog := func() string { b, _ := os.ReadFile(logFile); return string(b) }
	waitFileLog := func(msg string) map[string]any {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			for _, l := range strings.Split(readLog(), "\n") {
				var rec map[string]any
				if json.Unmarshal([]byte(l), &rec) == nil && rec["message"] == msg {
					return rec
				}
			}
			select {
			case err := <-done:
				t.Fatalf("serve ended (%v) before %q:\n%s", err, msg, readLog())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the log file:\n%s", msg, readLog())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	addr, _ := waitFileLog("listening")["addr"].(string)
	waitFileLog("ftpsgate started") // the signal handler is in place

	client := &tls.Config{InsecureSkipVerify: true, ServerName: "localhost", ClientSessionCache: tls.NewLRUClientSessionCache(8)}
	c, err := ftp.Dial(addr, ftp.DialWithTimeout(10*time.Second), ftp.DialWithExplicitTLS(client))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Quit()
	if err := c.Login("alice", "alice-pw"); err != nil {
		t.Fatal(err)
	}
	r, err := c.Retr("/big.bin")
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 64<<10)
	if _, err := io.ReadFull(r, head); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	draining := waitFileLog("draining")
	if draining["sessions"] != 1.0 || draining["busy"] != 1.0 {
		t.Errorf("draining record: %v", draining)
	}
	rest, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if got := append(head, rest...); !bytes.Equal(got, want) {
		t.Fatalf("downloaded %d bytes, not the file's %d", len(got), len(want))
	}
	if err := r.Close(); err != nil {
		t.Fatalf("transfer's final reply: %v", err)
	}
	if err := c.NoOp(); err == nil || !strings.Contains(err.Error(), "421") {
		t.Errorf("command after the transfer: %v, want 421", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not return after the drain")
	}
	suiteLog.ScanLines([]byte(readLog()))
	if drained := waitFileLog("drained"); drained["cut"] != 0.0 {
		t.Errorf("drained record: %v", drained)
	}
}
