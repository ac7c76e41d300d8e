package tlsoffload

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// ACMEConfig obtains and renews certificates from an ACME CA (Let's
// Encrypt by default) with golang.org/x/crypto/acme/autocert. Configuring it
// accepts the CA's terms of service.
type ACMEConfig struct {
	// Domains are the names to obtain certificates for, one certificate
	// each; the first is the default, served to clients without SNI (unless
	// certificate files are configured too: then the first file's is). They are
	// also the host policy: no other name, whatever a client sends as SNI or
	// a request's Host, ever makes ftpsgate place an order, so nobody can
	// exhaust the CA's rate limits for us. Zero: no ACME.
	Domains []string
	// Email is the contact the CA warns about expiring certificates and
	// policy changes. Zero: none.
	Email string
	// CacheDir keeps the account key and the certificates, so a restart
	// reuses them instead of ordering again (the CA's rate limits allow few
	// duplicate certificates a week). Zero: StateDir/acme.
	CacheDir string
	// Cache replaces CacheDir, e.g. with a store shared by a fleet so that
	// instances do not each order certificates. Zero: a directory cache.
	Cache autocert.Cache
	// DirectoryURL is the CA's ACME directory. Zero: Let's Encrypt
	// production; its staging directory, or a private CA, by URL.
	DirectoryURL string
	// DirectoryCAFile is a PEM file of CAs to trust, besides the system
	// roots, for the directory's HTTPS (a private CA's). Zero: system roots.
	DirectoryCAFile string
	// HTTPListen is where http-01 challenges are answered; the CA connects to
	// port 80 of each domain, so this must be reachable there. Zero: ":80".
	// "off": no http-01 (TLSALPNListen must be set).
	HTTPListen string
	// TLSALPNListen is where tls-alpn-01 challenges are answered (the CA
	// connects to port 443 of each domain), e.g. ":443". Only there is
	// "acme-tls/1" offered. Zero: no tls-alpn-01.
	TLSALPNListen string
	// RenewBefore is how long before expiry a certificate is renewed (at
	// most 30 days); it must be shorter than the certificates' lifetime, or
	// autocert orders again as soon as it has one (reported as an
	// EventFailed, and by Check). Zero: a third of the lifetime, at most 30
	// days (autocert's default).
	RenewBefore time.Duration
}

func (a ACMEConfig) httpListen() string {
	if a.HTTPListen == "" {
		return ":80"
	}
	return a.HTTPListen
}

// ObtainError is why a certificate for an ACME domain could not be obtained.
// Start returns one per failed domain, joined; every one, at Start and at
// Run's retries, is also reported as an EventFailed.
type ObtainError struct {
	Domain string
	// Err is autocert's error.
	Err error
	// CA is the CA's last problem report for the domain (a failed
	// challenge's type and detail, or a refused request's), when Err does not
	// carry it already. autocert reports a failed validation only as "no
	// viable challenge type found"; this is what the CA said.
	CA string
	// Retry is when Run tries again.
	Retry time.Time
}

func (e *ObtainError) Error() string {
	msg := fmt.Sprintf("tlsoffload: acme: no certificate for %s: %v", e.Domain, e.Err)
	if e.CA != "" && !strings.Contains(msg, e.CA) {
		msg += "; the CA said: " + e.CA
	}
	if !e.Retry.IsZero() {
		msg += "; next try at " + e.Retry.UTC().Format(time.RFC3339)
	}
	return msg
}

func (e *ObtainError) Unwrap() error { return e.Err }

// acmeSource is the ACME certificate source: an autocert.Manager, the
// challenge listeners, and the bookkeeping that turns autocert's silent work
// into events.
type acmeSource struct {
	o       *Offload
	cfg     ACMEConfig
	m       *autocert.Manager
	ca      *caTransport
	domains []*acmeDomain // in configuration order; [0] is the default
	byName  map[string]*acmeDomain
	http    http.Handler // the http-01 responder; nil when HTTPListen is "off"

	retryBase  time.Duration // backoff after a first failure, doubled after each
	retryMax   time.Duration
	checkEvery time.Duration // how often Run retries, syncs and looks for overdue renewals

	// challengeTimeout bounds a connection to a challenge listener: a
	// request's reading and writing, and the idle time between requests.
	challengeTimeout time.Duration

	mu sync.Mutex // guards install and acmeDomain's supervisor fields
}

