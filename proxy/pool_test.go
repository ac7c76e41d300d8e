package proxy

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/ftpsgate/ftpsgate/ftpctl"
	"github.com/ftpsgate/ftpsgate/ftpctl/ftptest"
	"github.com/ftpsgate/ftpsgate/persist"
)

// fleet is several in-memory backends; each holds a file /id whose size
// tells which backend a session reached (1 for the first, 2 for the second...).
type fleet struct {
	backends []*ftptest.Server
}

func newFleet(t testing.TB, n int) *fleet {
	f := &fleet{}
	for i := range n {
		b := ftptest.NewUnstartedServer()
		b.Users = map[string]string{"alice": "s3cret-pw", "bob": "s3cret-pw", "partner-x": "s3cret-pw"}
		for u := range 50 {
			b.Users[fmt.Sprintf("u%d", u)] = "s3cret-pw"
		}
		b.FS.WriteFile("/id", []byte(strings.Repeat("x", i+1)))
		b.Start()
		t.Cleanup(b.Close)
		f.backends = append(f.backends, b)
	}
	return f
}

func (f *fleet) config(weights ...int) []Backend {
	var out []Backend
	for i, b := range f.backends {
		w := 0
		if i < len(weights) {
			w = weights[i]
		}
		out = append(out, Backend{Address: b.Addr(), Name: fmt.Sprintf("b%d", i), Weight: w})
	}
	return out
}

// poolHarness is a proxy over a fleet, in plaintext (tls.require off) so
// that hundreds of sessions stay cheap; TLS is the other tests' business.
func poolHarness(t testing.TB, f *fleet, cfgFn func(*Config)) *harness {
	return newHarness(t, func(c *Config) {
		c.PlainAllowed = true
		c.Backends = f.config()
		c.Health.Interval = 50 * time.Millisecond
		c.Health.Fall, c.Health.Rise = 1, 2
		if cfgFn != nil {
			cfgFn(c)
		}
	}, nil)
}

// login opens a plain session from source IP from (nil: any) as user and
// returns it with the index of the backend it reached.
func login(t testing.TB, addr string, from net.IP, user string) (*ftp.ServerConn, int) {
	t.Helper()
	opts := []ftp.DialOption{ftp.DialWithTimeout(10 * time.Second)}
	if from != nil {
		opts = append(opts, ftp.DialWithDialer(net.Dialer{LocalAddr: &net.TCPAddr{IP: from}, Timeout: 10 * time.Second}))
	}
	c, err := ftp.Dial(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login(user, "s3cret-pw"); err != nil {
		c.Quit()
		t.Fatalf("login %s: %v", user, err)
	}
	size, err := c.FileSize("/id")
	if err != nil {
		c.Quit()
		t.Fatal(err)
	}
	return c, int(size) - 1
}

// landings logs in n times in a row (each session ended before the next)
// and counts where each landed.
func landings(t testing.TB, addr string, n int, user func(i int) string) []int {
	counts := make([]int, 8)
	for i := range n {
		c, b := login(t, addr, nil, user(i))
		c.Quit()
		counts[b]++
	}
	return counts
}

func alice(int) string { return "alice" }

func TestPolicyDistribution(t *testing.T) {
	t.Parallel()
	f := newFleet(t, 3)
	for _, tc := range []struct {
		name    string
		policy  Policy
		weights []int
		n       int
		want    []int
		slack   int
	}{
		{"round_robin", RoundRobin, nil, 30, []int{10, 10, 10}, 1},
		{"round_robin weighted", RoundRobin, []int{3, 2, 1}, 30, []int{15, 10, 5}, 1},
		// Random within generous bounds: a failure here is a broken policy,
		// not bad luck (p < 1e-9).
		{"random weighted", Random, []int{3, 2, 1}, 300, []int{150, 100, 50}, 45},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := poolHarness(t, f, func(c *Config) {
				c.Backends = f.config(tc.weights...)
				c.Balance.Policy = tc.policy
			})
			got := landings(t, h.explicit(), tc.n, alice)
			for i, w := range tc.want {
				if got[i] < w-tc.slack || got[i] > w+tc.slack {
					t.Errorf("backend %d got %d sessions, want %d±%d (all: %v)", i, got[i], w, tc.slack, got[:3])
				}
			}
		})
	}
}

