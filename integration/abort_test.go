package integration

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// abortRounds is how many downloads each TestAbort cell aborts: how each
// backend answers depends on whether it reads ABOR before or after it
// notices its data connection closing, a race that one round might not
// show.
const abortRounds = 10

// TestAbort aborts downloads in the middle with Python's ftplib, on every
// backend, with PROT C and PROT P, and checks that every ABOR is answered
// as RFC 959 section 4.1.3 says and the session stays in step. pure-ftpd
// once hung the proxy here: with its data connection closed before it read
// ABOR, it sends no final reply for the transfer, only ABOR's. inetutils
// ftpd is interrupted only once per session (README, Backends): it gets a
// session for each abort.
func TestAbort(t *testing.T) {
	needTool(t, "python3")
	for _, k := range serverKinds {
		t.Run(k.name, func(t *testing.T) {
			b := startBackend(t, k)
			p := startProxyFor(t, b)
			// Large enough that no round can finish before its ABOR: the
			// client reads 64 KiB and stops.
			big := filepath.Join(b.home, "abort.bin")
			data := make([]byte, 64<<20)
			newPRNG(64).Read(data)
			if err := os.WriteFile(big, data, 0o644); err != nil {
				t.Fatal(err)
			}
			sessions, perSession := 1, abortRounds
			if k.abortOncePerSession {
				sessions, perSession = abortRounds, 1
			}
			for _, prot := range []string{"C", "P"} {
				t.Run("prot"+prot, func(t *testing.T) {
					before := len(p.records("transfer aborted by client"))
					host, port, _ := strings.Cut(p.explicit, ":")
					var out string
					for range sessions {
						o, err := run(t, 5*time.Minute, "python3", "testdata/ftpabort.py",
							"--host", host, "--port", port, "--user", testUser, "--password", testPassword,
							"--prot", prot, "--file", "abort.bin", "--rounds", strconv.Itoa(perSession))
						out += o
						if err != nil {
							t.Fatalf("%s/prot%s: %v\n%s", k.name, prot, err, out)
						}
					}
					if n := strings.Count(out, "round "); n != abortRounds {
						t.Errorf("%d rounds reported, want %d:\n%s", n, abortRounds, out)
					}
					// The proxy saw each ABOR cut a transfer, not a finished one.
					waitRecords(t, p, "transfer aborted by client", before+abortRounds)
					t.Logf("%s PROT %s:\n%s", k.name, prot, out)
				})
			}
		})
	}
}

// waitRecords waits until the proxy has logged n records with message msg.
func waitRecords(t testing.TB, p *proxyProc, msg string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(p.records(msg)) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d %q records, want %d", len(p.records(msg)), msg, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
