package classify

import (
	"testing"
)

// The hot table's transitions, one at a time (the engine tests exercise
// them together).

func mustState(t *testing.T, h *hotTable, pid int32, want uint8) hotEntry {
	t.Helper()
	e, ok := h.get(pid)
	if want == 0 {
		if ok {
			t.Fatalf("pid %d: entry %+v, want none", pid, e)
		}
		return e
	}
	if !ok || e.state != want {
		t.Fatalf("pid %d: entry %+v (present %v), want state %d", pid, e, ok, want)
	}
	return e
}

func TestHotNoted(t *testing.T) {
	h := newHotTable(2)
	if r := h.noted(10, 10); r != noteQueued {
		t.Fatalf("first note: %v, want queued", r)
	}
	mustState(t, h, 10, stQueued)
	if r := h.noted(10, 11); r != noteCoalesced {
		t.Fatalf("second note: %v, want coalesced", r)
	}
	if e := mustState(t, h, 10, stQueued); e.tid != 11 {
		t.Errorf("the reporting thread is not kept: %+v", e)
	}
	if r := h.noted(20, 0); r != noteQueued {
		t.Fatal(r)
	}
	if r := h.noted(30, 30); r != noteFull {
		t.Fatalf("note beyond the bound: %v, want full", r)
	}
	mustState(t, h, 30, 0)
	// A known pid is noted even when the table is full.
	if _, _, ok := h.claimed(10); !ok {
		t.Fatal("claim failed")
	}
	if r := h.noted(10, 10); r != noteAgain {
		t.Fatalf("note while running: %v, want again", r)
	}
	if e := mustState(t, h, 10, stRunning); !e.again {
		t.Errorf("again not set: %+v", e)
	}
}

func TestHotClaimedFinished(t *testing.T) {
	h := newHotTable(10)
	h.noted(10, 12) // thread 12 reported
	tid, exact, ok := h.claimed(10)
	if !ok || tid != 12 || exact {
		t.Fatalf("claimed: tid %d exact %v ok %v", tid, exact, ok)
	}
	if e := mustState(t, h, 10, stRunning); e.tid != 0 {
		t.Errorf("the thread is not consumed: %+v", e)
	}
	if r := h.finished(10, tid, true, false, 1000); r != finishDone {
		t.Fatalf("finished: %v, want done", r)
	}
	if e := mustState(t, h, 10, stDone); e.doneAt != 1000 || !e.moved {
		t.Errorf("done entry %+v", e)
	}
	// Noted again after done: queued, and the move is remembered (exact).
	if r := h.noted(10, 10); r != noteQueued {
		t.Fatal(r)
	}
	if _, exact, _ := h.claimed(10); !exact {
		t.Error("a task the daemon moved while hot is not exact")
	}
	// An event while running: run again.
	h.noted(10, 10)
	if r := h.finished(10, 0, false, false, 2000); r != finishAgain {
		t.Fatalf("finished with an event meanwhile: %v, want again", r)
	}
	if e := mustState(t, h, 10, stQueued); e.again {
		t.Errorf("again not cleared: %+v", e)
	}
	// A retry keeps it queued, with its thread for the next run.
	h.claimed(10)
	if r := h.finished(10, 14, false, true, 3000); r != finishRetry {
		t.Fatalf("finished with retry: %v", r)
	}
	if e := mustState(t, h, 10, stQueued); e.tid != 14 {
		t.Errorf("retry entry %+v, want tid 14 kept", e)
	}
}

