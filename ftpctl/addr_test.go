package ftpctl_test

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/ftpsgate/ftpsgate/ftpctl"
)

// wantProtocolError fails t unless err is a *ftpctl.ProtocolError.
func wantProtocolError(t *testing.T, call string, got any, err error) {
	t.Helper()
	var pe *ftpctl.ProtocolError
	if !errors.As(err, &pe) {
		t.Errorf("%s = %v, %v; want *ftpctl.ProtocolError", call, got, err)
	}
}

func TestParsePASV(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		text string
		want netip.AddrPort
	}{
		{"RFC959-4.1.2/parenthesised", "Entering Passive Mode (132,235,1,2,24,131)", netip.MustParseAddrPort("132.235.1.2:6275")},
		{"vsftpd", "Entering Passive Mode (127,0,0,1,117,48).", netip.MustParseAddrPort("127.0.0.1:30000")},
		{"pure-ftpd", "Entering Passive Mode (192,168,56,10,156,64)", netip.MustParseAddrPort("192.168.56.10:40000")},
		{"ProFTPD", "Entering Passive Mode (10,1,2,3,234,96).", netip.MustParseAddrPort("10.1.2.3:60000")},
		{"IIS/no-final-dot", "Entering Passive Mode (10,0,0,5,195,80)", netip.MustParseAddrPort("10.0.0.5:50000")},
		// RFC 1123 section 4.1.2.6: the parentheses may be missing; scan
		// for the first digit.
		{"RFC1123-4.1.2.6/no-parentheses", "=127,0,0,1,4,1", netip.MustParseAddrPort("127.0.0.1:1025")},
		{"RFC1123-4.1.2.6/no-parentheses-after-text", "Entering Passive Mode 10,0,0,5,195,80", netip.MustParseAddrPort("10.0.0.5:50000")},
		{"RFC1123-4.1.2.6/spaces-after-commas", "Entering Passive Mode (10, 0, 0, 5, 195, 80)", netip.MustParseAddrPort("10.0.0.5:50000")},
		// A backend behind NAT or bound to any address: the proxy dials
		// the backend's control IP instead, but the port still counts.
		{"unspecified-0.0.0.0", "Entering Passive Mode (0,0,0,0,195,80).", netip.MustParseAddrPort("0.0.0.0:50000")},
		{"leading-zeros", "Entering Passive Mode (010,000,000,001,004,001)", netip.MustParseAddrPort("10.0.0.1:1025")},
		{"highest-port", "Entering Passive Mode (255,255,255,255,255,255)", netip.MustParseAddrPort("255.255.255.255:65535")},
		// DESIGN: take the first six numbers.
		{"extra-numbers-ignored", "Entering Passive Mode (10,0,0,5,195,80,7)", netip.MustParseAddrPort("10.0.0.5:50000")},
		{"text-after-address", "Entering Passive Mode (10,0,0,5,195,80) at 12:00", netip.MustParseAddrPort("10.0.0.5:50000")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ftpctl.ParsePASV(tt.text)
			if err != nil || got != tt.want {
				t.Errorf("ParsePASV(%q) = %v, %v; want %v", tt.text, got, err, tt.want)
			}
		})
	}
}

func TestParsePASVErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		text string
	}{
		{"empty", ""},
		{"no-numbers", "Entering Passive Mode"},
		{"five-numbers", "Entering Passive Mode (127,0,0,1,117)."},
		{"four-numbers", "=127,0,0,1"},
		{"number-over-255", "Entering Passive Mode (256,0,0,1,117,48)."},
		{"port-byte-over-255", "Entering Passive Mode (127,0,0,1,117,480)."},
		{"empty-number", "Entering Passive Mode (127,,0,1,117,48)."},
		{"negative-number", "Entering Passive Mode (127,0,0,1,-1,48)."},
		{"IPv6-text", "Entering Passive Mode (::1,117,48)"},
		{"huge-number", "Entering Passive Mode (99999999999999999999,0,0,1,117,48)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ftpctl.ParsePASV(tt.text)
			wantProtocolError(t, "ParsePASV("+tt.text+")", got, err)
		})
	}
}

