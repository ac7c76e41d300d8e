package persist

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ErrCorrupt is wrapped by the error [OpenFile] returns for a state file it
// cannot parse: truncated, edited by hand, or not a state file at all.
var ErrCorrupt = errors.New("persist: corrupt state file")

// FileStore is a [Table] saved to a state file, so that pins survive a
// restart of the proxy. The file is read once, by [OpenFile], and written
// by [FileStore.Save], which the caller runs periodically and at shutdown
// ([FileStore.Close] saves too). Pins set between the last save and a crash
// are lost; the file itself is never left half-written.
//
// The state file is text, one pin a line, the most recently used first:
//
//	ftpsgate-pins 1
//	"ip:203.0.113.7" "ftp-a" 2025-11-26T09:30:00Z
//	"user:alice" "ftp-b" -
//	end 2
//
// Keys and backends are Go-quoted, so any bytes survive (FTP user names
// need not be UTF-8); the expiry is an absolute UTC time, or "-" for never,
// so a pin keeps its expiry across restarts. The file holds client
// addresses and user names: it is created with mode 0600.
//
// A FileStore is safe for concurrent use; a Save does not block Get and Set
// while it writes. One state file belongs to one running process: two
// proxies sharing it would overwrite each other's pins.
type FileStore struct {
	// Table holds the pins; its methods are the store's.
	*Table

	path string

	saveMu sync.Mutex // serializes Save

	// Crash-test hooks, nil outside tests: hookWriter wraps the temporary
	// file's writer, hookRename runs just before the rename.
	hookWriter func(io.Writer) io.Writer
	hookRename func()
}

// stateMagic is the first line of a state file, with the format version.
const stateMagic = "ftpsgate-pins 1"

// OpenFile returns a store of at most maxEntries pins (zero or less:
// [DefaultMaxEntries]) loaded from the state file at path; the file is
// created by the first Save. Expired pins are dropped at load, and the least
// recently used ones beyond maxEntries. Temporary files left by a save that
// was interrupted by a crash are removed.
//
// The returned store is never nil and always usable. A missing file is an
// empty store and no error. A file that cannot be read, or is corrupt (the
// error wraps [ErrCorrupt]), gives an empty store AND an error, which the
// caller should log: losing pins is not a reason to stop serving. The next
// Save replaces such a file.
func OpenFile(path string, maxEntries int) (*FileStore, error) {
	return openFile(path, maxEntries, nil)
}

// openFile is OpenFile with a clock (nil: time.Now) for tests.
func openFile(path string, maxEntries int, now func() time.Time) (*FileStore, error) {
	f := &FileStore{Table: NewTable(maxEntries), path: path}
	f.Table.now = now
	if path == "" {
		return f, errors.New("persist: no state file path")
	}
	removeTemps(path)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return f, fmt.Errorf("persist: read state: %w", err)
	}
	pins, err := decodeState(data)
	if err != nil {
		return f, fmt.Errorf("%w %s: %w", ErrCorrupt, path, err)
	}
	f.Table.load(pins)
	return f, nil
}

// Path returns the path of the state file.
func (f *FileStore) Path() string { return f.path }

// Save writes the pins that have not expired to the state file, atomically:
// it writes a temporary file in the same directory, syncs it, renames it
// over the state file and syncs the directory. Whenever the process dies,
// the state file is the previous complete one or the new complete one.
// Expired pins are dropped from the table as well.
func (f *FileStore) Save() error {
	f.saveMu.Lock()
	defer f.saveMu.Unlock()
	if f.path == "" {
		return errors.New("persist: no state file path")
	}
	pins := f.Table.snapshot() // under the table's lock; the writing is not
	if err := f.writeAtomic(pins); err != nil {
		return fmt.Errorf("persist: save state: %w", err)
	}
	return nil
}

// Close saves the state file. The store stays usable, and can be saved and
// closed again.
func (f *FileStore) Close() error {
	return f.Save()
}

// tempPrefix is the name prefix of f's temporary files: hidden, and never
// the name of the state file itself.
func tempPrefix(path string) string {
	return "." + filepath.Base(path) + ".tmp-"
}

