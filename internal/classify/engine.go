package classify

import (
	"path"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cgrulesengd/cgrulesengd/internal/cgroupfs"
	"github.com/cgrulesengd/cgrulesengd/internal/kernel"
	"github.com/cgrulesengd/cgrulesengd/internal/proc"
	"github.com/cgrulesengd/cgrulesengd/internal/ratelimit"
	"github.com/cgrulesengd/cgrulesengd/rules"
)

// Mover is what the engine's cgroupfs writes need from cgroupfs.Mover;
// tests supply a fake.
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

	// Appliers carry out the decisions they take (Applier.Takes), asked in
	// order; the engine's own cgroup.procs writes (Mover) take the rest.
	Appliers []Applier
	// SliceRoot is where the service manager's tree is in the cgroup2
	// hierarchy ("/" on a systemd machine; a container manager's cgroup):
	// a slice destination (rules.Resolved.Slice) is below it. "" when slice
	// destinations are not placed (no rule may have one then).
	SliceRoot string

	// Release is called after the engine dropped a large table (the hot
	// table after a burst), so that the daemon can hand the memory back to
	// the system (debug.FreeOSMemory); nil: nothing is done.
	Release func()

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
	reasonScan       // the start-up scan
	reasonRepair     // a rescan after lost events
	reasonReload     // classified by rules a reload replaced while they were new (recent.go)
	reasonReclassify // every task, asked for (Reclassify)
)

func (r reason) String() string {
	return [...]string{"credentials", "exec", "fork", "child", "scan", "rescan", "reload", "reclassify"}[r]
}

// scanning reports whether a job made for why looks at tasks no event
// named (a scan), which it may not be allowed to read.
func (r reason) scanning() bool {
	return r == reasonScan || r == reasonRepair || r == reasonReclassify
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
	case reasonReload:
		return MovedReload
	case reasonReclassify:
		return MovedReclassify
	}
	return MovedCredentials
}

// timed reports whether a move made for why is observed in the latency
// histogram: from an event the kernel stamped when the task changed.
func (r reason) timed() bool { return r == reasonCreds || r == reasonExec }

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
	marks   *Marks        // sticky processes (marks.go, sticky.go)

	// What a reload means for running tasks (issue 19): the tasks
	// classified while the rules are new (recent.go), checked again when a
	// reload replaces them, and reclassifications (Reclassify), both run
	// by the rescan loop.
	recent     *recentTasks
	recheckMu  sync.Mutex
	rechecks   []int32
	recheck    chan struct{} // capacity 1: rechecks wait
	reclassify chan chan Reclassified
	started    atomic.Bool // Start was called (Reclassify needs the rescan loop)

	appliers  []Applier       // Config.Appliers, then the cgroupfs writes
	done      completions     // how asynchronous appliers report back
	raw       cgroupfsApplier // the engine's own cgroup.procs writes
	filterMu  sync.Mutex
	filter    *filterLink // once Run found a Filter (under filterMu)
	filterLog ratelimit.Limiter

	// Owned by the goroutine calling Handle/HandleBatch (the reader).
	inBatch bool
	pending []job
	inline  workState // the reader's, for the moves it makes itself

	// Recurring reports (reports.go): keyed by what the rules name, never
	// by what a user chooses (a pid, a process name a template expands).
	missing    ratelimit.Keyed[destKey]     // destinations reported missing
	moveErrs   ratelimit.Keyed[destKey]     // failed moves
	createErrs ratelimit.Keyed[destKey]     // template destinations not created
	expandErrs ratelimit.Keyed[*rules.Rule] // destinations not expanded, per rule

	overflowLog ratelimit.Limiter // one report a second

	fdLog    ratelimit.Limiter // descriptors.go
	fdRepair spacedRequest
	stats    counters
	latency  latencyHist // dests.go, latency.go: for the metrics
	dests    destSet
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
	e := &Engine{
		cfg:     cfg,
		scope:   scope{layout: cfg.Layout, root: root, sliceRoot: cfg.SliceRoot},
		log:     cfg.Log,
		jobs:    make(chan job, cfg.QueueSize),
		fast:    make(chan job, cfg.QueueSize),
		stop:    make(chan struct{}),
		rescan:  make(chan struct{}, 1),
		hot:     newHotTable(cfg.MaxHot),
		retries: newRetryQueue(),

		recent:     newRecentTasks(maxRecent, settleWindow),
		recheck:    make(chan struct{}, 1),
		reclassify: make(chan chan Reclassified),

		missing:    ratelimit.Keyed[destKey]{Window: reportInterval, Max: maxReports},
		moveErrs:   ratelimit.Keyed[destKey]{Window: reportInterval, Max: maxReports},
		createErrs: ratelimit.Keyed[destKey]{Window: reportInterval, Max: maxReports},
		expandErrs: ratelimit.Keyed[*rules.Rule]{Window: reportInterval, Max: maxReports},
	}
	e.recent.closed = e.settleFilter
	e.marks = newMarks(cfg.MaxMarks, cfg.Log, &e.stats)
	e.done.e = e
	e.raw.e = e
	e.appliers = append(append(e.appliers, cfg.Appliers...), &e.raw)
	return e
}

