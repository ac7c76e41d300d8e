package ftpctl

import (
	"bufio"
	"bytes"
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
// line limit. It keeps no other state than whether an overlong line's end
// is still unread, so the caller may replace the underlying reader (after
// AUTH TLS) by making a new Reader.
type Reader struct {
	br  *bufio.Reader
	max int
	// rest: the last line was over the limit and its end has not been
	// read; ReadLine refuses to go on until SkipLine.
	rest bool
}

// NewReader returns a Reader over br whose lines may be at most maxLine bytes
// long, CRLF excluded; maxLine <= 0 means DefaultMaxLine.
func NewReader(br *bufio.Reader, maxLine int) *Reader {
	if maxLine <= 0 {
		maxLine = DefaultMaxLine
	}
	return &Reader{br: br, max: maxLine}
}

// Limit is the longest line the Reader accepts, CRLF excluded.
func (r *Reader) Limit() int { return r.max }

// Buffered reports how many bytes have been read from the connection but not
// yet returned as lines. After AUTH TLS this must be zero: bytes sent in
// plaintext behind AUTH must not be taken as commands (the STARTTLS
// command-injection class, CVE-2011-0411).
func (r *Reader) Buffered() int { return r.br.Buffered() }

// ReadLine returns the next line without its line ending (CRLF, or a bare LF
// from lax peers). A last line cut off by EOF yields io.ErrUnexpectedEOF.
//
// A line over the limit yields ErrLineTooLong as soon as the limit is
// passed, whether or not its end has arrived: a peer that never ends a
// line cannot keep the reader reading. What was read of it is dropped, and
// the rest is left unread; ReadLine then keeps returning ErrLineTooLong
// until the caller either calls SkipLine, to go on with the next line, or
// gives up the connection. The rest of the line is not a command, and
// reading it as one would run whatever the peer put there.
func (r *Reader) ReadLine() (string, error) {
	if r.rest {
		return "", ErrLineTooLong
	}
	var line []byte
	for {
		// What has arrived, without waiting for more than one read: the
		// limit is judged on every byte as it comes, not once a buffer
		// fills.
		if r.br.Buffered() == 0 {
			if _, err := r.br.Peek(1); err != nil {
				if errors.Is(err, io.EOF) && len(line) > 0 {
					return "", io.ErrUnexpectedEOF
				}
				return "", err
			}
		}
		buf, _ := r.br.Peek(r.br.Buffered())
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			r.br.Discard(i + 1)
			if len(line)+i+1 > r.max+2 {
				return "", ErrLineTooLong // its end is read: nothing left over
			}
			line = append(line, buf[:i+1]...)
			break
		}
		r.br.Discard(len(buf))
		if len(line)+len(buf) > r.max+2 {
			r.rest = true
			return "", ErrLineTooLong
		}
		line = append(line, buf...)
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

// SkipLine discards the rest of a line that ReadLine found too long, up to
// and including its LF, without buffering it; after any other line it
// does nothing. It waits for that LF as long as the peer takes: only a
// caller that trusts the peer to end its line (a test server) should call
// it, and one reading from a stranger ends the connection instead.
func (r *Reader) SkipLine() error {
	for r.rest {
		_, err := r.br.ReadSlice('\n')
		switch {
		case err == nil:
			r.rest = false
		case errors.Is(err, io.EOF):
			return io.ErrUnexpectedEOF
		case !errors.Is(err, bufio.ErrBufferFull):
			return err
		}
	}
	return nil
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
