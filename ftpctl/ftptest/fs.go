package ftptest

import (
	"errors"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Errors of the file system, mapped to reply codes by the session.
var (
	errNotExist = errors.New("ftptest: no such file or directory")
	errExist    = errors.New("ftptest: file exists")
	errNotDir   = errors.New("ftptest: not a directory")
	errIsDir    = errors.New("ftptest: is a directory")
	errNotEmpty = errors.New("ftptest: directory not empty")
	errInvalid  = errors.New("ftptest: invalid operation")
)

// FS is an in-memory tree of directories and files. It is safe for
// concurrent use: tests may change it while sessions read it.
//
// Paths are absolute, '/'-separated and cleaned (path.Clean); a relative path
// is taken from the root. Names are bytes, not UTF-8. File contents are never
// modified in place: a write stores a new slice, so a download in progress
// keeps sending the contents it started with.
type FS struct {
	mu    sync.RWMutex
	nodes map[string]*node // guarded by mu; by clean absolute path; "/" is implicit
}

// node is a file or a directory. A stored node is never modified; changes
// replace it.
type node struct {
	dir  bool
	data []byte // file contents, shared with transfers: read-only
	mod  time.Time
}

// root is the node of "/" in an FS that has not been written to.
var root = &node{dir: true}

// NewFS returns an FS holding only the root directory.
func NewFS() *FS {
	return &FS{nodes: map[string]*node{"/": {dir: true, mod: time.Now()}}}
}

// cleanPath returns the clean absolute form of p.
func cleanPath(p string) string { return path.Clean("/" + p) }

// get returns the node at the clean path p, or nil; fs.mu must be held.
func (fs *FS) get(p string) *node {
	if n := fs.nodes[p]; n != nil {
		return n
	}
	if p == "/" {
		return root
	}
	return nil
}

// setLocked stores n at the clean path p; fs.mu must be held for writing.
func (fs *FS) setLocked(p string, n *node) {
	if fs.nodes == nil {
		fs.nodes = map[string]*node{"/": {dir: true, mod: time.Now()}}
	}
	fs.nodes[p] = n
}

// WriteFile stores a copy of data at path, creating missing parent
// directories. It panics if path is the root or a directory, or if a parent
// is a file: test setup that cannot work.
func (fs *FS) WriteFile(path string, data []byte) {
	p := cleanPath(path)
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.mkdirAllLocked(parent(p))
	if n := fs.get(p); n != nil && n.dir {
		panic("ftptest: WriteFile " + p + ": is a directory")
	}
	fs.setLocked(p, &node{data: slices.Clone(data), mod: time.Now()})
}

// ReadFile returns a copy of the contents of the file at path, and whether
// there is a file there.
func (fs *FS) ReadFile(path string) ([]byte, bool) {
	fs.mu.RLock()
	defer fs.mu.RUnlock()
	n := fs.get(cleanPath(path))
	if n == nil || n.dir {
		return nil, false
	}
	return slices.Clone(n.data), true
}

// Mkdir creates the directory path and any missing parents, like
// os.MkdirAll. It panics if a file is in the way.
func (fs *FS) Mkdir(path string) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.mkdirAllLocked(cleanPath(path))
}

// Remove deletes the file or the directory (with everything in it) at path
// and reports whether there was one. The root cannot be removed.
func (fs *FS) Remove(path string) bool {
	p := cleanPath(path)
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if p == "/" || fs.get(p) == nil {
		return false
	}
	for k := range fs.nodes {
		if k == p || isBelow(k, p) {
			delete(fs.nodes, k)
		}
	}
	return true
}

// SetModTime sets the modification time that LIST, MLSD, MLST and MDTM
// report for path, and reports whether path exists.
func (fs *FS) SetModTime(path string, t time.Time) bool {
	p := cleanPath(path)
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n := fs.get(p)
	if n == nil {
		return false
	}
	m := *n
	m.mod = t
	fs.setLocked(p, &m)
	return true
}

func (fs *FS) mkdirAllLocked(p string) {
	if p == "/" {
		return
	}
	if n := fs.get(p); n != nil {
		if !n.dir {
			panic("ftptest: " + p + ": is a file")
		}
		return
	}
	fs.mkdirAllLocked(parent(p))
	fs.setLocked(p, &node{dir: true, mod: time.Now()})
}

// parent returns the directory of the clean absolute path p.
func parent(p string) string { return path.Dir(p) }

// isBelow reports whether the clean path p lies inside the directory dir.
func isBelow(p, dir string) bool {
	if dir == "/" {
		return p != "/"
	}
	return strings.HasPrefix(p, dir+"/")
}

// stat returns the node at the clean path p.
func (fs *FS) stat(p string) (*node, error) {
	fs.mu.RLock()
	defer fs.mu.RUnlock()
	if n := fs.get(p); n != nil {
		return n, nil
	}
	return nil, errNotExist
}

