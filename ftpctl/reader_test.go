package ftpctl_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/ftpctl"
)

// newReader returns a Reader over s with the given line limit.
func newReader(s string, maxLine int) *ftpctl.Reader {
	return ftpctl.NewReader(bufio.NewReader(strings.NewReader(s)), maxLine)
}

// nextReply follows every input in TestReadReply, so a test sees whether the
// reader consumed exactly one reply: no less, no more.
const nextReply = "200 NOOP ok.\r\n"

// Real replies, from the RFCs and captured from real servers. relay is what
// Reply.String gives back, when it differs from in: a relayed reply reaches
// the client as the server wrote it, line endings aside.
var replyTests = []struct {
	name  string
	in    string
	code  ftpctl.Code
	lines []string
	relay string
}{
	{
		name:  "RFC959-4.2/single-line",
		in:    "200 Command okay.\r\n",
		code:  ftpctl.CodeOK,
		lines: []string{"Command okay."},
	},
	{
		// The example of RFC 959 section 4.2: middle lines are free text,
		// even one that starts with another code.
		name: "RFC959-4.2/multi-line",
		in: "123-First line\r\n" +
			"Second line\r\n" +
			"  234 A line beginning with numbers\r\n" +
			"123 The last line\r\n",
		code:  123,
		lines: []string{"First line", "Second line", "  234 A line beginning with numbers", "The last line"},
	},
	{
		name: "RFC959-4.2/middle-line-with-another-code-and-space",
		in: "211-Status follows\r\n" +
			"212 is not 211\r\n" +
			"211 End\r\n",
		code:  ftpctl.CodeSystemStatus,
		lines: []string{"Status follows", "212 is not 211", "End"},
	},
	{
		name: "RFC959-4.2/middle-line-code-without-separator",
		in: "211-Status follows\r\n" +
			"2110 bytes\r\n" +
			"211 End\r\n",
		code:  ftpctl.CodeSystemStatus,
		lines: []string{"Status follows", "2110 bytes", "End"},
	},
	{
		name:  "RFC959-4.2/code-alone",
		in:    "200\r\n",
		code:  ftpctl.CodeOK,
		lines: []string{""},
		relay: "200 \r\n",
	},
	{
		name:  "RFC959-4.2/empty-text",
		in:    "200 \r\n",
		code:  ftpctl.CodeOK,
		lines: []string{""},
	},
	{
		name:  "RFC959-4.2/preliminary-150",
		in:    "150 Opening BINARY mode data connection for file.bin (1048576 bytes).\r\n",
		code:  ftpctl.CodeFileStatusOK,
		lines: []string{"Opening BINARY mode data connection for file.bin (1048576 bytes)."},
	},
	{
		name:  "RFC959-4.2/bare-LF",
		in:    "220 lax server ready\n",
		code:  ftpctl.CodeReady,
		lines: []string{"lax server ready"},
		relay: "220 lax server ready\r\n",
	},
	{
		name:  "RFC959-4.2/multi-line-bare-LF",
		in:    "211-Features:\n UTF8\n211 End\n",
		code:  ftpctl.CodeSystemStatus,
		lines: []string{"Features:", " UTF8", "End"},
		relay: "211-Features:\r\n UTF8\r\n211 End\r\n",
	},
	{
		// Commands are bytes: so are replies. 0xE9 is "é" in Latin-1.
		name:  "RFC959-4.2/non-UTF-8-bytes",
		in:    "257 \"/caf\xe9/\xff\" created\r\n",
		code:  257,
		lines: []string{"\"/caf\xe9/\xff\" created"},
	},
	{
		name:  "RFC959-4.2/CR-inside-line-kept",
		in:    "200 a\rb\r\n",
		code:  ftpctl.CodeOK,
		lines: []string{"a\rb"},
		relay: "200 ab\r\n",
	},
	{
		name:  "RFC2428-3/EPSV-229",
		in:    "229 Entering Extended Passive Mode (|||6446|)\r\n",
		code:  ftpctl.CodeEnteringExtPassive,
		lines: []string{"Entering Extended Passive Mode (|||6446|)"},
	},
	{
		name:  "RFC2428-2/EPRT-522",
		in:    "522 Network protocol not supported, use (1)\r\n",
		code:  ftpctl.CodeNetProtoNotSupp,
		lines: []string{"Network protocol not supported, use (1)"},
	},
	{
		name: "RFC2389-3.2/FEAT",
		in: "211-Extensions supported:\r\n" +
			" MLST size*;create;modify*;perm;media-type\r\n" +
			" SIZE\r\n" +
			" COMPRESSION\r\n" +
			" MDTM\r\n" +
			"211 END\r\n",
		code:  ftpctl.CodeSystemStatus,
		lines: []string{"Extensions supported:", " MLST size*;create;modify*;perm;media-type", " SIZE", " COMPRESSION", " MDTM", "END"},
	},
	{
		name:  "RFC4217-4/AUTH-TLS-234",
		in:    "234 AUTH TLS successful\r\n",
		code:  ftpctl.CodeAuthOK,
		lines: []string{"AUTH TLS successful"},
	},
	{
		name:  "RFC4217/PBSZ-200",
		in:    "200 PBSZ=0\r\n",
		code:  ftpctl.CodeOK,
		lines: []string{"PBSZ=0"},
	},
	{
		name:  "RFC4217/PROT-536",
		in:    "536 Requested PROT level not supported by mechanism.\r\n",
		code:  ftpctl.CodeProtNotSupported,
		lines: []string{"Requested PROT level not supported by mechanism."},
	},
	{
		name:  "vsftpd/greeting",
		in:    "220 (vsFTPd 3.0.5)\r\n",
		code:  ftpctl.CodeReady,
		lines: []string{"(vsFTPd 3.0.5)"},
	},
	{
		name:  "vsftpd/AUTH-TLS",
		in:    "234 Proceed with negotiation.\r\n",
		code:  ftpctl.CodeAuthOK,
		lines: []string{"Proceed with negotiation."},
	},
	{
		name:  "vsftpd/PROT-P",
		in:    "200 PROT now Private.\r\n",
		code:  ftpctl.CodeOK,
		lines: []string{"PROT now Private."},
	},
	{
		name:  "vsftpd/PASV",
		in:    "227 Entering Passive Mode (127,0,0,1,117,48).\r\n",
		code:  ftpctl.CodeEnteringPassive,
		lines: []string{"Entering Passive Mode (127,0,0,1,117,48)."},
	},
	{
		name: "vsftpd/FEAT",
		in: "211-Features:\r\n" +
			" AUTH SSL\r\n AUTH TLS\r\n EPRT\r\n EPSV\r\n MDTM\r\n PASV\r\n PBSZ\r\n" +
			" PROT\r\n REST STREAM\r\n SIZE\r\n TVFS\r\n UTF8\r\n" +
			"211 End\r\n",
		code: ftpctl.CodeSystemStatus,
		lines: []string{"Features:", " AUTH SSL", " AUTH TLS", " EPRT", " EPSV", " MDTM", " PASV", " PBSZ",
			" PROT", " REST STREAM", " SIZE", " TVFS", " UTF8", "End"},
	},
	{
		name: "vsftpd/HELP",
		in: "214-The following commands are recognized.\r\n" +
			" ABOR ACCT ALLO APPE CDUP CWD  DELE EPRT EPSV FEAT HELP LIST MDTM MKD\r\n" +
			" MODE NLST NOOP OPTS PASS PASV PORT PWD  QUIT REIN REST RETR RMD  RNFR\r\n" +
			"214 Help OK.\r\n",
		code: 214,
		lines: []string{"The following commands are recognized.",
			" ABOR ACCT ALLO APPE CDUP CWD  DELE EPRT EPSV FEAT HELP LIST MDTM MKD",
			" MODE NLST NOOP OPTS PASS PASV PORT PWD  QUIT REIN REST RETR RMD  RNFR",
			"Help OK."},
	},
	{
		// The first line of pure-ftpd's greeting starts its text with dashes.
		name: "pure-ftpd/greeting",
		in: "220---------- Welcome to Pure-FTPd [privsep] [TLS] ----------\r\n" +
			"220-You are user number 1 of 50 allowed.\r\n" +
			"220-Local time is now 14:02. Server port: 21.\r\n" +
			"220-This is a private system - No anonymous login\r\n" +
			"220-IPv6 connections are also welcome on this server.\r\n" +
			"220 You will be disconnected after 15 minutes of inactivity.\r\n",
		code: ftpctl.CodeReady,
		lines: []string{
			"--------- Welcome to Pure-FTPd [privsep] [TLS] ----------",
			"220-You are user number 1 of 50 allowed.",
			"220-Local time is now 14:02. Server port: 21.",
			"220-This is a private system - No anonymous login",
			"220-IPv6 connections are also welcome on this server.",
			"You will be disconnected after 15 minutes of inactivity.",
		},
	},
	{
		name: "pure-ftpd/FEAT",
		in: "211-Extensions supported:\r\n" +
			" UTF8\r\n EPRT\r\n IDLE\r\n MDTM\r\n SIZE\r\n MFMT\r\n REST STREAM\r\n" +
			" MLST type*;size*;sizd*;modify*;UNIX.mode*;UNIX.uid*;UNIX.gid*;unique*;\r\n" +
			" MLSD\r\n PRET\r\n AUTH TLS\r\n PBSZ\r\n PROT\r\n TVFS\r\n ESTA\r\n PASV\r\n EPSV\r\n ESTP\r\n" +
			"211 End.\r\n",
		code: ftpctl.CodeSystemStatus,
		lines: []string{"Extensions supported:",
			" UTF8", " EPRT", " IDLE", " MDTM", " SIZE", " MFMT", " REST STREAM",
			" MLST type*;size*;sizd*;modify*;UNIX.mode*;UNIX.uid*;UNIX.gid*;unique*;",
			" MLSD", " PRET", " AUTH TLS", " PBSZ", " PROT", " TVFS", " ESTA", " PASV", " EPSV", " ESTP",
			"End."},
	},
	{
		name:  "pure-ftpd/EPSV",
		in:    "229 Extended Passive mode OK (|||6446|)\r\n",
		code:  ftpctl.CodeEnteringExtPassive,
		lines: []string{"Extended Passive mode OK (|||6446|)"},
	},
	{
		name:  "ProFTPD/greeting",
		in:    "220 ProFTPD Server (Debian) [::ffff:127.0.0.1]\r\n",
		code:  ftpctl.CodeReady,
		lines: []string{"ProFTPD Server (Debian) [::ffff:127.0.0.1]"},
	},
	{
		name: "ProFTPD/FEAT",
		in: "211-Features:\r\n" +
			" AUTH TLS\r\n CCC\r\n CLNT\r\n EPRT\r\n EPSV\r\n HOST\r\n LANG en-US.UTF-8*;en-US\r\n MDTM\r\n" +
			" MFF modify;UNIX.group;UNIX.mode;\r\n MFMT\r\n" +
			" MLST modify*;perm*;size*;type*;unique*;UNIX.group*;UNIX.groupname*;UNIX.mode*;UNIX.owner*;UNIX.ownername*;\r\n" +
			" PBSZ\r\n PROT\r\n RANG STREAM\r\n REST STREAM\r\n SITE COPY\r\n SITE MKDIR\r\n SITE RMDIR\r\n" +
			" SITE SYMLINK\r\n SITE UTIME\r\n SIZE\r\n SSCN\r\n TVFS\r\n UTF8\r\n" +
			"211 End\r\n",
		code: ftpctl.CodeSystemStatus,
		lines: []string{"Features:",
			" AUTH TLS", " CCC", " CLNT", " EPRT", " EPSV", " HOST", " LANG en-US.UTF-8*;en-US", " MDTM",
			" MFF modify;UNIX.group;UNIX.mode;", " MFMT",
			" MLST modify*;perm*;size*;type*;unique*;UNIX.group*;UNIX.groupname*;UNIX.mode*;UNIX.owner*;UNIX.ownername*;",
			" PBSZ", " PROT", " RANG STREAM", " REST STREAM", " SITE COPY", " SITE MKDIR", " SITE RMDIR",
			" SITE SYMLINK", " SITE UTIME", " SIZE", " SSCN", " TVFS", " UTF8",
			"End"},
	},
	{
		// ProFTPD with DisplayLogin: every middle line repeats the code
		// with a dash, and must not end the reply.
		name: "ProFTPD/login-message-code-dash-lines",
		in: "230-Welcome to ftp.example.com.\r\n" +
			"230-\r\n" +
			"230-230 files are waiting for you.\r\n" +
			"230 User alice logged in\r\n",
		code:  ftpctl.CodeLoggedIn,
		lines: []string{"Welcome to ftp.example.com.", "230-", "230-230 files are waiting for you.", "User alice logged in"},
	},
	{
		name:  "IIS/greeting",
		in:    "220 Microsoft FTP Service\r\n",
		code:  ftpctl.CodeReady,
		lines: []string{"Microsoft FTP Service"},
	},
	{
		name:  "IIS/PASV-no-final-dot",
		in:    "227 Entering Passive Mode (10,0,0,5,195,80)\r\n",
		code:  ftpctl.CodeEnteringPassive,
		lines: []string{"Entering Passive Mode (10,0,0,5,195,80)"},
	},
	{
		name: "IIS/FEAT",
		in: "211-Extended features supported:\r\n" +
			" LANG EN*\r\n UTF8\r\n AUTH TLS;TLS-C;SSL;TLS-P;\r\n PBSZ\r\n PROT C;P;\r\n CCC\r\n HOST\r\n SIZE\r\n MDTM\r\n REST STREAM\r\n" +
			"211 END\r\n",
		code: ftpctl.CodeSystemStatus,
		lines: []string{"Extended features supported:",
			" LANG EN*", " UTF8", " AUTH TLS;TLS-C;SSL;TLS-P;", " PBSZ", " PROT C;P;", " CCC", " HOST", " SIZE", " MDTM", " REST STREAM",
			"END"},
	},
	{
		name:  "PASV-without-parentheses",
		in:    "227 =127,0,0,1,4,1\r\n",
		code:  ftpctl.CodeEnteringPassive,
		lines: []string{"=127,0,0,1,4,1"},
	},
	{
		name:  "PASV-0.0.0.0",
		in:    "227 Entering Passive Mode (0,0,0,0,195,80).\r\n",
		code:  ftpctl.CodeEnteringPassive,
		lines: []string{"Entering Passive Mode (0,0,0,0,195,80)."},
	},
	{
		// Some servers close a multi-line reply with the code alone.
		name:  "closed-by-bare-211",
		in:    "211-Features:\r\n MDTM\r\n SIZE\r\n211\r\n",
		code:  ftpctl.CodeSystemStatus,
		lines: []string{"Features:", " MDTM", " SIZE", ""},
		relay: "211-Features:\r\n MDTM\r\n SIZE\r\n211 \r\n",
	},
	{
		name:  "closed-by-211-and-space",
		in:    "211-Features:\r\n MDTM\r\n211 \r\n",
		code:  ftpctl.CodeSystemStatus,
		lines: []string{"Features:", " MDTM", ""},
	},
	{
		name:  "multi-line-first-line-empty",
		in:    "211-\r\n211 End\r\n",
		code:  ftpctl.CodeSystemStatus,
		lines: []string{"", "End"},
	},
	{
		name:  "multi-line-empty-middle-line",
		in:    "211-a\r\n\r\n211 End\r\n",
		code:  ftpctl.CodeSystemStatus,
		lines: []string{"a", "", "End"},
	},
	{
		name:  "421-service-not-available",
		in:    "421 Timeout.\r\n",
		code:  ftpctl.CodeNotAvailable,
		lines: []string{"Timeout."},
	},
}

