// Command ftpsgate is a TLS-offloading FTPS reverse proxy: it gives the
// users of plain FTP servers explicit (AUTH TLS) and implicit FTPS.
//
//	ftpsgate serve --backend 10.0.0.5:21 --cert cert.pem --key key.pem
//	ftpsgate serve --config /etc/ftpsgate/ftpsgate.toml
//	ftpsgate check --config /etc/ftpsgate/ftpsgate.toml
//	ftpsgate demo
//	ftpsgate tail -f /var/log/ftpsgate.log --user alice
//	ftpsgate probe --config /etc/ftpsgate/ftpsgate.toml --user probe --password-file pw
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/redis/go-redis/v9/logging"
	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"

	"github.com/ftpsgate/ftpsgate/persist"
	"github.com/ftpsgate/ftpsgate/proxy"
	"github.com/ftpsgate/ftpsgate/tlsoffload"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = ""

// Records carry milliseconds: a session's events fall within one second
// more often than not. Still RFC 3339, which every log pipeline reads.
func init() { zerolog.TimeFieldFormat = "2006-01-02T15:04:05.000Z07:00" }

func main() {
	if err := newApp().Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "ftpsgate:", err)
		os.Exit(1)
	}
}

func newApp() *cli.App {
	return &cli.App{
		Name:    "ftpsgate",
		Usage:   "TLS-offloading FTPS reverse proxy for plain FTP servers",
		Version: versionString(),
		Commands: []*cli.Command{
			serveCommand(),
			checkCommand(),
			demoCommand(),
			tailCommand(),
			probeCommand(),
			benchCommand(),
			{
				Name:  "version",
				Usage: "print the version",
				Action: func(c *cli.Context) error {
					fmt.Fprintln(c.App.Writer, "ftpsgate", versionString())
					return nil
				},
			},
		},
	}
}

func versionString() string {
	if version != "" {
		return version
	}
	v := "devel"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " " + s.Value[:12]
			}
		}
	}
	return v
}

var configFlag = &cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "TOML configuration `FILE`"}

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run the proxy",
		Flags: []cli.Flag{
			configFlag,
			&cli.StringFlag{Name: "listen", Usage: "explicit FTPS (AUTH TLS) listen `ADDRESS`, e.g. :21"},
			&cli.StringFlag{Name: "implicit-listen", Usage: "implicit FTPS listen `ADDRESS`, e.g. :990"},
			&cli.StringSliceFlag{Name: "backend", Usage: "plain FTP backend `HOST:PORT` (repeatable)"},
			&cli.StringFlag{Name: "passive-ports", Usage: "passive data port `RANGE`, e.g. 50000-50999"},
			&cli.StringFlag{Name: "public-host", Usage: "IPv4 `ADDRESS` announced in PASV replies"},
			&cli.StringFlag{Name: "cert", Usage: "PEM certificate chain `FILE`"},
			&cli.StringFlag{Name: "key", Usage: "PEM private key `FILE`"},
			&cli.StringFlag{Name: "log-format", Usage: "json or console"},
			&cli.StringFlag{Name: "log-level", Usage: "debug, info, warn or error"},
		},
		Action: func(c *cli.Context) error {
			st, err := loadSettings(c)
			if err != nil {
				return err
			}
			var out io.Writer = os.Stdout
			if st.logFile != nil {
				defer st.logFile.Close()
				out = st.logFile
			}
			log, err := newLogger(out, st.logLevel, st.logFormat)
			if err != nil {
				return err
			}
			st.reload = func() (settings, error) { return loadSettings(c) }
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return run(ctx, st, log, nil)
		},
	}
}

func checkCommand() *cli.Command {
	return &cli.Command{
		Name:  "check",
		Usage: "validate a configuration file and print every error and warning with its line",
		Flags: []cli.Flag{configFlag},
		Action: func(c *cli.Context) error {
			path := c.String("config")
			if path == "" {
				return errors.New("check: --config FILE is required")
			}
			st, err := loadSettings(c)
			failed := false
			if err != nil {
				for _, e := range unjoin(err) {
					fmt.Fprintln(c.App.ErrWriter, e)
				}
				failed = true
			}
			for _, w := range st.warnings {
				fmt.Fprintf(c.App.ErrWriter, "%s (warning)\n", w)
			}
			if err == nil {
				// The certificate files, the ticket keys and the ACME
				// section: expiry, key match, chain, cache directory.
				_, lines, _ := loadFile(path)
				for _, p := range st.tls.Check() {
					ce := configError{path, lines.line(tlsKey(p.Field)...), p.Err.Error()}
					if p.Warning {
						fmt.Fprintf(c.App.ErrWriter, "%s (warning)\n", ce)
						continue
					}
					fmt.Fprintln(c.App.ErrWriter, ce)
					failed = true
				}
			}
			if failed {
				return cli.Exit("", 1)
			}
			fmt.Fprintf(c.App.Writer, "%s: ok\n", path)
			return nil
		},
	}
}

