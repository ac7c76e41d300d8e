package ftpctl_test

import (
	"fmt"
	"testing"

	"github.com/ftpsgate/ftpsgate/ftpctl"
)

func TestCode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code  ftpctl.Code
		class ftpctl.Class
		final bool
		valid bool
	}{
		// RFC 959 section 4.2.1: the first digit is the class.
		{ftpctl.CodeFileStatusOK, ftpctl.ClassPreliminary, false, true},
		{100, ftpctl.ClassPreliminary, false, true},
		{199, ftpctl.ClassPreliminary, false, true},
		{ftpctl.CodeOK, ftpctl.ClassCompletion, true, true},
		{ftpctl.CodeTransferComplete, ftpctl.ClassCompletion, true, true},
		{ftpctl.CodeEnteringExtPassive, ftpctl.ClassCompletion, true, true},
		{ftpctl.CodeAuthOK, ftpctl.ClassCompletion, true, true},
		{ftpctl.CodeNeedPassword, ftpctl.ClassIntermediate, true, true},
		{ftpctl.CodeNotAvailable, ftpctl.ClassTransient, true, true},
		{ftpctl.CodeTransferAborted, ftpctl.ClassTransient, true, true},
		{ftpctl.CodeNotLoggedIn, ftpctl.ClassPermanent, true, true},
		{ftpctl.CodePolicyDenied, ftpctl.ClassPermanent, true, true},
		{599, ftpctl.ClassPermanent, true, true},
		{0, 0, true, false},
		{99, 0, true, false},
		{600, 6, true, false},
		{1000, 10, true, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(int(tt.code)), func(t *testing.T) {
			t.Parallel()
			if got := tt.code.Class(); got != tt.class {
				t.Errorf("Code(%d).Class() = %d, want %d", tt.code, got, tt.class)
			}
			if got := tt.code.Final(); got != tt.final {
				t.Errorf("Code(%d).Final() = %v, want %v", tt.code, got, tt.final)
			}
			if got := tt.code.Valid(); got != tt.valid {
				t.Errorf("Code(%d).Valid() = %v, want %v", tt.code, got, tt.valid)
			}
		})
	}
}

// TestCodeConstants checks the named codes against RFC 959 section 4.2.2,
// RFC 2228 and RFC 2428: the proxy acts on them.
func TestCodeConstants(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code ftpctl.Code
		want int
	}{
		{ftpctl.CodeFileStatusOK, 150},
		{ftpctl.CodeReady, 220},
		{ftpctl.CodeClosing, 221},
		{ftpctl.CodeTransferComplete, 226},
		{ftpctl.CodeEnteringPassive, 227},
		{ftpctl.CodeEnteringExtPassive, 229},
		{ftpctl.CodeLoggedIn, 230},
		{ftpctl.CodeAuthOK, 234},
		{ftpctl.CodeNeedPassword, 331},
		{ftpctl.CodeNotAvailable, 421},
		{ftpctl.CodeCannotOpenData, 425},
		{ftpctl.CodeTransferAborted, 426},
		{ftpctl.CodeNetProtoNotSupp, 522},
		{ftpctl.CodeNotLoggedIn, 530},
		{ftpctl.CodePolicyDenied, 534},
		{ftpctl.CodeProtNotSupported, 536},
	}
	for _, tt := range tests {
		if int(tt.code) != tt.want {
			t.Errorf("code constant = %d, want %d", tt.code, tt.want)
		}
	}
}