func TestReadReply(t *testing.T) {
	t.Parallel()
	for _, tt := range replyTests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newReader(tt.in+nextReply, 0)
			got, err := r.ReadReply()
			if err != nil {
				t.Fatalf("ReadReply(%q): %v", tt.in, err)
			}
			if got.Code != tt.code || !slices.Equal(got.Lines, tt.lines) {
				t.Errorf("ReadReply(%q) = %d %q, want %d %q", tt.in, got.Code, got.Lines, tt.code, tt.lines)
			}
			if got.Multiline() != (len(tt.lines) > 1) {
				t.Errorf("Multiline() = %v with %d lines", got.Multiline(), len(tt.lines))
			}
			if got.Text() != tt.lines[0] {
				t.Errorf("Text() = %q, want %q", got.Text(), tt.lines[0])
			}

			relay := tt.relay
			if relay == "" {
				relay = tt.in
			}
			if s := got.String(); s != relay {
				t.Errorf("String() = %q, want %q", s, relay)
			}

			// The reply was read whole and nothing beyond it.
			next, err := r.ReadReply()
			if err != nil || next.Code != ftpctl.CodeOK || next.Text() != "NOOP ok." {
				t.Errorf("reply after %q = %d %q, %v; want 200 \"NOOP ok.\"", tt.in, next.Code, next.Lines, err)
			}
		})
	}
}

func TestReadReplyErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want error // nil means a *ftpctl.ProtocolError
	}{
		{"RFC959-4.2/letters-for-code", "abc ready\r\n", nil},
		{"RFC959-4.2/two-digit-code", "20\r\n", nil},
		{"RFC959-4.2/two-digit-code-and-text", "20 ok\r\n", nil},
		{"RFC959-4.2/four-digit-code", "2000 ok\r\n", nil},
		{"RFC959-4.2/code-then-letter", "200x\r\n", nil},
		{"RFC959-4.2/code-then-tab", "200\tok\r\n", nil},
		{"RFC959-4.2/code-below-100", "099 no such class\r\n", nil},
		{"RFC959-4.2/code-000", "000 no such class\r\n", nil},
		{"RFC959-4.2/code-600", "600 no such class\r\n", nil},
		{"RFC959-4.2/leading-space", " 200 ok\r\n", nil},
		{"RFC959-4.2/empty-line", "\r\n", nil},
		{"RFC959-4.2/TLS-record", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n", nil},
		{"EOF-before-reply", "", io.EOF},
		{"EOF-mid-line", "220 Service rea", io.ErrUnexpectedEOF},
		{"EOF-after-code", "220", io.ErrUnexpectedEOF},
		{"multi-line-cut-by-EOF", "211-Features:\r\n MDTM\r\n", io.ErrUnexpectedEOF},
		{"multi-line-cut-by-EOF-after-first-line", "220-Welcome\r\n", io.ErrUnexpectedEOF},
		{"multi-line-cut-mid-line", "211-Features:\r\n MDTM\r\n211 En", io.ErrUnexpectedEOF},
		{"multi-line-with-overlong-line", "211-Features:\r\n" + strings.Repeat("x", ftpctl.DefaultMaxLine+1) + "\r\n211 End\r\n", ftpctl.ErrLineTooLong},
		{"overlong-first-line", "220 " + strings.Repeat("x", ftpctl.DefaultMaxLine) + "\r\n", ftpctl.ErrLineTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := newReader(tt.in, 0).ReadReply()
			if err == nil {
				t.Fatalf("ReadReply(%q) = %d %q, want an error", tt.in, got.Code, got.Lines)
			}
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Errorf("ReadReply(%q) error = %v, want %v", tt.in, err, tt.want)
				}
				return
			}
			var pe *ftpctl.ProtocolError
			if !errors.As(err, &pe) {
				t.Errorf("ReadReply(%q) error = %T %v, want *ftpctl.ProtocolError", tt.in, err, err)
			}
		})
	}
}

