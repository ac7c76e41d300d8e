package proxy

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

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
	feats, err := checkBackend(context.Background(), b, good)
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
	if _, err := checkBackend(context.Background(), b, bad); err == nil {
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
			_, err := checkBackend(context.Background(), b, probe)
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
