package proxy

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// TestReload swaps the backends under a session that is transferring: the
// old session finishes on its backend, new sessions go to the new one, and
// an invalid configuration changes nothing.
func TestReload(t *testing.T) {
	f := newFleet(t, 2)
	big := bytes.Repeat([]byte("reload-"), 1_200_000) // 8 MiB: more than the socket buffers hold
	f.backends[0].FS.WriteFile("/big", big)
	all := f.config()
	h := poolHarness(t, f, func(c *Config) {
		c.Backends = all[:1]
		c.Banner = "first"
	})

	old, b := login(t, h.explicit(), nil, "alice")
	defer old.Quit()
	if b != 0 {
		t.Fatalf("first session on b%d, want b0", b)
	}
	r, err := old.Retr("/big")
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 64<<10)
	if _, err := io.ReadFull(r, head); err != nil {
		t.Fatal(err)
	}

	cfg := h.cfg
	cfg.Backends = all[1:]
	cfg.Banner = "second"
	if _, err := h.srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		c, b := login(t, h.explicit(), nil, "bob")
		c.Quit()
		if b != 1 {
			t.Fatalf("session after reload on b%d, want b1", b)
		}
	}
	rc := h.raw(h.explicit())
	if g := rc.expect(220).Text(); !strings.Contains(g, "second") {
		t.Errorf("greeting after reload %q, want the new banner", g)
	}
	rc.conn.Close()

	// The old session kept its backend and its transfer.
	rest, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("old transfer after reload: %v", err)
	}
	if got := append(head, rest...); !bytes.Equal(got, big) {
		t.Fatalf("old transfer: %d bytes, want %d intact", len(got), len(big))
	}
	if size, err := old.FileSize("/id"); err != nil || size != 1 {
		t.Fatalf("old session after reload: size %d, %v; want b0's file", size, err)
	}

	bad := cfg
	bad.Backends = nil
	if _, err := h.srv.Reload(bad); err == nil || !strings.Contains(err.Error(), "no backend") {
		t.Fatalf("Reload without backends: %v, want refused", err)
	}
	c, b := login(t, h.explicit(), nil, "bob")
	c.Quit()
	if b != 1 {
		t.Fatalf("after a refused reload the session went to b%d, want b1", b)
	}
}

// TestReloadKeepsBackendState checks that a backend kept across a reload
// keeps its live-session count and health, and that one whose address
// changed starts afresh.
func TestReloadKeepsBackendState(t *testing.T) {
	f := newFleet(t, 2)
	all := f.config()
	h := poolHarness(t, f, func(c *Config) { c.Backends = all[:1] })
	c, _ := login(t, h.explicit(), nil, "alice")
	defer c.Quit()
	m := h.srv.current().pool.lookup("b0")
	waitFor(t, "one live session on b0", func() bool { return m.active.Load() == 1 })

	cfg := h.cfg
	cfg.Backends = all
	if _, err := h.srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if n := h.srv.current().pool.lookup("b0").active.Load(); n != 1 {
		t.Errorf("b0 after reload: %d live sessions, want 1", n)
	}

	moved := all[1:]
	moved[0].Name = "b0" // b0's name, b1's address: another server
	cfg.Backends = moved
	if _, err := h.srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if n := h.srv.current().pool.lookup("b0").active.Load(); n != 0 {
		t.Errorf("b0 at a new address: %d live sessions, want 0", n)
	}
	c.Quit()
	waitFor(t, "the old b0's count back to zero", func() bool { return m.active.Load() == 0 })
}
