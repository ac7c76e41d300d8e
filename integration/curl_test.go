package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/ftpctl/ftptest"
)

// memBackend starts an in-memory backend with the user the curl tests use.
func memBackend(t testing.TB) *ftptest.Server {
	b := ftptest.NewUnstartedServer()
	b.Users = map[string]string{"curl": "curl-pw"}
	b.Start()
	t.Cleanup(b.Close)
	return b
}

// curlMode is one way curl can talk to the proxy.
type curlMode struct {
	name     string
	implicit bool
	protP    bool
	pasv     bool // --disable-epsv: PASV instead of EPSV
}

func (m curlMode) url(p *proxyProc, path string) string {
	if m.implicit {
		return "ftps://" + p.implicit + path
	}
	return "ftp://" + p.explicit + path
}

func (m curlMode) args() []string {
	a := []string{"--silent", "--show-error", "--insecure", "--user", "curl:curl-pw", "--max-time", "300"}
	switch {
	case m.implicit && !m.protP:
		a = append(a, "--ftp-ssl-control") // implicit TLS control, PROT C
	case !m.implicit && m.protP:
		a = append(a, "--ssl-reqd") // AUTH TLS and PROT P
	case !m.implicit && !m.protP:
		a = append(a, "--ftp-ssl-control") // AUTH TLS, PROT C
	}
	if m.pasv {
		a = append(a, "--disable-epsv")
	}
	return a
}

var curlModes = []curlMode{
	{"explicit-protP-epsv", false, true, false},
	{"explicit-protP-pasv", false, true, true},
	{"explicit-protC-epsv", false, false, false},
	{"explicit-protC-pasv", false, false, true},
	{"implicit-protP-epsv", true, true, false},
	{"implicit-protC-pasv", true, false, true},
}

// TestCurl drives the built binary with curl against the in-memory backend:
// list, download and upload of 1 MB and 100 MB compared by hash, in every
// mode.
func TestCurl(t *testing.T) {
	curl := needTool(t, "curl")
	backend := memBackend(t)
	backend.FS.Mkdir("/up")
	p := startProxy(t, "--backend", backend.Addr())
	dir := t.TempDir()
	small, smallSum := writeRandomFile(t, dir, 1_000_000)
	big, bigSum := writeRandomFile(t, dir, 100_000_000)
	if testing.Short() {
		big, bigSum = small, smallSum
	}
	for _, m := range curlModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			for _, f := range []struct{ path, sum string }{{small, smallSum}, {big, bigSum}} {
				name := m.name + "-" + filepath.Base(f.path)
				if out, err := run(t, 5*time.Minute, curl, append(m.args(), "-T", f.path, m.url(p, "/up/"+name))...); err != nil {
					t.Fatalf("upload %s: %v\n%s", name, err, out)
				}
				stored, ok := backend.FS.ReadFile("/up/" + name)
				if !ok || bytesSHA256(stored) != f.sum {
					t.Fatalf("upload %s: backend holds %d bytes with another hash", name, len(stored))
				}
				got := filepath.Join(t.TempDir(), name)
				if out, err := run(t, 5*time.Minute, curl, append(m.args(), "-o", got, m.url(p, "/up/"+name))...); err != nil {
					t.Fatalf("download %s: %v\n%s", name, err, out)
				}
				if sum := fileSHA256(t, got); sum != f.sum {
					t.Fatalf("download %s: hash %s, want %s", name, sum, f.sum)
				}
			}
			out, err := run(t, time.Minute, curl, append(m.args(), m.url(p, "/up/"))...)
			if err != nil {
				t.Fatalf("LIST: %v\n%s", err, out)
			}
			if !strings.Contains(out, m.name+"-random-1000000.bin") {
				t.Errorf("LIST lacks the uploaded file:\n%s", out)
			}
			out, err = run(t, time.Minute, curl, append(m.args(), "--list-only", m.url(p, "/up/"))...)
			if err != nil || !strings.Contains(out, m.name+"-random-1000000.bin\n") {
				t.Errorf("NLST: %v\n%s", err, out)
			}
		})
	}
}

// TestCurlParallel runs 20 curl sessions at once through one proxy.
func TestCurlParallel(t *testing.T) {
	curl := needTool(t, "curl")
	backend := memBackend(t)
	payload := make([]byte, 2<<20)
	newPRNG(7).Read(payload)
	backend.FS.WriteFile("/shared.bin", payload)
	want := bytesSHA256(payload)
	p := startProxy(t, "--backend", backend.Addr())

	var wg sync.WaitGroup
	errs := make(chan error, 20)
	dir := t.TempDir()
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := curlModes[i%len(curlModes)]
			out := filepath.Join(dir, fmt.Sprintf("dl-%d", i))
			if o, err := run(t, 2*time.Minute, curl, append(m.args(), "-o", out, m.url(p, "/shared.bin"))...); err != nil {
				errs <- fmt.Errorf("session %d (%s): %v\n%s", i, m.name, err, o)
				return
			}
			b, _ := os.ReadFile(out)
			if bytesSHA256(b) != want {
				errs <- fmt.Errorf("session %d (%s): %d bytes, wrong hash", i, m.name, len(b))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	waitSessionsEnded(t, p, 20)
	if strings.Contains(p.log(), "curl-pw") {
		t.Error("the password appears in the proxy log")
	}
	xfers := p.records("transfer")
	if len(xfers) != 20 {
		t.Fatalf("%d transfer records, want 20", len(xfers))
	}
	for _, x := range xfers {
		if x["bytes"] != float64(len(payload)) || x["code"] != float64(226) || x["direction"] != "download" {
			t.Errorf("transfer record %v", x)
		}
	}
}

// waitSessionsEnded waits until the proxy has logged n session ends.
func waitSessionsEnded(t testing.TB, p *proxyProc, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(p.records("session end")) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d session end records, want %d", len(p.records("session end")), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
