package proxy

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// copyBufSize is one read's worth of data relay: eight full TLS records
// per Write. Measured with curl through ftpsgate in front of vsftpd (make
// bench-peers), a PROT P download cost 1.55-1.72 CPU s/GiB with 32 KiB,
// 1.13 with 128 KiB and 1.03 with 256 KiB: fewer read syscalls and
// deadline updates per byte. The buffer is pooled and held only while a
// transfer runs, never by an idle session.
const copyBufSize = 128 << 10

// bigCopyBufSize is the buffer a copy from a plain end moves to once a read
// fills the small one, the source being ahead of the copy: a fast
// download. A slow link never fills the small buffer and keeps it.
// Measured with curl, 1 GiB PROT P downloads through ftpsgate in front of
// vsftpd, two builds side by side, medians of 5-6 runs of proxy CPU per
// GiB: 1.45 s with 128 KiB against 1.16 with 256 KiB; 1.20 with 256 KiB
// against 1.01 with 512 KiB (and 606, 673-708, 729 MiB/s). Every chunk
// costs a read, a write and a wake-up of the receiver, whatever its size.
// Uploads measured flat (0.76-0.83 s/GiB), so a TLS source keeps the
// small buffer.
const bigCopyBufSize = 512 << 10

// A plain-to-plain copy moves a chunk per ReadFrom call and refreshes the
// idle deadline between chunks. The chunk adapts to the link: about a
// tenth of the idle time's worth at the pace of the last one, between
// these bounds, so that a slow link that moves is never taken for a
// stalled one and a fast one costs few calls. A fixed chunk did neither:
// 256 KiB outlasted a 30 s data_idle below 9 KB/s. Measured with curl in
// front of an in-memory backend, proxy CPU per GiB of PROT C went from
// 0.43-0.44 s (fixed 256 KiB) to 0.32-0.38 down, and 0.36-0.56 to
// 0.33-0.36 up.
const (
	spliceChunkMin = 16 << 10
	spliceChunkMax = 4 << 20
)

var (
	copyBufs    = sync.Pool{New: func() any { return new([copyBufSize]byte) }}
	bigCopyBufs = sync.Pool{New: func() any { return new([bigCopyBufSize]byte) }}
)

// relayData copies src to dst until src ends, then half-closes dst so the
// receiver sees the end of the data: close_notify and FIN on TLS, FIN on TCP.
// A side that sends nothing for idle fails the copy; idle 0 waits forever
// (or until the caller sets a deadline). moved, if not nil, grows as bytes
// are written, one atomic add per chunk, for the status page. th, if not
// nil, paces the copy to the rate limits it holds.
func relayData(dst, src net.Conn, idle time.Duration, moved *atomic.Int64, th *throttle) (int64, error) {
	var (
		n   int64
		err error
	)
	dt, dPlain := dst.(*net.TCPConn)
	_, sPlain := src.(*net.TCPConn)
	if dPlain && sPlain && th == nil {
		n, err = copySplice(dt, src, idle, moved)
	} else {
		n, err = copyBuffered(dst, src, idle, moved, th)
	}
	if err != nil {
		return n, err
	}
	// The data is all written; a receiver that hung up as soon as it had
	// counted its bytes makes close_notify fail, and that loses nothing.
	closeWrite(dst)
	return n, nil
}

// copySplice moves bytes between two TCP sockets through ReadFrom of a
// LimitedReader, which the runtime turns into splice(2): no copy through
// user space. The one LimitedReader is reused for every chunk, where
// io.CopyN would allocate one per chunk. The chunks also let moved show
// progress during a long transfer.
func copySplice(dst *net.TCPConn, src net.Conn, idle time.Duration, moved *atomic.Int64) (int64, error) {
	var n int64
	chunk := &io.LimitedReader{R: src}
	size := int64(spliceChunkMin) // grows at once on a fast link
	for {
		began := time.Now()
		if idle > 0 {
			deadline := began.Add(idle)
			src.SetReadDeadline(deadline)
			dst.SetWriteDeadline(deadline)
		}
		chunk.N = size
		m, err := dst.ReadFrom(chunk)
		n += m
		if idle > 0 {
			size = nextChunk(m, time.Since(began), idle)
		} else {
			size = spliceChunkMax
		}
		if moved != nil && m > 0 {
			moved.Add(m)
		}
		if err != nil {
			return n, err
		}
		if chunk.N > 0 { // src ended within the chunk
			return n, nil
		}
	}
}