// multiLine returns a reply of n lines in all with the given code.
func multiLine(code string, n int) string {
	var b strings.Builder
	b.WriteString(code + "-First line\r\n")
	for i := 1; i < n-1; i++ {
		fmt.Fprintf(&b, " line %d\r\n", i)
	}
	b.WriteString(code + " End\r\n")
	return b.String()
}

func TestReadReplyMaxReplyLines(t *testing.T) {
	t.Parallel()

	t.Run("at-limit", func(t *testing.T) {
		t.Parallel()
		got, err := newReader(multiLine("211", ftpctl.MaxReplyLines), 0).ReadReply()
		if err != nil {
			t.Fatalf("ReadReply of %d lines: %v", ftpctl.MaxReplyLines, err)
		}
		if len(got.Lines) != ftpctl.MaxReplyLines || got.Lines[len(got.Lines)-1] != "End" {
			t.Errorf("ReadReply of %d lines gave %d lines ending %q", ftpctl.MaxReplyLines, len(got.Lines), got.Lines[len(got.Lines)-1])
		}
	})

	t.Run("over-limit", func(t *testing.T) {
		t.Parallel()
		got, err := newReader(multiLine("211", ftpctl.MaxReplyLines+1), 0).ReadReply()
		var pe *ftpctl.ProtocolError
		if !errors.As(err, &pe) {
			t.Fatalf("ReadReply of %d lines = %d lines, %v; want *ftpctl.ProtocolError", ftpctl.MaxReplyLines+1, len(got.Lines), err)
		}
		if !strings.HasPrefix(pe.Line, "211-First line") {
			t.Errorf("ProtocolError.Line = %q, want the reply's first line", pe.Line)
		}
	})

	t.Run("never-ending", func(t *testing.T) {
		t.Parallel()
		// A backend that never closes its reply: the reader gives up
		// instead of buffering every line.
		src := io.MultiReader(strings.NewReader("211-Features:\r\n"), endless(" MDTM\r\n"))
		_, err := ftpctl.NewReader(bufio.NewReader(src), 0).ReadReply()
		var pe *ftpctl.ProtocolError
		if !errors.As(err, &pe) {
			t.Fatalf("ReadReply of an endless reply: %v, want *ftpctl.ProtocolError", err)
		}
	})

	t.Run("over-bytes", func(t *testing.T) {
		t.Parallel()
		// Few lines, each near the line limit: bounded by bytes, not lines.
		long := strings.Repeat("x", ftpctl.DefaultMaxLine-1)
		var b strings.Builder
		b.WriteString("211-First\r\n")
		for range ftpctl.MaxReplyBytes/len(long) + 1 {
			b.WriteString(" " + long + "\r\n")
		}
		b.WriteString("211 End\r\n")
		got, err := newReader(b.String(), 0).ReadReply()
		var pe *ftpctl.ProtocolError
		if !errors.As(err, &pe) {
			t.Fatalf("ReadReply of %d bytes in %d lines = %d lines, %v; want *ftpctl.ProtocolError",
				b.Len(), ftpctl.MaxReplyBytes/len(long)+3, len(got.Lines), err)
		}
	})

	t.Run("under-bytes", func(t *testing.T) {
		t.Parallel()
		long := strings.Repeat("x", 1000)
		var b strings.Builder
		b.WriteString("211-First\r\n")
		for range ftpctl.MaxReplyBytes/1000 - 2 {
			b.WriteString(long + "\r\n")
		}
		b.WriteString("211 End\r\n")
		if _, err := newReader(b.String(), 0).ReadReply(); err != nil {
			t.Fatalf("ReadReply of %d bytes: %v", b.Len(), err)
		}
	})
}

