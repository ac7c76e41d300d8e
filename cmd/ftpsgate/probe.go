package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/urfave/cli/v2"

	"github.com/ftpsgate/ftpsgate/ftpctl"
	"github.com/ftpsgate/ftpsgate/proxy"
	"github.com/ftpsgate/ftpsgate/tlsoffload"
)

func probeCommand() *cli.Command {
	return &cli.Command{
		Name:  "probe",
		Usage: "check, step by step, the backends, the certificate and a session through the running proxy",
		Flags: []cli.Flag{
			configFlag,
			&cli.StringFlag{Name: "user", Usage: "log in through the proxy as `USER`; without it the login, listings and TLS resumption are not checked"},
			&cli.StringFlag{Name: "password-file", Usage: "`FILE` holding --user's password"},
			&cli.StringFlag{Name: "server-name", Usage: "`NAME` to ask the proxy for (SNI) and to check its certificate against; zero: the host of listen.explicit if it is a name"},
			&cli.DurationFlag{Name: "timeout", Value: 10 * time.Second, Usage: "bound on each step"},
		},
		Action: func(c *cli.Context) error {
			path := c.String("config")
			if path == "" {
				return errors.New("probe: --config FILE is required")
			}
			p := &prober{out: c.App.Writer, path: path, user: c.String("user"), serverName: c.String("server-name"), timeout: c.Duration("timeout")}
			switch pf := c.String("password-file"); {
			case p.user == "" && pf != "":
				return errors.New("probe: --password-file goes with --user")
			case p.user != "" && pf == "":
				return errors.New("probe: --user needs --password-file")
			case pf != "":
				b, err := os.ReadFile(pf)
				if err != nil {
					return fmt.Errorf("probe: %w", err)
				}
				p.password = strings.TrimRight(string(b), "\r\n")
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if err := p.run(ctx, c); err != nil {
				if errors.Is(err, errProbeFailed) {
					return cli.Exit("", 1)
				}
				return err
			}
			return nil
		},
	}
}

// errProbeFailed ends a probe at its first failed check, which has been
// printed with what to change.
var errProbeFailed = errors.New("probe: a check failed")

// prober checks a configuration from the outside, one step at a time,
// printing a verdict per check: ok, warn (works, but look) or FAIL (and
// the probe stops there).
type prober struct {
	out        io.Writer
	path       string
	user       string
	password   string
	serverName string
	timeout    time.Duration

	st        settings
	lines     *keyLines
	warnings  int
	saidProxy bool // the PROXY header line is printed
}

func (p *prober) run(ctx context.Context, c *cli.Context) error {
	if p.timeout <= 0 {
		p.timeout = 10 * time.Second
	}
	st, err := loadSettings(c)
	if err != nil {
		for _, e := range unjoin(err) {
			p.verdict("FAIL", e.Error(), "")
		}
		return p.fail("`ftpsgate check --config "+p.path+"` lists every error with its line", "configuration %s", p.path)
	}
	p.st = st
	_, p.lines, _ = loadFile(p.path)
	p.ok("configuration %s: %s, %s", p.path, plural(len(st.proxy.Backends), "backend"), plural(len(st.proxy.Routes), "route"))
	for _, step := range []func(context.Context) error{p.backends, p.certificates, p.session} {
		if err := step(ctx); err != nil {
			return err
		}
	}
	if p.warnings > 0 {
		fmt.Fprintf(p.out, "probe: no failure, %s\n", plural(p.warnings, "warning"))
	} else {
		fmt.Fprintln(p.out, "probe: every check passed")
	}
	return nil
}

// verdict prints one check's line and, if there is one, what to change.
func (p *prober) verdict(word, what, fix string) {
	fmt.Fprintf(p.out, "%-4s  %s\n", word, what)
	if fix != "" {
		fmt.Fprintf(p.out, "      fix: %s\n", fix)
	}
}

func (p *prober) ok(format string, args ...any) {
	p.verdict("ok", fmt.Sprintf(format, args...), "")
}

func (p *prober) warn(fix, format string, args ...any) {
	p.warnings++
	p.verdict("warn", fmt.Sprintf(format, args...), fix)
}

// fail prints a failed check and returns errProbeFailed.
func (p *prober) fail(fix, format string, args ...any) error {
	p.verdict("FAIL", fmt.Sprintf(format, args...), fix)
	return errProbeFailed
}

// where names the line of the configuration a key is on.
func (p *prober) where(key ...string) string {
	if n := p.lines.line(key...); n > 0 {
		return fmt.Sprintf("%s:%d", p.path, n)
	}
	return p.path
}

// backends checks every backend of the default pool and of the routes.
func (p *prober) backends(ctx context.Context) error {
	for i, b := range p.st.proxy.Backends {
		if err := p.backend(ctx, "pool default", b, "backend", strconv.Itoa(i)); err != nil {
			return err
		}
	}
	n := 0 // the file numbers [[route.backend]] tables across routes
	for i, r := range p.st.proxy.Routes {
		for _, b := range r.Backends {
			if err := p.backend(ctx, "route "+routeName(r, i), b, "route", "backend", strconv.Itoa(n)); err != nil {
				return err
			}
			n++
		}
	}
	return nil
}

// backend checks that b greets with 220, answers FEAT, and offers what
// the proxy needs: passive mode (PASV or EPSV), unless the proxy is told
// to reach it in active mode.
func (p *prober) backend(ctx context.Context, pool string, b proxy.Backend, key ...string) error {
	label := "backend " + b.Address
	if b.Name != "" && b.Name != b.Address {
		label = fmt.Sprintf("backend %s (%s)", b.Name, b.Address)
	}
	label += ", " + pool
	here := p.where(key...)
	at := func(k string) string { return p.where(append(append([]string{}, key...), k)...) }
	c, err := p.dial(ctx, b.Address)
	if err != nil {
		return p.fail(fmt.Sprintf("start the FTP server at %s, or correct its address (%s)", b.Address, at("address")),
			"%s: %v", label, err)
	}
	defer c.close()

	mode, tc := tlsoffload.BackendOff, (*tls.Config)(nil)
	if b.TLS != nil && b.TLS.Mode() != tlsoffload.BackendOff {
		host, _, _ := net.SplitHostPort(b.Address)
		mode, tc = b.TLS.Mode(), b.TLS.SessionConfig(host)
	}
	tlsFix := fmt.Sprintf("check this backend's tls, ca_file and server_name (%s)", here)
	if mode == tlsoffload.BackendImplicit {
		if _, err := c.startTLS(ctx, tc); err != nil {
			return p.fail(tlsFix, "%s: implicit TLS: %v", label, err)
		}
	}
	greet, err := c.read()
	if err != nil {
		return p.fail(fmt.Sprintf("is %s an FTP server? (%s)", b.Address, at("address")), "%s: no greeting: %v", label, err)
	}
	if greet.Code != ftpctl.CodeReady {
		return p.fail("the server turns sessions away: see its own log (connection limits? maintenance?)",
			"%s greets %s", label, replyText(greet))
	}
	if mode == tlsoffload.BackendExplicit {
		if rep, err := c.cmd("AUTH TLS"); err != nil || rep.Code != ftpctl.CodeAuthOK {
			return p.fail(tlsFix, "%s: AUTH TLS: %s", label, replyOrErr(rep, err))
		}
		if _, err := c.startTLS(ctx, tc); err != nil {
			return p.fail(tlsFix, "%s: TLS: %v", label, err)
		}
	}
	feat, err := c.cmd("FEAT")
	if err != nil {
		return p.fail("see the server's own log", "%s: FEAT: %v", label, err)
	}
	feats := ftpctl.ParseFeat(feat)
	names := make([]string, 0, len(feats))
	passive := false
	for _, f := range feats {
		n := ftpctl.FeatureName(f)
		names = append(names, n)
		passive = passive || n == "PASV" || n == "EPSV"
	}
	p.ok("%s: %s; FEAT: %s", label, replyText(greet), strings.Join(names, " "))
	if feat.Code != ftpctl.CodeSystemStatus {
		p.warn("nothing to change if the server is old; clients see only the proxy's own features",
			"%s answers FEAT with %s", label, replyText(feat))
	}
	if passive || b.DataToBackend == proxy.DataActive {
		c.cmd("QUIT")
		return nil
	}
	// Not every server lists PASV and EPSV in FEAT (IIS does not): ask
	// after a login.
	if p.user == "" {
		p.warn("give --user and --password-file to try them after a login",
			"%s: FEAT lists neither PASV nor EPSV", label)
		c.cmd("QUIT")
		return nil
	}
	ok, err := p.backendPassive(c)
	switch {
	case err != nil:
		p.warn(fmt.Sprintf("check that %s has an account on this backend", p.user),
			"%s: PASV and EPSV not tried: %v", label, err)
	case ok:
		p.ok("%s: passive mode works after a login", label)
	case b.DataToBackend == proxy.DataPassive:
		return p.fail(fmt.Sprintf("enable passive mode on the server (vsftpd: pasv_enable=YES), or set data_to_backend = \"active\" (%s)", at("data_to_backend")),
			"%s refuses PASV and EPSV", label)
	default:
		p.warn(fmt.Sprintf("enable passive mode on the server, or say data_to_backend = \"active\" (%s)", at("data_to_backend")),
			"%s refuses PASV and EPSV: the proxy will reach it in active mode (PORT)", label)
	}
	c.cmd("QUIT")
	return nil
}

// backendPassive logs in and reports whether EPSV or PASV is accepted.
// The passive port it opens is closed by the server at QUIT.
func (p *prober) backendPassive(c *ftpConn) (bool, error) {
	rep, err := c.cmd("USER " + p.user)
	if err == nil && rep.Code == ftpctl.CodeNeedPassword {
		rep, err = c.cmd("PASS " + p.password)
	}
	if err != nil || rep.Code != ftpctl.CodeLoggedIn {
		return false, fmt.Errorf("login as %s: %s", p.user, replyOrErr(rep, err))
	}
	for _, verb := range []string{"EPSV", "PASV"} {
		rep, err := c.cmd(verb)
		if err != nil {
			return false, err
		}
		if rep.Code == ftpctl.CodeEnteringExtPassive || rep.Code == ftpctl.CodeEnteringPassive {
			return true, nil
		}
	}
	return false, nil
}

// certificates checks the certificate files (tlsoffload's Check, as
// `ftpsgate check` does) and that some certificate covers every server
// name a route is chosen by.
func (p *prober) certificates(context.Context) error {
	tc := p.st.tls
	for _, pr := range tc.Check() {
		here := p.where(tlsKey(pr.Field)...)
		if pr.Warning {
			p.warn("see "+here, "certificate: %v", pr.Err)
			continue
		}
		return p.fail("correct "+here+", then run `ftpsgate check --config "+p.path+"`", "certificate: %v", pr.Err)
	}
	pairs := tc.Certificates
	if tc.CertFile != "" {
		pairs = append([]tlsoffload.KeyPair{{CertFile: tc.CertFile, KeyFile: tc.KeyFile}}, pairs...)
	}
	var leaves []*x509.Certificate
	for _, kp := range pairs {
		leaf, err := loadLeaf(kp)
		if err != nil {
			return p.fail("correct tls.cert_file and tls.key_file", "certificate %s: %v", kp.CertFile, err)
		}
		leaves = append(leaves, leaf)
		p.ok("certificate %s: %s, valid until %s", kp.CertFile, certNames(leaf), leaf.NotAfter.UTC().Format(time.DateOnly))
	}
	acme := tc.ACME.Domains
	if len(acme) > 0 {
		p.ok("ACME certificates for %s, obtained and renewed by the proxy", strings.Join(acme, ", "))
	}
	selfSigned := len(leaves) == 0 && len(acme) == 0
	if selfSigned {
		p.warn("set tls.cert_file and tls.key_file, or [tls.acme] domains",
			"no certificate configured: the proxy serves a self-signed one, which clients must be told to trust")
	}
	covered := func(name string) bool {
		for _, l := range leaves {
			if l.VerifyHostname(name) == nil {
				return true
			}
		}
		for _, d := range acme {
			if strings.EqualFold(d, name) {
				return true
			}
		}
		return false
	}
	for i, r := range p.st.proxy.Routes {
		for _, sni := range r.SNI {
			// A "*.example.com" route takes any one label there: try one.
			name := strings.Replace(sni, "*", "probe", 1)
			if covered(name) {
				p.ok("route %s: server name %s is covered by a certificate", routeName(r, i), sni)
				continue
			}
			fix := fmt.Sprintf("add a [[tls.certificate]] for %s, or add it to tls.acme.domains (route at %s)", sni, p.where("route", strconv.Itoa(i), "sni"))
			if selfSigned || sni != name {
				p.warn(fix, "route %s: no certificate covers server name %s: those clients get the default certificate", routeName(r, i), sni)
				continue
			}
			return p.fail(fix, "route %s: no certificate covers server name %s: those clients get the default certificate and refuse it", routeName(r, i), sni)
		}
	}
	return nil
}

// routeName names a route as the proxy's logs do.
func routeName(r proxy.Route, i int) string {
	if r.Name == "" {
		return "route-" + strconv.Itoa(i)
	}
	return r.Name
}

// loadLeaf loads a certificate/key pair and returns its leaf.
func loadLeaf(kp tlsoffload.KeyPair) (*x509.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(kp.CertFile, kp.KeyFile)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(cert.Certificate[0])
}

// session goes through the proxy's own listeners as a client would:
// greeting, AUTH TLS, the certificate served, the implicit listener, a
// login, and a listing over PASV and over EPSV with PROT P whose data
// connections must resume the control connection's TLS session.
func (p *prober) session(ctx context.Context) error {
	pc := p.st.proxy
	var (
		c   *ftpConn
		tc  *tls.Config
		err error
	)
	if pc.Listen != "" {
		if c, tc, err = p.explicit(ctx, pc.Listen); err != nil {
			return err
		}
		defer c.close()
	}
	if pc.Implicit != "" {
		ic, itc, err := p.implicit(ctx, pc.Implicit, c == nil)
		if err != nil {
			return err
		}
		if c == nil {
			c, tc = ic, itc
			defer c.close()
		}
	}
	if p.user == "" {
		p.warn("give --user and --password-file (an account on the backends) to check them",
			"login, listings over PASV and EPSV, and TLS resumption of data connections not checked: no --user")
		c.cmd("QUIT")
		return nil
	}
	if err := p.login(c); err != nil {
		return err
	}
	for _, line := range []string{"PBSZ 0", "PROT P"} {
		if rep, err := c.cmd(line); err != nil || rep.Code != ftpctl.CodeOK {
			return p.fail("see the proxy's log for this session", "%s: %s", line, replyOrErr(rep, err))
		}
	}
	for _, verb := range []string{"PASV", "EPSV"} {
		if err := p.list(ctx, c, verb, tc); err != nil {
			return err
		}
	}
	c.cmd("QUIT")
	return nil
}

// explicit connects to the explicit listener, reads the greeting, starts
// TLS with AUTH TLS and checks the certificate served. It returns the
// connection and its TLS configuration, for the data connections.
func (p *prober) explicit(ctx context.Context, listen string) (*ftpConn, *tls.Config, error) {
	addr, host := dialAddress(listen)
	here := p.where("listen", "explicit")
	fix := fmt.Sprintf("start `ftpsgate serve --config %s`, or check listen.explicit (%s) and the firewall", p.path, here)
	c, err := p.dialListener(ctx, addr)
	if err != nil {
		return nil, nil, p.fail(fix, "explicit listener %s: %v", addr, err)
	}
	greet, err := c.read()
	if err != nil || greet.Code != ftpctl.CodeReady {
		c.close()
		return nil, nil, p.fail(fix, "explicit listener %s: greeting: %s", addr, replyOrErr(greet, err))
	}
	p.ok("explicit listener %s: %s", addr, replyText(greet))
	if rep, err := c.cmd("AUTH TLS"); err != nil || rep.Code != ftpctl.CodeAuthOK {
		c.close()
		return nil, nil, p.fail(fmt.Sprintf("is ftpsgate the one listening on %s? (%s)", addr, here), "AUTH TLS: %s", replyOrErr(rep, err))
	}
	tc := p.clientTLS(host)
	cs, err := c.startTLS(ctx, tc)
	if err != nil {
		c.close()
		return nil, nil, p.fail("see the proxy's log (tls handshake failed) and tls.min_version", "TLS handshake on %s: %v", addr, err)
	}
	p.ok("TLS on %s: %s, %s", addr, tls.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite))
	if err := p.served(cs, host); err != nil {
		c.close()
		return nil, nil, err
	}
	return c, tc, nil
}

