package classify

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/cgrulesengd/cgrulesengd/internal/cgroupfs"
	"github.com/cgrulesengd/cgrulesengd/internal/kernel"
	"github.com/cgrulesengd/cgrulesengd/internal/proc"
	"github.com/cgrulesengd/cgrulesengd/internal/ratelimit"
	"github.com/cgrulesengd/cgrulesengd/rules"
)

// Mover is what the engine needs from cgroupfs.Mover; tests supply a fake.
type Mover interface {
	Move(h *cgroupfs.Hierarchy, path string, pid int) error
	Create(h *cgroupfs.Hierarchy, path string, controllers []string) error
	Forget(h *cgroupfs.Hierarchy, path string)
	// Cached reports whether a move into (h, path) needs no open(2): the
	// reader moves a task itself only then.
	Cached(h *cgroupfs.Hierarchy, path string) bool
}

// Tasks is what the engine reads about tasks; proc.FS in production.
type Tasks interface {
	Task(pid int) (proc.Task, error)
	ProcName(pid int, comm string) (string, error)
	PIDs() ([]int, error)
	Children(pid int) ([]int, error)
	Cgroups(pid int) ([]proc.CgroupLine, error)
	ThreadCreds(pid, tid int) (euid, egid uint32, err error)
	RealTime(pid int) (bool, error)
}

// Config configures an Engine. Layout, Mover, Tasks and Log are required.
type Config struct {
	Layout *cgroupfs.Layout
	Mover  Mover
	Tasks  Tasks
	Log    *logrus.Logger
	Root   string // --cgroup-root; "" = "/"

	Workers   int           // goroutines making moves; default 2
	QueueSize int           // pending classifications, per queue (likely, other); default 8192
	HotWindow time.Duration // how long a moved task's late FORK events are honoured; default 5 s
	ForkSlack time.Duration // fork timestamps this much after a move still count as before it; default 20 ms
	MaxHot    int           // bound on the hot table; default 65536
	Retries   int           // EINVAL retries; default 5
	MaxMarks  int           // bound on the sticky marks (see marks.go); default 65536

	// HandOff makes the reader hand every classification to a worker. By
	// default the reader classifies and moves a task itself when that is
	// cheap and nothing else waits (see HandleBatch).
	HandOff bool
}

// reason says why a task is being classified (for logs and counters).
type reason uint8

const (
	reasonCreds reason = iota
	reasonExec
	reasonFork
	reasonChild
	reasonScan   // the start-up scan
	reasonRepair // a rescan after lost events
)

func (r reason) String() string {
	return [...]string{"credentials", "exec", "fork", "child", "scan", "rescan"}[r]
}

// moveReason is the counter a move made for why counts in.
func (r reason) moveReason() int {
	switch r {
	case reasonExec:
		return MovedExec
	case reasonFork, reasonChild:
		return MovedForkRace
	case reasonScan:
		return MovedStartupScan
	case reasonRepair:
		return MovedRepairScan
	}
	return MovedCredentials
}

type job struct {
	pid     int32
	why     reason
	attempt uint8
	ts      uint64 // CLOCK_MONOTONIC ns of the event, for the latency histogram; 0: none
	// prio: the job likely leads to a move (the event's new ids are named
	// by a rule, a process rule's EXEC, a followed child, a retry). It is
	// only a hint, from the event's ids, which a lagging reader cannot
	// trust: it orders the work, the classification reads the task.
	prio bool
}

type ruleset struct {
	list  *rules.List
	names rules.Resolver
	hits  []atomic.Uint64 // per rule (Rule.Index): classifications it decided
}

func newRuleset(l *rules.List, names rules.Resolver) *ruleset {
	return &ruleset{list: l, names: names, hits: make([]atomic.Uint64, l.Len())}
}