// dirEntry is one name in a directory listing.
type dirEntry struct {
	name string
	*node
}

// list returns the entries of the directory p, sorted by name.
func (fs *FS) list(p string) ([]dirEntry, error) {
	fs.mu.RLock()
	defer fs.mu.RUnlock()
	n := fs.get(p)
	switch {
	case n == nil:
		return nil, errNotExist
	case !n.dir:
		return nil, errNotDir
	}
	var entries []dirEntry
	for k, n := range fs.nodes {
		if k != "/" && parent(k) == p {
			entries = append(entries, dirEntry{name: path.Base(k), node: n})
		}
	}
	slices.SortFunc(entries, func(a, b dirEntry) int { return strings.Compare(a.name, b.name) })
	return entries, nil
}

// checkParentLocked reports why a new entry at p cannot be made: a missing
// parent or a parent that is a file.
func (fs *FS) checkParentLocked(p string) error {
	if p == "/" {
		return errInvalid
	}
	d := fs.get(parent(p))
	switch {
	case d == nil:
		return errNotExist
	case !d.dir:
		return errNotDir
	}
	return nil
}

// checkWritable reports whether a file could be stored at p, so a transfer
// is refused before its data connection is used.
func (fs *FS) checkWritable(p string) error {
	fs.mu.RLock()
	defer fs.mu.RUnlock()
	if err := fs.checkParentLocked(p); err != nil {
		return err
	}
	if n := fs.get(p); n != nil && n.dir {
		return errIsDir
	}
	return nil
}

// store writes data at p. With appending, data goes after the current
// contents; otherwise, with offset > 0, after the first offset bytes (REST
// then STOR, RFC 3659 section 5); otherwise it replaces them. data is kept,
// not copied: the caller must not use it again.
func (fs *FS) store(p string, data []byte, offset int64, appending bool) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if err := fs.checkParentLocked(p); err != nil {
		return err
	}
	var old []byte
	if n := fs.get(p); n != nil {
		if n.dir {
			return errIsDir
		}
		old = n.data
	}
	switch {
	case appending:
		// A fresh slice: old may be in use by a download.
		data = append(old[:len(old):len(old)], data...)
	case offset > int64(len(old)):
		return errInvalid
	case offset > 0:
		data = append(old[:offset:offset], data...)
	}
	fs.setLocked(p, &node{data: data, mod: time.Now()})
	return nil
}

// mkdir creates the directory p, whose parent must exist.
func (fs *FS) mkdir(p string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if err := fs.checkParentLocked(p); err != nil {
		return err
	}
	if fs.get(p) != nil {
		return errExist
	}
	fs.setLocked(p, &node{dir: true, mod: time.Now()})
	return nil
}

// rmdir removes the empty directory p.
func (fs *FS) rmdir(p string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n := fs.get(p)
	switch {
	case p == "/":
		return errInvalid
	case n == nil:
		return errNotExist
	case !n.dir:
		return errNotDir
	}
	for k := range fs.nodes {
		if isBelow(k, p) {
			return errNotEmpty
		}
	}
	delete(fs.nodes, p)
	return nil
}

// remove deletes the file p.
func (fs *FS) remove(p string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n := fs.get(p)
	switch {
	case n == nil:
		return errNotExist
	case n.dir:
		return errIsDir
	}
	delete(fs.nodes, p)
	return nil
}

// rename moves the file or directory from to to, like rename(2): a file
// replaces a file, a directory moves with everything in it, and nothing
// moves into itself or onto a directory.
func (fs *FS) rename(from, to string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	src := fs.get(from)
	switch {
	case src == nil:
		return errNotExist
	case from == "/":
		return errInvalid
	case from == to:
		return nil
	case isBelow(to, from):
		return errInvalid
	}
	if err := fs.checkParentLocked(to); err != nil {
		return err
	}
	if dst := fs.get(to); dst != nil && (dst.dir || src.dir) {
		return errExist
	}
	moved := map[string]*node{to: src}
	for k, n := range fs.nodes {
		if isBelow(k, from) {
			moved[to+k[len(from):]] = n
		}
	}
	delete(fs.nodes, from)
	for k := range fs.nodes {
		if isBelow(k, from) {
			delete(fs.nodes, k)
		}
	}
	for k, n := range moved {
		fs.setLocked(k, n)
	}
	return nil
}

// uniqueName returns a path in the directory dir at which nothing exists yet.
func (fs *FS) uniqueName(dir string) string {
	fs.mu.RLock()
	defer fs.mu.RUnlock()
	for i := 1; ; i++ {
		p := path.Join(dir, "ftptest."+strconv.Itoa(i))
		if fs.get(p) == nil {
			return p
		}
	}
}
