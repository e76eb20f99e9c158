package classify

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/cgrulesengd/cgrulesengd/internal/cgroupfs"
	"github.com/cgrulesengd/cgrulesengd/internal/kernel"
	"github.com/cgrulesengd/cgrulesengd/internal/proc"
)

// fakeTasks is an in-memory /proc whose tasks' cgroups follow fakeMover.
type fakeTasks struct {
	mu        sync.Mutex
	tasks     map[int]proc.Task
	cgroups   map[int]map[*cgroupfs.Hierarchy]string
	children  map[int][]int
	lay       *cgroupfs.Layout
	onRead    func(pid int)  // called (once, then cleared) before a task is read
	onTask    func(pid int)  // called (once, then cleared) after Task read a task
	onTaskAll func(pid int)  // called (under mu) for every Task call
	threads   map[int]uint32 // tid -> euid (and egid) of threads that are not the main one
	rt        map[int]bool   // realtime tasks
	rtReads   int            // RealTime calls
	cgReads   map[int]int    // Cgroups calls per pid

	statusReads map[int]int // Task calls per pid
}

func (f *fakeTasks) RealTime(pid int) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rtReads++
	if _, ok := f.tasks[pid]; !ok {
		return false, fmt.Errorf("pid %d: %w", pid, unix.ESRCH)
	}
	return f.rt[pid], nil
}

func (f *fakeTasks) ThreadCreds(pid, tid int) (uint32, uint32, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id, ok := f.threads[tid]
	if !ok {
		return 0, 0, fmt.Errorf("pid %d thread %d: %w", pid, tid, unix.ESRCH)
	}
	return id, id, nil
}

func (f *fakeTasks) setUID(pid, uid int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.tasks[pid]
	t.RUID, t.EUID, t.RGID, t.EGID = uint32(uid), uint32(uid), uint32(uid), uint32(uid)
	f.tasks[pid] = t
}

// setEUID changes pid's effective uid alone, as a set-uid program does.
func (f *fakeTasks) setEUID(pid, uid int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.tasks[pid]
	t.EUID = uint32(uid)
	f.tasks[pid] = t
}

func (f *fakeTasks) setProcess(pid int, name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.tasks[pid]
	t.Process = name
	f.tasks[pid] = t
}

func newFakeTasks(lay *cgroupfs.Layout) *fakeTasks {
	return &fakeTasks{tasks: map[int]proc.Task{}, cgroups: map[int]map[*cgroupfs.Hierarchy]string{}, children: map[int][]int{}, threads: map[int]uint32{}, rt: map[int]bool{}, lay: lay}
}

func (f *fakeTasks) add(pid, uid int, where string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tasks[pid] = proc.Task{PID: pid, RUID: uint32(uid), EUID: uint32(uid), RGID: uint32(uid), EGID: uint32(uid), Comm: "x"}
	m := map[*cgroupfs.Hierarchy]string{}
	for _, h := range f.lay.Hierarchies {
		m[h] = where
	}
	f.cgroups[pid] = m
}

func (f *fakeTasks) where(pid int, h *cgroupfs.Hierarchy) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cgroups[pid][h]
}

func (f *fakeTasks) Task(pid int) (proc.Task, error) {
	f.mu.Lock()
	if f.onTaskAll != nil {
		f.onTaskAll(pid)
	}
	if f.statusReads == nil {
		f.statusReads = map[int]int{}
	}
	f.statusReads[pid]++
	t, ok := f.tasks[pid]
	hook := f.onTask
	f.onTask = nil
	f.mu.Unlock()
	if hook != nil {
		hook(pid)
	}
	if !ok {
		return proc.Task{}, fmt.Errorf("pid %d: %w", pid, unix.ESRCH)
	}
	return t, nil
}

func (f *fakeTasks) ProcName(pid int, comm string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.tasks[pid]
	if !ok {
		return "", fmt.Errorf("pid %d: %w", pid, unix.ESRCH)
	}
	if t.Process != "" {
		return t.Process, nil
	}
	return comm, nil
}

func (f *fakeTasks) PIDs() ([]int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []int
	for pid := range f.tasks {
		out = append(out, pid)
	}
	sort.Ints(out)
	return out, nil
}

func (f *fakeTasks) Children(pid int) ([]int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.children[pid], nil
}

func (f *fakeTasks) Cgroups(pid int) ([]proc.CgroupLine, error) {
	f.mu.Lock()
	if hook := f.onRead; hook != nil {
		f.onRead = nil
		f.mu.Unlock()
		hook(pid)
		f.mu.Lock()
	}
	defer f.mu.Unlock()
	if f.cgReads == nil {
		f.cgReads = map[int]int{}
	}
	f.cgReads[pid]++
	m, ok := f.cgroups[pid]
	if !ok {
		return nil, fmt.Errorf("pid %d: %w", pid, unix.ESRCH)
	}
	var lines []proc.CgroupLine
	for i, h := range f.lay.Hierarchies {
		if h.Version == cgroupfs.V2 {
			lines = append(lines, proc.CgroupLine{ID: 0, Path: m[h]})
		} else {
			lines = append(lines, proc.CgroupLine{ID: i + 1, Controllers: h.Controllers, Path: m[h]})
		}
	}
	return lines, nil
}

type fakeMover struct {
	tasks    *fakeTasks
	mu       sync.Mutex
	einval   map[int]int // pid -> EINVALs still to return
	fail     error       // every move fails with this, when set
	exists   map[string]bool
	created  []string
	moves    int
	moved    map[string]bool // destinations moved into
	uncached bool            // Cached always false
	noCreate error           // every Create fails with this, when set
	sheds    int             // Shed calls
}

