package proxy

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/tlsoffload"
)

// tapConn is a connection that runs live over a socket for the handshake
// and is then tapped: its writes are kept in out, counted, and its reads
// come from in. A relay over a tapped connection sees every byte at once,
// so what it batches does not hang on the scheduler.
type tapConn struct {
	net.Conn // nil for a connection that is tapped from the start
	tapped   bool
	in       *bytes.Reader
	out      bytes.Buffer
	writes   int
}

func (c *tapConn) tap(in []byte) { c.tapped, c.in = true, bytes.NewReader(in) }

func (c *tapConn) Read(p []byte) (int, error) {
	if !c.tapped {
		return c.Conn.Read(p)
	}
	return c.in.Read(p)
}

func (c *tapConn) Write(p []byte) (int, error) {
	if !c.tapped {
		return c.Conn.Write(p)
	}
	c.writes++
	return c.out.Write(p)
}

func (c *tapConn) Close() error {
	if c.Conn == nil {
		return nil
	}
	return c.Conn.Close()
}

func (c *tapConn) SetDeadline(t time.Time) error      { return nil }
func (c *tapConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *tapConn) SetWriteDeadline(t time.Time) error { return nil }

// dataTLSPair is a data connection's two TLS ends after their handshake
// over loopback, the proxy's over a batchConn; wrap, if not nil, goes
// between each end and its socket, the proxy's first.
func dataTLSPair(t *testing.T, wrap func(net.Conn) net.Conn) (proxyEnd, clientEnd *tls.Conn) {
	t.Helper()
	off, err := tlsoffload.New(tlsoffload.Config{})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(off.Certificate().Leaf)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	if wrap != nil {
		s, c = wrap(s), wrap(c)
	}
	proxyEnd = dataTLSServer(s, off.TLSConfig())
	clientEnd = tls.Client(c, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := proxyEnd.Handshake(); err != nil {
			t.Error(err)
		}
	})
	if err := clientEnd.Handshake(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	return proxyEnd, clientEnd
}

// tlsPair is dataTLSPair with each end over a tapConn.
func tlsPair(t *testing.T) (proxyEnd *tls.Conn, proxyTap *tapConn, clientEnd *tls.Conn, clientTap *tapConn) {
	t.Helper()
	var taps []*tapConn
	proxyEnd, clientEnd = dataTLSPair(t, func(c net.Conn) net.Conn {
		tc := &tapConn{Conn: c}
		taps = append(taps, tc)
		return tc
	})
	return proxyEnd, taps[0], clientEnd, taps[1]
}

// pattern is n bytes that differ along their length.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>11)
	}
	return b
}

// An upload sent in small records reaches the backend intact in a few
// large writes: each read takes every record received so far.
func TestRelayBatchesUploadRecords(t *testing.T) {
	proxyEnd, proxyTap, clientEnd, clientTap := tlsPair(t)
	clientTap.tap(nil)
	data := pattern(512 << 10)
	// Records of uneven sizes, so that the read-ahead ends inside one.
	for rest, size := data, 1000; len(rest) > 0; size = size%15000 + 2999 {
		m := min(size, len(rest))
		if _, err := clientEnd.Write(rest[:m]); err != nil {
			t.Fatal(err)
		}
		rest = rest[m:]
	}
	if err := clientEnd.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	records := clientTap.writes
	proxyTap.tap(clientTap.out.Bytes())

	backend := &tapConn{tapped: true}
	n, err := relayData(backend, proxyEnd, time.Minute, nil, nil)
	if err != nil || n != int64(len(data)) {
		t.Fatalf("relayed %d bytes, %v; want %d", n, err, len(data))
	}
	if !bytes.Equal(backend.out.Bytes(), data) {
		t.Fatal("the backend received other bytes than the client sent")
	}
	t.Logf("%d records, %d writes to the backend", records, backend.writes)
	// 512 KiB in reads of 112 KiB, and the first record on its own.
	if backend.writes > 7 {
		t.Errorf("%d records reached the backend in %d writes, want at most 7", records, backend.writes)
	}
}

// A download goes to the client in one socket write per relay buffer, not
// one per record, the buffer growing for a source that fills it, and the
// client reads it intact up to close_notify.
func TestRelayBatchesDownloadRecords(t *testing.T) {
	proxyEnd, proxyTap, clientEnd, clientTap := tlsPair(t)
	proxyTap.tap(nil)
	data := pattern(1 << 20)
	backend := &tapConn{tapped: true}
	backend.tap(data)

	n, err := relayData(proxyEnd, backend, time.Minute, nil, nil)
	if err != nil || n != int64(len(data)) {
		t.Fatalf("relayed %d bytes, %v; want %d", n, err, len(data))
	}
	t.Logf("%d socket writes", proxyTap.writes)
	// A write per relay buffer, not per record: the first read fills the
	// 128 KiB buffer, which then grows to 512 KiB (128, 512 and 384 KiB),
	// and close_notify.
	if proxyTap.writes > 4 {
		t.Errorf("1 MiB went out in %d socket writes, want at most 4", proxyTap.writes)
	}
	clientTap.tap(proxyTap.out.Bytes())
	got, err := io.ReadAll(clientEnd)
	if err != nil {
		t.Fatalf("client read: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("client received %d bytes, not the %d sent", len(got), len(data))
	}
}

// reset cuts a TLS data connection with a TCP reset and no close_notify:
// the peer must not see a clean end, or a backend would store a cut
// upload as a whole file.
func TestResetSendsNoCloseNotify(t *testing.T) {
	t.Parallel()
	for range 5 {
		proxyEnd, clientEnd := dataTLSPair(t, nil)
		reset(proxyEnd)
		clientEnd.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := clientEnd.Read(make([]byte, 1)); err == nil || errors.Is(err, io.EOF) {
			t.Fatalf("after reset the peer read %v, want a connection error", err)
		}
	}
}
