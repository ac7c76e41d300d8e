package proxy

import (
	"context"
	"testing"
	"time"
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
	bad.ProbePassword = "wrong"
	if _, err := checkBackend(context.Background(), b, bad); err == nil {
		t.Fatal("a probe whose login fails passed")
	}

	// Through the server: with fall 1, one failed probe marks it down.
	h := poolHarness(t, f, func(c *Config) { c.Health = bad; c.Health.Fall = 1; c.Health.Interval = 50 * time.Millisecond })
	waitFor(t, "the backend marked down", func() bool { return h.srv.pool.members[0].down.Load() })
	if len(h.logs.records("backend down")) == 0 {
		t.Error("backend down not logged")
	}
}
