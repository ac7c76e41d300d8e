package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestMatrix runs the scenario (clients_test.go) for every backend, client,
// protection level and passive mode, through one proxy per backend:
//
//	go test ./integration -run 'TestMatrix/vsftpd/lftp/protP/epsv'
//
// Cells of one backend run in parallel (up to -parallel, GOMAXPROCS by
// default), each in its own directory on the server.
func TestMatrix(t *testing.T) {
	for _, k := range serverKinds {
		t.Run(k.name, func(t *testing.T) {
			b := startBackend(t, k)
			p := startProxyFor(t, b)
			for _, cl := range clients {
				t.Run(cl.name, func(t *testing.T) {
					needTool(t, cl.tool)
					for _, protP := range []bool{false, true} {
						for _, epsv := range []bool{false, true} {
							m := mode{protP: protP, epsv: epsv}
							t.Run(m.prot()+"/"+m.passive(), func(t *testing.T) {
								t.Parallel()
								dir := "/" + cl.name + "-" + m.prot() + "-" + m.passive()
								runCell(t, newCell(t, b, p, cl, m, dir))
							})
						}
					}
				})
			}
			// curl, lftp and ftplib (with its session set) all offer the
			// control session on data connections: every PROT P transfer
			// the proxy logged must have resumed it.
			t.Run("data-tls-resumed", func(t *testing.T) {
				n := 0
				for _, x := range p.records("transfer") {
					if x["prot"] != "P" || x["data_tls_version"] == nil {
						continue
					}
					n++
					if x["data_resumed"] != true {
						t.Errorf("a PROT P data connection did not resume its control session: %v", x)
					}
				}
				if n == 0 && !t.Failed() {
					t.Error("no PROT P transfer was logged")
				}
			})
		})
	}
}

// TestImplicit runs the scenario over implicit FTPS (ftps://, TLS from the
// first byte) with the clients that speak it: curl and lftp.
func TestImplicit(t *testing.T) {
	for _, k := range serverKinds {
		t.Run(k.name, func(t *testing.T) {
			b := startBackend(t, k)
			p := startProxyFor(t, b)
			for _, cl := range []*client{curlClient, lftpClient} {
				t.Run(cl.name, func(t *testing.T) {
					needTool(t, cl.tool)
					t.Parallel()
					m := mode{protP: true, epsv: true, implicit: true}
					runCell(t, newCell(t, b, p, cl, m, "/implicit-"+cl.name))
				})
			}
		})
	}
}

// TestBulk does, once per backend, what the matrix cells are too small to
// show: a 1 GiB round trip, a 200-file tree mirrored up and back down, and
// 50 sessions at once.
func TestBulk(t *testing.T) {
	for _, k := range serverKinds {
		t.Run(k.name, func(t *testing.T) {
			b := startBackend(t, k)
			p := startProxyFor(t, b)
			t.Run("1GiB", func(t *testing.T) { testBigRoundTrip(t, b, p) })
			t.Run("mirror", func(t *testing.T) { testMirror(t, b, p) })
			t.Run("parallel50", func(t *testing.T) { testParallelSessions(t, b, p) })
		})
	}
}

// bigSize is the round trip's size: large enough that any copy loop, buffer
// or deadline problem shows, streamed so that no client-side file holds it.
const bigSize = 1 << 30

