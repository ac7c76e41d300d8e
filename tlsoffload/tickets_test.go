package tlsoffload

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// versions runs f for TLS 1.2 and 1.3: their tickets travel differently
// (in the handshake; after it).
func versions(t *testing.T, f func(t *testing.T, v uint16)) {
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			t.Parallel()
			f(t, v)
		})
	}
}

func writeTicketKeys(t *testing.T, path string, keys ...[32]byte) {
	t.Helper()
	var b strings.Builder
	b.WriteString("# ftpsgate ticket keys, newest first\n")
	for _, k := range keys {
		b.WriteString(base64.StdEncoding.EncodeToString(k[:]) + "\n")
	}
	replaceFile(t, path, []byte(b.String()))
}

func randomKey(t *testing.T) [32]byte {
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		t.Fatal(err)
	}
	return k
}

// TestTicketKeyFileShared: two instances reading one TicketKeyFile resume
// each other's sessions; an instance with its own keys does not.
func TestTicketKeyFileShared(t *testing.T) {
	t.Parallel()
	versions(t, func(t *testing.T, v uint16) {
		dir := t.TempDir()
		pair, cert := writePair(t, dir, "ftp", time.Hour, "ftp.example.com")
		keyFile := filepath.Join(dir, "ticket.keys")
		writeTicketKeys(t, keyFile, randomKey(t), randomKey(t))
		cfg := Config{CertFile: pair.CertFile, KeyFile: pair.KeyFile, TicketKeyFile: keyFile}
		o1, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		o2, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		cfg.TicketKeyFile = ""
		alone, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		s1, s2, s3 := startServer(t, o1.TLSConfig), startServer(t, o2.TLSConfig), startServer(t, alone.TLSConfig)

		cc := &tls.Config{ServerName: "ftp.example.com", RootCAs: poolOf(cert), MaxVersion: v, ClientSessionCache: tls.NewLRUClientSessionCache(4)}
		for i, step := range []struct {
			addr   string
			resume bool
		}{
			{s1.addr, false}, // first contact
			{s2.addr, true},  // the other instance, same keys
			{s1.addr, true},
			{s3.addr, false}, // an instance with keys of its own
		} {
			cs, err := handshake(t, step.addr, cc)
			if err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
			if cs.DidResume != step.resume {
				t.Errorf("step %d: DidResume = %v, want %v", i, cs.DidResume, step.resume)
			}
		}
	})
}

// TestTicketKeyFileReload: a new file (new key on top, old kept) is picked
// up by Reload; sessions from the old key still resume; a broken file keeps
// the keys in use.
func TestTicketKeyFileReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pair, cert := writePair(t, dir, "ftp", time.Hour, "ftp.example.com")
	keyFile := filepath.Join(dir, "ticket.keys")
	oldKey, newKey := randomKey(t), randomKey(t)
	writeTicketKeys(t, keyFile, oldKey)
	var ev events
	o, err := New(Config{CertFile: pair.CertFile, KeyFile: pair.KeyFile, TicketKeyFile: keyFile, OnEvent: ev.add})
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, o.TLSConfig)
	cc := &tls.Config{ServerName: "ftp.example.com", RootCAs: poolOf(cert), ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	if _, err := handshake(t, srv.addr, cc); err != nil {
		t.Fatal(err)
	}

	writeTicketKeys(t, keyFile, newKey, oldKey)
	if err := o.Reload(); err != nil {
		t.Fatal(err)
	}
	if ev.count(EventTicketKeys) != 1 {
		t.Errorf("events: %v", ev.list())
	}
	cs, err := handshake(t, srv.addr, cc)
	if err != nil {
		t.Fatal(err)
	}
	if !cs.DidResume {
		t.Error("a ticket of the previous key did not resume after rotation")
	}

	// The new key now encrypts: an instance that knows only it resumes.
	writeTicketKeys(t, filepath.Join(dir, "only-new.keys"), newKey)
	o2, err := New(Config{CertFile: pair.CertFile, KeyFile: pair.KeyFile, TicketKeyFile: filepath.Join(dir, "only-new.keys")})
	if err != nil {
		t.Fatal(err)
	}
	srv2 := startServer(t, o2.TLSConfig)
	if cs, err := handshake(t, srv2.addr, cc); err != nil || !cs.DidResume {
		t.Errorf("ticket from after the reload not encrypted with the new first key: resumed %v, %v", cs.DidResume, err)
	}

	replaceFile(t, keyFile, []byte("not base64\n"))
	if err := o.Reload(); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("Reload with a broken key file: %v", err)
	}
	if cs, err := handshake(t, srv.addr, cc); err != nil || !cs.DidResume {
		t.Errorf("broken key file: keys in use not kept: resumed %v, %v", cs.DidResume, err)
	}
}

