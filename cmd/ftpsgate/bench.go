package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ftpsgate/ftpsgate/ftpctl"
)

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "load any FTPS server with concurrent sessions and transfers, and print rates and latencies",
		Description: `Each of --sessions workers logs in, makes --transfers-per-session transfers
(RETR or STOR of --size bytes), quits, and starts again, until --duration has
passed or --count transfers (sessions with --op login) are done. With --idle N,
N sessions log in and are held until the duration ends or Ctrl-C. RETR
without --path first stores ftpsgate-bench.dat; STOR writes
ftpsgate-bench-W.dat, one per worker; both are left on the server.

   ftpsgate bench --address ftp.example.com:21 --user alice --password-file pw \
       --sessions 8 --op retr --size 1MiB --duration 30s`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "address", Required: true, Usage: "server `HOST:PORT`"},
			&cli.BoolFlag{Name: "implicit", Usage: "implicit FTPS: TLS from the first byte (default: explicit AUTH TLS)"},
			&cli.BoolFlag{Name: "insecure", Usage: "do not verify the server's certificate"},
			&cli.StringFlag{Name: "ca", Usage: "verify the server's certificate against the PEM certificates in `FILE`"},
			&cli.StringFlag{Name: "server-name", Usage: "TLS server `NAME` (SNI, verification); default: the host of --address"},
			&cli.StringFlag{Name: "user", Required: true, Usage: "log in as `USER`"},
			&cli.StringFlag{Name: "password", Usage: "the `PASSWORD` (visible to other local users: prefer --password-file)"},
			&cli.StringFlag{Name: "password-file", Usage: "`FILE` holding the password"},
			&cli.IntFlag{Name: "sessions", Value: 1, Usage: "`N` concurrent sessions"},
			&cli.StringFlag{Name: "op", Value: "retr", Usage: "retr, stor, or login (sessions only)"},
			&cli.StringFlag{Name: "size", Value: "1MiB", Usage: "bytes per STOR, and per RETR of the file stored first (`SIZE`: 4KiB, 1MiB, 1GiB...)"},
			&cli.StringFlag{Name: "path", Usage: "RETR this existing remote `PATH` instead of storing one first; for STOR, the name's prefix"},
			&cli.StringFlag{Name: "prot", Value: "P", Usage: "data protection: P (TLS) or C (clear)"},
			&cli.StringFlag{Name: "passive", Value: "epsv", Usage: "epsv or pasv"},
			&cli.IntFlag{Name: "transfers-per-session", Value: 1, Usage: "transfers before a session quits; 0: one session per worker for the whole run"},
			&cli.DurationFlag{Name: "duration", Usage: "run this long (default 10s unless --count or --idle is given; --idle alone holds until Ctrl-C)"},
			&cli.IntFlag{Name: "count", Usage: "stop after `N` transfers (sessions with --op login)"},
			&cli.IntFlag{Name: "idle", Usage: "open `N` logged-in sessions and hold them"},
			&cli.StringFlag{Name: "curves", Usage: "key exchanges to offer, comma-separated: x25519, x25519mlkem768, p256 (default: Go's, post-quantum hybrid first; x25519 is what OpenSSL 3.0 clients such as curl on Debian 12 offer)"},
			&cli.BoolFlag{Name: "resume-sessions", Usage: "control connections resume earlier TLS sessions (default: a full handshake each, as separate client processes do)"},
			&cli.DurationFlag{Name: "timeout", Value: 30 * time.Second, Usage: "bound on each step"},
			&cli.BoolFlag{Name: "json", Usage: "print the results as JSON"},
			&cli.DurationFlag{Name: "progress", Value: time.Second, Usage: "progress line interval on stderr (0: none)"},
		},
		Action: func(c *cli.Context) error {
			b, err := newBencher(c)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			res := b.run(ctx)
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				enc.Encode(res)
			} else {
				res.print(c.App.Writer)
			}
			if res.Errors > 0 {
				return cli.Exit("", 1)
			}
			return nil
		},
	}
}

