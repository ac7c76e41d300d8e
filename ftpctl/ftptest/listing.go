package ftptest

import (
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"
)

// timeFormat is the time-val of RFC 3659 section 2.3, used by MDTM and the
// modify fact; times are UTC.
const timeFormat = "20060102150405"

// factSet is a set of the MLST facts this server knows (RFC 3659 section 7.5).
type factSet uint8

const (
	factType factSet = 1 << iota
	factSize
	factModify

	allFacts = factType | factSize | factModify
)

var factNames = []struct {
	fact factSet
	name string
}{{factType, "type"}, {factSize, "size"}, {factModify, "modify"}}

// feat returns the argument of MLST in FEAT: every known fact, the selected
// ones marked with '*' (RFC 3659 section 7.8).
func (s factSet) feat() string {
	var b strings.Builder
	for _, f := range factNames {
		b.WriteString(f.name)
		if s&f.fact != 0 {
			b.WriteByte('*')
		}
		b.WriteByte(';')
	}
	return b.String()
}

// String returns the selected facts as "type;size;" for the OPTS MLST reply.
func (s factSet) String() string {
	var b strings.Builder
	for _, f := range factNames {
		if s&f.fact != 0 {
			b.WriteString(f.name + ";")
		}
	}
	return b.String()
}

// parseFacts returns the known facts named in the argument of OPTS MLST;
// unknown names are ignored (RFC 3659 section 7.9).
func parseFacts(arg string) factSet {
	var s factSet
	for _, name := range strings.Split(arg, ";") {
		for _, f := range factNames {
			if strings.EqualFold(strings.TrimSpace(name), f.name) {
				s |= f.fact
			}
		}
	}
	return s
}

// factLine returns the facts of n followed by a space and name, the entry
// format of MLSD and MLST (RFC 3659 section 7.2).
func factLine(name string, n *node, facts factSet) string {
	var b strings.Builder
	if facts&factType != 0 {
		if n.dir {
			b.WriteString("type=dir;")
		} else {
			b.WriteString("type=file;")
		}
	}
	if facts&factSize != 0 && !n.dir {
		b.WriteString("size=" + strconv.Itoa(len(n.data)) + ";")
	}
	if facts&factModify != 0 && !n.mod.IsZero() {
		b.WriteString("modify=" + n.mod.UTC().Format(timeFormat) + ";")
	}
	b.WriteByte(' ')
	b.WriteString(name)
	return b.String()
}

// lsLine returns the entry of n in the style of "ls -l", as vsftpd writes it:
//
//	-rw-r--r--    1 ftp      ftp          1234 Jan 02 15:04 name
//
// with the year instead of the time for dates more than six months from now.
func lsLine(name string, n *node, now time.Time) string {
	mode, links, size := "-rw-r--r--", 1, len(n.data)
	if n.dir {
		mode, links, size = "drwxr-xr-x", 2, 4096
	}
	mod := n.mod.UTC()
	stamp := mod.Format("Jan 02 15:04")
	if d := now.Sub(mod); d > 180*24*time.Hour || d < -180*24*time.Hour {
		stamp = mod.Format("Jan 02  2006")
	}
	return fmt.Sprintf("%s %4d %-8s %-8s %12d %s %s", mode, links, "ftp", "ftp", size, stamp, name)
}

// listPath splits the argument of LIST, NLST or STAT into its path, dropping
// leading ls options such as "-a" or "-la" that clients send.
func listPath(arg string) string {
	for strings.HasPrefix(arg, "-") {
		_, rest, _ := strings.Cut(arg, " ")
		arg = strings.TrimLeft(rest, " ")
	}
	return arg
}

// listing is one resolved LIST, NLST, MLSD or STAT target.
type listing struct {
	entries []dirEntry
	single  bool // the target is a file, listed alone under the name given
}

// resolveListing finds what a listing of arg shows: the entries of a
// directory, a single file, or, for a last element with wildcards (*, ?, [),
// the matching entries of its directory, as ls would after shell expansion.
func (c *session) resolveListing(arg string) (listing, error) {
	p := c.cwd
	if arg != "" {
		p = c.abs(arg)
	}
	n, err := c.srv.FS.stat(p)
	if err == nil {
		if !n.dir {
			name := arg
			if name == "" {
				name = path.Base(p)
			}
			return listing{entries: []dirEntry{{name: name, node: n}}, single: true}, nil
		}
		entries, err := c.srv.FS.list(p)
		return listing{entries: entries}, err
	}
	base := path.Base(p)
	if !strings.ContainsAny(base, "*?[") {
		return listing{}, err
	}
	if _, perr := path.Match(base, ""); perr != nil {
		return listing{}, err
	}
	all, lerr := c.srv.FS.list(path.Dir(p))
	if lerr != nil {
		return listing{}, err
	}
	var matched []dirEntry
	for _, e := range all {
		if ok, _ := path.Match(base, e.name); ok {
			matched = append(matched, e)
		}
	}
	return listing{entries: matched}, nil
}