func TestTicketKeyFileFormat(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	k := base64.StdEncoding.EncodeToString(make([]byte, 32))
	tests := []struct {
		name, content string
		keys          int
		err           string
	}{
		{"one", k + "\n", 1, ""},
		{"comments and blanks", "# comment\n\n" + k + "\n  " + k + "  \n", 2, ""},
		{"empty", "# nothing\n", 0, "no key"},
		{"short key", base64.StdEncoding.EncodeToString(make([]byte, 16)) + "\n", 0, "line 1"},
		{"raw bytes", string(make([]byte, 32)), 0, "line 1"},
		{"too many", strings.Repeat(k+"\n", 9), 0, "at most 8"},
	}
	for _, tt := range tests {
		path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_"))
		os.WriteFile(path, []byte(tt.content), 0o600)
		keys, _, err := readTicketKeyFile(path)
		if tt.err == "" && (err != nil || len(keys) != tt.keys) {
			t.Errorf("%s: %d keys, %v; want %d", tt.name, len(keys), err, tt.keys)
		}
		if tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("%s: error %v, want one with %q", tt.name, err, tt.err)
		}
	}
	if _, err := New(Config{TicketKeyFile: filepath.Join(dir, "missing")}); err == nil {
		t.Error("New with a missing ticket key file: no error")
	}
}

// TestTicketRotation: a ticket survives ticketKeysKept-1 rotations, not
// ticketKeysKept.
func TestTicketRotation(t *testing.T) {
	t.Parallel()
	versions(t, func(t *testing.T, v uint16) {
		var ev events
		o, err := New(Config{OnEvent: ev.add})
		if err != nil {
			t.Fatal(err)
		}
		srv := startServer(t, o.TLSConfig)
		for rotations := 0; rotations <= ticketKeysKept; rotations++ {
			cc := &tls.Config{InsecureSkipVerify: true, MaxVersion: v, ClientSessionCache: tls.NewLRUClientSessionCache(1)}
			if _, err := handshake(t, srv.addr, cc); err != nil {
				t.Fatal(err)
			}
			for range rotations {
				o.rotateTickets()
			}
			cs, err := handshake(t, srv.addr, cc)
			if err != nil {
				t.Fatal(err)
			}
			if want := rotations < ticketKeysKept; cs.DidResume != want {
				t.Errorf("after %d rotations: DidResume = %v, want %v", rotations, cs.DidResume, want)
			}
		}
		if len(o.tickets.current()) != ticketKeysKept {
			t.Errorf("%d keys kept, want %d", len(o.tickets.current()), ticketKeysKept)
		}
		if ev.count(EventTicketKeys) == 0 {
			t.Error("no event for rotations")
		}
	})
}

