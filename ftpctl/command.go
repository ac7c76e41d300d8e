package ftpctl

import "strings"

// maxVerb bounds a verb: RFC 959 verbs have 3 or 4 letters, extensions such
// as "XCWD" or "CLNT" no more; 8 leaves room without accepting noise.
const maxVerb = 8

// Command is one client command line. Commands are bytes, not UTF-8: Arg
// holds the raw bytes after the first space, so paths pass through untouched.
type Command struct {
	Verb string // upper-case ASCII letters
	Arg  string // raw, possibly empty
}

// ParseCommand parses a line (without its line ending) into a Command.
// Telnet IAC control sequences, which clients put before ABOR (RFC 959
// section 4.1.3: "IP" and "Synch"), are removed; an escaped 0xFF (IAC IAC)
// stays as sent for the server to unescape.
func ParseCommand(line string) (Command, error) {
	line = stripTelnet(line)
	verb, arg, _ := strings.Cut(line, " ")
	if verb == "" {
		return Command{}, protoErr("empty command", line)
	}
	if len(verb) > maxVerb {
		return Command{}, protoErr("verb too long", line)
	}
	for i := 0; i < len(verb); i++ {
		c := verb[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return Command{}, protoErr("verb is not letters", line)
		}
	}
	return Command{Verb: strings.ToUpper(verb), Arg: arg}, nil
}

// String returns the command as it goes on the wire, without CRLF.
func (c Command) String() string {
	if c.Arg == "" {
		return c.Verb
	}
	return c.Verb + " " + c.Arg
}

// AppendTo appends the wire form of c, CRLF included, to b.
func (c Command) AppendTo(b []byte) []byte {
	b = append(b, c.Verb...)
	if c.Arg != "" {
		b = append(b, ' ')
		b = append(b, c.Arg...)
	}
	return append(b, '\r', '\n')
}

// Redacted returns the command for logs: the arguments of PASS and ACCT,
// which are secrets, are replaced.
func (c Command) Redacted() string {
	switch c.Verb {
	case "PASS", "ACCT":
		if c.Arg != "" {
			return c.Verb + " ****"
		}
	}
	return c.String()
}

// Telnet bytes, RFC 854.
const (
	iac  = 0xFF
	will = 0xFB // WILL, WONT, DO, DONT (0xFB..0xFE) take an option byte
	se   = 0xF0 // first command byte
)

// stripTelnet removes Telnet command sequences (IAC x, IAC WILL/WONT/DO/DONT
// opt) and keeps IAC IAC as it is.
func stripTelnet(s string) string {
	if strings.IndexByte(s, iac) < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != iac || i+1 >= len(s) {
			b = append(b, s[i])
			continue
		}
		switch c := s[i+1]; {
		case c == iac:
			b = append(b, iac, iac)
			i++
		case c >= will:
			i += 2
		case c >= se:
			i++
		default:
			b = append(b, s[i])
		}
	}
	return string(b)
}