// bencher is one run of `ftpsgate bench`.
type bencher struct {
	addr       string
	host       netip.Addr // the server's IP, for data connections
	implicit   bool
	tls        *tls.Config // shared by all sessions with --resume-sessions
	resumeAll  bool
	user, pass string
	workers    int
	op         string
	size       int64
	path       string
	prepared   bool // path was stored by this run: RETR must get size bytes
	prot       string
	epsv       bool
	perSession int
	duration   time.Duration
	count      int64
	idle       int
	timeout    time.Duration
	progress   time.Duration
	errOut     io.Writer

	claimed atomic.Int64 // units of work (transfers, or sessions) taken
	stats   benchStats
}

func newBencher(c *cli.Context) (*bencher, error) {
	b := &bencher{
		addr: c.String("address"), implicit: c.Bool("implicit"), resumeAll: c.Bool("resume-sessions"),
		user: c.String("user"), pass: c.String("password"), workers: c.Int("sessions"),
		op: strings.ToLower(c.String("op")), path: c.String("path"), prot: strings.ToUpper(c.String("prot")),
		perSession: c.Int("transfers-per-session"), duration: c.Duration("duration"),
		count: int64(c.Int("count")), idle: c.Int("idle"), timeout: c.Duration("timeout"),
		progress: c.Duration("progress"), errOut: c.App.ErrWriter,
	}
	if pf := c.String("password-file"); pf != "" {
		raw, err := os.ReadFile(pf)
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		b.pass = strings.TrimRight(string(raw), "\r\n")
	}
	size, err := parseSize(c.String("size"))
	if err != nil {
		return nil, fmt.Errorf("bench: --size: %w", err)
	}
	b.size = size
	switch p := strings.ToLower(c.String("passive")); p {
	case "epsv", "pasv":
		b.epsv = p == "epsv"
	default:
		return nil, fmt.Errorf("bench: --passive %q: want epsv or pasv", p)
	}
	switch {
	case b.op != "retr" && b.op != "stor" && b.op != "login":
		return nil, fmt.Errorf("bench: --op %q: want retr, stor or login", b.op)
	case b.prot != "P" && b.prot != "C":
		return nil, fmt.Errorf("bench: --prot %q: want P or C", b.prot)
	case b.workers < 1:
		return nil, errors.New("bench: --sessions must be at least 1")
	case b.perSession < 0:
		return nil, errors.New("bench: --transfers-per-session must not be negative")
	case b.op == "stor" && b.size <= 0:
		return nil, errors.New("bench: --size must be positive for STOR")
	}
	if b.duration == 0 && b.count == 0 && b.idle == 0 {
		b.duration = 10 * time.Second // --idle alone holds until Ctrl-C
	}
	// Resolved once: data connections go to the same IP as control.
	host, port, err := net.SplitHostPort(b.addr)
	if err != nil {
		return nil, fmt.Errorf("bench: --address: %w", err)
	}
	ips, err := net.LookupIP(host)
	if err != nil || len(ips) == 0 {
		return nil, fmt.Errorf("bench: --address: %v", err)
	}
	b.host, _ = netip.AddrFromSlice(ips[0])
	b.host = b.host.Unmap()
	b.addr = net.JoinHostPort(b.host.String(), port)

	// The session cache is keyed by ServerName, so data connections (other
	// ports) find the control connection's ticket: it is always set, to
	// the IP if need be (crypto/tls does not send an IP as SNI).
	b.tls = &tls.Config{ServerName: host, InsecureSkipVerify: c.Bool("insecure")}
	if n := c.String("server-name"); n != "" {
		b.tls.ServerName = n
	}
	if ca := c.String("ca"); ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		b.tls.RootCAs = x509.NewCertPool()
		if !b.tls.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("bench: --ca %s: no PEM certificate", ca)
		}
	}
	if list := c.String("curves"); list != "" {
		for _, name := range strings.Split(list, ",") {
			id, ok := curveIDs[strings.ToLower(strings.TrimSpace(name))]
			if !ok {
				return nil, fmt.Errorf("bench: --curves: unknown %q", name)
			}
			b.tls.CurvePreferences = append(b.tls.CurvePreferences, id)
		}
	}
	if b.resumeAll {
		b.tls.ClientSessionCache = tls.NewLRUClientSessionCache(b.workers + b.idle)
	}
	return b, nil
}

