package integration

import (
	"bytes"
	"context"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A matrix cell is one client, in one mode, working through the proxy on
// one backend. Every cell performs the same scenario, each client in its
// own way, in one session where the client allows it (lftp, Python) and
// one invocation per step where it does not (curl):
//
//	login, PWD, MKD <dir>, CWD <dir>, STOR file.bin, LIST, MLSD (where the
//	backend has it), NLST, RETR file.bin, RETR with REST, SIZE, MDTM,
//	STOR+APPE appe.bin, RNFR/RNTO appe.bin renamed.bin, DELE file.bin,
//	MKD/RMD sub
//
// Then the test checks what the client printed, the commands its protocol
// trace shows it sent, the files it downloaded, and the files the backend
// holds on disk: the ground truth no client can fake.

// steps are the scenario's steps, in order; failures name them.
var steps = []string{"login", "pwd", "mkd", "cwd", "stor", "list", "mlsd", "nlst", "retr", "rest",
	"size", "mdtm", "appe", "rename", "dele", "mkd-rmd"}

// mode is how a cell's client talks to the proxy.
type mode struct {
	protP    bool // PROT P: data connections in TLS
	epsv     bool // EPSV, else PASV
	implicit bool // implicit FTPS (TLS from the first byte), else AUTH TLS
}

func (m mode) prot() string {
	if m.protP {
		return "protP"
	}
	return "protC"
}

func (m mode) passive() string {
	if m.epsv {
		return "epsv"
	}
	return "pasv"
}

// cell is one scenario run: its inputs and where it works.
type cell struct {
	name    string // backend/client/mode, for messages
	backend *backend
	proxy   *proxyProc
	client  *client
	mode    mode

	dir        string // the cell's directory on the server, absolute ("/curl-protP-epsv")
	local      string // the cell's local directory
	up         string // uploaded as file.bin
	upData     []byte
	part1      string // uploaded as appe.bin, then part2 appended
	part2      string
	whole      []byte // part1 then part2: what appe.bin (renamed.bin) must hold
	part1Size  int
	restOffset int64 // where the resumed download starts
	started    time.Time
}

// result is what a client run left behind: the output of each step and its
// protocol trace (the commands it sent, the replies it got).
type result struct {
	steps map[string]string
	trace string
}

// client is one FTP client program and how it performs the scenario.
type client struct {
	name string
	tool string // the executable it needs
	// run performs the scenario through the proxy; an error names the step
	// that failed.
	run func(t testing.TB, c *cell) (result, error)
	// traceSent extracts the commands sent from a trace.
	traceSent *regexp.Regexp
	// resumeKeepsPrefix: the client resumes a download into the partial
	// local file (lftp's get -c), so the file ends up whole; the others
	// write only the bytes from the offset.
	resumeKeepsPrefix bool
	// appendsWithRest: the client has no APPE; it appends by resuming an
	// upload with REST and STOR (lftp's put -c).
	appendsWithRest bool
}

var (
	curlClient = &client{name: "curl", tool: "curl", run: runCurl,
		traceSent: regexp.MustCompile(`(?m)^> (.*?)\r?$`)}
	lftpClient = &client{name: "lftp", tool: "lftp", run: runLftp,
		traceSent:         regexp.MustCompile(`(?m)^---> (.*?)\r?$`),
		resumeKeepsPrefix: true, appendsWithRest: true}
	pythonClient = &client{name: "python", tool: "python3", run: runPython,
		traceSent: regexp.MustCompile(`(?m)^\*cmd\* '(.*)'$`)}
)

// clients are the matrix's clients, in the order they run.
var clients = []*client{curlClient, lftpClient, pythonClient}

// newCell prepares a cell's local files.
func newCell(t testing.TB, b *backend, p *proxyProc, cl *client, m mode, dir string) *cell {
	c := &cell{
		name:    fmt.Sprintf("%s/%s/%s/%s", b.kind.name, cl.name, m.prot(), m.passive()),
		backend: b, proxy: p, client: cl, mode: m,
		dir:        dir,
		local:      t.TempDir(),
		restOffset: 1_000_003,
		started:    time.Now(),
	}
	if m.implicit {
		c.name = fmt.Sprintf("%s/%s/implicit", b.kind.name, cl.name)
	}
	// Different bytes in every cell: a file that landed in another cell's
	// directory would not pass for this one's.
	h := fnv.New64a()
	h.Write([]byte(c.name))
	seed := h.Sum64()
	c.up, c.upData = writeLocal(t, c.local, "up.bin", 2_345_679, seed)
	var p1, p2 []byte
	c.part1, p1 = writeLocal(t, c.local, "part1.bin", 300_007, seed+1)
	c.part2, p2 = writeLocal(t, c.local, "part2.bin", 123_457, seed+2)
	c.whole = append(p1, p2...)
	c.part1Size = len(p1)
	return c
}

func writeLocal(t testing.TB, dir, name string, n int, seed uint64) (string, []byte) {
	t.Helper()
	data := make([]byte, n)
	newPRNG(seed).Read(data)
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, data
}

func (c *cell) localPath(name string) string { return filepath.Join(c.local, name) }

// serverPath is where a path of the cell's directory lives on the
// backend's disk.
func (c *cell) serverPath(name string) string {
	return filepath.Join(c.backend.home, c.dir, name)
}

// mlsd reports whether the scenario includes MLSD: only where the backend
// itself advertises MLST (vsftpd does not).
func (c *cell) mlsd() bool { return c.backend.hasFeature("MLST") }

// fail reports a failed check, naming the cell and the step.
func (c *cell) fail(t testing.TB, step, format string, args ...any) {
	t.Helper()
	t.Errorf("%s: step %s: %s", c.name, step, fmt.Sprintf(format, args...))
}

// stepError is a client run that failed at a step.
type stepError struct {
	step   string
	err    error
	output string
}

func (e *stepError) Error() string {
	return fmt.Sprintf("step %s: %v\n--- client output ---\n%s", e.step, e.err, e.output)
}

// runSplit runs a command with a timeout and returns its stdout and stderr
// apart.
func runSplit(timeout time.Duration, name string, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // see startProxy
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s timed out after %v: %w", name, timeout, err)
	}
	return stdout.String(), stderr.String(), err
}

