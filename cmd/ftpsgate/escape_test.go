package main

import (
	"bytes"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/ftpsgate/ftpsgate/proxy"
	"github.com/ftpsgate/ftpsgate/tlsoffload"
)

// hostileNames are values a client chooses (a user name, a path, an SNI),
// each with how every operator-facing output shows it. tail differs only
// where the log itself changed the value: zerolog writes each byte that is
// not UTF-8 as U+FFFD. The table is testdata/hostile-names.txt at the
// root of the repository, which the integration tests run through the
// binary too.
var hostileNames = loadHostileNames()

type hostileName struct {
	name, in, want string
	tail           string // zero: want
}

func loadHostileNames() []hostileName {
	data, err := os.ReadFile("../../testdata/hostile-names.txt")
	if err != nil {
		panic(err)
	}
	var out []hostileName
	for i, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 4 {
			panic(fmt.Sprintf("testdata/hostile-names.txt:%d: %d fields, want 4", i+1, len(f)))
		}
		var h [4]string
		for j := range f {
			if h[j], err = strconv.Unquote(f[j]); err != nil {
				panic(fmt.Sprintf("testdata/hostile-names.txt:%d: field %d: %v", i+1, j+1, err))
			}
		}
		out = append(out, hostileName{name: h[0], in: h[1], want: h[2], tail: h[3]})
	}
	return out
}

// TestHostileNames: each hostile name reaches every operator-facing
// output (the escape function itself, an xferlog line, tail's rendering
// of a transfer record carrying it as user and path, the status page
// showing it in a session, its transfer and a recent transfer) shown the
// same way, with no raw control, format or blank character and no run of
// the name's spaces.
func TestHostileNames(t *testing.T) {
	t.Parallel()
	for _, tc := range hostileNames {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := escapeText(tc.in)
			if got != tc.want {
				t.Errorf("escapeText(%q) = %q, want %q", tc.in, got, tc.want)
			}
			shownSafely(t, "escapeText", got, tc.in, false)

			line := xferlogLine(proxy.TransferEvent{
				Time: time.Date(2026, 3, 14, 12, 0, 1, 0, time.Local), Duration: time.Second,
				Client: netip.MustParseAddr("203.0.113.7"), User: tc.in, Verb: "RETR", Path: tc.in,
				Direction: "download", Bytes: 1, Code: 226, Complete: true,
			})
			shownSafely(t, "xferlog", strings.TrimSuffix(line, "\n"), tc.in, false)
			if f := strings.Split(strings.TrimSuffix(line, "\n"), " "); len(f) != 18 || len(strings.Fields(line)) != 18 {
				t.Errorf("xferlog line %q: %d fields split on spaces, %d on any blank; want 18", line, len(f), len(strings.Fields(line)))
			} else if want := strings.ReplaceAll(tc.want, " ", "_"); f[8] != want || f[13] != want {
				t.Errorf("xferlog filename %q, username %q; want %q", f[8], f[13], want)
			}

			var rec bytes.Buffer
			logger := zerolog.New(&rec)
			logger.Info().Str("session", "3fa2c1d0e9b7").Str("client", "203.0.113.7:50123").
				Str("user", tc.in).Str("verb", "RETR").Str("path", tc.in).Str("direction", "download").
				Int64("bytes", 1).Int("code", 226).Msg("transfer")
			filter, _ := newRecordFilter("", "", "", "")
			var out bytes.Buffer
			if err := (&tailer{out: &out, filter: filter, lines: -1}).read(&rec); err != nil {
				t.Fatal(err)
			}
			tailed := strings.TrimSuffix(out.String(), "\n")
			shownSafely(t, "tail", tailed, tc.in, false)
			want := tc.want
			if tc.tail != "" {
				want = tc.tail
			}
			if w := want + "@203.0.113.7 RETR " + want + " download 1 B 226"; !strings.Contains(tailed, w) {
				t.Errorf("tail printed\n%q\nwant it to contain\n%q", tailed, w)
			}

			page := statusHTML(t, tc.in)
			shownSafely(t, "status page", page, tc.in, true)
			for _, cell := range []struct{ what, re string }{
				{"a live session's user", `<td class="user"><b>(.*?)</b></td>`},
				{"its transfer's path", `<span class="xfer">.*?</span> <span class="mono">(.*?)</span><br>`},
				{"a recent transfer's user", `<tr>\s*<td>[^<]*</td>\s*<td class="mono">.*?</td>\s*<td class="mono">.*?</td>\s*<td>(.*?)</td>`},
			} {
				m := regexp.MustCompile(cell.re).FindStringSubmatch(page)
				if m == nil {
					t.Errorf("status page: no %s (%s):\n%s", cell.what, cell.re, page)
				} else if got := html.UnescapeString(m[1]); got != tc.want {
					t.Errorf("status page: %s shows %q, want %q", cell.what, got, tc.want)
				}
			}
		})
	}
}

