package ftpctl_test

import (
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/ftpsgate/ftpsgate/ftpctl"
)

func TestNewReply(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		code  ftpctl.Code
		text  string
		lines []string
		wire  string
	}{
		{
			name:  "RFC959-4.2/single-line",
			code:  ftpctl.CodeReady,
			text:  "ftpsgate ready",
			lines: []string{"ftpsgate ready"},
			wire:  "220 ftpsgate ready\r\n",
		},
		{
			name:  "RFC959-4.2/empty-text",
			code:  ftpctl.CodeOK,
			text:  "",
			lines: []string{""},
			wire:  "200 \r\n",
		},
		{
			name:  "RFC959-4.2/two-lines",
			code:  ftpctl.CodeLoggedIn,
			text:  "Welcome.\nLogin successful.",
			lines: []string{"Welcome.", "Login successful."},
			wire:  "230-Welcome.\r\n230 Login successful.\r\n",
		},
		{
			name:  "RFC959-4.2/middle-lines-indented",
			code:  ftpctl.CodeReady,
			text:  "Welcome to ftpsgate\nThis is a private system\nReady.",
			lines: []string{"Welcome to ftpsgate", " This is a private system", "Ready."},
			wire:  "220-Welcome to ftpsgate\r\n This is a private system\r\n220 Ready.\r\n",
		},
		{
			// RFC 959 section 4.2: a middle line that starts with the
			// code and a space would end the reply early.
			name:  "RFC959-4.2/middle-line-like-closing-line",
			code:  ftpctl.CodeSystemStatus,
			text:  "Status:\n211 End\nEnd",
			lines: []string{"Status:", " 211 End", "End"},
			wire:  "211-Status:\r\n 211 End\r\n211 End\r\n",
		},
		{
			name:  "RFC2428-3/EPSV",
			code:  ftpctl.CodeEnteringExtPassive,
			text:  "Entering Extended Passive Mode (|||6446|)",
			lines: []string{"Entering Extended Passive Mode (|||6446|)"},
			wire:  "229 Entering Extended Passive Mode (|||6446|)\r\n",
		},
		{
			name:  "RFC4217-4/AUTH-TLS",
			code:  ftpctl.CodeAuthOK,
			text:  "AUTH TLS successful",
			lines: []string{"AUTH TLS successful"},
			wire:  "234 AUTH TLS successful\r\n",
		},
		{
			name:  "trailing-newline",
			code:  ftpctl.CodeOK,
			text:  "done\n",
			lines: []string{"done", ""},
			wire:  "200-done\r\n200 \r\n",
		},
		{
			name:  "CRLF-in-text",
			code:  ftpctl.CodeOK,
			text:  "one\r\ntwo",
			lines: []string{"one\r", "two"},
			wire:  "200-one\r\n200 two\r\n",
		},
		{
			name:  "non-UTF-8-bytes",
			code:  257,
			text:  "\"/caf\xe9\xff\" created",
			lines: []string{"\"/caf\xe9\xff\" created"},
			wire:  "257 \"/caf\xe9\xff\" created\r\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := ftpctl.NewReply(tt.code, tt.text)
			if r.Code != tt.code || !slices.Equal(r.Lines, tt.lines) {
				t.Errorf("NewReply(%d, %q) = %d %q, want %d %q", tt.code, tt.text, r.Code, r.Lines, tt.code, tt.lines)
			}
			checkWire(t, r, tt.wire)
		})
	}
}

