package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ftpsgate/ftpsgate/ftpctl/ftptest"
	"github.com/ftpsgate/ftpsgate/proxy"
)

// serveAdmin runs the proxy as serve does, with an admin listener, until
// the test ends; it returns the server and the admin base URL. The
// listener takes a port of its own (":0") and the URL comes from its
// "admin listening" record: a port found free and then bound later may be
// taken in between by another parallel test.
func serveAdmin(t *testing.T, st settings) (*proxy.Server, string) {
	t.Helper()
	st.admin.listen = "127.0.0.1:0"
	logs := &syncBuffer{}
	log, err := newLogger(io.MultiWriter(suiteLog, logs), "debug", "json")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *proxy.Server, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, st, log, func(s *proxy.Server) { ready <- s }) }()
	var srv *proxy.Server
	select {
	case srv = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("run: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	for _, line := range strings.Split(logs.String(), "\n") {
		var r struct{ Message, Address string }
		if json.Unmarshal([]byte(line), &r) == nil && r.Message == "admin listening" {
			return srv, "http://" + r.Address
		}
	}
	t.Fatalf("no admin listening record:\n%s", logs)
	return nil, ""
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// scrapeMetrics reads the text exposition at url into name{labels} -> value.
func scrapeMetrics(t *testing.T, url string) map[string]float64 {
	t.Helper()
	code, body := get(t, url)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d", url, code)
	}
	out := make(map[string]float64)
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

func TestAdminMetricsAndXferlog(t *testing.T) {
	t.Parallel()
	mem := ftptest.NewUnstartedServer()
	mem.Users = map[string]string{"alice": "alice-pw"}
	mem.FS.WriteFile("/pub/file name.bin", bytes.Repeat([]byte("ftpsgate"), 4096))
	mem.Start()
	t.Cleanup(mem.Close)

	var st settings
	st.proxy = proxy.Config{
		Listen:   "127.0.0.1:0",
		Backends: []proxy.Backend{{Address: mem.Addr(), Name: "mem"}},
		Health:   proxy.Health{Interval: 100 * time.Millisecond, Timeout: time.Second},
	}
	st.xferlog = filepath.Join(t.TempDir(), "xferlog")
	srv, admin := serveAdmin(t, st)

	if code, _ := get(t, admin+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d", code)
	}
	if code, body := get(t, admin+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz: %d %q", code, body)
	}
	if code, _ := get(t, admin+"/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("/debug/pprof/ with pprof = false: %d, want 404", code)
	}

	before := scrapeMetrics(t, admin+"/metrics")
	client := &tls.Config{InsecureSkipVerify: true, ServerName: "localhost", ClientSessionCache: tls.NewLRUClientSessionCache(8)}
	c, err := ftp.Dial(srv.ExplicitAddr().String(), ftp.DialWithTimeout(10*time.Second), ftp.DialWithExplicitTLS(client))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login("alice", "alice-pw"); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	r, err := c.Retr("/pub/file name.bin")
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, r)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Stor("/up.txt", strings.NewReader("hello xferlog\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.List("/"); err != nil { // a listing: counted, not in xferlog
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	ended := `ftpsgate_sessions_total{listener="explicit",reason="quit"}`
	deadline := time.Now().Add(10 * time.Second)
	var after map[string]float64
	for {
		after = scrapeMetrics(t, admin+"/metrics")
		if after[ended]-before[ended] == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}

	for _, d := range []struct {
		key  string
		want float64
	}{
		{ended, 1},
		{`ftpsgate_sessions_active{listener="explicit"}`, 0},
		{`ftpsgate_tls_handshakes_total{result="ok",resumed="false"}`, 1},
		{`ftpsgate_logins_total{result="success"}`, 1},
		{`ftpsgate_transfers_total{direction="download",prot="P",result="ok"}`, 2}, // RETR and LIST
		{`ftpsgate_transfers_total{direction="upload",prot="P",result="ok"}`, 1},
		{`ftpsgate_transfer_bytes_total{direction="upload",prot="P"}`, float64(len("hello xferlog\n"))},
		{`ftpsgate_backend_up{backend="mem",pool="default"}`, 0}, // a gauge: still 1
		{`ftpsgate_backend_sessions_active{backend="mem",pool="default"}`, 0},
	} {
		if got := after[d.key] - before[d.key]; got != d.want {
			t.Errorf("%s: delta %v, want %v", d.key, got, d.want)
		}
	}
	if got := after[`ftpsgate_transfer_bytes_total{direction="download",prot="P"}`] -
		before[`ftpsgate_transfer_bytes_total{direction="download",prot="P"}`]; got < float64(n) {
		t.Errorf("download bytes delta %v, want at least the file's %d", got, n)
	}
	if after[`ftpsgate_backend_up{backend="mem",pool="default"}`] != 1 {
		t.Errorf("ftpsgate_backend_up = %v, want 1", after[`ftpsgate_backend_up{backend="mem",pool="default"}`])
	}
	if _, ok := after[`ftpsgate_passive_ports_in_use`]; !ok {
		t.Error("ftpsgate_passive_ports_in_use missing")
	}

	// The xferlog: one line per file transfer, listings left out.
	src, err := os.ReadFile(st.xferlog)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(st.xferlog); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("xferlog mode: %v, %v; want 0640", fi.Mode().Perm(), err)
	}
	lines := strings.Split(strings.TrimSuffix(string(src), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("xferlog has %d lines, want 2:\n%s", len(lines), src)
	}
	for i, want := range []struct {
		bytes     int64
		name, dir string
	}{
		{n, "/pub/file_name.bin", "o"},
		{int64(len("hello xferlog\n")), "/up.txt", "i"},
	} {
		f := strings.Fields(lines[i])
		if len(f) != 18 { // the current-time is five fields
			t.Fatalf("xferlog line %q: %d fields, want 18", lines[i], len(f))
		}
		when, err := time.ParseInLocation("Mon Jan 2 15:04:05 2006", strings.Join(f[:5], " "), time.Local)
		if err != nil || when.Before(began.Add(-2*time.Second)) || when.After(time.Now()) {
			t.Errorf("current-time %q: %v, %v", strings.Join(f[:5], " "), when, err)
		}
		if secs, err := strconv.Atoi(f[5]); err != nil || secs < 1 {
			t.Errorf("transfer-time %q: want whole seconds, at least 1", f[5])
		}
		got := f[6:]
		wantF := []string{"127.0.0.1", strconv.FormatInt(want.bytes, 10), want.name, "b", "_", want.dir, "r", "alice", "ftp", "0", "*", "c"}
		names := []string{"remote-host", "file-size", "filename", "transfer-type", "special-action-flag", "direction",
			"access-mode", "username", "service-name", "authentication-method", "authenticated-user-id", "completion-status"}
		for j := range wantF {
			if got[j] != wantF[j] {
				t.Errorf("line %d %s = %q, want %q", i, names[j], got[j], wantF[j])
			}
		}
	}
}

func TestAdminReadyz(t *testing.T) {
	t.Parallel()
	mem := ftptest.NewServer()
	t.Cleanup(mem.Close)
	for _, tc := range []struct {
		name    string
		backend string
		pprof   bool
		code    int
		reason  string
	}{
		{"no healthy backend", "", false, http.StatusServiceUnavailable, "no healthy backend"},
		{"healthy backend", mem.Addr(), true, http.StatusOK, "ready"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr := tc.backend
			if addr == "" {
				addr = freeAddr(t) // nothing listens there
			}
			var st settings
			st.proxy = proxy.Config{
				Listen:   "127.0.0.1:0",
				Backends: []proxy.Backend{{Address: addr, Name: "b"}},
				Health:   proxy.Health{Interval: 50 * time.Millisecond, Timeout: time.Second, Fall: 1, Rise: 1},
			}
			st.admin.pprof = tc.pprof
			_, admin := serveAdmin(t, st)
			deadline := time.Now().Add(10 * time.Second)
			for {
				code, body := get(t, admin+"/readyz")
				if code == tc.code && strings.Contains(body, tc.reason) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("/readyz: %d %q, want %d %q", code, body, tc.code, tc.reason)
				}
				time.Sleep(20 * time.Millisecond)
			}
			want := http.StatusNotFound
			if tc.pprof {
				want = http.StatusOK
			}
			if code, _ := get(t, admin+"/debug/pprof/"); code != want {
				t.Errorf("/debug/pprof/ with pprof = %v: %d, want %d", tc.pprof, code, want)
			}
		})
	}
}