func (m *fakeMover) Move(h *cgroupfs.Hierarchy, path string, pid int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.exists != nil && !m.exists[path] {
		return fmt.Errorf("move %d to %s: %w", pid, path, unix.ENOENT)
	}
	if m.fail != nil {
		return fmt.Errorf("move %d to %s: %w", pid, path, m.fail)
	}
	if m.einval[pid] > 0 {
		m.einval[pid]--
		return fmt.Errorf("move %d: %w", pid, unix.EINVAL)
	}
	m.tasks.mu.Lock()
	defer m.tasks.mu.Unlock()
	if _, ok := m.tasks.tasks[pid]; !ok {
		return fmt.Errorf("move %d: %w", pid, unix.ESRCH)
	}
	m.tasks.cgroups[pid][h] = path
	m.moves++
	if m.moved == nil {
		m.moved = map[string]bool{}
	}
	m.moved[path] = true
	return nil
}

// setEINVAL makes the next n moves of pid fail with EINVAL.
func (m *fakeMover) setEINVAL(pid, n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.einval[pid] = n
}

func (m *fakeMover) Create(h *cgroupfs.Hierarchy, path string, _ []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.noCreate != nil {
		return fmt.Errorf("create %s: %w", path, m.noCreate)
	}
	m.created = append(m.created, path)
	m.exists[path] = true
	return nil
}

func (m *fakeMover) Forget(*cgroupfs.Hierarchy, string) {}

// Shed counts the engine's requests to give back cached descriptors.
func (m *fakeMover) Shed() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sheds++
	return 0
}

// Cached: a destination is "cached" once a move into it succeeded, unless
// the test says otherwise (uncached).
func (m *fakeMover) Cached(_ *cgroupfs.Hierarchy, path string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.moved[path] && !m.uncached
}

func quietLogger(w io.Writer) *logrus.Logger {
	l := logrus.New()
	l.SetOutput(w)
	l.SetLevel(logrus.DebugLevel)
	return l
}

type engineFixture struct {
	e     *Engine
	tasks *fakeTasks
	mover *fakeMover
	log   *syncWriter
	cpu   *cgroupfs.Hierarchy
}

func newFixture(t *testing.T, ruleText string, cfg Config) *engineFixture {
	t.Helper()
	lay := hybridLayout()
	ft := newFakeTasks(lay)
	fm := &fakeMover{tasks: ft, einval: map[int]int{}}
	logBuf := &syncWriter{b: &strings.Builder{}}
	cfg.Layout, cfg.Mover, cfg.Tasks, cfg.Log = lay, fm, ft, quietLogger(logBuf)
	e := New(cfg)
	e.SetRules(mustParse(t, lay, ruleText), testResolver())
	return &engineFixture{e: e, tasks: ft, mover: fm, log: logBuf, cpu: lay.Hierarchies[0]}
}

type syncWriter struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func uidEvent(pid int) *kernel.Event {
	return &kernel.Event{What: kernel.EventUID, PID: int32(pid), TGID: int32(pid), EUID: 1000}
}

func forkEvent(parent, child int, ts uint64) *kernel.Event {
	return &kernel.Event{What: kernel.EventFork, ParentPID: int32(parent), ParentTGID: int32(parent), PID: int32(child), TGID: int32(child), Timestamp: ts}
}

func TestEngineMovesOnUIDEvent(t *testing.T) {
	f := newFixture(t, "alice cpu users/alice\n", Config{})
	f.tasks.add(100, 1000, "/")
	f.e.Start()
	defer f.e.Stop()
	f.e.Handle(uidEvent(100))
	waitFor(t, "move", func() bool { return f.tasks.where(100, f.cpu) == "/users/alice" })
	waitFor(t, "move logged with its rule", func() bool {
		l := f.log.String()
		return strings.Contains(l, `msg="moved task"`) && strings.Contains(l, "rule=\"test.conf:1\"")
	})
}

// TestEngineFollowsForkRaces: children forked before their parent's move,
// and grandchildren of a middle process that already exited, are moved.
// One worker takes the likely jobs in order, so a sentinel's move after the
// forks that must not be followed proves that no job ran for them.
func TestEngineFollowsForkRaces(t *testing.T) {
	f := newFixture(t, "alice cpu users/alice\n", Config{Workers: 1})
	f.tasks.add(100, 1000, "/") // parent after setuid
	f.tasks.add(101, 1000, "/") // child forked before the move
	f.tasks.add(103, 1000, "/") // grandchild; its parent 102 has exited
	f.tasks.add(200, 1000, "/") // forked long after the move
	f.tasks.add(300, 1000, "/") // child of a task that is not hot
	f.tasks.add(400, 1000, "/") // the sentinel
	f.e.Start()
	defer f.e.Stop()

	f.e.Handle(uidEvent(100))
	f.e.Handle(forkEvent(100, 101, kernel.Now()))
	f.e.Handle(forkEvent(100, 102, kernel.Now()))
	f.e.Handle(forkEvent(102, 103, kernel.Now()))
	f.e.Handle(&kernel.Event{What: kernel.EventExit, PID: 102, TGID: 102})
	waitFor(t, "children moved", func() bool {
		return f.tasks.where(101, f.cpu) == "/users/alice" && f.tasks.where(103, f.cpu) == "/users/alice"
	})
	waitFor(t, "parent done", func() bool {
		h, _ := f.e.hot.get(100)
		return h.state == hotDone
	})
	// A fork stamped well after the parent's move inherited the new cgroup:
	// it must not cost a classification.
	f.e.Handle(forkEvent(100, 200, kernel.Now()+uint64(time.Second)))
	f.e.Handle(forkEvent(999, 300, kernel.Now()))
	f.e.Handle(uidEvent(400)) // a likely job, queued after any for 200 and 300
	waitFor(t, "the sentinel moved", func() bool { return f.tasks.where(400, f.cpu) == "/users/alice" })
	if got := f.tasks.where(200, f.cpu); got != "/" {
		t.Errorf("late fork was classified (moved to %s)", got)
	}
	if got := f.tasks.where(300, f.cpu); got != "/" {
		t.Errorf("child of a cold parent was classified (moved to %s)", got)
	}
	if s := f.e.Stats(); s.ForksFollowed != 3 {
		t.Errorf("ForksFollowed = %d, want 3", s.ForksFollowed)
	}
}

