package classify

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
)

// entryString renders pid's entry for the transition table: its state and
// what it carries ("absent", "queued tid=11", "done moved at=1000").
func entryString(h *hotTable, pid int32) string {
	e, ok := h.get(pid)
	if !ok {
		return "absent"
	}
	out := []string{e.state.String()}
	if e.tid != 0 {
		out = append(out, fmt.Sprintf("tid=%d", e.tid))
	}
	if e.again {
		out = append(out, "again")
	}
	if e.exited {
		out = append(out, "exited")
	}
	if e.moved {
		out = append(out, "moved")
	}
	if e.state == hotDone {
		out = append(out, fmt.Sprintf("at=%d", e.doneAt))
	}
	return strings.Join(out, " ")
}

var (
	moved = outcome{moved: true}
	retry = outcome{retry: true}
	left  = outcome{}
)

// TestHotTransitions walks every transition of hot.go's diagram, one step
// per row: what the transition returned, and the entry of the row's pid
// afterwards. A row with a bound starts a fresh table.
func TestHotTransitions(t *testing.T) {
	var h *hotTable
	fresh := func(max int) func() string {
		return func() string { h = newHotTable(max); return "" }
	}
	noted := func(pid, tid int32) func() string {
		return func() string { return [...]string{"queued", "coalesced", "again", "full"}[h.noted(pid, tid, false)] }
	}
	claimed := func(pid int32) func() string {
		return func() string {
			c, ok := h.claimed(pid)
			if !ok {
				return "gone"
			}
			return fmt.Sprintf("tid=%d exact=%v carried=%v", c.tid, c.exact, c.carried)
		}
	}
	handedOff := func(pid, tid int32) func() string {
		return func() string { h.handedOff(pid, tid); return "" }
	}
	finishName := func(r finishResult) string { return [...]string{"done", "again", "retry"}[r] }
	finished := func(pid, tid int32, out outcome, at uint64) func() string {
		return func() string { return finishName(h.finished(pid, tid, out, at)) }
	}
	scanClaimed := func(pid int32) func() string {
		return func() string { exact, ok := h.scanClaimed(pid); return fmt.Sprintf("exact=%v ok=%v", exact, ok) }
	}
	scanFinished := func(pid int32, out outcome, at uint64) func() string {
		return func() string { return finishName(h.scanFinished(pid, out, at)) }
	}
	exited := func(pid int32) func() string { return func() string { h.exited(pid); return "" } }
	dropExited := func(pid int32) func() string { return func() string { return fmt.Sprint(h.dropExitedQueued(pid)) } }
	forget := func(pid int32) func() string { return func() string { h.forget(pid); return "" } }
	expired := func(now, window uint64) func() string {
		return func() string { return fmt.Sprintf("rebuilt=%v", h.expired(now, window)) }
	}

	steps := []struct {
		name  string
		pid   int32
		do    func() string
		want  string
		entry string // pid's entry afterwards
	}{
		// noted, on a table of two.
		{"a table of two", 0, fresh(2), "", "absent"},
		{"first note", 10, noted(10, 10), "queued", "queued"},
		{"second note: the reporting thread is kept", 10, noted(10, 11), "coalesced", "queued tid=11"},
		{"another pid", 20, noted(20, 0), "queued", "queued"},
		{"note beyond the bound", 30, noted(30, 30), "full", "absent"},
		{"a known pid is noted even when the table is full: claim", 10, claimed(10), "tid=11 exact=false carried=false", "running"},
		{"note while running: again", 10, noted(10, 10), "again", "running again"},

		// claimed and finished.
		{"a table of ten", 0, fresh(10), "", "absent"},
		{"thread 12 reported", 10, noted(10, 12), "queued", "queued tid=12"},
		{"claimed: the thread is consumed", 10, claimed(10), "tid=12 exact=false carried=false", "running"},
		{"finished, moved", 10, finished(10, 12, moved, 1000), "done", "done moved at=1000"},
		{"noted again after done", 10, noted(10, 10), "queued", "queued moved"},
		{"a task the daemon moved while hot is exact", 10, claimed(10), "tid=0 exact=true carried=false", "running moved"},
		{"an event while running", 10, noted(10, 10), "again", "running again moved"},
		{"finished with an event meanwhile: queued again", 10, finished(10, 0, left, 2000), "again", "queued moved"},
		{"claimed again", 10, claimed(10), "tid=0 exact=true carried=false", "running moved"},
		{"a retry keeps it queued, with its thread for the next run", 10, finished(10, 14, retry, 3000), "retry", "queued tid=14 moved"},

		// handedOff: the reader gives its read to a worker.
		{"queued by thread 41", 40, noted(40, 41), "queued", "queued tid=41"},
		{"the reader claims it", 40, claimed(40), "tid=41 exact=false carried=false", "running"},
		{"and hands it off, keeping the thread", 40, handedOff(40, 41), "", "handedOff tid=41"},
		{"an event for a handed-off pid: the carried read is stale", 40, noted(40, 40), "coalesced", "queued tid=41"},
		{"the worker reads again", 40, claimed(40), "tid=41 exact=false carried=false", "running"},
		{"queued", 50, noted(50, 50), "queued", "queued"},
		{"claimed by the reader", 50, claimed(50), "tid=0 exact=false carried=false", "running"},
		{"handed off", 50, handedOff(50, 0), "", "handedOff"},
		{"the worker applies what the reader read", 50, claimed(50), "tid=0 exact=false carried=true", "running"},
		{"queued", 60, noted(60, 60), "queued", "queued"},
		{"claimed by the reader", 60, claimed(60), "tid=0 exact=false carried=false", "running"},
		{"a scan meanwhile skips it, and it must run again", 60, scanClaimed(60), "exact=false ok=false", "running again"},
		{"so the hand-off is read again", 60, handedOff(60, 0), "", "queued"},
		{"queued", 70, noted(70, 70), "queued", "queued"},
		{"claimed", 70, claimed(70), "tid=0 exact=false carried=false", "running"},
		{"handed off", 70, handedOff(70, 0), "", "handedOff"},
		{"exits", 70, exited(70), "", "handedOff exited"},
		{"in the same batch: dropped", 70, dropExited(70), "true", "absent"},

		// exited.
		{"a table of ten", 0, fresh(10), "", "absent"},
		{"queued", 10, noted(10, 10), "queued", "queued"},
		{"exit of a queued task", 10, exited(10), "", "queued exited"},
		{"the claim finds nothing to do, the entry goes", 10, claimed(10), "gone", "absent"},
		{"queued", 20, noted(20, 20), "queued", "queued"},
		{"claimed", 20, claimed(20), "tid=0 exact=false carried=false", "running"},
		{"exit while running", 20, exited(20), "", "running exited"},
		{"dropped when finished", 20, finished(20, 0, moved, 1), "done", "absent"},
		{"queued by thread 31", 30, noted(30, 31), "queued", "queued tid=31"},
		{"claimed", 30, claimed(30), "tid=31 exact=false carried=false", "running"},
		{"moved", 30, finished(30, 0, moved, 1), "done", "done moved at=1"},
		{"noted", 30, noted(30, 30), "queued", "queued moved"},
		{"claimed", 30, claimed(30), "tid=0 exact=true carried=false", "running moved"},
		{"exits while running", 30, exited(30), "", "running exited moved"},
		{"an event for an exited running pid is a new process on a reused pid: again, without the old thread or move",
			30, noted(30, 30), "again", "running again"},
		{"queued", 40, noted(40, 40), "queued", "queued"},
		{"claimed", 40, claimed(40), "tid=0 exact=false carried=false", "running"},
		{"moved", 40, finished(40, 0, moved, 1), "done", "done moved at=1"},
		{"exit of a done task drops it", 40, exited(40), "", "absent"},
		{"queued", 50, noted(50, 50), "queued", "queued"},
		{"a live queued task is not dropped", 50, dropExited(50), "false", "queued"},
		{"exits", 50, exited(50), "", "queued exited"},
		{"an exited queued task is", 50, dropExited(50), "true", "absent"},
		{"queued", 80, noted(80, 80), "queued", "queued"},
		{"forgotten (its job could not be queued)", 80, forget(80), "", "absent"},

		// expired.
		{"queued", 90, noted(90, 90), "queued", "queued"},
		{"claimed", 90, claimed(90), "tid=0 exact=false carried=false", "running"},
		{"done at 100", 90, finished(90, 0, moved, 100), "done", "done moved at=100"},
		{"not expired within the window", 90, expired(500, 500), "rebuilt=false", "done moved at=100"},
		{"expired after it", 90, expired(1000, 500), "rebuilt=false", "absent"},

		// scans.
		{"a table of ten", 0, fresh(10), "", "absent"},
		{"the scan claims a cold pid", 1, scanClaimed(1), "exact=false ok=true", "running"},
		{"nothing happened: dropped", 1, scanFinished(1, left, 10), "done", "absent"},
		{"scan claim", 2, scanClaimed(2), "exact=false ok=true", "running"},
		{"moved: stays done for its forks", 2, scanFinished(2, moved, 10), "done", "done moved at=10"},
		{"a second scan of a task the daemon moved: exact", 2, scanClaimed(2), "exact=true ok=true", "running moved"},
		{"left alone this time: it leaves the table", 2, scanFinished(2, left, 20), "done", "absent"},
		{"queued by a worker", 3, noted(3, 3), "queued", "queued"},
		{"the scan skips a queued pid", 3, scanClaimed(3), "exact=false ok=false", "queued"},
		{"the worker claims it", 3, claimed(3), "tid=0 exact=false carried=false", "running"},
		{"the scan skips a running pid, which runs again", 3, scanClaimed(3), "exact=false ok=false", "running again"},
		{"scan claim", 4, scanClaimed(4), "exact=false ok=true", "running"},
		{"an event during the scan's classification", 4, noted(4, 4), "again", "running again"},
		{"queued again", 4, scanFinished(4, left, 30), "again", "queued"},
		{"scan claim", 5, scanClaimed(5), "exact=false ok=true", "running"},
		{"EINVAL during the scan: queued for a retry", 5, scanFinished(5, retry, 40), "retry", "queued"},
	}
	for i, s := range steps {
		if got := s.do(); got != s.want {
			t.Fatalf("step %d (%s): got %q, want %q", i, s.name, got, s.want)
		}
		if got := entryString(h, s.pid); got != s.entry {
			t.Fatalf("step %d (%s): pid %d is %q, want %q", i, s.name, s.pid, got, s.entry)
		}
	}
}