// shownSafely fails the test if out holds a character that a terminal or
// browser would act on or hide (newlines aside where the output has its
// own, as a page does), or one of in's runs of spaces.
func shownSafely(t *testing.T, where, out, in string, newlines bool) {
	t.Helper()
	if !utf8.ValidString(out) {
		t.Errorf("%s: not UTF-8: %q", where, out)
	}
	for _, r := range out {
		if r == '\n' && newlines {
			continue
		}
		if r != ' ' && (!unicode.IsGraphic(r) || unicode.Is(unicode.Zs, r) || blank(r)) {
			t.Errorf("%s: %U reached the output: %q", where, r, out)
			return
		}
	}
	for _, run := range regexp.MustCompile(`  +.?`).FindAllString(in, -1) {
		if strings.Contains(out, run) {
			t.Errorf("%s: the name's run of %d spaces reached the output: %q", where, strings.Count(run, " "), out)
		}
	}
}

// statusHTML renders the status page, through the admin handler, for a
// snapshot in which every string a client could have set, and every
// other, is name: a live session with a transfer in progress, a recent
// transfer, a backend and a certificate.
func statusHTML(t *testing.T, name string) string {
	t.Helper()
	now := time.Now()
	st := proxy.Status{
		Started: now.Add(-time.Hour), Now: now,
		Backends: []proxy.BackendStatus{{Weight: 1, Healthy: true, LastCheck: now, CheckError: "x"}},
		Sessions: []proxy.SessionStatus{{Started: now.Add(-time.Minute), Resumed: true,
			Transfer: &proxy.TransferStatus{Bytes: 1, Started: now.Add(-time.Second)}}},
		Recent: []proxy.TransferEvent{{Time: now, Duration: time.Second, Client: netip.MustParseAddr("203.0.113.7"), Bytes: 1, Code: 226, Complete: true}},
	}
	certs := []tlsoffload.CertificateInfo{{Names: []string{"x"}, NotAfter: now.Add(90 * 24 * time.Hour)}}
	fillStrings(reflect.ValueOf(&st).Elem(), name)
	fillStrings(reflect.ValueOf(certs), name)
	page := &statusPage{
		status: func() proxy.Status { return st },
		certs:  func() []tlsoffload.CertificateInfo { return certs },
		host:   "gw", version: "test", log: zerolog.Nop(),
	}
	h := adminHandler(prometheus.NewRegistry(), func() error { return nil }, adminSettings{}, page, zerolog.Nop())
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "http://127.0.0.1:9100/", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status page: %d %s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}

// fillStrings sets every exported string reachable from v to s.
func fillStrings(v reflect.Value, s string) {
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Pointer:
		if !v.IsNil() {
			fillStrings(v.Elem(), s)
		}
	case reflect.Slice:
		for i := range v.Len() {
			fillStrings(v.Index(i), s)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fillStrings(v.Field(i), s)
			}
		}
	}
}
