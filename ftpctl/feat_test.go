package ftpctl_test

import (
	"slices"
	"testing"

	"github.com/ftpsgate/ftpsgate/ftpctl"
)

func TestParseFeat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string // the reply on the wire
		want []string
	}{
		{
			name: "RFC2389-3.2",
			in: "211-Extensions supported:\r\n" +
				" MLST size*;create;modify*;perm;media-type\r\n" +
				" SIZE\r\n COMPRESSION\r\n MDTM\r\n" +
				"211 END\r\n",
			want: []string{"MLST size*;create;modify*;perm;media-type", "SIZE", "COMPRESSION", "MDTM"},
		},
		{
			// RFC 2389 section 3.2: a server with no extensions may
			// answer with a single-line 211.
			name: "RFC2389-3.2/no-features",
			in:   "211 No extensions supported\r\n",
			want: nil,
		},
		{
			name: "RFC2389-3.2/empty-list",
			in:   "211-Features:\r\n211 End\r\n",
			want: nil,
		},
		{
			name: "RFC2389-3/FEAT-not-implemented",
			in:   "500 'FEAT': command not understood\r\n",
			want: nil,
		},
		{
			name: "RFC2389-3/FEAT-not-logged-in",
			in:   "530 Please login with USER and PASS.\r\n",
			want: nil,
		},
		{
			name: "vsftpd",
			in: "211-Features:\r\n" +
				" AUTH SSL\r\n AUTH TLS\r\n EPRT\r\n EPSV\r\n MDTM\r\n PASV\r\n PBSZ\r\n" +
				" PROT\r\n REST STREAM\r\n SIZE\r\n TVFS\r\n UTF8\r\n" +
				"211 End\r\n",
			want: []string{"AUTH SSL", "AUTH TLS", "EPRT", "EPSV", "MDTM", "PASV", "PBSZ", "PROT", "REST STREAM", "SIZE", "TVFS", "UTF8"},
		},
		{
			name: "pure-ftpd",
			in: "211-Extensions supported:\r\n" +
				" UTF8\r\n EPRT\r\n IDLE\r\n MDTM\r\n SIZE\r\n MFMT\r\n REST STREAM\r\n" +
				" MLST type*;size*;sizd*;modify*;UNIX.mode*;UNIX.uid*;UNIX.gid*;unique*;\r\n" +
				" MLSD\r\n PRET\r\n AUTH TLS\r\n PBSZ\r\n PROT\r\n TVFS\r\n ESTA\r\n PASV\r\n EPSV\r\n ESTP\r\n" +
				"211 End.\r\n",
			want: []string{"UTF8", "EPRT", "IDLE", "MDTM", "SIZE", "MFMT", "REST STREAM",
				"MLST type*;size*;sizd*;modify*;UNIX.mode*;UNIX.uid*;UNIX.gid*;unique*;",
				"MLSD", "PRET", "AUTH TLS", "PBSZ", "PROT", "TVFS", "ESTA", "PASV", "EPSV", "ESTP"},
		},
		{
			name: "ProFTPD",
			in: "211-Features:\r\n" +
				" AUTH TLS\r\n CCC\r\n CLNT\r\n EPRT\r\n EPSV\r\n HOST\r\n LANG en-US.UTF-8*;en-US\r\n MDTM\r\n" +
				" MFF modify;UNIX.group;UNIX.mode;\r\n MFMT\r\n" +
				" MLST modify*;perm*;size*;type*;unique*;UNIX.group*;UNIX.groupname*;UNIX.mode*;UNIX.owner*;UNIX.ownername*;\r\n" +
				" PBSZ\r\n PROT\r\n RANG STREAM\r\n REST STREAM\r\n SITE COPY\r\n SITE MKDIR\r\n SITE RMDIR\r\n" +
				" SITE SYMLINK\r\n SITE UTIME\r\n SIZE\r\n SSCN\r\n TVFS\r\n UTF8\r\n" +
				"211 End\r\n",
			want: []string{"AUTH TLS", "CCC", "CLNT", "EPRT", "EPSV", "HOST", "LANG en-US.UTF-8*;en-US", "MDTM",
				"MFF modify;UNIX.group;UNIX.mode;", "MFMT",
				"MLST modify*;perm*;size*;type*;unique*;UNIX.group*;UNIX.groupname*;UNIX.mode*;UNIX.owner*;UNIX.ownername*;",
				"PBSZ", "PROT", "RANG STREAM", "REST STREAM", "SITE COPY", "SITE MKDIR", "SITE RMDIR",
				"SITE SYMLINK", "SITE UTIME", "SIZE", "SSCN", "TVFS", "UTF8"},
		},
		{
			name: "IIS",
			in: "211-Extended features supported:\r\n" +
				" LANG EN*\r\n UTF8\r\n AUTH TLS;TLS-C;SSL;TLS-P;\r\n PBSZ\r\n PROT C;P;\r\n CCC\r\n HOST\r\n SIZE\r\n MDTM\r\n REST STREAM\r\n" +
				"211 END\r\n",
			want: []string{"LANG EN*", "UTF8", "AUTH TLS;TLS-C;SSL;TLS-P;", "PBSZ", "PROT C;P;", "CCC", "HOST", "SIZE", "MDTM", "REST STREAM"},
		},
		{
			name: "closed-by-bare-211",
			in:   "211-Features:\r\n MDTM\r\n SIZE\r\n211\r\n",
			want: []string{"MDTM", "SIZE"},
		},
		{
			name: "blank-and-padded-lines",
			in:   "211-Features:\r\n\r\n   UTF8  \r\n \r\n211 End\r\n",
			want: []string{"UTF8"},
		},
		{
			name: "bare-LF",
			in:   "211-Features:\n EPSV\n UTF8\n211 End\n",
			want: []string{"EPSV", "UTF8"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := newReader(tt.in, 0).ReadReply()
			if err != nil {
				t.Fatalf("ReadReply(%q): %v", tt.in, err)
			}
			if got := ftpctl.ParseFeat(r); !slices.Equal(got, tt.want) {
				t.Errorf("ParseFeat = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseFeatNotFEATReply(t *testing.T) {
	t.Parallel()
	// A multi-line reply with another code lists no features, whatever
	// its lines look like.
	r := ftpctl.Reply{Code: 214, Lines: []string{"The following commands are recognized.", " ABOR ACCT", "Help OK."}}
	if got := ftpctl.ParseFeat(r); got != nil {
		t.Errorf("ParseFeat of a 214 = %q, want nil", got)
	}
	if got := ftpctl.ParseFeat(ftpctl.Reply{}); got != nil {
		t.Errorf("ParseFeat of a zero Reply = %q, want nil", got)
	}
}

func TestFeatReply(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		feats []string
		wire  string
	}{
		{
			name:  "RFC2389-3.2/RFC4217-6",
			feats: []string{"AUTH TLS", "PBSZ", "PROT", "EPSV", "UTF8"},
			wire:  "211-Features:\r\n AUTH TLS\r\n PBSZ\r\n PROT\r\n EPSV\r\n UTF8\r\n211 End\r\n",
		},
		{
			name:  "RFC2389-3.2/one-feature",
			feats: []string{"MLST type*;size*;modify*;"},
			wire:  "211-Features:\r\n MLST type*;size*;modify*;\r\n211 End\r\n",
		},
		{
			name:  "RFC2389-3.2/none",
			feats: nil,
			wire:  "211-Features:\r\n211 End\r\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := ftpctl.FeatReply(tt.feats)
			if r.Code != ftpctl.CodeSystemStatus {
				t.Errorf("FeatReply code = %d, want 211", r.Code)
			}
			checkWire(t, r, tt.wire)
			back, err := newReader(r.String(), 0).ReadReply()
			if err != nil {
				t.Fatalf("ReadReply(%q): %v", r.String(), err)
			}
			if got := ftpctl.ParseFeat(back); !slices.Equal(got, tt.feats) {
				t.Errorf("ParseFeat(FeatReply(%q)) = %q", tt.feats, got)
			}
		})
	}
}

func TestFeatureName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		feat string
		want string
	}{
		{"UTF8", "UTF8"},
		{" UTF8", "UTF8"},
		{"utf8", "UTF8"},
		{"REST STREAM", "REST"},
		{"AUTH TLS;TLS-C;SSL;TLS-P;", "AUTH"},
		{"MLST type*;size*;sizd*;modify*;", "MLST"},
		{"LANG en-US.UTF-8*;en-US", "LANG"},
		{"PROT C;P;", "PROT"},
		{"", ""},
		{"   ", ""},
	}
	for _, tt := range tests {
		t.Run(tt.feat, func(t *testing.T) {
			t.Parallel()
			if got := ftpctl.FeatureName(tt.feat); got != tt.want {
				t.Errorf("FeatureName(%q) = %q, want %q", tt.feat, got, tt.want)
			}
		})
	}
}
