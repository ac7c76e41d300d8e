package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
)

// testPasswords are the passwords this package's tests use, right or wrong;
// none may appear in a log the tests' proxies write, nor in the recorded
// log of testdata/tail.log (issue 7).
var testPasswords = []string{
	"alice-pw", "bob-pw", "carol-pw", "not-bobs-password", // admin, drain and tail tests
	"s3cret-pw", "not-the-password", // probe tests
	"probe-pw", // the health probe's password file in config_test.go
}

// suiteLog receives the proxy logs of the tests that serve (serveAdmin,
// recordLog, newProbeEnv write to it; TestServeDrainsOnSIGTERM copies its
// log file in) and the probe's output; TestMain fails the run if a record
// holds a test password.
var suiteLog = &secretScan{secrets: testPasswords}

func TestMain(m *testing.M) {
	code := m.Run()
	if fixture, err := os.ReadFile("testdata/tail.log"); err == nil {
		suiteLog.scanLines(fixture)
	}
	if n, first := suiteLog.result(); n > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d log records of this run hold a test password; the first:\n%s\n", n, first)
		code = 1
	}
	os.Exit(code)
}

// secretScan is an io.Writer that counts log records holding a secret.
// zerolog writes one whole record per Write.
type secretScan struct {
	secrets []string

	mu    sync.Mutex // guards the fields below
	hits  int        // records holding a secret
	first string     // the first such record
}

func (s *secretScan) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, secret := range s.secrets {
		if bytes.Contains(p, []byte(secret)) {
			if s.hits == 0 {
				s.first = string(p)
			}
			s.hits++
			break
		}
	}
	return len(p), nil
}

// scanLines scans a whole log (a file, a command's output) line by line.
func (s *secretScan) scanLines(log []byte) {
	for _, l := range strings.SplitAfter(string(log), "\n") {
		s.Write([]byte(l))
	}
}

func (s *secretScan) result() (int, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits, s.first
}

// TestSecretScan: the scan TestMain relies on finds a password in a record.
func TestSecretScan(t *testing.T) {
	s := &secretScan{secrets: testPasswords}
	s.scanLines([]byte(`{"command":"PASS ****","message":"command"}` + "\n" + `{"message":"login"}` + "\n"))
	if n, _ := s.result(); n != 0 {
		t.Fatalf("a redacted record counted as a leak")
	}
	s.scanLines([]byte(`{"message":"login"}` + "\n" + `{"command":"PASS alice-pw","message":"command"}` + "\n"))
	if n, first := s.result(); n != 1 || !strings.Contains(first, "PASS alice-pw") {
		t.Fatalf("a leaked password was not found: %d %q", n, first)
	}
}
