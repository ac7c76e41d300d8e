package integration

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/ftpctl"
)

// Issue 16: close no door for clients. wget (explicit and implicit FTPS),
// rclone and Node's basic-ftp go through the built proxy, each in front of
// vsftpd (no MLST), ProFTPD (MLST) and a pool of both, and what they moved
// is checked on the backend's disk, locally, and in the proxy's log:
//
//	go test ./integration -run 'TestMoreClients/proftpd/rclone'
//
// One reason they all work is that the proxy's FEAT lists MLST only when
// every backend of the pool has it: rclone and basic-ftp list with MLSD as
// soon as FEAT lists MLST, and vsftpd refuses MLSD. So the pool of both
// must not list it, even to the sessions it sends to ProFTPD, and there
// those clients must list with LIST. wget 1.21 always lists with LIST.

// morePool is the backends of one proxy.
type morePool struct {
	name     string
	backends []*backend
}

// hasFeature reports whether every backend of the pool advertises name:
// what the proxy's FEAT may list.
func (pl morePool) hasFeature(name string) bool {
	for _, b := range pl.backends {
		if !b.hasFeature(name) {
			return false
		}
	}
	return true
}

// moreClient is one client program in one mode, and how it runs a case:
// upload the tree (if it can), list it, download it.
type moreClient struct {
	name     string
	tool     string // the executable it needs
	implicit bool   // implicit FTPS (TLS from the first byte), else AUTH TLS
	// sessionReuse is the proxy's tls.require_session_reuse for this
	// client: true, the default, for clients whose PROT P data connections
	// resume their control connection's TLS session.
	sessionReuse bool
	// uploads: the client puts the tree on the server itself. wget cannot:
	// the test writes the tree into the backends' homes before it runs.
	uploads bool
	// listsWithMLSD: the client lists with MLSD whenever FEAT lists MLST.
	listsWithMLSD bool
	// noEmptyFiles leaves the tree's empty file out.
	noEmptyFiles bool
	run          func(t testing.TB, c *moreCase) (string, error)
}

// moreClients are TestMoreClients' clients, a subtest each.
var moreClients = []*moreClient{
	{name: "wget-explicit", tool: "wget", sessionReuse: true, run: runWget},
	{name: "wget-implicit", tool: "wget", implicit: true, sessionReuse: true, run: runWget},
	// rclone 1.60 offers TLS sessions on its data connections (its
	// tls_cache_size is 32 by default), but from one cache that all its
	// connections share, keyed by host: with its parallel control
	// connections (--transfers, --checkers), a data connection often
	// offers a session that another of them earned, which the proxy
	// refuses as another FTP session's (522), or one the proxy no longer
	// resumes. No rclone setting avoids it: --ftp-concurrency 1 deadlocks,
	// as its documentation warns, and --ftp-tls-cache-size 0 offers
	// nothing. rclone's users must set tls.require_session_reuse = false,
	// and so does this test.
	{name: "rclone", tool: "rclone", sessionReuse: false, uploads: true, listsWithMLSD: true, run: runRclone},
	{name: "rclone-implicit", tool: "rclone", implicit: true, sessionReuse: false, uploads: true, listsWithMLSD: true, run: runRclone},
	// basic-ftp 6.2.6 on Node 20 starts an upload before its data
	// connection's TLS handshake is done whenever it offers a session:
	// Node's getCipher() answers from the offered session at once, and
	// basic-ftp takes that for the end of the handshake. Data written
	// waits for the handshake, but an empty file ends the socket at once,
	// a FIN right behind the ClientHello, and the handshake fails (EOF)
	// whenever the 150 came first. Through the proxy, which relays the
	// backend's 150 without waiting for the client's data handshake, that
	// is about one empty upload in four: basic-ftp's tree has no empty
	// file.
	{name: "basic-ftp", tool: "node", sessionReuse: true, uploads: true, listsWithMLSD: true, noEmptyFiles: true, run: runBasicFTP},
	{name: "basic-ftp-implicit", tool: "node", implicit: true, sessionReuse: true, uploads: true, listsWithMLSD: true, noEmptyFiles: true, run: runBasicFTP},
}

// moreTree is the tree every client moves: from empty to over a MiB, three
// levels, and a name with a space (LIST lines are split at blanks).
var moreTree = []struct {
	path string
	size int
}{
	{"top.bin", 1_234_567},
	{"empty.txt", 0},
	{"sub/one.bin", 65_537},
	{"sub/with space.txt", 4_099},
	{"sub/deeper/two.bin", 300_001},
}

