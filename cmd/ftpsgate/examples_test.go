package main

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ftpsgate/ftpsgate/proxy"
	"github.com/ftpsgate/ftpsgate/tlsoffload"
)

// TestSystemdUnit: the unit's command lines are ones ftpsgate accepts, and
// it keeps the hardening the README promises.
func TestSystemdUnit(t *testing.T) {
	unit, err := os.ReadFile("../../examples/systemd/ftpsgate.service")
	if err != nil {
		t.Fatal(err)
	}
	cfg := exampleWithCerts(t)
	for _, key := range []string{"ExecStartPre=", "ExecStart="} {
		line := lineWith(string(unit), key)
		args := strings.Fields(strings.TrimPrefix(line, key))
		if len(args) < 3 || !strings.HasSuffix(args[0], "/ftpsgate") {
			t.Fatalf("%s%q: not an ftpsgate command", key, args)
		}
		// Run it against a real configuration, but only check: serve
		// would not return.
		if args[1] == "check" {
			args[3] = cfg
			if out, errOut, err := runCLISerial(t, args[1:]...); err != nil {
				t.Errorf("%s: %v\n%s%s", line, err, out, errOut)
			}
		} else if args[1] != "serve" || args[2] != "--config" {
			t.Errorf("%s: want serve --config", line)
		}
	}
	for _, want := range []string{"ExecReload=/bin/kill -HUP $MAINPID", "AmbientCapabilities=CAP_NET_BIND_SERVICE",
		"DynamicUser=yes", "NoNewPrivileges=yes", "KillSignal=SIGTERM"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("the unit lacks %q", want)
		}
	}
}

func lineWith(text, prefix string) string {
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// TestKubernetesManifests: the manifests parse, the configuration in the
// ConfigMap passes check, and the Service exposes exactly its listeners and
// passive range, with client-IP affinity.
func TestKubernetesManifests(t *testing.T) {
	src, err := os.ReadFile("../../examples/kubernetes/ftpsgate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	docs := map[string]map[string]any{}
	dec := yaml.NewDecoder(bytes.NewReader(src))
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); err != nil {
			break
		}
		docs[doc["kind"].(string)] = doc
	}
	for _, kind := range []string{"ConfigMap", "Deployment", "Service"} {
		if docs[kind] == nil {
			t.Fatalf("no %s in the manifests", kind)
		}
	}
	toml := docs["ConfigMap"]["data"].(map[string]any)["ftpsgate.toml"].(string)

	// The Secret's files, made for the test, where the pod mounts them.
	dir := t.TempDir()
	cert, _ := tlsoffload.SelfSigned([]string{"ftp.example.com"}, time.Hour)
	key, _ := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	os.WriteFile(filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600)
	os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600)
	os.WriteFile(filepath.Join(dir, "ticket-keys"), []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "password"), []byte("admin-pw"), 0o600) // --from-literal: no newline
	path := filepath.Join(dir, "ftpsgate.toml")
	local := strings.NewReplacer("/etc/ftpsgate/tls/", dir+"/", "/etc/ftpsgate/admin/", dir+"/").Replace(toml)
	os.WriteFile(path, []byte(local), 0o600)
	if out, errOut, err := runCLISerial(t, "check", "--config", path); err != nil {
		t.Fatalf("the ConfigMap's configuration: %v\n%s%s", err, out, errOut)
	}

	fc, lines, err := loadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := fc.build(path, lines)
	if err != nil {
		t.Fatal(err)
	}
	// Every file the configuration names is in a volume the pod mounts
	// (the admin password too: the listener is on the pod's IP).
	mounts := map[string]bool{}
	pod := docs["Deployment"]["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
	for _, m := range pod["containers"].([]any)[0].(map[string]any)["volumeMounts"].([]any) {
		mounts[m.(map[string]any)["mountPath"].(string)] = true
	}
	for _, m := range regexp.MustCompile(`"(/etc/ftpsgate/[^"]+)"`).FindAllStringSubmatch(toml, -1) {
		if !mounts[filepath.Dir(m[1])] {
			t.Errorf("%s is in no volume the pod mounts", m[1])
		}
	}
	if st.proxy.Balance.Policy != proxy.SourceHash {
		t.Error("replicas must agree on the backend: want policy source_hash")
	}
	spec := docs["Service"]["spec"].(map[string]any)
	if spec["sessionAffinity"] != "ClientIP" {
		t.Error("the Service must pin clients by IP: control and data must reach one replica")
	}
	ports := map[int]bool{}
	for _, p := range spec["ports"].([]any) {
		ports[p.(map[string]any)["port"].(int)] = true
	}
	want := map[int]bool{21: true, 990: true}
	for p := int(st.proxy.PassivePorts.First); p <= int(st.proxy.PassivePorts.Last); p++ {
		want[p] = true
	}
	for p := range want {
		if !ports[p] {
			t.Errorf("the Service does not expose port %d", p)
		}
	}
	for p := range ports {
		if !want[p] {
			t.Errorf("the Service exposes port %d, which ftpsgate does not use", p)
		}
	}
}