// TestEngineCoalescesThreads: a multi-threaded setuid reports once per
// thread, and /proc/PID/status (the main thread) may show the old uid until
// the last thread is done: the process is classified once, by the
// credentials of the thread that reported the change.
func TestEngineCoalescesThreads(t *testing.T) {
	f := newFixture(t, "alice cpu users/alice\nroot cpu wrong\n", Config{})
	f.tasks.add(100, 0, "/") // main thread not switched yet
	for tid := 101; tid < 109; tid++ {
		f.tasks.threads[tid] = 1000
		f.e.Handle(&kernel.Event{What: kernel.EventUID, PID: int32(tid), TGID: 100, EUID: 1000})
	}
	if n := len(f.e.jobs) + len(f.e.fast); n != 1 {
		t.Fatalf("%d jobs queued for one process's threads, want 1", n)
	}
	// The first event alone must carry the new ids: run it before the others
	// are merged in.
	f2 := newFixture(t, "alice cpu users/alice\nroot cpu wrong\n", Config{})
	f2.tasks.add(100, 0, "/")
	f2.tasks.threads[101] = 1000
	f2.e.Handle(&kernel.Event{What: kernel.EventUID, PID: 101, TGID: 100, EUID: 1000})
	f2.e.Start()
	defer f2.e.Stop()
	waitFor(t, "first-event move", func() bool { return f2.tasks.where(100, f2.cpu) == "/users/alice" })
	f.e.Start()
	defer f.e.Stop()
	waitFor(t, "move", func() bool { return f.tasks.where(100, f.cpu) == "/users/alice" })
	if s := f.e.Stats(); s.Coalesced != 7 || s.Moves != 1 {
		t.Errorf("stats %+v, want 7 coalesced and 1 move", s)
	}
}

func TestEngineFullQueueRescans(t *testing.T) {
	f := newFixture(t, "alice cpu users/alice\n", Config{QueueSize: 2})
	for pid := 100; pid < 110; pid++ {
		f.tasks.add(pid, 1000, "/")
		f.e.Handle(uidEvent(pid))
	}
	if s := f.e.Stats(); s.QueueFull != 8 {
		t.Fatalf("QueueFull = %d, want 8", s.QueueFull)
	}
	f.e.Start()
	defer f.e.Stop()
	waitFor(t, "rescan moved everyone", func() bool {
		for pid := 100; pid < 110; pid++ {
			if f.tasks.where(pid, f.cpu) != "/users/alice" {
				return false
			}
		}
		return true
	})
	waitFor(t, "rescan counted", func() bool { return f.e.Stats().Rescans >= 1 })
}

func TestEngineOverflowRescans(t *testing.T) {
	f := newFixture(t, "alice cpu users/alice\n", Config{})
	f.tasks.add(100, 1000, "/")
	f.tasks.add(101, 1000, "/other") // moved too: a rescan classifies everything
	// Five reports before the rescan loop runs coalesce into one rescan.
	for i := 0; i < 5; i++ {
		f.e.Handle(&kernel.Event{What: kernel.EventOverflow})
	}
	f.e.Start()
	defer f.e.Stop()
	waitFor(t, "rescan", func() bool {
		return f.tasks.where(100, f.cpu) == "/users/alice" && f.tasks.where(101, f.cpu) == "/users/alice"
	})
	waitFor(t, "rescan counted", func() bool { return f.e.Stats().Rescans >= 1 })
	time.Sleep(20 * time.Millisecond)
	s := f.e.Stats()
	if s.Overflows != 5 || s.Rescans != 1 {
		t.Errorf("Overflows = %d, Rescans = %d, want 5 and 1 (coalesced)", s.Overflows, s.Rescans)
	}
	if n := strings.Count(f.log.String(), "kernel events were lost"); n != 1 {
		t.Errorf("overflow logged %d times, want 1 (rate-limited)", n)
	}
	// A later report rescans again.
	f.e.Handle(&kernel.Event{What: kernel.EventOverflow})
	waitFor(t, "second rescan", func() bool { return f.e.Stats().Rescans == 2 })
}