// singleFile is the file wget also downloads alone, without -r.
const singleFile = "sub/deeper/two.bin"

// moreCase is one client's run through a proxy of its own.
type moreCase struct {
	pool   morePool
	client *moreClient
	proxy  *proxyProc
	dir    string            // on the server, absolute: "/proftpd-rclone"
	src    string            // the local tree: uploaded, or put on the backends by the test
	tree   map[string]string // its files, by slash-separated path below src, to SHA-256
	sizes  map[string]int64
	dst    string // where the client downloads the tree
	tmp    string // the client's other files
	single string // where wget downloads singleFile; "" for other clients
}

func TestMoreClients(t *testing.T) {
	vs := startBackend(t, vsftpd)
	pro := startBackend(t, proFTPD)
	if vs.hasFeature("MLST") || !pro.hasFeature("MLST") {
		t.Fatalf("the test needs vsftpd without MLST (FEAT %q) and ProFTPD with it (FEAT %q)", vs.features, pro.features)
	}
	pools := []morePool{
		{"vsftpd", []*backend{vs}},
		{"proftpd", []*backend{pro}},
		{"vsftpd+proftpd", []*backend{vs, pro}},
	}
	for _, pool := range pools {
		t.Run(pool.name, func(t *testing.T) {
			for _, cl := range moreClients {
				t.Run(cl.name, func(t *testing.T) {
					needTool(t, cl.tool)
					t.Parallel()
					runMoreCase(t, newMoreCase(t, pool, cl))
				})
			}
		})
	}
}

// newMoreCase makes the local tree and starts the case's proxy. A client
// that cannot upload finds the tree on every backend of the pool already.
func newMoreCase(t *testing.T, pool morePool, cl *moreClient) *moreCase {
	c := &moreCase{pool: pool, client: cl,
		// A directory of its own: the pools share their backends.
		dir: "/" + strings.ReplaceAll(pool.name, "+", "-") + "-" + cl.name,
		src: filepath.Join(t.TempDir(), "src"), dst: t.TempDir(), tmp: t.TempDir(),
		tree: make(map[string]string), sizes: make(map[string]int64)}
	for i, f := range moreTree {
		if f.size == 0 && cl.noEmptyFiles {
			continue
		}
		data := make([]byte, f.size)
		newPRNG(uint64(1600 + i)).Read(data)
		writeTreeFile(t, c.src, f.path, data, nil)
		if !cl.uploads {
			for _, b := range pool.backends {
				writeTreeFile(t, filepath.Join(b.home, c.dir), f.path, data, &b.acct)
			}
		}
		c.tree[f.path] = bytesSHA256(data)
		c.sizes[f.path] = int64(f.size)
	}
	c.proxy = startPoolProxy(t, pool, cl.sessionReuse)
	return c
}

// writeTreeFile writes data at the slash-separated name below root, making
// root and the directories on the way, all owned by acct if it is not nil
// (files on a backend's disk).
func writeTreeFile(t testing.TB, root, name string, data []byte, acct *testAccount) {
	t.Helper()
	dir := root
	for _, part := range append([]string{"."}, strings.Split(path.Dir(name), "/")...) {
		dir = filepath.Join(dir, part)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if acct != nil {
			os.Chown(dir, acct.uid, acct.gid)
		}
	}
	file := filepath.Join(root, filepath.FromSlash(name))
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if acct != nil {
		os.Chown(file, acct.uid, acct.gid)
	}
}

