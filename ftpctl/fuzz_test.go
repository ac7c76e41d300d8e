package ftpctl_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"

	"github.com/ftpsgate/ftpsgate/ftpctl"
)

// fuzzMaxLine is small enough that fuzzed inputs reach the line limit.
const fuzzMaxLine = 64

// FuzzReadReply reads every reply in the input. Whatever the input, the
// reader does not panic; every reply it accepts formats to bytes that read
// back as exactly one reply with the same code and as many lines.
func FuzzReadReply(f *testing.F) {
	for _, tt := range replyTests {
		f.Add([]byte(tt.in))
	}
	for _, s := range []string{
		"",
		"200",
		"200 ok",
		"211-a\r\n211\r\r\n211 End\r\n",
		"211-a\r\n211\r\n",
		"211-a\r\n\r211 x\r\n211 End\r\n",
		"211-" + strings.Repeat("x", 2*fuzzMaxLine) + "\r\n211 End\r\n200 ok\r\n",
		"211-Features:\r\n MDTM\r\n",
		"099 x\r\n600 x\r\nabc\r\n200x\r\n",
		"227 Entering Passive Mode (127,0,0,1,117,48).\r\n229 Entering Extended Passive Mode (|||6446|)\r\n",
		"257 \"/caf\xe9\xff\" created\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := ftpctl.NewReader(bufio.NewReader(bytes.NewReader(in)), fuzzMaxLine)
		for {
			rep, err := r.ReadReply()
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return
			}
			if errors.Is(err, ftpctl.ErrLineTooLong) {
				// The reader goes on past an overlong line only when told.
				if err := r.SkipLine(); err != nil {
					return
				}
				continue
			}
			if err != nil {
				// The reader must stay usable after a bad line.
				continue
			}
			if !rep.Code.Valid() || len(rep.Lines) == 0 || len(rep.Lines) > ftpctl.MaxReplyLines {
				t.Fatalf("ReadReply accepted code %d with %d lines", rep.Code, len(rep.Lines))
			}
			if size := len(strings.Join(rep.Lines, "")); size > ftpctl.MaxReplyBytes+fuzzMaxLine {
				t.Fatalf("ReadReply accepted a reply of %d bytes", size)
			}
			wire := rep.String()
			// Formatting may add one byte (a closing "211" becomes
			// "211 "), never more.
			back := ftpctl.NewReader(bufio.NewReader(strings.NewReader(wire)), fuzzMaxLine+1)
			again, err := back.ReadReply()
			if err != nil {
				t.Fatalf("ReadReply(%q) (formatted from %q): %v", wire, rep.Lines, err)
			}
			if again.Code != rep.Code || len(again.Lines) != len(rep.Lines) {
				t.Fatalf("reply %d with %d lines %q formats to %q, which reads back as %d with %d lines %q",
					rep.Code, len(rep.Lines), rep.Lines, wire, again.Code, len(again.Lines), again.Lines)
			}
			if _, err := back.ReadLine(); !errors.Is(err, io.EOF) {
				t.Fatalf("reply %q formats to %q, which holds more than one reply", rep.Lines, wire)
			}
			if again.String() != wire {
				t.Fatalf("formatting is not stable: %q, then %q", wire, again.String())
			}
		}
	})
}

// FuzzReadCommand reads every command in the input. The reader does not
// panic, an accepted command's String parses back to the same command, and
// when the line had no Telnet bytes its argument is the raw rest of the line.
func FuzzReadCommand(f *testing.F) {
	for _, s := range []string{
		"USER anonymous\r\nPASS guest\r\n",
		"user Alice\r\n",
		"PORT 132,235,1,2,24,131\r\n",
		"EPRT |2|1080::8:800:200C:417A|5282|\r\n",
		"AUTH TLS\r\nPBSZ 0\r\nPROT P\r\n",
		"\xff\xf4\xff\xf2ABOR\r\n",
		"\xff\xfd\x03NOOP\r\n",
		"RETR \xff\xff.bin\r\n",
		"RETR caf\xe9\xff\n",
		"CWD  spaced dir  \r\n",
		"NOOP \r\n",
		"ABCDEFGHI\r\n123\r\n\r\n \r\n",
		"STOR " + strings.Repeat("a", 2*fuzzMaxLine) + "\r\nQUIT\r\n",
		"QUIT",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := ftpctl.NewReader(bufio.NewReader(bytes.NewReader(in)), fuzzMaxLine)
		for {
			line, err := r.ReadLine()
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return
			}
			if errors.Is(err, ftpctl.ErrLineTooLong) {
				if err := r.SkipLine(); err != nil {
					return
				}
				continue
			}
			if err != nil {
				continue
			}
			cmd, err := ftpctl.ParseCommand(line)
			if err != nil {
				var pe *ftpctl.ProtocolError
				if !errors.As(err, &pe) {
					t.Fatalf("ParseCommand(%q) error %T %v, want *ftpctl.ProtocolError", line, err, err)
				}
				continue
			}
			if cmd.Verb == "" || cmd.Verb != strings.ToUpper(cmd.Verb) {
				t.Fatalf("ParseCommand(%q) verb %q is not upper case", line, cmd.Verb)
			}
			// What the proxy sends on is read by the server as the
			// same command: Telnet stripping is idempotent, so this
			// holds even for lines with IAC bytes.
			again, err := ftpctl.ParseCommand(cmd.String())
			if err != nil || again != cmd {
				t.Fatalf("ParseCommand(%q) = %+q, whose String %q parses to %+q, %v", line, cmd, cmd.String(), again, err)
			}
			if !strings.Contains(line, "\xff") { // no Telnet bytes
				// Arguments are bytes: what followed the verb and its
				// space is kept exactly.
				if _, arg, _ := strings.Cut(line, " "); arg != cmd.Arg {
					t.Fatalf("ParseCommand(%q).Arg = %q, want %q", line, cmd.Arg, arg)
				}
			}
			if red := cmd.Redacted(); (cmd.Verb == "PASS" || cmd.Verb == "ACCT") && cmd.Arg != "" && red != cmd.Verb+" ****" {
				t.Fatalf("Redacted() of %+q = %q", cmd, red)
			}
		}
	})
}

