package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ftpsgate/ftpsgate/ftpctl/ftptest"
	"github.com/ftpsgate/ftpsgate/proxy"
)

// runBench runs `ftpsgate bench --json` against the environment's proxy
// as alice and returns what it reported and its exit code.
func (e *probeEnv) runBench(t *testing.T, args ...string) (benchResult, string, int) {
	t.Helper()
	return e.runBenchTo(t, &syncBuffer{}, args...)
}

// runBenchTo is runBench with stderr, where the progress lines go, written
// to errOut as the run goes.
func (e *probeEnv) runBenchTo(t *testing.T, errOut *syncBuffer, args ...string) (benchResult, string, int) {
	t.Helper()
	base := []string{"bench", "--address", e.srv.ExplicitAddr().String(), "--ca", filepath.Join(e.dir, "cert.pem"),
		"--user", "alice", "--password-file", filepath.Join(e.dir, "password"), "--json", "--timeout", "10s"}
	var out bytes.Buffer
	cliMu.Lock()
	err := runCLITo(&out, errOut, append(base, args...)...)
	cliMu.Unlock()
	code := 0
	if err != nil {
		var ec cli.ExitCoder
		if !errors.As(err, &ec) {
			t.Fatalf("bench: %v\n%s%s", err, out.String(), errOut)
		}
		code = ec.ExitCode()
	}
	var res benchResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("bench output: %v\n%s\nstderr:\n%s", err, out.String(), errOut)
	}
	return res, errOut.String(), code
}

func TestBenchCounts(t *testing.T) {
	t.Parallel()
	var (
		mu                            sync.Mutex
		transfers, uploads, downloads int // guarded by mu
	)
	e := newProbeEnv(t, "", nil, func(cfg *proxy.Config) {
		cfg.OnTransfer = func(ev proxy.TransferEvent) {
			mu.Lock()
			defer mu.Unlock()
			transfers++
			if ev.Direction == "upload" {
				uploads++
			} else {
				downloads++
			}
		}
	})

	t.Run("stor", func(t *testing.T) {
		res, _, code := e.runBench(t, "--sessions", "4", "--op", "stor", "--size", "64KiB", "--count", "20", "--transfers-per-session", "3")
		if code != 0 || res.Errors != 0 || res.Transfers != 20 || res.Bytes != 20*64<<10 {
			t.Fatalf("exit %d, %+v; want 20 transfers of 64 KiB and no error", code, res)
		}
		// 20 transfers, at most 3 per session, 4 workers: at least 7 sessions.
		if res.Sessions < 7 {
			t.Errorf("%d sessions, want at least 7", res.Sessions)
		}
		for w := range 4 {
			if data, ok := e.backend.FS.ReadFile(fmt.Sprintf("/ftpsgate-bench-%d.dat", w)); ok && len(data) != 64<<10 {
				t.Errorf("worker %d stored %d bytes, want %d", w, len(data), 64<<10)
			}
		}
	})

	t.Run("retr", func(t *testing.T) {
		// RETR of a file stored first, all in one session per worker, PROT C, PASV.
		res, _, code := e.runBench(t, "--sessions", "2", "--op", "retr", "--size", "4KiB", "--count", "30",
			"--transfers-per-session", "0", "--prot", "C", "--passive", "pasv")
		if code != 0 || res.Errors != 0 || res.Transfers != 30 || res.Bytes != 30*4<<10 || res.Sessions != 2 {
			t.Fatalf("exit %d, %+v; want 30 transfers of 4 KiB over 2 sessions and no error", code, res)
		}
		if res.TransferMs.P50 <= 0 || res.TransferMs.P99 < res.TransferMs.P50 || res.SetupMs.P50 <= 0 {
			t.Errorf("latencies %+v %+v", res.SetupMs, res.TransferMs)
		}
	})

	t.Run("login", func(t *testing.T) {
		res, _, code := e.runBench(t, "--sessions", "3", "--op", "login", "--count", "9", "--curves", "x25519,p256")
		if code != 0 || res.Errors != 0 || res.Sessions != 9 || res.Transfers != 0 {
			t.Fatalf("exit %d, %+v; want 9 sessions", code, res)
		}
	})

	t.Run("idle", func(t *testing.T) {
		res, _, code := e.runBench(t, "--sessions", "4", "--idle", "10", "--duration", "2s")
		if code != 0 || res.Errors != 0 || res.Held != 10 || res.Sessions != 10 {
			t.Fatalf("exit %d, %+v; want 10 sessions held", code, res)
		}
	})

	t.Run("idle until Ctrl-C", func(t *testing.T) {
		// As make bench-peers ends it: SIGTERM once the bench's own progress
		// line counts the sessions open. Every one is still held when
		// checked. The proxy's count of logged-in sessions would be too
		// early: it includes a session whose client is still sending PROT,
		// a login that Ctrl-C cuts.
		progress := &syncBuffer{}
		opened := regexp.MustCompile(`sessions 10 `)
		go func() {
			deadline := time.Now().Add(20 * time.Second)
			for !opened.MatchString(progress.String()) {
				if time.Now().After(deadline) {
					t.Error("the bench did not report 10 sessions open; no SIGTERM sent")
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
			syscall.Kill(os.Getpid(), syscall.SIGTERM)
		}()
		// --duration only ends a run whose SIGTERM never came.
		res, _, code := e.runBenchTo(t, progress, "--sessions", "4", "--idle", "10", "--duration", "40s", "--progress", "10ms")
		if code != 0 || res.Errors != 0 || res.Held != 10 || res.Sessions != 10 {
			t.Fatalf("exit %d, %+v; want 10 sessions held", code, res)
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		res, _, code := e.runBench(t, "--op", "login", "--count", "2", "--password-file", filepath.Join(e.dir, "wrong-password"))
		if code != 1 || res.Errors < 2 || res.Sessions != 0 || len(res.FirstErrors) == 0 || !strings.Contains(res.FirstErrors[0], "530") {
			t.Fatalf("exit %d, %+v; want login errors and exit 1", code, res)
		}
	})

	mu.Lock()
	defer mu.Unlock()
	// 20 STORs, the file stored for RETR, 30 RETRs.
	if transfers != 51 || uploads != 21 || downloads != 30 {
		t.Errorf("the proxy saw %d transfers (%d up, %d down), want 51 (21, 30)", transfers, uploads, downloads)
	}
}

// TestBenchImplicitProgress: implicit FTPS, and the progress line on stderr.
func TestBenchImplicitProgress(t *testing.T) {
	t.Parallel()
	e := newProbeEnv(t, "", func(s *ftptest.Server) { s.DiscardUploads = true }, nil)
	out, errOut, err := runCLISerial(t, "bench", "--address", e.srv.ImplicitAddr().String(), "--implicit", "--insecure",
		"--user", "alice", "--password", "s3cret-pw", "--op", "stor", "--size", "1MiB", "--duration", "1500ms",
		"--progress", "200ms")
	if err != nil {
		t.Fatalf("bench: %v\n%s%s", err, out, errOut)
	}
	expectLines(t, out, `[0-9.]+s`, `sessions +[1-9][0-9]* .*setup p50 .*`, `transfers +[1-9][0-9]* .* files/s .* MiB/s .*`, `errors +0`)
	if !strings.Contains(errOut, "sessions ") || !strings.Contains(errOut, "MiB/s") {
		t.Errorf("no progress line on stderr: %q", errOut)
	}
}