func TestFormatPASV(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		ap   netip.AddrPort
		want string
	}{
		{"vsftpd-text", netip.MustParseAddrPort("127.0.0.1:30000"), "Entering Passive Mode (127,0,0,1,117,48)."},
		{"RFC959-4.1.2", netip.MustParseAddrPort("132.235.1.2:6275"), "Entering Passive Mode (132,235,1,2,24,131)."},
		{"port-below-256", netip.MustParseAddrPort("203.0.113.10:21"), "Entering Passive Mode (203,0,113,10,0,21)."},
		{"highest-port", netip.MustParseAddrPort("203.0.113.10:65535"), "Entering Passive Mode (203,0,113,10,255,255)."},
		// The local address of a dual-stack socket is IPv4-mapped.
		{"IPv4-mapped", netip.MustParseAddrPort("[::ffff:10.0.0.5]:50000"), "Entering Passive Mode (10,0,0,5,195,80)."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := ftpctl.FormatPASV(tt.ap)
			if got != tt.want {
				t.Errorf("FormatPASV(%v) = %q, want %q", tt.ap, got, tt.want)
			}
			back, err := ftpctl.ParsePASV(got)
			if want := netip.AddrPortFrom(tt.ap.Addr().Unmap(), tt.ap.Port()); err != nil || back != want {
				t.Errorf("ParsePASV(FormatPASV(%v)) = %v, %v; want %v", tt.ap, back, err, want)
			}
			// As a client sees it, through a reply.
			r, err := newReader(ftpctl.NewReply(ftpctl.CodeEnteringPassive, got).String(), 0).ReadReply()
			if err != nil || r.Code != ftpctl.CodeEnteringPassive || r.Text() != got {
				t.Errorf("ReadReply of the 227 = %d %q, %v", r.Code, r.Lines, err)
			}
		})
	}
}

func TestParsePORT(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		arg  string
		want netip.AddrPort
	}{
		// RFC 2428 section 2 gives this PORT as the IPv4 twin of
		// "EPRT |1|132.235.1.2|6275|".
		{"RFC959-4.1.2/RFC2428-2", "132,235,1,2,24,131", netip.MustParseAddrPort("132.235.1.2:6275")},
		{"surrounding-spaces", "  192,168,1,20,195,80 ", netip.MustParseAddrPort("192.168.1.20:50000")},
		{"spaces-after-commas", "192, 168, 1, 20, 195, 80", netip.MustParseAddrPort("192.168.1.20:50000")},
		{"leading-zeros", "010,000,000,001,004,001", netip.MustParseAddrPort("10.0.0.1:1025")},
		{"port-zero-parses", "192,168,1,20,0,0", netip.MustParseAddrPort("192.168.1.20:0")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ftpctl.ParsePORT(tt.arg)
			if err != nil || got != tt.want {
				t.Errorf("ParsePORT(%q) = %v, %v; want %v", tt.arg, got, err, tt.want)
			}
		})
	}
}

func TestParsePORTErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		arg  string
	}{
		{"empty", ""},
		{"five-numbers", "192,168,1,20,195"},
		{"seven-numbers", "192,168,1,20,195,80,1"},
		{"trailing-comma", "192,168,1,20,195,80,"},
		{"trailing-text", "192,168,1,20,195,80 please"},
		{"number-over-255", "192,168,1,256,195,80"},
		{"port-byte-over-255", "192,168,1,20,195,800"},
		{"negative", "192,168,1,20,-1,80"},
		{"plus-sign", "192,168,1,20,+1,80"},
		{"empty-number", "192,,1,20,195,80"},
		{"hex", "0xc0,168,1,20,195,80"},
		{"dotted-address", "192.168.1.20,195,80"},
		{"EPRT-argument", "|1|132.235.1.2|6275|"},
		{"space-inside-number", "19 2,168,1,20,195,80"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ftpctl.ParsePORT(tt.arg)
			wantProtocolError(t, "ParsePORT("+tt.arg+")", got, err)
		})
	}
}

func TestFormatPORT(t *testing.T) {
	t.Parallel()
	tests := []struct {
		ap   netip.AddrPort
		want string
	}{
		{netip.MustParseAddrPort("132.235.1.2:6275"), "132,235,1,2,24,131"},
		{netip.MustParseAddrPort("10.0.0.1:1025"), "10,0,0,1,4,1"},
		{netip.MustParseAddrPort("[::ffff:10.0.0.1]:1025"), "10,0,0,1,4,1"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			t.Parallel()
			got := ftpctl.FormatPORT(tt.ap)
			if got != tt.want {
				t.Errorf("FormatPORT(%v) = %q, want %q", tt.ap, got, tt.want)
			}
			back, err := ftpctl.ParsePORT(got)
			if want := netip.AddrPortFrom(tt.ap.Addr().Unmap(), tt.ap.Port()); err != nil || back != want {
				t.Errorf("ParsePORT(FormatPORT(%v)) = %v, %v; want %v", tt.ap, back, err, want)
			}
		})
	}
}