// TestGrafanaDashboardMetrics: every ftpsgate_ metric the example
// dashboard's expressions use is one the proxy registers.
func TestGrafanaDashboardMetrics(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile("../../examples/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(src, &dash); err != nil {
		t.Fatal(err)
	}
	known := proxy.MetricNames()
	name := regexp.MustCompile(`\bftpsgate_[a-z_]+\b`)
	used := 0
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, n := range name.FindAllString(tg.Expr, -1) {
				used++
				if !slices.Contains(known, n) {
					t.Errorf("panel %q uses %s, which the proxy does not register", p.Title, n)
				}
			}
		}
	}
	if used == 0 {
		t.Error("the dashboard uses no ftpsgate_ metric")
	}
}

// TestAdminHostCheck: every path of the admin listener answers only a Host
// that is an IP address, localhost (or under .localhost) or a name of
// [admin] hosts, whatever the port; any other gets 421, and is logged
// once, escaped.
func TestAdminHostCheck(t *testing.T) {
	t.Parallel()
	page := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "status page") })
	var logs bytes.Buffer
	log, _ := newLogger(&logs, "info", "json")
	h := adminHandler(prometheus.NewRegistry(), func() error { return nil },
		adminSettings{hosts: []string{"status.example.com"}}, page, log)
	for _, tc := range []struct {
		host string
		ok   bool
	}{
		{"127.0.0.1:9100", true},
		{"127.0.0.1", true},
		{"[::1]:9100", true},
		{"[::1]", true},
		{"10.0.0.7:9100", true}, // by IP, as Prometheus and the kubelet ask
		{"localhost:9100", true},
		{"LocalHost.", true},
		{"grafana.localhost:9100", true},
		{"status.example.com", true},
		{"Status.Example.COM.:8443", true},
		{"", true}, // HTTP/1.0 without Host: no browser sends that
		{"evil.example", false},
		{"evil.example:9100", false},
		{"localhost.evil.example", false},
		{"status.example.com.evil.example", false},
		{"example.com", false},
		{"127.0.0.1.nip.io", false},
		{"evil\u202e.example", false},
	} {
		for _, path := range []string{"/", "/metrics", "/healthz", "/readyz"} {
			req := httptest.NewRequest("GET", "http://127.0.0.1:9100"+path, nil)
			req.Host = tc.host
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if tc.ok && rec.Code != http.StatusOK {
				t.Errorf("Host %q, GET %s: %d, want 200", tc.host, path, rec.Code)
			}
			if !tc.ok && (rec.Code != http.StatusMisdirectedRequest || !strings.Contains(rec.Body.String(), "[admin] hosts")) {
				t.Errorf("Host %q, GET %s: %d %q, want 421", tc.host, path, rec.Code, rec.Body)
			}
		}
	}
	refused := map[string]int{}
	for _, line := range strings.Split(logs.String(), "\n") {
		if line == "" {
			continue
		}
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%v: %q", err, line)
		}
		if r["message"] != "admin request for an unknown host refused" || r["level"] != "warn" {
			t.Errorf("unexpected record %v", r)
		}
		refused[r["host"].(string)]++
	}
	want := map[string]int{"evil.example": 1, "evil.example:9100": 1, "localhost.evil.example": 1,
		"status.example.com.evil.example": 1, "example.com": 1, "127.0.0.1.nip.io": 1, `evil\u202e.example`: 1}
	if !reflect.DeepEqual(refused, want) {
		t.Errorf("hosts logged %v, want each refused host once, escaped: %v", refused, want)
	}
}