// acmeDomain is one configured domain.
type acmeDomain struct {
	name string
	cert atomic.Pointer[tls.Certificate] // what handshakes get; nil before the first one
	// managed: the autocert.Manager holds a certificate for the domain, so
	// asking it returns at once and never places an order.
	managed atomic.Bool

	// Guarded by acmeSource.mu.
	failures        int
	nextTry         time.Time
	failedAt        time.Time // when the last obtain failed
	inflight        bool
	overdueReported time.Time
	storeFailed     bool // the cache refused its last certificate (reported)
}

func newACMESource(o *Offload, cfg ACMEConfig) (*acmeSource, error) {
	a := &acmeSource{
		o: o, cfg: cfg, byName: map[string]*acmeDomain{},
		retryBase: 5 * time.Minute, retryMax: 4 * time.Hour, checkEvery: time.Minute,
		challengeTimeout: 10 * time.Second,
	}
	for _, name := range cfg.Domains {
		d := &acmeDomain{name: normalizeDomain(name)}
		a.domains = append(a.domains, d)
		a.byName[d.name] = d
	}

	transport := http.DefaultTransport.(*http.Transport).Clone()
	if cfg.DirectoryCAFile != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		data, err := os.ReadFile(cfg.DirectoryCAFile)
		if err != nil {
			return nil, fmt.Errorf("tlsoffload: acme: %w", err)
		}
		if !pool.AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("tlsoffload: acme: %s: no PEM certificate", cfg.DirectoryCAFile)
		}
		transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	a.ca = newCATransport(transport, cfg.TLSALPNListen == "", a.caProblem)

	cache := cfg.Cache
	if cache == nil {
		cache = autocert.DirCache(o.cfg.acmeCacheDir())
	}
	dir := cfg.DirectoryURL
	if dir == "" {
		dir = autocert.DefaultACMEDirectory
	}
	a.m = &autocert.Manager{
		Prompt:      autocert.AcceptTOS,
		Cache:       observedCache{Cache: cache, a: a},
		HostPolicy:  a.hostPolicy,
		RenewBefore: cfg.RenewBefore,
		Email:       cfg.Email,
		Client: &acme.Client{
			DirectoryURL: dir,
			HTTPClient:   &http.Client{Transport: a.ca},
			UserAgent:    "ftpsgate",
		},
	}
	if cfg.HTTPListen != "off" {
		a.http = a.m.HTTPHandler(http.HandlerFunc(notChallenge))
	}

	// Serve what the cache holds from the first handshake on; autocert
	// itself only looks once Start asks it, with the challenge listeners up.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	now := time.Now()
	for _, d := range a.domains {
		data, err := cache.Get(ctx, d.name)
		if errors.Is(err, autocert.ErrCacheMiss) {
			continue
		}
		if err != nil {
			o.emit(Event{Kind: EventFailed, Source: "acme cache", Names: []string{d.name}, Err: fmt.Errorf("tlsoffload: acme cache: %w", err)})
			continue
		}
		cert, err := parseCachedCert(data)
		if err != nil || now.After(cert.Leaf.NotAfter) || now.Before(cert.Leaf.NotBefore) || cert.Leaf.VerifyHostname(d.name) != nil {
			continue // autocert orders a new one at Start
		}
		d.cert.Store(cert)
		o.emit(certEvent(EventLoaded, "acme cache", cert, nil))
	}
	return a, nil
}

// notChallenge answers what reaches the http-01 listener that is not a
// challenge: there is no web site here.
func notChallenge(w http.ResponseWriter, _ *http.Request) {
	http.Error(w, "ftpsgate: only ACME challenges are answered here", http.StatusNotFound)
}

