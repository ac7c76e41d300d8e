package ftpctl_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/ftpsgate/ftpsgate/ftpctl"
)

func TestParseCommand(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		line string
		want ftpctl.Command
		wire string // Command.String; "" means line itself
	}{
		{name: "RFC959-4.1.1/USER", line: "USER anonymous", want: ftpctl.Command{Verb: "USER", Arg: "anonymous"}},
		{name: "RFC959-4.1.1/PASS", line: "PASS guest@example.com", want: ftpctl.Command{Verb: "PASS", Arg: "guest@example.com"}},
		{name: "RFC959-4.1.1/ACCT", line: "ACCT billing-42", want: ftpctl.Command{Verb: "ACCT", Arg: "billing-42"}},
		{name: "RFC959-4.1.1/CWD", line: "CWD /pub/incoming", want: ftpctl.Command{Verb: "CWD", Arg: "/pub/incoming"}},
		{name: "RFC959-4.1.1/QUIT", line: "QUIT", want: ftpctl.Command{Verb: "QUIT"}},
		{name: "RFC959-4.1.2/PORT", line: "PORT 132,235,1,2,24,131", want: ftpctl.Command{Verb: "PORT", Arg: "132,235,1,2,24,131"}},
		{name: "RFC959-4.1.2/PASV", line: "PASV", want: ftpctl.Command{Verb: "PASV"}},
		{name: "RFC959-4.1.2/TYPE", line: "TYPE I", want: ftpctl.Command{Verb: "TYPE", Arg: "I"}},
		{name: "RFC959-4.1.3/RETR", line: "RETR file.bin", want: ftpctl.Command{Verb: "RETR", Arg: "file.bin"}},
		{name: "RFC959-4.1.3/SITE", line: "SITE CHMOD 755 run.sh", want: ftpctl.Command{Verb: "SITE", Arg: "CHMOD 755 run.sh"}},
		{name: "RFC959-4.1.3/ABOR", line: "ABOR", want: ftpctl.Command{Verb: "ABOR"}},
		{
			// RFC 959 section 4.1.3: "Telnet IP" and "Telnet Synch"
			// (IAC IP, IAC DM) before ABOR are not part of the command.
			name: "RFC959-4.1.3/ABOR-after-IAC-IP-IAC-DM",
			line: "\xff\xf4\xff\xf2ABOR",
			want: ftpctl.Command{Verb: "ABOR"},
			wire: "ABOR",
		},
		{
			name: "RFC959-4.1.3/STAT-after-IAC-IP-IAC-DM",
			line: "\xff\xf4\xff\xf2STAT",
			want: ftpctl.Command{Verb: "STAT"},
			wire: "STAT",
		},
		{
			// RFC 854: option negotiation (IAC DO SUPPRESS-GO-AHEAD) is
			// three bytes, dropped as a whole.
			name: "RFC854/IAC-DO-option-dropped",
			line: "\xff\xfd\x03NOOP",
			want: ftpctl.Command{Verb: "NOOP"},
			wire: "NOOP",
		},
		{
			name: "RFC854/IAC-WONT-option-in-argument",
			line: "CWD a\xff\xfc\x01b",
			want: ftpctl.Command{Verb: "CWD", Arg: "ab"},
			wire: "CWD ab",
		},
		{
			// RFC 854: a data byte 0xFF travels as IAC IAC; the
			// server unescapes it, so the proxy passes both on.
			name: "RFC854/IAC-IAC-kept",
			line: "RETR \xff\xff.bin",
			want: ftpctl.Command{Verb: "RETR", Arg: "\xff\xff.bin"},
		},
		{
			name: "RFC854/IAC-IAC-then-command-byte-kept",
			line: "RETR \xff\xff\xf4",
			want: ftpctl.Command{Verb: "RETR", Arg: "\xff\xff\xf4"},
		},
		{
			name: "RFC854/lone-IAC-at-end-kept",
			line: "RETR caf\xe9\xff",
			want: ftpctl.Command{Verb: "RETR", Arg: "caf\xe9\xff"},
		},
		{
			name: "RFC854/IAC-before-data-byte-kept",
			line: "RETR a\xffb",
			want: ftpctl.Command{Verb: "RETR", Arg: "a\xffb"},
		},
		{name: "RFC2428-2/EPRT-IPv4", line: "EPRT |1|132.235.1.2|6275|", want: ftpctl.Command{Verb: "EPRT", Arg: "|1|132.235.1.2|6275|"}},
		{name: "RFC2428-2/EPRT-IPv6", line: "EPRT |2|1080::8:800:200C:417A|5282|", want: ftpctl.Command{Verb: "EPRT", Arg: "|2|1080::8:800:200C:417A|5282|"}},
		{name: "RFC2428-3/EPSV", line: "EPSV", want: ftpctl.Command{Verb: "EPSV"}},
		{name: "RFC2428-3/EPSV-ALL", line: "EPSV ALL", want: ftpctl.Command{Verb: "EPSV", Arg: "ALL"}},
		{name: "RFC2428-3/EPSV-family", line: "EPSV 2", want: ftpctl.Command{Verb: "EPSV", Arg: "2"}},
		{name: "RFC2389-3/FEAT", line: "FEAT", want: ftpctl.Command{Verb: "FEAT"}},
		{name: "RFC2389-4/OPTS", line: "OPTS UTF8 ON", want: ftpctl.Command{Verb: "OPTS", Arg: "UTF8 ON"}},
		{name: "RFC4217-4/AUTH-TLS", line: "AUTH TLS", want: ftpctl.Command{Verb: "AUTH", Arg: "TLS"}},
		{name: "RFC4217-4/AUTH-SSL", line: "AUTH SSL", want: ftpctl.Command{Verb: "AUTH", Arg: "SSL"}},
		{name: "RFC4217/PBSZ", line: "PBSZ 0", want: ftpctl.Command{Verb: "PBSZ", Arg: "0"}},
		{name: "RFC4217/PROT-P", line: "PROT P", want: ftpctl.Command{Verb: "PROT", Arg: "P"}},
		{name: "RFC4217/PROT-C", line: "PROT C", want: ftpctl.Command{Verb: "PROT", Arg: "C"}},
		{name: "RFC4217/CCC", line: "CCC", want: ftpctl.Command{Verb: "CCC"}},
		{name: "RFC7151/HOST", line: "HOST ftp.example.com", want: ftpctl.Command{Verb: "HOST", Arg: "ftp.example.com"}},
		{name: "RFC959/X-verb", line: "XCWD /tmp", want: ftpctl.Command{Verb: "XCWD", Arg: "/tmp"}},

		// RFC 959 section 5.3: verbs are case-insensitive; arguments are not.
		{name: "RFC959-5.3/lower-case-verb", line: "user Alice", want: ftpctl.Command{Verb: "USER", Arg: "Alice"}, wire: "USER Alice"},
		{name: "RFC959-5.3/mixed-case-verb", line: "Feat", want: ftpctl.Command{Verb: "FEAT"}, wire: "FEAT"},
		{name: "RFC959-5.3/lower-case-AUTH", line: "auth tls", want: ftpctl.Command{Verb: "AUTH", Arg: "tls"}, wire: "AUTH tls"},
		{name: "verb-of-eight-letters", line: "abcdefgh x", want: ftpctl.Command{Verb: "ABCDEFGH", Arg: "x"}, wire: "ABCDEFGH x"},

		// Arguments are bytes, kept exactly.
		{name: "arg/Latin-1-byte", line: "STOR caf\xe9.txt", want: ftpctl.Command{Verb: "STOR", Arg: "caf\xe9.txt"}},
		{name: "arg/invalid-UTF-8", line: "MKD \xc3\x28\xa0\xa1", want: ftpctl.Command{Verb: "MKD", Arg: "\xc3\x28\xa0\xa1"}},
		{name: "arg/UTF-8", line: "RETR 日本語.txt", want: ftpctl.Command{Verb: "RETR", Arg: "日本語.txt"}},
		{name: "arg/leading-and-trailing-spaces", line: "CWD  spaced dir  ", want: ftpctl.Command{Verb: "CWD", Arg: " spaced dir  "}},
		{name: "arg/only-spaces", line: "STOR   ", want: ftpctl.Command{Verb: "STOR", Arg: "  "}},
		{name: "arg/tab", line: "STOR a\tb", want: ftpctl.Command{Verb: "STOR", Arg: "a\tb"}},
		{name: "arg/NUL", line: "STOR a\x00b", want: ftpctl.Command{Verb: "STOR", Arg: "a\x00b"}},
		{name: "arg/empty-after-space", line: "NOOP ", want: ftpctl.Command{Verb: "NOOP"}, wire: "NOOP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ftpctl.ParseCommand(tt.line)
			if err != nil {
				t.Fatalf("ParseCommand(%q): %v", tt.line, err)
			}
			if got != tt.want {
				t.Fatalf("ParseCommand(%q) = %+q, want %+q", tt.line, got, tt.want)
			}
			wire := tt.wire
			if wire == "" {
				wire = tt.line
			}
			if s := got.String(); s != wire {
				t.Errorf("String() = %q, want %q", s, wire)
			}
			if b := got.AppendTo([]byte("prefix:")); string(b) != "prefix:"+wire+"\r\n" {
				t.Errorf("AppendTo = %q, want %q", b, "prefix:"+wire+"\r\n")
			}
			// What goes on the wire reads back as the same command.
			again, err := newReader(string(got.AppendTo(nil)), 0).ReadCommand()
			if err != nil || again != got {
				t.Errorf("ReadCommand(AppendTo) = %+q, %v; want %+q", again, err, got)
			}
		})
	}
}

func TestParseCommandErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		line string
	}{
		{"empty", ""},
		{"only-space", " "},
		{"leading-space", " NOOP"},
		{"digits", "123"},
		{"digit-in-verb", "NO0P"},
		{"reply-instead-of-command", "220 ready"},
		{"verb-too-long", "ABCDEFGHI"},
		{"verb-too-long-with-arg", "RETRIEVEIT file"},
		{"tab-after-verb", "NOOP\tx"},
		{"dash-in-verb", "X-CWD /"},
		{"non-ASCII-verb", "caf\xe9"},
		{"NUL-verb", "\x00"},
		{"only-Telnet", "\xff\xf4\xff\xf2"},
		{"Telnet-then-space", "\xff\xf4 ABOR"},
		{"TLS-ClientHello", "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ftpctl.ParseCommand(tt.line)
			var pe *ftpctl.ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("ParseCommand(%q) = %+q, %v; want *ftpctl.ProtocolError", tt.line, got, err)
			}
			if pe.Msg == "" {
				t.Errorf("ProtocolError for %q has no message", tt.line)
			}
		})
	}
}

// TestRedacted checks that PASS and ACCT arguments never reach a log.
func TestRedacted(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		line string
		want string
	}{
		{"RFC959-4.1.1/PASS", "PASS s3cr3t", "PASS ****"},
		{"RFC959-4.1.1/PASS-lower-case", "pass s3cr3t", "PASS ****"},
		{"RFC959-4.1.1/PASS-with-spaces", "PASS  correct horse battery staple ", "PASS ****"},
		{"RFC959-4.1.1/PASS-non-UTF-8", "PASS p\xe4ss", "PASS ****"},
		{"RFC959-4.1.1/ACCT", "ACCT s3cr3t", "ACCT ****"},
		{"RFC959-4.1.1/PASS-empty", "PASS", "PASS"},
		{"RFC959-4.1.1/USER-shown", "USER alice", "USER alice"},
		{"RFC959-4.1.3/STOR-shown", "STOR PASS s3cr3t", "STOR PASS s3cr3t"},
		{"RFC4217-4/AUTH-shown", "AUTH TLS", "AUTH TLS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cmd, err := ftpctl.ParseCommand(tt.line)
			if err != nil {
				t.Fatalf("ParseCommand(%q): %v", tt.line, err)
			}
			got := cmd.Redacted()
			if got != tt.want {
				t.Errorf("Redacted() = %q, want %q", got, tt.want)
			}
			if (cmd.Verb == "PASS" || cmd.Verb == "ACCT") && cmd.Arg != "" && strings.Contains(got, cmd.Arg) {
				t.Errorf("Redacted() = %q shows the secret %q", got, cmd.Arg)
			}
		})
	}
}
