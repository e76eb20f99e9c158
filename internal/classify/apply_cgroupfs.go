package classify

import (
	"errors"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/cgrulesengd/cgrulesengd/internal/cgroupfs"
	"github.com/cgrulesengd/cgrulesengd/internal/ratelimit"
	"github.com/cgrulesengd/cgrulesengd/rules"
)

// cgroupfsApplier is the engine's own Applier: one write of the pid to
// cgroup.procs per hierarchy (Config.Mover), creating a template
// destination that does not exist yet. It takes every decision no other
// applier takes, and is synchronous.
type cgroupfsApplier struct{ e *Engine }

// Takes takes everything: it is asked last.
func (a *cgroupfsApplier) Takes(*Decision) bool { return true }

// Cheap: every destination's descriptor is open (no open(2), no cgroup to
// create).
func (a *cgroupfsApplier) Cheap(p *Placement) bool {
	for i := range p.Decision.Moves {
		m := &p.Decision.Moves[i]
		if !a.e.cfg.Mover.Cached(m.H, m.Path) {
			return false
		}
	}
	return true
}

// Apply makes the moves in order and stops at the first that finds the
// task gone. A realtime task's EINVAL (a v1 cpu cgroup without an
// rt_runtime_us budget) is reported at once and not retried.
func (a *cgroupfsApplier) Apply(p *Placement, _ Completion) Applied {
	e := a.e
	var res Applied
	for i := range p.Decision.Moves {
		m := &p.Decision.Moves[i]
		err := a.move(p, m)
		switch {
		case err == nil:
			res.Moved++
			p.Placed = append(p.Placed, *m)
			e.stats.Moves.Add(1)
			// It exists: if it goes away again, say so at once.
			e.missing.Forget(destKey{m.H, m.Path})
			if !e.dests.add(m.H, m.Path) {
				e.stats.DestinationsDropped.Add(1)
			}
		case errors.Is(err, unix.ESRCH):
			e.stats.Gone.Add(1)
			e.stats.Failed[FailedTaskGone].Add(1)
			return res
		case errors.Is(err, unix.EINVAL):
			if p.rt == rtUnknown {
				p.rt = e.realTime(p.PID)
			}
			if p.rt == rtNo {
				res.Retry = true
				break
			}
			e.stats.Errors.Add(1)
			e.stats.Failed[FailedOther].Add(1)
			a.reportFailed(p, m, "cannot move realtime task (does the destination have cpu.rt_runtime_us?): %v", err)
		case isNotExist(err):
			e.stats.Errors.Add(1)
			e.stats.Failed[FailedCgroupMissing].Add(1)
			a.reportMissing(m, err)
		case outOfDescriptors(err): // descriptors.go
			e.stats.Errors.Add(1)
			e.stats.Failed[FailedDescriptors].Add(1)
			e.lostForDescriptors(p.PID, err)
			return res
		default:
			e.stats.Errors.Add(1)
			e.stats.Failed[FailedOther].Add(1)
			a.reportFailed(p, m, "cannot move task: %v", err)
		}
	}
	return res
}

// move writes the pid into m.Path, creating the destination when the
// rule's destination is a template.
func (a *cgroupfsApplier) move(p *Placement, m *Move) error {
	mv := a.e.cfg.Mover
	err := mv.Move(m.H, m.Path, p.PID)
	if err == nil || !isNotExist(err) {
		return err
	}
	mv.Forget(m.H, m.Path)
	if !m.Templated {
		return err
	}
	if cerr := mv.Create(m.H, m.Path, a.createControllers(m)); cerr != nil {
		// The directory may exist even if enabling a controller failed.
		if n, ok := a.e.createErrs.Allow(reportKey(m), time.Now()); ok {
			f := logrus.Fields{"rule": ruleRef(p.Decision.Rule), "controller": m.Controller, "dest": m.Path}
			if n > 0 {
				f[ratelimit.NotLogged] = n
			}
			a.e.log.WithFields(f).Warnf("creating destination: %v", cerr)
		}
	} else {
		a.e.stats.Created.Add(1)
	}
	return mv.Move(m.H, m.Path, p.PID)
}

// createControllers are the controllers to enable for a new v2 destination:
// those of the rule's names that resolve to this hierarchy (on a hybrid
// machine "cpu" is a v1 controller and must not be enabled in cgroup2).
func (a *cgroupfsApplier) createControllers(m *Move) []string {
	if m.H.Version != cgroupfs.V2 || m.Target == nil {
		return m.H.Controllers
	}
	var out []string
	for _, c := range m.Target.Controllers {
		if c == "*" {
			out = append(out, m.H.Controllers...)
			continue
		}
		if c == cgroupfs.Unified {
			continue
		}
		for _, h := range a.e.scope.layout.Resolve(c) {
			if h == m.H {
				out = append(out, c)
				break
			}
		}
	}
	return out
}

// reportFailed logs a failed move once per destination (a template's: per
// rule target) and hierarchy per reportInterval: each thread of a
// multi-threaded setuid reports the change and may classify the process
// again, and a user can start as many processes as it likes.
func (a *cgroupfsApplier) reportFailed(p *Placement, m *Move, format string, err error) {
	n, ok := a.e.moveErrs.Allow(reportKey(m), time.Now())
	if !ok {
		return
	}
	f := logrus.Fields{"pid": p.PID, "rule": ruleRef(p.Decision.Rule), "controller": m.Controller, "dest": m.Path}
	if n > 0 {
		f[ratelimit.NotLogged] = n
	}
	a.e.log.WithFields(f).Errorf(format, err)
}

// reportMissing logs a missing destination: when first seen, again at most
// once per reportInterval while it stays missing (with the number of moves
// that failed meanwhile), and at once after it was seen to exist or the
// rules were reloaded. The missing destinations of one template count as
// one (reportKey).
func (a *cgroupfsApplier) reportMissing(m *Move, err error) {
	n, ok := a.e.missing.Allow(reportKey(m), time.Now())
	if !ok {
		return
	}
	f := logrus.Fields{"controller": m.Controller, "dest": m.Path, "rule": targetRef(m.Target)}
	if n > 0 {
		f[ratelimit.NotLogged] = n
	}
	why := "not a template, so it is not created"
	if m.Templated {
		why = "creating it failed"
	}
	a.e.log.WithFields(f).Errorf("destination cgroup does not exist (%s; repeated at most once a minute while it lasts): %v", why, err)
}

// reportKey is what a recurring report about a move into m is limited by:
// its destination, or, for a template's, the rule target and hierarchy.
// A template's expansions are as many as the users, processes or pids it
// names, and a user chooses its process names and pids: so a flood of
// them costs a line per target a minute, not one per process.
func reportKey(m *Move) destKey {
	if m.Templated && m.Target != nil {
		return destKey{m.H, "\x00" + targetRef(m.Target)}
	}
	return destKey{m.H, m.Path}
}

func ruleRef(r *rules.Rule) string {
	if r == nil {
		return ""
	}
	return fmt.Sprintf("%s:%d", r.File, r.Line)
}

func targetRef(t *rules.Target) string {
	if t == nil {
		return ""
	}
	return fmt.Sprintf("%s:%d", t.File, t.Line)
}
