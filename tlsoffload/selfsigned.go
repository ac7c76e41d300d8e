package tlsoffload

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

const (
	// selfSignedFile holds the key and the certificate, in StateDir.
	selfSignedFile = "selfsigned.pem"
	// selfSignedValidity is how long a generated certificate is valid.
	selfSignedValidity = 365 * 24 * time.Hour
	// selfSignedRenewBefore: a kept certificate closer to its expiry is
	// replaced, at start or by Run's polling.
	selfSignedRenewBefore = 30 * 24 * time.Hour
)

// SelfSigned generates an ECDSA P-256 certificate valid for names (DNS names
// or IP addresses) from now for validity.
func SelfSigned(names []string, validity time.Duration) (tls.Certificate, error) {
	if len(names) == 0 {
		return tls.Certificate{}, errors.New("tlsoffload: self-signed certificate needs a name")
	}
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

// loadSelfSigned returns the self-signed certificate kept in StateDir when
// it is still good (same names, not close to expiry), else a new one, saved
// there. A state directory that cannot be written is reported, not fatal:
// the certificate then lasts until the next restart.
func (o *Offload) loadSelfSigned(now time.Time) (*tls.Certificate, error) {
	names := o.cfg.selfSignedNames()
	var path string
	if o.cfg.StateDir != "" {
		path = filepath.Join(o.cfg.StateDir, selfSignedFile)
		data, err := os.ReadFile(path)
		switch {
		case err == nil:
			cert, err := parseSelfSigned(data, names, now)
			if err == nil {
				o.emit(certEvent(EventLoaded, path, cert, nil))
				return cert, nil
			}
			o.emit(Event{Kind: EventFailed, Source: path, Err: fmt.Errorf("%w; generating a new one", err)})
		case !errors.Is(err, os.ErrNotExist):
			o.emit(Event{Kind: EventFailed, Source: path, Err: fmt.Errorf("tlsoffload: %w; generating a new one", err)})
		}
	}
	cert, err := SelfSigned(names, selfSignedValidity)
	if err != nil {
		return nil, err
	}
	source := "self-signed"
	if path != "" {
		if err := saveSelfSigned(path, &cert); err != nil {
			o.emit(certEvent(EventFailed, path, &cert, err))
		} else {
			source = path
		}
	}
	o.emit(certEvent(EventGenerated, source, &cert, nil))
	return &cert, nil
}

// parseSelfSigned reads a kept certificate and says why it cannot be
// reused.
func parseSelfSigned(data []byte, names []string, now time.Time) (*tls.Certificate, error) {
	cert, err := tls.X509KeyPair(data, data)
	if err != nil {
		return nil, fmt.Errorf("tlsoffload: kept self-signed certificate: %w", err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("tlsoffload: kept self-signed certificate: %w", err)
		}
	}
	if cert.Leaf.NotAfter.Sub(now) < selfSignedRenewBefore {
		return nil, fmt.Errorf("tlsoffload: kept self-signed certificate expires at %s", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	have := certNames(cert.Leaf)
	want := make([]string, 0, len(names))
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			n = ip.String()
		}
		want = append(want, strings.ToLower(n))
	}
	slices.Sort(have)
	slices.Sort(want)
	if !slices.Equal(have, slices.Compact(want)) {
		return nil, fmt.Errorf("tlsoffload: kept self-signed certificate is for %v, not %v", have, want)
	}
	return &cert, nil
}

// saveSelfSigned writes the key and certificate to path, mode 0600, through
// a temporary file and a rename, so a crash leaves the old file or the new
// one.
func saveSelfSigned(path string, cert *tls.Certificate) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return fmt.Errorf("tlsoffload: %w", err)
	}
	var buf bytes.Buffer
	pem.Encode(&buf, &pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	for _, der := range cert.Certificate {
		pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	return writeFileAtomic(path, buf.Bytes())
}

// writeFileAtomic writes data to path (mode 0600, creating its directory
// with mode 0700) through a temporary file, fsync and rename.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("tlsoffload: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("tlsoffload: %w", err)
	}
	defer os.Remove(f.Name()) // after a successful rename, there is nothing to remove
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("tlsoffload: %w", err)
	}
	return nil
}
