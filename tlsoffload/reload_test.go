package tlsoffload

import (
	"context"
	"crypto"
	"crypto/tls"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// TestReload replaces the files under a running Offload: new handshakes
// get the new certificate, an open connection keeps working, a broken file
// keeps the old certificate and is reported, once.
func TestReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pair, certA := writePair(t, dir, "ftp", time.Hour, "ftp.example.com")
	var ev events
	o, err := New(Config{CertFile: pair.CertFile, KeyFile: pair.KeyFile, ReloadInterval: 20 * time.Millisecond, OnEvent: ev.add})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- o.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-runDone; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	if got := ev.count(EventLoaded); got != 1 {
		t.Errorf("%d loaded events at New, want 1", got)
	}

	srv := startServer(t, o.TLSConfig)
	certB, err := SelfSigned([]string{"ftp.example.com"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cc := &tls.Config{ServerName: "ftp.example.com", RootCAs: poolOf(certA, &certB)}

	open, err := dial(t, srv.addr, cc)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	if got := leafSerial(open.ConnectionState()); got != serial(certA) {
		t.Fatalf("first handshake: serial %s, want %s", got, serial(certA))
	}

	writeCertFiles(t, pair, &certB)
	ev.waitFor(t, 5*time.Second, "reloaded", func(e Event) bool { return e.Kind == EventReloaded && e.Serial == serial(&certB) })
	cs, err := handshake(t, srv.addr, cc)
	if err != nil {
		t.Fatal(err)
	}
	if got := leafSerial(cs); got != serial(&certB) {
		t.Errorf("after reload: serial %s, want the new %s", got, serial(&certB))
	}
	echo(t, open, "still there")
	if got := leafSerial(open.ConnectionState()); got != serial(certA) {
		t.Errorf("open connection now shows serial %s", got)
	}

	// A broken certificate file: the poll looks twice, reports once, and
	// certificate B stays.
	os.WriteFile(pair.CertFile, []byte("-----BEGIN CERTIFICATE-----\nbroken\n"), 0o600)
	failed := ev.waitFor(t, 5*time.Second, "failed", func(e Event) bool { return e.Kind == EventFailed })
	if failed.Source != pair.CertFile || failed.Serial != serial(&certB) || failed.Err == nil {
		t.Errorf("failure event %+v: want the file, the serial still served and why", failed)
	}
	time.Sleep(100 * time.Millisecond) // several more polls
	if n := ev.count(EventFailed); n != 1 {
		t.Errorf("%d failure events for one broken file, want 1", n)
	}
	if err := o.Reload(); err == nil || !strings.Contains(err.Error(), "still serving serial "+serial(&certB)) {
		t.Errorf("Reload with a broken file: %v", err)
	}
	cs, err = handshake(t, srv.addr, cc)
	if err != nil {
		t.Fatal(err)
	}
	if got := leafSerial(cs); got != serial(&certB) {
		t.Errorf("after a broken file: serial %s, want %s kept", got, serial(&certB))
	}
	echo(t, open, "and still")
}

// TestReloadRefusesExpiredAndMismatched: an expired replacement, or a key
// that is not the certificate's, keeps the old certificate.
func TestReloadRefusesExpiredAndMismatched(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pair, certA := writePair(t, dir, "ftp", time.Hour, "ftp.example.com")
	var ev events
	o, err := New(Config{CertFile: pair.CertFile, KeyFile: pair.KeyFile, ReloadInterval: -1, OnEvent: ev.add})
	if err != nil {
		t.Fatal(err)
	}
	expired, err := SelfSigned([]string{"ftp.example.com"}, -time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	writeCertFiles(t, pair, &expired)
	if err := o.Reload(); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("Reload of an expired certificate: %v", err)
	}
	other, _ := SelfSigned([]string{"ftp.example.com"}, time.Hour)
	writeCertFiles(t, KeyPair{CertFile: pair.CertFile, KeyFile: dir + "/unused.key"}, &other) // new cert, old key
	if err := o.Reload(); err == nil {
		t.Error("Reload of a certificate with another's key: no error")
	}
	if got := o.Certificate(); serial(got) != serial(certA) {
		t.Errorf("serving serial %s, want %s kept", serial(got), serial(certA))
	}
	if n := ev.count(EventFailed); n != 2 {
		t.Errorf("%d failure events, want 2 (one per explicit Reload)", n)
	}
	// Fixing the files is picked up by the next Reload.
	writeCertFiles(t, pair, &other)
	if err := o.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := serial(o.Certificate()); got != serial(&other) {
		t.Errorf("after the fix: serial %s, want %s", got, serial(&other))
	}
}

func TestSelfSignedPersistence(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var ev1, ev2 events
	o1, err := New(Config{StateDir: dir, OnEvent: ev1.add})
	if err != nil {
		t.Fatal(err)
	}
	o2, err := New(Config{StateDir: dir, OnEvent: ev2.add})
	if err != nil {
		t.Fatal(err)
	}
	if !o1.SelfSigned() || !o2.SelfSigned() {
		t.Fatal("not self-signed")
	}
	if o1.Fingerprint() != o2.Fingerprint() {
		t.Errorf("same StateDir, new certificate at restart: %s then %s", o1.Fingerprint(), o2.Fingerprint())
	}
	if ev1.count(EventGenerated) != 1 || ev2.count(EventLoaded) != 1 || ev2.count(EventGenerated) != 0 {
		t.Errorf("events: first %v, second %v", ev1.list(), ev2.list())
	}
	fi, err := os.Stat(dir + "/" + selfSignedFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600: it holds the key", selfSignedFile, fi.Mode().Perm())
	}
	if _, ok := o2.Certificate().PrivateKey.(crypto.Signer); !ok {
		t.Error("kept certificate loaded without its private key")
	}

	// Other names: a new certificate, saved in place of the old one.
	o3, err := New(Config{StateDir: dir, SelfSignedNames: []string{"ftp.internal", "10.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	if o3.Fingerprint() == o1.Fingerprint() {
		t.Error("names changed, certificate did not")
	}
	if err := o3.Certificate().Leaf.VerifyHostname("10.0.0.1"); err != nil {
		t.Error(err)
	}
	o4, err := New(Config{StateDir: dir, SelfSignedNames: []string{"10.0.0.1", "FTP.internal"}})
	if err != nil {
		t.Fatal(err)
	}
	if o4.Fingerprint() != o3.Fingerprint() {
		t.Error("same names in another order and case: new certificate")
	}

	// Without a state directory, every start is a new certificate.
	a, _ := New(Config{})
	b, _ := New(Config{})
	if a.Fingerprint() == b.Fingerprint() {
		t.Error("no StateDir, yet the same certificate twice")
	}

	// A state directory that cannot be written is reported, not fatal.
	blocker := t.TempDir() + "/file"
	os.WriteFile(blocker, nil, 0o600)
	var ev5 events
	o5, err := New(Config{StateDir: blocker + "/state", OnEvent: ev5.add})
	if err != nil {
		t.Fatalf("unwritable StateDir is fatal: %v", err)
	}
	if o5.Certificate() == nil || ev5.count(EventFailed) == 0 {
		t.Errorf("unwritable StateDir: events %v", ev5.list())
	}
}

func TestEventString(t *testing.T) {
	t.Parallel()
	e := Event{Kind: EventFailed, Source: "cert.pem", Names: []string{"a.example", "b.example"}, Serial: "0a", NotAfter: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), Err: errors.New("boom")}
	want := "failed cert.pem: a.example,b.example serial 0a until 2030-01-02T03:04:05Z: boom"
	if got := e.String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got := EventKind(99).String(); got != "EventKind(99)" {
		t.Errorf("unknown kind: %q", got)
	}
}
