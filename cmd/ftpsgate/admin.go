package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
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
		Handler:           adminHandler(o.reg, ready, o.admin, newStatusPage(srv, off, log)),
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
// scrapers and probes, which see nothing a session is made of.
func adminHandler(reg *prometheus.Registry, ready func() error, a adminSettings, page http.Handler) http.Handler {
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
	return mux
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