func TestParseEPSV(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		text string
		want uint16
	}{
		{"RFC2428-3", "Entering Extended Passive Mode (|||6446|)", 6446},
		{"RFC2428-3/other-delimiter", "Entering Extended Passive Mode (!!!6446!)", 6446},
		{"RFC2428-3/delimiter-tilde", "Entering Extended Passive Mode (~~~6446~)", 6446},
		{"RFC2428-3/port-1", "Entering Extended Passive Mode (|||1|)", 1},
		{"RFC2428-3/port-65535", "Entering Extended Passive Mode (|||65535|)", 65535},
		{"vsftpd", "Entering Extended Passive Mode (|||30000|)", 30000},
		{"pure-ftpd", "Extended Passive mode OK (|||6446|)", 6446},
		{"ProFTPD", "Entering Extended Passive Mode (|||60000|)", 60000},
		{"trailing-dot", "Entering Extended Passive Mode (|||6446|).", 6446},
		{"only-parentheses", "(|||6446|)", 6446},
		{"leading-zeros", "Entering Extended Passive Mode (|||06446|)", 6446},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ftpctl.ParseEPSV(tt.text)
			if err != nil || got != tt.want {
				t.Errorf("ParseEPSV(%q) = %d, %v; want %d", tt.text, got, err, tt.want)
			}
		})
	}
}

func TestParseEPSVErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		text string
	}{
		{"empty", ""},
		{"no-parentheses", "Entering Extended Passive Mode |||6446|"},
		{"no-closing-parenthesis", "Entering Extended Passive Mode (|||6446|"},
		{"reversed-parentheses", "Entering Extended Passive Mode )|||6446|("},
		{"empty-parentheses", "Entering Extended Passive Mode ()"},
		{"RFC2428-3/port-zero", "Entering Extended Passive Mode (|||0|)"},
		{"RFC2428-3/port-too-big", "Entering Extended Passive Mode (|||65536|)"},
		{"RFC2428-3/no-port", "Entering Extended Passive Mode (||||)"},
		{"RFC2428-3/two-leading-delimiters", "Entering Extended Passive Mode (||6446|)"},
		{"RFC2428-3/no-trailing-delimiter", "Entering Extended Passive Mode (|||6446)"},
		{"RFC2428-3/mismatched-delimiters", "Entering Extended Passive Mode (|||6446!)"},
		{"RFC2428-3/mixed-leading-delimiters", "Entering Extended Passive Mode (|!|6446|)"},
		{"RFC2428-3/space-delimiter", "Entering Extended Passive Mode (   6446 )"},
		{"RFC2428-3/control-delimiter", "Entering Extended Passive Mode (\x01\x01\x016446\x01)"},
		{"RFC2428-3/non-ASCII-delimiter", "Entering Extended Passive Mode (\xa6\xa6\xa66446\xa6)"},
		{"RFC2428-3/address-given", "Entering Extended Passive Mode (|1|132.235.1.2|6446|)"},
		{"RFC2428-3/letters", "Entering Extended Passive Mode (|||port|)"},
		{"RFC2428-3/negative", "Entering Extended Passive Mode (|||-1|)"},
		{"RFC2428-3/plus-sign", "Entering Extended Passive Mode (|||+6446|)"},
		{"RFC2428-3/spaces-around-port", "Entering Extended Passive Mode (||| 6446 |)"},
		{"227-text", "Entering Passive Mode (127,0,0,1,117,48)."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ftpctl.ParseEPSV(tt.text)
			wantProtocolError(t, "ParseEPSV("+tt.text+")", got, err)
		})
	}
}

func TestFormatEPSV(t *testing.T) {
	t.Parallel()
	for _, port := range []uint16{1, 21, 6446, 50000, 65535} {
		got := ftpctl.FormatEPSV(port)
		back, err := ftpctl.ParseEPSV(got)
		if err != nil || back != port {
			t.Errorf("ParseEPSV(FormatEPSV(%d)) = %d, %v (text %q)", port, back, err, got)
		}
	}
	if got, want := ftpctl.FormatEPSV(6446), "Entering Extended Passive Mode (|||6446|)"; got != want {
		t.Errorf("FormatEPSV(6446) = %q, want RFC 2428 section 3's %q", got, want)
	}
}