// TestEngineRescanRerunsRunningJob: a worker read a task, then the task
// changed its uid while the kernel was dropping events, and the repair scan
// ran while the worker was still busy with the old state. The scan leaves
// the task to the worker, which must then classify it once more.
func TestEngineRescanRerunsRunningJob(t *testing.T) {
	f := newFixture(t, "alice cpu users/alice\n", Config{})
	f.tasks.add(100, 0, "/") // root: no rule
	read, release := make(chan struct{}), make(chan struct{})
	f.tasks.onTask = func(int) {
		close(read)
		<-release
	}
	f.e.Start()
	defer f.e.Stop()
	f.e.Handle(uidEvent(100))
	<-read // the worker holds uid 0
	f.tasks.setUID(100, 1000)
	f.e.Handle(&kernel.Event{What: kernel.EventOverflow}) // the UID event was lost
	waitFor(t, "rescan", func() bool { return f.e.Stats().Rescans == 1 })
	if got := f.tasks.where(100, f.cpu); got != "/" {
		t.Fatalf("moved to %s while the worker was still busy", got)
	}
	close(release)
	waitFor(t, "move by the worker's second run", func() bool { return f.tasks.where(100, f.cpu) == "/users/alice" })
}

// TestEngineOverflowDuringRescan: a loss reported while a rescan runs may
// concern tasks that rescan has already looked at: one more rescan follows.
func TestEngineOverflowDuringRescan(t *testing.T) {
	f := newFixture(t, "alice cpu users/alice\n", Config{})
	f.tasks.add(100, 0, "/")
	f.tasks.add(101, 0, "/")
	inScan, release := make(chan struct{}), make(chan struct{})
	f.tasks.onTask = func(int) {
		close(inScan)
		<-release
	}
	f.e.Start()
	defer f.e.Stop()
	f.e.Handle(&kernel.Event{What: kernel.EventOverflow})
	<-inScan // the rescan reads pid 100 (still root)
	f.tasks.setUID(100, 1000)
	f.e.Handle(&kernel.Event{What: kernel.EventOverflow}) // its UID event was lost
	close(release)
	waitFor(t, "second rescan moves pid 100", func() bool { return f.tasks.where(100, f.cpu) == "/users/alice" })
	waitFor(t, "two rescans", func() bool { return f.e.Stats().Rescans == 2 })
}

func TestEngineRetriesEINVAL(t *testing.T) {
	f := newFixture(t, "alice cpu users/alice\n", Config{})
	f.tasks.add(100, 1000, "/")
	f.mover.einval[100] = 2
	f.e.Start()
	defer f.e.Stop()
	f.e.Handle(uidEvent(100))
	waitFor(t, "move after retries", func() bool { return f.tasks.where(100, f.cpu) == "/users/alice" })
	if s := f.e.Stats(); s.Retries != 2 {
		t.Errorf("Retries = %d, want 2", s.Retries)
	}
}

func TestEngineGoneTaskIsQuiet(t *testing.T) {
	f := newFixture(t, "alice cpu users/alice\n", Config{})
	f.e.Start()
	defer f.e.Stop()
	f.e.Handle(uidEvent(4242))
	waitFor(t, "gone counted", func() bool { return f.e.Stats().Gone == 1 })
	if strings.Contains(f.log.String(), "level=error") {
		t.Errorf("an exited task was logged as an error:\n%s", f.log.String())
	}
}

func TestEngineDestinations(t *testing.T) {
	f := newFixture(t, "alice cpu fixed\nbob cpu users/%u\n", Config{})
	f.mover.exists = map[string]bool{}
	f.tasks.add(100, 1000, "/")
	f.tasks.add(101, 1000, "/")
	f.tasks.add(200, 1001, "/")
	f.e.Start()
	defer f.e.Stop()
	f.e.Handle(uidEvent(100))
	f.e.Handle(uidEvent(101))
	f.e.Handle(&kernel.Event{What: kernel.EventUID, PID: 200, TGID: 200, EUID: 1001})
	waitFor(t, "templated destination created", func() bool { return f.tasks.where(200, f.cpu) == "/users/bob" })
	waitFor(t, "missing destination reported", func() bool { return f.e.Stats().Errors == 2 })
	if n := strings.Count(f.log.String(), "destination cgroup does not exist"); n != 1 {
		t.Errorf("missing destination logged %d times, want once:\n%s", n, f.log.String())
	}
	if len(f.mover.created) != 1 || f.mover.created[0] != "/users/bob" {
		t.Errorf("created %v, want [/users/bob]", f.mover.created)
	}
}

// TestEngineMissingDestinationReportedAgain: a missing destination is
// reported when first seen, again once it has been seen to exist and gone
// away again, again after a reload, and while it stays missing at most once
// per interval, saying how many failures were not logged (issue #13: it was
// reported once per daemon lifetime).
func TestEngineMissingDestinationReportedAgain(t *testing.T) {
	f := newFixture(t, "alice cpu fixed\n", Config{})
	f.mover.exists = map[string]bool{}
	f.e.Start()
	defer f.e.Stop()
	pid, errs := 100, uint64(0)
	reports := func() int { return strings.Count(f.log.String(), "destination cgroup does not exist") }
	// fails sends a task to the missing destination and waits for the failure.
	fails := func(wantReports int) {
		t.Helper()
		pid++
		errs++
		f.tasks.add(pid, 1000, "/")
		f.e.Handle(uidEvent(pid))
		waitFor(t, "failed move counted", func() bool { return f.e.Stats().Errors == errs })
		if n := reports(); n != wantReports {
			t.Fatalf("after pid %d: missing destination reported %d times, want %d:\n%s", pid, n, wantReports, f.log.String())
		}
	}
	fails(1)
	fails(1) // the same episode
	f.mover.mu.Lock()
	f.mover.exists["/fixed"] = true
	f.mover.mu.Unlock()
	pid++
	f.tasks.add(pid, 1000, "/")
	f.e.Handle(uidEvent(pid))
	waitFor(t, "moved once the destination exists", func() bool { return f.tasks.where(pid, f.cpu) == "/fixed" })
	f.mover.mu.Lock()
	delete(f.mover.exists, "/fixed")
	f.mover.mu.Unlock()
	fails(2) // removed again: reported again
	fails(2)
	f.e.SetRules(mustParse(t, f.e.cfg.Layout, "alice cpu fixed\n"), testResolver())
	fails(3) // after a reload
	fails(3)
	// Once the worker is done with the last failure (busy is its barrier),
	// the limiter can be changed without a race.
	waitFor(t, "workers idle", func() bool { return f.e.busy.Load() == 0 })
	f.e.missing.Window = time.Millisecond
	time.Sleep(5 * time.Millisecond)
	fails(4) // the interval has passed: reported, with the count
	if !strings.Contains(f.log.String(), "not_logged=1") {
		t.Errorf("the repeated report does not count the failure not logged:\n%s", f.log.String())
	}
}