// implicit checks the implicit listener: TLS from the first byte, then
// 220. With keep, the connection is returned for the session and the
// certificate checked; otherwise it is closed.
func (p *prober) implicit(ctx context.Context, listen string, keep bool) (*ftpConn, *tls.Config, error) {
	addr, host := dialAddress(listen)
	fix := fmt.Sprintf("start `ftpsgate serve --config %s`, or check listen.implicit (%s) and the firewall", p.path, p.where("listen", "implicit"))
	c, err := p.dialListener(ctx, addr)
	if err != nil {
		return nil, nil, p.fail(fix, "implicit listener %s: %v", addr, err)
	}
	tc := p.clientTLS(host)
	cs, err := c.startTLS(ctx, tc)
	if err != nil {
		c.close()
		return nil, nil, p.fail(fix, "implicit listener %s: TLS handshake: %v", addr, err)
	}
	greet, err := c.read()
	if err != nil || greet.Code != ftpctl.CodeReady {
		c.close()
		return nil, nil, p.fail(fix, "implicit listener %s: greeting: %s", addr, replyOrErr(greet, err))
	}
	p.ok("implicit listener %s: %s, %s; %s", addr, tls.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite), replyText(greet))
	if !keep {
		c.cmd("QUIT")
		c.close()
		return nil, nil, nil
	}
	if err := p.served(cs, host); err != nil {
		c.close()
		return nil, nil, err
	}
	return c, tc, nil
}