// endless is an io.Reader that repeats a pattern for ever.
type endless string

func (e endless) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		n += copy(p[n:], e)
	}
	return n, nil
}

func TestReadLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		in    string
		max   int
		lines []string
		errs  []error // per line; the last entry is the error after the last line
	}{
		{
			name:  "RFC959-5.3/CRLF",
			in:    "USER alice\r\nPASS secret\r\n",
			lines: []string{"USER alice", "PASS secret"},
			errs:  []error{nil, nil, io.EOF},
		},
		{
			name:  "bare-LF",
			in:    "USER alice\nPASS secret\n",
			lines: []string{"USER alice", "PASS secret"},
			errs:  []error{nil, nil, io.EOF},
		},
		{
			name:  "empty-lines",
			in:    "\r\n\n",
			lines: []string{"", ""},
			errs:  []error{nil, nil, io.EOF},
		},
		{
			name:  "only-one-CR-stripped",
			in:    "NOOP\r\r\n",
			lines: []string{"NOOP\r"},
			errs:  []error{nil, io.EOF},
		},
		{
			name:  "bare-CR-is-not-a-line-end",
			in:    "CWD a\rDELE b\r\n",
			lines: []string{"CWD a\rDELE b"},
			errs:  []error{nil, io.EOF},
		},
		{
			name:  "EOF-mid-line",
			in:    "USER alice\r\nPASS sec",
			lines: []string{"USER alice", ""},
			errs:  []error{nil, io.ErrUnexpectedEOF},
		},
		{
			name:  "EOF-after-CR",
			in:    "QUIT\r",
			lines: []string{""},
			errs:  []error{io.ErrUnexpectedEOF},
		},
		{
			name:  "line-at-limit",
			in:    "abcd\r\n",
			max:   4,
			lines: []string{"abcd"},
			errs:  []error{nil, io.EOF},
		},
		{
			name:  "line-at-limit-bare-LF",
			in:    "abcd\n",
			max:   4,
			lines: []string{"abcd"},
			errs:  []error{nil, io.EOF},
		},
		{
			name:  "line-over-limit-then-next-line",
			in:    "abcde\r\nNOOP\r\n",
			max:   4,
			lines: []string{"", "NOOP"},
			errs:  []error{ftpctl.ErrLineTooLong, nil, io.EOF},
		},
		{
			name:  "line-over-limit-bare-LF",
			in:    "abcde\nNOOP\n",
			max:   4,
			lines: []string{"", "NOOP"},
			errs:  []error{ftpctl.ErrLineTooLong, nil, io.EOF},
		},
		{
			name:  "line-over-limit-ending-in-CR",
			in:    "abcd\r\r\nNOOP\r\n",
			max:   4,
			lines: []string{"", "NOOP"},
			errs:  []error{ftpctl.ErrLineTooLong, nil, io.EOF},
		},
		{
			name:  "two-overlong-lines-in-a-row",
			in:    "abcdefgh\r\nijklmnop\r\nNOOP\r\n",
			max:   4,
			lines: []string{"", "", "NOOP"},
			errs:  []error{ftpctl.ErrLineTooLong, ftpctl.ErrLineTooLong, nil, io.EOF},
		},
		{
			name:  "overlong-line-cut-by-EOF",
			in:    "abcdefgh",
			max:   4,
			lines: []string{""},
			errs:  []error{ftpctl.ErrLineTooLong, io.ErrUnexpectedEOF}, // the second from SkipLine
		},
		{
			name:  "default-limit",
			in:    strings.Repeat("a", ftpctl.DefaultMaxLine) + "\r\n" + strings.Repeat("b", ftpctl.DefaultMaxLine+1) + "\r\nNOOP\r\n",
			lines: []string{strings.Repeat("a", ftpctl.DefaultMaxLine), "", "NOOP"},
			errs:  []error{nil, ftpctl.ErrLineTooLong, nil, io.EOF},
		},
		{
			name:  "negative-limit-is-default",
			in:    strings.Repeat("a", ftpctl.DefaultMaxLine) + "\r\n" + strings.Repeat("b", ftpctl.DefaultMaxLine+1) + "\r\n",
			max:   -1,
			lines: []string{strings.Repeat("a", ftpctl.DefaultMaxLine), ""},
			errs:  []error{nil, ftpctl.ErrLineTooLong, io.EOF},
		},
		{
			name:  "100KiB-line-then-next-line",
			in:    strings.Repeat("x", 100<<10) + "\r\nNOOP\r\n",
			lines: []string{"", "NOOP"},
			errs:  []error{ftpctl.ErrLineTooLong, nil, io.EOF},
		},
		{
			name:  "100KiB-line-without-CRLF-then-EOF",
			in:    strings.Repeat("x", 100<<10),
			lines: []string{""},
			errs:  []error{ftpctl.ErrLineTooLong, io.ErrUnexpectedEOF}, // the second from SkipLine
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newReader(tt.in, tt.max)
			skip := false // the last line was too long: SkipLine first
			for i, want := range tt.errs {
				var (
					line string
					err  error
				)
				if skip {
					err = r.SkipLine()
				}
				if err == nil {
					line, err = r.ReadLine()
				}
				skip = errors.Is(err, ftpctl.ErrLineTooLong)
				if !errors.Is(err, want) {
					t.Fatalf("ReadLine #%d = %q, %v; want error %v", i, trunc(line), err, want)
				}
				if i < len(tt.lines) && line != tt.lines[i] {
					t.Errorf("ReadLine #%d = %q, want %q", i, trunc(line), trunc(tt.lines[i]))
				}
			}
		})
	}
}

