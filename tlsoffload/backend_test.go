package tlsoffload

import (
	"testing"
	"time"
)

func TestBackendConfigValidation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pair, _ := writePair(t, dir, "backend", time.Hour, "ftp.backend.internal")
	tests := []struct {
		c    BackendConfig
		mode string // "" when NewBackendTLS must fail
	}{
		{BackendConfig{}, "off"},
		{BackendConfig{Mode: "off"}, "off"},
		{BackendConfig{Mode: "explicit"}, "explicit"},
		{BackendConfig{Mode: "implicit", CAFile: pair.CertFile}, "implicit"},
		{BackendConfig{Mode: "explicit", InsecureSkipVerify: true}, "explicit"},
		{BackendConfig{Mode: "tls"}, ""},
		{BackendConfig{Mode: "off", CAFile: pair.CertFile}, ""},
		{BackendConfig{Mode: "explicit", CAFile: pair.CertFile, InsecureSkipVerify: true}, ""},
		{BackendConfig{Mode: "explicit", CAFile: dir + "/missing.pem"}, ""},
		{BackendConfig{Mode: "explicit", CAFile: pair.KeyFile}, ""}, // no certificate in it
	}
	for _, tt := range tests {
		b, err := NewBackendTLS(tt.c)
		if tt.mode == "" {
			if err == nil {
				t.Errorf("NewBackendTLS(%+v): no error", tt.c)
			}
			continue
		}
		if err != nil {
			t.Errorf("NewBackendTLS(%+v): %v", tt.c, err)
			continue
		}
		if b.Mode() != tt.mode {
			t.Errorf("Mode() = %q, want %q", b.Mode(), tt.mode)
		}
		if (b.SessionConfig("10.0.0.5") == nil) != (tt.mode == "off") {
			t.Errorf("%s: SessionConfig nil-ness wrong", tt.mode)
		}
	}
}

// TestBackendSessionResumption: the proxy as a TLS client of an FTPS
// backend that requires data connections to resume the control session
// (vsftpd require_ssl_reuse=YES). One SessionConfig per client session:
// its data connections resume its control session; another client session
// never gets that session.
func TestBackendSessionResumption(t *testing.T) {
	t.Parallel()
	versions(t, func(t *testing.T, v uint16) {
		dir := t.TempDir()
		pair, _ := writePair(t, dir, "backend", time.Hour, "ftp.backend.internal")
		backend, err := New(Config{CertFile: pair.CertFile, KeyFile: pair.KeyFile})
		if err != nil {
			t.Fatal(err)
		}
		control := startServer(t, backend.TLSConfig)
		data := startServer(t, backend.TLSConfig) // another port, as a data connection is

		b, err := NewBackendTLS(BackendConfig{Mode: "explicit", CAFile: pair.CertFile, ServerName: "ftp.backend.internal", MinVersion: v})
		if err != nil {
			t.Fatal(err)
		}
		session1, session2 := b.SessionConfig("127.0.0.1"), b.SessionConfig("127.0.0.1")
		session1.MaxVersion, session2.MaxVersion = v, v
		if session1.ClientSessionCache == session2.ClientSessionCache {
			t.Fatal("two client sessions share a session cache")
		}
		if cs, err := handshake(t, control.addr, session1); err != nil || cs.DidResume {
			t.Fatalf("control: resumed %v, %v", cs.DidResume, err)
		}
		if cs, err := handshake(t, data.addr, session1); err != nil || !cs.DidResume {
			t.Errorf("data of the same client session: resumed %v, %v (require_ssl_reuse would refuse it)", cs.DidResume, err)
		}
		if cs, err := handshake(t, data.addr, session2); err != nil || cs.DidResume {
			t.Errorf("data of another client session: resumed %v, %v", cs.DidResume, err)
		}

		// Without ServerName in the config, the host passed in is the
		// name, for control and data alike, and is verified.
		b2, err := NewBackendTLS(BackendConfig{Mode: "implicit", CAFile: pair.CertFile})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := handshake(t, control.addr, b2.SessionConfig("ftp.backend.internal")); err != nil {
			t.Errorf("ServerName from host: %v", err)
		}
		if _, err := handshake(t, control.addr, b2.SessionConfig("127.0.0.1")); err == nil {
			t.Error("a certificate for another name was accepted")
		}
		insecure, _ := NewBackendTLS(BackendConfig{Mode: "explicit", InsecureSkipVerify: true})
		if _, err := handshake(t, control.addr, insecure.SessionConfig("127.0.0.1")); err != nil {
			t.Errorf("insecure_skip_verify: %v", err)
		}
	})
}