// checkWire checks that String, AppendTo and WriteTo all give want, and that
// a Reader reads it back as exactly one reply.
func checkWire(t *testing.T, r ftpctl.Reply, want string) {
	t.Helper()
	if got := r.String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got := r.AppendTo([]byte("prefix")); string(got) != "prefix"+want {
		t.Errorf("AppendTo = %q, want %q", got, "prefix"+want)
	}
	var w recordingWriter
	n, err := r.WriteTo(&w)
	if err != nil || n != int64(len(want)) {
		t.Errorf("WriteTo = %d, %v; want %d, nil", n, err, len(want))
	}
	if len(w.writes) != 1 || w.writes[0] != want {
		t.Errorf("WriteTo made writes %q, want one write %q", w.writes, want)
	}

	rd := newReader(want, 0)
	again, err := rd.ReadReply()
	if err != nil {
		t.Fatalf("ReadReply(%q): %v", want, err)
	}
	if again.Code != r.Code || len(again.Lines) != max(len(r.Lines), 1) {
		t.Errorf("ReadReply(%q) = %d with %d lines, want %d with %d lines", want, again.Code, len(again.Lines), r.Code, max(len(r.Lines), 1))
	}
	if _, err := rd.ReadLine(); !errors.Is(err, io.EOF) {
		t.Errorf("after the reply %q: %v, want io.EOF (one reply, nothing more)", want, err)
	}
}

// recordingWriter records each Write call.
type recordingWriter struct{ writes []string }

func (w *recordingWriter) Write(p []byte) (int, error) {
	w.writes = append(w.writes, string(p))
	return len(p), nil
}

func TestReplyAppendTo(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		reply ftpctl.Reply
		wire  string
	}{
		{
			name:  "no-lines",
			reply: ftpctl.Reply{Code: ftpctl.CodeOK},
			wire:  "200 \r\n",
		},
		{
			name:  "RFC959-4.2/multi-line-verbatim-middle",
			reply: ftpctl.Reply{Code: 123, Lines: []string{"First line", "Second line", "  234 A line beginning with numbers", "The last line"}},
			wire:  "123-First line\r\nSecond line\r\n  234 A line beginning with numbers\r\n123 The last line\r\n",
		},
		{
			// pure-ftpd repeats the code with a dash on middle lines:
			// relayed as they came.
			name:  "pure-ftpd/code-dash-middle-lines",
			reply: ftpctl.Reply{Code: ftpctl.CodeReady, Lines: []string{"--------- Welcome to Pure-FTPd [privsep] [TLS] ----------", "220-You are user number 1 of 50 allowed.", "You will be disconnected after 15 minutes of inactivity."}},
			wire:  "220---------- Welcome to Pure-FTPd [privsep] [TLS] ----------\r\n220-You are user number 1 of 50 allowed.\r\n220 You will be disconnected after 15 minutes of inactivity.\r\n",
		},
		{
			name:  "RFC959-4.2/middle-line-like-closing-line-escaped",
			reply: ftpctl.Reply{Code: ftpctl.CodeSystemStatus, Lines: []string{"Features:", "211 End", "End"}},
			wire:  "211-Features:\r\n 211 End\r\n211 End\r\n",
		},
		{
			// A reader also takes the code alone as a closing line.
			name:  "RFC959-4.2/middle-line-of-code-alone-escaped",
			reply: ftpctl.Reply{Code: ftpctl.CodeSystemStatus, Lines: []string{"Features:", "211", " MDTM", "End"}},
			wire:  "211-Features:\r\n 211\r\n MDTM\r\n211 End\r\n",
		},
		{
			name:  "RFC959-4.2/middle-line-of-code-and-CR-escaped",
			reply: ftpctl.Reply{Code: ftpctl.CodeSystemStatus, Lines: []string{"Features:", "211\r", "End"}},
			wire:  "211-Features:\r\n 211\r\n211 End\r\n",
		},
		{
			name:  "RFC959-4.2/middle-line-of-other-code-kept",
			reply: ftpctl.Reply{Code: ftpctl.CodeSystemStatus, Lines: []string{"Features:", "212 End", "2110", "End"}},
			wire:  "211-Features:\r\n212 End\r\n2110\r\n211 End\r\n",
		},
		{
			// A CR or LF in any line would start a second reply: they
			// are dropped, and the reply stays one reply.
			name:  "CRLF-injection-single-line",
			reply: ftpctl.Reply{Code: ftpctl.CodeNeedPassword, Lines: []string{"Password required for x\r\n230 Logged in"}},
			wire:  "331 Password required for x230 Logged in\r\n",
		},
		{
			name:  "LF-injection-first-line",
			reply: ftpctl.Reply{Code: ftpctl.CodeSystemStatus, Lines: []string{"a\n211 End", "End"}},
			wire:  "211-a211 End\r\n211 End\r\n",
		},
		{
			name:  "CR-injection-middle-line",
			reply: ftpctl.Reply{Code: ftpctl.CodeSystemStatus, Lines: []string{"a", "b\r211 End", "End"}},
			wire:  "211-a\r\nb211 End\r\n211 End\r\n",
		},
		{
			name:  "CR-joins-middle-line-into-closing-line",
			reply: ftpctl.Reply{Code: ftpctl.CodeSystemStatus, Lines: []string{"a", "211\r\n End", "End"}},
			wire:  "211-a\r\n 211 End\r\n211 End\r\n",
		},
		{
			name:  "CRLF-injection-last-line",
			reply: ftpctl.Reply{Code: ftpctl.CodeSystemStatus, Lines: []string{"a", "End\r\n230 Logged in"}},
			wire:  "211-a\r\n211 End230 Logged in\r\n",
		},
		{
			name:  "non-UTF-8-bytes-kept",
			reply: ftpctl.Reply{Code: ftpctl.CodeFileActionOK, Lines: []string{"caf\xe9", "\xff\xfe\x00", "d\xf4ne"}},
			wire:  "250-caf\xe9\r\n\xff\xfe\x00\r\n250 d\xf4ne\r\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkWire(t, tt.reply, tt.wire)
		})
	}
}

