package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStatusPageInChromium loads the admin status page in headless
// Chromium while curl downloads a file slowly through the proxy from
// vsftpd: the page Chromium rendered names the session's user and backend,
// and has the backend's row. The screenshot is kept in artifactsDir.
func TestStatusPageInChromium(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		skipOrFail(t, "chromium is not installed; run integration/setup.sh")
	}
	needTool(t, "curl")
	b := startBackend(t, vsftpd)
	const size = 64 << 20
	data := make([]byte, size)
	newPRNG(7).Read(data)
	if err := os.WriteFile(filepath.Join(b.home, "slow.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chown(filepath.Join(b.home, "slow.bin"), b.acct.uid, b.acct.gid)

	const backendName = "vsftpd-status"
	cfg := filepath.Join(t.TempDir(), "ftpsgate.toml")
	writeFile(t, cfg, fmt.Sprintf("[admin]\nlisten = \"127.0.0.1:0\"\n\n[[backend]]\naddress = %q\nname = %q\n",
		b.addr, backendName), 0o600)
	p := startProxy(t, "--config", cfg)
	admin := ""
	for _, rec := range p.records("admin listening") {
		admin, _ = rec["address"].(string)
	}
	if admin == "" {
		t.Fatalf("no admin listener in the log:\n%s", p.log())
	}
	url := "http://" + admin + "/"

	// A small download first, for the list of recent transfers.
	writeFile(t, filepath.Join(b.home, "small.txt"), "a small file\n", 0o644)
	if out, err := run(t, time.Minute, "curl", "--silent", "--show-error", "--insecure", "--ssl-reqd",
		"--user", testUser+":"+testPassword, "--output", os.DevNull,
		fmt.Sprintf("ftp://%s/small.txt", p.explicit)); err != nil {
		t.Fatalf("curl small.txt: %v\n%s", err, out)
	}

	// 512 KiB/s: two minutes for the file, far longer than the test
	// needs; curl is stopped when the test ends.
	ctx, cancel := context.WithCancel(context.Background())
	curl := exec.CommandContext(ctx, "curl", "--silent", "--show-error", "--insecure", "--ssl-reqd",
		"--user", testUser+":"+testPassword, "--limit-rate", "512k", "--output", os.DevNull,
		fmt.Sprintf("ftp://%s/slow.bin", p.explicit))
	curl.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var curlOut bytes.Buffer
	curl.Stdout, curl.Stderr = &curlOut, &curlOut
	if err := curl.Start(); err != nil {
		t.Fatal(err)
	}
	curlDone := make(chan struct{})
	go func() {
		curl.Wait()
		close(curlDone)
	}()
	t.Cleanup(func() {
		cancel()
		<-curlDone
	})

	// Plain HTTP first: the transfer is under way and has moved bytes.
	waitForStatus(t, url, curlDone, func(page string) bool {
		return strings.Contains(page, "RETR") && strings.Contains(page, "slow.bin") &&
			!strings.Contains(page, `xfer-bytes">0 B<`)
	})

	dir := artifactsDir(t)
	shot := filepath.Join(dir, "status-page.png")
	os.Remove(shot)
	dom := runChromium(t, chromium, "--dump-dom", url)
	runChromium(t, chromium, "--screenshot="+shot, url)
	select {
	case <-curlDone:
		t.Fatalf("curl ended before Chromium had loaded the page:\n%s", curlOut.String())
	default:
	}

	for _, want := range []string{
		`<tr class="backend" data-backend="` + backendName + `">`,
		`<td class="user"><b>` + testUser + `</b></td>`,
		`<td class="backend">` + backendName + `</td>`,
		"RETR", "slow.bin", "download, PROT P",
		"small.txt", // among the recent transfers
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("the DOM Chromium rendered lacks %q:\n%s", want, dom)
		}
	}
	png, err := os.ReadFile(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) || len(png) < 10<<10 {
		t.Errorf("screenshot %s is not a PNG of a page (%d bytes)", shot, len(png))
	}
	t.Logf("status page screenshot: %s", shot)
}

// waitForStatus polls the status page until ok accepts it; the transfer
// it waits for must not have ended (done).
func waitForStatus(t *testing.T, url string, done <-chan struct{}, ok func(string) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	page := ""
	for {
		resp, err := http.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			page = string(body)
			if resp.StatusCode == http.StatusOK && ok(page) {
				return
			}
		}
		select {
		case <-done:
			t.Fatalf("the transfer ended before the status page showed it:\n%s", page)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the status page never showed the transfer (last error %v):\n%s", err, page)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// runChromium runs headless Chromium with args and returns its standard
// output. It runs as root here, which needs --no-sandbox, in a profile of
// its own; its helper processes share its process group and go with it.
func runChromium(t *testing.T, chromium string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	full := append([]string{"--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
		"--window-size=1400,1000", "--user-data-dir=" + t.TempDir(), "--no-first-run",
		"--disable-extensions", "--disable-dev-shm-usage"}, args...)
	cmd := exec.CommandContext(ctx, chromium, full...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // helpers left behind, if any
	}
	if err != nil {
		t.Fatalf("chromium %s: %v\n%s", strings.Join(full, " "), err, tailLines(stderr.String(), 30))
	}
	return stdout.String()
}

// artifactsDir is where tests keep files for people to look at:
// $FTPSGATE_ARTIFACTS, else .artifacts at the repository root.
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("FTPSGATE_ARTIFACTS")
	if dir == "" {
		dir, _ = filepath.Abs(filepath.Join("..", ".artifacts"))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