// TestSessionBinding: require_session_reuse. Data connections of session A
// resume only A's tickets; another session's ticket fails the handshake
// with ErrForeignTicket; no ticket means a full handshake. Control
// connections resume any ticket, and bind the ones they issue.
func TestSessionBinding(t *testing.T) {
	t.Parallel()
	versions(t, func(t *testing.T, v uint16) {
		o, err := New(Config{})
		if err != nil {
			t.Fatal(err)
		}
		controlA := startServer(t, func() *tls.Config { return o.ControlConfig("A") })
		dataA := startServer(t, func() *tls.Config { return o.DataConfig("A") })
		controlB := startServer(t, func() *tls.Config { return o.ControlConfig("B") })
		dataB := startServer(t, func() *tls.Config { return o.DataConfig("B") })
		unbound := startServer(t, o.TLSConfig)
		newClient := func() *tls.Config {
			// One ServerName for every listener: the client's cache offers
			// the same ticket everywhere, as a real client's would on one host.
			return &tls.Config{ServerName: "localhost", RootCAs: poolOf(o.Certificate()), MaxVersion: v, ClientSessionCache: tls.NewLRUClientSessionCache(1)}
		}

		clientA := newClient()
		cacheA := &recordingCache{ClientSessionCache: clientA.ClientSessionCache}
		clientA.ClientSessionCache = cacheA
		if cs, err := handshake(t, controlA.addr, clientA); err != nil || cs.DidResume {
			t.Fatalf("control A: resumed %v, %v", cs.DidResume, err)
		}
		afterControl := cacheA.puts()
		for i := range 2 { // the control session's ticket, each time
			cs, err := handshake(t, dataA.addr, clientA)
			if err != nil || !cs.DidResume {
				t.Errorf("data %d of A with A's ticket: resumed %v, %v", i, cs.DidResume, err)
			}
		}
		// A ticket on a data connection would lie unread in the receive
		// queue of a client that uploads and closes, whose close then
		// resets the connection: TLS 1.3 sends none there (TLS 1.2's
		// come inside the handshake, read).
		if n := cacheA.puts() - afterControl; v == tls.VersionTLS13 && n != 0 {
			t.Errorf("resumed data connections were sent %d tickets", n)
		}

		// A's ticket on B's data connection: refused, and the proxy can say why.
		if _, err := handshake(t, dataB.addr, clientA); err == nil {
			t.Error("data of B accepted a handshake with A's ticket")
		}
		if err := dataB.lastError(t); !errors.Is(err, ErrForeignTicket) || !strings.Contains(err.Error(), `session "A"`) {
			t.Errorf("server error for a foreign ticket: %v", err)
		}

		// No ticket: a full handshake, which the proxy refuses (522) with
		// require_session_reuse. The ticket crypto/tls sends on it anyway
		// is no session's: presented again, it does not resume A, or
		// anyone who reaches A's data port could become A.
		stranger := newClient()
		strangerCache := &recordingCache{ClientSessionCache: stranger.ClientSessionCache}
		stranger.ClientSessionCache = strangerCache
		if cs, err := handshake(t, dataA.addr, stranger); err != nil || cs.DidResume {
			t.Errorf("data of A without a ticket: resumed %v, %v", cs.DidResume, err)
		}
		if v == tls.VersionTLS13 {
			// TLS 1.3: no ticket on a data connection at all.
			if n := strangerCache.puts(); n != 0 {
				t.Errorf("a full data handshake was sent %d tickets", n)
			}
		} else {
			// TLS 1.2 sends one inside the handshake: it is no session's.
			if cs, err := handshake(t, dataA.addr, stranger); err == nil {
				t.Errorf("data of A with the ticket of a full data handshake: resumed %v", cs.DidResume)
			}
			if err := dataA.lastError(t); !errors.Is(err, ErrForeignTicket) {
				t.Errorf("the ticket of a full data handshake: %v", err)
			}
		}

		// An unbound ticket (from TLSConfig) is foreign too.
		clientU := newClient()
		if _, err := handshake(t, unbound.addr, clientU); err != nil {
			t.Fatalf("unbound handshake: %v", err) // no ticket: the check below would prove nothing
		}
		if _, err := handshake(t, dataA.addr, clientU); err == nil {
			t.Error("data of A accepted an unbound ticket")
		}
		if err := dataA.lastError(t); !errors.Is(err, ErrForeignTicket) {
			t.Errorf("unbound ticket: %v", err)
		}

		// A control connection resumes another session's ticket (curl
		// reuses its last ticket for the next control connection), and the
		// tickets it issues are its own session's: its data connections
		// resume them, and the other session's data connections refuse
		// them.
		clientB := newClient()
		if cs, err := handshake(t, controlA.addr, clientB); err != nil || cs.DidResume {
			t.Fatalf("control A for a ticket: resumed %v, %v", cs.DidResume, err) // else no ticket, and B's check passes for nothing
		}
		if cs, err := handshake(t, controlB.addr, clientB); err != nil || !cs.DidResume {
			t.Errorf("control B with A's ticket: resumed %v, %v", cs.DidResume, err)
		}
		if cs, err := handshake(t, dataB.addr, clientB); err != nil || !cs.DidResume {
			t.Errorf("data of B after control B: resumed %v, %v", cs.DidResume, err)
		}
		if _, err := handshake(t, dataA.addr, clientB); err == nil {
			t.Error("data of A accepted the ticket control B issued")
		}
	})
}

func TestBindingExtra(t *testing.T) {
	t.Parallel()
	extra := withBinding([][]byte{[]byte("other"), []byte(bindingPrefix + "old")}, "new")
	if id, ok := binding(extra); !ok || id != "new" {
		t.Errorf("binding = %q, %v", id, ok)
	}
	if len(extra) != 2 || string(extra[0]) != "other" {
		t.Errorf("extra = %q: foreign entries must stay, old binding go", extra)
	}
	if _, ok := binding(nil); ok {
		t.Error("binding found in nothing")
	}
}

// TestTicketKeyFileBrokenAgain: polls report a broken key file once (on
// the second look), and the same broken contents again after a good file
// came in between.
func TestTicketKeyFileBrokenAgain(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "ticket.keys")
	writeTicketKeys(t, keyFile, randomKey(t))
	var ev events
	o, err := New(Config{TicketKeyFile: keyFile, OnEvent: ev.add})
	if err != nil {
		t.Fatal(err)
	}
	poll := func() {
		o.reloadMu.Lock()
		defer o.reloadMu.Unlock()
		o.reloadTicketKeys(false)
	}
	broken := []byte("not base64\n")
	for round := 1; round <= 2; round++ {
		replaceFile(t, keyFile, broken)
		poll()
		poll()
		poll()
		if n := ev.count(EventFailed); n != round {
			t.Fatalf("round %d: %d failure events, want %d: %v", round, n, round, ev.list())
		}
		writeTicketKeys(t, keyFile, randomKey(t))
		poll()
		if n := ev.count(EventTicketKeys); n != round {
			t.Fatalf("round %d: good file not loaded: %v", round, ev.list())
		}
	}
}

// recordingCache counts the sessions a client is given.
type recordingCache struct {
	tls.ClientSessionCache
	mu sync.Mutex
	n  int // guarded by mu
}

func (c *recordingCache) Put(key string, cs *tls.ClientSessionState) {
	if cs != nil {
		c.mu.Lock()
		c.n++
		c.mu.Unlock()
	}
	c.ClientSessionCache.Put(key, cs)
}

func (c *recordingCache) puts() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}
