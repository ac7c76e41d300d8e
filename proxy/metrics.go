package proxy

import (
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts what the proxy does, for Prometheus. Build it with
// NewMetrics and hand it to New in Config.Metrics; a nil *Metrics counts
// nothing, so every hook below may be called on nil.
//
//	reg := prometheus.NewRegistry()
//	cfg.Metrics = proxy.NewMetrics(reg)
//	srv, err := proxy.New(cfg) // also registers the Server's gauges
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
type Metrics struct {
	server atomic.Pointer[Server] // the gauges' source: the latest Server built

	sessionsActive *prometheus.GaugeVec   // listener
	sessions       *prometheus.CounterVec // listener, reason
	handshakes     *prometheus.CounterVec // result, resumed
	logins         *prometheus.CounterVec // result
	transfers      *prometheus.CounterVec // direction, prot, result
	transferBytes  *prometheus.CounterVec // direction, prot
	checks         *prometheus.CounterVec // pool, backend, result
	dialErrors     *prometheus.CounterVec // pool, backend
	storeErrors    *prometheus.CounterVec // op
	limitHits      *prometheus.CounterVec // limit
	proxyRefusals  *prometheus.CounterVec // listener
}

const metricsNamespace = "ftpsgate"

// Names of the gauges read from a Server when scraped.
var (
	descBackendUp = prometheus.NewDesc(metricsNamespace+"_backend_up",
		"Whether a backend is taking new sessions: 1 when healthy and not ejected.", []string{"pool", "backend"}, nil)
	descBackendActive = prometheus.NewDesc(metricsNamespace+"_backend_sessions_active",
		"Sessions relayed to a backend now.", []string{"pool", "backend"}, nil)
	descPassivePorts = prometheus.NewDesc(metricsNamespace+"_passive_ports_in_use",
		"Proxy data ports held for passive transfers now.", nil, nil)
	descAffinityPins = prometheus.NewDesc(metricsNamespace+"_affinity_pins",
		"Pins in the affinity table; absent when the store cannot tell (Redis).", nil, nil)
)

// NewMetrics creates the proxy's metrics and registers them with reg. It
// panics if they are already registered there, as prometheus.MustRegister
// does: one Metrics per registry, shared by the Servers built with it.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Name: name, Help: help}, labels)
	}
	m := &Metrics{
		sessionsActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: metricsNamespace,
			Name: "sessions_active", Help: "Client sessions being served now."}, []string{"listener"}),
		sessions:      counter("sessions_total", "Client sessions ended, by listener and end reason.", "listener", "reason"),
		handshakes:    counter("tls_handshakes_total", "Control connection TLS handshakes, by result and whether the session was resumed.", "result", "resumed"),
		logins:        counter("logins_total", "Logins answered by a backend, by result.", "result"),
		transfers:     counter("transfers_total", "Transfers ended, by direction, PROT and result.", "direction", "prot", "result"),
		transferBytes: counter("transfer_bytes_total", "Bytes of data relayed, by direction and PROT.", "direction", "prot"),
		checks:        counter("backend_checks_total", "Backend health checks, by result.", "pool", "backend", "result"),
		dialErrors:    counter("backend_dial_errors_total", "Sessions that failed to reach a backend.", "pool", "backend"),
		storeErrors:   counter("affinity_store_errors_total", "Affinity store operations that failed (Redis unreachable), by operation.", "op"),
		limitHits:     counter("limit_hits_total", "Clients refused or cut short by a limit, by limit.", "limit"),
		proxyRefusals: counter("proxy_header_refusals_total", "Connections closed for their PROXY header: missing or invalid from a trusted proxy, or sent by another address; by listener (explicit, implicit, data).", "listener"),
	}
	reg.MustRegister(m.sessionsActive, m.sessions, m.handshakes, m.logins, m.transfers,
		m.transferBytes, m.checks, m.dialErrors, m.storeErrors, m.limitHits, m.proxyRefusals, serverCollector{m})
	return m
}

// MetricNames returns the names of every metric a Metrics registers,
// including the gauges read from its Server: what a dashboard may use.
func MetricNames() []string {
	names := []string{
		"sessions_active", "sessions_total", "tls_handshakes_total", "logins_total",
		"transfers_total", "transfer_bytes_total", "backend_checks_total",
		"backend_dial_errors_total", "affinity_store_errors_total", "limit_hits_total", "proxy_header_refusals_total",
		"backend_up", "backend_sessions_active", "passive_ports_in_use", "affinity_pins",
	}
	for i, n := range names {
		names[i] = metricsNamespace + "_" + n
	}
	return names
}

