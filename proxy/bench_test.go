package proxy

// Benchmarks of the data path in one process (make bench). Each figure of
// ftpsgate has a twin named .../limit: the same work done by a bare relay
// built from the same copy code (relayData), with no FTP around it, in the
// same run, so that bench/ratio can print how close ftpsgate comes.
//
//	go test -run '^$' -bench . -benchmem ./proxy/ | go run ./bench/ratio
//
// Clients are Go crypto/tls with a session cache, so data connections
// resume the control connection's session as curl's and lftp's do; the
// certificate is the generated ECDSA P-256 one.

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ftpsgate/ftpsgate/ftpctl"
	"github.com/ftpsgate/ftpsgate/ftpctl/ftptest"
)

var benchSizes = []struct {
	name string
	n    int64
}{{"1MiB", 1 << 20}, {"256MiB", 256 << 20}}

// benchChunk is what senders write per call; the data is a fixed pattern.
var benchChunk = func() []byte {
	b := make([]byte, 1<<20)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}()

// BenchmarkData moves files both ways, PROT P and PROT C, through ftpsgate
// (one logged-in session; each op is EPSV, the transfer command, a resumed
// data handshake under PROT P, the data, 226) and through the bare relay
// (each op is a resumed handshake and the data).
func BenchmarkData(b *testing.B) {
	for _, dir := range []direction{download, upload} {
		for _, protect := range []bool{true, false} {
			for _, size := range benchSizes {
				name := fmt.Sprintf("%s/%s/%s", dir, protName(protect), size.name)
				b.Run(name+"/limit", func(b *testing.B) {
					r := newBenchRelay(b, dir, protect, size.n)
					b.SetBytes(size.n)
					b.ReportAllocs()
					b.ResetTimer()
					for range b.N {
						r.transfer(b)
					}
				})
				b.Run(name+"/ftpsgate", func(b *testing.B) {
					c := newBenchSession(b, protect)
					b.SetBytes(size.n)
					b.ReportAllocs()
					b.ResetTimer()
					for range b.N {
						c.transfer(b, dir, size.n)
					}
				})
			}
		}
	}
}

// BenchmarkFiles4KiB is 1,000 downloads of 4 KiB under PROT P per op: over
// one ftpsgate session, and as 1,000 resumed connections to the bare relay.
func BenchmarkFiles4KiB(b *testing.B) {
	const files, size = 1000, 4 << 10
	b.Run("limit", func(b *testing.B) {
		r := newBenchRelay(b, download, true, size)
		b.SetBytes(files * size)
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			for range files {
				r.transfer(b)
			}
		}
		b.ReportMetric(float64(files*b.N)/b.Elapsed().Seconds(), "files/s")
	})
	b.Run("ftpsgate", func(b *testing.B) {
		c := newBenchSession(b, true)
		b.SetBytes(files * size)
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			for range files {
				c.transfer(b, download, size)
			}
		}
		b.ReportMetric(float64(files*b.N)/b.Elapsed().Seconds(), "files/s")
	})
}

// BenchmarkSetup opens and closes sessions: through ftpsgate the whole
// login (greeting, AUTH TLS, handshake, USER and PASS relayed to the
// backend, QUIT); the limit is the TLS handshake alone. "full" handshakes
// from scratch, "resumed" presents a ticket from an earlier session.
func BenchmarkSetup(b *testing.B) {
	for _, resumed := range []bool{false, true} {
		name := "full"
		if resumed {
			name = "resumed"
		}
		b.Run(name+"/limit", func(b *testing.B) {
			h := newHarness(b, quietBench, nil) // for its certificate and client configuration
			srvTLS := h.srv.cfg.TLSConfig
			// Cleanups run last first: the listener closes, then the wait.
			var wg sync.WaitGroup
			b.Cleanup(wg.Wait)
			ln := benchListener(b)
			wg.Go(func() {
				for {
					conn, err := ln.Accept()
					if err != nil {
						return
					}
					tc := dataTLSServer(conn, srvTLS)
					tc.Handshake()
					tc.Close()
				}
			})
			cfg := benchClientTLS(h, resumed)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				conn, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				tc := tls.Client(conn, cfg)
				if err := tc.Handshake(); err != nil {
					b.Fatal(err)
				}
				if resumed != tc.ConnectionState().DidResume {
					b.Fatalf("resumed %v, want %v", tc.ConnectionState().DidResume, resumed)
				}
				tc.Close()
			}
		})
		b.Run(name+"/ftpsgate", func(b *testing.B) {
			h := newHarness(b, quietBench, nil)
			cfg := benchClientTLS(h, resumed)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				c := dialBenchClient(b, h, cfg)
				if resumed != c.conn.(*tls.Conn).ConnectionState().DidResume {
					b.Fatalf("resumed %v, want %v", c.conn.(*tls.Conn).ConnectionState().DidResume, resumed)
				}
				c.cmd(b, "QUIT", ftpctl.CodeClosing)
				c.conn.Close()
			}
		})
	}
}

