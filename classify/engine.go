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

	"github.com/cgrulesengd/cgrulesengd/cgroupfs"
	"github.com/cgrulesengd/cgrulesengd/kernel"
	"github.com/cgrulesengd/cgrulesengd/proc"
	"github.com/cgrulesengd/cgrulesengd/rules"
)

// Mover is what the engine needs from cgroupfs.Mover; tests supply a fake.
type Mover interface {
	Move(h *cgroupfs.Hierarchy, path string, pid int) error
	Create(h *cgroupfs.Hierarchy, path string, controllers []string) error
	Forget(h *cgroupfs.Hierarchy, path string)
}

// Tasks is what the engine reads about tasks; proc.FS in production.
type Tasks interface {
	Task(pid int, withProcess bool) (proc.Task, error)
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
	QueueSize int           // pending classifications; default 8192
	HotWindow time.Duration // how long a moved task's late FORK events are honoured; default 5 s
	ForkSlack time.Duration // fork timestamps this much after a move still count as before it; default 20 ms
	MaxHot    int           // bound on the hot table; default 65536
	Retries   int           // EINVAL retries; default 5
	MaxMarks  int           // bound on the sticky marks (see marks.go); default 65536
}

// reason says why a task is being classified (for logs and counters).
type reason uint8

const (
	reasonCreds reason = iota
	reasonExec
	reasonFork
	reasonChild
	reasonScan
	reasonRetry
)

func (r reason) String() string {
	return [...]string{"credentials", "exec", "fork", "child", "scan", "retry"}[r]
}

type job struct {
	pid     int32
	why     reason
	attempt uint8
}

// hot table states
const (
	stQueued uint8 = iota + 1
	stRunning
	stDone
)

type hotEntry struct {
	state  uint8
	again  bool   // a new event arrived while running: classify once more
	exited bool   // EXIT seen while queued/running: drop on completion
	doneAt uint64 // CLOCK_MONOTONIC ns when the classification finished
	tid    int32  // thread (not the main one) that reported the latest UID/GID change
	moved  bool   // the daemon moved this task while it was hot
}

// A multi-threaded setuid (glibc, Go, Java) changes the threads one at a
// time and the kernel reports each; until the last one, /proc/PID/status
// (the main thread) may still show the old ids. The thread that reported
// the change has the new ones, so its status is read instead. (Taking the
// ids from the event itself is wrong when the reader lags behind: by the
// time it runs, the pid may belong to another process.)

type ruleset struct {
	list  *rules.List
	names rules.Resolver
}

// Engine classifies tasks. Create it with New, give it rules with SetRules,
// then Start it.
type Engine struct {
	cfg   Config
	scope scope
	log   *logrus.Logger

	rs atomic.Pointer[ruleset]

	jobs   chan job
	stop   chan struct{}
	wg     sync.WaitGroup
	rescan chan struct{} // capacity 1: requests coalesce

	mu  sync.Mutex
	hot map[int32]hotEntry

	// Owned by the goroutine calling Handle/HandleBatch.
	inBatch bool
	pending []job

	missing  *reportLimiter[destKey] // destinations reported missing
	moveErrs *reportLimiter[moveKey] // failed moves reported, per process and destination

	overflowLog rateLimiter
	stats       counters

	marks     *marks // sticky processes (marks.go, sticky.go)
	stickyLog rateLimiter
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
		cfg:      cfg,
		scope:    scope{layout: cfg.Layout, root: root},
		log:      cfg.Log,
		jobs:     make(chan job, cfg.QueueSize),
		stop:     make(chan struct{}),
		rescan:   make(chan struct{}, 1),
		hot:      make(map[int32]hotEntry),
		marks:    newMarks(cfg.MaxMarks),
		missing:  newReportLimiter[destKey](reportInterval, maxReports),
		moveErrs: newReportLimiter[moveKey](reportInterval, maxReports),
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
	e.rs.Store(&ruleset{list: l, names: names})
	// New rules, new reports: what is still wrong is said again.
	e.missing.reset()
	e.moveErrs.reset()
}

// Start launches the workers, the rescan loop and the hot-table sweeper.
func (e *Engine) Start() {
	for i := 0; i < e.cfg.Workers; i++ {
		e.wg.Add(1)
		go e.worker()
	}
	e.wg.Add(2)
	go e.rescanLoop()
	go e.sweeper()
}