// TestEngineFailedMoveLoggedOnce: a process whose threads report its setuid
// one by one is classified again for each, and its failed move is logged
// once, not once per thread event (issue #13); nor once per process: a
// user may start as many as it likes (issue 19), so another process
// failing the same way within the interval is counted, not logged.
func TestEngineFailedMoveLoggedOnce(t *testing.T) {
	f := newFixture(t, "alice cpu fixed\n", Config{})
	f.mover.fail = unix.EACCES
	f.tasks.add(100, 1000, "/")
	for tid := 101; tid <= 105; tid++ {
		f.tasks.threads[tid] = 1000
	}
	f.e.Start()
	defer f.e.Stop()
	for tid := 101; tid <= 105; tid++ {
		f.e.Handle(&kernel.Event{What: kernel.EventUID, PID: int32(tid), TGID: 100, EUID: 1000})
		waitFor(t, "failed move counted", func() bool { return f.e.Stats().Errors == uint64(tid-100) })
	}
	if n := strings.Count(f.log.String(), "cannot move task"); n != 1 {
		t.Errorf("the failed move was logged %d times, want once:\n%s", n, f.log.String())
	}
	// Another process failing the same way is counted, not logged.
	f.tasks.add(200, 1000, "/")
	f.e.Handle(uidEvent(200))
	waitFor(t, "failed move counted", func() bool { return f.e.Stats().Errors == 6 })
	if n := strings.Count(f.log.String(), "cannot move task"); n != 1 {
		t.Errorf("another process's failed move: logged %d times in all, want 1:\n%s", n, f.log.String())
	}
}

func TestEngineStartupScan(t *testing.T) {
	f := newFixture(t, "alice cpu users/alice\n", Config{})
	f.tasks.add(1, 0, "/")
	f.tasks.add(100, 1000, "/")
	f.tasks.add(101, 1000, "/users/alice/own") // a sub-cgroup the user chose
	n, moved := f.e.Scan()
	if n != 3 || moved != 1 {
		t.Fatalf("scan looked at %d tasks and moved %d, want 3 and 1", n, moved)
	}
	if got := f.tasks.where(101, f.cpu); got != "/users/alice/own" {
		t.Errorf("task in a sub-cgroup of its destination moved to %s", got)
	}
	if f.e.HotLen() != 1 {
		t.Errorf("hot table holds %d entries after the scan, want 1 (the moved task)", f.e.HotLen())
	}
}

// TestEngineHalfDoneDropIsRepaired: a root process drops privileges with
// setgid then setuid. Classified between the two, it matches a rule for root
// and is moved below the final destination; once the uid changes, the
// daemon's own earlier move must not count as "already at or below".
func TestEngineHalfDoneDropIsRepaired(t *testing.T) {
	f := newFixture(t, "root cpu a/b\nalice cpu a\n", Config{})
	f.tasks.add(100, 0, "/")
	f.e.Start()
	defer f.e.Stop()
	f.e.Handle(&kernel.Event{What: kernel.EventGID, PID: 100, TGID: 100})
	waitFor(t, "transitional move", func() bool { return f.tasks.where(100, f.cpu) == "/a/b" })
	f.tasks.setUID(100, 1000)
	f.e.Handle(uidEvent(100))
	waitFor(t, "final move", func() bool { return f.tasks.where(100, f.cpu) == "/a" })
}

// TestEnginePidReuse: a process exits while it is being classified and its
// pid is reused at once by a new process whose uid changes. The new
// process's event must not be lost, nor the old process's ids applied to it.
func TestEnginePidReuse(t *testing.T) {
	f := newFixture(t, "alice cpu a\nbob cpu b\n", Config{})
	f.tasks.add(100, 1000, "/") // what /proc shows by the time we look: the new process (alice)
	f.tasks.onRead = func(pid int) {
		f.e.Handle(&kernel.Event{What: kernel.EventExit, PID: 100, TGID: 100})
		f.e.Handle(uidEvent(100)) // the new process becomes alice
	}
	f.e.Handle(&kernel.Event{What: kernel.EventUID, PID: 100, TGID: 100, EUID: 1001}) // the old process became bob
	f.e.Start()
	defer f.e.Stop()
	waitFor(t, "the new process classified by its own ids", func() bool { return f.tasks.where(100, f.cpu) == "/a" })
}

