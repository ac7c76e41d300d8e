package proxy

import (
	"fmt"
	"os"
	"testing"

	"github.com/ftpsgate/ftpsgate/internal/secretscan"
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
var suiteLog = secretscan.New(testPasswords...)

func TestMain(m *testing.M) {
	code := m.Run()
	if n, first := suiteLog.Result(); n > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d proxy log records of this run hold a test password; the first:\n%s\n", n, first)
		code = 1
	}
	os.Exit(code)
}