func TestHotFollows(t *testing.T) {
	h := newHotTable(10)
	const slack = 20
	if h.follows(10, 0, slack) {
		t.Error("followed the fork of a cold parent")
	}
	h.noted(10, 10, false)
	if !h.follows(10, 5, slack) {
		t.Error("did not follow the fork of a queued parent")
	}
	h.claimed(10)
	if !h.follows(10, 5, slack) {
		t.Error("did not follow the fork of a running parent")
	}
	h.handedOff(10, 0)
	if !h.follows(10, 5, slack) {
		t.Error("did not follow the fork of a handed-off parent")
	}
	h.claimed(10)
	h.finished(10, 0, moved, 1000)
	for _, c := range []struct {
		ts   uint64
		want bool
	}{{500, true}, {1019, true}, {1020, false}, {5000, false}} {
		if got := h.follows(10, c.ts, slack); got != c.want {
			t.Errorf("fork at %d after a move at 1000 (slack %d): %v, want %v", c.ts, slack, got, c.want)
		}
	}
}

func TestHotExpired(t *testing.T) {
	h := newHotTable(1 << 16)
	h.noted(1, 1, false) // queued: never expires
	h.noted(2, 2, false)
	h.claimed(2)
	h.finished(2, 0, moved, 100)
	h.noted(3, 3, false)
	h.claimed(3)
	h.finished(3, 0, moved, 900)
	h.expired(1000, 500)
	if got := entryString(h, 1); got != "queued" {
		t.Errorf("pid 1 is %q, want queued", got)
	}
	if got := entryString(h, 2); got != "absent" {
		t.Errorf("pid 2 is %q, want absent", got)
	}
	if got := entryString(h, 3); got != "done moved at=900" {
		t.Errorf("pid 3 is %q, want done", got)
	}
	// A burst, then quiet: the map is rebuilt once it is down to an eighth.
	for pid := int32(100); pid < 100+2048; pid++ {
		h.noted(pid, pid, false)
		h.claimed(pid)
		h.finished(pid, 0, left, 2000)
	}
	if h.expired(2100, 500) {
		t.Error("rebuilt while the burst's entries are young")
	}
	if !h.expired(5000, 500) {
		t.Error("not rebuilt after the burst expired")
	}
	if n := h.len(); n != 1 {
		t.Errorf("%d entries left, want 1 (the queued one)", n)
	}
	if h.expired(6000, 500) {
		t.Error("rebuilt again with nothing to give back")
	}
}

