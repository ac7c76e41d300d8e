package tlsoffload

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// certSet is an immutable snapshot of the file and self-signed certificates,
// indexed for SNI. Reload builds a new one and swaps it in whole, so a
// handshake sees either the old set or the new one, never a mix.
type certSet struct {
	exact    map[string][]*tls.Certificate // lower-case DNS name
	wildcard map[string][]*tls.Certificate // "example.com" for "*.example.com"
	def      *tls.Certificate              // no SNI, an IP, or a name nothing covers
}

// pairState is one configured certificate/key pair and what was last loaded
// from it. Guarded by Offload.reloadMu.
type pairState struct {
	KeyPair
	cert *tls.Certificate
	sum  [32]byte // of the files' contents when cert was loaded
	// seenBad is the contents last found unusable by a poll, reported is
	// the contents last reported as unusable: a poll that catches a writer
	// between the certificate and the key waits for a second look before
	// reporting, and each broken version is reported once.
	seenBad, reported [32]byte
}

// loadPair reads and parses a pair. sum identifies the contents (or the read
// error), so that an unchanged pair is not parsed again.
func loadPair(p KeyPair) (*tls.Certificate, [32]byte, error) {
	certPEM, err1 := os.ReadFile(p.CertFile)
	keyPEM, err2 := os.ReadFile(p.KeyFile)
	h := sha256.New()
	h.Write(certPEM)
	h.Write([]byte{0})
	h.Write(keyPEM)
	if err := errors.Join(err1, err2); err != nil {
		h.Write([]byte(err.Error()))
		return nil, [32]byte(h.Sum(nil)), fmt.Errorf("tlsoffload: %w", err)
	}
	sum := [32]byte(h.Sum(nil))
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, sum, fmt.Errorf("tlsoffload: %s and %s: %w", p.CertFile, p.KeyFile, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, sum, fmt.Errorf("tlsoffload: %s: %w", p.CertFile, err)
		}
	}
	return &cert, sum, nil
}

// usableReplacement says why a freshly loaded certificate must not replace
// a working one: expired or not yet valid.
func usableReplacement(c *tls.Certificate, now time.Time) error {
	if now.After(c.Leaf.NotAfter) {
		return fmt.Errorf("tlsoffload: certificate expired at %s", c.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(c.Leaf.NotBefore) {
		return fmt.Errorf("tlsoffload: certificate not valid before %s", c.Leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// buildSet indexes the current pairs and the self-signed certificate.
// Called with reloadMu held (or before o is shared).
func (o *Offload) buildSet() *certSet {
	s := &certSet{exact: map[string][]*tls.Certificate{}, wildcard: map[string][]*tls.Certificate{}}
	for _, p := range o.pairs {
		if s.def == nil {
			s.def = p.cert
		}
		names := p.cert.Leaf.DNSNames
		if len(names) == 0 && p.cert.Leaf.Subject.CommonName != "" {
			names = []string{p.cert.Leaf.Subject.CommonName}
		}
		for _, n := range names {
			n = strings.ToLower(strings.TrimSuffix(n, "."))
			if rest, ok := strings.CutPrefix(n, "*."); ok {
				s.wildcard[rest] = append(s.wildcard[rest], p.cert)
			} else {
				s.exact[n] = append(s.exact[n], p.cert)
			}
		}
	}
	if s.def == nil && o.selfCert != nil {
		s.def = o.selfCert
	}
	return s
}

// Reload reads the certificate files and the ticket key file again. New
// handshakes use what changed; connections already established are not
// touched. A file that cannot be used (unreadable, key not matching,
// expired) keeps the previous certificate. Everything that happens is
// reported to OnEvent, failures included, and failures are also returned,
// joined, for callers that need the outcome; the proxy logs the events and
// need not log the error again. The proxy calls it on SIGHUP.
//
// Reload also makes ACME domains that have no certificate yet try again at
// Run's next check, without waiting for their backoff.
func (o *Offload) Reload() error {
	if o.acme != nil {
		o.acme.retrySoon()
	}
	return o.reload(true)
}

// reload is Reload (explicit) and Run's polling (not explicit: a broken file
// is reported only when a second look finds the same contents).
func (o *Offload) reload(explicit bool) error {
	o.reloadMu.Lock()
	defer o.reloadMu.Unlock()
	now := time.Now()
	var errs []error
	changed := false
	for _, p := range o.pairs {
		cert, sum, err := loadPair(p.KeyPair)
		if err == nil && sum == p.sum {
			continue
		}
		if err == nil {
			err = usableReplacement(cert, now)
		}
		if err != nil {
			if !explicit && sum != p.seenBad {
				p.seenBad = sum // perhaps half written: look again next time
				continue
			}
			err = fmt.Errorf("%w (still serving serial %s)", err, serial(p.cert))
			if explicit || sum != p.reported {
				p.reported = sum
				o.emit(certEvent(EventFailed, p.CertFile, p.cert, err))
			}
			errs = append(errs, err)
			continue
		}
		p.cert, p.sum, p.seenBad, p.reported = cert, sum, [32]byte{}, [32]byte{}
		changed = true
		o.emit(certEvent(EventReloaded, p.CertFile, cert, nil))
	}
	if o.selfSigned && o.selfCert.Leaf.NotAfter.Sub(now) < selfSignedRenewBefore {
		cert, err := o.loadSelfSigned(now)
		if err != nil {
			errs = append(errs, err)
			o.emit(certEvent(EventFailed, "self-signed", o.selfCert, err))
		} else {
			o.selfCert = cert
			changed = true
		}
	}
	if changed {
		o.certs.Store(o.buildSet())
	}
	if err := o.reloadTicketKeys(explicit); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
