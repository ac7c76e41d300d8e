// Command membackend serves plain FTP from memory (ftpctl/ftptest) until
// SIGINT or SIGTERM, for make bench-peers: it measures ftpsgate's memory at
// as many idle sessions as the machine's descriptor limit allows, where
// vsftpd would fork two processes per session.
//
//	go run ./bench/membackend -listen 127.0.0.1:25321 -user u -password-file pw
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/ftpsgate/ftpsgate/ftpctl/ftptest"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:25321", "plain FTP listen `address`")
	user := flag.String("user", "", "the one user's `name`")
	passwordFile := flag.String("password-file", "", "`file` holding the user's password")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, *listen, *user, *passwordFile, func(string) {}); err != nil {
		fmt.Fprintln(os.Stderr, "membackend:", err)
		os.Exit(1)
	}
}

// serve runs the backend on listen until ctx ends; ready learns its address.
func serve(ctx context.Context, listen, user, passwordFile string, ready func(addr string)) error {
	if user == "" || passwordFile == "" {
		return errors.New("-user and -password-file are required")
	}
	pw, err := os.ReadFile(passwordFile)
	if err != nil {
		return err
	}
	b := ftptest.NewUnstartedServer()
	// The file as echo writes it: the password and a newline.
	b.Users = map[string]string{user: strings.TrimSpace(string(pw))}
	if err := b.StartOn(listen); err != nil {
		return err
	}
	defer b.Close()
	ready(b.Addr())
	<-ctx.Done()
	return nil
}