// watch makes s the source of the gauges read at scrape time. A Server
// built later with the same Metrics (a reload) takes over from s.
func (m *Metrics) watch(s *Server) {
	if m == nil {
		return
	}
	m.server.Store(s)
}

func (m *Metrics) sessionStart(kind listenerKind) {
	if m == nil {
		return
	}
	m.sessionsActive.WithLabelValues(kind.String()).Inc()
}

func (m *Metrics) sessionEnd(kind listenerKind, reason string) {
	if m == nil {
		return
	}
	m.sessionsActive.WithLabelValues(kind.String()).Dec()
	m.sessions.WithLabelValues(kind.String(), reason).Inc()
}

func (m *Metrics) handshake(ok, resumed bool) {
	if m == nil {
		return
	}
	result := "failed"
	if ok {
		result = "ok"
	}
	m.handshakes.WithLabelValues(result, strconv.FormatBool(resumed)).Inc()
}

func (m *Metrics) login(ok bool) {
	if m == nil {
		return
	}
	result := "failure"
	if ok {
		result = "success"
	}
	m.logins.WithLabelValues(result).Inc()
}

func (m *Metrics) transfer(e TransferEvent) {
	if m == nil {
		return
	}
	result := "failed"
	if e.Complete {
		result = "ok"
	}
	m.transfers.WithLabelValues(e.Direction, e.Prot, result).Inc()
	m.transferBytes.WithLabelValues(e.Direction, e.Prot).Add(float64(e.Bytes))
}

func (m *Metrics) check(p *pool, mb *member, err error) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "failed"
	}
	m.checks.WithLabelValues(p.name, mb.name(), result).Inc()
}

func (m *Metrics) dialError(p *pool, mb *member) {
	if m == nil {
		return
	}
	m.dialErrors.WithLabelValues(p.name, mb.name()).Inc()
}

func (m *Metrics) storeError(op string) {
	if m == nil {
		return
	}
	m.storeErrors.WithLabelValues(op).Inc()
}

func (m *Metrics) limitHit(limit string) {
	if m == nil {
		return
	}
	m.limitHits.WithLabelValues(limit).Inc()
}

func (m *Metrics) proxyHeaderRefused(listener string) {
	if m == nil {
		return
	}
	m.proxyRefusals.WithLabelValues(listener).Inc()
}

// serverCollector reads a Server's gauges when scraped, so they cannot
// drift from the state they describe.
type serverCollector struct{ m *Metrics }

func (c serverCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descBackendUp
	ch <- descBackendActive
	ch <- descPassivePorts
	ch <- descAffinityPins
}

func (c serverCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.m.server.Load()
	if s == nil {
		return
	}
	now := time.Now()
	for _, p := range s.pools() {
		for _, m := range p.members {
			up := 0.0
			if m.available(now) {
				up = 1
			}
			ch <- prometheus.MustNewConstMetric(descBackendUp, prometheus.GaugeValue, up, p.name, m.name())
			ch <- prometheus.MustNewConstMetric(descBackendActive, prometheus.GaugeValue, float64(m.active.Load()), p.name, m.name())
		}
	}
	ch <- prometheus.MustNewConstMetric(descPassivePorts, prometheus.GaugeValue, float64(s.ports.inUseCount()))
	if s.store != nil {
		if n := s.store.Len(); n >= 0 {
			ch <- prometheus.MustNewConstMetric(descAffinityPins, prometheus.GaugeValue, float64(n))
		}
	}
}

// TransferEvent is one ended transfer, as Config.OnTransfer receives it.
type TransferEvent struct {
	Time      time.Time     // when the final reply was sent
	Duration  time.Duration // from the command to the final reply
	Session   string        // the session id of the log records
	Client    netip.Addr    // the client's IP
	User      string        // the login name
	Backend   string        // the backend's name
	Verb      string        // RETR, STOR, APPE, LIST...
	Path      string        // the command's argument, as the client sent it
	Direction string        // "upload" or "download"
	Bytes     int64         // data bytes relayed
	Prot      string        // "C" (clear) or "P" (private), RFC 4217 section 9
	Code      int           // the final reply's code
	Complete  bool          // the final reply was 2xx
}

// HealthyBackends returns the number of backends, over all pools, taking
// new sessions: not marked down by health checks and not ejected.
func (s *Server) HealthyBackends() int {
	now := time.Now()
	n := 0
	for _, p := range s.pools() {
		for _, m := range p.members {
			if m.available(now) {
				n++
			}
		}
	}
	return n
}