// A problem that lasts (a missing destination, a task that cannot be
// moved, a destination that cannot be expanded) is logged when first seen,
// then at most once per reportInterval per rule target and hierarchy (see
// reportKey), with a count of the occurrences in between; every
// occurrence is counted in Stats.Errors.
const (
	reportInterval = time.Minute
	maxReports     = 4096
)

type destKey struct {
	h    *cgroupfs.Hierarchy
	path string
}

// SetRules puts a new rule list in force. names resolves ids for log lines
// and templates; it should be the resolver the list was loaded with.
func (e *Engine) SetRules(l *rules.List, names rules.Resolver) {
	e.filterMu.Lock()
	e.rs.Store(newRuleset(l, names))
	reload := e.started.Load()
	if e.filter != nil {
		n := l.Names()
		// While the new rules are new, the source reports every
		// credential change, as the proc connector does: a task that
		// changes to ids only the next rules name (the rules file was
		// seen half-written) must be among the recent tasks that
		// recheckRecent hands to those rules. settleFilter narrows it.
		n.Any = n.Any || reload
		e.filter.check(e.filter.f.SetFilter(n))
	}
	// A reload (rules set after Start): the tasks the rules it replaces
	// classified while they were new (a rules file seen half-written,
	// say) go by these ones, and these are new in turn (recent.go).
	// Under filterMu, so that settleFilter sees the window open.
	if reload {
		e.recheckRecent()
	}
	e.filterMu.Unlock()
	// New rules, new reports: what is still wrong is said again.
	e.missing.Reset()
	e.moveErrs.Reset()
	e.createErrs.Reset()
	e.expandErrs.Reset()
}

// settleFilter narrows the filter to the rules in force once they are
// settled (the window recent.go keeps after a reload closed).
func (e *Engine) settleFilter() {
	e.filterMu.Lock()
	defer e.filterMu.Unlock()
	if e.filter == nil || e.recent.open.Load() {
		return
	}
	if rs := e.rs.Load(); rs != nil {
		e.filter.check(e.filter.f.SetFilter(rs.list.Names()))
	}
}

// attach makes f the engine's filter (see Filter) and tells it the rules,
// the hot processes and the marks held now.
func (e *Engine) attach(f Filter) {
	l := &filterLink{f: f, failed: e.filterFailed}
	e.filterMu.Lock()
	e.filter = l
	if rs := e.rs.Load(); rs != nil {
		n := rs.list.Names()
		n.Any = n.Any || e.recent.open.Load()
		l.check(f.SetFilter(n))
	}
	e.filterMu.Unlock()
	e.hot.attach(l)
	e.marks.t.attach(l)
}

// filterFailed counts an update the filter refused: the events it would
// have let through may be lost, so a rescan repairs it, as after an
// overflow. It may be called under a table's lock: it does not block.
func (e *Engine) filterFailed(err error) {
	e.stats.FilterErrors.Add(1)
	if n, ok := e.filterLog.Allow(time.Now()); ok {
		e.log.WithField(ratelimit.NotLogged, n).Warnf("the event source's filter refused an update (events may be lost, rescanning /proc): %v", err)
	}
	e.RequestRescan()
}

// Marks are the sticky marks, for the sticky socket's server.
func (e *Engine) Marks() *Marks { return e.marks }

// Start launches the workers, the rescan loop, the retry queue and the
// hot-table sweeper.
func (e *Engine) Start() {
	e.started.Store(true)
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
	e.recent.stop()
}

// sweeper expires hot entries whose window has passed: once a second from
// the time an entry is done until the table is empty, and not at all while
// it is, so that an idle daemon does not wake up.
func (e *Engine) sweeper() {
	defer e.wg.Done()
	t := time.NewTimer(time.Second)
	t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-e.hot.done:
		}
		for !e.hot.empty() {
			t.Reset(time.Second)
			select {
			case <-e.stop:
				t.Stop()
				return
			case <-t.C:
			}
			if e.hot.expired(kernel.Now(), uint64(e.cfg.HotWindow)) && e.cfg.Release != nil {
				// The table was rebuilt after a burst: hand the memory back.
				e.cfg.Release()
			}
		}
	}
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