// hostPolicy allows the configured domains only. A challenge request's Host
// may carry a port (Pebble's does; autocert's HostWhitelist would refuse
// it), which is dropped.
func (a *acmeSource) hostPolicy(_ context.Context, host string) error {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if a.byName[normalizeDomain(host)] == nil {
		return fmt.Errorf("tlsoffload: acme: %q is not a configured domain", host)
	}
	return nil
}

// certificate returns the certificate for an exact configured domain.
func (a *acmeSource) certificate(name string) *tls.Certificate {
	if d := a.byName[name]; d != nil {
		return d.cert.Load()
	}
	return nil
}

func (a *acmeSource) defaultCertificate() *tls.Certificate {
	return a.domains[0].cert.Load()
}

// hello is the ClientHello autocert is asked with: the domain, and an ECDSA
// cipher suite, so that it obtains (and later renews) the ECDSA P-256
// certificate and never an RSA one on a client's behalf.
func hello(name string) *tls.ClientHelloInfo {
	return &tls.ClientHelloInfo{
		ServerName:   name,
		CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
	}
}

// Start obtains the ACME certificates: it binds the challenge listeners
// (ACME.HTTPListen, ACME.TLSALPNListen), which then answer until ctx is
// done, and asks for a certificate for every domain the cache has none for,
// all at once, waiting until each has one or has failed (seconds usually;
// autocert gives up on an order after 5 minutes). autocert renews them
// before they expire, from then on. ctx is the server's: its end closes the
// listeners and cancels requests to the CA.
//
// A listener that cannot be bound is returned as is: the proxy should stop.
// Domains that failed are returned as *ObtainError, joined (find them with
// errors.As), each with the CA's message, and each is reported as an
// EventFailed too, as Run's retries are; that is not fatal: handshakes for
// those names get the default certificate, or fail if there is none, and Run
// tries again with backoff. Without ACME, Start does nothing. Call it once,
// before Run (Run calls it itself otherwise).
func (o *Offload) Start(ctx context.Context) error {
	if !o.started.CompareAndSwap(false, true) {
		return errors.New("tlsoffload: Start called twice")
	}
	if o.acme == nil {
		return nil
	}
	return o.acme.start(ctx, &o.wg)
}

func (a *acmeSource) start(ctx context.Context, wg *sync.WaitGroup) error {
	var httpLn, alpnLn net.Listener
	var err error
	if a.http != nil {
		if httpLn, err = net.Listen("tcp", a.cfg.httpListen()); err != nil {
			return fmt.Errorf("tlsoffload: acme http-01: %w", err)
		}
	}
	if a.cfg.TLSALPNListen != "" {
		if alpnLn, err = net.Listen("tcp", a.cfg.TLSALPNListen); err != nil {
			if httpLn != nil {
				httpLn.Close()
			}
			return fmt.Errorf("tlsoffload: acme tls-alpn-01: %w", err)
		}
	}
	var srv *http.Server
	if httpLn != nil {
		// The CA's validation requests are small and quick; anybody
		// else can reach this port too, so no connection may stay open
		// for long, idle between requests or not.
		srv = &http.Server{
			Handler:           a.http,
			ReadHeaderTimeout: a.challengeTimeout,
			ReadTimeout:       a.challengeTimeout,
			WriteTimeout:      a.challengeTimeout,
			IdleTimeout:       a.challengeTimeout,
			ErrorLog:          log.New(io.Discard, "", 0), // tlsoffload does not log
		}
		wg.Go(func() { srv.Serve(httpLn) })
	}
	if alpnLn != nil {
		wg.Go(func() { a.serveALPN(alpnLn, wg) })
	}
	context.AfterFunc(ctx, func() {
		if srv != nil {
			srv.Close()
		}
		if alpnLn != nil {
			alpnLn.Close()
		}
		a.ca.stop()
	})
	a.ca.open()

	errs := make([]error, len(a.domains))
	var pending sync.WaitGroup
	for i, d := range a.domains {
		a.mu.Lock()
		d.inflight = true
		a.mu.Unlock()
		pending.Add(1)
		wg.Go(func() {
			defer pending.Done()
			errs[i] = a.obtain(d)
		})
	}
	done := make(chan struct{})
	go func() { pending.Wait(); close(done) }()
	select {
	case <-done:
		return errors.Join(errs...)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// serveALPN answers tls-alpn-01 challenges: a handshake offering only
// acme-tls/1 gets autocert's token certificate, nothing else is served.
func (a *acmeSource) serveALPN(ln net.Listener, wg *sync.WaitGroup) {
	cfg := &tls.Config{
		NextProtos: []string{acme.ALPNProto},
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if len(h.SupportedProtos) != 1 || h.SupportedProtos[0] != acme.ALPNProto {
				return nil, errors.New("tlsoffload: only acme-tls/1 challenges are answered here")
			}
			return a.m.GetCertificate(h)
		},
	}
	var wait time.Duration
	for {
		c, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// Out of file descriptors, an aborted connection: the
			// listener is still open and must go on answering, after
			// a pause that grows as net/http's does.
			wait = min(max(2*wait, 5*time.Millisecond), time.Second)
			time.Sleep(wait)
			continue
		}
		wait = 0
		wg.Go(func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(a.challengeTimeout))
			tls.Server(c, cfg).Handshake()
		})
	}
}

