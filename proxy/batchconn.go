package proxy

import (
	"crypto/tls"
	"net"
	"sync"
)

// batchConn is the socket under a data connection's TLS layer. crypto/tls
// makes one system call per record, and a record holds 16 KiB at most; the
// relay uses a batchConn to move several records per call while a transfer
// runs:
//   - reading, it reads ahead into a buffer the relay lends it, and while
//     draining it answers from that buffer alone, so that the relay takes
//     every record already received and writes them on in one call;
//   - writing, while gathering it keeps the records of one relayed Write
//     in a lent buffer, and flush sends them in one call.
//
// Lent buffers go back to their pool when the copy ends: an idle session
// and an idle direction hold none.
type batchConn struct {
	net.Conn

	// The read side belongs to the one goroutine reading the TLS layer.
	rbuf     []byte
	r, w     int
	draining bool

	// The write side is shared: a reading TLS layer may write an alert.
	wmu    sync.Mutex
	wbuf   []byte
	gather bool
}

// The read-ahead buffer is a relay buffer (copyBufs) less one record's
// plaintext: what it holds, after the part of a record the last read left,
// always fits the relay's buffer, so that every socket read becomes one
// write on. A gather buffer holds a relay buffer of plaintext as records:
// at most 16 KiB each, with up to gatherOverhead bytes of header, IV, tag
// and padding (TLS 1.2 CBC with SHA-384 comes to 325).
const (
	readAheadSize    = copyBufSize - 16<<10
	gatherOverhead   = 512
	gatherBufSize    = copyBufSize + 8<<10
	bigGatherBufSize = bigCopyBufSize + 32<<10
)

var (
	gatherBufs    = sync.Pool{New: func() any { return new([gatherBufSize]byte) }}
	bigGatherBufs = sync.Pool{New: func() any { return new([bigGatherBufSize]byte) }}
)

// dataTLSServer and dataTLSClient start TLS on a data connection over a
// batchConn, which relayData then batches.
func dataTLSServer(conn net.Conn, cfg *tls.Config) *tls.Conn {
	return tls.Server(&batchConn{Conn: conn}, cfg)
}

func dataTLSClient(conn net.Conn, cfg *tls.Config) *tls.Conn {
	return tls.Client(&batchConn{Conn: conn}, cfg)
}

// batchOf returns the batchConn under c, if c is TLS over one.
func batchOf(c net.Conn) *batchConn {
	if tc, ok := c.(*tls.Conn); ok {
		if b, ok := tc.NetConn().(*batchConn); ok {
			return b
		}
	}
	return nil
}

// socketOf returns the connection under c's TLS and batching layers.
func socketOf(c net.Conn) net.Conn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if b, ok := c.(*batchConn); ok {
		c = b.Conn
	}
	return c
}

// errDrained ends a Read while draining once the read-ahead is used up. It
// is temporary: crypto/tls then keeps a partial record for the next Read
// and the connection usable, as after a read deadline.
var errDrained error = drainedError{}

type drainedError struct{}

func (drainedError) Error() string   { return "proxy: no more data received yet" }
func (drainedError) Timeout() bool   { return true }
func (drainedError) Temporary() bool { return true }

func (b *batchConn) Read(p []byte) (int, error) {
	if b.r < b.w {
		n := copy(p, b.rbuf[b.r:b.w])
		b.r += n
		return n, nil
	}
	if b.draining {
		return 0, errDrained
	}
	if b.rbuf == nil || len(p) >= len(b.rbuf) {
		return b.Conn.Read(p)
	}
	n, err := b.Conn.Read(b.rbuf)
	b.r, b.w = 0, n
	m := copy(p, b.rbuf[:n])
	b.r = m
	return m, err
}

// lendRead gives the read side a buffer to read ahead into.
func (b *batchConn) lendRead() {
	if b.rbuf == nil {
		b.rbuf = copyBufs.Get().(*[copyBufSize]byte)[:readAheadSize]
		b.r, b.w = 0, 0
	}
}

// drain makes Read answer from what was read ahead only (true), or wait on
// the socket again (false).
func (b *batchConn) drain(on bool) { b.draining = on }

// returnRead takes the read-ahead buffer back. What it still holds is
// dropped: the copy has ended, with the data or with an error.
func (b *batchConn) returnRead() {
	if b.rbuf != nil {
		copyBufs.Put((*[copyBufSize]byte)(b.rbuf[:copyBufSize]))
		b.rbuf, b.r, b.w, b.draining = nil, 0, 0, false
	}
}

func (b *batchConn) Write(p []byte) (int, error) {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	if b.gather {
		if len(b.wbuf)+len(p) <= cap(b.wbuf) {
			b.wbuf = append(b.wbuf, p...)
			return len(p), nil
		}
		if err := b.flushLocked(); err != nil {
			return 0, err
		}
	}
	return b.Conn.Write(p)
}

// startGather makes Write keep what it is given until flush: the records
// of n bytes of plaintext.
func (b *batchConn) startGather(n int) {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	need := n + (n>>14+1)*gatherOverhead
	if b.wbuf != nil && cap(b.wbuf) < need {
		b.putGatherLocked()
	}
	if b.wbuf == nil {
		if need <= gatherBufSize {
			b.wbuf = gatherBufs.Get().(*[gatherBufSize]byte)[:0]
		} else {
			b.wbuf = bigGatherBufs.Get().(*[bigGatherBufSize]byte)[:0]
		}
	}
	b.gather = true
}

// flush writes what was gathered and stops gathering.
func (b *batchConn) flush() error {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	b.gather = false
	return b.flushLocked()
}

func (b *batchConn) flushLocked() error {
	if len(b.wbuf) == 0 {
		return nil
	}
	_, err := b.Conn.Write(b.wbuf)
	b.wbuf = b.wbuf[:0]
	return err
}

// returnWrite takes the gather buffer back.
func (b *batchConn) returnWrite() {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	b.putGatherLocked()
	b.gather = false
}

func (b *batchConn) putGatherLocked() {
	switch cap(b.wbuf) {
	case gatherBufSize:
		gatherBufs.Put((*[gatherBufSize]byte)(b.wbuf[:gatherBufSize]))
	case bigGatherBufSize:
		bigGatherBufs.Put((*[bigGatherBufSize]byte)(b.wbuf[:bigGatherBufSize]))
	}
	b.wbuf = nil
}
