package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"html/template"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/rs/zerolog"

	"github.com/ftpsgate/ftpsgate/proxy"
	"github.com/ftpsgate/ftpsgate/tlsoffload"
)

//go:embed templates/status.html
var templateFS embed.FS

// statusRefresh is how often the status page reloads itself.
const statusRefresh = 5 * time.Second

// certWarn is how close to its expiry a certificate is shown as a warning.
const certWarn = 14 * 24 * time.Hour

// statusTemplate shows every text through text (escapeText): html/template
// keeps a value from being markup, not from being a bidi override or a
// control character that rearranges or hides what the operator reads.
var statusTemplate = template.Must(template.New("status.html").Funcs(template.FuncMap{
	"text":  escapeText,
	"bytes": func(n int64) string { return formatBytes(float64(n)) },
	"since": func(now, t time.Time) string { return roundDuration(now.Sub(t)) },
	"dur":   roundDuration,
	"rate": func(n int64, d time.Duration) string {
		if d < 100*time.Millisecond {
			return "–"
		}
		return formatBytes(float64(n)/d.Seconds()) + "/s"
	},
	"stamp": func(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05") },
}).ParseFS(templateFS, "templates/status.html"))

// statusPage serves the status page: backends, live sessions with their
// transfer, recent transfers, certificates. Server-rendered, no script:
// the page reloads itself every statusRefresh.
type statusPage struct {
	status  func() proxy.Status
	certs   func() []tlsoffload.CertificateInfo
	host    string
	version string
	log     zerolog.Logger
}

func newStatusPage(srv *proxy.Server, off *tlsoffload.Offload, log zerolog.Logger) *statusPage {
	host, _ := os.Hostname()
	return &statusPage{status: srv.Status, certs: off.Certificates, host: host, version: versionString(), log: log}
}

// statusView is what the template renders.
type statusView struct {
	proxy.Status
	Host, Version string
	Refresh       int // seconds
	Certs         []certView
	Healthy       int
	Moving        int // sessions with a transfer in progress
}

type certView struct {
	tlsoffload.CertificateInfo
	Left  time.Duration // until expiry; negative once expired
	Class string        // "ok", "warn" or "bad"
}

func (p *statusPage) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := p.status()
	v := statusView{Status: st, Host: p.host, Version: p.version, Refresh: int(statusRefresh / time.Second)}
	for _, b := range st.Backends {
		if b.Healthy {
			v.Healthy++
		}
	}
	for _, s := range st.Sessions {
		if s.Transfer != nil {
			v.Moving++
		}
	}
	for _, c := range p.certs() {
		cv := certView{CertificateInfo: c, Left: c.NotAfter.Sub(st.Now), Class: "ok"}
		switch {
		case cv.Left <= 0:
			cv.Class = "bad"
		case cv.Left < certWarn:
			cv.Class = "warn"
		}
		v.Certs = append(v.Certs, cv)
	}
	var buf bytes.Buffer
	if err := statusTemplate.Execute(&buf, v); err != nil {
		p.log.Error().Err(err).Msg("status page")
		http.Error(w, "status page failed", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	// No script, no outside resource: a user name or path that got past
	// escaping still could not run or load anything.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	w.Write(buf.Bytes())
}

// roundDuration shows a duration to a person: 850ms, 12s, 4m05s, 3h12m,
// 5d03h.
func roundDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "-" + roundDuration(-d)
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	case d < time.Minute:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	case d < time.Hour:
		return pad2(int64(d/time.Minute), "m", int64(d%time.Minute/time.Second), "s")
	case d < 24*time.Hour:
		return pad2(int64(d/time.Hour), "h", int64(d%time.Hour/time.Minute), "m")
	}
	return pad2(int64(d/(24*time.Hour)), "d", int64(d%(24*time.Hour)/time.Hour), "h")
}

func pad2(a int64, au string, b int64, bu string) string {
	bs := strconv.FormatInt(b, 10)
	if b < 10 {
		bs = "0" + bs
	}
	return strconv.FormatInt(a, 10) + au + bs + bu
}

// basicAuth asks for user and password (RFC 7617) before h. The
// comparison takes the same time whatever the guess: both sides are hashed
// first, so not even the length leaks.
func basicAuth(user, password string, h http.Handler) http.Handler {
	wantUser, wantPassword := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(password))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		gotUser, gotPassword := sha256.Sum256([]byte(u)), sha256.Sum256([]byte(p))
		// & rather than &&: the password is compared even for a wrong user.
		match := subtle.ConstantTimeCompare(gotUser[:], wantUser[:]) & subtle.ConstantTimeCompare(gotPassword[:], wantPassword[:])
		if !ok || match != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="ftpsgate", charset="UTF-8"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}
