package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestShutdownDrains: during Shutdown an idle session gets 421 at once, a
// download in flight completes intact with its 226 and then gets 421, and
// Shutdown returns nil once both are gone; nothing is left running. Not
// parallel, so that the goroutine count means something.
func TestShutdownDrains(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Run("drain", func(t *testing.T) {
		want := make([]byte, 8<<20)
		rand.NewChaCha8([32]byte{7}).Read(want)
		h := newHarness(t, func(cfg *Config) { cfg.Health.Disabled = true }, nil)
		h.backend.FS.WriteFile("/big", want)

		idle := h.rawTLS()
		busy := h.rawTLS()
		busy.cmd("PBSZ 0", 200)
		busy.cmd("PROT P", 200)
		port := busy.epsv()
		raw, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		raw.SetDeadline(time.Now().Add(30 * time.Second))
		busy.send("RETR big")
		busy.expect(150)
		data := dataTLS(t, raw, busy.tls)
		head := make([]byte, 64<<10)
		if _, err := io.ReadFull(data, head); err != nil {
			t.Fatal(err)
		}

		done := make(chan error, 1)
		go func() { done <- h.srv.Shutdown(context.Background()) }()

		idle.expect(421)
		idle.expectClosed()
		select {
		case err := <-done:
			t.Fatalf("Shutdown returned %v with a transfer in flight", err)
		default:
		}
		// No new clients once draining.
		waitFor(t, "the listener to close", func() bool {
			c, err := net.DialTimeout("tcp", h.explicit(), time.Second)
			if err == nil {
				c.Close()
			}
			return err != nil
		})

		rest, err := io.ReadAll(data)
		if err != nil {
			t.Fatal(err)
		}
		if got := append(head, rest...); !bytes.Equal(got, want) {
			t.Fatalf("downloaded %d bytes, not the file's %d", len(got), len(want))
		}
		busy.expect(226)
		busy.expect(421)
		busy.expectClosed()

		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Shutdown did not return after the sessions ended")
		}
		if n := h.srv.ActiveSessions(); n != 0 {
			t.Errorf("%d sessions left after Shutdown", n)
		}
		if r := h.logs.records("draining"); len(r) != 1 || !bytes.Contains([]byte(r[0]), []byte(`"sessions":2,"idle":1,"busy":1`)) {
			t.Errorf("draining record: %q", r)
		}
		if r := h.logs.records("drained"); len(r) != 1 || !bytes.Contains([]byte(r[0]), []byte(`"cut":0`)) {
			t.Errorf("drained record: %q", r)
		}
	})
	waitFor(t, "goroutines to return", func() bool { return runtime.NumGoroutine() <= before+2 })
}

// TestShutdownDeadline: a transfer that would never end is cut when
// Shutdown's context is done; Shutdown returns the context's error only
// once the session is gone.
func TestShutdownDeadline(t *testing.T) {
	t.Parallel()
	backend := startAbortBackend(t, func(ctl *bufio.ReadWriter, data net.Conn) {
		ctl.WriteString("150 Opening BINARY mode data connection.\r\n")
		ctl.Flush()
		writeUntilClosed(data)
	})
	h := newHarness(t, func(cfg *Config) {
		cfg.Backends = []Backend{{Address: backend.ln.Addr().String(), Name: "scripted"}}
		cfg.Health.Disabled = true
	}, nil)
	rc := h.rawTLS()
	data := rc.epsvData()
	defer data.Close()
	rc.send("RETR endless")
	rc.expect(150) // and never read the data: the transfer is stuck

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	began := time.Now()
	err := h.srv.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want the deadline", err)
	}
	if d := time.Since(began); d < 300*time.Millisecond {
		t.Errorf("Shutdown returned after %v, before its deadline", d)
	}
	if n := h.srv.ActiveSessions(); n != 0 {
		t.Errorf("%d sessions left after Shutdown returned", n)
	}
	rc.expectClosed()
	if r := h.logs.records("drained"); len(r) != 1 || !bytes.Contains([]byte(r[0]), []byte(`"cut":1`)) {
		t.Errorf("drained record: %q", r)
	}
}

// TestShutdownIdleOnly: with only idle sessions Shutdown is quick, and a
// second call is refused.
func TestShutdownIdleOnly(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(cfg *Config) {
		cfg.Health.Disabled = true
		cfg.Limits.MaxLoginsPerIP = 1
	}, nil)
	a := h.rawTLS()
	b := h.raw(h.explicit())
	b.expect(220) // not even logged in
	c := h.raw(h.explicit())
	waitFor(t, "c to wait for b's login place", func() bool {
		return len(h.logs.records("session waits for a login place")) == 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for _, rc := range []*rawClient{a, b, c} {
		rc.expect(421)
		rc.expectClosed()
	}
	if r := h.logs.records("draining"); len(r) != 1 || !strings.Contains(r[0], `"idle":3`) {
		t.Errorf("draining record: %q", r)
	}
	if err := h.srv.Shutdown(ctx); err == nil {
		t.Error("a second Shutdown succeeded")
	}
}