// clientTLS is the TLS configuration of the probe's session. The
// certificate is checked by served, which reports a self-signed one
// instead of refusing it. The session cache is keyed by ServerName, so
// the data connections (to other ports) find the control session's
// ticket: ServerName is always set, to an IP address if need be (which
// crypto/tls does not send as SNI).
func (p *prober) clientTLS(host string) *tls.Config {
	name := p.serverName
	if name == "" {
		name = host
	}
	return &tls.Config{
		ServerName:         name,
		InsecureSkipVerify: true, // checked by served
		ClientSessionCache: tls.NewLRUClientSessionCache(8),
	}
}

// sniName is the server name the probe asks for, if any.
func (p *prober) sniName(host string) string {
	if p.serverName != "" {
		return p.serverName
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return ""
	}
	return host
}

// served checks the certificate the proxy presented: names, expiry, and
// its chain unless it is self-signed, which is said.
func (p *prober) served(cs tls.ConnectionState, host string) error {
	name := p.sniName(host)
	leaf := cs.PeerCertificates[0]
	desc := fmt.Sprintf("%s, valid until %s", certNames(leaf), leaf.NotAfter.UTC().Format(time.DateOnly))
	certFix := "serve a valid certificate: tls.cert_file and tls.key_file, [[tls.certificate]], or [tls.acme]"
	if time.Now().After(leaf.NotAfter) {
		return p.fail(certFix, "served certificate %s: expired", desc)
	}
	if name != "" && leaf.VerifyHostname(name) != nil {
		return p.fail(fmt.Sprintf("serve a certificate for %s: tls.cert_file and tls.key_file, a [[tls.certificate]], or tls.acme.domains", name),
			"served certificate %s: not valid for %s", desc, name)
	}
	if len(cs.PeerCertificates) == 1 && bytes.Equal(leaf.RawIssuer, leaf.RawSubject) &&
		leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature) == nil {
		p.warn(fmt.Sprintf("clients must be told to trust it (SHA-256 fingerprint %s), or %s", fingerprint(leaf), certFix),
			"served certificate %s: self-signed, chain not verified", desc)
		return nil
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Intermediates: inter}); err != nil {
		p.warn("from a private CA, clients need that CA; otherwise put the missing intermediate in tls.cert_file, after the leaf",
			"served certificate %s: does not verify against this host's roots: %v", desc, err)
		return nil
	}
	p.ok("served certificate %s: chain verified", desc)
	return nil
}

