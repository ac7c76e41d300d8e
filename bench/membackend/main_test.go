package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The backend logs in the one user with the password of the file (its
// line end trimmed, as echo writes it), refuses another, and stops with
// its context.
func TestServeLogsInTheUserUntilStopped(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- serve(ctx, "127.0.0.1:0", "bench", pw, func(a string) { addrc <- a }) }()
	var addr string
	select {
	case addr = <-addrc:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}

	for _, tc := range []struct{ password, want string }{{"s3cret", "230"}, {"other", "530"}} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(conn)
		reply := func() string {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			return line
		}
		reply() // 220
		fmt.Fprintf(conn, "USER bench\r\n")
		reply() // 331
		fmt.Fprintf(conn, "PASS %s\r\n", tc.password)
		if got := reply(); !strings.HasPrefix(got, tc.want) {
			t.Errorf("PASS %q: %q, want %s", tc.password, got, tc.want)
		}
		conn.Close()
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return when its context ended")
	}
	if conn, err := net.Dial("tcp", addr); err == nil {
		conn.Close()
		t.Error("the backend still listens after serve returned")
	}
}

func TestServeNeedsUserAndPassword(t *testing.T) {
	if err := serve(context.Background(), "127.0.0.1:0", "", "pw", func(string) {}); err == nil {
		t.Error("serve without -user succeeded")
	}
}