// TestHotFilter: a filter hears when a pid becomes hot, when its
// classification ends (settled, with the time of the claim that read it
// and of its move), when it is queued again after that, and when it leaves
// the table; attached late, it hears what the table holds.
func TestHotFilter(t *testing.T) {
	h := newHotTable(10)
	h.noted(5, 5, false) // before the filter
	f := &recordingFilter{}
	h.attach(&filterLink{f: f, failed: func(err error) { t.Error(err) }})
	h.noted(10, 10, false)
	h.noted(10, 11, false) // coalesced: nothing new
	h.claimed(10)
	asOf := h.m[10].asOf
	h.finished(10, 0, moved, asOf+1000)
	h.noted(10, 10, false) // hot again
	h.claimed(10)
	asOf2 := h.m[10].asOf
	h.finished(10, 0, left, asOf2+1000)
	h.exited(10)
	h.scanClaimed(20)
	h.scanFinished(20, left, 5)
	want := fmt.Sprintf("hot 5; hot 10; settled 10 at %d; hot 10; settled 10 at %d; hot 20; cool 20", asOf+1000, asOf2+1000)
	if got := f.String(); got != want {
		t.Errorf("filter heard %q, want %q", got, want)
	}
}

// TestHotFilterNotToldWhatTheSourceDid: a pid noted for an event the
// source reported (which marked it hot itself) is not marked hot again,
// and one dropped after its EXIT is not cooled (the source dropped its
// marks when it reported the EXIT, and the pid may be a new process's by
// now); its settle is still told, and a pid that expires is cooled.
func TestHotFilterNotToldWhatTheSourceDid(t *testing.T) {
	h := newHotTable(10)
	f := &recordingFilter{}
	h.attach(&filterLink{f: f, failed: func(err error) { t.Error(err) }})
	h.noted(10, 10, true)
	h.claimed(10)
	h.finished(10, 0, moved, h.m[10].asOf+1000)
	h.exited(10) // done: dropped at once
	h.noted(11, 11, true)
	h.exited(11) // queued: dropped when it ends
	h.claimed(11)
	h.noted(12, 12, true)
	h.claimed(12)
	at := h.m[12].asOf + 1000
	h.finished(12, 0, moved, at)
	h.expired(at+1000, 500)
	want := regexp.MustCompile(fmt.Sprintf(`^settled 10 at \d+; settled 12 at %d; cool 12$`, at))
	if got := f.String(); !want.MatchString(got) {
		t.Errorf("filter heard %q, want %s", got, want)
	}
	if n := len(h.m); n != 0 {
		t.Errorf("%d entries left", n)
	}
}
