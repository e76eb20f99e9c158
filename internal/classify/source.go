package classify

import (
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/cgrulesengd/cgrulesengd/internal/kernel"
	"github.com/cgrulesengd/cgrulesengd/rules"
)

// Source is where the reader takes kernel events from: a *kernel.Conn in
// the daemon, a fake in tests.
type Source interface {
	// Read blocks until events are available and appends them to dst
	// (see kernel.Conn.Read); after Close it returns kernel.ErrClosed.
	Read(dst []kernel.Event) ([]kernel.Event, error)
}

// Filter is implemented by a Source that can leave out, before they reach
// user space, the events the engine does not need (issue 21's eBPF source,
// package bpfevents, whose control calls these are; the netlink source does
// not implement it and delivers everything). Run finds it with a type
// assertion on its Source, tells it at once the rules and the marks and
// hot processes held, and from then on every change:
//
//   - SetFilter: the ids and process names the rules in force can match
//     (after every SetRules). UID and GID events whose new ids are outside
//     them (unless Names.Any), and EXEC events of programs outside
//     Names.Processes (unless Names.AllExecs; none when neither is set), are
//     not needed. For the minute after a reload (recent.go) Names.Any is
//     set: every credential change is needed until the new rules settle.
//   - MarkHot: the engine is busy with process pid (a scan found it, or it
//     is queued again after it was settled): its FORKs are needed, and its
//     children's (they inherit the mark), until Settled. Not called for a
//     process queued by an event the source reported (a UID, GID or EXEC,
//     or the FORK of a child it followed): the source marked it hot itself
//     when it reported the event, and the call would delay the move.
//   - Settled: the engine classified pid with what it read of it at asOf
//     (CLOCK_MONOTONIC ns; no later than its read of /proc) and finished at
//     at (the time of the move): its FORKs stamped later than at plus
//     Config.ForkSlack are not needed, unless its credentials change after
//     asOf.
//   - Cool: pid left the hot table (expired, dropped), except after its
//     EXIT: the source dropped its marks itself when it reported the EXIT,
//     and the pid may belong to a new process it marked since.
//   - MarkSticky and Unsticky: the sticky marks. A marked process's UID,
//     GID and EXEC events are not needed; with children, its FORKs are (the
//     child inherits the mark, and the engine learns of it from the FORK).
//     As with Cool, a mark dropped at EXIT is not unmarked. Except (issue
//     19, item 6): a mark made by a user other than root (by, the uid of
//     the client that made it, is not 0) is dropped when the process's
//     uids change (a set-uid program), so that process's UID events are
//     needed.
//   - EXIT events are needed for every process that is hot or marked, and
//     for no other.
//
// Losing a needed event is repaired like a kernel overflow: the source
// delivers kernel.EventOverflow once the loss is over. A call that fails
// (a full table in the kernel) is counted (Stats.FilterErrors) and repaired
// the same way, with a rescan.
//
// Every call must be cheap (a map update) and must not block or call back
// into the engine: they are made on the event reader, the workers and the
// scans, the hot and mark calls under the lock of the table that changed
// (so that they arrive in the order of the changes).
type Filter interface {
	SetFilter(rules.Names) error
	MarkHot(pid int32) error
	Settled(pid int32, asOf, at uint64) error
	Cool(pid int32) error
	MarkSticky(pid int32, children bool, by uint32) error
	Unsticky(pid int32) error
}

// filterLink is how the hot table and the marks reach the Filter: failed
// is told of every call the filter refused.
type filterLink struct {
	f      Filter
	failed func(error)
}

// check passes err, when there is one, to failed.
func (l *filterLink) check(err error) {
	if err != nil {
		l.failed(err)
	}
}

// maxReadFailures is how many failed reads in a row end Run.
const maxReadFailures = 100

// readBatch is the number of events one Read may return.
const readBatch = 256

