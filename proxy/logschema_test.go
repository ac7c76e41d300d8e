package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/ftpctl"
	"github.com/ftpsgate/ftpsgate/ftpctl/ftptest"
)

// record is one JSON log record.
type record map[string]any

// parseRecords parses every line of a log as a JSON object.
func parseRecords(t *testing.T, log string) []record {
	t.Helper()
	var out []record
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("a log line is not JSON: %v: %s", err, sc.Text())
		}
		out = append(out, r)
	}
	return out
}

// TestLogSchema runs a whole session through the proxy and checks its log,
// record by record, against the schema in README.md: the session fields on
// every record of the session as soon as they are known, and the fields of
// each event (issue 7).
func TestLogSchema(t *testing.T) {
	t.Parallel()
	download := bytes.Repeat([]byte("ftpsgate"), 40000) // 320000 bytes
	upload := bytes.Repeat([]byte("up"), 70001)         // 140002 bytes
	h := newHarness(t, nil, func(b *ftptest.Server) { b.FS.WriteFile("/pub/file.bin", download) })

	rc := h.raw(h.explicit())
	local := rc.conn.LocalAddr().String()
	rc.expect(220)
	rc.cmd("AUTH TLS", 234)
	tc := tls.Client(rc.conn, h.client)
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	rc.conn, rc.r = tc, ftpctl.NewReader(bufio.NewReader(tc), 0)
	rc.cmd("USER alice", 331)
	rc.cmd("PASS not-alices-pw", 530)
	rc.cmd("USER alice", 331)
	rc.cmd("PASS s3cret-pw", 230)
	rc.cmd("PBSZ 0", 200)
	rc.cmd("PROT P", 200)

	// RETR over PASV.
	pasv, err := ftpctl.ParsePASV(rc.cmd("PASV", 227).Text())
	if err != nil {
		t.Fatal(err)
	}
	data := h.dataTLS(rc, pasv.String(), "RETR /pub/file.bin")
	got, err := io.ReadAll(data)
	if err != nil {
		t.Fatal(err)
	}
	data.Close()
	rc.expect(226)
	if !bytes.Equal(got, download) {
		t.Fatalf("downloaded %d bytes, want %d", len(got), len(download))
	}

	// STOR over EPSV.
	port := rc.epsv()
	data = h.dataTLS(rc, net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))), "STOR /up.bin")
	if _, err := data.Write(upload); err != nil {
		t.Fatal(err)
	}
	data.Close()
	rc.expect(226)

	// RETR of a file that is not there: the backend's 550, no data connection.
	rc.epsv()
	rc.cmd("RETR /missing.bin", 550)
	rc.cmd("QUIT", 221)

	waitFor(t, "session end record", func() bool { return len(h.logs.records("session end")) == 1 })

	// A client that does not trust the certificate: its alert is logged.
	bad, err := net.Dial("tcp", h.implicit())
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	badClient := bad.LocalAddr().String()
	if err := tls.Client(bad, &tls.Config{ServerName: "localhost"}).Handshake(); err == nil {
		t.Fatal("a client without the proxy's CA completed the handshake")
	}
	waitFor(t, "session end record of the failed handshake", func() bool { return len(h.logs.records("session end")) == 2 })

	recs := parseRecords(t, h.logs.String())
	var sid, badSid string
	for _, r := range recs {
		if r["message"] == "session start" {
			switch r["client"] {
			case local:
				sid, _ = r["session"].(string)
			case badClient:
				badSid, _ = r["session"].(string)
			}
		}
	}
	if sid == "" || badSid == "" || sid == badSid {
		t.Fatalf("session ids %q and %q: want two, distinct", sid, badSid)
	}

	// Every record: time, level, message.
	for _, r := range recs {
		if _, err := time.Parse(time.RFC3339, str(r["time"])); err != nil {
			t.Errorf("record without a time: %v", r)
		}
		if str(r["level"]) == "" || str(r["message"]) == "" {
			t.Errorf("record without level or message: %v", r)
		}
	}

	// The session's records, in order: each field once it is known, and
	// then on every later record.
	var session []record
	for _, r := range recs {
		if r["session"] == sid {
			session = append(session, r)
		}
	}
	tlsUp, backendKnown, loggedIn := false, false, false
	for _, r := range session {
		msg := str(r["message"])
		expectField(t, r, "client", local)
		expectField(t, r, "listener", "explicit")
		switch {
		case msg == "tls established":
			tlsUp = true
		case msg == "login":
			loggedIn = true
		}
		if tlsUp {
			expectField(t, r, "sni", "localhost")
			expectField(t, r, "tls_version", "TLS 1.3")
			expectField(t, r, "resumed", false)
			if c := str(r["cipher"]); !strings.HasPrefix(c, "TLS_") {
				t.Errorf("%s: cipher %q", msg, c)
			}
		} else {
			for _, k := range []string{"sni", "tls_version", "cipher", "resumed"} {
				if _, ok := r[k]; ok {
					t.Errorf("%s: %s before the TLS handshake: %v", msg, k, r)
				}
			}
		}
		// PASS dials the backend: its verdict's record has it, and after
		// the login so does every later record; a refused login lets it
		// go.
		if msg == "login" || msg == "login failed" {
			backendKnown = true
		}
		if backendKnown {
			expectField(t, r, "backend", "mem")
		}
		if loggedIn {
			expectField(t, r, "user", "alice")
		} else if _, ok := r["user"]; ok {
			t.Errorf("%s: user before the backend accepted one: %v", msg, r)
		}
		if msg == "login failed" {
			backendKnown = false
		}
	}

	one := func(msg string) record {
		t.Helper()
		var found []record
		for _, r := range session {
			if r["message"] == msg {
				found = append(found, r)
			}
		}
		if len(found) != 1 {
			t.Fatalf("%d %q records in the session, want 1", len(found), msg)
		}
		return found[0]
	}
	expectField(t, one("session start"), "level", "info")
	failed := one("login failed")
	expectField(t, failed, "level", "warn")
	expectField(t, failed, "tried_user", "alice")
	expectField(t, failed, "code", 530.0)
	expectField(t, one("login"), "level", "info")

	var commands []string
	for _, r := range session {
		if r["message"] == "command" {
			expectField(t, r, "level", "debug")
			commands = append(commands, str(r["command"]))
		}
	}
	wantCommands := []string{"AUTH TLS", "USER alice", "PASS ****", "USER alice", "PASS ****", "PBSZ 0", "PROT P",
		"PASV", "RETR /pub/file.bin", "EPSV", "STOR /up.bin", "EPSV", "RETR /missing.bin", "QUIT"}
	if strings.Join(commands, "|") != strings.Join(wantCommands, "|") {
		t.Errorf("command records %q, want %q", commands, wantCommands)
	}

	var xfers []record
	for _, r := range session {
		if r["message"] == "transfer" {
			xfers = append(xfers, r)
		}
	}
	if len(xfers) != 3 {
		t.Fatalf("%d transfer records, want 3", len(xfers))
	}
	for i, want := range []struct {
		level, verb, path, direction string
		bytes, code                  float64
		data                         bool // a data connection was made: data TLS fields
	}{
		{"info", "RETR", "/pub/file.bin", "download", float64(len(download)), 226, true},
		{"info", "STOR", "/up.bin", "upload", float64(len(upload)), 226, true},
		{"warn", "RETR", "/missing.bin", "download", 0, 550, false},
	} {
		x := xfers[i]
		expectField(t, x, "level", want.level)
		expectField(t, x, "verb", want.verb)
		expectField(t, x, "path", want.path)
		expectField(t, x, "direction", want.direction)
		expectField(t, x, "bytes", want.bytes)
		expectField(t, x, "code", want.code)
		expectField(t, x, "prot", "P")
		expectField(t, x, "client_data", "passive")
		expectField(t, x, "backend_data", "passive")
		expectNumber(t, x, "duration")
		expectNumber(t, x, "bytes_per_sec")
		if want.data {
			expectField(t, x, "data_resumed", true)
			expectField(t, x, "data_tls_version", "TLS 1.3")
		} else if _, ok := x["data_resumed"]; ok {
			t.Errorf("data_resumed on a transfer without a data connection: %v", x)
		}
	}

	end := one("session end")
	expectField(t, end, "level", "info")
	expectField(t, end, "reason", "quit")
	expectField(t, end, "bytes_down", float64(len(download)))
	expectField(t, end, "bytes_up", float64(len(upload)))
	expectField(t, end, "transfers", 3.0)
	expectNumber(t, end, "duration")

	// The failed handshake: its session, the client's address, the alert.
	var hs []record
	for _, r := range recs {
		if r["session"] == badSid {
			hs = append(hs, r)
		}
	}
	var fail record
	for _, r := range hs {
		expectField(t, r, "client", badClient)
		expectField(t, r, "listener", "implicit")
		if r["message"] == "tls handshake failed" {
			fail = r
		}
	}
	if fail == nil {
		t.Fatal("no tls handshake failed record")
	}
	expectField(t, fail, "level", "warn")
	// crypto/tls clients send bad_certificate for an unknown authority;
	// OpenSSL's send unknown_ca, logged as "unknown certificate authority".
	expectField(t, fail, "alert", "bad certificate")
	if str(fail["error"]) == "" {
		t.Errorf("tls handshake failed without the error: %v", fail)
	}
	if end := hs[len(hs)-1]; end["message"] != "session end" || end["reason"] != "tls handshake failed" {
		t.Errorf("the failed handshake's last record: %v", end)
	}

	for _, pw := range testPasswords {
		if strings.Contains(h.logs.String(), pw) {
			t.Errorf("the password %q appears in the log", pw)
		}
	}
}

