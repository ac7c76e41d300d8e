package integration

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpsgate/ftpsgate/ftpctl"
)

// inetutilsAbortRounds is how many downloads TestInetutilsAbort aborts, each
// in a session of its own.
const inetutilsAbortRounds = 50

// TestInetutilsAbort aborts downloads from GNU inetutils ftpd through the
// proxy. inetutils reads its control connection during a transfer only when
// urgent data raises SIGURG (RFC 959 section 4.1.3's Telnet IP and Synch);
// it then answers "426 Transfer aborted. Data connection closed." and "226
// Abort successful" before it closes the data connection. Had the proxy
// reset the data connection first, ftpd would have answered "426 Data
// connection: ..." and 225, or died of SIGPIPE with ABOR unread and taken
// the control connection with it (421, then EOF, for the client).
//
// Every one of 50 rounds, each in a fresh session (a fresh ftpd), five at a
// time, must get 426 then 226, and its session must answer NOOP after.
func TestInetutilsAbort(t *testing.T) {
	b := startBackend(t, inetutils)
	p := startProxyFor(t, b)
	// Large enough that ftpd is still writing when ABOR comes: the client
	// reads 64 KiB and stops.
	data := make([]byte, 64<<20)
	newPRNG(64).Read(data)
	if err := os.WriteFile(filepath.Join(b.home, "abort.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}

	t.Run("fresh-sessions", func(t *testing.T) {
		results := make([]string, inetutilsAbortRounds)
		var wg sync.WaitGroup
		next := make(chan int)
		for range 5 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					prot := "C"
					if i%2 == 1 {
						prot = "P"
					}
					results[i] = abortRound(p.explicit, prot, 1)[0]
				}
			}()
		}
		for i := range inetutilsAbortRounds {
			next <- i
		}
		close(next)
		wg.Wait()
		tally := make(map[string]int)
		for i, r := range results {
			tally[r]++
			if r != abortedBySynch {
				t.Errorf("round %d: %s, want %s", i+1, r, abortedBySynch)
			}
		}
		t.Logf("%d rounds: %s", inetutilsAbortRounds, formatTally(tally))
	})

	// inetutils 2.4 leaves its SIGURG handler with longjmp, which leaves
	// SIGURG blocked: only a session's first ABOR is read at once. Later
	// ones wait until the proxy resets the data connection after its grace
	// period (as with vsftpd); ftpd then answers 426 and 225, or, about
	// once in 250 aborts, dies of SIGPIPE with ABOR unread, as it could on
	// any ABOR before the proxy sent the Synch. That is ftpd's, and no
	// order of the proxy's can prevent it: the test skips then, saying so.
	t.Run("one-session", func(t *testing.T) {
		rounds := abortRound(p.explicit, "P", 3)
		t.Logf("one session, 3 aborts: %q", rounds)
		if rounds[0] != abortedBySynch {
			t.Fatalf("first abort: %s, want %s", rounds[0], abortedBySynch)
		}
		for i, r := range rounds[1:] {
			switch {
			case r == abortedByReset || r == abortedBySynch:
			case strings.Contains(r, "control connection lost"):
				t.Skipf("abort %d: %s: ftpd died with SIGURG blocked (inetutils 2.4; README, Backends)", i+2, r)
			default:
				t.Errorf("abort %d: %s, want %s", i+2, r, abortedByReset)
			}
		}
	})
}

// How an abort ended, as abortRound reports it.
const (
	abortedBySynch = "426 then 226, session alive" // ftpd read ABOR on SIGURG
	abortedByReset = "426 then 225, session alive" // ftpd read ABOR after its data connection broke
)

