package classify

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cgrulesengd/cgrulesengd/internal/kernel"
	"golang.org/x/sys/unix"
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
