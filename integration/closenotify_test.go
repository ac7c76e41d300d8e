package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestNoCloseNotify: OpenSSL clients that end a PROT P data connection by
// closing its socket, with no close_notify and without reading what the
// server sent on it (netkit ftp-ssl, scripts), upload and download whole
// files through the proxy, small and large, on every backend (issue 16).
// Such a close became a TCP reset while the TLS 1.3 session tickets the
// proxy sent on data connections lay unread in the client's socket, and
// the proxy, rightly taking a reset for a client that vanished, cut the
// upload toward the backend: 1 KB arrived as 0 bytes, 5 MB short. The
// proxy now sends no ticket on data connections.
func TestNoCloseNotify(t *testing.T) {
	sizes := []int{1024, 5_000_000}
	for _, k := range serverKinds {
		t.Run(k.name, func(t *testing.T) {
			b := startBackend(t, k)
			p := startProxyFor(t, b)
			host, port := splitHostPort(p.explicit)
			t.Run("ftplib", func(t *testing.T) {
				needTool(t, "python3")
				for _, n := range sizes {
					dir := t.TempDir()
					up, want := writeLocal(t, dir, "up.bin", n, uint64(n))
					dl := filepath.Join(dir, "dl.bin")
					name := fmt.Sprintf("noclose-ftplib-%d.bin", n)
					out, err := run(t, 2*time.Minute, "python3", "testdata/ftpscript.py", "--no-close-notify",
						"--host", host, "--port", port, "--user", testUser, "--password", testPassword,
						"--up", up, "--name", name, "--dl", dl)
					if err != nil {
						t.Fatalf("%d bytes: %v\n%s", n, err, out)
					}
					checkRoundTrip(t, b, name, dl, want)
				}
			})
			t.Run("ftp-ssl", func(t *testing.T) {
				needTool(t, "ftp-ssl")
				for _, n := range sizes {
					dir := t.TempDir()
					up, want := writeLocal(t, dir, "up.bin", n, uint64(n)+1)
					dl := filepath.Join(dir, "dl.bin")
					name := fmt.Sprintf("noclose-netkit-%d.bin", n)
					script := fmt.Sprintf("user %s %s\nbinary\nput %s %s\nget %s %s\nquit\n", testUser, testPassword, up, name, name, dl)
					out, err := runInput(t, time.Minute, script, "ftp-ssl", "-n", "-v", "-p", "-z", "secure", "-z", "verify=0", host, port)
					if err != nil || failedReply.MatchString(out) {
						t.Fatalf("%d bytes: %v\n%s", n, err, out)
					}
					checkRoundTrip(t, b, name, dl, want)
				}
			})
		})
	}
}

// failedReply is a 4xx or 5xx reply in ftp-ssl's verbose output.
var failedReply = regexp.MustCompile(`(?m)^[45]\d\d `)

// checkRoundTrip checks that name arrived whole on b and came back whole
// into dl.
func checkRoundTrip(t *testing.T, b *backend, name, dl string, want []byte) {
	t.Helper()
	if stored, err := os.ReadFile(filepath.Join(b.home, name)); err != nil || !bytes.Equal(stored, want) {
		t.Errorf("%s: the backend holds %d bytes of %d (%v)", name, len(stored), len(want), err)
	}
	if got, err := os.ReadFile(dl); err != nil || !bytes.Equal(got, want) {
		t.Errorf("%s: downloaded %d bytes of %d (%v)", name, len(got), len(want), err)
	}
}

// runInput is run with stdin from input.
func runInput(t testing.TB, timeout time.Duration, input, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // see startProxy
	cmd.Stdin = strings.NewReader(input)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s timed out after %v: %w", name, timeout, err)
	}
	return out.String(), err
}