func TestLeastConnFillsTheEmptiest(t *testing.T) {
	t.Parallel()
	f := newFleet(t, 3)
	h := poolHarness(t, f, func(c *Config) { c.Balance.Policy = LeastConn })
	held := map[int][]*ftp.ServerConn{}
	for range 6 {
		c, b := login(t, h.explicit(), nil, "alice")
		held[b] = append(held[b], c)
	}
	for b := range 3 {
		if len(held[b]) != 2 {
			t.Fatalf("6 held sessions spread %d/%d/%d, want 2 each", len(held[0]), len(held[1]), len(held[2]))
		}
	}
	for _, c := range held[1] {
		c.Quit()
	}
	waitFor(t, "sessions on b1 to end", func() bool { return f.backends[1].ActiveSessions() == 0 })
	waitFor(t, "the proxy to count them", func() bool { return h.srv.ActiveSessions() == 4 })
	for range 2 {
		c, b := login(t, h.explicit(), nil, "alice")
		defer c.Quit()
		if b != 1 {
			t.Errorf("new session went to b%d, want the emptiest, b1", b)
		}
	}
	for _, cs := range held {
		for _, c := range cs {
			c.Quit()
		}
	}
}

// TestHashesAgreeAcrossInstances: two proxies with the same backends send
// each client IP (and each user) to the same backend, with no shared state.
func TestHashesAgreeAcrossInstances(t *testing.T) {
	t.Parallel()
	f := newFleet(t, 3)
	for _, policy := range []Policy{SourceHash, UserHash} {
		t.Run(policy.String(), func(t *testing.T) {
			h1 := poolHarness(t, f, func(c *Config) { c.Balance.Policy = policy })
			h2 := poolHarness(t, f, func(c *Config) { c.Balance.Policy = policy })
			counts := make([]int, 3)
			for i := 1; i <= 200; i++ {
				ip := net.IPv4(127, 0, 0, byte(i))
				user := fmt.Sprintf("u%d", i%50)
				c1, b1 := login(t, h1.explicit(), ip, user)
				c1.Quit()
				c2, b2 := login(t, h2.explicit(), ip, user)
				c2.Quit()
				if b1 != b2 {
					t.Fatalf("client %s user %s: instance 1 chose b%d, instance 2 b%d", ip, user, b1, b2)
				}
				counts[b1]++
			}
			for b, n := range counts {
				if n == 0 {
					t.Errorf("backend %d got no client of 200: %v", b, counts)
				}
			}
		})
	}
}

