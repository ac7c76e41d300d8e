package integration

import (
	"fmt"
	"os"

	"github.com/ftpsgate/ftpsgate/internal/secretscan"
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

var suiteLog = secretscan.New(testPasswords...)

// checkLogs turns a clean test run's exit code into a failure if a log
// held a test password.
func checkLogs(code int) int {
	if n, first := suiteLog.Result(); n > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d ftpsgate log lines of this run hold a test password; the first:\n%s\n", n, first)
		return 1
	}
	return code
}
