package tlsoffload

import (
	"context"
	"errors"
	"time"
)

// Run does the background work until ctx is done, then waits for what it
// started and returns nil:
//
//   - every ReloadInterval, it looks at the certificate files and the
//     ticket key file, as Reload does, but reports a broken file only when a
//     second look finds it unchanged (a writer may be between the
//     certificate and the key);
//   - every TicketRotation (without TicketKeyFile), it rotates the
//     session-ticket keys;
//   - with ACME, every minute it tries again the domains that have no
//     certificate (with backoff), picks up renewed certificates, and
//     reports renewals that are overdue, with the CA's last message.
//
// If Start was not called, Run calls it first (the domains that failed are
// reported as EventFailed, as always); it returns an error only if a
// challenge listener cannot be bound, or when called twice.
func (o *Offload) Run(ctx context.Context) error {
	if !o.running.CompareAndSwap(false, true) {
		return errors.New("tlsoffload: Run called twice")
	}
	defer o.wg.Wait()
	if !o.started.Load() {
		if err := o.Start(ctx); err != nil && ctx.Err() == nil && collectObtainErrors(err) == nil {
			return err // a listener; failed domains were reported
		}
	}

	var reloadC, rotateC, checkC <-chan time.Time
	if d := o.cfg.reloadInterval(); d > 0 && (len(o.pairs) > 0 || o.cfg.TicketKeyFile != "" || o.selfSigned) {
		t := time.NewTicker(d)
		defer t.Stop()
		reloadC = t.C
	}
	if d := o.cfg.ticketRotation(); d > 0 && o.cfg.TicketKeyFile == "" {
		t := time.NewTicker(d)
		defer t.Stop()
		rotateC = t.C
	}
	if o.acme != nil {
		t := time.NewTicker(o.acme.checkEvery)
		defer t.Stop()
		checkC = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-reloadC:
			o.reload(false) // reported as events
		case <-rotateC:
			o.rotateTickets()
		case now := <-checkC:
			o.acme.check(now, &o.wg)
		}
	}
}

// collectObtainErrors lists the *ObtainError in err (a join of them, or
// one); nil if err holds anything else.
func collectObtainErrors(err error) []*ObtainError {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	var out []*ObtainError
	for _, e := range errs {
		oe, ok := e.(*ObtainError)
		if !ok {
			return nil
		}
		out = append(out, oe)
	}
	return out
}
