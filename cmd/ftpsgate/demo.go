package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/ftpsgate/ftpsgate/ftpctl/ftptest"
	"github.com/ftpsgate/ftpsgate/proxy"
)

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "run the proxy in front of an in-memory FTP server, with a self-signed certificate",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:2121", Usage: "explicit FTPS `ADDRESS`"},
			&cli.StringFlag{Name: "implicit-listen", Value: "127.0.0.1:2990", Usage: "implicit FTPS `ADDRESS`"},
			&cli.StringFlag{Name: "log-format", Value: "console", Usage: "json or console"},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
		},
		Action: func(c *cli.Context) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return demo(ctx, c.String("listen"), c.String("implicit-listen"),
				c.String("log-level"), c.String("log-format"), c.App.Writer)
		},
	}
}

// demo starts an in-memory backend with a user and a few files, and the
// proxy in front of it, and prints commands to try.
func demo(ctx context.Context, listen, implicit, level, format string, out io.Writer) error {
	backend := ftptest.NewUnstartedServer()
	backend.Users = map[string]string{"demo": "demo"}
	backend.Greeting = []string{"ftptest in-memory FTP server (plain, behind ftpsgate)"}
	backend.FS.WriteFile("/hello.txt", []byte("Hello from behind ftpsgate.\n"))
	backend.FS.WriteFile("/pub/1MiB.bin", bytes.Repeat([]byte("ftpsgate"), 1<<17))
	backend.Start()
	defer backend.Close()

	log, err := newLogger(os.Stderr, level, format)
	if err != nil {
		return err
	}
	st := settings{logLevel: level, logFormat: format}
	st.proxy = proxy.Config{
		Listen:   listen,
		Implicit: implicit,
		Backends: []proxy.Backend{{Address: backend.Addr(), Name: "demo"}},
	}
	return run(ctx, st, log, func(srv *proxy.Server) {
		ex, im := srv.ExplicitAddr(), srv.ImplicitAddr()
		fmt.Fprintf(out, `
ftpsgate demo: explicit FTPS on %[1]s, implicit FTPS on %[2]s
backend: in-memory FTP on %[3]s; user "demo", password "demo"
the certificate is self-signed: -k / ssl:verify-certificate no accept it

  # list, download, upload (explicit FTPS, AUTH TLS, data protected)
  curl --ssl-reqd -k -u demo:demo ftp://%[1]s/
  curl --ssl-reqd -k -u demo:demo ftp://%[1]s/hello.txt
  curl --ssl-reqd -k -u demo:demo -T /etc/hostname ftp://%[1]s/uploaded.txt

  # the same over implicit FTPS
  curl -k -u demo:demo ftps://%[2]s/pub/
  curl -k -u demo:demo -o 1MiB.bin ftps://%[2]s/pub/1MiB.bin

  # lftp
  lftp -u demo,demo -e 'set ssl:verify-certificate no; ls; get hello.txt; put /etc/hostname -o uploaded.txt; ls; bye' ftp://%[1]s

  # FileZilla: host %[1]s, "Require explicit FTP over TLS", user demo, password demo

Ctrl-C stops the demo.
`, ex, im, backend.Addr())
	})
}