// Engine classifies tasks. Create it with New, give it rules with SetRules,
// then Start it.
type Engine struct {
	cfg   Config
	scope scope
	log   *logrus.Logger

	rs atomic.Pointer[ruleset]

	jobs    chan job // classifications for the workers
	fast    chan job // the same, prio: workers take these first
	stop    chan struct{}
	wg      sync.WaitGroup
	rescan  chan struct{} // capacity 1: requests coalesce
	hot     *hotTable     // hot.go
	retries *retryQueue   // retry.go
	busy    atomic.Int32  // workers classifying right now

	// Owned by the goroutine calling Handle/HandleBatch (the reader).
	inBatch bool
	pending []job
	inline  workState // the reader's, for the moves it makes itself

	missing  ratelimit.Keyed[destKey] // destinations reported missing
	moveErrs ratelimit.Keyed[moveKey] // failed moves reported, per process and destination

	overflowLog ratelimit.Limiter // one report a second
	stats       counters
	latency     latencyHist // dests.go, latency.go: for the metrics
	dests       destSet

	marks     *marks // sticky processes (marks.go, sticky.go)
	stickyLog ratelimit.Limiter

	fdLog    ratelimit.Limiter // descriptors.go
	fdRepair spacedRequest
}

// New returns an engine; it does nothing until Start.
func New(cfg Config) *Engine {
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 8192
	}
	if cfg.HotWindow <= 0 {
		cfg.HotWindow = 5 * time.Second
	}
	if cfg.ForkSlack <= 0 {
		cfg.ForkSlack = 20 * time.Millisecond
	}
	if cfg.MaxHot <= 0 {
		cfg.MaxHot = 65536
	}
	if cfg.Retries <= 0 {
		cfg.Retries = 5
	}
	if cfg.MaxMarks <= 0 {
		cfg.MaxMarks = 65536
	}
	root := path.Clean("/" + cfg.Root)
	return &Engine{
		cfg:     cfg,
		scope:   scope{layout: cfg.Layout, root: root},
		log:     cfg.Log,
		jobs:    make(chan job, cfg.QueueSize),
		fast:    make(chan job, cfg.QueueSize),
		stop:    make(chan struct{}),
		rescan:  make(chan struct{}, 1),
		hot:     newHotTable(cfg.MaxHot),
		retries: newRetryQueue(),

		marks:    newMarks(cfg.MaxMarks),
		missing:  ratelimit.Keyed[destKey]{Window: reportInterval, Max: maxReports},
		moveErrs: ratelimit.Keyed[moveKey]{Window: reportInterval, Max: maxReports},
	}
}

// A problem that lasts (a missing destination, a task that cannot be moved)
// is logged when first seen, then at most once per reportInterval per
// destination (per process and destination for a move), with a count of
// the occurrences in between; every occurrence is counted in Stats.Errors.
const (
	reportInterval = time.Minute
	maxReports     = 4096
)

type destKey struct {
	h    *cgroupfs.Hierarchy
	path string
}

type moveKey struct {
	pid int
	destKey
}

// SetRules puts a new rule list in force. names resolves ids for log lines
// and templates; it should be the resolver the list was loaded with.
func (e *Engine) SetRules(l *rules.List, names rules.Resolver) {
	e.rs.Store(newRuleset(l, names))
	// New rules, new reports: what is still wrong is said again.
	e.missing.Reset()
	e.moveErrs.Reset()
}

// Start launches the workers, the rescan loop, the retry queue and the
// hot-table sweeper.
func (e *Engine) Start() {
	for i := 0; i < e.cfg.Workers; i++ {
		e.wg.Add(1)
		go e.worker()
	}
	e.wg.Add(3)
	go e.rescanLoop()
	go e.sweeper()
	go func() {
		defer e.wg.Done()
		e.retries.run(e.stop, e.push)
	}()
}

// Stop ends the goroutines started by Start and waits for them. Handle must
// not be called afterwards.
func (e *Engine) Stop() {
	close(e.stop)
	e.wg.Wait()
}

// Handle takes one event from the netlink reader and hands any
// classification it calls for to a worker. It never blocks.
func (e *Engine) Handle(ev *kernel.Event) {
	e.stats.events.Add(1)
	if k := kindOf(ev.What); k >= 0 {
		e.stats.byKind[k].Add(1)
	}
	e.handle(ev)
}