var curveIDs = map[string]tls.CurveID{
	"x25519": tls.X25519, "x25519mlkem768": tls.X25519MLKEM768, "p256": tls.CurveP256,
}

// parseSize reads a byte count with an optional KiB/MiB/GiB (or K/M/G)
// suffix.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	t := strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "B")
	t = strings.TrimSuffix(t, "I")
	for suffix, m := range map[string]int64{"K": 1 << 10, "M": 1 << 20, "G": 1 << 30} {
		if strings.HasSuffix(t, suffix) {
			t, mult = strings.TrimSuffix(t, suffix), m
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size", s)
	}
	return n * mult, nil
}

// run does the whole benchmark and returns its results. ctx ends on
// Ctrl-C and cuts everything; the end of --duration only stops new work,
// so that what is in flight then finishes and is counted.
func (b *bencher) run(ctx context.Context) benchResult {
	stop := ctx
	if b.duration > 0 {
		var cancel context.CancelFunc
		stop, cancel = context.WithTimeout(ctx, b.duration)
		defer cancel()
	}
	if b.op == "retr" && b.path == "" && b.idle == 0 {
		b.path, b.prepared = "ftpsgate-bench.dat", true
		if err := b.prepare(ctx); err != nil {
			b.stats.fail(fmt.Errorf("storing %s for RETR: %w", b.path, err))
			return b.stats.result(0, 0)
		}
	}
	stopProgress := b.showProgress()
	began := time.Now()
	var held int
	if b.idle > 0 {
		held = b.hold(stop, ctx)
	} else {
		var wg sync.WaitGroup
		for w := range b.workers {
			wg.Go(func() { b.work(stop, ctx, w) })
		}
		wg.Wait()
	}
	elapsed := time.Since(began)
	stopProgress()
	return b.stats.result(elapsed, held)
}

// prepare stores the file every worker then retrieves.
func (b *bencher) prepare(ctx context.Context) error {
	c, _, err := b.login(ctx)
	if err != nil {
		return err
	}
	defer c.quit()
	_, err = c.transfer(ctx, b, "STOR "+b.path, b.size)
	return err
}

// take claims one unit of work; false when --count is reached.
func (b *bencher) take() bool {
	return b.count == 0 || b.claimed.Add(1) <= b.count
}

// work is one worker: sessions one after another until stop.
func (b *bencher) work(stop, ctx context.Context, w int) {
	for stop.Err() == nil {
		if b.op == "login" && !b.take() {
			return
		}
		c, setup, err := b.login(ctx)
		if err != nil {
			if ctx.Err() == nil {
				b.stats.fail(err)
				pause(stop, 100*time.Millisecond) // a refusing server is not hammered
			}
			continue
		}
		b.stats.session(setup)
		if b.op == "login" {
			c.quit()
			continue
		}
		err = nil
		for i := 0; (b.perSession == 0 || i < b.perSession) && stop.Err() == nil; i++ {
			if !b.take() {
				c.quit()
				return
			}
			line := "RETR " + b.path
			if b.op == "stor" {
				line = fmt.Sprintf("STOR %sftpsgate-bench-%d.dat", b.path, w)
			}
			began := time.Now()
			var n int64
			if n, err = c.transfer(ctx, b, line, b.size); err != nil {
				break
			}
			b.stats.transfer(time.Since(began), n)
		}
		if err != nil && ctx.Err() == nil {
			b.stats.fail(err)
			c.close()
			continue
		}
		c.quit()
	}
}