// Stop ends the goroutines started by Start and waits for them. Handle must
// not be called afterwards.
func (e *Engine) Stop() {
	close(e.stop)
	e.wg.Wait()
}

// Handle takes one event from the netlink reader. It never blocks.
func (e *Engine) Handle(ev *kernel.Event) {
	e.stats.events.Add(1)
	e.handle(ev)
}

func (e *Engine) handle(ev *kernel.Event) {
	switch ev.What {
	case kernel.EventUID, kernel.EventGID:
		e.stats.creds.Add(1)
		if e.stickySkip(ev.TGID) {
			return
		}
		e.enqueueTID(ev.TGID, reasonCreds, ev.PID, e.inBatch)
	case kernel.EventExec:
		if rs := e.rs.Load(); rs != nil && rs.list.NeedsProcess() {
			if e.stickySkip(ev.TGID) {
				return
			}
			e.stats.execs.Add(1)
			e.enqueueTID(ev.TGID, reasonExec, ev.TGID, e.inBatch)
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
		if n, ok := e.overflowLog.allow(time.Now()); ok {
			e.log.WithField("dropped_reports", n).Warn("netlink receive buffer overflowed: kernel events were lost, rescanning /proc")
		}
		e.RequestRescan()
	}
}

// enqueue marks pid hot and queues its classification, coalescing with a
// queued one (a multi-threaded setuid reports once per thread).
func (e *Engine) enqueue(pid int32, why reason) {
	e.enqueueTID(pid, why, pid, false)
}

// enqueueTID is enqueue for an event reported by thread tid of pid. batch
// is true only on the reader goroutine inside HandleBatch: the job then
// waits in e.pending for the end of the batch. (Workers and the scan also
// enqueue, concurrently; they must never touch e.pending.)
func (e *Engine) enqueueTID(pid int32, why reason, tid int32, batch bool) {
	if pid <= 0 {
		return
	}
	e.mu.Lock()
	h, ok := e.hot[pid]
	if ok && h.exited {
		// The pid was reused after its process exited (the kernel reported
		// that EXIT before this event): nothing of the old entry applies
		// to the new process.
		h = hotEntry{state: h.state}
		if h.state == stRunning {
			h.again = true
		}
	}
	if tid != pid && tid > 0 {
		h.tid = tid
	}
	if ok {
		switch h.state {
		case stQueued:
			e.hot[pid] = h
			e.mu.Unlock()
			e.stats.coalesced.Add(1)
			return
		case stRunning:
			h.again = true
			e.hot[pid] = h
			e.mu.Unlock()
			return
		}
	}
	if !ok && len(e.hot) >= e.cfg.MaxHot {
		e.mu.Unlock()
		e.queueFull()
		return
	}
	h.state, h.again, h.exited = stQueued, false, false
	e.hot[pid] = h
	e.mu.Unlock()
	j := job{pid: pid, why: why}
	if batch {
		e.pending = append(e.pending, j)
		return
	}
	e.push(j)
}

// HandleBatch is Handle for every event of one read. Classifications are
// queued at the end of the batch, and not at all for a process whose EXIT
// is in the same batch: under a fork storm most credential changes belong
// to tasks that are already gone, and waking a worker for each cost more
// than the events themselves. Same contract as Handle.
func (e *Engine) HandleBatch(evs []kernel.Event) {
	e.stats.events.Add(uint64(len(evs)))
	e.inBatch = true
	for i := range evs {
		e.handle(&evs[i])
	}
	e.inBatch = false
	pushed := false
	for _, j := range e.pending {
		e.mu.Lock()
		if h, ok := e.hot[j.pid]; ok && h.exited && h.state == stQueued {
			delete(e.hot, j.pid)
			e.mu.Unlock()
			e.stats.gone.Add(1)
			continue
		}
		e.mu.Unlock()
		e.push(j)
		pushed = true
	}
	e.pending = e.pending[:0]
	if pushed {
		// Let the worker run now on this thread rather than wait for
		// another one to be woken (tens of µs on a virtual machine): the
		// reader loses nothing, the kernel keeps queueing its events.
		runtime.Gosched()
	}
}

// push queues a job whose hot entry is already stQueued.
func (e *Engine) push(j job) {
	select {
	case e.jobs <- j:
	default:
		// A full queue loses this event just like a kernel overflow would:
		// forget the entry (nothing will run for it) and rescan.
		e.mu.Lock()
		delete(e.hot, j.pid)
		e.mu.Unlock()
		e.queueFull()
	}
}

func (e *Engine) queueFull() {
	e.stats.queueFull.Add(1)
	if n, ok := e.overflowLog.allow(time.Now()); ok {
		e.log.WithField("dropped_reports", n).Warn("classification queue full: events were dropped, rescanning /proc")
	}
	e.RequestRescan()
}

func (e *Engine) fork(ev *kernel.Event) {
	if e.stickyFork(ev) {
		return
	}
	e.mu.Lock()
	h, ok := e.hot[ev.ParentTGID]
	e.mu.Unlock()
	if !ok {
		return
	}
	follow := false
	switch h.state {
	case stQueued, stRunning:
		follow = true
	case stDone:
		follow = h.doneAt != 0 && ev.Timestamp < h.doneAt+uint64(e.cfg.ForkSlack)
	}
	if follow {
		e.stats.forksFollowed.Add(1)
		e.enqueueTID(ev.TGID, reasonFork, ev.TGID, e.inBatch)
	}
}

// exit drops a finished process from the hot table. Its FORK events were
// queued by the kernel before its EXIT, so they have been handled already.
func (e *Engine) exit(pid int32) {
	e.stickyExit(pid)
	e.mu.Lock()
	if h, ok := e.hot[pid]; ok {
		if h.state == stDone {
			delete(e.hot, pid)
		} else {
			h.exited = true
			e.hot[pid] = h
		}
	}
	e.mu.Unlock()
}

func (e *Engine) worker() {
	defer e.wg.Done()
	var st workState
	for {
		select {
		case <-e.stop:
			return
		case j := <-e.jobs:
			e.run(&st, j)
		}
	}
}

// workState is per-goroutine scratch space.
type workState struct {
	res  []rules.Resolved
	done []Move
}

func (e *Engine) run(st *workState, j job) {
	e.mu.Lock()
	h := e.hot[j.pid]
	if h.exited {
		// The process exited after the events that queued this job (the
		// kernel reports EXIT last): there is nothing left to move. Under a
		// fork storm this is most jobs.
		delete(e.hot, j.pid)
		e.mu.Unlock()
		e.stats.gone.Add(1)
		return
	}
	h.state = stRunning
	// The thread is consumed by this run: later events name their own (and
	// set again).
	tid, exact := h.tid, h.moved
	h.tid = 0
	e.hot[j.pid] = h
	e.mu.Unlock()

	out := e.classify(st, int(j.pid), j.why, tid, exact)

	e.mu.Lock()
	h = e.hot[j.pid]
	h.moved = h.moved || out.moved
	requeue := false
	switch {
	case out.retry && int(j.attempt) < e.cfg.Retries:
		// Still being created: stay hot (queued) so its forks are followed.
		h.state = stQueued
		h.again = false
		if h.tid == 0 {
			h.tid = tid
		}
	case h.again && !h.exited:
		h.state = stQueued
		h.again = false
		requeue = true
	default:
		h.state = stDone
		h.doneAt = kernel.Now()
	}
	if h.state == stDone && h.exited {
		delete(e.hot, j.pid)
	} else {
		e.hot[j.pid] = h
	}
	e.mu.Unlock()

	switch {
	case out.retry && int(j.attempt) < e.cfg.Retries:
		e.stats.retries.Add(1)
		next := job{pid: j.pid, why: reasonRetry, attempt: j.attempt + 1}
		time.AfterFunc(time.Duration(next.attempt)*10*time.Millisecond, func() {
			select {
			case <-e.stop:
			default:
				e.push(next)
			}
		})
	case requeue:
		e.push(job{pid: j.pid, why: j.why})
	}
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
	moved bool // at least one move was made
	retry bool // EINVAL: the task is still being set up
}

// classify reads a task's state, decides, and moves it. It is called from
// workers and from the scan; it logs its own errors.
func (e *Engine) classify(st *workState, pid int, why reason, tid int32, exact bool) outcome {
	rs := e.rs.Load()
	if rs == nil || e.stickySkip(int32(pid)) {
		return outcome{}
	}
	lines, err := e.cfg.Tasks.Cgroups(pid)
	if err != nil {
		e.taskGone(pid, why, err)
		return outcome{}
	}
	if !e.scope.anyInScope(lines) {
		return outcome{}
	}
	t, err := e.cfg.Tasks.Task(pid, rs.list.NeedsProcess())
	if err != nil {
		e.taskGone(pid, why, err)
		return outcome{}
	}
	if t.Kernel {
		return outcome{}
	}
	if tid != 0 && int(tid) != pid {
		if euid, egid, err := e.cfg.Tasks.ThreadCreds(pid, int(tid)); err == nil {
			t.EUID, t.EGID = euid, egid
		}
	}
	task := rules.Task{PID: pid, UID: t.EUID, GID: t.EGID, Process: t.Process}
	var d Decision
	// Whether the task is realtime matters only to an ignore_rt rule (and
	// to a failed move, below): read /proc/PID/stat only then.
	rt, rtKnown := false, false
	d, st.res, err = decide(rs.list, &e.scope, &task, false, exact, lines, st.res)
	if err == nil && d.Rule != nil && d.Rule.IgnoreRT {
		rt, rtKnown = e.realTime(pid), true
		if rt {
			d, st.res, err = decide(rs.list, &e.scope, &task, true, exact, lines, st.res)
		}
	}
	if err != nil {
		e.stats.errors.Add(1)
		e.log.WithFields(logrus.Fields{"pid": pid, "rule": ruleRef(d.Rule)}).Errorf("cannot expand destination: %v", err)
		return outcome{}
	}
	if d.Rule == nil {
		if e.log.IsLevelEnabled(logrus.DebugLevel) {
			e.log.WithFields(logrus.Fields{"pid": pid, "uid": t.EUID, "gid": t.EGID, "process": t.Process, "why": why.String()}).Debug("no rule matches")
		}
		return outcome{}
	}
	if d.Ignored || len(d.Moves) == 0 {
		if e.log.IsLevelEnabled(logrus.DebugLevel) {
			e.log.WithFields(logrus.Fields{"pid": pid, "rule": ruleRef(d.Rule), "ignored": d.Ignored, "why": why.String()}).Debug("task already in place")
		}
		return outcome{}
	}
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
	for _, m := range d.Moves {
		err := e.move(rs, pid, &m, d.Rule)
		switch {
		case err == nil:
			out.moved = true
			e.stats.moves.Add(1)
			done = append(done, m)
			// It exists: if it goes away again, say so at once.
			e.missing.forget(destKey{m.H, m.Path})
		case errors.Is(err, unix.ESRCH):
			e.stats.gone.Add(1)
			return out
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
			if n, ok := e.moveErrs.allow(moveKey{pid, destKey{m.H, m.Path}}, time.Now()); ok {
				e.log.WithFields(moveFields(pid, d.Rule, &m, n)).
					Errorf("cannot move realtime task (does the destination have cpu.rt_runtime_us?): %v", err)
			}
		default:
			e.stats.errors.Add(1)
			if e.reportMissing(&m, err) {
				break
			}
			// Each thread of a multi-threaded setuid reports the change
			// and may classify the process again: log its failure once.
			if n, ok := e.moveErrs.allow(moveKey{pid, destKey{m.H, m.Path}}, time.Now()); ok {
				e.log.WithFields(moveFields(pid, d.Rule, &m, n)).Errorf("cannot move task: %v", err)
			}
		}
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
		f["not_logged"] = suppressed
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
	n, ok := e.missing.allow(destKey{m.H, m.Path}, time.Now())
	if !ok {
		return true
	}
	f := logrus.Fields{"controller": m.Controller, "dest": m.Path, "rule": targetRef(m.Target)}
	if n > 0 {
		f["not_logged"] = n
	}
	why := "not a template, so it is not created"
	if m.Templated {
		why = "creating it failed"
	}
	e.log.WithFields(f).Errorf("destination cgroup does not exist (%s; repeated at most once a minute while it lasts): %v", why, err)
	return true
}

func (e *Engine) taskGone(pid int, why reason, err error) {
	if errors.Is(err, unix.ESRCH) || isNotExist(err) {
		e.stats.gone.Add(1)
		return
	}
	if errors.Is(err, unix.EACCES) && why == reasonScan {
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
			n, moved := e.scan(&st)
			e.stats.rescans.Add(1)
			e.log.WithFields(logrus.Fields{"tasks": n, "moved": moved, "took": time.Since(start).Round(time.Microsecond)}).Info("rescan done")
		}
	}
}

// Scan classifies every task on the machine, synchronously (start-up).
func (e *Engine) Scan() (tasks, moved int) {
	var st workState
	return e.scan(&st)
}

func (e *Engine) scan(st *workState) (tasks, moved int) {
	e.pruneMarks()
	pids, err := e.cfg.Tasks.PIDs()
	if err != nil {
		e.stats.errors.Add(1)
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
		// with its move are followed; skip it if a worker owns it. A
		// queued job reads the task when it runs, after this moment; a
		// running one may have read it before the events this scan stands
		// in for were lost, so it must run once more.
		e.mu.Lock()
		h, busy := e.hot[p]
		if busy && h.state != stDone {
			if h.state == stRunning && !h.again {
				h.again = true
				e.hot[p] = h
			}
			e.mu.Unlock()
			continue
		}
		h.state = stRunning
		h.tid = 0
		e.hot[p] = h
		e.mu.Unlock()

		tasks++
		out := e.classify(st, pid, reasonScan, 0, h.moved)

		e.mu.Lock()
		h = e.hot[p]
		if h.again && !h.exited {
			h.state, h.again = stQueued, false
			e.hot[p] = h
			e.mu.Unlock()
			e.push(job{pid: p, why: reasonCreds})
		} else {
			if out.moved || out.retry || h.again {
				e.hot[p] = hotEntry{state: stDone, doneAt: kernel.Now(), moved: h.moved || out.moved}
			} else {
				// Nothing happened: keep the table small.
				delete(e.hot, p)
			}
			e.mu.Unlock()
		}
		if out.moved {
			moved++
			e.followChildren(pid)
		}
		if out.retry {
			e.enqueue(p, reasonRetry)
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
	peak := 0
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
			now := kernel.Now()
			win := uint64(e.cfg.HotWindow)
			e.mu.Lock()
			for pid, h := range e.hot {
				if h.state == stDone && now-h.doneAt > win {
					delete(e.hot, pid)
				}
			}
			if n := len(e.hot); n > peak {
				peak = n
			}
			// Go maps never shrink: after a burst has passed, rebuild the
			// table and hand the memory back to the system.
			shrunk := false
			if peak >= 1024 && len(e.hot) <= peak/8 {
				fresh := make(map[int32]hotEntry, len(e.hot))
				for pid, h := range e.hot {
					fresh[pid] = h
				}
				e.hot, peak, shrunk = fresh, len(fresh), true
			}
			e.mu.Unlock()
			if shrunk {
				debug.FreeOSMemory()
			}
		}
	}
}

// HotLen is the size of the hot table (for tests and stats).
func (e *Engine) HotLen() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.hot)
}

// rateLimiter lets one report through per interval and counts the rest.
type rateLimiter struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (r *rateLimiter) allow(now time.Time) (suppressed int, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Sub(r.last) < time.Second {
		r.suppressed++
		return 0, false
	}
	n := r.suppressed
	r.last, r.suppressed = now, 0
	return n, true
}

// String renders stats as key=value pairs for logs.
func (s Stats) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "events=%d creds=%d execs=%d forks_followed=%d children_followed=%d coalesced=%d overflows=%d queue_full=%d rescans=%d scanned=%d moves=%d created=%d retries=%d gone=%d errors=%d",
		s.Events, s.Creds, s.Execs, s.ForksFollowed, s.ChildrenFollowed, s.Coalesced, s.Overflows, s.QueueFull, s.Rescans, s.Scanned, s.Moves, s.Created, s.Retries, s.Gone, s.Errors)
	fmt.Fprintf(&b, " sticky_marks=%d sticky_added=%d sticky_refused=%d sticky_skipped=%d sticky_full=%d",
		s.StickyMarks, s.StickyAdded, s.StickyRefused, s.StickySkipped, s.StickyFull)
	return b.String()
}