// FuzzPASVRoundTrip checks Parse(Format(x)) == x for every IPv4 address and
// port, through FormatPASV/ParsePASV and FormatPORT/ParsePORT, and through a
// 227 reply on the wire.
func FuzzPASVRoundTrip(f *testing.F) {
	f.Add(byte(127), byte(0), byte(0), byte(1), uint16(30000), false)
	f.Add(byte(10), byte(0), byte(0), byte(5), uint16(50000), true)
	f.Add(byte(0), byte(0), byte(0), byte(0), uint16(0), false)
	f.Add(byte(255), byte(255), byte(255), byte(255), uint16(65535), true)
	f.Add(byte(132), byte(235), byte(1), byte(2), uint16(6275), false)
	f.Fuzz(func(t *testing.T, a, b, c, d byte, port uint16, mapped bool) {
		want := netip.AddrPortFrom(netip.AddrFrom4([4]byte{a, b, c, d}), port)
		ap := want
		if mapped {
			// A dual-stack socket's local address.
			ap = netip.AddrPortFrom(netip.AddrFrom16(want.Addr().As16()), port)
		}

		text := ftpctl.FormatPASV(ap)
		if got, err := ftpctl.ParsePASV(text); err != nil || got != want {
			t.Fatalf("ParsePASV(FormatPASV(%v)) = %v, %v; want %v (text %q)", ap, got, err, want, text)
		}
		rep, err := newReader(ftpctl.NewReply(ftpctl.CodeEnteringPassive, text).String(), 0).ReadReply()
		if err != nil {
			t.Fatalf("ReadReply of the 227 for %v: %v", ap, err)
		}
		if got, err := ftpctl.ParsePASV(rep.Text()); err != nil || got != want {
			t.Fatalf("ParsePASV of the 227 for %v = %v, %v", ap, got, err)
		}

		arg := ftpctl.FormatPORT(ap)
		if got, err := ftpctl.ParsePORT(arg); err != nil || got != want {
			t.Fatalf("ParsePORT(FormatPORT(%v)) = %v, %v; want %v (arg %q)", ap, got, err, want, arg)
		}
		cmd, err := ftpctl.ParseCommand(ftpctl.Command{Verb: "PORT", Arg: arg}.String())
		if err != nil || cmd.Arg != arg {
			t.Fatalf("PORT %s does not survive the command line: %+q, %v", arg, cmd, err)
		}
	})
}

// FuzzEPRTRoundTrip checks Parse(Format(x)) == x for EPRT, for addresses
// built from raw bytes and for anything ParseEPRT accepts.
func FuzzEPRTRoundTrip(f *testing.F) {
	f.Add([]byte{132, 235, 1, 2}, uint16(6275), "|1|132.235.1.2|6275|")
	f.Add(netip.MustParseAddr("1080::8:800:200C:417A").AsSlice(), uint16(5282), "|2|1080::8:800:200C:417A|5282|")
	f.Add(netip.MustParseAddr("::ffff:10.0.0.5").AsSlice(), uint16(50000), "!1!10.0.0.5!50000!")
	f.Add(netip.IPv6Unspecified().AsSlice(), uint16(0), "|2|::|1|")
	f.Add([]byte{}, uint16(1), "|2|fe80::1%eth0|6275|")
	f.Fuzz(func(t *testing.T, raw []byte, port uint16, arg string) {
		if addr, ok := netip.AddrFromSlice(raw); ok {
			ap := netip.AddrPortFrom(addr, port)
			want := netip.AddrPortFrom(addr.Unmap(), port)
			s := ftpctl.FormatEPRT(ap)
			got, err := ftpctl.ParseEPRT(s)
			switch {
			case port == 0 && err == nil:
				t.Fatalf("ParseEPRT(%q) accepted port 0: %v", s, got)
			case port != 0 && (err != nil || got != want):
				t.Fatalf("ParseEPRT(FormatEPRT(%v)) = %v, %v; want %v (arg %q)", ap, got, err, want, s)
			}
		}

		ap, err := ftpctl.ParseEPRT(arg)
		if err != nil {
			var pe *ftpctl.ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("ParseEPRT(%q) error %T %v, want *ftpctl.ProtocolError", arg, err, err)
			}
			return
		}
		if ap.Port() == 0 || !ap.Addr().IsValid() || ap.Addr().Zone() != "" || ap.Addr().Is4In6() {
			t.Fatalf("ParseEPRT(%q) = %v: port 0, zone or mapped address accepted", arg, ap)
		}
		s := ftpctl.FormatEPRT(ap)
		if got, err := ftpctl.ParseEPRT(s); err != nil || got != ap {
			t.Fatalf("ParseEPRT(%q) = %v, but ParseEPRT(FormatEPRT) = %v, %v (arg %q)", arg, ap, got, err, s)
		}
	})
}

