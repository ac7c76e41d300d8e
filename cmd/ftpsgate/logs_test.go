package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/tlsoffload"
)

// TestCertificateRecords: each certificate event becomes one "certificate"
// record with the level and fields the README's log schema names.
func TestCertificateRecords(t *testing.T) {
	t.Parallel()
	expiry := time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		e     tlsoffload.Event
		level string
		want  map[string]any
	}{
		{tlsoffload.Event{Kind: tlsoffload.EventLoaded, Source: "/etc/ftpsgate/cert.pem", Names: []string{"ftp.example.com"}, Serial: "0a1b", NotAfter: expiry},
			"info", map[string]any{"event": "loaded", "source": "/etc/ftpsgate/cert.pem", "names": []any{"ftp.example.com"}, "serial": "0a1b", "not_after": "2027-03-01T12:00:00.000Z"}},
		{tlsoffload.Event{Kind: tlsoffload.EventGenerated, Source: "self-signed", Names: []string{"localhost"}},
			"warn", map[string]any{"event": "generated", "source": "self-signed", "names": []any{"localhost"}}},
		{tlsoffload.Event{Kind: tlsoffload.EventRenewed, Source: "acme renewal", Names: []string{"ftp.example.com"}, NotAfter: expiry},
			"info", map[string]any{"event": "renewed", "source": "acme renewal", "not_after": "2027-03-01T12:00:00.000Z"}},
		{tlsoffload.Event{Kind: tlsoffload.EventTicketKeys, Source: "/etc/ftpsgate/ticket-keys"},
			"info", map[string]any{"event": "ticket keys", "source": "/etc/ftpsgate/ticket-keys"}},
		{tlsoffload.Event{Kind: tlsoffload.EventFailed, Source: "/etc/ftpsgate/cert.pem", Err: errors.New("tlsoffload: no such file")},
			"error", map[string]any{"event": "failed", "source": "/etc/ftpsgate/cert.pem", "error": "tlsoffload: no such file"}},
	} {
		var buf bytes.Buffer
		log, err := newLogger(&buf, "info", "json")
		if err != nil {
			t.Fatal(err)
		}
		logTLSEvent(log, tc.e)
		var r map[string]any
		if err := json.Unmarshal(buf.Bytes(), &r); err != nil {
			t.Fatalf("%v: %v: %q", tc.e.Kind, err, buf.String())
		}
		if r["message"] != "certificate" || r["level"] != tc.level {
			t.Errorf("%v: message %v, level %v; want certificate, %s", tc.e.Kind, r["message"], r["level"], tc.level)
		}
		if ts, _ := r["time"].(string); ts == "" {
			t.Errorf("%v: no time: %v", tc.e.Kind, r)
		}
		for k, v := range tc.want {
			got, _ := json.Marshal(r[k])
			want, _ := json.Marshal(v)
			if !bytes.Equal(got, want) {
				t.Errorf("%v: %s = %s, want %s", tc.e.Kind, k, got, want)
			}
		}
	}
}