// trunc shortens long test strings in failure messages.
func trunc(s string) string {
	if len(s) > 64 {
		return s[:64] + fmt.Sprintf("...(%d bytes)", len(s))
	}
	return s
}

// TestReadLineLimitAboveBufferSize gives the reader a bufio.Reader smaller
// than the line limit: lines longer than the buffer but within the limit are
// assembled from several fragments.
func TestReadLineLimitAboveBufferSize(t *testing.T) {
	t.Parallel()
	const bufSize = 16 // bufio's minimum
	for _, n := range []int{15, 16, 17, 31, 32, 33, 99, 100, 101, 250} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			t.Parallel()
			const max = 100
			long := strings.Repeat("y", n)
			in := long + "\r\nNOOP\r\n"
			r := ftpctl.NewReader(bufio.NewReaderSize(strings.NewReader(in), bufSize), max)
			line, err := r.ReadLine()
			switch {
			case n <= max && (err != nil || line != long):
				t.Fatalf("ReadLine of %d bytes (limit %d, buffer %d) = %d bytes, %v", n, max, bufSize, len(line), err)
			case n > max && !errors.Is(err, ftpctl.ErrLineTooLong):
				t.Fatalf("ReadLine of %d bytes (limit %d) = %d bytes, %v; want ErrLineTooLong", n, max, len(line), err)
			}
			if err := r.SkipLine(); err != nil {
				t.Fatalf("SkipLine after %d bytes: %v", n, err)
			}
			if line, err := r.ReadLine(); err != nil || line != "NOOP" {
				t.Errorf("ReadLine after %d bytes = %q, %v; want \"NOOP\"", n, line, err)
			}
		})
	}
}