// quietBench logs at info level to nowhere: the records are formatted, as
// in production, but not kept.
func quietBench(cfg *Config) { cfg.Logger = zerolog.New(io.Discard).Level(zerolog.InfoLevel) }

// benchClientTLS is the harness's client configuration; resumed gives it a
// session cache primed by one handshake, !resumed none.
func benchClientTLS(h *harness, resumed bool) *tls.Config {
	cfg := h.client.Clone()
	cfg.ClientSessionCache = nil
	if resumed {
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(8)
		c := dialBenchClient(h.t, h, cfg)
		c.cmd(h.t, "QUIT", ftpctl.CodeClosing)
		c.conn.Close()
	}
	return cfg
}

func benchListener(b testing.TB) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	return ln
}

func protName(protect bool) string {
	if protect {
		return "protP"
	}
	return "protC"
}

// benchRelay is the limit: a client side (TLS when protect) relayed to a
// plain TCP backend by relayData, as a data channel does, with nothing else.
// The backend sends n bytes for a download and counts what arrives for an
// upload.
type benchRelay struct {
	dir     direction
	protect bool
	n       int64
	addr    string
	client  *tls.Config
	got     chan int64 // an upload's byte count, as the backend saw it
	buf     []byte
}

func newBenchRelay(b *testing.B, dir direction, protect bool, n int64) *benchRelay {
	h := newHarness(b, quietBench, nil) // for its certificate and client config
	srvTLS := h.srv.cfg.TLSConfig
	idle := Timeouts{}.dataIdle()
	// Cleanups run last first: the listeners close, then the wait.
	var wg sync.WaitGroup
	b.Cleanup(wg.Wait)
	back, front := benchListener(b), benchListener(b)
	r := &benchRelay{dir: dir, protect: protect, n: n, addr: front.Addr().String(),
		client: benchClientTLS(h, true), got: make(chan int64, 1), buf: make([]byte, copyBufSize)}
	serve := func(ln net.Listener, handle func(net.Conn)) {
		wg.Go(func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				wg.Go(func() {
					defer conn.Close()
					handle(conn)
				})
			}
		})
	}
	serve(back, func(conn net.Conn) {
		if dir == download {
			sendN(conn, n)
			return
		}
		var got int64
		buf := make([]byte, copyBufSize)
		for {
			m, err := conn.Read(buf)
			got += int64(m)
			if err != nil {
				break
			}
		}
		r.got <- got
	})
	serve(front, func(conn net.Conn) {
		var client net.Conn = conn
		if protect {
			tc := dataTLSServer(conn, srvTLS)
			if err := tc.Handshake(); err != nil {
				return
			}
			client = tc
		}
		defer client.Close()
		backend, err := net.Dial("tcp", back.Addr().String())
		if err != nil {
			return
		}
		defer backend.Close()
		// Both ways at once, as dataChannel.run relays them.
		dst, src, rdst, rsrc := client, backend, backend, client
		if dir == upload {
			dst, src, rdst, rsrc = backend, client, client, backend
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			relayData(rdst, rsrc, 0, nil, nil)
		}()
		relayData(dst, src, idle, nil, nil)
		rsrc.SetReadDeadline(time.Now().Add(idle))
		<-done
	})
	return r
}

// transfer moves one file through the relay.
func (r *benchRelay) transfer(b *testing.B) {
	conn, err := net.Dial("tcp", r.addr)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	var c net.Conn = conn
	if r.protect {
		c = tls.Client(conn, r.client)
	}
	if r.dir == download {
		if got := receiveAll(b, c, r.buf); got != r.n {
			b.Fatalf("received %d bytes, want %d", got, r.n)
		}
		return
	}
	if err := sendN(c, r.n); err != nil {
		b.Fatal(err)
	}
	if err := closeWrite(c); err != nil {
		b.Fatal(err)
	}
	if got := <-r.got; got != r.n {
		b.Fatalf("backend received %d bytes, want %d", got, r.n)
	}
}

// sendN writes n bytes of the pattern.
func sendN(w io.Writer, n int64) error {
	for n > 0 {
		m := min(n, int64(len(benchChunk)))
		if _, err := w.Write(benchChunk[:m]); err != nil {
			return err
		}
		n -= m
	}
	return nil
}