// TestEngineSkipsExited: a task that exits before its queued classification
// runs costs nothing more (under a fork storm, most of them do).
func TestEngineSkipsExited(t *testing.T) {
	f := newFixture(t, "alice cpu users/alice\n", Config{})
	f.tasks.add(100, 1000, "/") // still in the fake /proc: must not be read
	f.tasks.onRead = func(pid int) { t.Errorf("pid %d read after its EXIT was reported", pid) }
	f.e.Handle(uidEvent(100))
	f.e.Handle(&kernel.Event{What: kernel.EventExit, PID: 100, TGID: 100})
	f.e.Start()
	defer f.e.Stop()
	waitFor(t, "skip counted", func() bool { return f.e.Stats().Gone == 1 })
	if f.e.HotLen() != 0 {
		t.Errorf("hot table keeps %d entries for an exited task", f.e.HotLen())
	}
}

// TestEngineBatchDropsExited: within one read, a credential change followed
// by the task's exit queues nothing; one whose task lives is queued.
func TestEngineBatchDropsExited(t *testing.T) {
	f := newFixture(t, "alice cpu users/alice\n", Config{})
	f.tasks.add(101, 1000, "/")
	f.e.HandleBatch([]kernel.Event{
		*uidEvent(100),
		*uidEvent(101),
		{What: kernel.EventExit, PID: 100, TGID: 100},
	})
	if n := len(f.e.jobs) + len(f.e.fast); n != 1 {
		t.Fatalf("%d jobs queued, want 1 (for the live task)", n)
	}
	if s := f.e.Stats(); s.Gone != 1 {
		t.Errorf("Gone = %d, want 1", s.Gone)
	}
	f.e.Start()
	defer f.e.Stop()
	waitFor(t, "live task moved", func() bool { return f.tasks.where(101, f.cpu) == "/users/alice" })
}

// TestEngineBatchWhileWorkersEnqueue: retries (pushed from timers after
// EINVAL) are enqueued while the reader is inside HandleBatch; none of them
// may be lost (run with -race).
func TestEngineBatchWhileWorkersEnqueue(t *testing.T) {
	f := newFixture(t, "alice cpu users/alice\n", Config{})
	f.mover.mu.Lock()
	f.mover.einval = map[int]int{}
	for pid := 100; pid < 140; pid++ {
		f.tasks.add(pid, 1000, "/")
		f.mover.einval[pid] = 2
	}
	f.mover.mu.Unlock()
	f.e.Start()
	defer f.e.Stop()
	for i := 0; i < 400; i++ {
		f.e.HandleBatch([]kernel.Event{*uidEvent(100 + i%40), {What: kernel.EventFork, PID: 9999, TGID: 9999, ParentTGID: 1}})
		if i%40 == 39 {
			time.Sleep(2 * time.Millisecond)
		}
	}
	waitFor(t, "every task moved", func() bool {
		for pid := 100; pid < 140; pid++ {
			if f.tasks.where(pid, f.cpu) != "/users/alice" {
				return false
			}
		}
		return true
	})
}

// TestEngineRealTimeReadLazily: the scheduling policy is read only for an
// ignore_rt rule or after EINVAL; an ignore_rt rule leaves a realtime task
// and moves the others; a realtime task's EINVAL is not retried.
func TestEngineRealTimeReadLazily(t *testing.T) {
	f := newFixture(t, "alice cpu users/alice ignore_rt\nbob cpu users/bob\n", Config{})
	f.tasks.add(100, 1000, "/")
	f.tasks.add(101, 1000, "/")
	f.tasks.add(200, 1001, "/")
	f.tasks.add(201, 1001, "/")
	f.tasks.rt[101] = true
	f.tasks.rt[201] = true
	f.mover.mu.Lock()
	f.mover.einval = map[int]int{201: 1}
	f.mover.mu.Unlock()
	f.e.Start()
	defer f.e.Stop()

	f.e.Handle(uidEvent(200))
	waitFor(t, "bob's task moved", func() bool { return f.tasks.where(200, f.cpu) == "/users/bob" })
	f.tasks.mu.Lock()
	reads := f.tasks.rtReads
	f.tasks.mu.Unlock()
	if reads != 0 {
		t.Errorf("a plain rule and a successful move read the policy %d times", reads)
	}

	f.e.Handle(uidEvent(100))
	f.e.Handle(uidEvent(101))
	waitFor(t, "alice's ordinary task moved", func() bool { return f.tasks.where(100, f.cpu) == "/users/alice" })
	f.e.Handle(uidEvent(201))
	waitFor(t, "EINVAL for the realtime task reported", func() bool {
		return strings.Contains(f.log.String(), "cannot move realtime task")
	})
	time.Sleep(50 * time.Millisecond)
	if got := f.tasks.where(101, f.cpu); got != "/" {
		t.Errorf("realtime task under an ignore_rt rule moved to %s", got)
	}
	if got := f.tasks.where(201, f.cpu); got != "/" {
		t.Errorf("realtime task moved to %s after EINVAL", got)
	}
	if s := f.e.Stats(); s.Retries != 0 {
		t.Errorf("Retries = %d: a realtime task's EINVAL was retried", s.Retries)
	}
}