// obtain asks autocert for d's certificate: from its state or cache at once,
// else with an order (blocking until issued or failed, a few seconds to a
// few minutes). It records the result for Run's retries, and reports a
// failure as an EventFailed (whoever asked: Start, Run's retries).
func (a *acmeSource) obtain(d *acmeDomain) error {
	a.ca.begin(d.name)
	c, err := a.m.GetCertificate(hello(d.name))
	problem := a.ca.end(d.name)
	a.mu.Lock()
	d.inflight = false
	if err != nil {
		d.failures++
		d.failedAt = time.Now()
		d.nextTry = d.failedAt.Add(max(a.backoff(d.failures), autocertRetryAfter))
		retry := d.nextTry
		a.mu.Unlock()
		oe := &ObtainError{Domain: d.name, Err: err, CA: problem, Retry: retry}
		a.o.emit(Event{Kind: EventFailed, Source: "acme", Names: []string{d.name}, Err: oe})
		return oe
	}
	d.failures, d.nextTry = 0, time.Time{}
	d.managed.Store(true)
	a.mu.Unlock()
	a.install(d, c, "acme")
	return nil
}

// backoff is the wait after the n-th failure in a row: retryBase doubled at
// each failure, at most retryMax, ±10%. With the defaults that is 4 tries in
// the first hour, under Let's Encrypt's 5 failed validations per hostname
// per hour.
func (a *acmeSource) backoff(n int) time.Duration {
	d := a.retryBase
	for i := 1; i < n && d < a.retryMax; i++ {
		d *= 2
	}
	d = min(d, a.retryMax)
	return d - d/10 + rand.N(d/5+1)
}

// install makes cert the one served for d if it is new, and reports it.
func (a *acmeSource) install(d *acmeDomain, cert *tls.Certificate, source string) {
	if cert.Leaf == nil {
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return
		}
		cert.Leaf = leaf
	}
	a.mu.Lock()
	cur := d.cert.Load()
	if cur != nil && (serial(cur) == serial(cert) || cert.Leaf.NotAfter.Before(cur.Leaf.NotAfter)) {
		a.mu.Unlock()
		return // the same, or older than what is served (a stale shared cache)
	}
	d.cert.Store(cert)
	a.mu.Unlock()
	kind := EventRenewed
	if cur == nil {
		kind = EventObtained
	}
	a.o.emit(certEvent(kind, source, cert, nil))
	if before, life := renewBefore(a.cfg, cert.Leaf), cert.Leaf.NotAfter.Sub(cert.Leaf.NotBefore); before >= life {
		a.o.emit(certEvent(EventFailed, source, cert, fmt.Errorf(
			"tlsoffload: acme: renew_before (%s) is not shorter than the certificate's lifetime (%s): autocert orders a new certificate for %s as soon as it has one, again and again; set renew_before well below the lifetime",
			before, life.Round(time.Second), d.name)))
	}
}

