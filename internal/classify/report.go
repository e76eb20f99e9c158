package classify

import (
	"fmt"
	"path"
	"time"

	"github.com/sirupsen/logrus"
)

// verdict is how the read and decide steps end: go on (proceed), or why
// the task is left where it is.
type verdict uint8

const (
	proceed        verdict = iota
	leftNoRule             // no rule matches its ids and process (or no rules are loaded)
	leftIgnore             // an ignore or ignore_rt rule holds
	leftInPlace            // it is where its rule puts it already
	leftOutOfScope         // outside --cgroup-root or the cgroup namespace, or a kernel thread
	leftSticky             // marked sticky
	taskGone               // it exited before it could be read
	skipped                // nothing to count: no rules yet, or a scan may not read the task (EACCES)
	readError              // reading it failed (logged at debug level by read)
	expandError            // its rule's destination could not be expanded (logged by decideTask)
)

// leftReason is the Stats.LeftAlone index of a verdict, -1 for the others.
func (v verdict) leftReason() int {
	switch v {
	case leftNoRule:
		return LeftNoRule
	case leftIgnore:
		return LeftIgnore
	case leftInPlace:
		return LeftInPlace
	case leftOutOfScope:
		return LeftOutOfScope
	}
	return -1 // leftSticky is counted by Marks.skip, as StickySkipped
}

// reportLeft counts a classification that ends before a move with the
// verdict v, and says why at debug level.
func (e *Engine) reportLeft(p *Placement, v verdict) {
	switch v {
	case taskGone:
		e.stats.Gone.Add(1)
		return
	case readError, expandError:
		e.stats.Errors.Add(1)
		return
	}
	if i := v.leftReason(); i >= 0 {
		e.stats.LeftAlone[i].Add(1)
	}
	if (v == leftIgnore || v == leftInPlace) && p.Decision.Rule != nil {
		p.rs.hits[p.Decision.Rule.Index].Add(1)
	}
	if !e.log.IsLevelEnabled(logrus.DebugLevel) {
		return
	}
	switch v {
	case leftNoRule:
		e.log.WithFields(logrus.Fields{"pid": p.PID, "uid": p.Task.UID, "gid": p.Task.GID, "process": p.Task.Process, "why": p.job.why.String()}).Debug("no rule matches")
	case leftIgnore, leftInPlace:
		e.log.WithFields(logrus.Fields{"pid": p.PID, "rule": ruleRef(p.Decision.Rule), "ignored": v == leftIgnore, "why": p.job.why.String()}).Debug("task already in place")
	}
}

// reportApplied counts a task moved by why it was looked at, times a move
// made for an event (from the kernel's stamp on the event to the end of
// the task's last move; a retried move counts its wait), and logs each
// move at info level. The log comes after the moves, so that it does not
// delay them.
func (e *Engine) reportApplied(p *Placement, a Applied) {
	why := p.job.why
	e.stats.Moved[why.moveReason()].Add(1)
	if p.job.ts != 0 && why.timed() {
		e.latency.observe(time.Duration(a.At - p.job.ts))
	}
	if !e.log.IsLevelEnabled(logrus.InfoLevel) {
		// The default level is errors only: no fields, no name look-up.
		return
	}
	for _, m := range p.Placed {
		if m.Target != nil && m.Target.Slice {
			// Placed by the service manager: m.Path is the unit's cgroup.
			e.log.WithFields(logrus.Fields{
				"pid": p.PID, "process": p.processName(), "user": p.userName(),
				"rule": ruleRef(p.Decision.Rule), "unit": path.Base(m.Path), "dest": m.Path, "why": why.String(),
			}).Info("placed task")
			continue
		}
		e.log.WithFields(logrus.Fields{
			"pid": p.PID, "process": p.processName(), "user": p.userName(),
			"rule": ruleRef(p.Decision.Rule), "controller": m.H.Name(), "dest": m.Path, "why": why.String(),
		}).Info("moved task")
	}
}

// userName is the name of the task's user, for log lines.
func (p *Placement) userName() string {
	if p.rs.names != nil {
		if u, err := p.rs.names.UserByID(p.Task.UID); err == nil {
			return u.Name
		}
	}
	return fmt.Sprint(p.Task.UID)
}

// processName is the task's process name, or its comm when that was not
// read (no rule names a process).
func (p *Placement) processName() string {
	if p.Task.Process != "" {
		return p.Task.Process
	}
	return p.comm
}
