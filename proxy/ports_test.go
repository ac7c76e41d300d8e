package proxy

import (
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ftpsgate/ftpsgate/ftpctl"
)

// TestPortsDrawnAtRandom: with part of the range taken in one block, the
// next ports are spread over what is free, not piled on the first free
// port after the block (which a walk from a random start would favour,
// making the port an attacker should race to easy to guess).
func TestPortsDrawnAtRandom(t *testing.T) {
	t.Parallel()
	r := freePortRange(t, 200)
	a := newPortAllocator(r)
	for p := r.First; p < r.First+100; p++ {
		a.reserve(p) // held by sessions, as far as the allocator knows
	}
	const draws = 200
	counts := map[uint16]int{}
	for range draws {
		ln, free, err := a.listen(netip.MustParseAddr("127.0.0.1"))
		if err != nil {
			t.Fatal(err)
		}
		port := uint16(ln.Addr().(*net.TCPAddr).Port)
		if port < r.First+100 || port > r.Last {
			t.Fatalf("port %d: outside the free part %d-%d", port, r.First+100, r.Last)
		}
		counts[port]++
		ln.Close()
		free()
	}
	for port, n := range counts {
		if n > draws/10 {
			t.Errorf("port %d drawn %d times out of %d", port, n, draws)
		}
	}
	if len(counts) < 20 {
		t.Errorf("only %d different ports in %d draws from 100", len(counts), draws)
	}
}

// TestPassivePortsShared: many sessions ask for passive ports from a range
// too small for all of them at once. No port is ever handed to two of them
// at once, those left without one get 425, the exhaustion is logged with
// the range and counted, and every transfer that got a port completes.
func TestPassivePortsShared(t *testing.T) {
	t.Parallel()
	r := freePortRange(t, 4)
	reg := prometheus.NewRegistry()
	metrics := NewMetrics(reg)
	h := newHarness(t, func(c *Config) {
		c.PassivePorts = r
		c.PlainAllowed = true
		c.Metrics = metrics
	}, nil)
	h.backend.FS.WriteFile("/f", randomBytes(t, 32<<10))

	var (
		mu        sync.Mutex
		held      = map[uint16]bool{} // ports a client was given and has not connected to yet
		got, full int
		wg        sync.WaitGroup
	)
	for range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rc := h.raw(h.explicit())
			rc.expect(220)
			rc.cmd("USER alice", 331)
			rc.cmd("PASS s3cret-pw", 230)
			for range 10 {
				rc.send("EPSV")
				rep := rc.expect229or425()
				if rep == 0 {
					mu.Lock()
					full++
					mu.Unlock()
					continue
				}
				mu.Lock()
				if held[rep] {
					t.Errorf("port %d handed to two sessions at once", rep)
				}
				held[rep] = true
				got++
				mu.Unlock()
				// Hold the port a little, as clients do, then use it.
				rc.cmd("NOOP", 200)
				// Unmarked before connecting: once the proxy accepts, the
				// port is free for another session.
				mu.Lock()
				delete(held, rep)
				mu.Unlock()
				dconn, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(rep))))
				if err != nil {
					t.Error(err)
					return
				}
				rc.send("RETR f")
				rc.expect(150)
				n, _ := io.Copy(io.Discard, dconn)
				dconn.Close()
				rc.expect(226)
				if n != 32<<10 {
					t.Errorf("read %d bytes", n)
				}
			}
			rc.cmd("QUIT", 221)
		}()
	}
	wg.Wait()
	if got == 0 || full == 0 {
		t.Fatalf("%d ports handed out, %d refusals: want both", got, full)
	}
	recs := h.logs.records("passive ports exhausted")
	if len(recs) != full || !strings.Contains(recs[0], `"passive_ports":"`+r.String()+`"`) || !strings.Contains(recs[0], `"level":"warn"`) {
		t.Errorf("%d refusals, %d exhaustion records; first: %s", full, len(recs), recs)
	}
	if v := scrape(t, reg)[`ftpsgate_limit_hits_total{limit="passive_ports"}`]; v != float64(full) {
		t.Errorf(`limit_hits_total{limit="passive_ports"} = %v, want %d`, v, full)
	}
	waitFor(t, "ports to be released", func() bool { return h.srv.ports.inUseCount() == 0 })
}

// expect229or425 reads the answer to EPSV: the port, or 0 for 425.
func (rc *rawClient) expect229or425() uint16 {
	rc.t.Helper()
	rep, err := rc.r.ReadReply()
	if err != nil {
		rc.t.Fatal(err)
	}
	switch rep.Code {
	case 425:
		return 0
	case 229:
		port, err := ftpctl.ParseEPSV(rep.Text())
		if err != nil {
			rc.t.Fatal(err)
		}
		return port
	}
	rc.t.Fatalf("EPSV: got %d %q", rep.Code, rep.Lines)
	return 0
}