func formatTally(tally map[string]int) string {
	var parts []string
	for r, n := range tally {
		parts = append(parts, fmt.Sprintf("%d × %s", n, r))
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

// abortRound logs in through the proxy at addr with PROT prot and, rounds
// times, starts downloading abort.bin, reads 64 KiB, sends ABOR as ftplib
// does over TLS (in band) and reads the replies, then NOOP. It returns how
// each abort ended (abortedBySynch, abortedByReset, or what went wrong);
// after a failure the rest are not tried.
func abortRound(addr, prot string, rounds int) []string {
	out := make([]string, rounds)
	for i := range out {
		out[i] = "not tried"
	}
	c, err := dialTLSSession(addr)
	if err != nil {
		out[0] = "login: " + err.Error()
		return out
	}
	defer c.conn.Close()
	for _, line := range []string{"PBSZ 0", "PROT " + prot, "TYPE I"} {
		if _, err := c.cmd(line, 200); err != nil {
			out[0] = err.Error()
			return out
		}
	}
	for i := range rounds {
		out[i] = c.abortOnce(prot == "P")
		if !strings.HasSuffix(out[i], "session alive") {
			break
		}
	}
	c.cmd("QUIT", 221)
	return out
}

// tlsSession is a raw FTPS client session of the tests' user.
type tlsSession struct {
	host string
	conn net.Conn
	r    *ftpctl.Reader
	tls  *tls.Config // its cache holds the control session for the data connections
}

func dialTLSSession(addr string) (*tlsSession, error) {
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	raw.SetDeadline(time.Now().Add(time.Minute))
	host, _, _ := net.SplitHostPort(addr)
	c := &tlsSession{host: host, conn: raw, r: ftpctl.NewReader(bufio.NewReader(raw), 0),
		tls: &tls.Config{InsecureSkipVerify: true, ServerName: "localhost", ClientSessionCache: tls.NewLRUClientSessionCache(4)}}
	fail := func(err error) (*tlsSession, error) {
		raw.Close()
		return nil, err
	}
	if rep, err := c.r.ReadReply(); err != nil || rep.Code != ftpctl.CodeReady {
		return fail(fmt.Errorf("greeting %d: %v", rep.Code, err))
	}
	if _, err := c.cmd("AUTH TLS", 234); err != nil {
		return fail(err)
	}
	tc := tls.Client(raw, c.tls)
	if err := tc.Handshake(); err != nil {
		return fail(err)
	}
	c.conn, c.r = tc, ftpctl.NewReader(bufio.NewReader(tc), 0)
	if _, err := c.cmd("USER "+testUser, 331); err != nil {
		return fail(err)
	}
	// The TLS 1.3 ticket that data connections resume comes with this read.
	if _, err := c.cmd("PASS "+testPassword, 230); err != nil {
		return fail(err)
	}
	return c, nil
}

func (c *tlsSession) send(line string) error {
	_, err := io.WriteString(c.conn, line+"\r\n")
	return err
}

// cmd sends line and reads its reply, which must have code want.
func (c *tlsSession) cmd(line string, want ftpctl.Code) (ftpctl.Reply, error) {
	if err := c.send(line); err != nil {
		return ftpctl.Reply{}, fmt.Errorf("%s: %w", line, err)
	}
	rep, err := c.r.ReadReply()
	if err != nil {
		return rep, fmt.Errorf("%s: control connection lost: %w", line, err)
	}
	if rep.Code != want {
		return rep, fmt.Errorf("%s: %d %s", line, rep.Code, rep.Text())
	}
	return rep, nil
}

// abortOnce aborts one download of abort.bin and says how it ended.
func (c *tlsSession) abortOnce(protP bool) string {
	rep, err := c.cmd("EPSV", 229)
	if err != nil {
		return err.Error()
	}
	port, err := ftpctl.ParseEPSV(rep.Text())
	if err != nil {
		return err.Error()
	}
	raw, err := net.DialTimeout("tcp", net.JoinHostPort(c.host, strconv.Itoa(int(port))), 5*time.Second)
	if err != nil {
		return "data: " + err.Error()
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(time.Minute))
	if _, err := c.cmd("RETR abort.bin", 150); err != nil {
		return err.Error()
	}
	var data net.Conn = raw
	if protP {
		data = tls.Client(raw, c.tls)
	}
	if _, err := io.ReadFull(data, make([]byte, 64<<10)); err != nil {
		return "data: " + err.Error()
	}
	if err := c.send("ABOR"); err != nil {
		return "ABOR: " + err.Error()
	}
	var codes []string
	for len(codes) < 2 {
		rep, err := c.r.ReadReply()
		if err != nil {
			return fmt.Sprintf("after %q: control connection lost: %v", codes, err)
		}
		codes = append(codes, strconv.Itoa(int(rep.Code)))
		if rep.Code != ftpctl.CodeTransferAborted {
			break // only a 426 is followed by ABOR's own reply
		}
	}
	if _, err := c.cmd("NOOP", 200); err != nil {
		return fmt.Sprintf("%s, then %v", strings.Join(codes, " then "), err)
	}
	return strings.Join(codes, " then ") + ", session alive"
}
