package ftpctl

import (
	"io"
	"strconv"
	"strings"
)

// Reply is one complete server reply.
//
// Lines[0] is the text of the first line and, for a multi-line reply, the last
// element is the text of the closing line, both without the code. Lines in
// between are kept verbatim as the server sent them (some repeat the code with a
// dash, FEAT indents with a space), so a relayed reply reaches the client as
// the server wrote it.
type Reply struct {
	Code  Code
	Lines []string
}

// NewReply builds a reply; a text with newlines becomes a multi-line reply
// whose middle lines are indented by one space, so none can be mistaken for
// the closing line.
func NewReply(code Code, text string) Reply {
	lines := strings.Split(text, "\n")
	for i := 1; i < len(lines)-1; i++ {
		lines[i] = " " + lines[i]
	}
	return Reply{Code: code, Lines: lines}
}

// Text returns the first line's text, where single-line replies such as 227
// and 229 carry their arguments.
func (r Reply) Text() string {
	if len(r.Lines) == 0 {
		return ""
	}
	return r.Lines[0]
}

// Multiline reports whether the reply spans more than one line.
func (r Reply) Multiline() bool { return len(r.Lines) > 1 }

// AppendTo appends the wire form of r, CRLF line endings included, to b.
func (r Reply) AppendTo(b []byte) []byte {
	var code [3]byte
	strconv.AppendInt(code[:0], int64(r.Code), 10)
	lines := r.Lines
	if len(lines) == 0 {
		lines = []string{""}
	}
	last := len(lines) - 1
	for i, l := range lines {
		l = cleanLine(l)
		switch {
		case i == last:
			b = append(b, code[:]...)
			b = append(b, ' ')
		case i == 0:
			b = append(b, code[:]...)
			b = append(b, '-')
		case closesReply(l, string(code[:])):
			// A middle line must not look like the closing line (RFC 959 4.2).
			b = append(b, ' ')
		}
		b = append(b, l...)
		b = append(b, '\r', '\n')
	}
	return b
}

// String returns the wire form of r.
func (r Reply) String() string { return string(r.AppendTo(nil)) }

// WriteTo writes r to w in one Write, so a reply is never interleaved.
func (r Reply) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(r.AppendTo(make([]byte, 0, 64)))
	return int64(n), err
}

// closesReply reports whether a reader would take l as the closing line of a
// multi-line reply with the given code: "123 text", or "123" alone as some
// servers send it (see Reader.ReadReply).
func closesReply(l, code string) bool {
	return strings.HasPrefix(l, code) && (len(l) == len(code) || l[len(code)] == ' ')
}

// cleanLine drops CR and LF from text that is about to become one line, so
// no caller can smuggle a second reply into the stream.
func cleanLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	// Byte-wise: text is bytes, not UTF-8, and must pass through untouched.
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '\r' && s[i] != '\n' {
			b = append(b, s[i])
		}
	}
	return string(b)
}
