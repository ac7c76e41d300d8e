package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/ftpctl"
	"github.com/ftpsgate/ftpsgate/ftpctl/ftptest"
)

// TestHealthProbe: the deeper check logs in and lists over PASV; a probe
// whose login fails marks the backend down, though it greets.
func TestHealthProbe(t *testing.T) {
	t.Parallel()
	f := newFleet(t, 1)
	b := f.config()[0]
	f.backends[0].FS.WriteFile("/probe/visible.txt", []byte("x"))

	good := Health{ProbeUser: "alice", ProbePassword: "s3cret-pw", Timeout: 5 * time.Second}
	feats, _, err := checkBackend(context.Background(), b, good)
	if err != nil {
		t.Fatalf("probe with good credentials: %v", err)
	}
	if len(feats) == 0 {
		t.Error("the check learnt no features")
	}
	saw := map[string]bool{}
	for _, v := range f.backends[0].Commands() {
		saw[v] = true
	}
	for _, want := range []string{"USER alice", "PASV", "LIST", "QUIT"} {
		if !saw[want] {
			t.Errorf("the probe did not send %q: %v", want, f.backends[0].Commands())
		}
	}

	bad := good
	bad.ProbePassword = "wrong-probe-pw"
	if _, _, err := checkBackend(context.Background(), b, bad); err == nil {
		t.Fatal("a probe whose login fails passed")
	}

	// Through the server: with fall 1, one failed probe marks it down.
	h := poolHarness(t, f, func(c *Config) { c.Health = bad; c.Health.Fall = 1; c.Health.Interval = 50 * time.Millisecond })
	waitFor(t, "the backend marked down", func() bool { return h.srv.current().pool.members[0].down.Load() })
	if len(h.logs.records("backend down")) == 0 {
		t.Error("backend down not logged")
	}
}

// TestHealthProbeDataModes: the deep probe's LIST uses the data mode the
// sessions use toward the backend: PORT with data_to_backend active, and
// auto falls back to PORT when the backend refuses PASV, so a backend whose
// passive ports are closed is not marked down for it.
func TestHealthProbeDataModes(t *testing.T) {
	t.Parallel()
	probe := Health{ProbeUser: "alice", ProbePassword: "s3cret-pw", Timeout: 5 * time.Second}
	for _, c := range []struct {
		name       string
		mode       DataMode
		noPassive  bool
		want, none string // a verb the probe must send, one it must not
		fails      bool
	}{
		{"active", DataActive, false, "PORT", "PASV", false},
		{"auto, passive refused", DataAuto, true, "PORT", "", false},
		{"passive, passive refused", DataPassive, true, "PASV", "PORT", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			srv := ftptest.NewUnstartedServer()
			srv.Users = map[string]string{"alice": "s3cret-pw"}
			srv.DisablePassive = c.noPassive
			srv.Start()
			t.Cleanup(srv.Close)
			b := Backend{Address: srv.Addr(), DataToBackend: c.mode}
			_, _, err := checkBackend(context.Background(), b, probe)
			if (err != nil) != c.fails {
				t.Fatalf("probe: %v, want failure %v", err, c.fails)
			}
			var sent []string
			for _, l := range srv.Commands() {
				sent = append(sent, strings.Fields(l)[0])
			}
			if !slices.Contains(sent, c.want) || c.none != "" && slices.Contains(sent, c.none) {
				t.Errorf("the probe sent %v: want %s, not %q", sent, c.want, c.none)
			}
			if !c.fails && !slices.Contains(sent, "LIST") {
				t.Errorf("the probe sent no LIST: %v", sent)
			}
		})
	}
}

