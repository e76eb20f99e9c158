package classify

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cgrulesengd/cgrulesengd/internal/kernel"
	"github.com/cgrulesengd/cgrulesengd/rules"
)

// TestBatcherPause: below batchRate every read is followed at once by the
// next; above it, a read that came back less than half full is followed by
// batchDelay, a fuller one is not; the rate is judged per batchWindow.
func TestBatcherPause(t *testing.T) {
	var b batcher
	now := time.Unix(1000, 0)
	step := func(n int, dt time.Duration) time.Duration {
		now = now.Add(dt)
		return b.pause(n, 256, now)
	}
	// 1,000 events/s: never pauses.
	for i := 0; i < 200; i++ {
		if d := step(1, time.Millisecond); d != 0 {
			t.Fatalf("read %d at 1,000 events/s paused %v", i, d)
		}
	}
	// 20,000 events/s in reads of 20: pauses once a window has shown it.
	paused := 0
	for i := 0; i < 100; i++ {
		if d := step(20, time.Millisecond); d == batchDelay {
			paused++
		} else if d != 0 {
			t.Fatalf("pause %v", d)
		}
	}
	if paused < 40 {
		t.Errorf("at 20,000 events/s, %d of 100 reads paused", paused)
	}
	// A read at least half full: no pause even while batching.
	if d := step(128, time.Millisecond); d != 0 {
		t.Errorf("a half-full read paused %v", d)
	}
	// The rate falls: a window later, no more pauses.
	for i := 0; i < 60; i++ {
		step(1, time.Millisecond)
	}
	if d := step(1, time.Millisecond); d != 0 {
		t.Errorf("still pausing %v after the rate fell", d)
	}
}

// TestBatcherYield: the reader yields after its first batch, then not again
// until yieldEvery has passed, however many batches come in between.
func TestBatcherYield(t *testing.T) {
	var b batcher
	now := time.Unix(1000, 0)
	if !b.yield(now) {
		t.Fatal("no yield after the first batch")
	}
	yields := 0
	for i := 0; i < 100; i++ { // 100 batches 1 ms apart
		now = now.Add(time.Millisecond)
		if b.yield(now) {
			yields++
		}
	}
	if want := int(100 * time.Millisecond / yieldEvery); yields != want {
		t.Errorf("%d yields in 100 ms of batches 1 ms apart, want %d (one per %v)", yields, want, yieldEvery)
	}
	// A long idle gap: the next batch yields at once.
	now = now.Add(time.Second)
	if !b.yield(now) {
		t.Error("no yield after a second without batches")
	}
	if b.yield(now.Add(time.Microsecond)) {
		t.Error("a yield 1 µs after the last")
	}
}

// fakeSource returns its reads in order, then ErrClosed.
type fakeSource struct {
	reads []fakeRead
}

type fakeRead struct {
	evs []kernel.Event
	err error
}

func (s *fakeSource) Read(dst []kernel.Event) ([]kernel.Event, error) {
	if len(s.reads) == 0 {
		return dst, kernel.ErrClosed
	}
	r := s.reads[0]
	s.reads = s.reads[1:]
	return append(dst, r.evs...), r.err
}

// TestRunHandsReadsToTheEngine: Run handles every read's events, requests
// a rescan for a failed read and goes on, and returns nil once the source
// is closed.
func TestRunHandsReadsToTheEngine(t *testing.T) {
	f := newFixture(t, "alice cpu users/alice\n", Config{})
	f.tasks.add(100, 1000, "/")
	f.tasks.add(101, 1000, "/")
	f.e.Start()
	defer f.e.Stop()
	src := &fakeSource{reads: []fakeRead{
		{evs: []kernel.Event{*uidEvent(100)}},
		{err: errors.New("recvmmsg: no buffer space")},
		{evs: []kernel.Event{*uidEvent(101), {What: kernel.EventExit, PID: 9, TGID: 9}}},
	}}
	if err := f.e.Run(src); err != nil {
		t.Fatalf("Run: %v", err)
	}
	waitFor(t, "both moved", func() bool {
		return f.tasks.where(100, f.cpu) == "/users/alice" && f.tasks.where(101, f.cpu) == "/users/alice"
	})
	waitFor(t, "the failed read's rescan", func() bool { return f.e.Stats().Rescans >= 1 })
	if s := f.e.Stats(); s.Events != 3 {
		t.Errorf("Events = %d, want 3", s.Events)
	}
	if !strings.Contains(f.log.String(), "reading kernel events: recvmmsg: no buffer space") {
		t.Errorf("the failed read is not logged:\n%s", f.log.String())
	}
}

// failingSource fails every read.
type failingSource struct{ n int }

func (s *failingSource) Read(dst []kernel.Event) ([]kernel.Event, error) {
	s.n++
	return dst, unix.EIO
}

// TestRunGivesUp: a source that keeps failing ends Run with its error.
func TestRunGivesUp(t *testing.T) {
	if testing.Short() {
		t.Skip("takes a second")
	}
	f := newFixture(t, "alice cpu users/alice\n", Config{})
	src := &failingSource{}
	err := f.e.Run(src)
	if !errors.Is(err, unix.EIO) || src.n != maxReadFailures {
		t.Fatalf("Run = %v after %d reads, want EIO after %d", err, src.n, maxReadFailures)
	}
}

// recordingFilter records what the engine tells a filtering source; it
// refuses the calls whose record starts with fail.
type recordingFilter struct {
	mu    sync.Mutex
	calls []string
	rules []rules.Names
	fail  string
}

func (f *recordingFilter) add(format string, args ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := fmt.Sprintf(format, args...)
	f.calls = append(f.calls, c)
	if f.fail != "" && strings.HasPrefix(c, f.fail) {
		return errors.New("full")
	}
	return nil
}