// FuzzParseEPSV: no panic on any 229 text; an accepted port is not zero
// and survives FormatEPSV.
func FuzzParseEPSV(f *testing.F) {
	for _, s := range []string{
		"Entering Extended Passive Mode (|||6446|)",
		"Extended Passive mode OK (|||6446|)",
		"Entering Extended Passive Mode (!!!65535!).",
		"(|||0|)",
		"(|||65536|)",
		"(||||)",
		"()",
		")(",
		"(|1|132.235.1.2|6446|)",
		"Entering Passive Mode (127,0,0,1,117,48).",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		port, err := ftpctl.ParseEPSV(text)
		if err != nil {
			var pe *ftpctl.ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("ParseEPSV(%q) error %T %v, want *ftpctl.ProtocolError", text, err, err)
			}
			return
		}
		if port == 0 {
			t.Fatalf("ParseEPSV(%q) accepted port 0", text)
		}
		if got, err := ftpctl.ParseEPSV(ftpctl.FormatEPSV(port)); err != nil || got != port {
			t.Fatalf("ParseEPSV(FormatEPSV(%d)) = %d, %v", port, got, err)
		}
	})
}

// FuzzParsePORT: no panic on any PORT argument; an accepted address is IPv4
// and survives FormatPORT.
func FuzzParsePORT(f *testing.F) {
	for _, s := range []string{
		"132,235,1,2,24,131",
		"  192,168,1,20,195,80 ",
		"192, 168, 1, 20, 195, 80",
		"192,168,1,20,195",
		"192,168,1,20,195,80,1",
		"192,168,1,256,195,80",
		"192,,1,20,195,80",
		"0xc0,168,1,20,195,80",
		"|1|132.235.1.2|6275|",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, arg string) {
		ap, err := ftpctl.ParsePORT(arg)
		if err != nil {
			var pe *ftpctl.ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("ParsePORT(%q) error %T %v, want *ftpctl.ProtocolError", arg, err, err)
			}
			return
		}
		if !ap.Addr().Is4() {
			t.Fatalf("ParsePORT(%q) = %v, not IPv4", arg, ap)
		}
		if got, err := ftpctl.ParsePORT(ftpctl.FormatPORT(ap)); err != nil || got != ap {
			t.Fatalf("ParsePORT(%q) = %v, but ParsePORT(FormatPORT) = %v, %v", arg, ap, got, err)
		}
	})
}

// FuzzParsePASV: no panic on any 227 text; an accepted address is IPv4 and
// survives FormatPASV.
func FuzzParsePASV(f *testing.F) {
	for _, s := range []string{
		"Entering Passive Mode (127,0,0,1,117,48).",
		"Entering Passive Mode (10,0,0,5,195,80)",
		"=127,0,0,1,4,1",
		"Entering Passive Mode (0,0,0,0,195,80).",
		"Entering Passive Mode (10, 0, 0, 5, 195, 80)",
		"Entering Passive Mode (256,0,0,1,117,48).",
		"Entering Passive Mode (127,0,0,1,117).",
		"Entering Extended Passive Mode (|||6446|)",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		ap, err := ftpctl.ParsePASV(text)
		if err != nil {
			var pe *ftpctl.ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("ParsePASV(%q) error %T %v, want *ftpctl.ProtocolError", text, err, err)
			}
			return
		}
		if !ap.Addr().Is4() {
			t.Fatalf("ParsePASV(%q) = %v, not IPv4", text, ap)
		}
		if got, err := ftpctl.ParsePASV(ftpctl.FormatPASV(ap)); err != nil || got != ap {
			t.Fatalf("ParsePASV(%q) = %v, but ParsePASV(FormatPASV) = %v, %v", text, ap, got, err)
		}
	})
}
