package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/ftpsgate/ftpsgate/proxy"
	"github.com/ftpsgate/ftpsgate/tlsoffload"
)

// adminSettings is the [admin] table: the operators' HTTP listener.
type adminSettings struct {
	listen string // host:port; empty: no admin listener
	pprof  bool   // serve /debug/pprof/ too
	// user and password, when password is set, are asked with HTTP basic
	// authentication on the status page and /debug/pprof/.
	user, password string
	// hosts are the names, besides IP addresses and localhost, that
	// requests may carry in Host ([admin] hosts): lower case, without a
	// trailing dot.
	hosts []string
}

// ops is what serve runs for operators beside the proxy: the metrics
// registry, the admin HTTP server and the xferlog file.
type ops struct {
	admin   adminSettings
	reg     *prometheus.Registry // nil without an admin listener
	xferlog *xferlog             // nil without [log] xferlog
	http    *http.Server         // nil until serve
	done    chan struct{}        // closed when http's Serve returned
}

// openOps prepares the metrics and the xferlog file and hooks them into pc,
// before the proxy is built.
func openOps(st settings, pc *proxy.Config) (*ops, error) {
	o := &ops{admin: st.admin}
	if st.admin.listen != "" {
		o.reg = prometheus.NewRegistry()
		o.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		pc.Metrics = proxy.NewMetrics(o.reg)
	}
	if st.xferlog != "" {
		f, err := os.OpenFile(st.xferlog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return nil, fmt.Errorf("log.xferlog: %w", err)
		}
		o.xferlog = &xferlog{w: f, c: f}
		pc.OnTransfer = o.xferlog.write
	}
	return o, nil
}

// serve starts the admin listener, if configured, once srv exists; off
// holds the certificates (/readyz wants the default one, the status page
// lists them all).
func (o *ops) serve(srv *proxy.Server, off *tlsoffload.Offload, log zerolog.Logger) error {
	if o.admin.listen == "" {
		return nil
	}
	ln, err := net.Listen("tcp", o.admin.listen)
	if err != nil {
		return fmt.Errorf("admin.listen: %w", err)
	}
	ready := func() error {
		if off.Certificate() == nil {
			return errors.New("no certificate loaded")
		}
		if srv.HealthyBackends() == 0 {
			return errors.New("no healthy backend")
		}
		return nil
	}
	o.http = &http.Server{
		Handler:           adminHandler(o.reg, ready, o.admin, newStatusPage(srv, off, log), log),
		ReadHeaderTimeout: 10 * time.Second,
	}
	o.done = make(chan struct{})
	go func() {
		defer close(o.done)
		if err := o.http.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg("admin listener failed")
		}
	}()
	log.Info().Str("address", ln.Addr().String()).Bool("pprof", o.admin.pprof).
		Bool("basic_auth", o.admin.password != "").Msg("admin listening")
	return nil
}

// Close stops the admin listener and closes the xferlog file.
func (o *ops) Close() error {
	var err error
	if o.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err = o.http.Shutdown(ctx)
		<-o.done
	}
	if o.xferlog != nil {
		err = errors.Join(err, o.xferlog.c.Close())
	}
	return err
}

// adminHandler serves the status page at /, /metrics from reg, /healthz,
// /readyz (ready's error is the reason for a 503) and, with a.pprof,
// /debug/pprof/. With a.password, the status page and the profiler ask for
// basic authentication; /metrics, /healthz and /readyz stay open for
// scrapers and probes, which see nothing a session is made of. Every
// path answers only the hosts hostCheck accepts.
func adminHandler(reg *prometheus.Registry, ready func() error, a adminSettings, page http.Handler, log zerolog.Logger) http.Handler {
	guard := func(h http.Handler) http.Handler {
		if a.password == "" {
			return h
		}
		return basicAuth(a.user, a.password, h)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", guard(page))
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if err := ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	if a.pprof {
		mux.Handle("GET /debug/pprof/", guard(http.HandlerFunc(pprof.Index)))
		mux.Handle("GET /debug/pprof/cmdline", guard(http.HandlerFunc(pprof.Cmdline)))
		mux.Handle("GET /debug/pprof/profile", guard(http.HandlerFunc(pprof.Profile)))
		mux.Handle("GET /debug/pprof/symbol", guard(http.HandlerFunc(pprof.Symbol)))
		mux.Handle("GET /debug/pprof/trace", guard(http.HandlerFunc(pprof.Trace)))
	}
	return newHostCheck(a.hosts, log, mux)
}

// hostCheck answers a request only when its Host names this listener:
// an IP address, localhost or a name under .localhost (RFC 6761: they
// resolve to loopback only), or one of [admin] hosts; the port is not
// looked at.
//
// It defeats DNS rebinding: a page on evil.example whose name the
// attacker then points at 127.0.0.1 has the victim's browser fetch the
// status page as the page's own origin, and read it; the browser still
// sends "Host: evil.example". Such requests get 421 Misdirected Request
// (RFC 9110 section 15.5.20: this server does not answer for that name,
// which is the case) rather than 403, which would say a permission is
// missing that some credential could grant. A request without Host
// (HTTP/1.0, as HAProxy's option httpchk sends by default) comes from no
// browser, and passes.
type hostCheck struct {
	names map[string]bool
	log   zerolog.Logger
	next  http.Handler

	mu     sync.Mutex
	logged map[string]bool // refused hosts already logged; guarded by mu
}

// maxLoggedHosts bounds hostCheck.logged: past it the set starts again,
// so a flood of names costs at most one record per name and no memory.
const maxLoggedHosts = 256

func newHostCheck(hosts []string, log zerolog.Logger, next http.Handler) *hostCheck {
	h := &hostCheck{names: map[string]bool{}, log: log, next: next, logged: map[string]bool{}}
	for _, n := range hosts {
		h.names[n] = true
	}
	return h
}

func (h *hostCheck) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.accepts(r.Host) {
		h.next.ServeHTTP(w, r)
		return
	}
	h.mu.Lock()
	first := !h.logged[r.Host]
	if first {
		if len(h.logged) >= maxLoggedHosts {
			clear(h.logged)
		}
		h.logged[r.Host] = true
	}
	h.mu.Unlock()
	if first {
		// Once per host: a rebinding page may ask many times a second.
		h.log.Warn().Str("host", escapeText(r.Host)).Str("client", r.RemoteAddr).
			Str("path", escapeText(r.URL.Path)).Msg("admin request for an unknown host refused")
	}
	http.Error(w, "misdirected request: this listener does not answer for that host name; list it in [admin] hosts if it is yours", http.StatusMisdirectedRequest)
}