func TestHotExited(t *testing.T) {
	h := newHotTable(10)
	// Exit of a queued task: the claim finds nothing to do, the entry goes.
	h.noted(10, 10)
	h.exited(10)
	if _, _, ok := h.claimed(10); ok {
		t.Fatal("claimed an exited task")
	}
	mustState(t, h, 10, 0)
	// Exit while running: dropped when finished.
	h.noted(20, 20)
	h.claimed(20)
	h.exited(20)
	if r := h.finished(20, 0, true, false, 1); r != finishDone {
		t.Fatal(r)
	}
	mustState(t, h, 20, 0)
	// An event for an exited running pid is a new process on a reused pid:
	// it runs again, without the old entry's thread or move.
	h.noted(30, 31)
	h.claimed(30)
	h.finished(30, 0, true, false, 1)
	h.noted(30, 30)
	h.claimed(30)
	h.exited(30)
	h.noted(30, 30)
	e := mustState(t, h, 30, stRunning)
	if !e.again || e.exited || e.moved {
		t.Errorf("reused pid's entry %+v, want again, not exited, not moved", e)
	}
	// Exit of a done task drops it.
	h.noted(40, 40)
	h.claimed(40)
	h.finished(40, 0, true, false, 1)
	h.exited(40)
	mustState(t, h, 40, 0)
	// dropExitedQueued: only queued and exited.
	h.noted(50, 50)
	if h.dropExitedQueued(50) {
		t.Error("dropped a live queued task")
	}
	h.exited(50)
	if !h.dropExitedQueued(50) {
		t.Error("kept an exited queued task")
	}
	mustState(t, h, 50, 0)
}

func TestHotFollows(t *testing.T) {
	h := newHotTable(10)
	const slack = 20
	if h.follows(10, 0, slack) {
		t.Error("followed the fork of a cold parent")
	}
	h.noted(10, 10)
	if !h.follows(10, 5, slack) {
		t.Error("did not follow the fork of a queued parent")
	}
	h.claimed(10)
	if !h.follows(10, 5, slack) {
		t.Error("did not follow the fork of a running parent")
	}
	h.finished(10, 0, true, false, 1000)
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
	h.noted(1, 1) // queued: never expires
	h.noted(2, 2)
	h.claimed(2)
	h.finished(2, 0, true, false, 100)
	h.noted(3, 3)
	h.claimed(3)
	h.finished(3, 0, true, false, 900)
	h.expired(1000, 500)
	mustState(t, h, 1, stQueued)
	mustState(t, h, 2, 0)
	mustState(t, h, 3, stDone)
	// A burst, then quiet: the map is rebuilt once it is down to an eighth.
	for pid := int32(100); pid < 100+2048; pid++ {
		h.noted(pid, pid)
		h.claimed(pid)
		h.finished(pid, 0, false, false, 2000)
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

func TestHotScan(t *testing.T) {
	h := newHotTable(10)
	// A task nobody owns: classified by the scan, dropped if nothing happened.
	if _, ok := h.scanClaimed(1); !ok {
		t.Fatal("scan could not claim a cold pid")
	}
	if r := h.scanFinished(1, false, false, 10); r != finishDone {
		t.Fatal(r)
	}
	mustState(t, h, 1, 0)
	// Moved: stays done for its forks.
	h.scanClaimed(2)
	h.scanFinished(2, true, false, 10)
	if e := mustState(t, h, 2, stDone); !e.moved || e.doneAt != 10 {
		t.Errorf("entry %+v", e)
	}
	// A second scan of a task the daemon moved: exact.
	if exact, ok := h.scanClaimed(2); !ok || !exact {
		t.Errorf("scanClaimed after a move: exact %v ok %v", exact, ok)
	}
	h.scanFinished(2, false, false, 20)
	// Queued by a worker: skipped. Running: skipped, and runs again.
	h.noted(3, 3)
	if _, ok := h.scanClaimed(3); ok {
		t.Error("the scan took a queued pid")
	}
	h.claimed(3)
	if _, ok := h.scanClaimed(3); ok {
		t.Error("the scan took a running pid")
	}
	if e := mustState(t, h, 3, stRunning); !e.again {
		t.Error("a running pid the scan skipped will not run again")
	}
	// An event during the scan's classification: queued again.
	h.scanClaimed(4)
	h.noted(4, 4)
	if r := h.scanFinished(4, false, false, 30); r != finishAgain {
		t.Fatalf("scanFinished after an event: %v, want again", r)
	}
	mustState(t, h, 4, stQueued)
	// EINVAL during the scan: queued for a retry.
	h.scanClaimed(5)
	if r := h.scanFinished(5, false, true, 40); r != finishRetry {
		t.Fatalf("scanFinished with retry: %v", r)
	}
	mustState(t, h, 5, stQueued)
}