// nextChunk sizes the next splice chunk: what moved in took, scaled to a
// tenth of idle.
func nextChunk(moved int64, took, idle time.Duration) int64 {
	if took <= 0 {
		return spliceChunkMax
	}
	return min(max(int64(float64(moved)*float64(idle/10)/float64(took)), spliceChunkMin), spliceChunkMax)
}

// copyBuffered is the copy loop for a TLS end, or a rate-limited one, with
// a pooled buffer (io.CopyBuffer would ignore it beside a *net.TCPConn).
// From a TLS end the buffer is taken when the first bytes arrive, so that
// the direction that is silent during a transfer holds none: the first
// read takes 512 bytes, and TLS keeps the rest of its record for the next
// at no cost. A plain end's first read takes the whole buffer, or a small
// file would cost a second read and record. A TLS end over a batchConn
// moves several records per system call: everything received by the time
// a read returns is written on at once, and the records of one Write go
// out in one call.
func copyBuffered(dst, src net.Conn, idle time.Duration, moved *atomic.Int64, th *throttle) (int64, error) {
	var (
		first [512]byte
		buf   = first[:]
		bp    *[copyBufSize]byte
		bigp  *[bigCopyBufSize]byte
		n     int64
	)
	sb, db := batchOf(src), batchOf(dst)
	take := func() {
		bp = copyBufs.Get().(*[copyBufSize]byte)
		buf = bp[:]
		if th != nil {
			buf = buf[:th.chunk]
		}
		if sb != nil {
			sb.lendRead()
		}
	}
	_, tlsSrc := src.(*tls.Conn)
	if !tlsSrc {
		take()
	}
	defer func() {
		if bp != nil {
			copyBufs.Put(bp)
		}
		if bigp != nil {
			bigCopyBufs.Put(bigp)
		}
		if sb != nil {
			sb.returnRead()
		}
		if db != nil {
			db.returnWrite()
		}
	}()
	for {
		if idle > 0 {
			src.SetReadDeadline(time.Now().Add(idle))
		}
		nr, rerr := src.Read(buf)
		if nr > 0 && bp == nil && bigp == nil {
			take()
			copy(buf, first[:nr])
		}
		if nr > 0 && rerr == nil && sb != nil {
			nr, rerr = drainRecords(src, sb, buf, nr)
		}
		if nr > 0 && th != nil {
			if err := th.wait(nr); err != nil {
				return n, err
			}
		}
		if nr > 0 {
			// Each side gets the whole idle time: a slow read must not eat
			// into the time the receiver has to take the bytes.
			if idle > 0 {
				dst.SetWriteDeadline(time.Now().Add(idle))
			} else {
				dst.SetWriteDeadline(time.Time{})
			}
			if db != nil {
				db.startGather(nr)
			}
			nw, werr := dst.Write(buf[:nr])
			if db != nil {
				if err := db.flush(); err != nil && werr == nil {
					nw, werr = 0, err
				}
			}
			n += int64(nw)
			if moved != nil && nw > 0 {
				moved.Add(int64(nw))
			}
			if werr != nil {
				return n, werr
			}
		}
		if errors.Is(rerr, io.EOF) {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
		if nr == len(buf) && bp != nil && !tlsSrc && th == nil {
			bigp = bigCopyBufs.Get().(*[bigCopyBufSize]byte)
			buf = bigp[:]
			copyBufs.Put(bp)
			bp = nil
		}
	}
}

// drainRecords reads on from a TLS src into buf[nr:] what sb has already
// received, without waiting for more, and returns the new length.
func drainRecords(src net.Conn, sb *batchConn, buf []byte, nr int) (int, error) {
	sb.drain(true)
	defer sb.drain(false)
	for nr < len(buf) {
		m, err := src.Read(buf[nr:])
		nr += m
		if errors.Is(err, errDrained) {
			return nr, nil
		}
		if err != nil || m == 0 {
			return nr, err
		}
	}
	return nr, nil
}

// closeWrite half-closes c at both layers: tls.Conn.CloseWrite sends only
// close_notify (which GnuTLS-based clients such as lftp insist on), the FIN
// comes from the TCP socket underneath.
func closeWrite(c net.Conn) error {
	if tc, ok := c.(*tls.Conn); ok {
		if err := tc.CloseWrite(); err != nil {
			return err
		}
	}
	if cw, ok := socketOf(c).(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