// kindOf is the Stats.EventsByKind index of an event type, -1 for others.
func kindOf(w kernel.What) int {
	switch w {
	case kernel.EventFork:
		return KindFork
	case kernel.EventExec:
		return KindExec
	case kernel.EventUID:
		return KindUID
	case kernel.EventGID:
		return KindGID
	case kernel.EventExit:
		return KindExit
	case kernel.EventOverflow:
		return KindOverflow
	}
	return -1
}

func (e *Engine) handle(ev *kernel.Event) {
	switch ev.What {
	case kernel.EventUID, kernel.EventGID:
		e.stats.creds.Add(1)
		if e.stickySkip(ev.TGID) {
			return
		}
		prio := false
		if rs := e.rs.Load(); rs != nil {
			if ev.What == kernel.EventUID {
				prio = rs.list.NamesUser(ev.EUID)
			} else {
				prio = rs.list.NamesGroup(ev.EGID)
			}
		}
		e.enqueueTID(ev.TGID, reasonCreds, ev.PID, ev.Timestamp, prio, e.inBatch)
	case kernel.EventExec:
		if rs := e.rs.Load(); rs != nil && rs.list.NeedsProcess() {
			if e.stickySkip(ev.TGID) {
				return
			}
			e.stats.execs.Add(1)
			e.enqueueTID(ev.TGID, reasonExec, ev.TGID, ev.Timestamp, true, e.inBatch)
		}
	case kernel.EventFork:
		if ev.PID != ev.TGID {
			// A new thread: a cgroup.procs write moves every thread of the
			// process, including this one, so there is nothing to follow.
			return
		}
		e.fork(ev)
	case kernel.EventExit:
		if ev.PID == ev.TGID {
			e.exit(ev.TGID)
		}
	case kernel.EventOverflow:
		e.stats.overflows.Add(1)
		if n, ok := e.overflowLog.Allow(time.Now()); ok {
			e.log.WithField(ratelimit.NotLogged, n).Warn("netlink receive buffer overflowed: kernel events were lost, rescanning /proc")
		}
		e.RequestRescan()
	}
}

// enqueue marks pid hot and queues its classification, coalescing with a
// queued one (a multi-threaded setuid reports once per thread).
func (e *Engine) enqueue(pid int32, why reason) {
	e.enqueueTID(pid, why, pid, 0, true, false)
}

// enqueueTID is enqueue for an event reported by thread tid of pid. batch
// is true only on the reader goroutine inside HandleBatch: the job then
// waits in e.pending for the end of the batch. (Workers and the scan also
// enqueue, concurrently; they must never touch e.pending.)
func (e *Engine) enqueueTID(pid int32, why reason, tid int32, ts uint64, prio, batch bool) {
	if pid <= 0 {
		return
	}
	switch e.hot.noted(pid, tid) {
	case noteCoalesced:
		e.stats.coalesced.Add(1)
		return
	case noteAgain:
		return
	case noteFull:
		e.queueFull()
		return
	}
	j := job{pid: pid, why: why, prio: prio, ts: ts}
	if batch {
		e.pending = append(e.pending, j)
		return
	}
	e.push(j)
}

