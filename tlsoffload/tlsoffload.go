// Package tlsoffload builds the frontend *tls.Config of ftpsgate: where the
// certificate comes from (PEM files, or a self-signed one when none is
// configured) and the TLS policy. Control and data connections share the one
// config, so a data connection can resume its control session with a ticket.
//
//	off, err := tlsoffload.New(tlsoffload.Config{CertFile: "cert.pem", KeyFile: "key.pem"})
//	if err != nil { ... }
//	ln := tls.NewListener(inner, off.TLSConfig())
package tlsoffload

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"sync/atomic"
	"time"
)

// Config says where the certificate comes from and which TLS to accept.
type Config struct {
	// CertFile and KeyFile are a PEM certificate chain and its key. Both
	// empty: a self-signed certificate is generated for SelfSignedNames.
	CertFile, KeyFile string
	// MinVersion is the oldest TLS version accepted. Zero: TLS 1.2; older
	// versions have known attacks and no FTPS client needs them.
	MinVersion uint16
	// SelfSignedNames are the DNS names and IP addresses a generated
	// certificate is valid for. Zero: localhost, 127.0.0.1 and ::1.
	SelfSignedNames []string
}

// Offload holds the frontend TLS configuration and its certificate.
type Offload struct {
	cert       atomic.Pointer[tls.Certificate]
	config     *tls.Config
	selfSigned bool
}

// New loads or generates the certificate and builds the TLS configuration.
func New(c Config) (*Offload, error) {
	o := &Offload{}
	var (
		cert tls.Certificate
		err  error
	)
	switch {
	case c.CertFile != "" && c.KeyFile != "":
		cert, err = tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tlsoffload: %w", err)
		}
	case c.CertFile != "" || c.KeyFile != "":
		return nil, errors.New("tlsoffload: cert_file and key_file go together")
	default:
		names := c.SelfSignedNames
		if len(names) == 0 {
			names = []string{"localhost", "127.0.0.1", "::1"}
		}
		cert, err = SelfSigned(names, 365*24*time.Hour)
		if err != nil {
			return nil, err
		}
		o.selfSigned = true
	}
	if cert.Leaf == nil {
		cert.Leaf, _ = x509.ParseCertificate(cert.Certificate[0])
	}
	o.cert.Store(&cert)

	minVersion := c.MinVersion
	if minVersion == 0 {
		minVersion = tls.VersionTLS12
	}
	o.config = &tls.Config{
		MinVersion:     minVersion,
		GetCertificate: o.getCertificate,
	}
	return o, nil
}

// TLSConfig returns the configuration for control and data connections. It
// must not be modified: one shared config keeps one set of ticket keys, so
// data connections resume the control session.
func (o *Offload) TLSConfig() *tls.Config { return o.config }

// SelfSigned reports whether the certificate was generated, not loaded.
func (o *Offload) SelfSigned() bool { return o.selfSigned }

// Certificate returns the certificate being served.
func (o *Offload) Certificate() *tls.Certificate { return o.cert.Load() }

// Fingerprint returns the SHA-256 fingerprint of the served leaf, as
// clients show it ("AB:CD:..."), so an operator can compare.
func (o *Offload) Fingerprint() string {
	sum := sha256.Sum256(o.cert.Load().Certificate[0])
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

// getCertificate is the one seam every certificate source goes through; it
// is safe for concurrent use as a GetCertificate callback.
func (o *Offload) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return o.cert.Load(), nil
}

// SelfSigned generates an ECDSA P-256 certificate valid for names (DNS names
// or IP addresses) from now for validity.
func SelfSigned(names []string, validity time.Duration) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tlsoffload: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tlsoffload: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: names[0], Organization: []string{"ftpsgate self-signed"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tlsoffload: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tlsoffload: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}
