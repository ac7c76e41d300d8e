package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/ftpsgate/ftpsgate/ftpctl"
	"github.com/ftpsgate/ftpsgate/ftpctl/ftptest"
)

func TestMaxSessions(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.PlainAllowed = true
		c.Limits.MaxSessions = 2
	}, nil)
	a := h.raw(h.explicit())
	a.expect(220)
	b := h.raw(h.explicit())
	b.expect(220)
	c := h.raw(h.explicit())
	if rep := c.expect(421); !strings.Contains(rep.Text(), "Too many connections") {
		t.Errorf("past max_sessions: %q", rep.Text())
	}
	c.expectClosed()

	// Over TLS on the implicit listener, so the client can read it.
	tc, err := tls.Dial("tcp", h.implicit(), h.client)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	rep, err := ftpctl.NewReader(bufio.NewReader(tc), 0).ReadReply()
	if err != nil || rep.Code != 421 {
		t.Fatalf("implicit past max_sessions: %v %v, want 421", rep, err)
	}

	a.cmd("QUIT", 221)
	// A session gives its place back before it leaves the count.
	waitFor(t, "a's session gone", func() bool { return h.srv.ActiveSessions() == 1 })
	d := h.raw(h.explicit())
	d.expect(220)
	if n := len(h.logs.records("session refused")); n != 2 {
		t.Errorf("%d session refused records, want 2", n)
	}
}

func TestMaxSessionsPerIP(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.PlainAllowed = true
		c.Limits.MaxSessionsPerIP = 1
	}, nil)
	a := h.rawFrom(h.explicit(), "127.0.0.1")
	a.expect(220)
	b := h.rawFrom(h.explicit(), "127.0.0.1")
	if rep := b.expect(421); !strings.Contains(rep.Text(), "your address") {
		t.Errorf("past max_sessions_per_ip: %q", rep.Text())
	}
	other := h.rawFrom(h.explicit(), "127.0.0.2")
	other.expect(220)
	other.cmd("USER alice", 331)
	other.cmd("PASS s3cret-pw", 230)
	if recs := h.logs.records("session refused"); len(recs) != 1 || !strings.Contains(recs[0], `"limit":"max_sessions_per_ip"`) {
		t.Errorf("refusal records %q", recs)
	}
}

func TestMaxFailedLogins(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.PlainAllowed = true }, nil)
	rc := h.raw(h.explicit())
	rc.expect(220)
	for range 2 {
		rc.cmd("USER alice", 331)
		rc.cmd("PASS wrong", 530)
	}
	rc.cmd("USER alice", 331)
	rc.cmd("PASS wrong", 530)
	rc.expect(421)
	rc.expectClosed()
	if recs := h.logs.records("too many failed logins"); len(recs) != 1 {
		t.Errorf("records %q", recs)
	}
	for _, rec := range h.logs.records("session end") {
		if !strings.Contains(rec, `"reason":"too many failed logins"`) {
			t.Errorf("session end %s", rec)
		}
	}
	// A good password after one bad one is fine.
	rc = h.raw(h.explicit())
	rc.expect(220)
	rc.cmd("USER alice", 331)
	rc.cmd("PASS wrong", 530)
	rc.cmd("USER alice", 331)
	rc.cmd("PASS s3cret-pw", 230)
}

func TestLoginTimeout(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.PlainAllowed = true
		c.Timeouts.Login = 300 * time.Millisecond
		c.Timeouts.Idle = time.Minute
	}, nil)
	rc := h.raw(h.explicit())
	rc.expect(220)
	rc.cmd("USER alice", 331) // and then nothing
	if rep := rc.expect(421); !strings.Contains(rep.Text(), "Login timeout") {
		t.Errorf("got %q", rep.Text())
	}
	rc.expectClosed()

	// Once logged in, only the idle timeout counts.
	in := h.raw(h.explicit())
	in.expect(220)
	in.cmd("USER alice", 331)
	in.cmd("PASS s3cret-pw", 230)
	time.Sleep(600 * time.Millisecond)
	in.cmd("NOOP", 200)
}

