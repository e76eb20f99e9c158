package systemd

import (
	"errors"
	"path"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cgrulesengd/cgrulesengd/internal/classify"
	"github.com/cgrulesengd/cgrulesengd/internal/kernel"
	"github.com/cgrulesengd/cgrulesengd/internal/ratelimit"
)

// Applier is the engine's applier (classify.Applier) for the decisions
// whose destination is a systemd slice: it hands each task to a Placer and
// tells the engine when the manager has moved it. It never blocks and
// makes no call itself, so the event reader may apply a decision (Cheap):
// the D-Bus calls are the placer's workers'.
//
//   - A placement the placer cannot take (its queue is full) is lost like a
//     kernel overflow: Applied.Lost, which the engine repairs with a
//     rescan. So are placements given up while the manager was
//     unreachable, once it answers again (PlacerConfig.Reachable calls
//     Repair).
//   - The engine keeps a task hot until Done: the time the manager
//     reported the move (Outcome.Done, on CLOCK_MONOTONIC) is what its
//     forks are compared with, so children forked before it are
//     classified too and join the same scope; those that wait behind the
//     task's call go in one call (the placer's batching).
type Applier struct {
	placer  *Placer
	log     *logrus.Logger
	repair  func()
	reports ratelimit.Keyed[string] // failed placements, per kind
}

// ApplierConfig configures an Applier.
type ApplierConfig struct {
	// Placer's settings; its Done and Reachable are the applier's.
	Placer PlacerConfig
	Log    *logrus.Logger
	// Repair asks for a rescan (classify.Engine.RequestRescan).
	Repair func()
}

// pending is what the applier keeps of a placement it took.
type pending struct {
	p    *classify.Placement
	done classify.Completion
}

// NewApplier starts an applier and its placer.
func NewApplier(cfg ApplierConfig) *Applier {
	a := &Applier{log: cfg.Log, repair: cfg.Repair, reports: ratelimit.Keyed[string]{Window: time.Minute, Burst: 5}}
	pc := cfg.Placer
	pc.Done = a.finished
	pc.Reachable = func() {
		a.log.Warn("systemd answers again: rescanning /proc to place the tasks given up while it could not be reached")
		if a.repair != nil {
			a.repair()
		}
	}
	a.placer = NewPlacer(pc)
	return a
}

// Takes the decisions whose destination is a slice (a slice rule has no
// other target).
func (a *Applier) Takes(d *classify.Decision) bool {
	return len(d.Moves) > 0 && d.Moves[0].Target != nil && d.Moves[0].Target.Slice
}

// Cheap: Apply only queues the placement (no system call, no round trip).
func (a *Applier) Cheap(*classify.Placement) bool { return true }

// Apply queues the task's placement into the slice its decision names,
// for the user it now runs as.
func (a *Applier) Apply(p *classify.Placement, done classify.Completion) classify.Applied {
	m := &p.Decision.Moves[0]
	c := p.Clone()
	err := a.placer.Submit(Placement{PIDs: []int{p.PID}, Slice: path.Base(m.Path), UID: p.Task.UID, Tag: pending{c, done}})
	switch {
	case err == nil:
		return classify.Applied{Pending: true}
	case errors.Is(err, ErrBusy):
		// Counted by the placer; the engine rescans once the queue drains.
		return classify.Applied{Lost: true}
	default:
		a.report("submit", p.PID, err)
		return classify.Applied{}
	}
}

// finished hands an outcome back to the engine (on a placer's worker).
func (a *Applier) finished(o Outcome) {
	pd := o.Tag.(pending)
	var res classify.Applied
	if o.Err == nil {
		res.Moved = 1
		// The move's time on the engine's clock (CLOCK_MONOTONIC), taken
		// back from when the manager reported it.
		res.At = kernel.Now() - uint64(time.Since(o.Done))
		m := pd.p.Decision.Moves[0]
		m.Path = path.Join(m.Path, o.Unit)
		pd.p.Placed = append(pd.p.Placed, m)
	} else {
		a.report(kindOf(o.Err), o.PIDs[0], o.Err)
	}
	pd.done.Done(pd.p, res)
}

// kindOf names an error's kind for the reports' limiter.
func kindOf(err error) string {
	for _, k := range []error{ErrTaskGone, ErrOutsideNamespace, ErrUnreachable, ErrClosed, ErrInvalid, ErrJobFailed, ErrNotDelegated} {
		if errors.Is(err, k) {
			return k.Error()
		}
	}
	return "other"
}

// report logs a placement that failed: at debug level when the task was
// gone or the daemon stops, else rate-limited per kind.
func (a *Applier) report(kind string, pid int, err error) {
	if a.log == nil {
		return
	}
	if errors.Is(err, ErrTaskGone) || errors.Is(err, ErrClosed) {
		a.log.WithField("pid", pid).Debugf("not placed: %v", err)
		return
	}
	n, ok := a.reports.Allow(kind, time.Now())
	if !ok {
		return
	}
	e := a.log.WithFields(logrus.Fields{"pid": pid, ratelimit.NotLogged: n})
	switch {
	case errors.Is(err, ErrOutsideNamespace):
		e.Warnf("not placed: the task is outside the service manager's pid namespace, which cannot name it: %v", err)
	case errors.Is(err, ErrUnreachable):
		e.Errorf("not placed: the service manager could not be reached (tried again %d times); the tasks given up are placed by a rescan once it answers: %v", a.placer.cfg.Retries, err)
	default:
		e.Errorf("not placed: %v", err)
	}
}

// Stats are the placer's counters.
func (a *Applier) Stats() PlacerStats { return a.placer.Stats() }

// Close stops the placer: calls in flight end, placements still waiting
// end with ErrClosed, each handed back to the engine (close the applier
// before the engine stops). It does not close the Client.
func (a *Applier) Close() { a.placer.Close() }
