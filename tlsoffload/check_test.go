package tlsoffload

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// chainPair writes a leaf signed by an intermediate signed by a root, with
// the chain in the given order ("leaf,inter" or "inter,leaf").
func chainPair(t *testing.T, dir, order string) KeyPair {
	t.Helper()
	mk := func(cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, ca bool) (*x509.Certificate, *ecdsa.PrivateKey) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(90 * 24 * time.Hour),
			IsCA: ca, BasicConstraintsValid: true,
		}
		if ca {
			tmpl.KeyUsage = x509.KeyUsageCertSign
		} else {
			tmpl.DNSNames = []string{cn}
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
			tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		}
		if parent == nil {
			parent, parentKey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		return c, key
	}
	root, rootKey := mk("root", nil, nil, true)
	inter, interKey := mk("intermediate", root, rootKey, true)
	leaf, leafKey := mk("ftp.example.com", inter, interKey, false)
	p := KeyPair{CertFile: filepath.Join(dir, order+".crt"), KeyFile: filepath.Join(dir, order+".key")}
	var certPEM []byte
	for _, c := range strings.Split(order, ",") {
		der := leaf.Raw
		if c == "inter" {
			der = inter.Raw
		}
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(leafKey)
	os.WriteFile(p.CertFile, certPEM, 0o600)
	os.WriteFile(p.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	return p
}

func TestCheck(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good, _ := writePair(t, dir, "good", 90*24*time.Hour, "ftp.example.com")
	soon, _ := writePair(t, dir, "soon", 3*24*time.Hour, "ftp.example.com")
	expired, _ := writePair(t, dir, "expired", -time.Hour, "ftp.example.com")
	other, _ := writePair(t, dir, "other", time.Hour, "ftp.example.com")
	mismatched := KeyPair{CertFile: good.CertFile, KeyFile: other.KeyFile}
	inOrder, outOfOrder := chainPair(t, dir, "leaf,inter"), chainPair(t, dir, "inter,leaf")
	keyFile := filepath.Join(dir, "tickets")
	os.WriteFile(keyFile, []byte("short\n"), 0o600)
	openKeyFile := filepath.Join(dir, "open-tickets")
	os.WriteFile(openKeyFile, []byte(base64.StdEncoding.EncodeToString(make([]byte, 32))+"\n"), 0o600)
	os.Chmod(openKeyFile, 0o640) // whatever the umask

	type want struct {
		field   string
		warning bool
		text    string
	}
	tests := []struct {
		name string
		c    Config
		want []want
	}{
		{"zero", Config{}, nil},
		{"self-signed file", Config{CertFile: good.CertFile, KeyFile: good.KeyFile}, []want{{"CertFile", true, "self-signed"}}},
		{"expires soon", Config{Certificates: []KeyPair{soon}}, []want{{"Certificates[0].CertFile", true, "expires in"}, {"Certificates[0].CertFile", true, "self-signed"}}},
		{"expired", Config{CertFile: expired.CertFile, KeyFile: expired.KeyFile}, []want{{"CertFile", false, "expired"}, {"CertFile", true, ""}}},
		{"key mismatch", Config{CertFile: mismatched.CertFile, KeyFile: mismatched.KeyFile}, []want{{"KeyFile", false, "does not go with"}, {"CertFile", true, "self-signed"}}},
		{"missing files", Config{CertFile: dir + "/nope.crt", KeyFile: dir + "/nope.key"}, []want{{"CertFile", false, "no such file"}, {"KeyFile", false, "no such file"}}},
		{"half pair", Config{CertFile: good.CertFile}, []want{{"CertFile", false, "go together"}}},
		{"chain in order", Config{Certificates: []KeyPair{good, inOrder}}, []want{{"Certificates[0].CertFile", true, "self-signed"}, {"Certificates[1].CertFile", true, "system roots"}}},
		{"chain out of order", Config{CertFile: outOfOrder.CertFile, KeyFile: outOfOrder.KeyFile}, []want{{"KeyFile", false, "does not go with"}, {"CertFile", true, "no subject alternative name"}, {"CertFile", false, "out of order"}, {"CertFile", true, "system roots"}}},
		{"client auth", Config{ClientAuth: "require"}, []want{{"ClientAuth", false, "client_ca_file"}}},
		{"ticket key file", Config{TicketKeyFile: keyFile}, []want{{"TicketKeyFile", false, "line 1"}}},
		{"ticket key file open to the group", Config{TicketKeyFile: openKeyFile}, []want{{"TicketKeyFile", true, "mode 0640"}}},
		{"old TLS", Config{MinVersion: tls.VersionTLS10}, []want{{"MinVersion", true, "weaknesses"}}},
		{"acme ok", Config{StateDir: dir, ACME: ACMEConfig{Domains: []string{"ftp.example.com", "files.example.com"}, Email: "ops@example.com"}}, nil},
		{"acme without domains", Config{ACME: ACMEConfig{Email: "ops@example.com"}}, []want{{"ACME.Domains", false, "needs domains"}}},
		{"acme domains", Config{StateDir: dir, ACME: ACMEConfig{Domains: []string{"10.0.0.1", "*.example.com", "localhost", "a..example.com", "ftp.example.com", "FTP.example.com."}}}, []want{
			{"ACME.Domains[0]", false, "IP"},
			{"ACME.Domains[1]", false, "dns-01"},
			{"ACME.Domains[2]", false, "fully qualified"},
			{"ACME.Domains[3]", false, "label"},
			{"ACME.Domains[5]", false, "twice"},
		}},
		{"acme settings", Config{ACME: ACMEConfig{Domains: []string{"ftp.example.com"}, Email: "not an email", DirectoryURL: "http://ca.example/dir", HTTPListen: "off", RenewBefore: -time.Hour}}, []want{
			{"ACME.Email", false, "not an email"},
			{"ACME.CacheDir", false, "rate limits"},
			{"ACME.DirectoryURL", false, "https"},
			{"ACME.HTTPListen", false, "tls_alpn_listen"},
			{"ACME.RenewBefore", false, "negative"},
		}},
		{"acme listen", Config{ACME: ACMEConfig{Domains: []string{"ftp.example.com"}, CacheDir: good.CertFile, HTTPListen: "80", TLSALPNListen: "[::]:443", RenewBefore: 60 * 24 * time.Hour}}, []want{
			{"ACME.HTTPListen", false, "missing port"},
			{"ACME.RenewBefore", true, "30 days"},
			{"ACME.CacheDir", false, "not a directory"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.c.Check()
			if len(got) != len(tt.want) {
				t.Fatalf("Check() = %q, want %d problems", got, len(tt.want))
			}
			for i, w := range tt.want {
				p := got[i]
				if p.Field != w.field || p.Warning != w.warning || !strings.Contains(p.Error(), w.text) {
					t.Errorf("problem %d = %+v (%q), want %+v", i, p, p.Error(), w)
				}
			}
			// New refuses exactly the value problems that are not warnings.
			_, err := New(tt.c)
			for _, p := range tt.c.problems() {
				if !p.Warning && err == nil {
					t.Errorf("New accepted a config with %q", p.Error())
				}
			}
		})
	}
}
