package ftptest

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
)

// ProxyHeader is a PROXY protocol v2 header as the server received it
// (haproxy's proxy-protocol.txt, section 2.2).
type ProxyHeader struct {
	// Local is the LOCAL command: the sender speaks for itself, as a
	// balancer's or proxy's health check does, and the addresses are zero.
	Local bool
	// Source is the client's address and Destination the address the
	// client reached, for the PROXY command over TCP; zero otherwise.
	Source, Destination netip.AddrPort
	// TLVs maps each TLV type received to its value.
	TLVs map[byte][]byte
}

// proxyV2Signature opens every v2 header.
var proxyV2Signature = []byte("\r\n\r\n\x00\r\nQUIT\n")

var errProxyHeader = errors.New("ftptest: no valid PROXY protocol v2 header")

// readProxyV2 reads one v2 header from r. It is parsed by hand, so that
// ftptest needs nothing beyond ftpctl and the standard library: a fixed
// 16-byte part (signature, version and command, family and transport,
// length), then the addresses, then TLVs up to the length.
func readProxyV2(r *bufio.Reader) (ProxyHeader, error) {
	// A client that sends a command first is refused at once, not after
	// the 16 bytes it may never send.
	if b, err := r.Peek(1); err != nil || b[0] != proxyV2Signature[0] {
		return ProxyHeader{}, errors.Join(errProxyHeader, err)
	}
	var fixed [16]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return ProxyHeader{}, errors.Join(errProxyHeader, err)
	}
	if !bytes.Equal(fixed[:12], proxyV2Signature) || fixed[12]>>4 != 2 {
		return ProxyHeader{}, errProxyHeader
	}
	body := make([]byte, binary.BigEndian.Uint16(fixed[14:]))
	if _, err := io.ReadFull(r, body); err != nil {
		return ProxyHeader{}, errors.Join(errProxyHeader, err)
	}
	var h ProxyHeader
	switch fixed[12] & 0xF {
	case 0: // LOCAL: the family is usually UNSPEC; whatever follows is skipped
		h.Local = true
		return h, nil
	case 1: // PROXY
	default:
		return ProxyHeader{}, errProxyHeader
	}
	var n int // size of the address block
	switch fixed[13] {
	case 0x11: // TCP over IPv4
		n = 12
		if len(body) >= n {
			h.Source = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[0:4])), binary.BigEndian.Uint16(body[8:]))
			h.Destination = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[4:8])), binary.BigEndian.Uint16(body[10:]))
		}
	case 0x21: // TCP over IPv6
		n = 36
		if len(body) >= n {
			h.Source = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[0:16])), binary.BigEndian.Uint16(body[32:]))
			h.Destination = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[16:32])), binary.BigEndian.Uint16(body[34:]))
		}
	default:
		return ProxyHeader{}, errProxyHeader
	}
	if len(body) < n {
		return ProxyHeader{}, errProxyHeader
	}
	tlvs := body[n:]
	for len(tlvs) > 0 {
		if len(tlvs) < 3 {
			return ProxyHeader{}, errProxyHeader
		}
		size := int(binary.BigEndian.Uint16(tlvs[1:3]))
		if len(tlvs) < 3+size {
			return ProxyHeader{}, errProxyHeader
		}
		if h.TLVs == nil {
			h.TLVs = make(map[byte][]byte)
		}
		h.TLVs[tlvs[0]] = bytes.Clone(tlvs[3 : 3+size])
		tlvs = tlvs[3+size:]
	}
	return h, nil
}