// login sends USER and PASS through the proxy.
func (p *prober) login(c *ftpConn) error {
	rep, err := c.cmd("USER " + p.user)
	if err == nil && rep.Code == ftpctl.CodeNeedPassword {
		rep, err = c.cmd("PASS " + p.password)
	}
	if err == nil && rep.Code == ftpctl.CodeLoggedIn {
		p.ok("login as %s: %s", p.user, replyText(rep))
		return nil
	}
	fix := "see the proxy's log (ftpsgate tail --user " + p.user + ")"
	switch {
	case err != nil:
	case rep.Code == ftpctl.CodeNotLoggedIn:
		fix = "check --user and --password-file against the accounts of the backends; the backend answered"
	case rep.Code == ftpctl.CodeNotAvailable:
		fix = "the proxy reached no backend: see the backend checks above and the proxy's log"
	}
	return p.fail(fix, "login as %s: %s", p.user, replyOrErr(rep, err))
}

// list opens a data connection with verb (PASV or EPSV), lists the
// current directory over it with TLS, and checks that the data
// connection resumed the control connection's TLS session.
func (p *prober) list(ctx context.Context, c *ftpConn, verb string, tc *tls.Config) error {
	portsFix := "see the proxy's log; check listen.passive_ports"
	rep, err := c.cmd(verb)
	want := ftpctl.CodeEnteringPassive
	if verb == "EPSV" {
		want = ftpctl.CodeEnteringExtPassive
	}
	if err != nil || rep.Code != want {
		return p.fail(portsFix, "%s: %s", verb, replyOrErr(rep, err))
	}
	ctlIP := c.remoteIP()
	var target netip.AddrPort
	if verb == "PASV" {
		target, err = ftpctl.ParsePASV(rep.Text())
	} else {
		var port uint16
		port, err = ftpctl.ParseEPSV(rep.Text())
		target = netip.AddrPortFrom(ctlIP, port)
	}
	if err != nil {
		return p.fail(portsFix, "%s: %v", verb, err)
	}
	d := net.Dialer{Timeout: p.timeout}
	data, err := d.DialContext(ctx, "tcp", target.String())
	if err != nil && target.Addr() != ctlIP {
		p.warn(fmt.Sprintf("nothing to change if clients reach %s and this host does not (NAT); otherwise correct listen.public_host (%s)", target.Addr(), p.where("listen", "public_host")),
			"%s announces %s, which this host cannot reach (%v): trying %s", verb, target, err, ctlIP)
		target = netip.AddrPortFrom(ctlIP, target.Port())
		data, err = d.DialContext(ctx, "tcp", target.String())
	}
	if err != nil {
		return p.fail(fmt.Sprintf("let clients reach listen.passive_ports (%s) through the firewall", p.st.proxy.PassivePorts),
			"%s: data connection to %s: %v", verb, target, err)
	}
	if p.st.proxy.DataProxyProtocol {
		if err := p.proxyHeader(data); err != nil {
			data.Close()
			return p.fail("see the proxy's log", "%s: PROXY header on the data connection to %s: %v", verb, target, err)
		}
	}
	data.SetDeadline(time.Now().Add(p.timeout))
	dataDone := make(chan dataResult, 1)
	go receiveTLS(ctx, data, tc, dataDone)

	final, err := c.cmd("LIST")
	if err == nil && !final.Code.Final() {
		final, err = c.read()
	}
	if err != nil || final.Code.Class() != ftpctl.ClassCompletion {
		data.Close()
		<-dataDone
		return p.fail("see the proxy's log for this session", "LIST over %s: %s", verb, replyOrErr(final, err))
	}
	res := <-dataDone
	if res.err != nil {
		return p.fail("see the proxy's log for this session", "LIST over %s: data connection: %v", verb, res.err)
	}
	if !res.state.DidResume {
		return p.fail("clients resume the control session on data connections when the ticket keys match: several instances behind one address need the same tls.ticket_key_file",
			"LIST over %s via %s: %s, but the data connection did not resume the control TLS session", verb, target, tls.VersionName(res.state.Version))
	}
	p.ok("LIST over %s via %s, PROT P: %s, resumed the control TLS session; %s, %s", verb, target,
		tls.VersionName(res.state.Version), plural(res.lines, "entry"), replyText(final))
	return nil
}

