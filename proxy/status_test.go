package proxy

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"strconv"
	"testing"
)

// TestStatus: during a download Status shows the session, its backend and
// a byte count that grows as the client reads; after it, the transfer is
// the newest of the recent ones and the backend's total holds its bytes.
// PROT C relays with splice, PROT P with the buffered copy: both count.
func TestStatus(t *testing.T) {
	t.Parallel()
	for _, prot := range []string{"C", "P"} {
		t.Run("PROT "+prot, func(t *testing.T) {
			t.Parallel()
			const size = 64 << 20
			h := newHarness(t, nil, nil)
			h.backend.FS.WriteFile("/big", bytes.Repeat([]byte("x"), size))

			waitFor(t, "the first health check", func() bool {
				b := h.srv.Status().Backends
				return len(b) == 1 && !b[0].LastCheck.IsZero()
			})
			if b := h.srv.Status().Backends[0]; b.Name != "mem" || b.Pool != "default" || !b.Healthy || b.CheckError != "" {
				t.Errorf("backend before any session: %+v", b)
			}

			rc := h.rawTLS()
			rc.cmd("PBSZ 0", 200)
			rc.cmd("PROT "+prot, 200)
			port := rc.epsv()
			var data net.Conn
			data, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
			if err != nil {
				t.Fatal(err)
			}
			defer data.Close()
			rc.send("RETR big")
			rc.expect(150)
			if prot == "P" {
				data = tls.Client(data, rc.tls)
			}
			if _, err := io.ReadFull(data, make([]byte, 1<<20)); err != nil {
				t.Fatal(err)
			}

			running := func() (SessionStatus, BackendStatus) {
				st := h.srv.Status()
				if len(st.Sessions) != 1 || len(st.Backends) != 1 {
					t.Fatalf("status has %d sessions and %d backends, want 1 and 1", len(st.Sessions), len(st.Backends))
				}
				return st.Sessions[0], st.Backends[0]
			}
			var first int64
			waitFor(t, "the transfer's first bytes", func() bool {
				s, _ := running()
				if s.Transfer != nil {
					first = s.Transfer.Bytes
				}
				return first > 0
			})
			s, b := running()
			if s.User != "alice" || s.Backend != "mem" || s.Phase != "logged-in" || s.Listener != "explicit" ||
				s.TLSVersion == "" || s.Cipher == "" || s.Client != rc.conn.LocalAddr().String() {
				t.Errorf("session during the transfer: %+v", s)
			}
			if x := s.Transfer; x.Verb != "RETR" || x.Path != "big" || x.Direction != "download" || x.Prot != prot || x.Started.IsZero() {
				t.Errorf("transfer in progress: %+v", x)
			}
			if b.Sessions != 1 || b.BytesDown < first {
				t.Errorf("backend during the transfer: %+v, want 1 session and at least %d bytes down", b, first)
			}

			// Far more than the socket buffers can hold: the proxy must
			// have relayed, and counted, more than it had.
			if _, err := io.ReadFull(data, make([]byte, 32<<20)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the byte count to grow", func() bool {
				s, _ := running()
				return s.Transfer != nil && s.Transfer.Bytes > first
			})

			if n, err := io.Copy(io.Discard, data); err != nil || n != size-33<<20 {
				t.Fatalf("read the rest: %d bytes, %v", n, err)
			}
			rc.expect(226)
			rc.cmd("NOOP", 200) // the session has published its state by now

			st := h.srv.Status()
			if len(st.Sessions) != 1 || st.Sessions[0].Transfer != nil || st.Sessions[0].BytesDown != size || st.Sessions[0].Transfers != 1 {
				t.Errorf("session after the transfer: %+v", st.Sessions)
			}
			if len(st.Recent) != 1 {
				t.Fatalf("recent transfers: %+v, want one", st.Recent)
			}
			if e := st.Recent[0]; e.Verb != "RETR" || e.Path != "big" || e.Bytes != size || e.User != "alice" || e.Backend != "mem" || !e.Complete {
				t.Errorf("recent transfer: %+v", e)
			}
			if b := st.Backends[0]; b.BytesDown != size || b.BytesUp != 0 {
				t.Errorf("backend after the transfer: %d bytes down, %d up; want %d, 0", b.BytesDown, b.BytesUp, size)
			}
			// An upload counts the other way.
			port = rc.epsv()
			up, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
			if err != nil {
				t.Fatal(err)
			}
			rc.send("STOR up.bin")
			rc.expect(150)
			if prot == "P" {
				up = tls.Client(up, rc.tls)
			}
			if _, err := up.Write(make([]byte, 12345)); err != nil {
				t.Fatal(err)
			}
			up.Close()
			rc.expect(226)
			rc.cmd("NOOP", 200)
			st2 := h.srv.Status()
			if b := st2.Backends[0]; b.BytesDown != size || b.BytesUp != 12345 {
				t.Errorf("backend after the upload: %d bytes down, %d up; want %d, 12345", b.BytesDown, b.BytesUp, size)
			}
			if s := st2.Sessions[0]; s.BytesUp != 12345 || s.Transfers != 2 {
				t.Errorf("session after the upload: %+v", s)
			}
			if len(st2.Recent) != 2 || st2.Recent[0].Verb != "STOR" || st2.Recent[0].Direction != "upload" || st2.Recent[1].Verb != "RETR" {
				t.Errorf("recent transfers after the upload, newest first: %+v", st2.Recent)
			}
			if st.Started.IsZero() || st.Now.Before(st.Started) {
				t.Errorf("started %v, now %v", st.Started, st.Now)
			}
		})
	}
}

// TestTransferRing: the ring keeps the last recentTransfers, newest first.
func TestTransferRing(t *testing.T) {
	var r transferRing
	if got := r.newestFirst(); len(got) != 0 {
		t.Fatalf("empty ring: %v", got)
	}
	for i := range recentTransfers + 7 {
		r.add(TransferEvent{Bytes: int64(i)})
	}
	got := r.newestFirst()
	if len(got) != recentTransfers {
		t.Fatalf("%d transfers, want %d", len(got), recentTransfers)
	}
	for i, e := range got {
		if want := int64(recentTransfers + 6 - i); e.Bytes != want {
			t.Fatalf("transfer %d has %d, want %d", i, e.Bytes, want)
		}
	}
}