// accepts reports whether host, a request's Host, names this listener.
func (h *hostCheck) accepts(host string) bool {
	if host == "" {
		return true
	}
	if name, _, err := net.SplitHostPort(host); err == nil {
		host = name
	}
	host = strings.TrimSuffix(strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")), ".")
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	return host == "localhost" || strings.HasSuffix(host, ".localhost") || h.names[host]
}

// adminHostName returns a name of [admin] hosts as hostCheck compares it
// (lower case, no trailing dot), and whether it is a host name at all: no
// port, no scheme, no wildcard.
func adminHostName(s string) (string, bool) {
	name := strings.TrimSuffix(strings.ToLower(s), ".")
	if name == "" || strings.HasPrefix(name, ".") || strings.Contains(name, "..") {
		return "", false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return "", false
		}
	}
	return name, true
}

// loopbackListen reports whether addr, host:port, is reachable from this
// machine only: a loopback address or localhost. ":9100", "0.0.0.0:9100",
// a LAN address and any other name are reachable from elsewhere.
func loopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// xferlog appends one wu-ftpd xferlog line per file transfer (man 5
// xferlog), for the log analysers FTP administrators already run.
type xferlog struct {
	mu sync.Mutex // serialises lines from concurrent sessions
	w  io.Writer
	c  io.Closer
}

// xferlogVerbs are the transfers of files; listings are not logged.
var xferlogVerbs = map[string]bool{"RETR": true, "STOR": true, "STOU": true, "APPE": true}

func (x *xferlog) write(e proxy.TransferEvent) {
	if !xferlogVerbs[e.Verb] {
		return
	}
	line := xferlogLine(e)
	x.mu.Lock()
	defer x.mu.Unlock()
	io.WriteString(x.w, line) // a full disk must not stop transfers
}

// xferlogLine formats e as the fields man 5 xferlog lists, in order:
// current-time transfer-time remote-host file-size filename transfer-type
// special-action-flag direction access-mode username service-name
// authentication-method authenticated-user-id completion-status.
//
// The proxy does not follow TYPE, so transfer-type is always b (binary).
// filename and username are as the client sent them, through escapeText,
// the single spaces it leaves written _ as wu-ftpd writes blanks: the
// readers of the file split a line into its fields on blanks.
func xferlogLine(e proxy.TransferEvent) string {
	secs := int64((e.Duration + time.Second/2) / time.Second)
	if secs == 0 {
		secs = 1 // wu-ftpd's rounding: a transfer takes at least a second
	}
	direction := "o"
	if e.Direction == "upload" {
		direction = "i"
	}
	status := "i"
	if e.Complete {
		status = "c"
	}
	user := xferlogField(e.User)
	if user == "" {
		user = "*"
	}
	name := xferlogField(e.Path)
	if name == "" {
		name = "-"
	}
	fields := []string{
		e.Time.Format("Mon Jan _2 15:04:05 2006"),
		strconv.FormatInt(secs, 10),
		e.Client.String(),
		strconv.FormatInt(e.Bytes, 10),
		name,
		"b", // transfer-type
		"_", // special-action-flag: no compression or tar
		direction,
		"r", // access-mode: a real (logged-in) user
		user,
		"ftp", // service-name
		"0",   // authentication-method: none (no RFC 931 ident)
		"*",   // authenticated-user-id: not available
		status,
	}
	return strings.Join(fields, " ") + "\n"
}

// xferlogField is a client's text as an xferlog field: escaped, with no
// blank left in it.
func xferlogField(s string) string {
	return strings.ReplaceAll(escapeText(s), " ", "_")
}
