package secretscan

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A redacted record passes; a record with the password is counted and
// kept, from a Write, a whole log or a file.
func TestScan(t *testing.T) {
	s := New("alice-pw", "bob-pw")
	s.ScanLines([]byte(`{"command":"PASS ****","message":"command"}` + "\n" + `{"message":"login"}` + "\n"))
	if n, _ := s.Result(); n != 0 {
		t.Fatalf("a redacted record counted as a leak")
	}
	s.ScanLines([]byte(`{"message":"login"}` + "\n" + `{"command":"PASS alice-pw","message":"command"}` + "\n"))
	if n, first := s.Result(); n != 1 || !strings.Contains(first, "PASS alice-pw") {
		t.Fatalf("a leaked password was not found: %d %q", n, first)
	}
	s.Write([]byte(`{"command":"PASS bob-pw"}`))
	path := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(path, []byte("ok\nbob-pw here\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.ScanFile(path)
	s.ScanFile(filepath.Join(t.TempDir(), "missing"))
	if n, first := s.Result(); n != 3 || !strings.Contains(first, "alice-pw") {
		t.Fatalf("got %d hits, first %q; want 3, the first alice's", n, first)
	}
}