// hold opens b.idle sessions, b.workers at a time, keeps them until stop,
// and returns how many still answer NOOP then.
func (b *bencher) hold(stop, ctx context.Context) int {
	var (
		mu    sync.Mutex
		conns []*benchConn
		wg    sync.WaitGroup
		next  atomic.Int64
	)
	for range b.workers {
		wg.Go(func() {
			for next.Add(1) <= int64(b.idle) && stop.Err() == nil {
				c, setup, err := b.login(ctx)
				if err != nil {
					if ctx.Err() == nil {
						b.stats.fail(err)
					}
					continue
				}
				// Held past Ctrl-C, which would close it: the NOOP below
				// then says whether it still answers. Counted only once
				// safe from Ctrl-C, so that a count on the progress line
				// is one that will be held.
				if !c.stop() {
					c.close()
					continue
				}
				b.stats.session(setup)
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	<-stop.Done()
	var held atomic.Int64
	sem := make(chan struct{}, 64)
	for _, c := range conns {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if rep, err := c.cmd("NOOP"); err == nil && rep.Code == ftpctl.CodeOK {
				held.Add(1)
			} else {
				b.stats.fail(fmt.Errorf("held session lost: %s", replyOrErr(rep, err)))
			}
			c.quit()
		})
	}
	wg.Wait()
	return int(held.Load())
}

// showProgress prints a line on stderr every b.progress, overwritten in
// place on a terminal; the returned func stops it.
func (b *bencher) showProgress() func() {
	if b.progress <= 0 || b.errOut == nil {
		return func() {}
	}
	tty := false
	if f, ok := b.errOut.(*os.File); ok {
		if fi, err := f.Stat(); err == nil {
			tty = fi.Mode()&os.ModeCharDevice != 0
		}
	}
	began := time.Now()
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(b.progress)
		defer t.Stop()
		end := "\n"
		if tty {
			end = "\x1b[K\r"
		}
		for {
			select {
			case <-t.C:
				sessions, transfers, bytes, errs := b.stats.counts()
				secs := time.Since(began).Seconds()
				fmt.Fprintf(b.errOut, "%5.0fs  sessions %d (%.1f/s)  transfers %d (%.1f/s)  %.1f MiB/s  errors %d%s",
					secs, sessions, float64(sessions)/secs, transfers, float64(transfers)/secs,
					float64(bytes)/(1<<20)/secs, errs, end)
			case <-done:
				if tty {
					fmt.Fprint(b.errOut, "\x1b[K")
				}
				return
			}
		}
	}()
	return func() { close(done); <-stopped }
}

func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// benchConn is a logged-in control connection.
type benchConn struct {
	*ftpConn
	tls *tls.Config // this session's: its cache holds the control session for data connections
	buf []byte
}

// login connects, secures and logs in, and returns how long that took.
func (b *bencher) login(ctx context.Context) (*benchConn, time.Duration, error) {
	began := time.Now()
	fc, err := dialFTP(ctx, b.addr, b.timeout)
	if err != nil {
		return nil, 0, err
	}
	cfg := b.tls
	if !b.resumeAll {
		cfg = b.tls.Clone()
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	}
	c := &benchConn{ftpConn: fc, tls: cfg}
	fail := func(step string, rep ftpctl.Reply, err error) (*benchConn, time.Duration, error) {
		c.close()
		return nil, 0, fmt.Errorf("%s: %s", step, replyOrErr(rep, err))
	}
	if b.implicit {
		if err := c.startTLS(ctx); err != nil {
			return fail("TLS handshake", ftpctl.Reply{}, err)
		}
	}
	if rep, err := c.read(); err != nil || rep.Code != ftpctl.CodeReady {
		return fail("greeting", rep, err)
	}
	if !b.implicit {
		if rep, err := c.cmd("AUTH TLS"); err != nil || rep.Code != ftpctl.CodeAuthOK {
			return fail("AUTH TLS", rep, err)
		}
		if err := c.startTLS(ctx); err != nil {
			return fail("TLS handshake", ftpctl.Reply{}, err)
		}
	}
	rep, err := c.cmd("USER " + b.user)
	if err == nil && rep.Code == ftpctl.CodeNeedPassword {
		rep, err = c.cmd("PASS " + b.pass)
	}
	if err != nil || rep.Code != ftpctl.CodeLoggedIn {
		return fail("login", rep, err)
	}
	setup := time.Since(began)
	for _, line := range []string{"TYPE I", "PBSZ 0", "PROT " + b.prot} {
		if rep, err := c.cmd(line); err != nil || rep.Code.Class() != ftpctl.ClassCompletion {
			return fail(line, rep, err)
		}
	}
	return c, setup, nil
}

func (c *benchConn) startTLS(ctx context.Context) error {
	_, err := c.ftpConn.startTLS(ctx, c.tls)
	return err
}

// quit ends the session politely.
func (c *benchConn) quit() {
	c.cmd("QUIT")
	c.close()
}

// benchData is what STOR sends, over and over.
var benchData = func() []byte {
	b := make([]byte, 1<<20)
	for i := range b {
		b[i] = byte(i*7 + i>>10)
	}
	return b
}()

// transfer runs one RETR or STOR (line) over a new passive data
// connection and returns the bytes moved. A STOR sends size bytes; a RETR
// takes what comes, and must come to size when the file was stored first.
func (c *benchConn) transfer(ctx context.Context, b *bencher, line string, size int64) (int64, error) {
	port, err := c.passive(b.epsv)
	if err != nil {
		return 0, err
	}
	d := net.Dialer{Timeout: c.timeout}
	raw, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(b.host, port).String())
	if err != nil {
		return 0, fmt.Errorf("data connection: %w", err)
	}
	defer raw.Close()
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	rep, err := c.cmd(line)
	if err != nil || rep.Code.Class() != ftpctl.ClassPreliminary {
		return 0, fmt.Errorf("%s: %s", line, replyOrErr(rep, err))
	}
	data := raw
	raw.SetDeadline(time.Now().Add(c.timeout))
	if b.prot == "P" {
		tc := tls.Client(raw, c.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			return 0, fmt.Errorf("data TLS handshake: %w", err)
		}
		data = tc
	}
	var n int64
	if strings.HasPrefix(line, "STOR") {
		for n < size {
			raw.SetDeadline(time.Now().Add(c.timeout))
			m, err := data.Write(benchData[:min(size-n, int64(len(benchData)))])
			n += int64(m)
			if err != nil {
				return n, fmt.Errorf("sending data: %w", err)
			}
		}
		if tc, ok := data.(*tls.Conn); ok {
			tc.CloseWrite() // close_notify
		}
		raw.(*net.TCPConn).CloseWrite()
	} else {
		if c.buf == nil {
			c.buf = make([]byte, 64<<10)
		}
		for {
			raw.SetDeadline(time.Now().Add(c.timeout))
			m, err := data.Read(c.buf)
			n += int64(m)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return n, fmt.Errorf("receiving data: %w", err)
			}
		}
	}
	// Closed before the final reply is read, as curl and ftplib do: some
	// servers answer only once the data connection is gone.
	raw.Close()
	rep, err = c.read()
	if err != nil || rep.Code.Class() != ftpctl.ClassCompletion {
		return n, fmt.Errorf("%s: %s", line, replyOrErr(rep, err))
	}
	if b.prepared && !strings.HasPrefix(line, "STOR") && n != size {
		return n, fmt.Errorf("%s: %d bytes, want %d", line, n, size)
	}
	return n, nil
}