// TestReadLineStopsAtTheLimit: a line that passes the limit is refused as
// soon as it does, from a peer that never ends it; not one byte past what
// the buffer held is read, before SkipLine is asked to.
func TestReadLineStopsAtTheLimit(t *testing.T) {
	t.Parallel()
	const max = 64
	pr, pw := io.Pipe()
	defer pw.Close()
	go pw.Write([]byte(strings.Repeat("x", max+10))) // and then nothing, ever
	r := ftpctl.NewReader(bufio.NewReaderSize(pr, 16), max)
	done := make(chan error, 1)
	go func() {
		_, err := r.ReadLine()
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ftpctl.ErrLineTooLong) {
			t.Fatalf("ReadLine = %v, want ErrLineTooLong", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ReadLine waited for the end of an overlong line")
	}
	if _, err := r.ReadLine(); !errors.Is(err, ftpctl.ErrLineTooLong) {
		t.Fatalf("ReadLine again = %v, want ErrLineTooLong until SkipLine", err)
	}
	// The line ends at last: SkipLine reads through it, and the next line is
	// the next command.
	go pw.Write([]byte("yyy\r\nNOOP\r\n"))
	if err := r.SkipLine(); err != nil {
		t.Fatal(err)
	}
	if line, err := r.ReadLine(); err != nil || line != "NOOP" {
		t.Fatalf("ReadLine after SkipLine = %q, %v; want NOOP", line, err)
	}
}

// TestReadLineDoesNotBufferOverlongLine checks that an overlong line is
// discarded as it streams by, not collected: the bytes allocated while
// reading a 100 KiB line are bounded by the limit, not by the line.
//
// Not parallel: it reads the process-wide allocation counter, and parallel
// tests stay paused while it runs.
func TestReadLineDoesNotBufferOverlongLine(t *testing.T) {
	const size = 100 << 10
	for _, in := range []string{
		strings.Repeat("z", size),          // cut by EOF
		strings.Repeat("z", size) + "\r\n", // complete
	} {
		r := newReader(in, 0)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := r.ReadLine()
		runtime.ReadMemStats(&after)
		if err == nil {
			t.Fatalf("ReadLine of a %d-byte line: no error", len(in))
		}
		if got := after.TotalAlloc - before.TotalAlloc; got > 4*ftpctl.DefaultMaxLine {
			t.Errorf("ReadLine of a %d-byte line allocated %d bytes, want at most %d", len(in), got, 4*ftpctl.DefaultMaxLine)
		}
	}
}

// errReader fails every read with err.
type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestReadLinePassesReadErrors(t *testing.T) {
	t.Parallel()
	boom := errors.New("connection reset")
	src := io.MultiReader(strings.NewReader("USER alice\r\nPASS "), errReader{boom})
	r := ftpctl.NewReader(bufio.NewReader(src), 0)
	if line, err := r.ReadLine(); err != nil || line != "USER alice" {
		t.Fatalf("ReadLine = %q, %v; want \"USER alice\"", line, err)
	}
	if _, err := r.ReadLine(); !errors.Is(err, boom) {
		t.Errorf("ReadLine over a failing connection = %v, want %v", err, boom)
	}
}

// TestBuffered covers the STARTTLS injection check (CVE-2011-0411): bytes a
// client pipelined behind AUTH TLS stay visible through Buffered.
func TestBuffered(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want int
	}{
		{"RFC4217-4/AUTH-TLS-alone", "AUTH TLS\r\n", 0},
		{"RFC4217-4/AUTH-TLS-then-plaintext-command", "AUTH TLS\r\nUSER alice\r\n", len("USER alice\r\n")},
		{"RFC4217-4/AUTH-TLS-then-TLS-ClientHello", "AUTH TLS\r\n\x16\x03\x01", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newReader(tt.in, 0)
			cmd, err := r.ReadCommand()
			if err != nil || cmd.Verb != "AUTH" || cmd.Arg != "TLS" {
				t.Fatalf("ReadCommand(%q) = %+v, %v", tt.in, cmd, err)
			}
			if got := r.Buffered(); got != tt.want {
				t.Errorf("Buffered() after AUTH TLS = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestReadCommand(t *testing.T) {
	t.Parallel()
	// lftp pipelines PBSZ, PROT and PWD: each is read on its own.
	r := newReader("PBSZ 0\r\nPROT P\r\nPWD\r\n123\r\nNOOP\r\n", 0)
	for _, want := range []ftpctl.Command{{Verb: "PBSZ", Arg: "0"}, {Verb: "PROT", Arg: "P"}, {Verb: "PWD"}} {
		got, err := r.ReadCommand()
		if err != nil || got != want {
			t.Fatalf("ReadCommand = %+v, %v; want %+v", got, err, want)
		}
	}
	_, err := r.ReadCommand()
	var pe *ftpctl.ProtocolError
	if !errors.As(err, &pe) {
		t.Fatalf("ReadCommand(\"123\") error = %v, want *ftpctl.ProtocolError", err)
	}
	// A malformed command does not desynchronise the reader.
	if got, err := r.ReadCommand(); err != nil || got.Verb != "NOOP" {
		t.Errorf("ReadCommand after a bad one = %+v, %v; want NOOP", got, err)
	}
	if _, err := r.ReadCommand(); !errors.Is(err, io.EOF) {
		t.Errorf("ReadCommand at the end = %v, want io.EOF", err)
	}

	long := newReader("STOR "+strings.Repeat("a", 5000)+"\r\nQUIT\r\n", 0)
	if _, err := long.ReadCommand(); !errors.Is(err, ftpctl.ErrLineTooLong) {
		t.Errorf("ReadCommand of an overlong line = %v, want ErrLineTooLong", err)
	}
	if err := long.SkipLine(); err != nil {
		t.Fatal(err)
	}
	if got, err := long.ReadCommand(); err != nil || got.Verb != "QUIT" {
		t.Errorf("ReadCommand after an overlong line = %+v, %v; want QUIT", got, err)
	}
}
