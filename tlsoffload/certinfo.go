package tlsoffload

import (
	"crypto/tls"
	"time"
)

// CertificateInfo describes a certificate being served, for a status page.
type CertificateInfo struct {
	Source   string    // the certificate file, "self-signed", or "acme"
	Names    []string  // DNS names and IP addresses (the common name when there are none)
	NotAfter time.Time // expiry
}

// Certificates lists the certificates served now: the files' in
// configuration order, the self-signed one, and every ACME domain's that
// has been obtained. It is safe for concurrent use.
func (o *Offload) Certificates() []CertificateInfo {
	var out []CertificateInfo
	add := func(source string, c *tls.Certificate) {
		if c != nil && c.Leaf != nil {
			out = append(out, CertificateInfo{Source: source, Names: certNames(c.Leaf), NotAfter: c.Leaf.NotAfter})
		}
	}
	o.reloadMu.Lock()
	for _, p := range o.pairs {
		add(p.CertFile, p.cert)
	}
	add("self-signed", o.selfCert)
	o.reloadMu.Unlock()
	if o.acme != nil {
		for _, d := range o.acme.domains {
			add("acme", d.cert.Load())
		}
	}
	return out
}
