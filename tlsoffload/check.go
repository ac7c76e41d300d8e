package tlsoffload

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// expiryWarning: a certificate closer than this to its expiry is a warning
// in Check.
const expiryWarning = 14 * 24 * time.Hour

// Problem is one thing wrong with a Config, as Check finds it.
type Problem struct {
	// Field is the Config field concerned, as a Go path:
	// "CertFile", "Certificates[1].KeyFile", "ACME.Domains[0]".
	Field string
	// Warning: the configuration works, but probably not as intended (a
	// certificate no public root vouches for, one that expires within 14
	// days). Otherwise New fails or clients will.
	Warning bool
	Err     error
}

func (p Problem) Error() string {
	if p.Warning {
		return p.Field + ": warning: " + p.Err.Error()
	}
	return p.Field + ": " + p.Err.Error()
}

func (p Problem) Unwrap() error { return p.Err }

// Check validates c without serving anything, for `ftpsgate check`: the
// values New checks, and the files: each certificate/key pair loads, the key
// matches, the certificate is valid now and for a while, its chain is in
// order and verifies against the system roots (a warning otherwise: private
// CAs and self-signed certificates are legitimate, but clients must be told
// to trust them); the client CA file and the ticket key file parse; the ACME
// section is complete and its cache directory usable. It returns every
// problem found, in field order.
func (c Config) Check() []Problem {
	ps := c.problems()
	now := time.Now()
	offset := 0 // index in c.pairs() of Certificates[0]
	if c.CertFile != "" && c.KeyFile != "" {
		offset = 1
	}
	for i, p := range c.pairs() {
		if p.CertFile == "" || p.KeyFile == "" {
			continue // reported by problems
		}
		field := ""
		if i >= offset {
			field = fmt.Sprintf("Certificates[%d]", i-offset)
		}
		ps = append(ps, checkPair(field, p, now)...)
	}
	if c.ClientCAFile != "" {
		if _, err := readCertPool(c.ClientCAFile); err != nil {
			ps = append(ps, Problem{Field: "ClientCAFile", Err: err})
		}
	}
	if c.TicketKeyFile != "" {
		if _, _, err := readTicketKeyFile(c.TicketKeyFile); err != nil {
			ps = append(ps, Problem{Field: "TicketKeyFile", Err: err})
		}
		// Whoever reads the keys can decrypt every recorded session
		// they protected, and resume sessions as any client.
		if fi, err := os.Stat(c.TicketKeyFile); err == nil && fi.Mode().Perm()&0o077 != 0 {
			ps = append(ps, Problem{Field: "TicketKeyFile", Warning: true,
				Err: fmt.Errorf("%s is open to group or others (mode %04o): anyone who can read it can decrypt recorded TLS sessions; chmod 600 it", c.TicketKeyFile, fi.Mode().Perm())})
		}
	}
	if len(c.ACME.Domains) > 0 && c.ACME.Cache == nil {
		if dir := c.acmeCacheDir(); dir != "" {
			if err := checkDirUsable(dir); err != nil {
				ps = append(ps, Problem{Field: "ACME.CacheDir", Err: err})
			}
			ps = append(ps, checkRenewBefore(c.ACME, dir)...)
		}
	}
	if c.ACME.DirectoryCAFile != "" {
		if _, err := readCertPool(c.ACME.DirectoryCAFile); err != nil {
			ps = append(ps, Problem{Field: "ACME.DirectoryCAFile", Err: err})
		}
	}
	if c.StateDir != "" {
		if err := checkDirUsable(c.StateDir); err != nil {
			ps = append(ps, Problem{Field: "StateDir", Err: err})
		}
	}
	return ps
}

