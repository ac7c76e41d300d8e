package ftpctl

import (
	"errors"
	"fmt"
)

// ErrLineTooLong is returned for a line longer than the reader's limit, as
// soon as the limit is passed: the rest of that line is left unread
// (Reader.SkipLine).
var ErrLineTooLong = errors.New("ftpctl: line too long")

// ProtocolError reports malformed input: a line that is not a command, a reply
// that breaks RFC 959's format, an address argument that does not parse.
type ProtocolError struct {
	Msg  string // what is wrong, lowercase
	Line string // the offending input, truncated for logs
}

func (e *ProtocolError) Error() string {
	if e.Line == "" {
		return "ftpctl: " + e.Msg
	}
	return fmt.Sprintf("ftpctl: %s: %q", e.Msg, e.Line)
}

func protoErr(msg, line string) error {
	const max = 80
	if len(line) > max {
		line = line[:max] + "..."
	}
	return &ProtocolError{Msg: msg, Line: line}
}

// ReplyError is a well-formed reply whose code was not the one wanted.
type ReplyError struct {
	Command string // the verb that was sent, if known
	Reply   Reply
}

func (e *ReplyError) Error() string {
	if e.Command == "" {
		return fmt.Sprintf("ftpctl: unexpected reply %d %s", e.Reply.Code, e.Reply.Text())
	}
	return fmt.Sprintf("ftpctl: %s: unexpected reply %d %s", e.Command, e.Reply.Code, e.Reply.Text())
}