// passive asks for a data port with EPSV or PASV; the connection goes to
// the control connection's IP whatever a 227 names, as curl does.
func (c *benchConn) passive(epsv bool) (uint16, error) {
	if epsv {
		rep, err := c.cmd("EPSV")
		if err != nil || rep.Code != ftpctl.CodeEnteringExtPassive {
			return 0, fmt.Errorf("EPSV: %s", replyOrErr(rep, err))
		}
		return ftpctl.ParseEPSV(rep.Text())
	}
	rep, err := c.cmd("PASV")
	if err != nil || rep.Code != ftpctl.CodeEnteringPassive {
		return 0, fmt.Errorf("PASV: %s", replyOrErr(rep, err))
	}
	ap, err := ftpctl.ParsePASV(rep.Text())
	return ap.Port(), err
}

// benchStats gathers what the workers measured.
type benchStats struct {
	mu        sync.Mutex
	setups    []time.Duration // guarded by mu
	transfers []time.Duration // guarded by mu
	bytes     int64           // guarded by mu
	errors    int             // guarded by mu
	firstErrs []string        // guarded by mu: the first few errors
}

func (s *benchStats) session(d time.Duration) {
	s.mu.Lock()
	s.setups = append(s.setups, d)
	s.mu.Unlock()
}

func (s *benchStats) transfer(d time.Duration, n int64) {
	s.mu.Lock()
	s.transfers = append(s.transfers, d)
	s.bytes += n
	s.mu.Unlock()
}

