package proxy

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/ftpsgate/ftpsgate/ftpctl"
)

// TestLoginStateMachine walks every transition of loginSteps against a
// backend that records what it was sent: the reply the client gets, the
// commands the backend saw, and the session's phase and user afterwards.
func TestLoginStateMachine(t *testing.T) {
	t.Parallel()
	type step struct {
		line string
		code ftpctl.Code
	}
	tests := []struct {
		name    string
		backend func(c net.Conn, br *bufio.Reader, verb string) bool // nil: 331 to USER, 230 to PASS
		steps   []step
		saw     string // the backend's commands after its health checks, "|"-joined ("" : never dialled)
		phase   phase
		user    string
	}{
		{name: "USER then PASS", steps: []step{{"USER alice", 331}, {"PASS pw", 230}},
			saw: "USER alice|PASS pw", phase: phaseLoggedIn, user: "alice"},
		{name: "USER alone dials nothing", steps: []step{{"USER alice", 331}},
			phase: phaseNamed},
		{name: "the last USER before PASS counts", steps: []step{{"USER mallory", 331}, {"USER alice", 331}, {"PASS pw", 230}},
			saw: "USER alice|PASS pw", phase: phaseLoggedIn, user: "alice"},
		{name: "PASS before USER", steps: []step{{"PASS pw", 503}}, phase: phaseConnected},
		{name: "ACCT before PASS", steps: []step{{"USER alice", 331}, {"ACCT x", 503}}, phase: phaseNamed},
		{name: "empty USER", steps: []step{{"USER", 501}, {"USER ", 501}}, phase: phaseConnected},
		{name: "a name over 256 bytes", steps: []step{{"USER " + strings.Repeat("n", maxUserName+1), 501}}, phase: phaseConnected},
		{name: "a name of 256 bytes", steps: []step{{"USER " + strings.Repeat("n", maxUserName), 331}}, phase: phaseNamed},
		{name: "REIN anywhere", steps: []step{{"REIN", 502}, {"USER alice", 331}, {"REIN", 502}, {"PASS pw", 230}, {"REIN", 502}},
			saw: "USER alice|PASS pw", phase: phaseLoggedIn, user: "alice"},
		{name: "230 to USER alone: no password sent",
			backend: func(c net.Conn, _ *bufio.Reader, verb string) bool {
				if verb == "USER" {
					fmt.Fprint(c, "230 Anonymous access granted.\r\n")
					return true
				}
				return false
			},
			steps: []step{{"USER anonymous", 331}, {"PASS guest@", 230}}, saw: "USER anonymous", phase: phaseLoggedIn, user: "anonymous"},
		{name: "ACCT asked for", backend: func(c net.Conn, _ *bufio.Reader, verb string) bool {
			switch verb {
			case "PASS":
				fmt.Fprint(c, "332 Need account for login.\r\n")
			case "ACCT":
				fmt.Fprint(c, "230 Logged in with account.\r\n")
			default:
				return false
			}
			return true
		}, steps: []step{{"USER alice", 331}, {"PASS pw", 332}, {"PASS again", 503}, {"ACCT dept7", 230}},
			saw: "USER alice|PASS pw|ACCT dept7", phase: phaseLoggedIn, user: "alice"},
		{name: "a new USER while the backend waits for ACCT lets it go", backend: func(c net.Conn, _ *bufio.Reader, verb string) bool {
			if verb == "PASS" {
				fmt.Fprint(c, "332 Need account for login.\r\n")
				return true
			}
			return false
		}, steps: []step{{"USER alice", 331}, {"PASS pw", 332}, {"USER bob", 331}},
			saw: "USER alice|PASS pw|QUIT", phase: phaseNamed},
		{name: "refused password lets the backend go", backend: func(c net.Conn, _ *bufio.Reader, verb string) bool {
			if verb == "PASS" {
				fmt.Fprint(c, "530 Login incorrect.\r\n")
				return true
			}
			return false
		}, steps: []step{{"USER alice", 331}, {"PASS wrong", 530}, {"PASS pw", 503}},
			saw: "USER alice|PASS wrong|QUIT", phase: phaseConnected},
		{name: "refused name is the answer to PASS", backend: func(c net.Conn, _ *bufio.Reader, verb string) bool {
			if verb == "USER" {
				fmt.Fprint(c, "530 This FTP server is anonymous only.\r\n")
				return true
			}
			return false
		}, steps: []step{{"USER alice", 331}, {"PASS pw", 530}},
			saw: "USER alice|QUIT", phase: phaseConnected},
		{name: "USER, PASS, ACCT after login", steps: []step{{"USER alice", 331}, {"PASS pw", 230},
			{"USER root", 530}, {"PASS pw", 503}, {"USER alice", 530}},
			saw: "USER alice|PASS pw", phase: phaseLoggedIn, user: "alice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var (
				mu  sync.Mutex
				saw []string
			)
			fake := startFakeBackend(t, scripted(func(c net.Conn, br *bufio.Reader, verb string) bool {
				mu.Lock()
				saw = append(saw, verb)
				mu.Unlock()
				return tt.backend != nil && tt.backend(c, br, verb)
			}))
			h := newHarness(t, func(c *Config) {
				c.Backends = []Backend{{Address: fake.addr(), Name: "fake"}}
				c.Health.Disabled = true
			}, nil)
			rc := h.raw(h.explicit())
			rc.expect(220)
			rc.cmd("AUTH TLS", 234)
			rc.tls = h.sessionTLS()
			tc := tls.Client(rc.conn, rc.tls)
			if err := tc.Handshake(); err != nil {
				t.Fatal(err)
			}
			rc.conn, rc.r = tc, ftpctl.NewReader(bufio.NewReader(tc), 0)
			for _, s := range tt.steps {
				rc.cmd(s.line, s.code)
			}
			rc.cmd("NOOP", 200) // every step answered, in order
			var sess *session
			h.srv.mu.Lock()
			for s := range h.srv.sessions {
				sess = s
			}
			h.srv.mu.Unlock()
			v := sess.snapshot()
			if v.phase != tt.phase || v.user != tt.user {
				t.Errorf("phase %s, user %q; want %s, %q", v.phase, v.user, tt.phase, tt.user)
			}
			rc.cmd("QUIT", 221)
			waitFor(t, "the session to end", func() bool { return h.srv.ActiveSessions() == 0 })
			mu.Lock()
			defer mu.Unlock()
			got := strings.Join(saw, "|")
			want := verbs(tt.saw)
			if want != "" && tt.phase == phaseLoggedIn {
				// FEAT: no health check learnt the backend's features, so
				// the login asks; QUIT: the session's polite goodbye.
				want += "|FEAT|QUIT"
			}
			if got != want {
				t.Errorf("the backend saw %q, want %q", got, want)
			}
		})
	}
}

// verbs keeps the verbs of a "|"-joined list of commands.
func verbs(s string) string {
	var out []string
	for _, l := range strings.Split(s, "|") {
		if v, _, _ := strings.Cut(l, " "); v != "" {
			out = append(out, v)
		}
	}
	return strings.Join(out, "|")
}