// dataResult is what receiveTLS read.
type dataResult struct {
	state tls.ConnectionState
	lines int
	err   error
}

// receiveTLS is the client end of a protected data connection: a TLS
// handshake with the control connection's configuration (so it offers
// the control session's ticket), then everything until the end.
func receiveTLS(ctx context.Context, conn net.Conn, tc *tls.Config, done chan<- dataResult) {
	defer conn.Close()
	tconn := tls.Client(conn, tc)
	if err := tconn.HandshakeContext(ctx); err != nil {
		done <- dataResult{err: fmt.Errorf("TLS handshake: %w", err)}
		return
	}
	sc := bufio.NewScanner(tconn)
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) > 0 {
			n++
		}
	}
	done <- dataResult{state: tconn.ConnectionState(), lines: n, err: sc.Err()}
}

// ftpConn is a client's end of a control connection: the probe's and the
// load tool's.
type ftpConn struct {
	raw     net.Conn
	conn    net.Conn // raw, or TLS over it
	r       *ftpctl.Reader
	timeout time.Duration
	stop    func() bool
}

// dial connects to addr; cancelling ctx closes the connection.
func (p *prober) dial(ctx context.Context, addr string) (*ftpConn, error) {
	return dialFTP(ctx, addr, p.timeout)
}

