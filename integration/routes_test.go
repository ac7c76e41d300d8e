package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/ftpctl/ftptest"
)

// TestRoutesWithCurl: a configuration file with routes, driven by curl.
// The TLS server name curl sends (--resolve keeps the name while dialling
// loopback) and the user name choose the backend.
func TestRoutesWithCurl(t *testing.T) {
	curl := needTool(t, "curl")
	var backends []*ftptest.Server
	for i := range 3 {
		b := ftptest.NewUnstartedServer()
		b.Users = map[string]string{"curl": "curl-pw", "partner-acme": "curl-pw"}
		b.FS.WriteFile("/whoami.txt", []byte(fmt.Sprintf("backend-%d\n", i)))
		b.Start()
		t.Cleanup(b.Close)
		backends = append(backends, b)
	}
	cfg := filepath.Join(t.TempDir(), "ftpsgate.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
[[backend]]
address = %q

[[route]]
name = "by-sni"
sni = ["files.example.test"]
[[route.backend]]
address = %q

[[route]]
name = "by-user"
user = ["partner-*"]
[[route.backend]]
address = %q
`, backends[0].Addr(), backends[1].Addr(), backends[2].Addr())), 0o600)
	p := startProxy(t, "--config", cfg)
	port := p.explicit[strings.LastIndexByte(p.explicit, ':')+1:]

	for _, tc := range []struct {
		name, user, host, want string
	}{
		{"default", "curl", "127.0.0.1", "backend-0"},
		{"sni", "curl", "files.example.test", "backend-1"},
		{"user", "partner-acme", "127.0.0.1", "backend-2"},
	} {
		out, err := run(t, time.Minute, curl, "--silent", "--show-error", "--insecure", "--ssl-reqd",
			"--resolve", "files.example.test:"+port+":127.0.0.1",
			"--user", tc.user+":curl-pw", "ftp://"+tc.host+":"+port+"/whoami.txt")
		if err != nil || strings.TrimSpace(out) != tc.want {
			t.Errorf("%s: got %q (%v), want %s", tc.name, out, err, tc.want)
		}
	}
}