// HandleBatch is Handle for every event of one read. Classifications are
// decided at the end of the batch, and dropped for a process whose EXIT is
// in the same batch: under a fork storm most credential changes belong to
// tasks that are already gone, and waking a worker for each cost more than
// the events themselves.
//
// What remains is handed to the workers, except in the common idle case:
// one classification, no job queued and no worker busy. The reader then
// classifies the task itself (inline), which spares the wake-up of a
// worker's thread (a futex and a cross-CPU wake, ~30 µs on a VM), as long
// as it is cheap: the destinations' descriptors are open and no cgroup
// must be created (otherwise the job goes to a worker after all), and an
// EINVAL goes to the retry queue. Reading /proc/PID/cgroup and status and
// writing cgroup.procs take some tens of µs, during which the kernel keeps
// queueing events. Config.HandOff turns this off. Same contract as Handle.
func (e *Engine) HandleBatch(evs []kernel.Event) {
	e.stats.events.Add(uint64(len(evs)))
	var kinds [NumKinds]uint64 // counted here, published once per batch
	e.inBatch = true
	for i := range evs {
		if k := kindOf(evs[i].What); k >= 0 {
			kinds[k]++
		}
		e.handle(&evs[i])
	}
	e.inBatch = false
	for k, n := range kinds {
		if n > 0 {
			e.stats.byKind[k].Add(n)
		}
	}
	n, nprio, first := 0, 0, -1
	for _, j := range e.pending {
		if e.hot.dropExitedQueued(j.pid) {
			e.stats.gone.Add(1)
			continue
		}
		if j.prio {
			nprio++
			if first < 0 {
				first = n
			}
		}
		e.pending[n] = j
		n++
	}
	pending := e.pending[:n]
	e.pending = e.pending[:0]
	if !e.cfg.HandOff && len(e.fast) == 0 {
		// The reader runs the batch's one likely job itself (or its one job
		// when nothing at all is queued or running), ahead of the rest.
		pick := -1
		switch {
		case nprio == 1:
			pick = first
		case n == 1 && len(e.jobs) == 0 && e.busy.Load() == 0:
			pick = 0
		}
		if pick >= 0 && e.runInline(pending[pick]) {
			pending[pick].pid = 0 // done
		}
	}
	pushed := false
	for _, j := range pending {
		if j.pid != 0 {
			e.push(j)
			pushed = true
		}
	}
	if pushed {
		// Let the worker run now on this thread rather than wait for
		// another one to be woken (tens of µs on a virtual machine): the
		// reader loses nothing, the kernel keeps queueing its events.
		runtime.Gosched()
	}
}

// runInline runs j on the reader (see HandleBatch). It returns false, with
// nothing done and j still queued in the hot table, when the move would not
// be cheap: the caller then pushes j to a worker.
func (e *Engine) runInline(j job) bool {
	e.inline.inline = true
	ok := e.run(&e.inline, j)
	e.inline.inline = false
	if ok {
		e.stats.inline.Add(1)
	}
	return ok
}

// push queues a job whose hot entry is already stQueued.
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
	e.stats.queueFull.Add(1)
	if n, ok := e.overflowLog.Allow(time.Now()); ok {
		e.log.WithField(ratelimit.NotLogged, n).Warn("classification queue full: events were dropped, rescanning /proc")
	}
	e.RequestRescan()
}

func (e *Engine) fork(ev *kernel.Event) {
	if e.stickyFork(ev) {
		return
	}
	if e.hot.follows(ev.ParentTGID, ev.Timestamp, uint64(e.cfg.ForkSlack)) {
		e.stats.forksFollowed.Add(1)
		e.enqueueTID(ev.TGID, reasonFork, ev.TGID, 0, true, e.inBatch)
	}
}

// exit drops a finished process from the hot table. Its FORK events were
// queued by the kernel before its EXIT, so they have been handled already.
func (e *Engine) exit(pid int32) {
	e.stickyExit(pid)
	e.hot.exited(pid)
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
		e.run(&st, j)
		e.busy.Add(-1)
	}
}

// workState is per-goroutine scratch space.
type workState struct {
	dec  decideBuf
	task rules.Task
	done []Move
	// inline: the reader runs this classification (runInline); a move that
	// would open a descriptor or create a cgroup is handed to a worker.
	inline bool
}

// run claims j's pid, classifies it and finishes it in the hot table,
// queueing what follows (a retry, or another run for an event that came
// meanwhile). It returns false only for an inline run that found the move
// not cheap: the pid is then queued again, and the caller must push j.
func (e *Engine) run(st *workState, j job) bool {
	tid, exact, ok := e.hot.claimed(j.pid)
	if !ok {
		// The process exited after the events that queued this job (the
		// kernel reports EXIT last): there is nothing left to move. Under a
		// fork storm this is most jobs.
		e.stats.gone.Add(1)
		return true
	}
	out := e.classify(st, int(j.pid), j.why, tid, exact, j.ts)
	if out.handOff {
		// Nothing was moved; the worker reads the task again.
		e.hot.finished(j.pid, tid, false, true, 0)
		return false
	}
	retry := out.retry && int(j.attempt) < e.cfg.Retries
	if out.retry && !retry {
		e.stats.failed[FailedRetries].Add(1)
	}
	switch e.hot.finished(j.pid, tid, out.moved, retry, kernel.Now()) {
	case finishRetry:
		e.stats.retries.Add(1)
		next := job{pid: j.pid, why: j.why, attempt: j.attempt + 1, prio: true, ts: j.ts}
		e.retries.add(next, time.Now().Add(retryDelay(next.attempt)))
	case finishAgain:
		e.push(job{pid: j.pid, why: j.why, prio: j.prio})
	}
	return true
}

