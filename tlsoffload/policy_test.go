package tlsoffload

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestALPN: NextProtos is ["ftp"]. crypto/tls refuses a client that offers
// ALPN without "ftp"; FTPS clients (curl, lftp with GnuTLS, Python's
// ftplib) offer none, and connect.
func TestALPN(t *testing.T) {
	t.Parallel()
	o, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if got := o.TLSConfig().NextProtos; len(got) != 1 || got[0] != "ftp" {
		t.Errorf("NextProtos = %q, want [ftp]: acme-tls/1 only where tls-alpn-01 is served", got)
	}
	srv := startServer(t, o.TLSConfig)
	tests := []struct {
		name       string
		offer      []string
		negotiated string
		ok         bool
	}{
		{"no ALPN (curl, lftp, ftplib)", nil, "", true},
		{"ftp", []string{"ftp"}, "ftp", true},
		{"ftp among others", []string{"h2", "ftp"}, "ftp", true},
		{"unrelated protocol only", []string{"http/1.1"}, "", false},
		{"acme-tls/1 on the FTPS port", []string{"acme-tls/1"}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs, err := handshake(t, srv.addr, &tls.Config{InsecureSkipVerify: true, NextProtos: tt.offer})
			if (err == nil) != tt.ok {
				t.Fatalf("handshake error %v, want ok=%v", err, tt.ok)
			}
			if err == nil && cs.NegotiatedProtocol != tt.negotiated {
				t.Errorf("negotiated %q, want %q", cs.NegotiatedProtocol, tt.negotiated)
			}
		})
	}
}

// testCA makes a CA and a client certificate it signs.
func testCA(t *testing.T, dir string) (caFile string, client tls.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test client CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "alice"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(dir, "clientca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600)
	return caFile, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestClientCertificates(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	caFile, good := testCA(t, dir)
	stranger, _ := SelfSigned([]string{"mallory"}, time.Hour)
	tests := []struct {
		auth   string
		cert   *tls.Certificate
		wantOK bool
	}{
		{"request", nil, true},
		{"request", &good, true},
		{"request", &stranger, false}, // sent, so verified
		{"require", nil, false},
		{"require", &good, true},
		{"require", &stranger, false},
		{"", nil, true}, // zero with a CA file: "request"
		{"", &good, true},
	}
	for _, tt := range tests {
		o, err := New(Config{ClientCAFile: caFile, ClientAuth: tt.auth})
		if err != nil {
			t.Fatal(err)
		}
		srv := startServer(t, o.TLSConfig)
		cc := &tls.Config{InsecureSkipVerify: true}
		if tt.cert != nil {
			// Sent whatever the server's acceptable CAs; crypto/tls would
			// otherwise keep the stranger's certificate to itself.
			cc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return tt.cert, nil }
		}
		_, err = handshake(t, srv.addr, cc)
		if (err == nil) != tt.wantOK {
			t.Errorf("client_auth %q with cert %v: error %v, want ok=%v", tt.auth, tt.cert != nil, err, tt.wantOK)
		}
	}
	for _, c := range []Config{
		{ClientAuth: "require"},                        // no CA file
		{ClientAuth: "always", ClientCAFile: caFile},   // unknown value
		{ClientCAFile: filepath.Join(dir, "missing")},  // unreadable
		{MinVersion: 0x0305},                           // unknown version
		{Certificates: []KeyPair{{CertFile: "a.pem"}}}, // half a pair
	} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v): no error", c)
		}
	}
}
