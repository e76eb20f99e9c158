package classify

import "sync/atomic"

// counters are updated from the reader, the workers and the rescan loop.
type counters struct {
	events, creds, execs                  atomic.Uint64
	forksFollowed, childrenFollowed       atomic.Uint64
	coalesced, overflows, queueFull       atomic.Uint64
	rescans, scanned                      atomic.Uint64
	moves, created, retries, gone, errors atomic.Uint64
	inline                                atomic.Uint64

	stickyAdded, stickyRefused, stickySkipped, stickyFull atomic.Uint64
}

// Stats is a snapshot of the engine's counters since start.
type Stats struct {
	Events           uint64 // kernel events handed to Handle (including overflow reports)
	Creds            uint64 // UID and GID events
	Execs            uint64 // EXEC events acted on (rules name processes)
	ForksFollowed    uint64 // children classified because their parent was hot at fork time
	ChildrenFollowed uint64 // children found in /proc right after their parent was moved
	Coalesced        uint64 // events merged into an already queued classification
	Overflows        uint64 // ENOBUFS reports from the kernel (events lost)
	QueueFull        uint64 // events dropped because the classification queue was full
	Rescans          uint64 // full /proc reconciliations after overflows (not the start-up scan)
	Scanned          uint64 // tasks looked at by scans
	Moves            uint64 // successful cgroup.procs writes
	Created          uint64 // template destinations created
	Retries          uint64 // moves retried because the task was still being created
	Gone             uint64 // tasks that exited before they could be read or moved
	Errors           uint64 // everything else that failed (logged; a recurring one at most once a minute)
	Inline           uint64 // classifications the reader ran itself instead of a worker

	// Sticky marks (cgexec, cgclassify --sticky; see marks.go).
	StickyMarks   uint64 // marks held now
	StickyAdded   uint64 // marks made, through the socket or inherited at FORK
	StickyRefused uint64 // socket requests refused (not allowed, malformed, too slow)
	StickySkipped uint64 // events and classifications (scans, queued jobs) not acted on: the task is sticky
	StickyFull    uint64 // marks not made because the table was full (Config.MaxMarks)
}

// Stats returns a snapshot of the counters.
func (e *Engine) Stats() Stats {
	c := &e.stats
	return Stats{
		Events: c.events.Load(), Creds: c.creds.Load(), Execs: c.execs.Load(),
		ForksFollowed: c.forksFollowed.Load(), ChildrenFollowed: c.childrenFollowed.Load(),
		Coalesced: c.coalesced.Load(), Overflows: c.overflows.Load(), QueueFull: c.queueFull.Load(),
		Rescans: c.rescans.Load(), Scanned: c.scanned.Load(),
		Moves: c.moves.Load(), Created: c.created.Load(), Retries: c.retries.Load(),
		Gone: c.gone.Load(), Errors: c.errors.Load(), Inline: c.inline.Load(),
		StickyMarks: uint64(e.marks.len()), StickyAdded: c.stickyAdded.Load(), StickyRefused: c.stickyRefused.Load(),
		StickySkipped: c.stickySkipped.Load(), StickyFull: c.stickyFull.Load(),
	}
}