// followChildren classifies the current children of a task the start-up or
// repair scan just moved: children it listed before their parent and
// classified by their own ids stay, but ones forked since are still in the
// old cgroups. After a move by an event, children need no look-up: their
// FORK events, queued by the kernel after the event that made the parent
// hot, are followed by fork().
func (e *Engine) followChildren(pid int) {
	kids, err := e.cfg.Tasks.Children(pid)
	if err != nil {
		return
	}
	for _, k := range kids {
		e.stats.childrenFollowed.Add(1)
		e.enqueue(int32(k), reasonChild)
	}
}

type outcome struct {
	moved   bool // at least one move was made
	retry   bool // EINVAL: the task is still being set up
	handOff bool // inline run: the move is not cheap, nothing was done (see HandleBatch)
}

// classify reads a task's state, decides, and moves it. It is called from
// workers and from the scan; it logs its own errors.
//
// ts is the CLOCK_MONOTONIC time of the event that asked for it (0: none):
// a move it makes is observed in the latency histogram.
func (e *Engine) classify(st *workState, pid int, why reason, tid int32, exact bool, ts uint64) outcome {
	rs := e.rs.Load()
	if rs == nil || e.stickySkip(int32(pid)) {
		return outcome{}
	}
	// The ids first (status): most tasks an event names match no rule at
	// all, and for them nothing more is read (their cgroups, the procname
	// some rules need).
	t, err := e.cfg.Tasks.Task(pid)
	if err != nil {
		e.taskGone(pid, why, err)
		return outcome{}
	}
	if t.Kernel {
		e.stats.left[LeftOutOfScope].Add(1)
		return outcome{}
	}
	if tid != 0 && int(tid) != pid {
		if euid, egid, err := e.cfg.Tasks.ThreadCreds(pid, int(tid)); err == nil {
			t.EUID, t.EGID = euid, egid
		}
	}
	if !rs.list.MayMatch(t.EUID, t.EGID) {
		// Counted the same at every log level: nothing more is read, not
		// even for the debug line.
		e.stats.left[LeftNoRule].Add(1)
		if e.log.IsLevelEnabled(logrus.DebugLevel) {
			e.log.WithFields(logrus.Fields{"pid": pid, "uid": t.EUID, "gid": t.EGID, "why": why.String()}).Debug("no rule matches")
		}
		return outcome{}
	}
	lines, err := e.cfg.Tasks.Cgroups(pid)
	if err != nil {
		e.taskGone(pid, why, err)
		return outcome{}
	}
	if !e.scope.anyInScope(lines) {
		e.stats.left[LeftOutOfScope].Add(1)
		return outcome{}
	}
	if rs.list.NeedsProcess() {
		if t.Process, err = e.cfg.Tasks.ProcName(pid, t.Comm); err != nil {
			e.taskGone(pid, why, err)
			return outcome{}
		}
	}
	// In st, not on the stack: the matcher's interfaces make it escape.
	st.task = rules.Task{PID: pid, UID: t.EUID, GID: t.EGID, Process: t.Process}
	task := &st.task
	var d Decision
	// Whether the task is realtime matters only to an ignore_rt rule (and
	// to a failed move, below): read /proc/PID/stat only then.
	rt, rtKnown := false, false
	d, err = decide(rs.list, &e.scope, task, false, exact, lines, &st.dec)
	if err == nil && d.Rule != nil && d.Rule.IgnoreRT {
		rt, rtKnown = e.realTime(pid), true
		if rt {
			d, err = decide(rs.list, &e.scope, task, true, exact, lines, &st.dec)
		}
	}
	if err != nil {
		e.stats.errors.Add(1)
		e.log.WithFields(logrus.Fields{"pid": pid, "rule": ruleRef(d.Rule)}).Errorf("cannot expand destination: %v", err)
		return outcome{}
	}
	if d.Rule == nil {
		e.stats.left[LeftNoRule].Add(1)
		if e.log.IsLevelEnabled(logrus.DebugLevel) {
			e.log.WithFields(logrus.Fields{"pid": pid, "uid": t.EUID, "gid": t.EGID, "process": t.Process, "why": why.String()}).Debug("no rule matches")
		}
		return outcome{}
	}
	if d.Ignored || len(d.Moves) == 0 {
		rs.hits[d.Rule.Index].Add(1)
		if d.Ignored {
			e.stats.left[LeftIgnore].Add(1)
		} else {
			e.stats.left[LeftInPlace].Add(1)
		}
		if e.log.IsLevelEnabled(logrus.DebugLevel) {
			e.log.WithFields(logrus.Fields{"pid": pid, "rule": ruleRef(d.Rule), "ignored": d.Ignored, "why": why.String()}).Debug("task already in place")
		}
		return outcome{}
	}
	if st.inline {
		for i := range d.Moves {
			if !e.cfg.Mover.Cached(d.Moves[i].H, d.Moves[i].Path) {
				return outcome{handOff: true}
			}
		}
	}
	rs.hits[d.Rule.Index].Add(1)
	var out outcome
	// Moves first, log lines after: the log must not delay the next move.
	done := st.done[:0]
	defer func() {
		if !e.log.IsLevelEnabled(logrus.InfoLevel) {
			// The default level is errors only: no fields, no name look-up.
			done = done[:0]
		}
		for _, m := range done {
			e.log.WithFields(logrus.Fields{
				"pid": pid, "process": processName(t), "user": e.userName(rs, t.EUID),
				"rule": ruleRef(d.Rule), "controller": m.H.Name(), "dest": m.Path, "why": why.String(),
			}).Info("moved task")
		}
		st.done = done[:0]
	}()
moves:
	for _, m := range d.Moves {
		err := e.move(rs, pid, &m, d.Rule)
		switch {
		case err == nil:
			out.moved = true
			e.stats.moves.Add(1)
			done = append(done, m)
			// It exists: if it goes away again, say so at once.
			e.missing.Forget(destKey{m.H, m.Path})
			e.dests.add(m.H, m.Path)
		case errors.Is(err, unix.ESRCH):
			e.stats.gone.Add(1)
			e.stats.failed[FailedTaskGone].Add(1)
			break moves
		case errors.Is(err, unix.EINVAL):
			if !rtKnown {
				rt, rtKnown = e.realTime(pid), true
			}
			if !rt {
				out.retry = true
				break
			}
			// A realtime task cannot join a v1 cpu cgroup without an
			// rt_runtime_us budget; retrying would never succeed.
			e.stats.errors.Add(1)
			e.stats.failed[FailedOther].Add(1)
			if n, ok := e.moveErrs.Allow(moveKey{pid, destKey{m.H, m.Path}}, time.Now()); ok {
				e.log.WithFields(moveFields(pid, d.Rule, &m, n)).
					Errorf("cannot move realtime task (does the destination have cpu.rt_runtime_us?): %v", err)
			}
		default:
			e.stats.errors.Add(1)
			if outOfDescriptors(err) { // descriptors.go
				e.stats.failed[FailedOther].Add(1)
				e.lostForDescriptors(pid, err)
				break moves
			}
			if e.reportMissing(&m, err) {
				e.stats.failed[FailedCgroupMissing].Add(1)
				break
			}
			e.stats.failed[FailedOther].Add(1)
			// Each thread of a multi-threaded setuid reports the change
			// and may classify the process again: log its failure once.
			if n, ok := e.moveErrs.Allow(moveKey{pid, destKey{m.H, m.Path}}, time.Now()); ok {
				e.log.WithFields(moveFields(pid, d.Rule, &m, n)).Errorf("cannot move task: %v", err)
			}
		}
	}
	if out.moved {
		e.stats.moved[why.moveReason()].Add(1)
		if ts != 0 && (why == reasonCreds || why == reasonExec) {
			// From the kernel's stamp on the event to the end of the
			// task's last write (a retried move counts its wait).
			e.latency.observe(time.Duration(kernel.Now() - ts))
		}
	}
	return out
}