func (f *recordingFilter) SetFilter(n rules.Names) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = append(f.rules, n)
	return nil
}

func (f *recordingFilter) MarkHot(pid int32) error { return f.add("hot %d", pid) }
func (f *recordingFilter) Settled(pid int32, asOf, at uint64) error {
	if asOf == 0 || asOf > at {
		return f.add("settled %d with asOf %d after at %d", pid, asOf, at)
	}
	return f.add("settled %d at %d", pid, at)
}
func (f *recordingFilter) Cool(pid int32) error { return f.add("cool %d", pid) }
func (f *recordingFilter) MarkSticky(pid int32, children bool, by uint32) error {
	if by != 0 {
		return f.add("sticky %d children=%v by=%d", pid, children, by)
	}
	return f.add("sticky %d children=%v", pid, children)
}
func (f *recordingFilter) Unsticky(pid int32) error { return f.add("unsticky %d", pid) }

func (f *recordingFilter) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.calls, "; ")
}

// filteringSource is a fakeSource that filters in the kernel.
type filteringSource struct {
	fakeSource
	recordingFilter
}

// TestRunTellsTheFilter: a source that filters is told, when Run starts,
// the rules, the marks and the hot processes held, then every reload,
// mark, move (settled after the claim that read the task) and exit.
func TestRunTellsTheFilter(t *testing.T) {
	f := newFixture(t, "alice cpu users/alice\n@staff cpu staff\nalice:make cpu make\n", Config{})
	f.tasks.add(100, 1000, "/")
	mustMark(t, f.e, 300, 1, true)
	src := &filteringSource{}
	if err := f.e.Run(src); err != nil { // attaches, reads nothing, returns
		t.Fatal(err)
	}
	if len(src.rules) != 1 || fmt.Sprintf("%+v", src.rules[0]) != "{Any:false UIDs:[1000] GIDs:[50] Processes:[make] AllExecs:false}" {
		t.Errorf("rules told at start: %+v", src.rules)
	}
	f.e.Start()
	defer f.e.Stop()
	f.e.Handle(uidEvent(100))
	waitFor(t, "move", func() bool { return f.tasks.where(100, f.cpu) == "/users/alice" })
	waitFor(t, "done", func() bool { h, _ := f.e.hot.get(100); return h.state == hotDone })
	f.e.Handle(forkEvent(300, 301, kernel.Now())) // inherits the mark
	f.e.Handle(exitEvent(100))
	f.e.Handle(exitEvent(301))
	// A user's mark says who made it: the source must still report the
	// process's credential changes, which end it (issue 19, item 6).
	if added, err := f.e.Marks().Mark(302, 1, false, 1000); err != nil || !added {
		t.Fatalf("Mark(302) by uid 1000: added %v, %v", added, err)
	}
	f.e.SetRules(mustParse(t, f.e.cfg.Layout, "bob cpu b\n"), testResolver())
	got := src.String()
	// Not told what the source did itself: the hot mark of a process it
	// reported the UID event of, the marks of processes it reported the
	// EXIT of.
	re := regexp.MustCompile(`^sticky 300 children=true; settled 100 at [1-9][0-9]*; sticky 301 children=true; sticky 302 children=false by=1000$`)
	if !re.MatchString(got) {
		t.Errorf("filter heard %q, want %s", got, re)
	}
	if len(src.rules) != 2 || fmt.Sprint(src.rules[1].UIDs) != "[1001]" {
		t.Errorf("rules told after the reload: %+v", src.rules)
	}
}

// TestFilterRefusal: an update the filter refuses (a full table in the
// kernel) may lose events: it is counted and repaired by a rescan.
func TestFilterRefusal(t *testing.T) {
	f := newFixture(t, "alice cpu users/alice\n", Config{})
	f.tasks.add(100, 1000, "/other")
	src := &filteringSource{}
	src.fail = "settled 100"
	if err := f.e.Run(src); err != nil {
		t.Fatal(err)
	}
	f.e.Start()
	defer f.e.Stop()
	f.e.Handle(uidEvent(100))
	waitFor(t, "the refusal counted and repaired", func() bool {
		s := f.e.Stats()
		return s.FilterErrors >= 1 && s.Rescans >= 1
	})
	if !strings.Contains(f.log.String(), "the event source's filter refused an update") {
		t.Errorf("the refusal is not logged:\n%s", f.log.String())
	}
}

// TestReloadWidensFilter: after a reload, while the new rules are new, a
// source that filters reports every credential change (Names.Any), so that
// a task changing to ids only the next rules name is among the tasks those
// rules check again (a rules file seen half-written: TestReloadHalfWritten
// end to end); once the rules are settled, the filter is narrowed to their
// names.
func TestReloadWidensFilter(t *testing.T) {
	f := newFixture(t, "alice cpu users/alice\n", Config{})
	f.e.recent.window = 30 * time.Millisecond
	src := &filteringSource{}
	if err := f.e.Run(src); err != nil {
		t.Fatal(err)
	}
	f.e.Start()
	defer f.e.Stop()
	told := func() []rules.Names {
		src.mu.Lock()
		defer src.mu.Unlock()
		return slices.Clone(src.rules)
	}
	if r := told(); len(r) != 1 || r[0].Any {
		t.Fatalf("at start the filter is %+v, want alice's uid alone", r)
	}
	f.e.SetRules(mustParse(t, f.e.cfg.Layout, ""), testResolver()) // half-written
	if r := told(); len(r) != 2 || !r[1].Any {
		t.Fatalf("after the reload the filter is %+v, want every credential change", r)
	}
	waitFor(t, "the filter narrowed once the rules are settled", func() bool {
		r := told()
		return len(r) == 3 && !r[2].Any && len(r[2].UIDs) == 0
	})
}
