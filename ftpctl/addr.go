package ftpctl

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ParsePASV extracts the address from the text of a 227 reply (RFC 959
// section 4.1.2). Servers differ in what surrounds the numbers
// ("Entering Passive Mode (h1,h2,h3,h4,p1,p2)." or no parentheses at all, RFC
// 1123 section 4.1.2.6), so the first six comma-separated numbers are taken.
func ParsePASV(text string) (netip.AddrPort, error) {
	start := strings.IndexAny(text, "0123456789")
	if start < 0 {
		return netip.AddrPort{}, protoErr("no address in 227 reply", text)
	}
	end := start
	for end < len(text) && (text[end] == ',' || '0' <= text[end] && text[end] <= '9' || text[end] == ' ') {
		end++
	}
	return parseHostPort(text[start:end], "227 reply")
}

// FormatPASV returns the text of a 227 reply that names ap, which must be
// IPv4 (an IPv4-mapped IPv6 address is unmapped).
func FormatPASV(ap netip.AddrPort) string {
	return "Entering Passive Mode (" + hostPort(ap) + ")."
}

// ParsePORT parses the argument of PORT, "h1,h2,h3,h4,p1,p2" (RFC 959 4.1.2).
// Unlike a 227 reply, the argument is exactly six numbers: anything after
// them is malformed client input, not server decoration.
func ParsePORT(arg string) (netip.AddrPort, error) {
	arg = strings.TrimSpace(arg)
	if strings.Count(arg, ",") != 5 {
		return netip.AddrPort{}, protoErr("PORT argument: want six numbers", arg)
	}
	return parseHostPort(arg, "PORT argument")
}

// FormatPORT returns the argument of a PORT command that names ap.
func FormatPORT(ap netip.AddrPort) string { return hostPort(ap) }

func hostPort(ap netip.AddrPort) string {
	a := ap.Addr().Unmap().As4()
	p := ap.Port()
	return fmt.Sprintf("%d,%d,%d,%d,%d,%d", a[0], a[1], a[2], a[3], p>>8, p&0xFF)
}

func parseHostPort(s, what string) (netip.AddrPort, error) {
	fields := strings.Split(s, ",")
	if len(fields) < 6 {
		return netip.AddrPort{}, protoErr(what+": want six numbers", s)
	}
	var n [6]byte
	for i := range n {
		v, err := strconv.ParseUint(strings.TrimSpace(fields[i]), 10, 8)
		if err != nil {
			return netip.AddrPort{}, protoErr(what+": number out of range", s)
		}
		n[i] = byte(v)
	}
	addr := netip.AddrFrom4([4]byte{n[0], n[1], n[2], n[3]})
	return netip.AddrPortFrom(addr, uint16(n[4])<<8|uint16(n[5])), nil
}

// ParseEPSV extracts the port from the text of a 229 reply,
// "Entering Extended Passive Mode (|||port|)" (RFC 2428 section 3). The
// delimiter may be any printable character; the network address is empty.
func ParseEPSV(text string) (uint16, error) {
	open := strings.IndexByte(text, '(')
	close := strings.LastIndexByte(text, ')')
	if open < 0 || close < open {
		return 0, protoErr("229 reply without parentheses", text)
	}
	inner := text[open+1 : close]
	if len(inner) < 5 {
		return 0, protoErr("229 reply too short", text)
	}
	d := inner[0]
	if d < 33 || d > 126 || inner[1] != d || inner[2] != d || inner[len(inner)-1] != d {
		return 0, protoErr("229 reply delimiters", text)
	}
	p, err := strconv.ParseUint(inner[3:len(inner)-1], 10, 16)
	if err != nil || p == 0 {
		return 0, protoErr("229 reply port", text)
	}
	return uint16(p), nil
}

// FormatEPSV returns the text of a 229 reply that names port.
func FormatEPSV(port uint16) string {
	return "Entering Extended Passive Mode (|||" + strconv.Itoa(int(port)) + "|)"
}

// ParseEPRT parses the argument of EPRT, "|1|132.235.1.2|6275|" or
// "|2|1080::8:800:200C:417A|5282|" (RFC 2428 section 2).
func ParseEPRT(arg string) (netip.AddrPort, error) {
	arg = strings.TrimSpace(arg)
	if len(arg) < 7 {
		return netip.AddrPort{}, protoErr("EPRT argument too short", arg)
	}
	d := arg[0]
	if d < 33 || d > 126 || arg[len(arg)-1] != d {
		return netip.AddrPort{}, protoErr("EPRT delimiters", arg)
	}
	f := strings.Split(arg[1:len(arg)-1], string(d))
	if len(f) != 3 {
		return netip.AddrPort{}, protoErr("EPRT wants three fields", arg)
	}
	addr, err := netip.ParseAddr(f[1])
	if err != nil || addr.Zone() != "" {
		return netip.AddrPort{}, protoErr("EPRT address", arg)
	}
	switch f[0] {
	case "1":
		if !addr.Is4() {
			return netip.AddrPort{}, protoErr("EPRT family 1 with a non-IPv4 address", arg)
		}
	case "2":
		if !addr.Is6() || addr.Is4In6() {
			return netip.AddrPort{}, protoErr("EPRT family 2 with a non-IPv6 address", arg)
		}
	default:
		return netip.AddrPort{}, protoErr("EPRT network protocol not supported", arg)
	}
	p, err := strconv.ParseUint(f[2], 10, 16)
	if err != nil || p == 0 {
		return netip.AddrPort{}, protoErr("EPRT port", arg)
	}
	return netip.AddrPortFrom(addr, uint16(p)), nil
}

// FormatEPRT returns the argument of an EPRT command that names ap.
func FormatEPRT(ap netip.AddrPort) string {
	a := ap.Addr().Unmap()
	family := "1"
	if a.Is6() {
		family = "2"
	}
	return "|" + family + "|" + a.String() + "|" + strconv.Itoa(int(ap.Port())) + "|"
}