// TestRates checks that each cap slows the data it should, and only that:
// waits are only ever checked from below, the one bound a busy machine
// cannot break.
func TestRates(t *testing.T) {
	const size = 384 << 10
	payload := bytes.Repeat([]byte("r"), size)
	backendFn := func(b *ftptest.Server) {
		b.Users = map[string]string{"alice": "s3cret-pw", "bob": "s3cret-pw"}
		b.FS.WriteFile("/f", payload)
	}
	fetch := func(h *harness, user string) time.Duration {
		t.Helper()
		c := h.dialUser(user)
		began := time.Now()
		r, err := c.Retr("/f")
		if err != nil {
			t.Error(err)
			return 0
		}
		got, err := io.ReadAll(r)
		if err != nil || r.Close() != nil || !bytes.Equal(got, payload) {
			t.Errorf("%s: %d bytes, %v", user, len(got), err)
		}
		return time.Since(began)
	}
	parallel := func(h *harness, users ...string) time.Duration {
		began := time.Now()
		var wg sync.WaitGroup
		for _, u := range users {
			wg.Go(func() { fetch(h, u) })
		}
		wg.Wait()
		return time.Since(began)
	}
	const rate = 256 << 10 // 384 KiB at 256 KiB/s: 1.5 s, less the first burst

	h := newHarness(t, func(c *Config) { c.Limits.SessionRate = rate }, backendFn)
	if d := fetch(h, "alice"); d < time.Second {
		t.Errorf("session_rate: 384 KiB in %v, want >= 1s at 256 KiB/s", d)
	}

	h = newHarness(t, func(c *Config) { c.Limits.UserRate = rate }, backendFn)
	if d := parallel(h, "alice", "alice"); d < 2500*time.Millisecond {
		t.Errorf("user_rate: two sessions of one user moved 768 KiB in %v, want >= 2.5s", d)
	}

	h = newHarness(t, func(c *Config) { c.Limits.GlobalRate = rate }, backendFn)
	if d := parallel(h, "alice", "bob"); d < 2500*time.Millisecond {
		t.Errorf("global_rate: two users moved 768 KiB in %v, want >= 2.5s", d)
	}

	// The control connection is never slowed: an ABOR cuts a capped
	// transfer short, and another session's commands are answered.
	h = newHarness(t, func(c *Config) { c.Limits.GlobalRate = 16 << 10 }, backendFn)
	rc := h.rawTLS()
	rc.cmd("PBSZ 0", 200)
	rc.cmd("PROT C", 200)
	data := rc.epsvData()
	defer data.Close()
	rc.cmd("RETR /f", 150)
	if _, err := io.ReadFull(data, make([]byte, 1024)); err != nil {
		t.Fatal(err)
	}
	other := h.rawTLS()
	other.cmd("NOOP", 200)
	rc.send("ABOR")
	rc.expect(426)
	rc.expect(226)
	rc.cmd("NOOP", 200)
}

// dialUser is dial as user (password s3cret-pw).
func (h *harness) dialUser(user string) *ftp.ServerConn {
	h.t.Helper()
	c, err := ftp.Dial(h.explicit(), ftp.DialWithTimeout(10*time.Second), ftp.DialWithExplicitTLS(h.sessionTLS()))
	if err != nil {
		h.t.Fatal(err)
	}
	if err := c.Login(user, "s3cret-pw"); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Quit() })
	return c
}

func TestRateLimiter(t *testing.T) {
	l := newRateLimiter(100 << 10) // burst: 10 KiB
	if d := l.take(10 << 10); d != 0 {
		t.Errorf("the first burst waited %v", d)
	}
	// 50 KiB more at 100 KiB/s: about half a second of debt.
	if d := l.take(50 << 10); d < 300*time.Millisecond || d > 550*time.Millisecond {
		t.Errorf("50 KiB of debt at 100 KiB/s: wait %v, want about 500ms", d)
	}
	if c := rateChunk(1 << 30); c != copyBufSize {
		t.Errorf("chunk at 1 GiB/s: %d", c)
	}
	if c := rateChunk(100); c != 1<<10 {
		t.Errorf("chunk at 100 B/s: %d", c)
	}
}
