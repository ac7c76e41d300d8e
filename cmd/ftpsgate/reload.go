package main

import (
	"context"
	"os"
	"os/signal"
	"reflect"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/ftpsgate/ftpsgate/proxy"
	"github.com/ftpsgate/ftpsgate/tlsoffload"
)

// reloader applies SIGHUP: the configuration is read again and what
// sessions use (backends, routes, balance, health, timeouts, limits,
// passive ports, TLS rules, log level) changes for new sessions, while
// sessions in flight keep theirs; the certificate files are read again.
// A configuration with errors is refused with every error logged, and the
// running one stays.
type reloader struct {
	load    func() (settings, error) // nil: certificates only (demo)
	running settings                 // as last applied
	srv     *proxy.Server
	off     *tlsoffload.Offload
	log     zerolog.Logger // the root logger, at the level of the start
}

func (r *reloader) watch(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			r.reload()
		}
	}
}

func (r *reloader) reload() {
	if r.load != nil {
		r.log.Info().Msg("SIGHUP: reloading configuration")
		if err := r.apply(); err != nil {
			errs := unjoin(err)
			msgs := make([]string, len(errs))
			for i, e := range errs {
				msgs[i] = e.Error()
			}
			r.log.Error().Strs("errors", msgs).Msg("config reload failed") // the running configuration stays
		}
	} else {
		r.log.Info().Msg("SIGHUP: reloading certificates")
	}
	r.off.Reload() // what changed, or failed, arrives as certificate events
}

func (r *reloader) apply() error {
	st, err := r.load()
	if err != nil {
		return err
	}
	level, err := parseLevel(st.logLevel)
	if err != nil {
		return err
	}
	pc := st.proxy
	pc.Logger = r.log.Level(level)
	kept, err := r.srv.Reload(pc)
	if err != nil {
		return err
	}
	kept = append(kept, restartOnly(r.running, st)...)
	r.running = st
	logWarnings(r.log, st.warnings)
	ev := r.log.Info()
	if len(kept) > 0 {
		ev = r.log.Warn().Strs("restart_needed", kept)
	}
	ev.Int("backends", len(pc.Backends)).Int("routes", len(pc.Routes)).
		Str("level", level.String()).Msg("config reloaded")
	return nil
}

// restartOnly names the settings that differ between old and new but take
// effect only on a restart: the listeners' sockets, the certificate
// sources, where pins and logs go, and the admin listener.
func restartOnly(old, new settings) []string {
	var out []string
	tlsOld, tlsNew := old.tls, new.tls
	tlsOld.OnEvent, tlsNew.OnEvent = nil, nil
	tlsOld.ACME.Cache, tlsNew.ACME.Cache = nil, nil
	for _, c := range []struct {
		name     string
		old, new any
	}{
		{"tls", tlsOld, tlsNew},
		{"tls.acme.cache", old.acmeRedis, new.acmeRedis},
		{"balance.store", old.store, new.store},
		{"log.format", old.logFormat, new.logFormat},
		{"log.file", fileName(old), fileName(new)},
		{"log.xferlog", old.xferlog, new.xferlog},
		{"admin", old.admin, new.admin},
	} {
		if !reflect.DeepEqual(c.old, c.new) {
			out = append(out, c.name)
		}
	}
	return out
}

func fileName(st settings) string {
	if st.logFile == nil {
		return ""
	}
	return st.logFile.Filename
}
