package tlsoffload

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestCATransportInspect: the CA's problems are recorded per domain, and
// tls-alpn-01 is dropped from authorizations when it is not served.
func TestCATransportInspect(t *testing.T) {
	t.Parallel()
	var reported []string
	tr := newCATransport(nil, true, func(domain, problem string) { reported = append(reported, domain+" "+problem) })
	authz := `{"status":"invalid","identifier":{"type":"dns","value":"FTP.example.com"},"challenges":[
		{"type":"tls-alpn-01","status":"pending","url":"https://ca/1","token":"a"},
		{"type":"http-01","status":"invalid","url":"https://ca/2","token":"b",
		 "error":{"type":"urn:ietf:params:acme:error:connection","detail":"dial tcp 192.0.2.1:80: i/o timeout"}}]}`
	out := tr.inspect(200, []byte(authz))
	var got struct {
		Status     string `json:"status"`
		Challenges []struct {
			Type string `json:"type"`
		} `json:"challenges"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if got.Status != "invalid" || len(got.Challenges) != 1 || got.Challenges[0].Type != "http-01" {
		t.Errorf("rewritten authorization: %s", out)
	}
	want := "http-01 challenge: connection: dial tcp 192.0.2.1:80: i/o timeout"
	if p := tr.problem("ftp.example.com"); p != want {
		t.Errorf("problem = %q, want %q", p, want)
	}
	if len(reported) != 1 || reported[0] != "ftp.example.com "+want {
		t.Errorf("reported %q", reported)
	}

	// A refused request names no domain: it is the only obtain's in
	// flight, and nobody's when several run at once.
	refused := []byte(`{"type":"urn:ietf:params:acme:error:rejectedIdentifier","detail":"blocked domain"}`)
	tr.begin("other.example.com")
	tr.inspect(403, refused)
	if p := tr.end("other.example.com"); p != "rejectedIdentifier: blocked domain" {
		t.Errorf("the only obtain's problem = %q", p)
	}
	tr.begin("a.example.com")
	tr.begin("b.example.com")
	tr.inspect(403, refused)
	if pa, pb := tr.end("a.example.com"), tr.end("b.example.com"); pa != "" || pb != "" {
		t.Errorf("a refusal during two obtains attributed: %q, %q", pa, pb)
	}
	if p := tr.problem("ftp.example.com"); p != want {
		t.Errorf("another domain's problem changed by a refusal: %q", p)
	}
	// An order's error goes to its identifiers, and does not hide the
	// failed challenge's more telling message.
	tr.begin("a.example.com")
	tr.begin("b.example.com")
	tr.inspect(200, []byte(`{"status":"invalid","identifiers":[{"type":"dns","value":"A.example.com"}],"error":{"type":"urn:ietf:params:acme:error:unauthorized","detail":"authorizations failed"}}`))
	tr.inspect(200, []byte(`{"status":"invalid","identifiers":[{"type":"dns","value":"ftp.example.com"}],"error":{"type":"urn:ietf:params:acme:error:unauthorized","detail":"authorizations failed"}}`))
	if pa, pb := tr.end("a.example.com"), tr.end("b.example.com"); pa != "unauthorized: authorizations failed" || pb != "" {
		t.Errorf("order error attributed to a %q, b %q", pa, pb)
	}
	if p := tr.problem("ftp.example.com"); p != want {
		t.Errorf("order error replaced the challenge's: %q", p)
	}
	// badNonce is retried by the client, not a problem.
	tr.begin("other.example.com")
	tr.inspect(400, []byte(`{"type":"urn:ietf:params:acme:error:badNonce","detail":"JWS has an invalid anti-replay nonce"}`))
	if p := tr.end("other.example.com"); p != "" {
		t.Errorf("badNonce recorded: %q", p)
	}
	if len(reported) != 1 {
		t.Errorf("reported %q: only failed challenges are", reported)
	}
	// Served tls-alpn-01: authorizations pass untouched.
	keep := newCATransport(nil, false, func(string, string) {})
	if out := keep.inspect(200, []byte(authz)); string(out) != authz {
		t.Error("authorization rewritten though tls-alpn-01 is served")
	}
	if out := tr.inspect(200, []byte("not json")); string(out) != "not json" {
		t.Error("non-JSON body changed")
	}
}

// TestACMEOverdue: a certificate past its renewal time is reported, at
// most hourly, with the CA's last message.
func TestACMEOverdue(t *testing.T) {
	t.Parallel()
	var ev events
	o := &Offload{cfg: Config{OnEvent: ev.add}}
	a := &acmeSource{o: o, cfg: ACMEConfig{RenewBefore: 24 * time.Hour}, checkEvery: time.Minute, byName: map[string]*acmeDomain{}}
	a.ca = newCATransport(nil, true, a.caProblem)
	d := &acmeDomain{name: "ftp.example.com"}
	a.domains, a.byName[d.name] = []*acmeDomain{d}, d
	cert, err := SelfSigned([]string{"ftp.example.com"}, 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	a.install(d, &cert, "acme")
	if ev.count(EventObtained) != 1 {
		t.Fatalf("events: %v", ev.list())
	}
	notAfter := cert.Leaf.NotAfter
	a.checkOverdue(d, notAfter.Add(-25*time.Hour)) // before the renewal is due
	a.checkOverdue(d, notAfter.Add(-23*time.Hour)) // due, within autocert's jitter
	if n := ev.count(EventFailed); n != 0 {
		t.Fatalf("overdue reported early: %v", ev.list())
	}
	d.managed.Store(true)
	a.ca.inspect(200, []byte(`{"identifier":{"value":"ftp.example.com"},"challenges":[{"type":"http-01","error":{"type":"urn:ietf:params:acme:error:unauthorized","detail":"404 from 192.0.2.1"}}]}`))
	if n := ev.count(EventFailed); n != 1 {
		t.Fatalf("a renewal's failed challenge not reported: %v", ev.list())
	}
	now := notAfter.Add(-20 * time.Hour)
	a.checkOverdue(d, now)
	a.checkOverdue(d, now.Add(30*time.Minute))
	if n := ev.count(EventFailed); n != 2 {
		t.Fatalf("%d failure events, want 2 (one overdue report per hour): %v", n, ev.list())
	}
	last := ev.list()[len(ev.list())-1]
	if last.Source != "acme renewal" || !strings.Contains(last.Err.Error(), "not renewed") || !strings.Contains(last.Err.Error(), "404 from 192.0.2.1") {
		t.Errorf("overdue event: %v", last)
	}
	a.checkOverdue(d, now.Add(61*time.Minute))
	if n := ev.count(EventFailed); n != 3 {
		t.Errorf("no overdue report an hour later")
	}

	// An older certificate (a stale shared cache) does not replace a newer one.
	older, _ := SelfSigned([]string{"ftp.example.com"}, 24*time.Hour)
	a.install(d, &older, "acme cache")
	if serial(d.cert.Load()) != serial(&cert) {
		t.Error("an older certificate replaced the newer one")
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	a := &acmeSource{retryBase: 5 * time.Minute, retryMax: 4 * time.Hour}
	for n, want := range map[int]time.Duration{1: 5 * time.Minute, 2: 10 * time.Minute, 3: 20 * time.Minute, 7: 4 * time.Hour, 50: 4 * time.Hour} {
		got := a.backoff(n)
		if got < want*9/10 || got > want*11/10 {
			t.Errorf("backoff(%d) = %s, want %s ±10%%", n, got, want)
		}
	}
}
