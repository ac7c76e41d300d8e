package integration

import (
	"strings"
	"testing"
	"time"
)

// TestHandshakeAlertLogged: curl (OpenSSL) refuses the proxy's self-signed
// certificate; the proxy logs the failed handshake with the client's
// address and the alert curl sent.
func TestHandshakeAlertLogged(t *testing.T) {
	curl := needTool(t, "curl")
	backend := memBackend(t)
	p := startProxy(t, "--backend", backend.Addr())
	out, err := run(t, time.Minute, curl, "--silent", "--show-error", "--ssl-reqd", "--user", "curl:curl-pw",
		"ftp://"+p.explicit+"/")
	if err == nil {
		t.Fatalf("curl trusted a self-signed certificate:\n%s", out)
	}
	waitRecords(t, p, "tls handshake failed", 1)
	r := p.records("tls handshake failed")[0]
	if r["alert"] != "unknown certificate authority" {
		t.Errorf("alert %v, want unknown certificate authority (record %v)", r["alert"], r)
	}
	if c, _ := r["client"].(string); !strings.HasPrefix(c, "127.0.0.1:") || r["listener"] != "explicit" || r["session"] == nil {
		t.Errorf("record without the session's client, listener and id: %v", r)
	}
}