func TestParseEPRT(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		arg  string
		want netip.AddrPort
	}{
		{"RFC2428-2/IPv4", "|1|132.235.1.2|6275|", netip.MustParseAddrPort("132.235.1.2:6275")},
		{"RFC2428-2/IPv6", "|2|1080::8:800:200C:417A|5282|", netip.MustParseAddrPort("[1080::8:800:200c:417a]:5282")},
		{"RFC2428-2/other-delimiter", "!1!132.235.1.2!6275!", netip.MustParseAddrPort("132.235.1.2:6275")},
		{"RFC2428-2/IPv6-loopback", "|2|::1|50000|", netip.MustParseAddrPort("[::1]:50000")},
		{"RFC2428-2/port-65535", "|1|10.0.0.1|65535|", netip.MustParseAddrPort("10.0.0.1:65535")},
		{"surrounding-spaces", "  |1|132.235.1.2|6275|  ", netip.MustParseAddrPort("132.235.1.2:6275")},
		{"leading-zeros-in-port", "|1|132.235.1.2|06275|", netip.MustParseAddrPort("132.235.1.2:6275")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ftpctl.ParseEPRT(tt.arg)
			if err != nil || got != tt.want {
				t.Errorf("ParseEPRT(%q) = %v, %v; want %v", tt.arg, got, err, tt.want)
			}
		})
	}
}

func TestParseEPRTErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		arg  string
	}{
		{"empty", ""},
		{"too-short", "|1||1|"},
		{"RFC2428-2/port-zero", "|1|132.235.1.2|0|"},
		{"RFC2428-2/port-too-big", "|1|132.235.1.2|65536|"},
		{"RFC2428-2/no-port", "|1|132.235.1.2||"},
		{"RFC2428-2/negative-port", "|1|132.235.1.2|-1|"},
		{"RFC2428-2/missing-last-delimiter", "|1|132.235.1.2|6275"},
		{"RFC2428-2/missing-first-delimiter", "1|132.235.1.2|6275|"},
		{"RFC2428-2/mismatched-delimiters", "|1|132.235.1.2|6275!"},
		{"RFC2428-2/mixed-delimiters", "|1!132.235.1.2|6275|"},
		{"RFC2428-2/space-delimiter", " 1 132.235.1.2 6275 "},
		{"RFC2428-2/non-ASCII-delimiter", "\xa61\xa6132.235.1.2\xa66275\xa6"},
		{"RFC2428-2/too-few-fields", "|1|132.235.1.2|"},
		{"RFC2428-2/too-many-fields", "|1|132.235.1.2|6275|7|"},
		{"RFC2428-2/family-1-with-IPv6", "|1|1080::8:800:200C:417A|5282|"},
		{"RFC2428-2/family-2-with-IPv4", "|2|132.235.1.2|6275|"},
		{"RFC2428-2/family-2-with-IPv4-mapped", "|2|::ffff:132.235.1.2|6275|"},
		{"RFC2428-2/unknown-family", "|3|132.235.1.2|6275|"},
		{"RFC2428-2/empty-family", "||132.235.1.2|6275|"},
		{"RFC2428-2/family-01", "|01|132.235.1.2|6275|"},
		{"RFC2428-2/bad-IPv4", "|1|132.235.1|6275|"},
		{"RFC2428-2/IPv4-over-255", "|1|132.235.1.256|6275|"},
		{"RFC2428-2/host-name", "|1|ftp.example.com|6275|"},
		{"RFC2428-2/IPv6-zone", "|2|fe80::1%eth0|6275|"},
		{"RFC2428-2/IPv6-brackets", "|2|[::1]|6275|"},
		{"RFC2428-2/empty-address", "|1||6275|"},
		{"PORT-argument", "132,235,1,2,24,131"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ftpctl.ParseEPRT(tt.arg)
			wantProtocolError(t, "ParseEPRT("+tt.arg+")", got, err)
		})
	}
}

func TestFormatEPRT(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		ap   netip.AddrPort
		want string
	}{
		{"RFC2428-2/IPv4", netip.MustParseAddrPort("132.235.1.2:6275"), "|1|132.235.1.2|6275|"},
		{"RFC2428-2/IPv6", netip.MustParseAddrPort("[1080::8:800:200C:417A]:5282"), "|2|1080::8:800:200c:417a|5282|"},
		{"RFC2428-2/IPv4-mapped-becomes-family-1", netip.MustParseAddrPort("[::ffff:132.235.1.2]:6275"), "|1|132.235.1.2|6275|"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := ftpctl.FormatEPRT(tt.ap)
			if got != tt.want {
				t.Errorf("FormatEPRT(%v) = %q, want %q", tt.ap, got, tt.want)
			}
			back, err := ftpctl.ParseEPRT(got)
			if want := netip.AddrPortFrom(tt.ap.Addr().Unmap(), tt.ap.Port()); err != nil || back != want {
				t.Errorf("ParseEPRT(FormatEPRT(%v)) = %v, %v; want %v", tt.ap, back, err, want)
			}
		})
	}
}
