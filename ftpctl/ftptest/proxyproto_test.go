package ftptest

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// v2 builds a PROXY v2 header by hand (haproxy's proxy-protocol.txt,
// section 2.2): command 1 is PROXY, 0 LOCAL.
func v2(command byte, src, dst netip.AddrPort, tlvs ...[]byte) []byte {
	var body []byte
	fam := byte(0x00)
	if src.IsValid() {
		fam = 0x11
		s, d := src.Addr().As4(), dst.Addr().As4()
		body = append(append(body, s[:]...), d[:]...)
		body = binary.BigEndian.AppendUint16(body, src.Port())
		body = binary.BigEndian.AppendUint16(body, dst.Port())
	}
	for _, t := range tlvs {
		body = append(body, t...)
	}
	h := append([]byte{}, proxyV2Signature...)
	h = append(h, 0x20|command, fam)
	h = binary.BigEndian.AppendUint16(h, uint16(len(body)))
	return append(h, body...)
}

func TestRequireProxyV2(t *testing.T) {
	srv := newTestServer(t, func(s *Server) { s.RequireProxyV2 = true })
	src, dst := netip.MustParseAddrPort("192.0.2.7:40000"), netip.MustParseAddrPort("198.51.100.1:21")
	tlv := []byte{0xE5, 0, 3, 'a', 'b', 'c'}

	for _, tc := range []struct {
		name   string
		header []byte
		greets bool
	}{
		{"proxy", v2(1, src, dst, tlv), true},
		{"local", v2(0, netip.AddrPort{}, netip.AddrPort{}), true},
		{"none", []byte("USER test\r\n"), false},
		{"v1", []byte("PROXY TCP4 192.0.2.7 198.51.100.1 40000 21\r\n"), false},
		{"truncated TLV", v2(1, src, dst, []byte{0xE5, 0, 9, 'x'}), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", srv.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(testTimeout))
			c.Write(tc.header)
			line, _ := bufio.NewReader(c).ReadString('\n')
			if greets := strings.HasPrefix(line, "220"); greets != tc.greets {
				t.Fatalf("first line %q, want a greeting: %v", line, tc.greets)
			}
		})
	}
	hs := srv.ProxyHeaders()
	if len(hs) != 2 {
		t.Fatalf("recorded %d headers, want 2: %+v", len(hs), hs)
	}
	if hs[0].Local || hs[0].Source != src || hs[0].Destination != dst || !bytes.Equal(hs[0].TLVs[0xE5], []byte("abc")) {
		t.Errorf("PROXY header recorded as %+v", hs[0])
	}
	if !hs[1].Local || hs[1].Source.IsValid() {
		t.Errorf("LOCAL header recorded as %+v", hs[1])
	}
}