// renewBefore is how long before leaf's expiry autocert renews it: its
// own rule (renewal.go, domainRenewal.next), without the jitter.
func renewBefore(cfg ACMEConfig, leaf *x509.Certificate) time.Duration {
	if cfg.RenewBefore > 0 {
		return min(cfg.RenewBefore, 30*24*time.Hour)
	}
	return min(leaf.NotAfter.Sub(leaf.NotBefore)/3, 30*24*time.Hour)
}

// autocertRetryAfter is how long after a failed order autocert answers
// for the domain with "missing certificate" without asking the CA
// (autocert's createCertRetryAfter, a minute), and a few seconds more: a
// try in that window would fail for nothing and double the backoff.
const autocertRetryAfter = time.Minute + 5*time.Second

// retrySoon lets domains without a certificate try again at the next
// check, but not before autocert forgets their last failure.
func (a *acmeSource) retrySoon() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, d := range a.domains {
		d.nextTry = d.failedAt.Add(autocertRetryAfter)
	}
}

// check is Run's periodic look at every domain: try again those without a
// certificate whose backoff has passed; pick up certificates autocert
// renewed (or another instance put in a shared cache); report renewals
// that are overdue.
func (a *acmeSource) check(now time.Time, wg *sync.WaitGroup) {
	for _, d := range a.domains {
		a.mu.Lock()
		if d.inflight || (!d.managed.Load() && now.Before(d.nextTry)) {
			a.mu.Unlock()
			continue
		}
		if !d.managed.Load() {
			d.inflight = true
			a.mu.Unlock()
			wg.Go(func() { a.obtain(d) }) // a failure is reported as an event
			continue
		}
		a.mu.Unlock()
		if c, err := a.m.GetCertificate(hello(d.name)); err == nil {
			a.install(d, c, "acme cache")
		}
		a.checkOverdue(d, now)
	}
}

// checkOverdue reports, at most hourly, a certificate autocert should have
// renewed by now; autocert itself retries every 30 to 60 minutes, silently.
func (a *acmeSource) checkOverdue(d *acmeDomain, now time.Time) {
	cur := d.cert.Load()
	if cur == nil {
		return
	}
	leaf := cur.Leaf
	before := renewBefore(a.cfg, leaf)
	due := leaf.NotAfter.Add(-before)
	grace := min(before/10, time.Hour) + 2*a.checkEvery // autocert's jitter, and ours
	a.mu.Lock()
	report := now.After(due.Add(grace)) && now.Sub(d.overdueReported) >= time.Hour
	if report {
		d.overdueReported = now
	}
	a.mu.Unlock()
	if !report {
		return
	}
	err := fmt.Errorf("tlsoffload: acme: certificate for %s not renewed: renewal was due at %s, it expires at %s",
		d.name, due.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
	if p := a.ca.problem(d.name); p != "" {
		err = fmt.Errorf("%w; the CA said: %s", err, p)
	}
	a.o.emit(certEvent(EventFailed, "acme renewal", cur, err))
}

// caProblem is told of every problem the CA reports about a domain. One
// about a domain that has a certificate comes from autocert's renewal, which
// reports nothing itself.
func (a *acmeSource) caProblem(domain, problem string) {
	d := a.byName[domain]
	if d == nil || !d.managed.Load() {
		return // an order Start or check runs: reported with its outcome
	}
	a.o.emit(certEvent(EventFailed, "acme renewal", d.cert.Load(),
		fmt.Errorf("tlsoffload: acme: renewing %s: the CA said: %s", domain, problem)))
}

// observedCache is the autocert cache, watched: a certificate autocert
// stores is one it just obtained or renewed, which is how renewals, done
// by autocert's own timers, become events and reach the handshakes.
type observedCache struct {
	autocert.Cache
	a *acmeSource
}

func (c observedCache) Put(ctx context.Context, key string, data []byte) error {
	err := c.Cache.Put(ctx, key, data)
	d := c.a.byName[key]
	if d == nil {
		return err // the account key, a challenge token, an RSA variant
	}
	if cert, perr := parseCachedCert(data); perr == nil {
		c.a.install(d, cert, "acme")
	}
	// autocert treats a failed Put as a failed renewal: it orders the
	// certificate again 30 to 60 minutes later, until one is stored.
	// Reported once, until a certificate for the domain is stored again.
	c.a.mu.Lock()
	report := err != nil && !d.storeFailed
	d.storeFailed = err != nil
	c.a.mu.Unlock()
	if report {
		c.a.o.emit(Event{Kind: EventFailed, Source: "acme cache", Names: []string{key},
			Err: fmt.Errorf("tlsoffload: acme cache: storing the certificate: %w (it is served, but autocert orders a new one every 30 to 60 minutes until the cache takes it, which uses up the CA's rate limits)", err)})
	}
	return err
}

// parseCachedCert reads autocert's cache format: the private key's PEM
// block, then the chain's.
func parseCachedCert(data []byte) (*tls.Certificate, error) {
	var certPEM, keyPEM []byte
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if strings.Contains(b.Type, "PRIVATE KEY") {
			keyPEM = pem.EncodeToMemory(b)
		} else if b.Type == "CERTIFICATE" {
			certPEM = append(certPEM, pem.EncodeToMemory(b)...)
		}
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, err
		}
	}
	return &cert, nil
}

