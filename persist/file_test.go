package persist

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// openTest opens the state file at path with clk, expecting no error.
func openTest(t *testing.T, path string, maxEntries int, clk *fakeClock) *FileStore {
	t.Helper()
	f, err := openFile(path, maxEntries, clk.Now)
	if err != nil {
		t.Fatalf("openFile(%s): %v", path, err)
	}
	return f
}

// dirNames returns the names in dir.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// stateBytes returns pins in the state file format.
func stateBytes(pins []pin) []byte {
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	encodeState(w, pins)
	w.Flush()
	return b.Bytes()
}

func TestFileStoreRoundTrip(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	path := filepath.Join(t.TempDir(), "pins")
	f := openTest(t, path, 0, clk)
	if f.Len() != 0 {
		t.Fatalf("new store holds %d pins", f.Len())
	}
	pins := []struct {
		key, backend string
		ttl          time.Duration
	}{
		{"ip:203.0.113.7", "ftp-a", time.Hour},
		{"ip:2001:db8::1", "ftp-b", 2 * time.Hour},
		{"user:alice", "ftp-c", 0}, // never expires
		// FTP user names are bytes, not UTF-8, and may hold anything.
		{"user:\xff\xfe\x00", "ftp-a", time.Hour},
		{"user:\"quoted\" name\twith\nnewline", "ftp b", time.Hour},
		{"", "", time.Hour},
		{"short", "ftp-a", time.Minute},
	}
	for _, p := range pins {
		mustSet(t, f, p.key, p.backend, p.ttl)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	clk.Advance(30 * time.Minute) // "short" has expired meanwhile
	g := openTest(t, path, 0, clk)
	for _, p := range pins {
		b, ok := mustGet(t, g, p.key)
		if want := p.ttl != time.Minute; ok != want || ok && b != p.backend {
			t.Errorf("after reopen: Get(%q) = %q, %v; want %q, %v", p.key, b, ok, p.backend, want)
		}
	}
	if g.Len() != len(pins)-1 {
		t.Errorf("reopened store holds %d pins, want %d", g.Len(), len(pins)-1)
	}

	// Expiry is absolute: the 1h pins set 30 minutes before the restart
	// expire 30 minutes after it, not 1h after it.
	clk.Advance(30 * time.Minute)
	for _, p := range pins {
		b, ok := mustGet(t, g, p.key)
		if want := p.ttl == 0 || p.ttl == 2*time.Hour; ok != want {
			t.Errorf("1h after the Set: Get(%q) = %q, %v; want ok %v", p.key, b, ok, want)
		}
	}
}

func TestFileStoreDropsExpiredAtLoad(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	path := filepath.Join(t.TempDir(), "pins")
	f := openTest(t, path, 0, clk)
	mustSet(t, f, "gone", "ftp-a", time.Minute)
	mustSet(t, f, "kept", "ftp-a", time.Hour)
	if err := f.Save(); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Minute)
	g := openTest(t, path, 0, clk)
	if got := order(t, g.Table); !slices.Equal(got, []string{"kept"}) {
		t.Fatalf("loaded %v, want only kept", got)
	}
}

func TestFileStoreKeepsRecency(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	path := filepath.Join(t.TempDir(), "pins")
	f := openTest(t, path, 0, clk)
	for _, k := range []string{"a", "b", "c", "d", "e"} {
		mustSet(t, f, k, "ftp-"+k, time.Hour)
	}
	mustGet(t, f, "a") // most recent now: a e d c b
	if err := f.Save(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		max  int
		want []string
	}{
		{0, []string{"a", "e", "d", "c", "b"}},
		{3, []string{"a", "e", "d"}}, // a smaller bound keeps the most recent
	} {
		g := openTest(t, path, tc.max, clk)
		if got := order(t, g.Table); !slices.Equal(got, tc.want) {
			t.Errorf("maxEntries %d: loaded %v, want %v", tc.max, got, tc.want)
		}
	}
}

func TestOpenFileMissing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "pins")
	f, err := OpenFile(path, 0)
	if err != nil || f == nil {
		t.Fatalf("OpenFile of a missing file = %v, %v; want a store and no error", f, err)
	}
	if f.Len() != 0 || f.Path() != path {
		t.Fatalf("Len %d, Path %q", f.Len(), f.Path())
	}
	if names := dirNames(t, dir); len(names) != 0 {
		t.Fatalf("OpenFile created %v before any Save", names)
	}
	mustSet(t, f, "k", "ftp-a", 0)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{"pins"}) {
		t.Fatalf("after Close the directory holds %v", names)
	}
}