// RuleHit is how many classifications a rule decided since it was loaded.
type RuleHit struct {
	Rule *rules.Rule
	Hits uint64
}

// RuleHits returns the hits of every rule in force, in file order.
func (e *Engine) RuleHits() []RuleHit {
	rs := e.rs.Load()
	if rs == nil {
		return nil
	}
	rules := rs.list.Rules()
	out := make([]RuleHit, len(rules))
	for i, r := range rules {
		out[i] = RuleHit{Rule: r, Hits: rs.hits[r.Index].Load()}
	}
	return out
}

// move writes pid into m.Path, creating the destination when the rule's
// destination is a template.
func (e *Engine) move(rs *ruleset, pid int, m *Move, r *rules.Rule) error {
	err := e.cfg.Mover.Move(m.H, m.Path, pid)
	if err == nil || !isNotExist(err) {
		return err
	}
	e.cfg.Mover.Forget(m.H, m.Path)
	if !m.Templated {
		return err
	}
	ctrls := e.createControllers(m)
	if cerr := e.cfg.Mover.Create(m.H, m.Path, ctrls); cerr != nil {
		// The directory may exist even if enabling a controller failed.
		e.log.WithFields(logrus.Fields{"rule": ruleRef(r), "dest": m.Path}).Warnf("creating destination: %v", cerr)
	} else {
		e.stats.created.Add(1)
	}
	return e.cfg.Mover.Move(m.H, m.Path, pid)
}