// TestFeaturesAfterLogin: a backend that refuses FEAT before login (GNU
// inetutils ftpd: 530) has unknown features, not none. Without a probe
// user the first session's login learns them, says so, and the proxy's
// FEAT before login has them from then on; with one, the health check's
// own login learns them. A server without FEAT (502) has none.
func TestFeaturesAfterLogin(t *testing.T) {
	t.Parallel()
	feats := []string{"MDTM", "REST STREAM", "SIZE", "UTF8"}
	inetutils := func(c net.Conn, br *bufio.Reader, verb string) bool {
		// Its state is the connection's: FEAT is answered once logged in.
		if verb != "FEAT" {
			return false
		}
		if featLoggedIn[c] {
			io.WriteString(c, "211-Features:\r\n MDTM\r\n REST STREAM\r\n SIZE\r\n UTF8\r\n211 End\r\n")
		} else {
			io.WriteString(c, "530 Please login with USER and PASS.\r\n")
		}
		return true
	}
	for _, tc := range []struct {
		name  string
		probe bool
		from  string
	}{
		{"learnt by a session's login", false, featuresFromLogin},
		{"learnt by the health probe's login", true, featuresFromProbe},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var data net.Listener // the probe's passive port
			fake := startFakeBackend(t, scripted(func(c net.Conn, br *bufio.Reader, verb string) bool {
				switch verb {
				case "PASV": // the probe lists an empty directory
					ln, err := net.Listen("tcp", "127.0.0.1:0")
					if err != nil {
						return false
					}
					data = ln
					p := ln.Addr().(*net.TCPAddr).Port
					fmt.Fprintf(c, "227 Entering Passive Mode (127,0,0,1,%d,%d).\r\n", p>>8, p&0xff)
					return true
				case "LIST":
					io.WriteString(c, "150 Here it comes.\r\n")
					if d, err := data.Accept(); err == nil {
						d.Close()
					}
					data.Close()
					io.WriteString(c, "226 Done.\r\n")
					return true
				}
				if verb == "PASS" {
					featMu.Lock()
					featLoggedIn[c] = true
					featMu.Unlock()
					return false
				}
				featMu.Lock()
				defer featMu.Unlock()
				return inetutils(c, br, verb)
			}))
			h := newHarness(t, func(c *Config) {
				c.Backends = []Backend{{Address: fake.addr(), Name: "inetutils"}}
				c.Health.Interval = 50 * time.Millisecond
				if tc.probe {
					c.Health.ProbeUser, c.Health.ProbePassword = "probe", "probe-pw"
				}
			}, nil)
			beforeLogin := func() []string {
				rc := h.raw(h.explicit())
				rc.expect(220)
				defer rc.cmd("QUIT", 221)
				return ftpctl.ParseFeat(rc.cmd("FEAT", 211))
			}
			if !tc.probe {
				// Checked, but unknown: the proxy's own features only.
				waitFor(t, "a health check", func() bool {
					m := h.srv.current().pool.members[0]
					m.mu.Lock()
					defer m.mu.Unlock()
					return !m.lastCheck.IsZero()
				})
				if got := beforeLogin(); containsFold(got, "SIZE") {
					t.Fatalf("FEAT before any login lists SIZE: %v", got)
				}
				h.rawTLS().cmd("QUIT", 221) // a session logs in
			}
			waitFor(t, "the features learnt", func() bool { return len(h.logs.records("backend features")) > 0 })
			rec := h.logs.records("backend features")[0]
			if !strings.Contains(rec, `"source":"`+tc.from+`"`) {
				t.Errorf("backend features record: %s, want source %q", rec, tc.from)
			}
			got := beforeLogin()
			for _, f := range feats {
				if !containsFold(got, f) {
					t.Errorf("FEAT before login lacks %q: %v", f, got)
				}
			}
		})
	}
	// A server without FEAT has no extensions (RFC 2389 section 3.2).
	if got, ok := featuresOf(ftpctl.NewReply(ftpctl.CodeNotImplemented, "FEAT not implemented.")); !ok || len(got) != 0 {
		t.Errorf("502 to FEAT: %v, %v; want known and none", got, ok)
	}
	if got, ok := featuresOf(ftpctl.NewReply(ftpctl.CodeSystemStatus, "No features.")); !ok || len(got) != 0 {
		t.Errorf("single-line 211: %v, %v; want known and none", got, ok)
	}
}

// featLoggedIn tracks the fake inetutils connections that sent PASS.
var (
	featMu       sync.Mutex
	featLoggedIn = map[net.Conn]bool{} // guarded by featMu
)
