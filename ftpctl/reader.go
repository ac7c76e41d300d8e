package ftpctl

import (
	"bufio"
	"errors"
	"io"
	"strings"
)

// DefaultMaxLine bounds a control line (command or reply line) when
// NewReader is given no limit. RFC 959 sets none; 4 KiB holds any real path.
const DefaultMaxLine = 4096

// MaxReplyLines and MaxReplyBytes bound a multi-line reply, so a backend
// that never ends one cannot make a reader buffer without end: lines of
// the full line limit would otherwise reach MaxReplyLines times 4 KiB.
// The longest real replies (STAT of a directory, HELP, FEAT) are far below.
const (
	MaxReplyLines = 1000
	MaxReplyBytes = 64 << 10 // the text of every line, summed
)

// Reader reads control lines from a caller's *bufio.Reader with a mandatory
// line limit. It keeps no other state, so the caller may replace the
// underlying reader (after AUTH TLS) by making a new Reader.
type Reader struct {
	br  *bufio.Reader
	max int
}

// NewReader returns a Reader over br whose lines may be at most maxLine bytes
// long, CRLF excluded; maxLine <= 0 means DefaultMaxLine.
func NewReader(br *bufio.Reader, maxLine int) *Reader {
	if maxLine <= 0 {
		maxLine = DefaultMaxLine
	}
	return &Reader{br: br, max: maxLine}
}

// Buffered reports how many bytes have been read from the connection but not
// yet returned as lines. After AUTH TLS this must be zero: bytes sent in
// plaintext behind AUTH must not be taken as commands (the STARTTLS
// command-injection class, CVE-2011-0411).
func (r *Reader) Buffered() int { return r.br.Buffered() }

// ReadLine returns the next line without its line ending (CRLF, or a bare LF
// from lax peers). A line over the limit is discarded to its end without being
// buffered and ErrLineTooLong is returned; the Reader stays usable. A last
// line cut off by EOF yields io.ErrUnexpectedEOF.
func (r *Reader) ReadLine() (string, error) {
	var (
		line    []byte
		tooLong bool
	)
	for {
		frag, err := r.br.ReadSlice('\n')
		if !tooLong {
			if len(line)+len(frag) > r.max+2 {
				tooLong, line = true, nil
			} else {
				line = append(line, frag...)
			}
		}
		if err == nil {
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) && (len(line) > 0 || tooLong) {
			return "", io.ErrUnexpectedEOF
		}
		return "", err
	}
	if tooLong {
		return "", ErrLineTooLong
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if len(line) > r.max {
		return "", ErrLineTooLong
	}
	return string(line), nil
}

// ReadCommand reads and parses one command line.
func (r *Reader) ReadCommand() (Command, error) {
	line, err := r.ReadLine()
	if err != nil {
		return Command{}, err
	}
	return ParseCommand(line)
}

// ReadReply reads one complete reply, all lines of a multi-line reply
// included (RFC 959 section 4.2: "123-First line" ... "123 Last line").
func (r *Reader) ReadReply() (Reply, error) {
	line, err := r.ReadLine()
	if err != nil {
		return Reply{}, err
	}
	code, multi, text, err := parseReplyLine(line)
	if err != nil {
		return Reply{}, err
	}
	rep := Reply{Code: code, Lines: []string{text}}
	if !multi {
		return rep, nil
	}
	end := line[:3] + " "
	size := len(text)
	for {
		if len(rep.Lines) >= MaxReplyLines || size > MaxReplyBytes {
			return Reply{}, protoErr("multi-line reply too long", line)
		}
		l, err := r.ReadLine()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return Reply{}, err
		}
		switch {
		case strings.HasPrefix(l, end):
			rep.Lines = append(rep.Lines, l[4:])
			return rep, nil
		case l == line[:3]:
			// "211" alone closes the reply for servers that omit the space.
			rep.Lines = append(rep.Lines, "")
			return rep, nil
		}
		rep.Lines = append(rep.Lines, l)
		size += len(l)
	}
}

// parseReplyLine splits the first line of a reply into its code, whether
// more lines follow, and its text.
func parseReplyLine(line string) (Code, bool, string, error) {
	if len(line) < 3 {
		return 0, false, "", protoErr("short reply line", line)
	}
	code := 0
	for i := 0; i < 3; i++ {
		c := line[i]
		if c < '0' || c > '9' {
			return 0, false, "", protoErr("reply code is not three digits", line)
		}
		code = code*10 + int(c-'0')
	}
	if !Code(code).Valid() {
		return 0, false, "", protoErr("reply code out of range", line)
	}
	if len(line) == 3 {
		return Code(code), false, "", nil
	}
	switch line[3] {
	case ' ':
		return Code(code), false, line[4:], nil
	case '-':
		return Code(code), true, line[4:], nil
	}
	return 0, false, "", protoErr("reply code not followed by space or dash", line)
}