// TestAdminHostCheckListening: the admin listener serve starts checks
// Host with the configured names, on a real socket.
func TestAdminHostCheckListening(t *testing.T) {
	t.Parallel()
	mem := ftptest.NewServer()
	t.Cleanup(mem.Close)
	var st settings
	st.proxy = proxy.Config{Listen: "127.0.0.1:0", Backends: []proxy.Backend{{Address: mem.Addr(), Name: "b"}}}
	st.admin.hosts = []string{"status.example.com"}
	_, admin := serveAdmin(t, st)
	for _, tc := range []struct {
		host, path string
		code       int
	}{
		{"", "/healthz", http.StatusOK}, // the listener's address
		{"status.example.com:9100", "/", http.StatusOK},
		{"evil.example", "/", http.StatusMisdirectedRequest},
		{"evil.example:9100", "/metrics", http.StatusMisdirectedRequest},
	} {
		req, _ := http.NewRequest("GET", admin+tc.path, nil)
		if tc.host != "" {
			req.Host = tc.host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("Host %q, GET %s: %d, want %d", tc.host, tc.path, resp.StatusCode, tc.code)
		}
	}
	// HTTP/1.0 without Host, as HAProxy's option httpchk asks.
	c, err := net.Dial("tcp", strings.TrimPrefix(admin, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /healthz HTTP/1.0\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	status, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.0 200") {
		t.Errorf("HTTP/1.0 without Host: %q, %v", status, err)
	}
}
