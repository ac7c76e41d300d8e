package tlsoffload

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// BackendConfig is the TLS toward one backend that speaks FTPS itself. The
// zero value is "off": the backend speaks plain FTP, which is the point of
// offloading.
type BackendConfig struct {
	// Mode is "off" (zero: plain FTP), "explicit" (the proxy sends AUTH TLS
	// and starts TLS on the control connection) or "implicit" (TLS from the
	// first byte, as on port 990). Either way the proxy sends PBSZ 0 and
	// PROT P, and data connections are TLS too.
	Mode string
	// CAFile is a PEM file of the CAs the backend's certificate must chain
	// to. Zero: the system roots.
	CAFile string
	// InsecureSkipVerify accepts any backend certificate. It has to be
	// spelled out: anyone on the path to the backend can then read and
	// change the traffic, passwords included.
	InsecureSkipVerify bool
	// ServerName is the name the backend's certificate is verified against
	// and sent as SNI. Zero: the host of the backend's address (passed to
	// SessionConfig).
	ServerName string
	// MinVersion is the oldest TLS version accepted from the backend. Zero:
	// TLS 1.2.
	MinVersion uint16
}

// Backend modes.
const (
	BackendOff      = "off"
	BackendExplicit = "explicit"
	BackendImplicit = "implicit"
)

// BackendTLS builds the client-side TLS configurations for one backend.
type BackendTLS struct {
	mode string
	base *tls.Config // nil when off; cloned per client session, never modified
}

// NewBackendTLS checks c and reads its CA file.
func NewBackendTLS(c BackendConfig) (*BackendTLS, error) {
	mode := c.Mode
	if mode == "" {
		mode = BackendOff
	}
	switch mode {
	case BackendOff:
		if c.CAFile != "" || c.InsecureSkipVerify || c.ServerName != "" {
			return nil, errors.New("tlsoffload: backend TLS options set with tls = \"off\"")
		}
		return &BackendTLS{mode: mode}, nil
	case BackendExplicit, BackendImplicit:
	default:
		return nil, fmt.Errorf("tlsoffload: backend tls = %q: want \"off\", \"explicit\" or \"implicit\"", c.Mode)
	}
	if c.CAFile != "" && c.InsecureSkipVerify {
		return nil, errors.New("tlsoffload: backend ca_file and insecure_skip_verify together")
	}
	base := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         c.ServerName,
		InsecureSkipVerify: c.InsecureSkipVerify,
	}
	if c.MinVersion != 0 {
		base.MinVersion = c.MinVersion
	}
	if c.CAFile != "" {
		pool, err := readCertPool(c.CAFile)
		if err != nil {
			return nil, err
		}
		base.RootCAs = pool
	}
	return &BackendTLS{mode: mode, base: base}, nil
}

// Mode is "off", "explicit" or "implicit".
func (b *BackendTLS) Mode() string { return b.mode }

// SessionConfig returns the configuration for the backend connections of one
// client session, nil when the mode is "off". Call it once per client
// session and use the result for that session's control connection and all
// of its data connections, and for no other session: it carries a TLS
// session cache of its own, so a data connection resumes the TLS session of
// its own control connection, which backends with vsftpd's
// require_ssl_reuse=YES (or ProFTPD's TLSOptions without
// NoSessionReuseRequired) demand, and never another client's.
//
// host is the backend's host, used as ServerName when BackendConfig has
// none. Control and data connections must present the same ServerName:
// crypto/tls keys its session cache by it (without one, by the address,
// whose port differs between control and data). With TLS 1.3 the backend's
// ticket arrives after the handshake and is stored when the proxy reads the
// control connection, as it does for the reply to the next command, before
// any data connection is opened.
func (b *BackendTLS) SessionConfig(host string) *tls.Config {
	if b.base == nil {
		return nil
	}
	c := b.base.Clone()
	if c.ServerName == "" {
		c.ServerName = host
	}
	c.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	return c
}

// readCertPool reads a PEM file of CA certificates.
func readCertPool(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tlsoffload: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("tlsoffload: %s: no PEM certificate", path)
	}
	return pool, nil
}
