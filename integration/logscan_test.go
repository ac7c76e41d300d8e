package integration

import (
	"fmt"
	"os"
	"strings"
	"sync"
)

// testPasswords are the passwords the integration tests use. None may
// appear in the log of any ftpsgate they run (issue 7): startProxy and
// TestDemo hand each log to suiteLog before its directory goes, and
// TestMain fails the run on a hit.
var testPasswords = []string{
	testPassword, // the real servers' account
	"curl-pw",    // the in-memory backends of curl, acme, reload and routes tests
	// The demo's user and password are both "demo": the user name is in
	// every record of its sessions, so look for the command instead.
	"PASS demo",
}

var suiteLog = &secretScan{secrets: testPasswords}

// checkLogs turns a clean test run's exit code into a failure if a log
// held a test password.
func checkLogs(code int) int {
	if n, first := suiteLog.result(); n > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d ftpsgate log lines of this run hold a test password; the first:\n%s\n", n, first)
		return 1
	}
	return code
}

// secretScan counts log lines holding a secret.
type secretScan struct {
	secrets []string

	mu    sync.Mutex // guards the fields below
	hits  int        // lines holding a secret
	first string     // the first such line
}

// scanFile scans a log file line by line; a missing file has nothing to say.
func (s *secretScan) scanFile(path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	s.scanLines(b)
}

func (s *secretScan) scanLines(log []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range strings.SplitAfter(string(log), "\n") {
		for _, secret := range s.secrets {
			if strings.Contains(l, secret) {
				if s.hits == 0 {
					s.first = l
				}
				s.hits++
				break
			}
		}
	}
}

func (s *secretScan) result() (int, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits, s.first
}