// createControllers are the controllers to enable for a new v2 destination:
// those of the rule's names that resolve to this hierarchy (on a hybrid
// machine "cpu" is a v1 controller and must not be enabled in cgroup2).
func (e *Engine) createControllers(m *Move) []string {
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
		for _, h := range e.scope.layout.Resolve(c) {
			if h == m.H {
				out = append(out, c)
				break
			}
		}
	}
	return out
}

// realTime reports whether pid runs under SCHED_FIFO or SCHED_RR; a task
// whose policy cannot be read counts as not realtime.
func (e *Engine) realTime(pid int) bool {
	rt, err := e.cfg.Tasks.RealTime(pid)
	return err == nil && rt
}

func isNotExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOENT)
}

// moveFields are the fields of a failed move's log line; suppressed is the
// number of failures not logged since the last line for the same key.
func moveFields(pid int, r *rules.Rule, m *Move, suppressed int) logrus.Fields {
	f := logrus.Fields{"pid": pid, "rule": ruleRef(r), "controller": m.Controller, "dest": m.Path}
	if suppressed > 0 {
		f[ratelimit.NotLogged] = suppressed
	}
	return f
}

// reportMissing logs a missing destination: when first seen, again at most
// once per reportInterval while it stays missing (with the number of moves
// that failed meanwhile), and at once after it was seen to exist or the
// rules were reloaded. It returns false when err is another kind of error.
func (e *Engine) reportMissing(m *Move, err error) bool {
	if !isNotExist(err) {
		return false
	}
	n, ok := e.missing.Allow(destKey{m.H, m.Path}, time.Now())
	if !ok {
		return true
	}
	f := logrus.Fields{"controller": m.Controller, "dest": m.Path, "rule": targetRef(m.Target)}
	if n > 0 {
		f[ratelimit.NotLogged] = n
	}
	why := "not a template, so it is not created"
	if m.Templated {
		why = "creating it failed"
	}
	e.log.WithFields(f).Errorf("destination cgroup does not exist (%s; repeated at most once a minute while it lasts): %v", why, err)
	return true
}

func (e *Engine) taskGone(pid int, why reason, err error) {
	if outOfDescriptors(err) { // descriptors.go
		e.stats.errors.Add(1)
		e.lostForDescriptors(pid, err)
		return
	}
	if errors.Is(err, unix.ESRCH) || isNotExist(err) {
		e.stats.gone.Add(1)
		return
	}
	if errors.Is(err, unix.EACCES) && (why == reasonScan || why == reasonRepair) {
		return
	}
	e.stats.errors.Add(1)
	e.log.WithField("pid", pid).Debugf("reading task: %v", err)
}