// splitSteps cuts output at the "### step NAME" lines the lftp and Python
// drivers print, and returns each step's text and the last step begun.
func splitSteps(out string) (map[string]string, string) {
	steps := make(map[string]string)
	current := "login"
	for _, line := range strings.SplitAfter(out, "\n") {
		if name, ok := strings.CutPrefix(strings.TrimSpace(line), "### step "); ok {
			current = name
			steps[current] += "" // begun, even if it prints nothing
			continue
		}
		steps[current] += line
	}
	return steps, current
}

// curlInvocation is one curl run for one step.
type curlInvocation struct {
	step string
	args []string
}

// runCurl performs the scenario with one curl per step: each is a session
// of its own, with AUTH TLS (or implicit TLS), PBSZ, PROT, PWD, CWD.
func runCurl(t testing.TB, c *cell) (result, error) {
	url := "ftp://" + c.proxy.explicit
	if c.mode.implicit {
		url = "ftps://" + c.proxy.implicit
	}
	dirURL := url + c.dir + "/"
	fileURL := dirURL + "file.bin"
	appeURL := dirURL + "appe.bin"
	base := []string{"--silent", "--show-error", "--verbose", "--insecure", "--max-time", "120",
		"--user", testUser + ":" + testPassword}
	switch {
	case c.mode.protP && !c.mode.implicit:
		base = append(base, "--ssl-reqd") // AUTH TLS, PROT P
	case !c.mode.protP:
		base = append(base, "--ftp-ssl-control") // AUTH TLS (or implicit), PROT C
	}
	if !c.mode.epsv {
		base = append(base, "--disable-epsv")
	}
	abs := func(name string) string { return c.dir + "/" + name }
	invocations := []curlInvocation{
		{"login", []string{url + "/"}}, // PWD comes with every login
		{"mkd", []string{"--quote", "MKD " + c.dir, url + "/"}},
		{"cwd", []string{"--quote", "-PWD", dirURL}}, // "-": after the CWD and LIST
		{"stor", []string{"--upload-file", c.up, fileURL}},
		{"list", []string{dirURL}},
		{"mlsd", []string{"--request", "MLSD", dirURL}},
		{"nlst", []string{"--list-only", dirURL}},
		{"retr", []string{"--output", c.localPath("dl.bin"), fileURL}},
		{"rest", []string{"--range", fmt.Sprintf("%d-", c.restOffset), "--output", c.localPath("rest.bin"), fileURL}},
		{"size", []string{"--head", fileURL}}, // MDTM and SIZE
		{"appe", []string{"--upload-file", c.part1, appeURL}},
		{"appe", []string{"--upload-file", c.part2, "--append", appeURL}},
		// --quote runs before the CWD of the URL: absolute paths.
		{"rename", []string{"--quote", "RNFR " + abs("appe.bin"), "--quote", "RNTO " + abs("renamed.bin"), "--list-only", dirURL}},
		{"dele", []string{"--quote", "DELE " + abs("file.bin"), "--list-only", dirURL}},
		{"mkd-rmd", []string{"--quote", "MKD " + abs("sub"), "--quote", "RMD " + abs("sub"), "--list-only", dirURL}},
	}
	res := result{steps: make(map[string]string)}
	for _, inv := range invocations {
		if inv.step == "mlsd" && !c.mlsd() {
			continue
		}
		out, err := run(t, 3*time.Minute, "curl", append(slices.Clone(base), inv.args...)...)
		res.steps[inv.step] += out
		res.trace += out
		if err != nil {
			return res, &stepError{inv.step, err, out}
		}
	}
	// One --head session answers both.
	res.steps["mdtm"] = res.steps["size"]
	res.steps["pwd"] = res.steps["login"]
	return res, nil
}