// caTransport carries the ACME client's requests. It reads the CA's answers
// for problems, which autocert drops (a failed http-01 validation comes back
// from autocert as "no viable challenge type found"); it holds requests until
// Start opens it, so nothing is ordered before the challenge listeners are
// up, and cancels them once Start's context is done; and, when tls-alpn-01
// is not served, it removes that challenge from the authorizations the CA
// offers: autocert always tries it first, which would cost a failed
// validation (Let's Encrypt allows 5 per hostname per hour) at every order.
// Responses are not signed in ACME (RFC 8555, section 6.2: only requests
// are), so editing one is safe.
type caTransport struct {
	base      http.RoundTripper
	dropALPN  bool
	onProblem func(domain, problem string)

	stopCtx context.Context
	cancel  context.CancelFunc

	mu       sync.Mutex // guards state, problems and obtaining
	state    int        // transportClosed, transportOpen, transportStopped
	problems map[string]string
	// obtaining counts the obtains in flight per domain: a problem that
	// names no domain (a refused request) is attributed to the only one,
	// and to nobody when several run at once.
	obtaining map[string]int
}

const (
	transportClosed = iota
	transportOpen
	transportStopped
)

func newCATransport(base http.RoundTripper, dropALPN bool, onProblem func(string, string)) *caTransport {
	ctx, cancel := context.WithCancel(context.Background())
	return &caTransport{base: base, dropALPN: dropALPN, onProblem: onProblem, stopCtx: ctx, cancel: cancel, problems: map[string]string{}, obtaining: map[string]int{}}
}

func (t *caTransport) open() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.state == transportClosed {
		t.state = transportOpen
	}
}

func (t *caTransport) stop() {
	t.mu.Lock()
	t.state = transportStopped
	t.mu.Unlock()
	t.cancel()
}

// begin marks an obtain for domain in flight, forgetting the CA's earlier
// problems with it.
func (t *caTransport) begin(domain string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.problems, domain)
	t.obtaining[domain]++
}

// end marks an obtain for domain done and returns the problem the CA
// reported about domain meanwhile, if any.
func (t *caTransport) end(domain string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.obtaining[domain]--; t.obtaining[domain] <= 0 {
		delete(t.obtaining, domain)
	}
	return t.problems[domain]
}

// problem is the last problem the CA reported about domain.
func (t *caTransport) problem(domain string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.problems[domain]
}

// soleObtain is the domain of the only obtain in flight; "" when there
// are none or several. Called with t.mu held.
func (t *caTransport) soleObtain() string {
	if len(t.obtaining) != 1 {
		return ""
	}
	for d := range t.obtaining {
		return d
	}
	return ""
}