// writeAtomic replaces the state file with one holding pins.
func (f *FileStore) writeAtomic(pins []pin) error {
	dir := filepath.Dir(f.path)
	tmp, err := os.CreateTemp(dir, tempPrefix(f.path)+"*")
	if err != nil {
		return err
	}
	renamed := false
	defer func() {
		if !renamed {
			tmp.Close() // a second Close is harmless
			os.Remove(tmp.Name())
		}
	}()
	// CreateTemp makes the file 0600 already; say it, whatever the umask.
	if err := tmp.Chmod(0o600); err != nil {
		return err
	}
	var w io.Writer = tmp
	if f.hookWriter != nil {
		w = f.hookWriter(w)
	}
	bw := bufio.NewWriter(w)
	encodeState(bw, pins)
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if f.hookRename != nil {
		f.hookRename()
	}
	if err := os.Rename(tmp.Name(), f.path); err != nil {
		return err
	}
	renamed = true
	// The rename is durable only once the directory is synced.
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// removeTemps removes the temporary files a crashed Save left beside path.
// Errors are ignored: a leftover is only litter.
func removeTemps(path string) {
	dir := filepath.Dir(path)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	prefix := tempPrefix(path)
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasPrefix(e.Name(), prefix) {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// encodeState writes pins in the state file format. Errors stick in w.
func encodeState(w *bufio.Writer, pins []pin) {
	w.WriteString(stateMagic + "\n")
	var buf []byte
	for _, p := range pins {
		buf = strconv.AppendQuote(buf[:0], p.key)
		buf = append(buf, ' ')
		buf = strconv.AppendQuote(buf, p.backend)
		buf = append(buf, ' ')
		if p.expires.IsZero() {
			buf = append(buf, '-')
		} else {
			buf = p.expires.UTC().AppendFormat(buf, time.RFC3339Nano)
		}
		buf = append(buf, '\n')
		w.Write(buf)
	}
	fmt.Fprintf(w, "end %d\n", len(pins))
}

// decodeState parses a state file. Anything unexpected, a missing end line
// included (a truncated file), is an error: half a table is not loaded.
func decodeState(data []byte) ([]pin, error) {
	lines := strings.Split(string(data), "\n")
	if len(lines) < 3 || lines[0] != stateMagic {
		return nil, errors.New("no ftpsgate-pins 1 header")
	}
	// A complete file ends with "end N\n": the last element is empty.
	if lines[len(lines)-1] != "" {
		return nil, errors.New("truncated: no final newline")
	}
	body, last := lines[1:len(lines)-2], lines[len(lines)-2]
	n, ok := strings.CutPrefix(last, "end ")
	if !ok || n != strconv.Itoa(len(body)) {
		return nil, fmt.Errorf("truncated: last line %q, want \"end %d\"", last, len(body))
	}
	pins := make([]pin, 0, len(body))
	for i, line := range body {
		p, err := decodePin(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", i+2, err)
		}
		pins = append(pins, p)
	}
	return pins, nil
}

// decodePin parses one line: "key" "backend" expiry.
func decodePin(line string) (pin, error) {
	var p pin
	var err error
	if p.key, line, err = cutQuoted(line); err != nil {
		return p, fmt.Errorf("key: %w", err)
	}
	if p.backend, line, err = cutQuoted(line); err != nil {
		return p, fmt.Errorf("backend: %w", err)
	}
	if line != "-" {
		if p.expires, err = time.Parse(time.RFC3339Nano, line); err != nil {
			return p, fmt.Errorf("expiry: %w", err)
		}
	}
	return p, nil
}

// cutQuoted unquotes the Go-quoted string at the start of s and returns it
// with the rest of s after the single space that must follow it.
func cutQuoted(s string) (string, string, error) {
	q, err := strconv.QuotedPrefix(s)
	if err != nil {
		return "", "", err
	}
	v, err := strconv.Unquote(q)
	if err != nil {
		return "", "", err
	}
	rest, ok := strings.CutPrefix(s[len(q):], " ")
	if !ok {
		return "", "", errors.New("no space after the quoted string")
	}
	return v, rest, nil
}