func TestReplyAppendToDoesNotModifyLines(t *testing.T) {
	t.Parallel()
	lines := []string{"a\r\nb", "211 End", "End"}
	r := ftpctl.Reply{Code: ftpctl.CodeSystemStatus, Lines: slices.Clone(lines)}
	_ = r.String()
	if !slices.Equal(r.Lines, lines) {
		t.Errorf("String() changed Lines to %q, want %q", r.Lines, lines)
	}
}

// failingWriter accepts n bytes, then fails.
type failingWriter struct {
	n   int
	err error
}

func (w failingWriter) Write(p []byte) (int, error) {
	return min(w.n, len(p)), w.err
}

func TestReplyWriteToError(t *testing.T) {
	t.Parallel()
	boom := errors.New("broken pipe")
	n, err := ftpctl.NewReply(ftpctl.CodeOK, "ok").WriteTo(failingWriter{n: 3, err: boom})
	if !errors.Is(err, boom) || n != 3 {
		t.Errorf("WriteTo a failing writer = %d, %v; want 3, %v", n, err, boom)
	}
}

// TestReplyWriterTo checks Reply satisfies io.WriterTo, so io.Copy-style
// helpers write a reply in one piece.
func TestReplyWriterTo(t *testing.T) {
	t.Parallel()
	var w io.WriterTo = ftpctl.NewReply(ftpctl.CodeClosing, "Goodbye.")
	var b strings.Builder
	if _, err := w.WriteTo(&b); err != nil || b.String() != "221 Goodbye.\r\n" {
		t.Errorf("WriteTo = %q, %v", b.String(), err)
	}
}

func TestReplyText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		reply     ftpctl.Reply
		text      string
		multiline bool
	}{
		{"no-lines", ftpctl.Reply{Code: ftpctl.CodeOK}, "", false},
		{"one-line", ftpctl.Reply{Code: ftpctl.CodeEnteringPassive, Lines: []string{"Entering Passive Mode (127,0,0,1,117,48)."}}, "Entering Passive Mode (127,0,0,1,117,48).", false},
		{"two-lines", ftpctl.Reply{Code: ftpctl.CodeSystemStatus, Lines: []string{"Features:", "End"}}, "Features:", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.reply.Text(); got != tt.text {
				t.Errorf("Text() = %q, want %q", got, tt.text)
			}
			if got := tt.reply.Multiline(); got != tt.multiline {
				t.Errorf("Multiline() = %v, want %v", got, tt.multiline)
			}
		})
	}
}
