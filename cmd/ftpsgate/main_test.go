package main

import (
	"fmt"
	"os"
	"testing"

	"github.com/ftpsgate/ftpsgate/internal/secretscan"
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
var suiteLog = secretscan.New(testPasswords...)

func TestMain(m *testing.M) {
	code := m.Run()
	suiteLog.ScanFile("testdata/tail.log")
	if n, first := suiteLog.Result(); n > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d log records of this run hold a test password; the first:\n%s\n", n, first)
		code = 1
	}
	os.Exit(code)
}
