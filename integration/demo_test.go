package integration

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDemo runs "ftpsgate demo" as a newcomer would and pastes the curl and
// lftp commands it prints, each of which must succeed.
func TestDemo(t *testing.T) {
	needTool(t, "curl")
	needTool(t, "lftp")
	cmd := exec.Command(binary, "demo", "--listen", "127.0.0.1:0", "--implicit-listen", "127.0.0.1:0",
		"--log-format", "json", "--log-level", "debug")
	// The demo logs on stderr: to a file, scanned for its password at the end.
	logPath := filepath.Join(t.TempDir(), "demo.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd.Stderr = logFile
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		suiteLog.ScanFile(logPath)
	}()
	var commands []string
	sc := bufio.NewScanner(out)
	deadline := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
	defer deadline.Stop()
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "curl ") || strings.HasPrefix(line, "lftp ") {
			commands = append(commands, line)
		}
		if strings.HasPrefix(line, "Ctrl-C") {
			break
		}
	}
	if len(commands) < 5 {
		t.Fatalf("the demo printed %d commands to paste: %q", len(commands), commands)
	}
	dir := t.TempDir()
	for _, c := range commands {
		sh := exec.Command("bash", "-c", c)
		sh.Dir = dir // downloads land here
		if b, err := sh.CombinedOutput(); err != nil {
			t.Errorf("pasted %q: %v\n%s", c, err, b)
		}
	}
}