func (t *caTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.mu.Lock()
	state := t.state
	t.mu.Unlock()
	switch state {
	case transportClosed:
		return nil, errors.New("tlsoffload: acme: not started")
	case transportStopped:
		return nil, errors.New("tlsoffload: acme: stopped")
	}
	ctx, cancel := context.WithCancel(req.Context())
	stop := context.AfterFunc(t.stopCtx, cancel)
	release := func() { stop(); cancel() }
	resp, err := t.base.RoundTrip(req.WithContext(ctx))
	if err != nil {
		release()
		return nil, err
	}
	if !strings.Contains(resp.Header.Get("Content-Type"), "json") {
		resp.Body = &releasingBody{ReadCloser: resp.Body, release: release}
		return resp, nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	release()
	if err != nil {
		return nil, err
	}
	body = t.inspect(resp.StatusCode, body)
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	return resp, nil
}

// releasingBody releases a request's context once its body is closed.
type releasingBody struct {
	io.ReadCloser
	release func()
}

func (b *releasingBody) Close() error {
	err := b.ReadCloser.Close()
	b.release()
	return err
}

// problemDoc is an RFC 7807 problem document, as ACME uses them (RFC 8555,
// section 6.7).
type problemDoc struct {
	Type   string `json:"type"`
	Detail string `json:"detail"`
}

func (p *problemDoc) String() string {
	return strings.TrimPrefix(p.Type, "urn:ietf:params:acme:error:") + ": " + p.Detail
}

// inspect records the problems in a CA response and, when tls-alpn-01 is
// not served, drops that challenge from an authorization.
func (t *caTransport) inspect(status int, body []byte) []byte {
	var doc struct {
		problemDoc
		Identifier *struct {
			Value string `json:"value"`
		} `json:"identifier"`
		Challenges []struct {
			Type  string      `json:"type"`
			Error *problemDoc `json:"error"`
		} `json:"challenges"`
		Error       *problemDoc `json:"error"` // an order's
		Identifiers []struct {
			Value string `json:"value"`
		} `json:"identifiers"` // an order's
	}
	if json.Unmarshal(body, &doc) != nil {
		return body
	}
	// domain "": the request's problem, naming no domain. notify: a
	// failed challenge, which onProblem hears of (an order's error comes
	// with its authorization's, told already).
	type finding struct {
		domain, problem string
		notify          bool
	}
	var found []finding
	if status >= 400 && doc.Type != "" && !strings.HasSuffix(doc.Type, ":badNonce") {
		found = append(found, finding{"", doc.problemDoc.String(), false})
	}
	if doc.Error != nil {
		if len(doc.Identifiers) == 0 {
			found = append(found, finding{"", doc.Error.String(), false})
		}
		for _, id := range doc.Identifiers {
			found = append(found, finding{normalizeDomain(id.Value), doc.Error.String(), false})
		}
	}
	if doc.Identifier != nil {
		domain := normalizeDomain(doc.Identifier.Value)
		for _, ch := range doc.Challenges {
			if ch.Error != nil {
				found = append(found, finding{domain, ch.Type + " challenge: " + ch.Error.String(), true})
			}
		}
		if t.dropALPN {
			body = dropChallenge(body, "tls-alpn-01")
		}
	}
	for _, f := range found {
		t.mu.Lock()
		switch {
		case f.domain == "":
			// Several obtains at once: whose it is, nobody knows.
			if f.domain = t.soleObtain(); f.domain != "" {
				t.problems[f.domain] = f.problem
			}
		case f.notify || t.problems[f.domain] == "":
			// An order's error ("some of the authorizations failed")
			// says less than its failed challenge's: kept only alone.
			t.problems[f.domain] = f.problem
		}
		t.mu.Unlock()
		if f.notify {
			t.onProblem(f.domain, f.problem)
		}
	}
	return body
}

// dropChallenge removes the challenges of type typ from an authorization.
func dropChallenge(body []byte, typ string) []byte {
	var authz map[string]json.RawMessage
	var chals []json.RawMessage
	if json.Unmarshal(body, &authz) != nil || json.Unmarshal(authz["challenges"], &chals) != nil {
		return body
	}
	kept := chals[:0]
	for _, c := range chals {
		var ch struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(c, &ch) == nil && ch.Type == typ {
			continue
		}
		kept = append(kept, c)
	}
	if len(kept) == len(chals) {
		return body
	}
	authz["challenges"], _ = json.Marshal(kept)
	out, err := json.Marshal(authz)
	if err != nil {
		return body
	}
	return out
}