func TestOpenFileCorrupt(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	valid := stateBytes([]pin{
		{key: "ip:203.0.113.7", backend: "ftp-a", expires: clk.Now().Add(time.Hour)},
		{key: "user:alice", backend: "ftp-b"},
	})
	cases := map[string][]byte{
		"empty":                 {},
		"garbage":               []byte("\x00\x01\x02 not a state file"),
		"json":                  []byte(`{"pins":[]}`),
		"other version":         bytes.Replace(valid, []byte("ftpsgate-pins 1"), []byte("ftpsgate-pins 2"), 1),
		"count too high":        bytes.Replace(valid, []byte("end 2"), []byte("end 3"), 1),
		"count too low":         bytes.Replace(valid, []byte("end 2"), []byte("end 1"), 1),
		"content after the end": append(slices.Clone(valid), "\"k\" \"b\" -\n"...),
		"bad quoting":           bytes.Replace(valid, []byte(`"user:alice"`), []byte(`"user:alice`), 1),
		"no space":              bytes.Replace(valid, []byte(`"user:alice" `), []byte(`"user:alice"`), 1),
		"bad time":              bytes.Replace(valid, []byte("2025-11-26T10:30:00Z"), []byte("tomorrow"), 1),
		"bad escape":            bytes.Replace(valid, []byte(`"user:alice"`), []byte(`"user:\q"`), 1),
		"CRLF":                  bytes.ReplaceAll(valid, []byte("\n"), []byte("\r\n")),
	}
	// Every proper prefix of a valid file is a truncated file: none may be
	// loaded, not even in part.
	for i := range len(valid) {
		cases[fmt.Sprintf("truncated to %d bytes", i)] = valid[:i]
	}
	if _, err := decodeState(valid); err != nil {
		t.Fatalf("the valid file does not parse: %v", err)
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if bytes.Equal(data, valid) {
				t.Fatal("case is the valid file")
			}
			path := filepath.Join(t.TempDir(), "pins")
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			f, err := openFile(path, 0, clk.Now)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("openFile = %v; want an error wrapping ErrCorrupt", err)
			}
			if f == nil || f.Len() != 0 {
				t.Fatalf("a corrupt file must give an empty store, got %v", f)
			}
			// Usable, and the next save replaces the corrupt file.
			mustSet(t, f, "k", "ftp-a", time.Hour)
			if err := f.Save(); err != nil {
				t.Fatal(err)
			}
			g := openTest(t, path, 0, clk)
			if b, ok := mustGet(t, g, "k"); !ok || b != "ftp-a" {
				t.Fatalf("after saving over the corrupt file: Get = %q, %v", b, ok)
			}
		})
	}
}

func TestOpenFileUnreadable(t *testing.T) {
	t.Parallel()
	// A directory where the file should be: unreadable even for root.
	path := t.TempDir()
	f, err := OpenFile(path, 0)
	if err == nil || errors.Is(err, ErrCorrupt) || errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("OpenFile(a directory) = %v; want a read error", err)
	}
	if f == nil {
		t.Fatal("no store")
	}
	mustSet(t, f, "k", "ftp-a", 0)
	if b, ok := mustGet(t, f, "k"); !ok || b != "ftp-a" {
		t.Fatal("store not usable after a read error")
	}
	if err := f.Save(); err == nil {
		t.Fatal("Save over a directory succeeded")
	}

	f, err = OpenFile("", 0)
	if err == nil || f == nil || f.Save() == nil {
		t.Fatalf("OpenFile(\"\") = %v, %v; want a usable store, an error, and failing saves", f, err)
	}
}

func TestFileStorePermissions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		existing os.FileMode // mode of a state file there before, 0: none
	}{
		{"new file", 0},
		{"replaces a 0644 file", 0o644},
		{"replaces a 0666 file", 0o666},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clk := newFakeClock()
			path := filepath.Join(t.TempDir(), "pins")
			if tc.existing != 0 {
				if err := os.WriteFile(path, stateBytes(nil), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(path, tc.existing); err != nil {
					t.Fatal(err)
				}
			}
			f := openTest(t, path, 0, clk)
			mustSet(t, f, "ip:203.0.113.7", "ftp-a", time.Hour)
			if err := f.Save(); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode() != 0o600 {
				t.Fatalf("state file mode %v, want -rw-------", fi.Mode())
			}
		})
	}
}

// While one goroutine saves over and over, a reader must always find a
// complete state file: the rename is atomic.
func TestFileStoreSaveIsAtomic(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	dir := t.TempDir()
	path := filepath.Join(dir, "pins")
	f := openTest(t, path, 0, clk)
	if err := f.Save(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(done)
		for i := range 100 {
			// Files of growing length, up to a hundred buffers long.
			for j := range i * 2 {
				f.Set(context.Background(), fmt.Sprint("ip:10.0.", i, ".", j), "ftp-a", time.Hour)
			}
			if err := f.Save(); err != nil {
				t.Errorf("Save: %v", err)
				return
			}
		}
	})
	wg.Go(func() {
		for reads := 0; ; reads++ {
			select {
			case <-done:
				if reads == 0 {
					t.Error("no read during the saves")
				}
				return
			default:
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Errorf("read %d: %v", reads, err)
				return
			}
			if _, err := decodeState(data); err != nil {
				t.Errorf("read %d: a reader saw a partial state file (%d bytes): %v", reads, len(data), err)
				return
			}
		}
	})
	wg.Wait()
	// Nothing but the state file is left behind.
	if names := dirNames(t, dir); !slices.Equal(names, []string{"pins"}) {
		t.Fatalf("after the saves the directory holds %v", names)
	}
}