// Run is the netlink reader: it reads src and hands each read's events to
// HandleBatch, until src is closed (nil) or fails maxReadFailures times in
// a row (the last error). A failed read may have lost events: it requests a
// rescan, and the next read comes 10 ms later. Run is the one goroutine
// that calls HandleBatch; it waits on nothing but src, and on the batching
// policy's short pauses under a storm (see batcher).
func (e *Engine) Run(src Source) error {
	if f, ok := src.(Filter); ok {
		e.attach(f)
	}
	buf := make([]kernel.Event, 0, readBatch)
	failures := 0
	var b batcher
	for {
		evs, err := src.Read(buf[:0])
		if err != nil {
			if errors.Is(err, kernel.ErrClosed) {
				return nil
			}
			failures++
			if failures >= maxReadFailures {
				return fmt.Errorf("%d reads failed in a row, the last: %w", failures, err)
			}
			e.log.Errorf("reading kernel events: %v", err)
			e.RequestRescan()
			time.Sleep(10 * time.Millisecond)
			continue
		}
		failures = 0
		e.HandleBatch(evs)
		now := time.Now()
		if d := b.pause(len(evs), cap(buf), now); d > 0 {
			time.Sleep(d)
		} else if b.yield(now) {
			runtime.Gosched()
		}
	}
}

// Reader batching. Each wake-up of the reader costs a context switch, which
// on a virtual machine is tens of microseconds; when events arrive one at a
// time faster than batchRate per second (a fork storm), the reader pauses
// batchDelay between reads so that each wake-up handles a batch, and so
// that a short-lived task's EXIT comes in the same batch as its credential
// change (HandleBatch then drops the classification). Below that rate every
// event is handled as soon as it arrives. (A/B under the benchmark's storm,
// same hour: a 2 ms pause gave a storm p50 of 2.5-2.8 ms, 500 µs 1.3-1.4 ms
// for the same CPU per event, 250 and 100 µs no better; no pause at all
// cost 3-4 times the CPU.)
const (
	batchRate   = 5000 // events per second
	batchDelay  = 500 * time.Microsecond
	batchWindow = 50 * time.Millisecond
)

// batcher is the batching policy's state: the event rate over the current
// window, and whether the last full window was above batchRate; and when
// the reader last yielded.
type batcher struct {
	winStart  time.Time
	winEvents int
	batching  bool
	lastYield time.Time
}

// The reader yields its processor (runtime.Gosched) after a batch when it
// has not been rescheduled for yieldEvery. Why: a goroutine that only ever
// returns from one system call to make the next is never rescheduled, and
// the runtime's monitor thread (sysmon) takes the processor of a goroutine
// that has run for 10 ms without being rescheduled (forcePreemptNS) as soon
// as it finds it in a system call. With both processors idle sysmon then
// sleeps on a futex, and the reader, back from its receive with the next
// event, must find an idle processor and wake sysmon first: a futex wake,
// which on a virtual machine costs the waker tens of microseconds, before
// each move, then sysmon's short naps while the reader works
// (docs/performance.md, "The fast path", has the A/B). The yield itself
// wakes one idle thread (the runtime's wakep), after the moves; 5 ms keeps
// that rare at a thousand moves per second while staying under sysmon's
// 10 ms. A pause
// (time.Sleep) reschedules too, so a storm never yields.
const yieldEvery = 5 * time.Millisecond

// yield records a batch handled at now without a pause and reports whether
// the reader should yield its processor (see yieldEvery).
func (b *batcher) yield(now time.Time) bool {
	if now.Sub(b.lastYield) < yieldEvery {
		return false
	}
	b.lastYield = now
	return true
}

// pause records a read of n events (into a buffer of capacity max) at now
// and returns how long to wait before the next read: batchDelay while
// batching, unless the read came back at least half full (the queue holds
// a batch already), else 0.
func (b *batcher) pause(n, max int, now time.Time) time.Duration {
	if b.winStart.IsZero() {
		b.winStart = now
	}
	b.winEvents += n
	if el := now.Sub(b.winStart); el >= batchWindow {
		b.batching = float64(b.winEvents)/el.Seconds() > batchRate
		b.winStart, b.winEvents = now, 0
	}
	if b.batching && n < max/2 {
		return batchDelay
	}
	return 0
}
