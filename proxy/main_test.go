package proxy

import (
	"bytes"
	"fmt"
	"os"
	"sync"
	"testing"
)

// testPasswords are the passwords this package's tests use, right or wrong;
// none may appear in any log record a test's proxy writes (issue 7).
var testPasswords = []string{
	"s3cret-pw",      // alice and the fleet's users (harness_test.go, pool_test.go)
	"not-alices-pw",  // the failed login of TestLogSchema
	"wrong-probe-pw", // the failing health probe of TestHealthProbe
}

// suiteLog sees every record of every harness's proxy (newHarness writes
// there too); TestMain fails the run if one holds a test password.
var suiteLog = &secretScan{secrets: testPasswords}

func TestMain(m *testing.M) {
	code := m.Run()
	if n, first := suiteLog.result(); n > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d proxy log records of this run hold a test password; the first:\n%s\n", n, first)
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

func (s *secretScan) result() (int, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits, s.first
}

// TestSecretScan: the scan TestMain relies on finds a password in a record.
func TestSecretScan(t *testing.T) {
	s := &secretScan{secrets: testPasswords}
	s.Write([]byte(`{"level":"debug","command":"PASS ****","message":"command"}` + "\n"))
	if n, _ := s.result(); n != 0 {
		t.Fatalf("a redacted record counted as a leak")
	}
	s.Write([]byte(`{"level":"debug","command":"PASS s3cret-pw","message":"command"}` + "\n"))
	if n, first := s.result(); n != 1 || first == "" {
		t.Fatalf("a leaked password was not found: %d %q", n, first)
	}
}