// TestBackendKilledAndRestarted: a dead backend's sessions get 421, new
// sessions go to the others at once, the others' sessions are untouched, and
// the backend returns after rise good checks.
func TestBackendKilledAndRestarted(t *testing.T) {
	t.Parallel()
	f := newFleet(t, 3)
	h := poolHarness(t, f, nil)
	held := map[int]*ftp.ServerConn{}
	for len(held) < 3 {
		c, b := login(t, h.explicit(), nil, "alice")
		if held[b] != nil {
			c.Quit()
			continue
		}
		held[b] = c
	}
	addr := f.backends[1].Addr()
	f.backends[1].Close()
	// PWD, not NOOP: the proxy answers NOOP itself.
	if _, err := held[1].CurrentDir(); err == nil || !strings.Contains(err.Error(), "421") {
		t.Errorf("session on the killed backend: %v, want 421", err)
	}
	waitFor(t, "b1 marked down", func() bool { return h.srv.current().pool.members[1].down.Load() })
	for _, b := range []int{0, 2} {
		if _, err := held[b].CurrentDir(); err != nil {
			t.Errorf("session on b%d disturbed: %v", b, err)
		}
		held[b].Quit()
	}
	got := landings(t, h.explicit(), 10, alice)
	if got[1] != 0 || got[0]+got[2] != 10 {
		t.Errorf("after the kill, sessions landed %v", got[:3])
	}
	if !strings.Contains(h.logs.String(), `"backend":"b1","error"`) || len(h.logs.records("backend down")) == 0 {
		t.Error("the backend going down was not logged")
	}

	revived := ftptest.NewUnstartedServer()
	revived.Users = map[string]string{"alice": "s3cret-pw"}
	revived.FS.WriteFile("/id", []byte("xx"))
	if err := revived.StartOn(addr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(revived.Close)
	waitFor(t, "b1 back up", func() bool { return !h.srv.current().pool.members[1].down.Load() })
	if got := landings(t, h.explicit(), 6, alice); got[1] == 0 {
		t.Errorf("the revived backend got no session: %v", got[:3])
	}
	if len(h.logs.records("backend up")) == 0 {
		t.Error("the backend coming back was not logged")
	}
}

// TestFailoverAndEjection: a backend that accepts but never greets is
// skipped within the same session, and left out of the next ones.
func TestFailoverAndEjection(t *testing.T) {
	t.Parallel()
	f := newFleet(t, 1)
	mute, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mute.Close() })
	go func() {
		var conns []net.Conn // accepted, never answered
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := mute.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	h := poolHarness(t, f, func(c *Config) {
		c.Backends = []Backend{{Address: mute.Addr().String(), Name: "mute"}, c.Backends[0]}
		c.Health.Disabled = true
		c.Timeouts.BackendDial = 300 * time.Millisecond
	})
	c, b := login(t, h.explicit(), nil, "alice")
	c.Quit()
	if b != 0 {
		t.Fatalf("landed on %d", b)
	}
	ejected := h.logs.records("backend ejected")
	if len(ejected) != 1 {
		t.Fatalf("the mute backend was not ejected:\n%s", h.logs.String())
	}
	// Logged by the session whose dial failed: it carries the session's fields.
	for _, want := range []string{`"session":"`, `"client":"127.0.0.1:`, `"backend":"mute"`, `"backoff":`} {
		if !strings.Contains(ejected[0], want) {
			t.Errorf("backend ejected record lacks %s: %s", want, ejected[0])
		}
	}
	// Ejected: the next sessions do not wait for it again.
	for range 3 {
		c, _ := login(t, h.explicit(), nil, "alice")
		c.Quit()
	}
	if n := len(h.logs.records("backend ejected")); n != 1 {
		t.Errorf("the ejected backend was tried again %d times within its back-off", n-1)
	}
}

// TestAffinity: a client comes back to its backend, across a proxy restart
// through the state file; a pin to a down backend is replaced.
func TestAffinity(t *testing.T) {
	t.Parallel()
	f := newFleet(t, 3)
	state := t.TempDir() + "/affinity.json"
	open := func() *persist.FileStore {
		fs, err := persist.OpenFile(state, 0)
		if err != nil {
			t.Fatal(err)
		}
		return fs
	}
	ip1, ip2 := net.IPv4(127, 0, 0, 1), net.IPv4(127, 0, 0, 2)

	store := open()
	h := poolHarness(t, f, func(c *Config) {
		c.Balance.Affinity = SourceAffinity
		c.Balance.Store = store
		c.Health.Disabled = true
	})
	c, first := login(t, h.explicit(), ip2, "alice") // round robin: b0
	c.Quit()
	c, pinned := login(t, h.explicit(), ip1, "alice") // b1, pinned
	c.Quit()
	if first == pinned {
		t.Fatalf("round robin gave b%d twice", first)
	}
	for range 3 {
		if c, b := login(t, h.explicit(), ip1, "bob"); b != pinned {
			t.Fatalf("pinned client went to b%d, not b%d", b, pinned)
		} else {
			c.Quit()
		}
	}
	if err := store.Save(); err != nil {
		t.Fatal(err)
	}

	// A new proxy loads the pins: round robin would start at b0 again.
	h2 := poolHarness(t, f, func(c *Config) {
		c.Balance.Affinity = SourceAffinity
		c.Balance.Store = open()
		c.Health.Disabled = true
	})
	if c, b := login(t, h2.explicit(), ip1, "alice"); b != pinned {
		t.Fatalf("after restart the pinned client went to b%d, not b%d", b, pinned)
	} else {
		c.Quit()
	}

	// The pinned backend goes down: re-pinned elsewhere, and logged.
	h2.srv.current().pool.members[pinned].down.Store(true)
	c, moved := login(t, h2.explicit(), ip1, "alice")
	c.Quit()
	if moved == pinned {
		t.Fatal("a pin to a down backend was honoured")
	}
	if !strings.Contains(h2.logs.String(), "re-pinning") {
		t.Error("re-pinning was not logged")
	}
	h2.srv.current().pool.members[pinned].down.Store(false)
	if c, b := login(t, h2.explicit(), ip1, "alice"); b != moved {
		t.Errorf("the new pin b%d was not kept: went to b%d", moved, b)
	} else {
		c.Quit()
	}
}