// runLftp performs the scenario in one lftp session, driven by a script
// that marks each step on stdout; lftp's debug trace goes to stderr.
func runLftp(t testing.TB, c *cell) (result, error) {
	yesNo := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	url := "ftp://" + c.proxy.explicit
	if c.mode.implicit {
		url = "ftps://" + c.proxy.implicit
	}
	// lftp's resumed download continues the partial local file.
	if err := os.WriteFile(c.localPath("rest.bin"), c.upData[:c.restOffset], 0o644); err != nil {
		t.Fatal(err)
	}
	wholePath := c.localPath("whole.bin")
	if err := os.WriteFile(wholePath, c.whole, 0o644); err != nil {
		t.Fatal(err)
	}
	var s strings.Builder
	fmt.Fprintf(&s, `set cmd:fail-exit yes
set net:max-retries 1
set net:timeout 30
set ssl:verify-certificate no
set ftp:ssl-force yes
set ftp:ssl-protect-data %[1]s
set ftp:ssl-protect-list %[1]s
set ftp:passive-mode yes
set ftp:prefer-epsv %[2]s
set ftp:use-mlsd yes
set cache:enable no
set xfer:clobber yes
open -u %[3]s,%[4]s %[5]s
`, yesNo(c.mode.protP), yesNo(c.mode.epsv), testUser, testPassword, url)
	step := func(name string, commands ...string) {
		fmt.Fprintf(&s, "echo \"### step %s\"\n%s\n", name, strings.Join(commands, "\n"))
	}
	step("login", "quote NOOP") // the first command connects and logs in
	step("pwd", "quote PWD")
	step("mkd", "mkdir "+c.dir)
	step("cwd", "cd "+c.dir, "quote PWD")
	step("stor", "put "+c.up+" -o file.bin")
	step("list", "ls")
	if c.mlsd() {
		step("mlsd", "cls -l") // MLSD when FEAT lists MLST
	}
	step("nlst", "nlist")
	step("retr", "get file.bin -o "+c.localPath("dl.bin"))
	step("rest", "get -c file.bin -o "+c.localPath("rest.bin"))
	step("size", "quote SIZE file.bin")
	step("mdtm", "quote MDTM file.bin")
	// lftp has no APPE: put -c resumes the upload with REST and STOR.
	step("appe", "put "+c.part1+" -o appe.bin", "put -c "+wholePath+" -o appe.bin")
	step("rename", "mv appe.bin renamed.bin")
	step("dele", "rm file.bin")
	step("mkd-rmd", "mkdir sub", "rmdir sub")
	s.WriteString("echo \"### step quit\"\nbye\n")
	script := c.localPath("script.lftp")
	if err := os.WriteFile(script, []byte(s.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err := runSplit(3*time.Minute, "lftp", "-d", "-f", script)
	steps, last := splitSteps(stdout)
	res := result{steps: steps, trace: stderr}
	if err != nil {
		return res, &stepError{last, err, stdout + "\n--- lftp debug ---\n" + tailLines(stderr, 60)}
	}
	return res, nil
}

// runPython performs the scenario with testdata/ftpclient.py: ftplib's
// FTP_TLS, one session, data connections resuming the control TLS session.
func runPython(t testing.TB, c *cell) (result, error) {
	host, port, _ := strings.Cut(c.proxy.explicit, ":")
	args := []string{"testdata/ftpclient.py", "--host", host, "--port", port,
		"--user", testUser, "--password", testPassword,
		"--prot", strings.TrimPrefix(c.mode.prot(), "prot"), "--mode", c.mode.passive(),
		"--dir", c.dir, "--up", c.up, "--part1", c.part1, "--part2", c.part2,
		"--dl", c.localPath("dl.bin"), "--rest-out", c.localPath("rest.bin"),
		"--rest-offset", strconv.FormatInt(c.restOffset, 10)}
	if c.mlsd() {
		args = append(args, "--mlsd")
	}
	out, err := run(t, 3*time.Minute, "python3", args...)
	steps, last := splitSteps(out)
	res := result{steps: steps, trace: out}
	if err != nil {
		if m := regexp.MustCompile(`(?m)^FAIL step (\S+):`).FindStringSubmatch(out); m != nil {
			last = m[1]
		}
		return res, &stepError{last, err, out}
	}
	return res, nil
}

// runCell performs the scenario and checks everything it left behind.
func runCell(t *testing.T, c *cell) {
	res, err := c.client.run(t, c)
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	c.checkSteps(t, res)
	c.checkSent(t, res)
	c.checkOutputs(t, res)
	c.checkFiles(t)
	if t.Failed() {
		t.Logf("%s: the client's protocol trace:\n%s", c.name, tailLines(res.trace, 300))
	}
}

// checkSteps checks that the client went through every step: a driver
// that skipped one would leave its checks nothing to look at.
func (c *cell) checkSteps(t testing.TB, res result) {
	for _, step := range steps {
		if _, ok := res.steps[step]; !ok && (step != "mlsd" || c.mlsd()) {
			c.fail(t, step, "the client never began this step")
		}
	}
}

// checkSent checks that the client's trace shows the commands each step
// is about: a client that quietly did something else (LIST instead of
// MLSD, PASV instead of EPSV) does not pass.
func (c *cell) checkSent(t testing.TB, res result) {
	var sent []string
	for _, m := range c.client.traceSent.FindAllStringSubmatch(res.trace, -1) {
		sent = append(sent, m[1])
	}
	want := []struct{ step, command string }{
		{"login", "USER " + testUser},
		{"pwd", "PWD"},
		{"mkd", "MKD "},
		{"cwd", "CWD "},
		{"stor", "STOR file.bin"},
		{"list", "LIST"},
		{"nlst", "NLST"},
		{"retr", "RETR file.bin"},
		{"rest", fmt.Sprintf("REST %d", c.restOffset)},
		{"size", "SIZE file.bin"},
		{"mdtm", "MDTM file.bin"},
		{"appe", "STOR appe.bin"},
		{"rename", "RNFR "},
		{"rename", "RNTO "},
		{"dele", "DELE "},
		{"mkd-rmd", "RMD "},
		{"login", "PROT " + strings.TrimPrefix(c.mode.prot(), "prot")},
	}
	if !c.mode.implicit {
		want = append(want, struct{ step, command string }{"login", "AUTH "}) // TLS, or SSL (curl)
	}
	if c.mlsd() {
		want = append(want, struct{ step, command string }{"mlsd", "MLSD"})
	}
	if c.client.appendsWithRest {
		want = append(want, struct{ step, command string }{"appe", fmt.Sprintf("REST %d", c.part1Size)})
	} else {
		want = append(want, struct{ step, command string }{"appe", "APPE "})
	}
	passive, other := "EPSV", "PASV"
	if !c.mode.epsv {
		passive, other = other, passive
	}
	want = append(want, struct{ step, command string }{"list", passive})
	for _, w := range want {
		if !hasCommand(sent, w.command) {
			c.fail(t, w.step, "the client never sent %q", w.command)
		}
	}
	if hasCommand(sent, other) {
		c.fail(t, "list", "the client sent %s in %s mode", other, c.mode.passive())
	}
}

// hasCommand reports whether a command line starting with prefix (the
// verb compared without case) was sent.
func hasCommand(sent []string, prefix string) bool {
	for _, s := range sent {
		if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
			return true
		}
	}
	return false
}

var mdtmReply = regexp.MustCompile(`213 (\d{14})\b`)

// checkOutputs checks what the steps printed against the files the test
// made.
func (c *cell) checkOutputs(t testing.TB, res result) {
	size := strconv.Itoa(len(c.upData))
	sizeWord := regexp.MustCompile(`\b` + size + `\b`)
	contains := func(step, want string) {
		if !strings.Contains(res.steps[step], want) {
			c.fail(t, step, "output lacks %q:\n%s", want, res.steps[step])
		}
	}
	contains("pwd", `257 "/"`)
	contains("cwd", `257 "`+c.dir+`"`)
	for _, step := range []string{"list", "mlsd"} {
		if step == "mlsd" && !c.mlsd() {
			continue
		}
		contains(step, "file.bin")
		if !sizeWord.MatchString(res.steps[step]) {
			c.fail(t, step, "listing lacks the size %s of file.bin:\n%s", size, res.steps[step])
		}
	}
	if !regexp.MustCompile(`(?m)^file\.bin\r?$`).MatchString(res.steps["nlst"]) {
		c.fail(t, "nlst", "no line \"file.bin\" in:\n%s", res.steps["nlst"])
	}
	contains("size", "213 "+size)
	// MDTM is the upload's time on the server, in UTC (RFC 3659 section 3).
	if m := mdtmReply.FindStringSubmatch(res.steps["mdtm"]); m == nil {
		c.fail(t, "mdtm", "no 213 YYYYMMDDHHMMSS reply in:\n%s", res.steps["mdtm"])
	} else if mt, err := time.Parse("20060102150405", m[1]); err != nil {
		c.fail(t, "mdtm", "%v", err)
	} else if mt.Before(c.started.Add(-2*time.Second)) || mt.After(time.Now().Add(2*time.Second)) {
		c.fail(t, "mdtm", "MDTM %s is not the upload time (between %s and %s UTC)", m[1],
			c.started.UTC().Format(time.TimeOnly), time.Now().UTC().Format(time.TimeOnly))
	}
	if c.client == pythonClient && c.mode.protP {
		// Every PROT P data connection resumed the control session.
		resumed := strings.Count(res.trace, "data-tls resumed=True")
		if n := strings.Count(res.trace, "data-tls "); n == 0 || n != resumed {
			c.fail(t, "retr", "%d of %d data connections resumed the TLS session", resumed, n)
		}
	}
}

// checkFiles checks the downloads against the uploads, and the backend's
// disk against what the scenario should have left there.
func (c *cell) checkFiles(t testing.TB) {
	if fi, err := os.Stat(c.serverPath("")); err != nil || !fi.IsDir() {
		c.fail(t, "mkd", "backend lacks the directory %s: %v", c.dir, err)
	}
	upSum := bytesSHA256(c.upData)
	if sum := fileSHA256(t, c.localPath("dl.bin")); sum != upSum {
		c.fail(t, "retr", "downloaded file.bin has hash %s, uploaded %s", sum, upSum)
	}
	wantRest := c.upData[c.restOffset:]
	if c.client.resumeKeepsPrefix {
		wantRest = c.upData
	}
	if got, _ := os.ReadFile(c.localPath("rest.bin")); !bytes.Equal(got, wantRest) {
		c.fail(t, "rest", "resumed download holds %d bytes, want %d (hash %s, want %s)",
			len(got), len(wantRest), bytesSHA256(got), bytesSHA256(wantRest))
	}
	if got, err := os.ReadFile(c.serverPath("renamed.bin")); err != nil {
		c.fail(t, "rename", "backend lacks renamed.bin: %v", err)
	} else if !bytes.Equal(got, c.whole) {
		c.fail(t, "appe", "backend's renamed.bin holds %d bytes, want STOR+APPE's %d", len(got), len(c.whole))
	}
	for step, name := range map[string]string{"rename": "appe.bin", "dele": "file.bin", "mkd-rmd": "sub"} {
		if _, err := os.Lstat(c.serverPath(name)); err == nil {
			c.fail(t, step, "backend still has %s", name)
		}
	}
}
