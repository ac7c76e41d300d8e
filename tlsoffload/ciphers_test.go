package tlsoffload

import (
	"crypto/tls"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestDefaultCipherSuitesAreAEAD: the default TLS 1.2 list is exactly the
// ECDHE suites with AES-GCM or ChaCha20-Poly1305 that crypto/tls has, and
// is what the served config offers.
func TestDefaultCipherSuitesAreAEAD(t *testing.T) {
	t.Parallel()
	var want []uint16
	for _, cs := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		aead := strings.Contains(cs.Name, "_GCM_") || strings.Contains(cs.Name, "_CHACHA20_POLY1305_")
		if slices.Contains(cs.SupportedVersions, tls.VersionTLS12) && strings.HasPrefix(cs.Name, "TLS_ECDHE_") && aead {
			want = append(want, cs.ID)
		}
	}
	got := DefaultCipherSuites()
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("DefaultCipherSuites = %v, want the ECDHE AEAD suites %v", names(got), names(want))
	}
	o, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	served := slices.Clone(o.TLSConfig().CipherSuites)
	slices.Sort(served)
	if !slices.Equal(served, want) {
		t.Errorf("the served config offers %v, want %v", names(served), names(want))
	}
}

func names(ids []uint16) []string {
	var out []string
	for _, id := range ids {
		out = append(out, tls.CipherSuiteName(id))
	}
	return out
}

// TestCipherSuitesHandshake: a TLS 1.2 client that offers only CBC suites
// is refused by default, for an ECDSA and an RSA certificate alike, and
// served once Config.CipherSuites lists its suite; a client offering an
// AEAD suite, and any TLS 1.3 client, is served either way.
func TestCipherSuitesHandshake(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rsaPair := KeyPair{CertFile: filepath.Join(dir, "rsa.crt"), KeyFile: filepath.Join(dir, "rsa.key")}
	writeCertFiles(t, rsaPair, rsaSelfSigned(t, "localhost"))
	cbcOnly := []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}
	for _, tc := range []struct {
		name    string
		cert    string // "ecdsa" (self-signed) or "rsa"
		server  []uint16
		client  []uint16 // offered, with TLS 1.2 at most; nil: Go's default offer
		tls13   bool     // the client allows TLS 1.3
		want    uint16   // the suite negotiated; 0: no handshake
		wantErr string
	}{
		{"ECDSA, default, CBC-only client", "ecdsa", nil, cbcOnly, false, 0, "no cipher suite supported by both client and server"},
		{"RSA, default, CBC-only client", "rsa", nil, cbcOnly, false, 0, "no cipher suite supported by both client and server"},
		{"ECDSA, CBC configured", "ecdsa", cbcOnly, cbcOnly, false, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, ""},
		{"RSA, CBC configured", "rsa", cbcOnly, cbcOnly, false, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, ""},
		{"ECDSA, default, Go's TLS 1.2 offer", "ecdsa", nil, nil, false, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, ""},
		{"RSA, default, Go's TLS 1.2 offer", "rsa", nil, nil, false, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, ""},
		{"CBC configured, TLS 1.3 client", "ecdsa", cbcOnly, nil, true, tls.TLS_AES_128_GCM_SHA256, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := Config{CipherSuites: tc.server}
			if tc.cert == "rsa" {
				c.CertFile, c.KeyFile = rsaPair.CertFile, rsaPair.KeyFile
			}
			o, err := New(c)
			if err != nil {
				t.Fatal(err)
			}
			srv := startServer(t, o.TLSConfig)
			cc := &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12, CipherSuites: tc.client}
			if tc.tls13 {
				cc.MaxVersion = 0
			}
			cs, err := handshake(t, srv.addr, cc)
			if tc.want == 0 {
				if err == nil {
					t.Fatalf("handshake with %s succeeded, want it refused", tls.CipherSuiteName(cs.CipherSuite))
				}
				if serr := srv.lastError(t); serr == nil || !strings.Contains(serr.Error(), tc.wantErr) {
					t.Errorf("server's handshake error %v, want %q", serr, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if cs.CipherSuite != tc.want {
				t.Errorf("negotiated %s, want %s", tls.CipherSuiteName(cs.CipherSuite), tls.CipherSuiteName(tc.want))
			}
		})
	}
}

// TestParseCipherSuite: Go's names of TLS 1.2 suites parse, the insecure
// ones with what they give up; TLS 1.3 suites and unknown names are
// errors, in ParseCipherSuite and in New alike.
func TestParseCipherSuite(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		id       uint16
		weakness string // a part of it; "" for none
		err      string // a part of the error; "" for none
	}{
		{"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, "", ""},
		{"TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, "", ""},
		{"TLS_RSA_WITH_AES_128_GCM_SHA256", tls.TLS_RSA_WITH_AES_128_GCM_SHA256, "no forward secrecy", ""},
		{"TLS_RSA_WITH_AES_128_CBC_SHA", tls.TLS_RSA_WITH_AES_128_CBC_SHA, "no forward secrecy (RSA key exchange: whoever obtains the private key decrypts every recorded session); CBC", ""},
		{"TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", tls.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA, "Sweet32", ""},
		{"TLS_ECDHE_RSA_WITH_RC4_128_SHA", tls.TLS_ECDHE_RSA_WITH_RC4_128_SHA, "RFC 7465", ""},
		{"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, "Lucky13", ""},
		{"TLS_AES_128_GCM_SHA256", 0, "", "TLS 1.3 suite"},
		{"TLS_CHACHA20_POLY1305_SHA256", 0, "", "TLS 1.3 suite"},
		{"tls_ecdhe_rsa_with_aes_128_gcm_sha256", 0, "", "unknown cipher suite"},
		{"ECDHE-RSA-AES128-GCM-SHA256", 0, "", "unknown cipher suite"}, // OpenSSL's name
	} {
		id, weakness, err := ParseCipherSuite(tc.name)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want %q", tc.name, err, tc.err)
			}
			continue
		case err != nil:
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if id != tc.id {
			t.Errorf("%s: id %#04x, want %#04x", tc.name, id, tc.id)
		}
		if (tc.weakness == "") != (weakness == "") || !strings.Contains(weakness, tc.weakness) {
			t.Errorf("%s: weakness %q, want %q", tc.name, weakness, tc.weakness)
		}
	}
	for _, c := range []Config{
		{CipherSuites: []uint16{tls.TLS_AES_128_GCM_SHA256}},
		{CipherSuites: []uint16{0x1234}},
		{CipherSuites: []uint16{}},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("New with CipherSuites %v: no error", c.CipherSuites)
		}
	}
	if _, err := New(Config{CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_CBC_SHA}, ReloadInterval: time.Hour}); err != nil {
		t.Errorf("an insecure suite, configured: %v", err)
	}
}
