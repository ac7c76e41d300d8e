package main

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ftpsgate/ftpsgate/proxy"
)

// TestExampleProxyProtocol: the example's PROXY protocol keys reach the
// proxy's Config, a bare address becoming a one-address network.
func TestExampleProxyProtocol(t *testing.T) {
	fc, lines, err := loadFile(exampleWithCerts(t))
	if err != nil {
		t.Fatal(err)
	}
	st, err := fc.build("example", lines)
	if err != nil {
		t.Fatal(err)
	}
	pc := st.proxy
	want := []netip.Prefix{netip.MustParsePrefix("10.0.1.10/32"), netip.MustParsePrefix("10.0.1.11/32")}
	if len(pc.TrustedProxies) != 2 || pc.TrustedProxies[0] != want[0] || pc.TrustedProxies[1] != want[1] {
		t.Errorf("trusted_proxies %v, want %v", pc.TrustedProxies, want)
	}
	if !pc.DataProxyProtocol {
		t.Error("data_proxy_protocol not set")
	}
	if pc.Backends[0].ProxyProtocol != proxy.ProxyV2 || pc.Routes[0].Backends[0].ProxyProtocol != proxy.ProxyOff {
		t.Errorf("proxy_protocol %v, route's %v", pc.Backends[0].ProxyProtocol, pc.Routes[0].Backends[0].ProxyProtocol)
	}
}

// TestCheckProxyProtocolKeys: bad PROXY protocol values are reported with
// their lines.
func TestCheckProxyProtocolKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(path, []byte(`[listen]
trusted_proxies = ["10.0.0.0/33"]

[[backend]]
address = "127.0.0.1:2100"
proxy_protocol = "v3"
`), 0o600)
	_, errOut, err := runCLI(t, "check", "--config", path)
	if err == nil {
		t.Fatal("check accepted a bad file")
	}
	for _, want := range []string{
		path + `:2: listen.trusted_proxies "10.0.0.0/33"`,
		path + `:6: backend 127.0.0.1:2100: proxy_protocol "v3"`,
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("check output lacks %q:\n%s", want, errOut)
		}
	}

	os.WriteFile(path, []byte(`[listen]
data_proxy_protocol = true

[[backend]]
address = "127.0.0.1:2100"
`), 0o600)
	if _, errOut, err = runCLI(t, "check", "--config", path); err == nil ||
		!strings.Contains(errOut, path+":2: listen.data_proxy_protocol needs listen.trusted_proxies") {
		t.Errorf("data_proxy_protocol without trusted_proxies: %v\n%s", err, errOut)
	}
}
