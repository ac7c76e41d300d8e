package integration

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/tlsoffload"
)

// vsftpdTLS is vsftpd as an FTPS server itself, requiring TLS for logins and
// data, and requiring every data connection to resume the control
// connection's TLS session (require_ssl_reuse): the proxy must keep one TLS
// session cache per client session toward it.
var vsftpdTLS = &serverKind{name: "vsftpd-tls", pkg: "vsftpd", binary: "usr/sbin/vsftpd",
	port: 21022, pasvLow: 21100, pasvHigh: 21999, configure: configureVsftpdTLS}

// backendCertFile is where configureVsftpdTLS left the certificate, for the
// proxy's ca_file.
func backendCertFile(b *backend) string { return filepath.Join(b.dir, "cert.pem") }

func configureVsftpdTLS(t testing.TB, b *backend) []string {
	args := configureVsftpd(t, b)
	cert, err := tlsoffload.SelfSigned([]string{"localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	writeFile(t, backendCertFile(b), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})), 0o644)
	writeFile(t, filepath.Join(b.dir, "key.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key})), 0o600)
	conf, err := os.OpenFile(args[0], os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer conf.Close()
	fmt.Fprintf(conf, `ssl_enable=YES
rsa_cert_file=%s
rsa_private_key_file=%s
force_local_logins_ssl=YES
force_local_data_ssl=YES
require_ssl_reuse=YES
ssl_ciphers=HIGH
ssl_sslv2=NO
ssl_sslv3=NO
ssl_tlsv1=YES
`, backendCertFile(b), filepath.Join(b.dir, "key.pem"))
	return args
}

// TestBackendTLS: vsftpd requiring TLS and data-channel session reuse
// behind the proxy; PROT P and PROT C transfers by curl through it, both
// ways, checked by hash.
func TestBackendTLS(t *testing.T) {
	curl := needTool(t, "curl")
	b := startBackend(t, vsftpdTLS)
	cfg := filepath.Join(t.TempDir(), "ftpsgate.toml")
	writeFile(t, cfg, fmt.Sprintf(`
[[backend]]
address = %q
tls = "explicit"
ca_file = %q
server_name = "localhost"
`, b.addr, backendCertFile(b)), 0o600)
	p := startProxy(t, "--config", cfg)

	dir := t.TempDir()
	src, sum := writeRandomFile(t, dir, 3_000_000)
	for _, prot := range []string{"--ssl-reqd", "--ftp-ssl-control"} {
		name := strings.TrimLeft(prot, "-") + ".bin"
		base := []string{"--silent", "--show-error", "--insecure", prot, "--user", testUser + ":" + testPassword}
		if out, err := run(t, 2*time.Minute, curl, append(base, "-T", src, "ftp://"+p.explicit+"/"+name)...); err != nil {
			t.Fatalf("%s upload through a TLS backend: %v\n%s", prot, err, out)
		}
		if got := fileSHA256(t, filepath.Join(b.home, name)); got != sum {
			t.Fatalf("%s: the backend stored another file", prot)
		}
		dst := filepath.Join(dir, "back-"+name)
		if out, err := run(t, 2*time.Minute, curl, append(base, "-o", dst, "ftp://"+p.explicit+"/"+name)...); err != nil {
			t.Fatalf("%s download through a TLS backend: %v\n%s", prot, err, out)
		}
		if fileSHA256(t, dst) != sum {
			t.Fatalf("%s: downloaded another file", prot)
		}
	}
}