// checkRenewBefore warns about cached ACME certificates whose lifetime is
// not longer than RenewBefore: autocert would renew them as soon as it got
// them, for ever (the lifetime is the CA's choice, so only certificates
// already obtained tell).
func checkRenewBefore(a ACMEConfig, dir string) []Problem {
	if a.RenewBefore <= 0 {
		return nil
	}
	var ps []Problem
	for _, d := range a.Domains {
		data, err := os.ReadFile(filepath.Join(dir, normalizeDomain(d)))
		if err != nil {
			continue
		}
		cert, err := parseCachedCert(data)
		if err != nil {
			continue
		}
		if before, life := renewBefore(a, cert.Leaf), cert.Leaf.NotAfter.Sub(cert.Leaf.NotBefore); before >= life {
			ps = append(ps, Problem{Field: "ACME.RenewBefore", Warning: true,
				Err: fmt.Errorf("%s is not shorter than the lifetime of %s's certificate (%s): it would be ordered again and again", before, d, life.Round(time.Second))})
		}
	}
	return ps
}

// checkPair checks one certificate/key pair. field is "" for
// CertFile/KeyFile, else "Certificates[i]".
func checkPair(field string, p KeyPair, now time.Time) []Problem {
	certField, keyField := "CertFile", "KeyFile"
	if field != "" {
		certField, keyField = field+".CertFile", field+".KeyFile"
	}
	var ps []Problem
	certPEM, err := os.ReadFile(p.CertFile)
	if err != nil {
		ps = append(ps, Problem{Field: certField, Err: err})
	}
	keyPEM, kerr := os.ReadFile(p.KeyFile)
	if kerr != nil {
		ps = append(ps, Problem{Field: keyField, Err: kerr})
	}
	if err != nil {
		return ps
	}
	var chain []*x509.Certificate
	for rest := certPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			ps = append(ps, Problem{Field: certField, Err: fmt.Errorf("certificate %d: %w", len(chain)+1, err)})
			return ps
		}
		chain = append(chain, c)
	}
	if len(chain) == 0 {
		return append(ps, Problem{Field: certField, Err: fmt.Errorf("%s: no PEM certificate", p.CertFile)})
	}
	leaf := chain[0]
	if kerr == nil {
		if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
			ps = append(ps, Problem{Field: keyField, Err: fmt.Errorf("%s does not go with %s: %w", p.KeyFile, p.CertFile, err)})
		}
	}
	switch left := leaf.NotAfter.Sub(now); {
	case left < 0:
		ps = append(ps, Problem{Field: certField, Err: fmt.Errorf("%s expired at %s", p.CertFile, leaf.NotAfter.UTC().Format(time.RFC3339))})
	case now.Before(leaf.NotBefore):
		ps = append(ps, Problem{Field: certField, Err: fmt.Errorf("%s not valid before %s", p.CertFile, leaf.NotBefore.UTC().Format(time.RFC3339))})
	case left < expiryWarning:
		ps = append(ps, Problem{Field: certField, Warning: true, Err: fmt.Errorf("%s expires in %s, at %s", p.CertFile, left.Round(time.Hour), leaf.NotAfter.UTC().Format(time.RFC3339))})
	}
	if len(leaf.DNSNames) == 0 && len(leaf.IPAddresses) == 0 {
		ps = append(ps, Problem{Field: certField, Warning: true, Err: fmt.Errorf("%s has no subject alternative name: clients ignore its common name", p.CertFile)})
	}
	for i := 0; i+1 < len(chain); i++ {
		if err := chain[i].CheckSignatureFrom(chain[i+1]); err != nil {
			ps = append(ps, Problem{Field: certField, Err: fmt.Errorf("%s: certificate %d (%s) is not signed by certificate %d (%s): chain out of order or wrong intermediate", p.CertFile, i+1, chain[i].Subject, i+2, chain[i+1].Subject)})
		}
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, verr := leaf.Verify(x509.VerifyOptions{Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	var ui x509.UnknownAuthorityError
	switch {
	case verr == nil:
	case len(chain) == 1 && bytes.Equal(leaf.RawIssuer, leaf.RawSubject) && errors.As(verr, &ui):
		ps = append(ps, Problem{Field: certField, Warning: true, Err: fmt.Errorf("%s is self-signed: clients must be told to trust it (fingerprint %s)", p.CertFile, fingerprint(leaf.Raw))})
	default:
		ps = append(ps, Problem{Field: certField, Warning: true, Err: fmt.Errorf("%s does not verify against the system roots (a private CA, or a missing intermediate?): %w", p.CertFile, verr)})
	}
	return ps
}

// checkDirUsable says whether dir is, or can be made, a directory to write
// in. It writes nothing.
func checkDirUsable(dir string) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, os.ErrNotExist) {
		parent := filepath.Dir(filepath.Clean(dir))
		if pfi, perr := os.Stat(parent); perr != nil || !pfi.IsDir() {
			return fmt.Errorf("%s does not exist, nor does its parent %s", dir, parent)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	return nil
}

// validate is what New refuses: problems in the values themselves, not in
// the files they name.
func (c Config) validate() error {
	var errs []error
	for _, p := range c.problems() {
		if !p.Warning {
			errs = append(errs, p)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("tlsoffload: %w", errors.Join(errs...))
}

// problems checks the values of c.
func (c Config) problems() []Problem {
	var ps []Problem
	add := func(field string, warning bool, format string, args ...any) {
		ps = append(ps, Problem{Field: field, Warning: warning, Err: fmt.Errorf(format, args...)})
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		add("CertFile", false, "cert_file and key_file go together")
	}
	for i, p := range c.Certificates {
		if p.CertFile == "" || p.KeyFile == "" {
			add(fmt.Sprintf("Certificates[%d]", i), false, "needs both a certificate file and a key file")
		}
	}
	switch c.MinVersion {
	case 0, tls.VersionTLS12, tls.VersionTLS13:
	case tls.VersionTLS10, tls.VersionTLS11:
		add("MinVersion", true, "%s has known weaknesses; 1.2 is what every FTPS client supports", tls.VersionName(c.MinVersion))
	default:
		add("MinVersion", false, "unknown TLS version %#04x", c.MinVersion)
	}
	ps = append(ps, c.cipherSuitesProblems()...)
	switch c.ClientAuth {
	case "":
	case "request", "require":
		if c.ClientCAFile == "" {
			add("ClientAuth", false, "client_auth = %q needs client_ca_file", c.ClientAuth)
		}
	default:
		add("ClientAuth", false, "client_auth = %q: want \"request\" or \"require\"", c.ClientAuth)
	}
	ps = append(ps, c.ACME.problems(c.StateDir)...)
	return ps
}

// problems checks the ACME section's values.
func (a ACMEConfig) problems(stateDir string) []Problem {
	var ps []Problem
	add := func(field string, warning bool, format string, args ...any) {
		ps = append(ps, Problem{Field: "ACME." + field, Warning: warning, Err: fmt.Errorf(format, args...)})
	}
	if len(a.Domains) == 0 {
		if a.Email != "" || a.CacheDir != "" || a.DirectoryURL != "" || a.HTTPListen != "" || a.TLSALPNListen != "" || a.RenewBefore != 0 || a.DirectoryCAFile != "" {
			add("Domains", false, "the ACME section needs domains")
		}
		return ps
	}
	seen := map[string]bool{}
	for i, d := range a.Domains {
		field := fmt.Sprintf("Domains[%d]", i)
		if err := checkDomain(d); err != nil {
			add(field, false, "%q: %v", d, err)
			continue
		}
		n := normalizeDomain(d)
		if seen[n] {
			add(field, false, "%q appears twice", d)
		}
		seen[n] = true
	}
	if a.Email != "" {
		if _, err := mail.ParseAddress(a.Email); err != nil || strings.ContainsAny(a.Email, "<> ") {
			add("Email", false, "%q is not an email address", a.Email)
		}
	}
	if a.CacheDir == "" && stateDir == "" && a.Cache == nil {
		add("CacheDir", false, "needs cache_dir (or state_dir): without a cache every restart orders new certificates and soon hits the CA's rate limits")
	}
	if a.DirectoryURL != "" {
		u, err := url.Parse(a.DirectoryURL)
		switch {
		case err != nil:
			add("DirectoryURL", false, "%v", err)
		case u.Scheme != "https" || u.Host == "":
			add("DirectoryURL", false, "%q: want an https:// URL", a.DirectoryURL)
		}
	}
	httpOff := a.HTTPListen == "off"
	if !httpOff && a.HTTPListen != "" {
		if _, _, err := net.SplitHostPort(a.HTTPListen); err != nil {
			add("HTTPListen", false, "%q: %v", a.HTTPListen, err)
		}
	}
	if a.TLSALPNListen != "" {
		if _, _, err := net.SplitHostPort(a.TLSALPNListen); err != nil {
			add("TLSALPNListen", false, "%q: %v", a.TLSALPNListen, err)
		}
	}
	if httpOff && a.TLSALPNListen == "" {
		add("HTTPListen", false, "http_listen = \"off\" needs tls_alpn_listen: no challenge could be answered")
	}
	if a.RenewBefore < 0 {
		add("RenewBefore", false, "negative")
	} else if a.RenewBefore > 30*24*time.Hour {
		add("RenewBefore", true, "more than 30 days: autocert renews 30 days before expiry at the earliest")
	}
	return ps
}

// checkDomain accepts what an ACME CA issues for with http-01 and
// tls-alpn-01: a DNS name with at least two labels, no wildcard, no IP.
func checkDomain(d string) error {
	n := normalizeDomain(d)
	switch {
	case n == "":
		return errors.New("empty")
	case net.ParseIP(n) != nil:
		return errors.New("an IP address: ACME certificates here are for DNS names")
	case strings.Contains(n, "*"):
		return errors.New("a wildcard needs the dns-01 challenge, which ftpsgate does not answer")
	case !strings.Contains(n, "."):
		return errors.New("not a fully qualified name")
	case len(n) > 253:
		return errors.New("longer than 253 characters")
	}
	for _, label := range strings.Split(n, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("bad label %q", label)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return fmt.Errorf("character %q: write internationalized names in punycode (xn--)", r)
			}
		}
	}
	return nil
}

func normalizeDomain(d string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
}

// pairs lists the configured certificate/key pairs, the default first.
func (c Config) pairs() []KeyPair {
	var ps []KeyPair
	if c.CertFile != "" && c.KeyFile != "" {
		ps = append(ps, KeyPair{c.CertFile, c.KeyFile})
	}
	return append(ps, c.Certificates...)
}

func (c Config) minVersion() uint16 {
	if c.MinVersion == 0 {
		return tls.VersionTLS12
	}
	return c.MinVersion
}

func (c Config) selfSignedNames() []string {
	if len(c.SelfSignedNames) == 0 {
		return []string{"localhost", "127.0.0.1", "::1"}
	}
	return c.SelfSignedNames
}

func (c Config) reloadInterval() time.Duration {
	if c.ReloadInterval == 0 {
		return time.Minute
	}
	return c.ReloadInterval
}

func (c Config) ticketRotation() time.Duration {
	if c.TicketRotation == 0 {
		return 12 * time.Hour
	}
	return c.TicketRotation
}

// clientAuth is the policy for client certificates.
func (c Config) clientAuth() (tls.ClientAuthType, *x509.CertPool, error) {
	if c.ClientCAFile == "" {
		return tls.NoClientCert, nil, nil
	}
	pool, err := readCertPool(c.ClientCAFile)
	if err != nil {
		return 0, nil, err
	}
	if c.ClientAuth == "require" {
		return tls.RequireAndVerifyClientCert, pool, nil
	}
	return tls.VerifyClientCertIfGiven, pool, nil
}

func (c Config) acmeCacheDir() string {
	if c.ACME.CacheDir != "" {
		return c.ACME.CacheDir
	}
	if c.StateDir != "" {
		return filepath.Join(c.StateDir, "acme")
	}
	return ""
}