// dataTLS connects to a passive data port, sends the transfer command,
// waits for 150 and runs the TLS handshake as the client, offering the
// control session's ticket.
func (h *harness) dataTLS(rc *rawClient, addr, command string) *tls.Conn {
	h.t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	rc.cmd(command, 150)
	cfg := h.client
	if rc.tls != nil {
		cfg = rc.tls
	}
	tc := tls.Client(conn, cfg)
	if err := tc.Handshake(); err != nil {
		h.t.Fatal(err)
	}
	return tc
}

func expectField(t *testing.T, r record, key string, want any) {
	t.Helper()
	if got, ok := r[key]; !ok || got != want {
		t.Errorf("%s: %s = %#v, want %#v (record %v)", r["message"], key, got, want, r)
	}
}

func expectNumber(t *testing.T, r record, key string) {
	t.Helper()
	if v, ok := r[key].(float64); !ok || v < 0 {
		t.Errorf("%s: %s = %#v, want a number (record %v)", r["message"], key, r[key], r)
	}
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// TestMalformedPassNotLogged: a PASS line that does not parse (a tab for
// the space, a leading space, a control byte) is logged as malformed, with
// what is wrong and never the line. On the main of issue 15 the one with a
// leading space was logged whole, password and all.
func TestMalformedPassNotLogged(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, nil)
	rc := h.rawTLS()
	lines := []string{"PASS\ts3cret-pw", " PASS s3cret-pw", "\tpass s3cret-pw", "acct\x01s3cret-pw"}
	for _, l := range lines {
		rc.cmd(l, 500)
	}
	rc.cmd("QUIT", 221)
	waitFor(t, "session end record", func() bool { return len(h.logs.records("session end")) == 1 })
	bad := h.logs.records("malformed command")
	if len(bad) != len(lines) {
		t.Fatalf("%d malformed command records, want %d:\n%s", len(bad), len(lines), h.logs.String())
	}
	for _, r := range bad {
		if strings.Contains(r, "s3cret") || !strings.Contains(r, `"reason":`) {
			t.Errorf("malformed PASS/ACCT logged with its argument, or without a reason: %s", r)
		}
	}
	if strings.Contains(h.logs.String(), "s3cret") {
		t.Errorf("a password reached the log:\n%s", h.logs.String())
	}
}