// testBigRoundTrip uploads 1 GiB with curl from a generated stream, checks
// the backend's copy on disk, and downloads it into a hash: PROT P, EPSV.
func testBigRoundTrip(t *testing.T, b *backend, p *proxyProc) {
	needTool(t, "curl")
	size := int64(bigSize)
	if testing.Short() {
		size = 64 << 20
	}
	if err := os.Mkdir(filepath.Join(b.home, "big"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chown(filepath.Join(b.home, "big"), b.acct.uid, b.acct.gid)
	url := "ftp://" + p.explicit + "/big/big.bin"
	args := []string{"--silent", "--show-error", "--insecure", "--ssl-reqd", "--max-time", "1200",
		"--user", testUser + ":" + testPassword}

	upHash := sha256.New()
	up := exec.Command("curl", append(args, "--upload-file", "-", url)...)
	up.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // see startProxy
	up.Stdin = io.TeeReader(io.LimitReader(newPRNG(uint64(size)), size), upHash)
	if out, err := up.CombinedOutput(); err != nil {
		t.Fatalf("upload 1GiB: %v\n%s", err, out)
	}
	want := hex.EncodeToString(upHash.Sum(nil))
	if got := fileSHA256(t, filepath.Join(b.home, "big", "big.bin")); got != want {
		t.Fatalf("upload: the backend holds a file with hash %s, sent %s", got, want)
	}

	downHash := sha256.New()
	down := exec.Command("curl", append(args, url)...)
	down.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr strings.Builder
	down.Stdout, down.Stderr = downHash, &stderr
	if err := down.Run(); err != nil {
		t.Fatalf("download 1GiB: %v\n%s", err, stderr.String())
	}
	if got := hex.EncodeToString(downHash.Sum(nil)); got != want {
		t.Fatalf("download: hash %s, want %s", got, want)
	}
	// The proxy counted every byte both ways.
	var sawUp, sawDown bool
	for _, x := range p.records("transfer") {
		if x["path"] == "big.bin" && x["bytes"] == float64(size) {
			sawUp = sawUp || x["direction"] == "upload"
			sawDown = sawDown || x["direction"] == "download"
		}
	}
	if !sawUp || !sawDown {
		t.Errorf("no transfer records of %d bytes up and down for big.bin (up %v, down %v)", size, sawUp, sawDown)
	}
	os.Remove(filepath.Join(b.home, "big", "big.bin"))
}

// testMirror makes a tree of 200 files, uploads it with lftp's mirror -R,
// downloads it again with mirror, and compares all three copies.
func testMirror(t *testing.T, b *backend, p *proxyProc) {
	needTool(t, "lftp")
	src := filepath.Join(t.TempDir(), "tree")
	back := filepath.Join(t.TempDir(), "back")
	rng := newPRNG(200)
	for i := range 200 {
		// Ten directories, sizes from empty to 96 KiB.
		path := filepath.Join(src, fmt.Sprintf("d%02d", i%10), fmt.Sprintf("f%03d.bin", i))
		data := make([]byte, (i*7919)%(96<<10))
		rng.Read(data)
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	script := fmt.Sprintf(`set cmd:fail-exit yes
set net:max-retries 1
set ssl:verify-certificate no
set ftp:ssl-force yes
set ftp:ssl-protect-data yes
open -u %s,%s ftp://%s
mirror --reverse --parallel=4 %s /tree
mirror --parallel=4 /tree %s
`, testUser, testPassword, p.explicit, src, back)
	if out, err := run(t, 10*time.Minute, "lftp", "-c", script); err != nil {
		t.Fatalf("lftp mirror: %v\n%s", err, out)
	}
	want := treeHashes(t, src)
	if len(want) != 200 {
		t.Fatalf("made %d files, want 200", len(want))
	}
	for what, dir := range map[string]string{"the backend's copy (mirror -R)": filepath.Join(b.home, "tree"), "the copy mirrored back": back} {
		got := treeHashes(t, dir)
		if diff := diffTrees(want, got); diff != "" {
			t.Errorf("%s differs from the source tree:\n%s", what, diff)
		}
	}
}

// treeHashes maps each file's path below root to its SHA-256.
func treeHashes(t testing.TB, root string) map[string]string {
	t.Helper()
	out := make(map[string]string)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		out[rel] = fileSHA256(t, path)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func diffTrees(want, got map[string]string) string {
	var lines []string
	for name, sum := range want {
		switch g, ok := got[name]; {
		case !ok:
			lines = append(lines, "missing "+name)
		case g != sum:
			lines = append(lines, "differs "+name)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			lines = append(lines, "extra "+name)
		}
	}
	sort.Strings(lines)
	if len(lines) > 20 {
		lines = append(lines[:20], fmt.Sprintf("... and %d more", len(lines)-20))
	}
	return strings.Join(lines, "\n")
}

// parallelSessions is how many sessions testParallelSessions holds open at
// once.
const parallelSessions = 50

// testParallelSessions runs 50 curl sessions at the same time, each
// uploading its own file at a limited rate (so that all of them overlap),
// then 50 downloading them, in every mode; every file is checked on the
// backend's disk and after download.
func testParallelSessions(t *testing.T, b *backend, p *proxyProc) {
	needTool(t, "curl")
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(b.home, "par"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chown(filepath.Join(b.home, "par"), b.acct.uid, b.acct.gid)
	sums := make([]string, parallelSessions)
	paths := make([]string, parallelSessions)
	for i := range parallelSessions {
		data := make([]byte, 512<<10+i)
		newPRNG(uint64(1000 + i)).Read(data)
		paths[i] = filepath.Join(dir, fmt.Sprintf("up-%02d.bin", i))
		if err := os.WriteFile(paths[i], data, 0o644); err != nil {
			t.Fatal(err)
		}
		sums[i] = bytesSHA256(data)
	}
	args := func(i int) []string {
		a := []string{"--silent", "--show-error", "--insecure", "--max-time", "180",
			"--user", testUser + ":" + testPassword, "--limit-rate", "256k"}
		if i%2 == 0 {
			a = append(a, "--ssl-reqd")
		} else {
			a = append(a, "--ftp-ssl-control")
		}
		if i%4 >= 2 {
			a = append(a, "--disable-epsv")
		}
		return a
	}
	url := func(i int) string { return fmt.Sprintf("ftp://%s/par/f-%02d.bin", p.explicit, i) }

	inParallel(t, "upload", func(i int) error {
		if out, err := run(t, 3*time.Minute, "curl", append(args(i), "--upload-file", paths[i], url(i))...); err != nil {
			return fmt.Errorf("%v\n%s", err, out)
		}
		if got := fileSHA256(t, filepath.Join(b.home, "par", fmt.Sprintf("f-%02d.bin", i))); got != sums[i] {
			return fmt.Errorf("the backend holds hash %s, want %s", got, sums[i])
		}
		return nil
	})
	inParallel(t, "download", func(i int) error {
		got := filepath.Join(dir, fmt.Sprintf("down-%02d.bin", i))
		if out, err := run(t, 3*time.Minute, "curl", append(args(i), "--output", got, url(i))...); err != nil {
			return fmt.Errorf("%v\n%s", err, out)
		}
		if sum := fileSHA256(t, got); sum != sums[i] {
			return fmt.Errorf("downloaded hash %s, want %s", sum, sums[i])
		}
		return nil
	})
}

// inParallel runs f for sessions 0..parallelSessions-1 at once and reports
// each failure with its session and mode.
func inParallel(t *testing.T, what string, f func(i int) error) {
	var wg sync.WaitGroup
	errs := make([]error, parallelSessions)
	for i := range parallelSessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(i)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			prot, pasv := "protC", "epsv"
			if i%2 == 0 {
				prot = "protP"
			}
			if i%4 >= 2 {
				pasv = "pasv"
			}
			t.Errorf("%s, session %d (%s/%s): %v", what, i, prot, pasv, err)
		}
	}
}
