package main

import (
	"bytes"
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/ftpsgate/ftpsgate/ftpctl/ftptest"
	"github.com/ftpsgate/ftpsgate/proxy"
)

// TestStatusPage: the page at / shows the backend, a session whose user
// name is hostile HTML, escaped, with its download in progress, then the
// transfer among the recent ones, and the certificate.
func TestStatusPage(t *testing.T) {
	t.Parallel()
	const hostile = `<script>alert("x")</script>`
	mem := ftptest.NewUnstartedServer()
	mem.Users = map[string]string{hostile: "pw"}
	mem.FS.WriteFile("/big.bin", bytes.Repeat([]byte("ftpsgate"), 8<<20)) // 64 MiB
	mem.Start()
	t.Cleanup(mem.Close)

	var st settings
	st.proxy = proxy.Config{
		Listen:   "127.0.0.1:0",
		Backends: []proxy.Backend{{Address: mem.Addr(), Name: "mem-backend"}},
		Health:   proxy.Health{Interval: 100 * time.Millisecond, Timeout: time.Second},
	}
	srv, admin := serveAdmin(t, st)

	c, err := ftp.Dial(srv.ExplicitAddr().String(), ftp.DialWithTimeout(10*time.Second),
		ftp.DialWithExplicitTLS(&tls.Config{InsecureSkipVerify: true, ServerName: "localhost", ClientSessionCache: tls.NewLRUClientSessionCache(8)}))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login(hostile, "pw"); err != nil {
		t.Fatal(err)
	}
	r, err := c.Retr("/big.bin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(r, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}

	// The client reads no more for now: the transfer stays in progress.
	var page string
	waitForPage(t, admin+"/", func(body string) bool {
		page = body
		return strings.Contains(body, "RETR") && strings.Contains(body, "/big.bin")
	})
	escaped := `&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;`
	for _, want := range []string{
		`<meta http-equiv="refresh" content="5">`,
		`data-backend="mem-backend"`, "UP",
		escaped,
		"download, PROT P",
		"self-signed", "localhost",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the page during the transfer lacks %q:\n%s", want, page)
		}
	}
	if strings.Contains(page, "<script") {
		t.Errorf("the user name reached the page unescaped:\n%s", page)
	}

	if _, err := io.Copy(io.Discard, r); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	waitForPage(t, admin+"/", func(body string) bool {
		page = body
		return strings.Contains(body, "No client is connected.")
	})
	for _, want := range []string{"64.0 MiB", escaped, "226"} {
		if !strings.Contains(page, want) {
			t.Errorf("the page after the transfer lacks %q:\n%s", want, page)
		}
	}
}

// waitForPage polls the page at url until ok accepts it.
func waitForPage(t *testing.T, url string, ok func(string) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := get(t, url)
		if code == http.StatusOK && ok(body) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %d, never what the test waits for:\n%s", url, code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStatusPageBasicAuth: with a password, the status page and the
// profiler refuse a request without the right user and password, and
// scrapers and probes still get through without any.
func TestStatusPageBasicAuth(t *testing.T) {
	t.Parallel()
	mem := ftptest.NewServer()
	t.Cleanup(mem.Close)
	var st settings
	st.proxy = proxy.Config{
		Listen:   "127.0.0.1:0",
		Backends: []proxy.Backend{{Address: mem.Addr(), Name: "b"}},
	}
	st.admin.pprof, st.admin.user, st.admin.password = true, "ops", "correct horse"
	_, admin := serveAdmin(t, st)

	for _, tc := range []struct {
		path, user, password string
		auth                 bool
		code                 int
	}{
		{"/", "", "", false, http.StatusUnauthorized},
		{"/", "ops", "wrong", true, http.StatusUnauthorized},
		{"/", "admin", "correct horse", true, http.StatusUnauthorized},
		{"/", "ops", "correct horse!", true, http.StatusUnauthorized},
		{"/", "ops", "correct horse", true, http.StatusOK},
		{"/debug/pprof/", "", "", false, http.StatusUnauthorized},
		{"/debug/pprof/", "ops", "correct horse", true, http.StatusOK},
		{"/metrics", "", "", false, http.StatusOK},
		{"/healthz", "", "", false, http.StatusOK},
		{"/nothing-here", "ops", "correct horse", true, http.StatusNotFound},
	} {
		req, _ := http.NewRequest("GET", admin+tc.path, nil)
		if tc.auth {
			req.SetBasicAuth(tc.user, tc.password)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("GET %s as %q/%q: %d, want %d", tc.path, tc.user, tc.password, resp.StatusCode, tc.code)
		}
		if tc.code == http.StatusUnauthorized && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), `Basic realm="ftpsgate"`) {
			t.Errorf("GET %s: 401 without WWW-Authenticate: %q", tc.path, resp.Header)
		}
		if tc.path == "/" && tc.code == http.StatusOK && !strings.Contains(string(body), `data-backend="b"`) {
			t.Errorf("status page after login lacks the backend:\n%s", body)
		}
	}
	// /readyz answers, whatever the backend's health, without a password.
	if code, _ := get(t, admin+"/readyz"); code == http.StatusUnauthorized {
		t.Error("/readyz asked for a password")
	}
}

func TestRoundDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		850 * time.Millisecond:                "850ms",
		12*time.Second + 400*time.Millisecond: "12s",
		4*time.Minute + 5*time.Second:         "4m05s",
		3*time.Hour + 12*time.Minute:          "3h12m",
		5*24*time.Hour + 3*time.Hour:          "5d03h",
		-90 * time.Second:                     "-1m30s",
	} {
		if got := roundDuration(d); got != want {
			t.Errorf("roundDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