func (e *Engine) userName(rs *ruleset, uid uint32) string {
	if rs.names != nil {
		if u, err := rs.names.UserByID(uid); err == nil {
			return u.Name
		}
	}
	return fmt.Sprint(uid)
}

func processName(t proc.Task) string {
	if t.Process != "" {
		return t.Process
	}
	return t.Comm
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

// RequestRescan asks for a full /proc reconciliation. Requests made while one
// is pending coalesce; a request made during a rescan causes one more. The
// rescan reads every task after the request was made, so a request made
// when the loss is over (for the kernel: at the EventOverflow marker, which
// kernel.Conn delivers once the queue is drained) covers every lost event.
func (e *Engine) RequestRescan() {
	select {
	case e.rescan <- struct{}{}:
	default:
	}
}

func (e *Engine) rescanLoop() {
	defer e.wg.Done()
	var st workState
	for {
		select {
		case <-e.stop:
			return
		case <-e.rescan:
			start := time.Now()
			n, moved := e.scan(&st, reasonRepair)
			e.stats.rescans.Add(1)
			e.log.WithFields(logrus.Fields{"tasks": n, "moved": moved, "took": time.Since(start).Round(time.Microsecond)}).Info("rescan done")
		}
	}
}

// Scan classifies every task on the machine, synchronously (start-up).
func (e *Engine) Scan() (tasks, moved int) {
	var st workState
	return e.scan(&st, reasonScan)
}

// scan classifies every task; why is reasonScan or reasonRepair.
func (e *Engine) scan(st *workState, why reason) (tasks, moved int) {
	e.pruneMarks()
	pids, err := e.cfg.Tasks.PIDs()
	if err != nil {
		e.stats.errors.Add(1)
		if outOfDescriptors(err) { // descriptors.go
			e.lostForDescriptors(0, err)
			return 0, 0
		}
		e.log.Errorf("rescan: %v", err)
		return 0, 0
	}
	for _, pid := range pids {
		select {
		case <-e.stop:
			return tasks, moved
		default:
		}
		p := int32(pid)
		// Mark the task hot while it is classified so that forks racing
		// with its move are followed; skip it if a worker owns it (see
		// hotTable.scanClaimed).
		exact, ok := e.hot.scanClaimed(p)
		if !ok {
			continue
		}
		tasks++
		out := e.classify(st, pid, why, 0, exact, 0)
		switch e.hot.scanFinished(p, out.moved, out.retry, kernel.Now()) {
		case finishAgain:
			e.push(job{pid: p, why: reasonCreds})
		case finishRetry:
			e.stats.retries.Add(1)
			e.retries.add(job{pid: p, why: why, attempt: 1, prio: true}, time.Now().Add(retryDelay(1)))
		}
		if out.moved {
			moved++
			e.followChildren(pid)
		}
	}
	e.stats.scanned.Add(uint64(tasks))
	return tasks, moved
}

// sweeper expires hot entries whose window has passed.
func (e *Engine) sweeper() {
	defer e.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
			if e.hot.expired(kernel.Now(), uint64(e.cfg.HotWindow)) {
				// The table was rebuilt after a burst: hand the memory back.
				debug.FreeOSMemory()
			}
		}
	}
}

// HotLen is the size of the hot table (for tests and stats).
func (e *Engine) HotLen() int {
	return e.hot.len()
}

// String renders stats as key=value pairs for logs.
func (s Stats) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "events=%d creds=%d execs=%d forks_followed=%d children_followed=%d coalesced=%d overflows=%d queue_full=%d rescans=%d scanned=%d moves=%d created=%d retries=%d gone=%d errors=%d inline=%d",
		s.Events, s.Creds, s.Execs, s.ForksFollowed, s.ChildrenFollowed, s.Coalesced, s.Overflows, s.QueueFull, s.Rescans, s.Scanned, s.Moves, s.Created, s.Retries, s.Gone, s.Errors, s.Inline)
	fmt.Fprintf(&b, " sticky_marks=%d sticky_added=%d sticky_refused=%d sticky_skipped=%d sticky_full=%d",
		s.StickyMarks, s.StickyAdded, s.StickyRefused, s.StickySkipped, s.StickyFull)
	return b.String()
}