// TestEngineReaderMovesItself: the reader classifies and moves a task
// itself when that is cheap (descriptors cached): the one likely job of a
// read (its event's ids are named by a rule) unless another likely job is
// already queued, or the one job of a read when nothing is queued or
// running. Otherwise (first move into a destination, likely work queued, an
// unlikely job while a worker is busy) a worker does. Either way the task
// ends where it belongs.
func TestEngineReaderMovesItself(t *testing.T) {
	f := newFixture(t, "alice cpu users/alice\n@staff cpu users/alice\n", Config{})
	for pid := 100; pid < 106; pid++ {
		f.tasks.add(pid, 1000, "/")
	}
	f.e.Start()
	defer f.e.Stop()
	// First move into the destination: not cached, a worker makes it.
	f.e.HandleBatch([]kernel.Event{*uidEvent(100)})
	waitFor(t, "first move", func() bool { return f.tasks.where(100, f.cpu) == "/users/alice" })
	waitFor(t, "worker idle", func() bool { return f.e.busy.Load() == 0 })
	if s := f.e.Stats(); s.Inline != 0 {
		t.Fatalf("the reader made the first move into an uncached destination (Inline = %d)", s.Inline)
	}
	// Cached now: the reader moves the next task before HandleBatch returns.
	f.e.HandleBatch([]kernel.Event{*uidEvent(101)})
	if got := f.tasks.where(101, f.cpu); got != "/users/alice" {
		t.Fatalf("pid 101 in %s when HandleBatch returned, want moved by the reader", got)
	}
	if s := f.e.Stats(); s.Inline != 1 {
		t.Errorf("Inline = %d, want 1", s.Inline)
	}
	// A worker busy with another task: a likely job still runs on the
	// reader, an unlikely one (uid 5000, named by no rule, which could only
	// match by its egid) goes to the workers.
	read, release := make(chan struct{}), make(chan struct{})
	f.tasks.mu.Lock()
	f.tasks.onTask = func(int) { close(read); <-release }
	f.tasks.mu.Unlock()
	f.e.Handle(uidEvent(102)) // straight to a worker, which blocks in Task
	<-read
	f.e.HandleBatch([]kernel.Event{*uidEvent(103)})
	if got := f.tasks.where(103, f.cpu); got != "/users/alice" {
		t.Errorf("pid 103 in %s when HandleBatch returned, want moved by the reader beside the busy worker", got)
	}
	f.e.HandleBatch([]kernel.Event{{What: kernel.EventUID, PID: 104, TGID: 104, EUID: 5000}})
	if s := f.e.Stats(); s.Inline != 2 {
		t.Errorf("Inline = %d, want 2 (the unlikely job handed off)", s.Inline)
	}
	close(release)
	waitFor(t, "all moved", func() bool {
		return f.tasks.where(102, f.cpu) == "/users/alice" && f.tasks.where(104, f.cpu) == "/users/alice"
	})
	// Two likely jobs in one read: both to the workers.
	f.tasks.add(106, 1000, "/")
	f.e.HandleBatch([]kernel.Event{*uidEvent(105), *uidEvent(106)})
	waitFor(t, "both moved", func() bool {
		return f.tasks.where(105, f.cpu) == "/users/alice" && f.tasks.where(106, f.cpu) == "/users/alice"
	})
	if s := f.e.Stats(); s.Inline != 2 {
		t.Errorf("Inline = %d after a read with two likely jobs, want still 2", s.Inline)
	}
}

// TestEnginePrioFirst: a worker takes likely jobs before the others queued
// ahead of them.
func TestEnginePrioFirst(t *testing.T) {
	f := newFixture(t, "alice cpu users/alice\n", Config{Workers: 1, HandOff: true})
	for pid := 100; pid < 120; pid++ {
		f.tasks.add(pid, 5000, "/") // nobody's: matched by no rule
	}
	f.tasks.add(200, 1000, "/")
	for pid := 100; pid < 120; pid++ {
		f.e.Handle(&kernel.Event{What: kernel.EventUID, PID: int32(pid), TGID: int32(pid), EUID: 5000})
	}
	f.e.Handle(uidEvent(200))
	var order []int
	f.tasks.mu.Lock()
	f.tasks.onTaskAll = func(pid int) { order = append(order, pid) }
	f.tasks.mu.Unlock()
	f.e.Start()
	defer f.e.Stop()
	waitFor(t, "alice's task moved", func() bool { return f.tasks.where(200, f.cpu) == "/users/alice" })
	waitFor(t, "all read", func() bool { f.tasks.mu.Lock(); defer f.tasks.mu.Unlock(); return len(order) == 21 })
	f.tasks.mu.Lock()
	defer f.tasks.mu.Unlock()
	if order[0] != 200 {
		t.Errorf("read order %v: the likely job was not taken first", order)
	}
}

// TestEngineHandOff: with Config.HandOff every classification goes to a
// worker.
func TestEngineHandOff(t *testing.T) {
	f := newFixture(t, "alice cpu users/alice\n", Config{HandOff: true})
	f.tasks.add(100, 1000, "/")
	f.tasks.add(101, 1000, "/")
	f.e.Start()
	defer f.e.Stop()
	f.e.HandleBatch([]kernel.Event{*uidEvent(100)})
	waitFor(t, "first move", func() bool { return f.tasks.where(100, f.cpu) == "/users/alice" })
	waitFor(t, "worker idle", func() bool { return f.e.busy.Load() == 0 })
	f.e.HandleBatch([]kernel.Event{*uidEvent(101)})
	waitFor(t, "second move", func() bool { return f.tasks.where(101, f.cpu) == "/users/alice" })
	if s := f.e.Stats(); s.Inline != 0 {
		t.Errorf("Inline = %d with HandOff", s.Inline)
	}
}

