package ftpctl_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ftpsgate/ftpsgate/ftpctl"
)

func TestProtocolError(t *testing.T) {
	t.Parallel()
	_, err := ftpctl.ParseCommand("123 " + strings.Repeat("x", 200))
	wrapped := fmt.Errorf("session 7: %w", err)
	var pe *ftpctl.ProtocolError
	if !errors.As(wrapped, &pe) {
		t.Fatalf("errors.As(%v) found no *ftpctl.ProtocolError", wrapped)
	}
	// The offending line is truncated: a log line stays a line.
	if len(pe.Line) > 100 || !strings.HasPrefix(pe.Line, "123 xxx") || !strings.HasSuffix(pe.Line, "...") {
		t.Errorf("ProtocolError.Line = %q (%d bytes), want a truncated line", pe.Line, len(pe.Line))
	}
	if msg := pe.Error(); !strings.HasPrefix(msg, "ftpctl: ") || !strings.Contains(msg, pe.Msg) {
		t.Errorf("Error() = %q, want \"ftpctl: \" and the message %q", msg, pe.Msg)
	}
	if errors.Is(err, ftpctl.ErrLineTooLong) {
		t.Errorf("a malformed command is ErrLineTooLong")
	}

	tests := []struct {
		err  *ftpctl.ProtocolError
		want string
	}{
		{&ftpctl.ProtocolError{Msg: "empty command"}, "ftpctl: empty command"},
		{&ftpctl.ProtocolError{Msg: "verb is not letters", Line: "caf\xe9"}, `ftpctl: verb is not letters: "caf\xe9"`},
		// The line is quoted: a CR or LF in it cannot split a log line.
		{&ftpctl.ProtocolError{Msg: "bad", Line: "a\r\nb"}, `ftpctl: bad: "a\r\nb"`},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestErrLineTooLong(t *testing.T) {
	t.Parallel()
	if got := ftpctl.ErrLineTooLong.Error(); !strings.HasPrefix(got, "ftpctl: ") {
		t.Errorf("ErrLineTooLong = %q, want the package name first", got)
	}
	_, err := newReader(strings.Repeat("a", 10)+"\r\n", 5).ReadLine()
	if !errors.Is(fmt.Errorf("read command: %w", err), ftpctl.ErrLineTooLong) {
		t.Errorf("wrapped ReadLine error %v is not ErrLineTooLong", err)
	}
}

func TestReplyError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  *ftpctl.ReplyError
		want string
	}{
		{
			name: "with-command",
			err:  &ftpctl.ReplyError{Command: "PASV", Reply: ftpctl.Reply{Code: ftpctl.CodeNotLoggedIn, Lines: []string{"Please login with USER and PASS."}}},
			want: "ftpctl: PASV: unexpected reply 530 Please login with USER and PASS.",
		},
		{
			name: "without-command",
			err:  &ftpctl.ReplyError{Reply: ftpctl.Reply{Code: ftpctl.CodeNotAvailable, Lines: []string{"Too many users."}}},
			want: "ftpctl: unexpected reply 421 Too many users.",
		},
		{
			name: "multi-line-shows-first-line",
			err:  &ftpctl.ReplyError{Command: "USER", Reply: ftpctl.Reply{Code: ftpctl.CodeNotAvailable, Lines: []string{"Too many users.", "Try later."}}},
			want: "ftpctl: USER: unexpected reply 421 Too many users.",
		},
		{
			// A Reply without lines is a valid value (it formats as
			// "500 "): describing it must not panic.
			name: "no-lines",
			err:  &ftpctl.ReplyError{Command: "PASV", Reply: ftpctl.Reply{Code: ftpctl.CodeSyntaxError}},
			want: "ftpctl: PASV: unexpected reply 500 ",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
			var re *ftpctl.ReplyError
			if !errors.As(fmt.Errorf("backend: %w", tt.err), &re) || re.Reply.Code != tt.err.Reply.Code {
				t.Errorf("errors.As did not find the *ftpctl.ReplyError")
			}
			var pe *ftpctl.ProtocolError
			if errors.As(tt.err, &pe) {
				t.Errorf("a *ReplyError is also a *ProtocolError")
			}
		})
	}
}
