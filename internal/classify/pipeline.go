package classify

import (
	"time"

	"github.com/cgrulesengd/cgrulesengd/internal/kernel"
	"github.com/cgrulesengd/cgrulesengd/internal/ratelimit"
	"github.com/cgrulesengd/cgrulesengd/rules"
)

// A classification runs four steps, each in the file of its name:
//
//	read    (read.go)    the task's ids, and when a rule may match them its
//	                     cgroups and process name, from /proc
//	decide  (decide.go)  the rule and the moves, from what was read alone
//	apply   (apply.go)   the moves, by the Applier that takes the decision
//	report  (report.go)  counters, latency, rule hits and log lines
//
// run (below) claims the job's pid in the hot table around them and
// queues what follows: a retry, another run for an event that came
// meanwhile, the children of a task a scan moved.

// workState is the scratch of one goroutine that classifies (a worker, the
// reader, a scan), reused from job to job so that a classification
// allocates nothing.
type workState struct {
	dec    decideBuf
	place  Placement
	placed []Move
	// inline: the reader runs this classification (runInline); a move
	// that is not cheap is handed to a worker.
	inline bool
}

// push queues a job whose hot entry is already queued.
func (e *Engine) push(j job) {
	q := e.jobs
	if j.prio {
		q = e.fast
	}
	select {
	case q <- j:
	default:
		// A full queue loses this event just like a kernel overflow would:
		// forget the entry (nothing will run for it) and rescan.
		e.hot.forget(j.pid)
		e.queueFull()
	}
}

func (e *Engine) queueFull() {
	e.stats.QueueFull.Add(1)
	if n, ok := e.overflowLog.Allow(time.Now()); ok {
		e.log.WithField(ratelimit.NotLogged, n).Warn("classification queue full: events were dropped, rescanning /proc")
	}
	e.RequestRescan()
}

func (e *Engine) worker() {
	defer e.wg.Done()
	var st workState
	for {
		var j job
		select {
		case j = <-e.fast:
		default:
			select {
			case <-e.stop:
				return
			case j = <-e.fast:
			case j = <-e.jobs:
			}
		}
		e.busy.Add(1)
		e.run(&st, &j)
		e.busy.Add(-1)
	}
}

// run claims j's pid and runs its classification. It reports whether it
// handed j off instead (an inline run whose move is not cheap): the pid is
// then queued again and j carries the read and the decision, for the
// caller to push.
func (e *Engine) run(st *workState, j *job) (handedOff bool) {
	c, ok := e.hot.claimed(j.pid)
	if !ok {
		// The process exited after the events that queued this job (the
		// kernel reports EXIT last): there is nothing left to move. Under a
		// fork storm this is most jobs.
		e.stats.Gone.Add(1)
		return false
	}
	j.tid = c.tid
	p := e.carried(j, c)
	if p == nil {
		var v verdict
		if p, v = e.prepare(st, j, c.exact); v != proceed {
			e.reportLeft(p, v)
			e.finish(p, Applied{})
			return false
		}
	}
	a := e.applierFor(&p.Decision)
	if st.inline && !a.Cheap(p) {
		j.carried = p.Clone()
		e.hot.handedOff(j.pid, j.tid)
		return true
	}
	e.apply(a, p)
	st.keep(p)
	return false
}

// keep takes back the capacity of p's scratch slices, when p is st's own
// placement (not one carried from the reader).
func (st *workState) keep(p *Placement) {
	if p == &st.place {
		st.placed = p.Placed[:0]
	}
}

// runScan classifies pid for a scan (start-up or repair), unless a worker
// owns it, and reports whether it did and whether it moved the task.
func (e *Engine) runScan(st *workState, pid int32, why reason) (claimed, moved bool) {
	exact, ok := e.hot.scanClaimed(pid)
	if !ok {
		return false, false
	}
	j := job{pid: pid, why: why, scan: true}
	return true, e.classify(st, &j, exact).Moved > 0
}

// classify runs the four steps for a claimed job, on this goroutine.
func (e *Engine) classify(st *workState, j *job, exact bool) Applied {
	p, v := e.prepare(st, j, exact)
	if v != proceed {
		e.reportLeft(p, v)
		e.finish(p, Applied{})
		return Applied{}
	}
	a := e.apply(e.applierFor(&p.Decision), p)
	st.keep(p)
	return a
}

// carried is the placement j carries from the event reader, when it still
// holds: no event came since (the claim says so) and the rules it was
// decided by are still in force.
func (e *Engine) carried(j *job, c claim) *Placement {
	p := j.carried
	j.carried = nil
	if p == nil || !c.carried || p.rs != e.rs.Load() {
		return nil
	}
	return p
}

// prepare runs the read and decide steps for j into st's placement, and
// says whether to go on to apply it.
func (e *Engine) prepare(st *workState, j *job, exact bool) (*Placement, verdict) {
	p := &st.place
	*p = Placement{PID: int(j.pid), Decision: Decision{}, Placed: st.placed[:0], job: *j}
	p.rs = e.rs.Load()
	if p.rs == nil {
		return p, skipped
	}
	if e.marks.holds(j.pid, func() (uint32, uint32, error) {
		t, err := e.cfg.Tasks.Task(int(j.pid))
		return t.RUID, t.EUID, err
	}) {
		return p, leftSticky
	}
	r, v := e.read(p.rs, j)
	p.Task = rules.Task{PID: p.PID, UID: r.task.EUID, GID: r.task.EGID, Process: r.task.Process}
	p.comm = r.task.Comm
	if v != proceed {
		return p, v
	}
	p.Decision, p.rt, v = e.decideTask(p.rs, &p.Task, situation{lines: r.lines, movedByUs: exact}, &st.dec)
	return p, v
}

// apply hands p to a, and finishes it unless a took it to finish later.
func (e *Engine) apply(a Applier, p *Placement) Applied {
	p.rs.hits[p.Decision.Rule.Index].Add(1)
	res := a.Apply(p, &e.done)
	if !res.Pending {
		e.finish(p, res)
	}
	return res
}

// completions is how asynchronous appliers hand back what they took.
type completions struct{ e *Engine }

// Done is Completion.Done.
func (c *completions) Done(p *Placement, a Applied) { c.e.finish(p, a) }

// finish reports how p's classification ended and moves its pid on in the
// hot table: done, queued again (an event came meanwhile), or queued for
// a retry; after a scan's move, the task's children are classified too.
func (e *Engine) finish(p *Placement, a Applied) {
	if a.At == 0 {
		a.At = kernel.Now()
	}
	if a.Moved > 0 {
		e.reportApplied(p, a)
	}
	if a.Lost {
		e.queueFull()
	}
	j := &p.job
	out := outcome{moved: a.Moved > 0, retry: a.Retry}
	if a.Retry && int(j.attempt) >= e.cfg.Retries {
		e.stats.Failed[FailedRetries].Add(1)
		out.retry = false
	}
	var next finishResult
	if j.scan {
		next = e.hot.scanFinished(j.pid, out, a.At)
	} else {
		next = e.hot.finished(j.pid, j.tid, out, a.At)
	}
	switch next {
	case finishRetry:
		e.stats.Retries.Add(1)
		r := job{pid: j.pid, why: j.why, attempt: j.attempt + 1, prio: true, ts: j.ts}
		e.retries.add(r, time.Now().Add(retryDelay(r.attempt)))
	case finishAgain:
		why := j.why
		if j.scan {
			why = reasonCreds
		}
		e.push(job{pid: j.pid, why: why, prio: j.prio})
	}
	if j.scan && out.moved {
		e.followChildren(int(j.pid))
	}
}