// dialListener connects to one of the proxy's listeners, with a PROXY
// header first when the probe's own address is in listen.trusted_proxies:
// the proxy then refuses a connection without one, as from a balancer
// that lost its setting.
func (p *prober) dialListener(ctx context.Context, addr string) (*ftpConn, error) {
	c, err := p.dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	if err := p.proxyHeader(c.raw); err != nil {
		c.close()
		return nil, fmt.Errorf("PROXY header: %w", err)
	}
	return c, nil
}

// proxyHeader writes a PROXY v2 header naming conn's own ends, as a
// balancer would for a client at the probe's address, if that address is
// in listen.trusted_proxies; otherwise nothing. The first time, it says so.
func (p *prober) proxyHeader(conn net.Conn) error {
	local, remote := tcpAddrPort(conn.LocalAddr()), tcpAddrPort(conn.RemoteAddr())
	if !p.st.proxy.TrustedProxy(local.Addr()) {
		return nil
	}
	if !p.saidProxy {
		p.saidProxy = true
		p.ok("PROXY protocol: this host (%s) is in listen.trusted_proxies (%s): the probe sends a v2 header naming itself",
			local.Addr(), p.where("listen", "trusted_proxies"))
	}
	_, err := proxyproto.HeaderProxyFromAddrs(2, net.TCPAddrFromAddrPort(local), net.TCPAddrFromAddrPort(remote)).WriteTo(conn)
	return err
}

