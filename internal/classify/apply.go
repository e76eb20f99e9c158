package classify

import (
	"slices"

	"github.com/cgrulesengd/cgrulesengd/rules"
)

// An Applier carries out decisions: it puts a task where its Decision says.
// The engine's own cgroup.procs writes (cgroupfsApplier, through
// Config.Mover) are one; Config.Appliers adds others, asked in order
// before it (issue 20: placement through systemd's D-Bus API, which takes
// the decisions whose destination is a slice).
//
// An applier is called by the goroutine that classified the task: a
// worker, a scan, or the event reader itself, but the reader only when
// Cheap says so. Apply may complete at once (synchronous: it returns the
// outcome) or take the placement and complete it later (asynchronous: it
// returns Applied{Pending: true} and calls done.Done exactly once, from any
// goroutine, when the task is placed or the placement failed); until then
// the task stays hot, so children it forks meanwhile are followed, and the
// time given in Applied.At is what later FORKs are compared with, exactly
// as for a cgroup.procs write. An applier that cannot take a placement
// (its queue is full) must say so with Applied.Lost: the engine repairs
// that like a kernel overflow, with a rescan.
type Applier interface {
	// Takes reports whether this applier carries out d.
	Takes(d *Decision) bool
	// Cheap reports whether Apply(p) completes at once without a blocking
	// call (no open(2), no cgroup to create, no round trip to another
	// process): only then does the event reader apply p itself; otherwise
	// a worker does, with what the reader read and decided.
	Cheap(p *Placement) bool
	// Apply places p.PID. p is valid only during the call: an asynchronous
	// applier keeps p.Clone().
	Apply(p *Placement, done Completion) Applied
}

// Completion is how an asynchronous Applier hands back a placement it took.
type Completion interface {
	// Done reports how the placement ended; p is the applier's Clone.
	Done(p *Placement, a Applied)
}

// Applied is how a placement ended.
type Applied struct {
	// Moved is the number of destinations the task was put in (for the
	// cgroupfs writes, the hierarchies whose write succeeded); 0: it was
	// not moved. A failure is counted and logged by the applier.
	Moved int
	// Retry: the task is still being created (EINVAL); the engine
	// classifies it again shortly, Config.Retries times at most.
	Retry bool
	// Pending: the applier took the placement and will call Completion.Done.
	Pending bool
	// Lost: the applier could not take the placement (a full queue): the
	// engine rescans, as after a kernel overflow.
	Lost bool
	// At is the CLOCK_MONOTONIC time (ns) the task was placed; 0 means
	// when Apply returned or Done was called.
	At uint64
}

// A Placement is one task and the decision that says where it goes.
type Placement struct {
	PID      int
	Task     rules.Task // the ids and process name the decision was made for
	Decision Decision
	// Placed are the moves made, for the report's log lines: the applier
	// appends each move it made (the cgroupfs writes that succeeded).
	Placed []Move

	// The engine's, handed back with the placement.
	job  job
	rs   *ruleset // the rules that decided
	comm string   // for log lines when the process name was not read
	rt   realtime // whether the task is realtime, as far as it was read
}

// Clone returns a copy of p that owns its slices (an asynchronous applier
// keeps it; the engine reuses p).
func (p *Placement) Clone() *Placement {
	c := *p
	c.Decision.Moves = slices.Clone(p.Decision.Moves)
	c.Placed = slices.Clone(p.Placed)
	c.job.carried = nil
	return &c
}

// applierFor is the applier that takes d: the first of Config.Appliers
// that does, else the engine's cgroupfs writes.
func (e *Engine) applierFor(d *Decision) Applier {
	for _, a := range e.appliers {
		if a.Takes(d) {
			return a
		}
	}
	return &e.raw
}