// unjoin splits errors joined with errors.Join, so each prints on its line.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unjoin(e)...)
		}
		return out
	}
	return []error{err}
}

// loadSettings reads --config if given and lets the flags override it.
func loadSettings(c *cli.Context) (settings, error) {
	fc, lines, path := &fileConfig{}, (*keyLines)(nil), "command line"
	var fileErr error
	if p := c.String("config"); p != "" {
		fc, lines, fileErr = loadFile(p)
		if fc == nil {
			return settings{}, fileErr // unreadable or not TOML: nothing to check further
		}
		path = p
	}
	flag := func(name string, dst *string) {
		if c.IsSet(name) {
			*dst = c.String(name)
		}
	}
	flag("listen", &fc.Listen.Explicit)
	flag("implicit-listen", &fc.Listen.Implicit)
	flag("passive-ports", &fc.Listen.PassivePorts)
	flag("public-host", &fc.Listen.PublicHost)
	flag("cert", &fc.TLS.CertFile)
	flag("key", &fc.TLS.KeyFile)
	flag("log-format", &fc.Log.Format)
	flag("log-level", &fc.Log.Level)
	if c.IsSet("backend") {
		fc.Backend = fc.Backend[:0]
		for _, b := range c.StringSlice("backend") {
			fc.Backend = append(fc.Backend, backendConfig{Address: b})
		}
	}
	st, err := fc.build(path, lines)
	return st, errors.Join(fileErr, err)
}

// run serves until ctx is done. ready, if not nil, is called once the
// listeners are open.
func run(ctx context.Context, st settings, log zerolog.Logger, ready func(*proxy.Server)) error {
	logWarnings(log, st.warnings)
	st.tls.OnEvent = func(e tlsoffload.Event) { logTLSEvent(log, e) }
	if st.acmeRedis != "" {
		logging.Disable() // see openStore
		rs, err := persist.OpenRedis(st.acmeRedis, acmePrefix)
		if err != nil {
			return err
		}
		defer rs.Close()
		st.tls.ACME.Cache = redisACMECache{rs}
	}
	off, err := tlsoffload.New(st.tls)
	if err != nil {
		return err
	}
	if off.SelfSigned() {
		log.Warn().Str("fingerprint", off.Fingerprint()).
			Msg("no certificate configured: serving a self-signed one; clients will warn")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// ACME certificates are obtained before serving; a domain that fails
	// is retried in the background while the others are served.
	if err := off.Start(ctx); err != nil {
		var oe *tlsoffload.ObtainError
		if !errors.As(err, &oe) {
			return err
		}
	}
	tlsDone := make(chan error, 1)
	go func() { tlsDone <- off.Run(ctx) }()
	defer func() { cancel(); <-tlsDone }()
	rl := &reloader{load: st.reload, running: st, off: off, log: log}

	st.proxy.TLSConfig = off.TLSConfig()
	st.proxy.SessionTLS = func(id string) (*tls.Config, *tls.Config) {
		return off.ControlConfig(id), off.DataConfig(id)
	}
	st.proxy.Logger = log
	if st.proxy.Balance.Affinity != proxy.NoAffinity {
		store, err := openStore(st.store, log)
		if err != nil {
			return err
		}
		defer store.Close()
		st.proxy.Balance.Store = store
	}
	ops, err := openOps(st, &st.proxy) // metrics and xferlog; admin.go
	if err != nil {
		return err
	}
	defer ops.Close()
	srv, err := proxy.New(st.proxy)
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		return err
	}
	if err := ops.serve(srv, off, log); err != nil {
		return err
	}
	rl.srv = srv
	go rl.watch(ctx)
	if ready != nil {
		ready(srv)
	}
	log.Info().Str("version", versionString()).Int("backends", len(st.proxy.Backends)).
		Stringer("passive_ports", st.proxy.PassivePorts).Msg("ftpsgate started")
	err = serveAndDrain(ctx, srv, st.drainTimeout(), log)
	log.Info().Msg("ftpsgate stopped")
	return err
}

// serveAndDrain serves until ctx is done (SIGTERM or SIGINT), then drains:
// no new clients, transfers in flight finish, sessions get 421, and after
// drain whatever is left is closed. Shutdown logs how it went.
func serveAndDrain(ctx context.Context, srv *proxy.Server, drain time.Duration, log zerolog.Logger) error {
	serveCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(serveCtx) }()
	select {
	case err := <-served: // a listener failed for good
		return err
	case <-ctx.Done():
	}
	log.Info().Dur("drain", drain).Msg("stopping")
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drain)
	defer cancel()
	srv.Shutdown(dctx) // a drain cut short is logged as such, and is no failure to exit on
	stop()
	return <-served
}