// tcpAddrPort is a TCP address as an unmapped netip.AddrPort.
func tcpAddrPort(a net.Addr) netip.AddrPort {
	ap := a.(*net.TCPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// dialFTP connects to addr; timeout bounds the dial and each later step,
// and cancelling ctx closes the connection.
func dialFTP(ctx context.Context, addr string, timeout time.Duration) (*ftpConn, error) {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &ftpConn{
		raw: conn, conn: conn,
		r:       ftpctl.NewReader(bufio.NewReader(conn), 0),
		timeout: timeout,
		stop:    context.AfterFunc(ctx, func() { conn.Close() }),
	}, nil
}

func (c *ftpConn) close() {
	c.stop()
	c.conn.Close()
}

// read reads one complete reply.
func (c *ftpConn) read() (ftpctl.Reply, error) {
	c.conn.SetDeadline(time.Now().Add(c.timeout))
	return c.r.ReadReply()
}

// cmd sends a command line and reads its first reply.
func (c *ftpConn) cmd(line string) (ftpctl.Reply, error) {
	c.conn.SetDeadline(time.Now().Add(c.timeout))
	if _, err := io.WriteString(c.conn, line+"\r\n"); err != nil {
		return ftpctl.Reply{}, err
	}
	return c.read()
}

// startTLS makes the connection a TLS client connection.
func (c *ftpConn) startTLS(ctx context.Context, tc *tls.Config) (tls.ConnectionState, error) {
	tconn := tls.Client(c.raw, tc)
	c.raw.SetDeadline(time.Now().Add(c.timeout))
	if err := tconn.HandshakeContext(ctx); err != nil {
		return tls.ConnectionState{}, err
	}
	c.conn = tconn
	c.r = ftpctl.NewReader(bufio.NewReader(tconn), 0)
	return tconn.ConnectionState(), nil
}

func (c *ftpConn) remoteIP() netip.Addr {
	if ta, ok := c.raw.RemoteAddr().(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// dialAddress turns a listen address into one to dial: an unspecified host
// (":21", "0.0.0.0:21") becomes the loopback address.
func dialAddress(listen string) (addr, host string) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen, ""
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port), host
}

// replyText is a reply's code and first line.
func replyText(r ftpctl.Reply) string {
	return strconv.Itoa(int(r.Code)) + " " + r.Text()
}

// replyOrErr describes what came back: an error, or an unwanted reply.
func replyOrErr(r ftpctl.Reply, err error) string {
	if err != nil {
		return err.Error()
	}
	return replyText(r)
}

// certNames lists a certificate's DNS names and IP addresses.
func certNames(c *x509.Certificate) string {
	names := append([]string{}, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		return "no names (CN " + c.Subject.CommonName + ")"
	}
	return strings.Join(names, ", ")
}

// fingerprint is a certificate's SHA-256 fingerprint as clients show it.
func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}
