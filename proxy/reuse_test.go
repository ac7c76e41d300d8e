package proxy

import (
	"crypto/tls"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ftpsgate/ftpsgate/ftpctl"
	"github.com/ftpsgate/ftpsgate/tlsoffload"
)

// reuseHarness is a proxy whose session-bound TLS configurations come from
// tlsoffload's Offload, as ftpsgate serve sets them up.
func reuseHarness(t *testing.T) *harness {
	off, err := tlsoffload.New(tlsoffload.Config{})
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, func(c *Config) {
		c.TLSConfig = off.TLSConfig()
		c.SessionTLS = func(id string) (*tls.Config, *tls.Config) { return off.ControlConfig(id), off.DataConfig(id) }
		c.Logger = c.Logger.Level(zerolog.DebugLevel)
	}, nil)
	h.client.InsecureSkipVerify = true // the harness trusts another certificate
	return h
}

// TestRequireSessionReuse: a data connection that resumes its control
// session passes; one that does not, or that carries another session's
// ticket, is refused with 522 and a log line naming the client.
func TestRequireSessionReuse(t *testing.T) {
	t.Parallel()
	h := reuseHarness(t)
	h.backend.FS.WriteFile("/f", []byte("bound data"))

	// jlaffaye/ftp offers the control session's ticket: accepted.
	c := h.dial()
	r, err := c.Retr("f")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r)
	if err := r.Close(); err != nil || string(got) != "bound data" {
		t.Fatalf("resuming client: %q, %v", got, err)
	}

	// A data connection without a ticket, as stock ftplib makes: 522.
	rc := h.rawTLS()
	fresh := h.client.Clone()
	fresh.ClientSessionCache = nil
	rc.cmd("PBSZ 0", 200)
	rc.cmd("PROT P", 200)
	if rep := dataRetr(t, rc, fresh); rep.Code != ftpctl.CodeNetProtoNotSupp {
		t.Errorf("data connection without resumption: %d %q, want 522", rep.Code, rep.Lines)
	}
	rc.cmd("NOOP", 200)

	// Another session's ticket: session B's data connection offers the
	// ticket of session A (whose cache holds it).
	other := h.client.Clone()
	other.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	a := h.raw(h.explicit())
	a.expect(220)
	a.cmd("AUTH TLS", 234)
	ta := tls.Client(a.conn, other)
	if err := ta.Handshake(); err != nil {
		t.Fatal(err)
	}
	a.conn, a.r = ta, ftpctl.NewReader(bufioReader(ta), 0)
	a.cmd("NOOP", 200) // the TLS 1.3 ticket arrives with the first read
	b := h.rawTLS()
	b.cmd("PBSZ 0", 200)
	b.cmd("PROT P", 200)
	if rep := dataRetr(t, b, other); rep.Code != ftpctl.CodeNetProtoNotSupp {
		t.Errorf("data connection with another session's ticket: %d %q, want 522", rep.Code, rep.Lines)
	}
	waitFor(t, "the refusals logged", func() bool {
		return strings.Contains(h.logs.String(), "did not resume the control TLS session: refused") &&
			strings.Contains(h.logs.String(), "another session's TLS ticket")
	})
}

// dataRetr runs RETR f over EPSV with a data TLS configuration and returns
// the final reply.
func dataRetr(t *testing.T, rc *rawClient, cfg *tls.Config) ftpctl.Reply {
	t.Helper()
	raw := rc.epsvData()
	defer raw.Close()
	rc.send("RETR f")
	rc.expect(150)
	dc := tls.Client(raw, cfg)
	dc.SetDeadline(time.Now().Add(10 * time.Second))
	io.Copy(io.Discard, dc)
	rep, err := rc.r.ReadReply()
	if err != nil {
		t.Fatal(err)
	}
	return rep
}
