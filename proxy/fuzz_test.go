package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/ftpctl"
	"github.com/ftpsgate/ftpsgate/ftpctl/ftptest"
)

// fuzzDeadline bounds one input: everything it makes the session wait for
// is bounded by the short timeouts of the fuzz harness, far below this.
const fuzzDeadline = 30 * time.Second

// FuzzSession feeds command sequences, one line per '\n' of the input,
// through a real session to an ftptest backend over plain TCP, and opens
// every passive data connection the proxy announces. Whatever the lines,
// nothing panics, the session ends once the client has hung up, and it
// leaves no goroutine, port or backend connection behind.
func FuzzSession(f *testing.F) {
	for _, s := range []string{
		"USER alice\nPASS s3cret-pw\nPWD\nQUIT",
		"USER alice\nPASS s3cret-pw\nTYPE I\nEPSV\nRETR f\nPASV\nLIST\nQUIT",
		"USER alice\nPASS s3cret-pw\nEPSV\nSTOR up\nEPSV\nRETR up\nSIZE up\nMDTM up\nDELE up",
		"USER alice\nPASS s3cret-pw\nPASV\nNLST\nEPSV\nMLSD\nEPSV\nABOR\nEPSV\nRETR f\nABOR\nNOOP",
		"USER alice\nPASS s3cret-pw\nREST 3\nEPSV\nRETR f\nAPPE f\nSTOU\nCWD /\nCDUP\nMKD d\nRMD d",
		"USER alice\nPASS s3cret-pw\nEPRT |1|127.0.0.1|9|\nPORT 127,0,0,1,0,9\nEPSV ALL\nPASV\nEPSV 2\nEPSV 1",
		"FEAT\nHOST example.com\nOPTS UTF8 ON\nSYST\nUSER alice\nPASS wrong\nUSER alice\nPASS s3cret-pw\nFEAT\nSTAT",
		"PBSZ 0\nPROT P\nCCC\nREIN\nLPSV\nLPRT 4,4,127,0,0,1,2,0,9\nADAT x\nAUTH XYZ",
		"USER alice\nPASS s3cret-pw\nPASV\nPASV\nEPSV\nRETR missing\nRNFR f\nRNTO g\nRNFR g\nRNTO f",
		"AUTH TLS\nUSER alice",
		"\xff\xf4\xff\xf2ABOR\nNO\x00OP\n\x01\x02\nUSER alice\nPASS s3cret-pw\nCWD a\rb",
		"USER alice\nPASS s3cret-pw\nEPSV\nRETR f\nNOOP\nPWD\nSTAT\nQUIT\nNOOP",
	} {
		f.Add([]byte(s))
	}
	h := newHarness(f, func(c *Config) {
		c.Implicit = ""
		c.PlainAllowed = true
		c.Health.Disabled = true
		c.AllowCCC = true
		c.Timeouts = Timeouts{Handshake: time.Second, Idle: 5 * time.Second, DataIdle: 2 * time.Second,
			DataConnect: time.Second, BackendDial: 2 * time.Second}
	}, func(b *ftptest.Server) { b.DataTimeout = time.Second })
	h.backend.FS.WriteFile("/f", bytes.Repeat([]byte("fuzz "), 10000))

	f.Fuzz(func(t *testing.T, in []byte) {
		fuzzOne(t, h, in)
	})
}

func fuzzOne(t *testing.T, h *harness, in []byte) {
	conn, err := net.Dial("tcp", h.explicit())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(fuzzDeadline))

	// The replies are read as they come, and every announced passive port
	// is connected to, so transfers run rather than all time out.
	var data sync.WaitGroup
	readDone := make(chan error, 1)
	go func() {
		r := ftpctl.NewReader(bufio.NewReader(conn), 0)
		for {
			rep, err := r.ReadReply()
			var pe *ftpctl.ProtocolError
			if errors.As(err, &pe) || errors.Is(err, ftpctl.ErrLineTooLong) {
				continue // the proxy relays what the backend says, verbatim
			}
			if err != nil {
				data.Wait()
				readDone <- err
				return
			}
			var port uint16
			switch rep.Code {
			case ftpctl.CodeEnteringExtPassive:
				port, _ = ftpctl.ParseEPSV(rep.Text())
			case ftpctl.CodeEnteringPassive:
				ap, _ := ftpctl.ParsePASV(rep.Text())
				port = ap.Port()
			}
			if port != 0 {
				data.Add(1)
				go func() {
					defer data.Done()
					fuzzData(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port))
				}()
			}
		}
	}()

	var w bytes.Buffer
	for _, line := range bytes.Split(in, []byte("\n")) {
		w.Write(line)
		w.WriteString("\r\n")
	}
	// Written in one go: the proxy must keep pipelined commands in order.
	// A write error means the proxy closed first, which is allowed.
	conn.Write(w.Bytes())
	conn.(*net.TCPConn).CloseWrite()

	select {
	case err := <-readDone:
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("the proxy did not close the session within %v", fuzzDeadline)
		}
	case <-time.After(fuzzDeadline + 5*time.Second):
		t.Fatal("reading the replies hung")
	}
	deadline := time.Now().Add(fuzzDeadline)
	for h.srv.ActiveSessions() != 0 || h.srv.ports.inUseCount() != 0 || h.backend.ActiveSessions() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after the input: %d sessions, %d passive ports, %d backend sessions left",
				h.srv.ActiveSessions(), h.srv.ports.inUseCount(), h.backend.ActiveSessions())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fuzzData is the client's end of a passive data connection: it sends a
// little (an upload's content) and reads whatever comes.
func fuzzData(ap netip.AddrPort) {
	c, err := net.DialTimeout("tcp", ap.String(), 5*time.Second)
	if err != nil {
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(fuzzDeadline))
	c.Write([]byte("uploaded by the fuzzer\n"))
	c.(*net.TCPConn).CloseWrite()
	io.Copy(io.Discard, c)
}