// startPoolProxy starts a proxy in front of the pool from a configuration
// file, and waits until its health checks have learnt every backend's
// features, as startProxyFor does: a FEAT before login is answered from
// them. source_hash sends every session of the client (all from
// 127.0.0.1) to the same backend, so a client that opens several
// connections (rclone) finds its files on each.
func startPoolProxy(t testing.TB, pool morePool, sessionReuse bool) *proxyProc {
	t.Helper()
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "[tls]\nrequire_session_reuse = %v\n\n[balance]\npolicy = \"source_hash\"\n", sessionReuse)
	for _, b := range pool.backends {
		fmt.Fprintf(&cfg, "\n[[backend]]\naddress = %q\nname = %q\n", b.addr, b.kind.name)
	}
	file := filepath.Join(t.TempDir(), "ftpsgate.toml")
	writeFile(t, file, cfg.String(), 0o600)
	p := startProxy(t, "--config", file)
	deadline := time.Now().Add(15 * time.Second)
	for {
		feats, err := askFeatures(p.explicit)
		if err == nil && slices.ContainsFunc(feats, func(f string) bool { return ftpctl.FeatureName(f) == "SIZE" }) {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("the proxy's FEAT before login never listed SIZE (features %q, error %v)", feats, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runMoreCase runs the client and checks what it left behind.
func runMoreCase(t *testing.T, c *moreCase) {
	start := time.Now()
	out, err := c.client.run(t, c)
	t.Logf("%s ran for %v", c.client.name, time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("%s: %v\n--- client output ---\n%s", c.client.name, err, tailLines(out, 200))
	}
	c.checkFiles(t)
	c.checkListing(t)
	c.checkTransfers(t)
	if t.Failed() {
		t.Logf("--- %s output ---\n%s", c.client.name, tailLines(out, 200))
	}
}

// sessionsBackend returns the backend of the pool that the proxy's
// transfer records name: all of them name the same.
func (c *moreCase) sessionsBackend(t testing.TB) *backend {
	t.Helper()
	names := make(map[string]bool)
	for _, x := range c.proxy.records("transfer") {
		name, _ := x["backend"].(string)
		names[name] = true
	}
	for _, b := range c.pool.backends {
		if names[b.kind.name] && len(names) == 1 {
			return b
		}
	}
	t.Fatalf("the client's transfers went to backends %v, want one of the pool", slices.Collect(maps.Keys(names)))
	return nil
}

// checkFiles compares the backend's copy and the client's download with
// the tree.
func (c *moreCase) checkFiles(t testing.TB) {
	b := c.sessionsBackend(t)
	t.Logf("the sessions went to %s", b.kind.name)
	if diff := diffTrees(c.tree, slashKeys(treeHashes(t, filepath.Join(b.home, c.dir)))); diff != "" {
		t.Errorf("the backend's copy in %s differs from the tree:\n%s", c.dir, diff)
	}
	if diff := diffTrees(c.tree, slashKeys(treeHashes(t, c.dst))); diff != "" {
		t.Errorf("the client's download differs from the tree:\n%s", diff)
	}
	if c.single != "" {
		if got, want := fileSHA256(t, c.single), c.tree[singleFile]; got != want {
			t.Errorf("the download of %s alone has hash %s, want %s", singleFile, got, want)
		}
	}
}

func slashKeys(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[filepath.ToSlash(k)] = v
	}
	return out
}

// checkListing checks the FEAT point: the proxy lists MLST when every
// backend of the pool has it, and then only, and the client listed with
// MLSD exactly when it uses it and FEAT listed MLST, else with LIST.
func (c *moreCase) checkListing(t testing.TB) {
	mlst := c.pool.hasFeature("MLST")
	if feats, err := askFeatures(c.proxy.explicit); err != nil {
		t.Errorf("FEAT: %v", err)
	} else if got := slices.ContainsFunc(feats, func(f string) bool { return ftpctl.FeatureName(f) == "MLST" }); got != mlst {
		t.Errorf("the proxy's FEAT lists MLST: %v, want %v (every backend of the pool has it: %v); FEAT %q", got, mlst, mlst, feats)
	}
	var sent []string
	for _, r := range c.proxy.records("command") {
		if s, ok := r["command"].(string); ok {
			sent = append(sent, s)
		}
	}
	mlsd := c.client.listsWithMLSD && mlst
	if got := hasCommand(sent, "MLSD"); got != mlsd {
		t.Errorf("the client sent MLSD: %v, want %v", got, mlsd)
	}
	if !mlsd && !hasCommand(sent, "LIST") {
		t.Errorf("the client never sent LIST")
	}
}

// checkTransfers checks the proxy's transfer records: every file of the
// tree went down (and up, for clients that upload) whole over a PROT P
// data connection, and every such connection resumed the control session
// where the proxy required it. A transfer command may fail before any data
// connection only as a listing of a directory that is not there (rclone
// looks before it makes one).
func (c *moreCase) checkTransfers(t testing.TB) {
	type key struct{ verb, name string }
	moved := make(map[key][]int64) // the sizes of each file's complete transfers
	resumed, fresh := 0, 0
	for _, x := range c.proxy.records("transfer") {
		verb, _ := x["verb"].(string)
		arg, _ := x["path"].(string)
		code, _ := x["code"].(float64)
		if x["prot"] != "P" {
			t.Errorf("%s %s under PROT %v, want P", verb, arg, x["prot"])
		}
		if x["data_tls_version"] == nil {
			if code < 500 || (verb != "LIST" && verb != "MLSD") {
				t.Errorf("%s %s ended %v without a TLS data connection: %v", verb, arg, code, x)
			}
			continue
		}
		if code != 226 {
			t.Errorf("%s %s ended with %v: %v", verb, arg, code, x)
			continue
		}
		if x["data_resumed"] == true {
			resumed++
		} else {
			fresh++
		}
		n, _ := x["bytes"].(float64)
		k := key{verb, path.Base(arg)}
		moved[k] = append(moved[k], int64(n))
	}
	verbs := []string{"RETR"}
	if c.client.uploads {
		verbs = append(verbs, "STOR")
	}
	for name, size := range c.sizes {
		for _, verb := range verbs {
			if sizes := moved[key{verb, path.Base(name)}]; !slices.Contains(sizes, size) {
				t.Errorf("no %s of %s with its %d bytes in the proxy's log (transfers of %v bytes)", verb, name, size, sizes)
			}
		}
	}
	t.Logf("PROT P data connections: %d resumed a TLS session, %d did not (require_session_reuse = %v)",
		resumed, fresh, c.client.sessionReuse)
	if c.client.sessionReuse && fresh > 0 {
		t.Errorf("%d PROT P data connections did not resume the control session", fresh)
	}
	if resumed+fresh == 0 {
		t.Error("the proxy logged no PROT P data connection")
	}
}

// runWget downloads the case's directory with wget -r (which lists each
// directory with LIST and parses it) and one file alone, over explicit
// FTPS (an ftps:// URL: AUTH TLS on the FTP port) or implicit
// (--ftps-implicit). wget 1.21 protects data connections (PROT P) unless
// --ftps-clear-data-connection, and resumes the control connection's TLS
// session on them (--ftps-resume-ssl, its default).
func runWget(t testing.TB, c *moreCase) (string, error) {
	addr := c.proxy.explicit
	args := []string{"--no-config", "--no-hsts", "--no-check-certificate", "--tries", "1", "--timeout", "30",
		"--user", testUser, "--password", testPassword}
	if c.client.implicit {
		addr = c.proxy.implicit
		args = append(args, "--ftps-implicit")
	}
	base := "ftps://" + addr + c.dir + "/"
	// -nH --cut-dirs=1: the tree lands in dst itself.
	out, err := run(t, 2*time.Minute, "wget", append(slices.Clone(args), "-r", "-l", "inf", "-nH", "--cut-dirs", "1", "-P", c.dst, base)...)
	if err != nil {
		return out, fmt.Errorf("wget -r: %w", err)
	}
	c.single = filepath.Join(c.tmp, "single.bin")
	more, err := run(t, 2*time.Minute, "wget", append(slices.Clone(args), "-O", c.single, base+singleFile)...)
	out += more
	if err != nil {
		return out, fmt.Errorf("wget -O: %w", err)
	}
	return out, nil
}

// runRclone copies the tree up with rclone's FTP backend given on the
// command line (":ftp:"), lists it with lsjson, copies it back, and checks
// both copies against the server with rclone check --download (FTP has no
// hashes: --download compares the bytes).
func runRclone(t testing.TB, c *moreCase) (string, error) {
	obscured, err := run(t, time.Minute, "rclone", "obscure", testPassword)
	if err != nil {
		return obscured, fmt.Errorf("rclone obscure: %w", err)
	}
	addr, tlsFlag := c.proxy.explicit, "--ftp-explicit-tls"
	if c.client.implicit {
		addr, tlsFlag = c.proxy.implicit, "--ftp-tls"
	}
	host, port, _ := strings.Cut(addr, ":")
	args := []string{"--config", filepath.Join(c.tmp, "rclone.conf"), "--cache-dir", filepath.Join(c.tmp, "cache"),
		"--contimeout", "30s", "--timeout", "60s", "--retries", "1", "--low-level-retries", "1",
		"--ftp-host", host, "--ftp-port", port, "--ftp-user", testUser, "--ftp-pass", strings.TrimSpace(obscured),
		tlsFlag, "--ftp-no-check-certificate"}
	remote := ":ftp:" + strings.TrimPrefix(c.dir, "/")
	// rclone 1.60 makes a missing directory only where listing a missing
	// one says so: ProFTPD answers a LIST of a missing directory with 450,
	// which rclone 1.60 takes for an error, not for "not found", and gives
	// up (directly against ProFTPD with --ftp-disable-mlsd too). In the
	// pool of both the proxy's FEAT has no MLST, so rclone lists with LIST:
	// the directories are made first, each below one that exists.
	var steps [][]string
	for _, dir := range c.treeDirs() {
		steps = append(steps, []string{"mkdir", path.Join(remote, dir)})
	}
	steps = append(steps, [][]string{
		{"copy", c.src, remote},
		{"lsjson", "-R", remote},
		{"copy", remote, c.dst},
		{"check", "--download", c.src, remote},
		{"check", "--download", c.dst, remote},
	}...)
	var out strings.Builder
	for _, step := range steps {
		fmt.Fprintf(&out, "### rclone %s\n", strings.Join(step, " "))
		stdout, stderr, err := runSplit(2*time.Minute, "rclone", append(slices.Clone(args), step...)...)
		out.WriteString(stdout + stderr)
		if err != nil {
			return out.String(), fmt.Errorf("rclone %s: %w", step[0], err)
		}
		if step[0] == "lsjson" {
			if err := c.checkLsjson(stdout); err != nil {
				return out.String(), err
			}
		}
	}
	return out.String(), nil
}

// treeDirs returns the tree's directories, "" first, each after its
// parent.
func (c *moreCase) treeDirs() []string {
	dirs := []string{""}
	for name := range c.tree {
		for d := path.Dir(name); d != "."; d = path.Dir(d) {
			if !slices.Contains(dirs, d) {
				dirs = append(dirs, d)
			}
		}
	}
	slices.Sort(dirs) // a path sorts before the longer ones it begins
	return dirs
}

// checkLsjson checks rclone's listing against the tree: every file with
// its size, nothing else.
func (c *moreCase) checkLsjson(stdout string) error {
	var entries []struct {
		Path  string
		Size  int64
		IsDir bool
	}
	if err := json.Unmarshal([]byte(stdout), &entries); err != nil {
		return fmt.Errorf("rclone lsjson: %v", err)
	}
	listed := make(map[string]int64)
	for _, e := range entries {
		if !e.IsDir {
			listed[e.Path] = e.Size
		}
	}
	if !maps.Equal(listed, c.sizes) {
		return fmt.Errorf("rclone lsjson listed %v, want %v", listed, c.sizes)
	}
	return nil
}

// nodeModule returns the folder of the basic-ftp that setup.sh installed
// (in FTPSGATE_NODE_DIR, else .cache/node at the repository root). It
// skips the test when there is none, or fails it under CI=true, as
// needTool does.
func nodeModule(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("FTPSGATE_NODE_DIR")
	if dir == "" {
		dir, _ = filepath.Abs(filepath.Join("..", ".cache", "node"))
	}
	mod := filepath.Join(dir, "node_modules", "basic-ftp")
	if _, err := os.Stat(filepath.Join(mod, "package.json")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("basic-ftp is not installed in %s (CI=true: a missing tool is a failure; run integration/setup.sh)", dir)
		}
		t.Skipf("basic-ftp is not installed in %s; run integration/setup.sh", dir)
	}
	return mod
}

var basicFTPEntry = regexp.MustCompile(`(?m)^entry (file|dir) (\d+) (.*)$`)

// runBasicFTP runs testdata/basicftp.js: upload the tree, list it
// recursively, download it, in one session.
func runBasicFTP(t testing.TB, c *moreCase) (string, error) {
	addr := c.proxy.explicit
	args := []string{"testdata/basicftp.js", "--module", nodeModule(t)}
	if c.client.implicit {
		addr = c.proxy.implicit
		args = append(args, "--implicit")
	}
	host, port, _ := strings.Cut(addr, ":")
	args = append(args, "--host", host, "--port", port, "--user", testUser, "--password", testPassword,
		"--dir", c.dir, "--src", c.src, "--dst", c.dst)
	out, err := run(t, 2*time.Minute, "node", args...)
	if err != nil {
		return out, fmt.Errorf("basicftp.js: %w", err)
	}
	listed := make(map[string]int64)
	for _, m := range basicFTPEntry.FindAllStringSubmatch(out, -1) {
		if m[1] == "file" {
			listed[m[3]], _ = strconv.ParseInt(m[2], 10, 64)
		}
	}
	if !maps.Equal(listed, c.sizes) {
		return out, fmt.Errorf("basic-ftp listed %v, want %v", listed, c.sizes)
	}
	return out, nil
}