// TestEngineInlineEINVAL: an EINVAL met by the reader's own move goes to
// the retry queue like a worker's.
func TestEngineInlineEINVAL(t *testing.T) {
	f := newFixture(t, "alice cpu users/alice\n", Config{})
	f.tasks.add(100, 1000, "/")
	f.tasks.add(101, 1000, "/")
	f.e.Start()
	defer f.e.Stop()
	f.e.HandleBatch([]kernel.Event{*uidEvent(100)}) // makes the destination cached
	waitFor(t, "first move", func() bool { return f.tasks.where(100, f.cpu) == "/users/alice" })
	waitFor(t, "worker idle", func() bool { return f.e.busy.Load() == 0 })
	f.mover.setEINVAL(101, 2)
	f.e.HandleBatch([]kernel.Event{*uidEvent(101)})
	if s := f.e.Stats(); s.Inline != 1 || s.Retries != 1 {
		t.Fatalf("after the reader's move: Inline = %d, Retries = %d; want 1 and 1", s.Inline, s.Retries)
	}
	waitFor(t, "moved by a retry", func() bool { return f.tasks.where(101, f.cpu) == "/users/alice" })
	if s := f.e.Stats(); s.Retries != 2 {
		t.Errorf("Retries = %d, want 2", s.Retries)
	}
}

// TestEngineRetriesDoNotHoldWorkers: with one worker, a task that keeps
// failing with EINVAL does not hold up the next one: its retries wait in
// the retry queue, not on the worker.
func TestEngineRetriesDoNotHoldWorkers(t *testing.T) {
	f := newFixture(t, "alice cpu users/alice\n", Config{Workers: 1, HandOff: true})
	f.tasks.add(100, 1000, "/")
	f.tasks.add(101, 1000, "/")
	f.mover.setEINVAL(100, 4)
	f.e.Start()
	defer f.e.Stop()
	f.e.Handle(uidEvent(100))
	f.e.Handle(uidEvent(101))
	waitFor(t, "the second task moved", func() bool { return f.tasks.where(101, f.cpu) == "/users/alice" })
	// 4 retries take 10+20+30+40 ms: the second task was moved before.
	if s := f.e.Stats(); s.Retries >= 4 {
		t.Errorf("the second task was moved only after all %d retries of the first", s.Retries)
	}
	if got := f.tasks.where(100, f.cpu); got != "/" {
		t.Errorf("the first task is already in %s", got)
	}
	waitFor(t, "the first task moved by its last retry", func() bool { return f.tasks.where(100, f.cpu) == "/users/alice" })
	if s := f.e.Stats(); s.Retries != 4 {
		t.Errorf("Retries = %d, want 4", s.Retries)
	}
}

// TestEngineRetriesBounded: a task that never stops failing with EINVAL is
// retried Config.Retries times, then left (and forgotten when it exits).
func TestEngineRetriesBounded(t *testing.T) {
	f := newFixture(t, "alice cpu users/alice\n", Config{Retries: 3})
	f.tasks.add(100, 1000, "/")
	f.mover.setEINVAL(100, 1000)
	f.e.Start()
	defer f.e.Stop()
	f.e.Handle(uidEvent(100))
	waitFor(t, "retries done", func() bool {
		h, _ := f.e.hot.get(100)
		return f.e.Stats().Retries == 3 && h.state == hotDone
	})
	time.Sleep(100 * time.Millisecond)
	if s := f.e.Stats(); s.Retries != 3 || f.e.retries.len() != 0 {
		t.Errorf("Retries = %d, %d still waiting; want 3 and none", s.Retries, f.e.retries.len())
	}
	f.e.Handle(&kernel.Event{What: kernel.EventExit, PID: 100, TGID: 100})
	if n := f.e.HotLen(); n != 0 {
		t.Errorf("hot table keeps %d entries after the exit", n)
	}
}

// TestEngineNoRuleReadsNothingMore: a task whose ids no rule can match
// (whatever its process) costs one read, its status: not its cgroups, not
// its procname, at any log level.
func TestEngineNoRuleReadsNothingMore(t *testing.T) {
	f := newFixture(t, "alice:make cpu users/alice\n", Config{})
	f.e.log.SetLevel(logrus.InfoLevel)
	f.tasks.add(100, 1001, "/") // bob
	f.tasks.add(101, 1000, "/") // alice, running make
	f.tasks.mu.Lock()
	t101 := f.tasks.tasks[101]
	t101.Process = "/usr/bin/make"
	f.tasks.tasks[101] = t101
	f.tasks.mu.Unlock()
	f.e.Start()
	defer f.e.Stop()
	f.e.Handle(&kernel.Event{What: kernel.EventUID, PID: 100, TGID: 100, EUID: 1001})
	f.e.Handle(uidEvent(101))
	waitFor(t, "alice's make moved", func() bool { return f.tasks.where(101, f.cpu) == "/users/alice" })
	waitFor(t, "bob's task looked at", func() bool { h, ok := f.e.hot.get(100); return ok && h.state == hotDone })
	f.tasks.mu.Lock()
	defer f.tasks.mu.Unlock()
	if n := f.tasks.cgReads[100]; n != 0 {
		t.Errorf("the cgroups of pid 100, which no rule can match, were read %d times", n)
	}
}

// TestEngineSweeperWakesAfterIdle: the sweeper, asleep while the hot table
// is empty (no timer), wakes when an entry is done, expires it, and sleeps
// again; a second move later is expired the same way.
func TestEngineSweeperWakesAfterIdle(t *testing.T) {
	f := newFixture(t, "alice cpu users/alice\n", Config{HotWindow: time.Millisecond})
	f.e.Start()
	defer f.e.Stop()
	for _, pid := range []int{100, 101} {
		f.tasks.add(pid, 1000, "/")
		f.e.Handle(uidEvent(pid))
		waitFor(t, "move", func() bool { return f.tasks.where(pid, f.cpu) == "/users/alice" })
		waitFor(t, "the hot entry's expiry", func() bool { return f.e.HotLen() == 0 })
	}
}