// receiveAll reads c to its end and returns the byte count.
func receiveAll(b *testing.B, c net.Conn, buf []byte) int64 {
	var n int64
	for {
		m, err := c.Read(buf)
		n += int64(m)
		if errors.Is(err, io.EOF) {
			return n
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

// benchSession is a logged-in client of ftpsgate in front of ftptest,
// which serves /f<size> and discards uploads.
type benchSession struct {
	*benchClient
	h       *harness
	protect bool
	buf     []byte
}

func newBenchSession(b *testing.B, protect bool) *benchSession {
	// Passive port ranges on both, as deployed: binding an ephemeral port
	// gets slow once thousands of transfers crowd the ephemeral range, and
	// then dominates the 4 KiB benchmark.
	withPorts := func(cfg *Config) {
		quietBench(cfg)
		cfg.PassivePorts = PortRange{First: 29000, Last: 29499}
	}
	h := newHarness(b, withPorts, func(s *ftptest.Server) {
		s.PassivePortMin, s.PassivePortMax = 29500, 29999
		s.DiscardUploads = true
		for _, size := range append(benchSizes, struct {
			name string
			n    int64
		}{"4KiB", 4 << 10}) {
			data := make([]byte, 0, size.n)
			for int64(len(data)) < size.n {
				data = append(data, benchChunk[:min(size.n-int64(len(data)), int64(len(benchChunk)))]...)
			}
			s.FS.WriteFile("/f"+strconv.FormatInt(size.n, 10), data)
		}
	})
	c := &benchSession{benchClient: dialBenchClient(b, h, benchClientTLS(h, true)), h: h, protect: protect,
		buf: make([]byte, copyBufSize)}
	b.Cleanup(func() { c.conn.Close() })
	c.cmd(b, "TYPE I", ftpctl.CodeOK)
	c.cmd(b, "PBSZ 0", ftpctl.CodeOK)
	c.cmd(b, "PROT "+map[bool]string{true: "P", false: "C"}[protect], ftpctl.CodeOK)
	return c
}

// transfer downloads /f<n> or uploads n bytes over a new EPSV data
// connection.
func (c *benchSession) transfer(b *testing.B, dir direction, n int64) {
	c.conn.SetDeadline(time.Now().Add(time.Minute))
	port, err := ftpctl.ParseEPSV(c.cmd(b, "EPSV", ftpctl.CodeEnteringExtPassive).Text())
	if err != nil {
		b.Fatal(err)
	}
	conn, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	verb := "RETR /f" + strconv.FormatInt(n, 10)
	if dir == upload {
		verb = "STOR /up"
	}
	c.cmd(b, verb, ftpctl.CodeFileStatusOK)
	var data net.Conn = conn
	if c.protect {
		tc := tls.Client(conn, c.tls)
		if err := tc.Handshake(); err != nil {
			b.Fatal(err)
		}
		if !tc.ConnectionState().DidResume {
			b.Fatal("data connection did not resume the session")
		}
		data = tc
	}
	if dir == download {
		if got := receiveAll(b, data, c.buf); got != n {
			b.Fatalf("received %d bytes, want %d", got, n)
		}
	} else {
		if err := sendN(data, n); err != nil {
			b.Fatal(err)
		}
		if err := closeWrite(data); err != nil {
			b.Fatal(err)
		}
	}
	// Closed before the final reply, as curl and ftplib do.
	data.Close()
	c.expect(b, ftpctl.CodeTransferComplete)
}

// benchClient is a control connection after login.
type benchClient struct {
	conn net.Conn
	r    *ftpctl.Reader
	tls  *tls.Config
}

// dialBenchClient logs in through the proxy's explicit listener with cfg.
func dialBenchClient(b testing.TB, h *harness, cfg *tls.Config) *benchClient {
	conn, err := net.Dial("tcp", h.explicit())
	if err != nil {
		b.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(time.Minute))
	c := &benchClient{conn: conn, r: ftpctl.NewReader(bufio.NewReader(conn), 0), tls: cfg}
	c.expect(b, ftpctl.CodeReady)
	c.cmd(b, "AUTH TLS", ftpctl.CodeAuthOK)
	tc := tls.Client(conn, cfg)
	if err := tc.Handshake(); err != nil {
		b.Fatal(err)
	}
	c.conn, c.r = tc, ftpctl.NewReader(bufio.NewReader(tc), 0)
	c.cmd(b, "USER alice", ftpctl.CodeNeedPassword)
	c.cmd(b, "PASS s3cret-pw", ftpctl.CodeLoggedIn)
	return c
}

func (c *benchClient) cmd(b testing.TB, line string, code ftpctl.Code) ftpctl.Reply {
	if _, err := io.WriteString(c.conn, line+"\r\n"); err != nil {
		b.Fatalf("%s: %v", line, err)
	}
	return c.expect(b, code)
}

func (c *benchClient) expect(b testing.TB, code ftpctl.Code) ftpctl.Reply {
	rep, err := c.r.ReadReply()
	if err != nil {
		b.Fatalf("want %d: %v", code, err)
	}
	if rep.Code != code {
		b.Fatalf("got %d %q, want %d", rep.Code, rep.Lines, code)
	}
	return rep
}
