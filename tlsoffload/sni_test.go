package tlsoffload

import (
	"crypto/tls"
	"slices"
	"testing"
	"time"
)

func TestSNISelection(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	def, defCert := writePair(t, dir, "default", time.Hour, "ftp.example.com")
	net1, netCert := writePair(t, dir, "net", time.Hour, "files.example.net", "upload.example.net")
	wild, wildCert := writePair(t, dir, "wild", time.Hour, "*.example.org")
	o, err := New(Config{CertFile: def.CertFile, KeyFile: def.KeyFile, Certificates: []KeyPair{net1, wild}})
	if err != nil {
		t.Fatal(err)
	}
	if o.SelfSigned() {
		t.Error("SelfSigned() with files configured")
	}
	tests := []struct {
		sni  string
		want *tls.Certificate
	}{
		{"", defCert},                  // no SNI
		{"127.0.0.1", defCert},         // an IP, which RFC 6066 forbids but some clients send
		{"ftp.example.com", defCert},   // exact, default pair
		{"files.example.net", netCert}, // exact, second pair
		{"upload.example.net", netCert},
		{"FILES.Example.NET.", netCert}, // case and trailing dot
		{"a.example.org", wildCert},     // wildcard
		{"b.a.example.org", defCert},    // a wildcard covers one label only
		{"example.org", defCert},        // nor the bare domain
		{"unknown.example.com", defCert},
	}
	for _, tt := range tests {
		t.Run(tt.sni, func(t *testing.T) {
			got, err := o.TLSConfig().GetCertificate(&tls.ClientHelloInfo{ServerName: tt.sni})
			if err != nil {
				t.Fatal(err)
			}
			if serial(got) != serial(tt.want) {
				t.Errorf("SNI %q got certificate for %v, want %v", tt.sni, got.Leaf.DNSNames, tt.want.Leaf.DNSNames)
			}
		})
	}

	// The same through real handshakes on one listener.
	srv := startServer(t, o.TLSConfig)
	for _, tt := range []struct {
		serverName string
		want       *tls.Certificate
	}{
		{"files.example.net", netCert},
		{"x.example.org", wildCert},
		{"ftp.example.com", defCert},
	} {
		cs, err := handshake(t, srv.addr, &tls.Config{ServerName: tt.serverName, RootCAs: poolOf(defCert, netCert, wildCert)})
		if err != nil {
			t.Fatalf("%s: %v", tt.serverName, err)
		}
		if !slices.Equal(cs.PeerCertificates[0].DNSNames, tt.want.Leaf.DNSNames) {
			t.Errorf("%s: served %v", tt.serverName, cs.PeerCertificates[0].DNSNames)
		}
	}
	// No SNI at all: a Go client sends none when ServerName is empty.
	cs, err := handshake(t, srv.addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cs.PeerCertificates[0].DNSNames, defCert.Leaf.DNSNames) {
		t.Errorf("no SNI: served %v, want the default", cs.PeerCertificates[0].DNSNames)
	}
}

// TestSNIKeyType: an ECDSA and an RSA certificate for the same name; a
// client that cannot use ECDSA gets the RSA one.
func TestSNIKeyType(t *testing.T) {
	t.Parallel()
	ec, err := SelfSigned([]string{"ftp.example.com"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	rsaCert := rsaSelfSigned(t, "ftp.example.com")
	set := &certSet{exact: map[string][]*tls.Certificate{"ftp.example.com": {&ec, rsaCert}}}
	o := &Offload{}
	o.certs.Store(set)
	hello := &tls.ClientHelloInfo{
		ServerName:        "ftp.example.com",
		CipherSuites:      []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256},
		SupportedVersions: []uint16{tls.VersionTLS12},
		SignatureSchemes:  []tls.SignatureScheme{tls.PKCS1WithSHA256},
		SupportedCurves:   []tls.CurveID{tls.X25519},
		SupportedPoints:   []uint8{0},
	}
	got, err := o.getCertificate(hello)
	if err != nil {
		t.Fatal(err)
	}
	if got != rsaCert {
		t.Error("an RSA-only client got the ECDSA certificate")
	}
}