func (s *benchStats) fail(err error) {
	s.mu.Lock()
	s.errors++
	if len(s.firstErrs) < 5 {
		s.firstErrs = append(s.firstErrs, err.Error())
	}
	s.mu.Unlock()
}

func (s *benchStats) counts() (sessions, transfers int, bytes int64, errs int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.setups), len(s.transfers), s.bytes, s.errors
}

// benchResult is what `ftpsgate bench` prints (with --json, as is).
type benchResult struct {
	Seconds        float64     `json:"seconds"`
	Sessions       int         `json:"sessions"`
	SessionsPerSec float64     `json:"sessions_per_sec"`
	SetupMs        percentiles `json:"setup_ms"`
	Held           int         `json:"held,omitempty"`
	Transfers      int         `json:"transfers"`
	FilesPerSec    float64     `json:"files_per_sec"`
	Bytes          int64       `json:"bytes"`
	MiBPerSec      float64     `json:"mib_per_sec"`
	TransferMs     percentiles `json:"transfer_ms"`
	Errors         int         `json:"errors"`
	FirstErrors    []string    `json:"first_errors,omitempty"`
}

type percentiles struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
}

func (s *benchStats) result(elapsed time.Duration, held int) benchResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	secs := elapsed.Seconds()
	rate := func(n float64) float64 {
		if secs == 0 {
			return 0
		}
		return n / secs
	}
	return benchResult{
		Seconds: secs, Sessions: len(s.setups), SessionsPerSec: rate(float64(len(s.setups))),
		SetupMs: percentilesOf(s.setups), Held: held,
		Transfers: len(s.transfers), FilesPerSec: rate(float64(len(s.transfers))),
		Bytes: s.bytes, MiBPerSec: rate(float64(s.bytes) / (1 << 20)), TransferMs: percentilesOf(s.transfers),
		Errors: s.errors, FirstErrors: s.firstErrs,
	}
}

func percentilesOf(ds []time.Duration) percentiles {
	if len(ds) == 0 {
		return percentiles{}
	}
	sorted := slices.Clone(ds)
	slices.Sort(sorted)
	at := func(p float64) float64 {
		i := min(int(p*float64(len(sorted))), len(sorted)-1)
		return float64(sorted[i]) / float64(time.Millisecond)
	}
	return percentiles{P50: at(0.50), P90: at(0.90), P99: at(0.99)}
}

func (r benchResult) print(w io.Writer) {
	fmt.Fprintf(w, "%.1fs\n", r.Seconds)
	fmt.Fprintf(w, "sessions   %d  %.1f/s  setup p50 %.1fms  p90 %.1fms  p99 %.1fms\n",
		r.Sessions, r.SessionsPerSec, r.SetupMs.P50, r.SetupMs.P90, r.SetupMs.P99)
	if r.Held > 0 {
		fmt.Fprintf(w, "held       %d\n", r.Held)
	}
	if r.Transfers > 0 {
		fmt.Fprintf(w, "transfers  %d  %.1f files/s  %.1f MiB/s  p50 %.1fms  p90 %.1fms  p99 %.1fms\n",
			r.Transfers, r.FilesPerSec, r.MiBPerSec, r.TransferMs.P50, r.TransferMs.P90, r.TransferMs.P99)
	}
	fmt.Fprintf(w, "errors     %d\n", r.Errors)
	for _, e := range r.FirstErrors {
		fmt.Fprintf(w, "  %s\n", e)
	}
}