// logWarnings logs the configuration's warnings, as check prints them.
func logWarnings(log zerolog.Logger, warnings []configError) {
	for _, w := range warnings {
		ev := log.Warn().Str("config", w.File)
		if w.Line > 0 {
			ev = ev.Int("line", w.Line)
		}
		ev.Str("warning", w.Msg).Msg("configuration warning")
	}
}

// logTLSEvent logs a certificate event: failures as errors, a generated
// certificate as a warning, the rest as information.
func logTLSEvent(log zerolog.Logger, e tlsoffload.Event) {
	ev := log.Info()
	switch e.Kind {
	case tlsoffload.EventFailed:
		ev = log.Error().Err(e.Err)
	case tlsoffload.EventGenerated:
		ev = log.Warn()
	}
	if e.Source != "" {
		ev = ev.Str("source", e.Source)
	}
	if len(e.Names) > 0 {
		ev = ev.Strs("names", e.Names)
	}
	if e.Serial != "" {
		ev = ev.Str("serial", e.Serial)
	}
	if !e.NotAfter.IsZero() {
		ev = ev.Time("not_after", e.NotAfter)
	}
	ev.Str("event", e.Kind.String()).Msg("certificate")
}

func parseLevel(s string) (zerolog.Level, error) {
	if s == "" {
		return zerolog.InfoLevel, nil
	}
	l, err := zerolog.ParseLevel(strings.ToLower(s))
	if err != nil || l == zerolog.NoLevel {
		return 0, fmt.Errorf("log.level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// newLogger builds the one root logger everything else derives from.
func newLogger(w io.Writer, level, format string) (zerolog.Logger, error) {
	l, err := parseLevel(level)
	if err != nil {
		return zerolog.Logger{}, err
	}
	if format == "console" {
		// No colour codes in a log file or a pipe.
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly, NoColor: !colorTerminal(w)}
	}
	return zerolog.New(w).Level(l).With().Timestamp().Logger(), nil
}

// openStore opens where affinity pins live. A missing or corrupt state
// file is logged and the proxy starts with no pins: losing pins costs some
// clients a move, refusing to start would cost all of them the service.
func openStore(ss storeSettings, log zerolog.Logger) (persist.Store, error) {
	switch ss.kind {
	case "file":
		fs, err := persist.OpenFile(ss.stateFile, ss.maxEntries)
		if err != nil {
			log.Error().Err(err).Str("state_file", ss.stateFile).Msg("affinity state not loaded: starting with no pins")
		} else {
			log.Info().Str("state_file", ss.stateFile).Int("pins", fs.Len()).Msg("affinity state loaded")
		}
		if fs == nil {
			return nil, err
		}
		return fs, nil
	case "redis":
		// go-redis prints each failed dial to stderr; the store returns
		// those errors and the proxy logs them in its own records.
		logging.Disable()
		rs, err := persist.OpenRedis(ss.redisURL, "")
		if err != nil {
			return nil, err
		}
		log.Info().Str("redis", redactURL(ss.redisURL)).Msg("affinity pins kept in redis")
		return rs, nil
	}
	return persist.NewTable(ss.maxEntries), nil
}

// redactURL hides a password in a URL before it is logged.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable)"
	}
	return u.Redacted()
}

// tlsKey turns a tlsoffload.Config field path ("ACME.Domains[2]",
// "Certificates[0].KeyFile") into the TOML key it came from.
func tlsKey(field string) []string {
	key := []string{"tls"}
	for _, part := range strings.Split(field, ".") {
		name, index, _ := strings.Cut(part, "[")
		switch name {
		case "ACME":
			key = append(key, "acme")
		case "Certificates":
			key = append(key, "certificate")
		case "TLSALPNListen": // two acronyms in a row: no rule splits them
			key = append(key, "tls_alpn_listen")
		default:
			key = append(key, snake(name))
		}
		if index != "" {
			key = append(key, strings.TrimSuffix(index, "]"))
		}
	}
	return key
}

// snake turns a Go field name into its TOML key: CertFile -> cert_file,
// ClientCAFile -> client_ca_file.
func snake(s string) string {
	var b strings.Builder
	for i, r := range s {
		upper := r >= 'A' && r <= 'Z'
		if upper && i > 0 {
			prevLower := s[i-1] >= 'a' && s[i-1] <= 'z'
			nextLower := i+1 < len(s) && s[i+1] >= 'a' && s[i+1] <= 'z'
			if prevLower || nextLower {
				b.WriteByte('_')
			}
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}