// crashEnv names the environment variables that make
// TestFileStoreCrashDuringSave's child process crash.
const (
	crashEnvPath  = "PERSIST_CRASH_PATH"
	crashEnvStage = "PERSIST_CRASH_STAGE"
	crashExit     = 3
)

// crashWriter writes half of the first buffer it is given, then kills the
// process: a crash in the middle of writing the temporary file.
type crashWriter struct{ w io.Writer }

func (c crashWriter) Write(p []byte) (int, error) {
	c.w.Write(p[:len(p)/2])
	os.Exit(crashExit)
	return 0, nil
}

// crashChild runs in the child process: it opens the state file, pins a
// lot, and saves with a hook that kills the process at the stage asked.
func crashChild(path, stage string) {
	f, err := OpenFile(path, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: open:", err)
		os.Exit(1)
	}
	for i := range 2000 { // tens of kilobytes: several buffers
		f.Set(context.Background(), fmt.Sprint("ip:10.1.", i/256, ".", i%256), "ftp-new", time.Hour)
	}
	switch stage {
	case "mid-write":
		f.hookWriter = func(w io.Writer) io.Writer { return crashWriter{w} }
	case "before-rename":
		f.hookRename = func() { os.Exit(crashExit) }
	}
	if err := f.Save(); err != nil {
		fmt.Fprintln(os.Stderr, "child: save:", err)
		os.Exit(1)
	}
	os.Exit(0) // the hook did not fire
}

// A process killed in the middle of a Save leaves the previous state file
// whole (or none, if there was none), never a truncated one; the next
// OpenFile loads it without error and removes the leftover.
func TestFileStoreCrashDuringSave(t *testing.T) {
	if path := os.Getenv(crashEnvPath); path != "" {
		crashChild(path, os.Getenv(crashEnvStage))
		return
	}
	t.Parallel()
	for _, tc := range []struct {
		stage    string
		previous bool // a state file exists before the crash
	}{
		{"mid-write", true},
		{"mid-write", false},
		{"before-rename", true},
		{"before-rename", false},
	} {
		t.Run(fmt.Sprintf("%s/previous=%v", tc.stage, tc.previous), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, "pins")
			var before []byte
			if tc.previous {
				f, _ := OpenFile(path, 0)
				mustSet(t, f, "ip:203.0.113.7", "ftp-old", time.Hour)
				if err := f.Save(); err != nil {
					t.Fatal(err)
				}
				before, _ = os.ReadFile(path)
			}

			cmd := exec.Command(os.Args[0], "-test.run=^TestFileStoreCrashDuringSave$", "-test.count=1")
			cmd.Env = append(os.Environ(), crashEnvPath+"="+path, crashEnvStage+"="+tc.stage)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != crashExit {
				t.Fatalf("child did not crash where asked (%v):\n%s", err, out)
			}

			// The crash left a temporary file, under another name.
			names := dirNames(t, dir)
			temps := slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == "pins" })
			if len(temps) != 1 || !strings.HasPrefix(temps[0], ".pins.tmp-") {
				t.Fatalf("after the crash the directory holds %v; want the state file (if any) and one temporary file", names)
			}
			after, err := os.ReadFile(path)
			switch {
			case !tc.previous && !errors.Is(err, fs.ErrNotExist):
				t.Fatalf("no state file before the crash, one after (%d bytes, %v)", len(after), err)
			case tc.previous && !bytes.Equal(after, before):
				t.Fatalf("the crash changed the state file:\n%q\nwas\n%q", after, before)
			}

			f, err := OpenFile(path, 0)
			if err != nil {
				t.Fatalf("OpenFile after the crash: %v", err)
			}
			b, ok := mustGet(t, f, "ip:203.0.113.7")
			if ok != tc.previous || ok && b != "ftp-old" {
				t.Fatalf("after the crash: Get = %q, %v", b, ok)
			}
			if _, ok := mustGet(t, f, "ip:10.1.0.1"); ok {
				t.Fatal("a pin of the crashed save was loaded")
			}
			var want []string
			if tc.previous {
				want = []string{"pins"}
			}
			if names := dirNames(t, dir); !slices.Equal(names, want) {
				t.Fatalf("OpenFile left %v; want %v (the temporary file removed)", names, want)
			}
		})
	}
}