// TestRoutes: sessions are routed by TLS server name, by HOST and by user.
func TestRoutes(t *testing.T) {
	t.Parallel()
	f := newFleet(t, 4)
	h := newHarness(t, func(c *Config) {
		all := f.config()
		c.PlainAllowed = true
		c.Backends = all[:1]
		c.Routes = []Route{
			{Name: "by-sni", SNI: []string{"*.sni.example"}, Backends: all[1:2]},
			{Name: "by-host", Host: []string{"ftp.host.example"}, Backends: all[2:3]},
			{Name: "by-user", User: []string{"partner-*"}, Backends: all[3:4]},
		}
	}, nil)
	if _, b := login(t, h.explicit(), nil, "alice"); b != 0 {
		t.Errorf("unrouted session went to b%d", b)
	}
	if _, b := login(t, h.explicit(), nil, "partner-x"); b != 3 {
		t.Errorf("user route: b%d", b)
	}

	rc := h.raw(h.explicit())
	rc.expect(220)
	rc.cmd("HOST ftp.host.example", 220)
	rc.cmd("USER alice", 331)
	rc.cmd("PASS s3cret-pw", 230)
	if rep := rc.cmd("SIZE /id", 213); rep.Text() != "3" {
		t.Errorf("HOST route reached the backend with /id of size %s, want 3", rep.Text())
	}
	if !strings.Contains(strings.Join(f.backends[2].Commands(), "\n"), "HOST ftp.host.example") {
		t.Error("HOST was not replayed to the routed backend")
	}

	cfg := h.client.Clone()
	cfg.ServerName, cfg.InsecureSkipVerify = "files.sni.example", true
	c, err := ftp.Dial(h.implicit(), ftp.DialWithTimeout(5*time.Second), ftp.DialWithTLS(cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Quit()
	if err := c.Login("alice", "s3cret-pw"); err != nil {
		t.Fatal(err)
	}
	if size, _ := c.FileSize("/id"); size != 2 {
		t.Errorf("SNI route reached the backend with /id of size %d, want 2", size)
	}
}

// TestFeatFromHealthChecks: before login, FEAT lists the backends' common
// features as the health checks found them.
func TestFeatFromHealthChecks(t *testing.T) {
	t.Parallel()
	f := newFleet(t, 2)
	h := poolHarness(t, f, nil)
	waitFor(t, "features known", func() bool { _, ok := h.srv.current().pool.commonFeatures(); return ok })
	rc := h.raw(h.explicit())
	rc.expect(220)
	feats := ftpctl.ParseFeat(rc.cmd("FEAT", 211))
	for _, want := range []string{"AUTH TLS", "SIZE", "MDTM", "REST STREAM"} {
		if !containsFold(feats, want) {
			t.Errorf("FEAT before login lacks %q: %v", want, feats)
		}
	}
	// EPRT is the proxy's own, not the backends' passed on beside it; CCC
	// is refused unless tls.allow_ccc.
	if n := countOf(feats, "EPRT"); n != 1 {
		t.Errorf("FEAT lists EPRT %d times, want once: %v", n, feats)
	}
	if containsFold(feats, "CCC") {
		t.Errorf("FEAT advertises CCC, which is off: %v", feats)
	}
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// TestPoolUnderConcurrency: least_conn and round robin keep their counts
// straight under parallel logins (run with -race).
func TestPoolUnderConcurrency(t *testing.T) {
	t.Parallel()
	p := newPool("t", LeastConn, []Backend{{Name: "a"}, {Name: "b"}, {Name: "c", Weight: 2}}, nil)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				m := p.candidates(choice{}, 1)[0]
				m.active.Add(1)
			}
		}()
	}
	wg.Wait()
	a, b, c := p.members[0].active.Load(), p.members[1].active.Load(), p.members[2].active.Load()
	if a+b+c != 8000 || c < a+b-200 || c > a+b+200 {
		t.Errorf("least_conn with weights 1:1:2 spread 8000 sessions %d/%d/%d", a, b, c)
	}
}
