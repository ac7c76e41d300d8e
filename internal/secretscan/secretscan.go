// Package secretscan counts log records that hold a secret: the test
// suites hand it every log their proxies write and fail the run when a
// test password shows up (issue 7).
package secretscan

import (
	"bytes"
	"os"
	"strings"
	"sync"
)

// Scan is an io.Writer that counts records holding one of its secrets.
// zerolog writes one whole record per Write; ScanLines and ScanFile take a
// whole log, a record per line.
type Scan struct {
	secrets [][]byte

	mu    sync.Mutex // guards the fields below
	hits  int        // records holding a secret
	first string     // the first such record
}

// New returns a Scan for secrets.
func New(secrets ...string) *Scan {
	s := &Scan{}
	for _, secret := range secrets {
		s.secrets = append(s.secrets, []byte(secret))
	}
	return s
}

func (s *Scan) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, secret := range s.secrets {
		if bytes.Contains(p, secret) {
			if s.hits == 0 {
				s.first = string(p)
			}
			s.hits++
			break
		}
	}
	return len(p), nil
}

// ScanLines scans a whole log (a file, a command's output) line by line.
func (s *Scan) ScanLines(log []byte) {
	for _, l := range strings.SplitAfter(string(log), "\n") {
		s.Write([]byte(l))
	}
}

// ScanFile scans a log file; a missing file has nothing to say.
func (s *Scan) ScanFile(path string) {
	if b, err := os.ReadFile(path); err == nil {
		s.ScanLines(b)
	}
}

// Result returns how many records held a secret, and the first of them.
func (s *Scan) Result() (int, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits, s.first
}
