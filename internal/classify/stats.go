package classify

import (
	"fmt"
	"strings"
	"sync/atomic"
)

// counters are updated from the reader, the workers and the rescan loop.
type counters struct {
	events, creds, execs                  atomic.Uint64
	forksFollowed, childrenFollowed       atomic.Uint64
	coalesced, overflows, queueFull       atomic.Uint64
	rescans, scanned                      atomic.Uint64
	moves, created, retries, gone, errors atomic.Uint64
	inline                                atomic.Uint64

	byKind [NumKinds]atomic.Uint64
	moved  [NumMoveReasons]atomic.Uint64
	failed [NumFailCauses]atomic.Uint64
	left   [NumLeftReasons]atomic.Uint64
}

// Event kinds, for Stats.EventsByKind.
const (
	KindFork = iota
	KindExec
	KindUID
	KindGID
	KindExit
	KindOverflow // the kernel's loss markers
	NumKinds
)

// EventKindNames name the event kinds (metric labels).
var EventKindNames = [NumKinds]string{"fork", "exec", "uid", "gid", "exit", "overflow"}

// Why a task was moved, for Stats.Moved.
const (
	MovedCredentials = iota // a UID or GID event
	MovedExec               // an EXEC event (rules that name programs)
	MovedForkRace           // forked before its parent's move, followed
	MovedStartupScan        // the scan of every task at start
	MovedRepairScan         // a rescan after lost events
	NumMoveReasons
)

// MoveReasonNames name the reasons a task was moved.
var MoveReasonNames = [NumMoveReasons]string{"credentials", "exec", "fork_race", "startup_scan", "repair_scan"}

// Why a cgroup.procs write failed, for Stats.Failed.
const (
	FailedTaskGone      = iota // the task exited first (ESRCH)
	FailedCgroupMissing        // the destination does not exist (and could not be created)
	FailedRetries              // EINVAL every time: the task never finished being created
	FailedOther                // anything else (logged)
	NumFailCauses
)

// FailCauseNames name the causes of failed moves.
var FailCauseNames = [NumFailCauses]string{"task_gone", "cgroup_missing", "einval_retries", "other"}

// Why a classified task was left where it is, for Stats.LeftAlone.
const (
	LeftNoRule     = iota // no rule matches its ids and process
	LeftIgnore            // an ignore or ignore_rt rule holds
	LeftInPlace           // it is where its rule puts it already
	LeftOutOfScope        // outside --cgroup-root or the cgroup namespace, or a kernel thread
	LeftSticky            // marked sticky (cgexec, cgclassify --sticky): also its events
	NumLeftReasons
)

// LeftReasonNames name the reasons a task was left alone.
var LeftReasonNames = [NumLeftReasons]string{"no_rule", "ignore", "in_place", "out_of_scope", "sticky"}

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

	EventsByKind [NumKinds]uint64       // kernel events received, by kind (others are not asked for)
	Moved        [NumMoveReasons]uint64 // tasks moved (one or more writes), by reason
	Failed       [NumFailCauses]uint64  // cgroup.procs writes that failed, by cause
	LeftAlone    [NumLeftReasons]uint64 // classifications that moved nothing, by reason

	DestinationsDropped uint64 // destinations not recorded for the metrics (the set is bounded)
}

// Stats returns a snapshot of the counters.
func (e *Engine) Stats() Stats {
	c := &e.stats
	s := Stats{
		Events: c.events.Load(), Creds: c.creds.Load(), Execs: c.execs.Load(),
		ForksFollowed: c.forksFollowed.Load(), ChildrenFollowed: c.childrenFollowed.Load(),
		Coalesced: c.coalesced.Load(), Overflows: c.overflows.Load(), QueueFull: c.queueFull.Load(),
		Rescans: c.rescans.Load(), Scanned: c.scanned.Load(),
		Moves: c.moves.Load(), Created: c.created.Load(), Retries: c.retries.Load(),
		Gone: c.gone.Load(), Errors: c.errors.Load(), Inline: c.inline.Load(),
		StickyMarks: uint64(e.marks.t.len()), StickyAdded: e.marks.added.Load(), StickyRefused: e.marks.refused.Load(),
		StickySkipped: e.marks.skipped.Load(), StickyFull: e.marks.full.Load(),
		DestinationsDropped: e.dests.dropped.Load(),
	}
	load := func(dst []uint64, src []atomic.Uint64) {
		for i := range src {
			dst[i] = src[i].Load()
		}
	}
	load(s.EventsByKind[:], c.byKind[:])
	load(s.Moved[:], c.moved[:])
	load(s.Failed[:], c.failed[:])
	load(s.LeftAlone[:], c.left[:])
	s.LeftAlone[LeftSticky] += s.StickySkipped
	return s
}

// Latency is the distribution of event-to-moved times so far (see
// LatencyBounds).
func (e *Engine) Latency() Latency { return e.latency.snapshot() }

// String renders stats as key=value pairs for logs.
func (s Stats) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "events=%d creds=%d execs=%d forks_followed=%d children_followed=%d coalesced=%d overflows=%d queue_full=%d rescans=%d scanned=%d moves=%d created=%d retries=%d gone=%d errors=%d inline=%d",
		s.Events, s.Creds, s.Execs, s.ForksFollowed, s.ChildrenFollowed, s.Coalesced, s.Overflows, s.QueueFull, s.Rescans, s.Scanned, s.Moves, s.Created, s.Retries, s.Gone, s.Errors, s.Inline)
	fmt.Fprintf(&b, " sticky_marks=%d sticky_added=%d sticky_refused=%d sticky_skipped=%d sticky_full=%d",
		s.StickyMarks, s.StickyAdded, s.StickyRefused, s.StickySkipped, s.StickyFull)
	return b.String()
}
