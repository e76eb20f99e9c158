package classify

import (
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/cgrulesengd/cgrulesengd/internal/kernel"
)

// The engine's counters are one table (Counts.table): each row names a
// counter, says what it means, its kind and its group, and points at its
// value. The engine counts into Counts[atomic.Uint64] (lock-free, from the
// reader, the workers and the scans); Stats is a snapshot, Counts[uint64],
// read through the same table. --status, the systemd STATUS= line, the log
// line of SIGUSR1 and /metrics all read the table: adding a counter is a
// field of Counts and a row of table.

// Kind is a counter's Prometheus type.
type Kind uint8

const (
	Counter Kind = iota // only ever grows
	Gauge               // goes up and down
)

// Def is what a counter is.
type Def struct {
	// Name names the counter: in --status and the log, and, for a counter
	// of its own, in its series (Series). In a group it is the value of
	// the group's label ("fork").
	Name string
	Help string
	Kind Kind
	// Group is the family of a counter counted by kind ("events"): its
	// series is the group's, with Label set to Name. "" for a counter of
	// its own.
	Group string
	Label string
}

// Series is the Prometheus family the counter is a sample of:
// cgrulesengd_GROUP_total{LABEL="NAME"}, cgrulesengd_NAME_total, or
// cgrulesengd_NAME for a gauge.
func (d *Def) Series() string {
	name := d.Name
	if d.Group != "" {
		name = d.Group
	}
	if d.Kind == Counter {
		name += "_total"
	}
	return "cgrulesengd_" + name
}

// Key names the counter in a log line: NAME, or GROUP_NAME in a group.
func (d *Def) Key() string {
	if d.Group != "" {
		return d.Group + "_" + d.Name
	}
	return d.Name
}

// Value is a counter with its value in a snapshot.
type Value struct {
	Def
	Value uint64
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
	MovedReload             // classified again after a reload replaced the rules, still new, that had classified it
	MovedReclassify         // a reclassification of every task (--reclassify, --reclassify-on-reload)
	NumMoveReasons
)

// MoveReasonNames name the reasons a task was moved.
var MoveReasonNames = [NumMoveReasons]string{"credentials", "exec", "fork_race", "startup_scan", "repair_scan", "reload", "reclassify"}

// Why a cgroup.procs write failed, for Stats.Failed.
const (
	FailedTaskGone      = iota // the task exited first (ESRCH)
	FailedCgroupMissing        // the destination does not exist (and could not be created)
	FailedRetries              // EINVAL every time: the task never finished being created
	FailedOther                // anything else (logged)
	FailedDescriptors          // the daemon had no file descriptor free (EMFILE, ENFILE): repaired by a rescan
	NumFailCauses
)

// FailCauseNames name the causes of failed moves.
var FailCauseNames = [NumFailCauses]string{"task_gone", "cgroup_missing", "einval_retries", "other", "descriptors"}

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

// Counts holds one value per counter of the engine: atomics while it runs,
// numbers in a snapshot (Stats). Each field is a row of table, which says
// what it means.
type Counts[T any] struct {
	Events, Creds, Execs            T
	ForksFollowed, ChildrenFollowed T
	Coalesced, Overflows, QueueFull T
	Rescans, Scanned                T
	Moves, Created, Retries         T
	Gone, Errors, Inline            T

	StickyMarks, StickyAdded, StickyRefused, StickySkipped, StickyFull T

	DestinationsDropped, FilterErrors T
	DescriptorShortages               T
	Rechecked, Reclassifications      T

	EventsByKind [NumKinds]T
	Moved        [NumMoveReasons]T
	Failed       [NumFailCauses]T
	LeftAlone    [NumLeftReasons]T
}

// Stats is a snapshot of the engine's counters since start.
type Stats = Counts[uint64]

// counters are the engine's live counters.
type counters = Counts[atomic.Uint64]

// row is a counter's definition and where its value is.
type row[T any] struct {
	Def
	v *T
}

// table is the table of counters, pointing into c, in the order they are
// shown.
func (c *Counts[T]) table() []row[T] {
	one := func(name string, kind Kind, v *T, help string) row[T] {
		return row[T]{Def{Name: name, Help: help, Kind: kind}, v}
	}
	rows := []row[T]{
		one("handled_events", Counter, &c.Events, "Kernel events handed to the engine, of every type (loss markers included)."),
		one("credential_events", Counter, &c.Creds, "UID and GID events."),
		one("classified_execs", Counter, &c.Execs, "EXEC events classified (rules name programs)."),
		one("forks_followed", Counter, &c.ForksFollowed, "Children classified because their parent was being moved when they were forked."),
		one("children_followed", Counter, &c.ChildrenFollowed, "Children found right after a scan moved their parent."),
		one("coalesced_events", Counter, &c.Coalesced, "Events merged into a classification already queued (e.g. one per thread of a setuid)."),
		one("event_overflows", Counter, &c.Overflows, "Losses of kernel events the event source reported (a full netlink receive buffer, BPF ring buffer or BPF table), each repaired by a rescan."),
		one("queue_overflows", Counter, &c.QueueFull, "Events dropped because the classification queue or the table of recent tasks was full, each repaired by a rescan."),
		one("repair_scans", Counter, &c.Rescans, "Rescans of /proc after lost events (not the start-up scan)."),
		one("scanned_tasks", Counter, &c.Scanned, "Tasks looked at by the start-up scan, the rescans and the reclassifications."),
		one("moves", Counter, &c.Moves, "Successful cgroup.procs writes (one per hierarchy a task is moved in)."),
		one("created_cgroups", Counter, &c.Created, "Template destinations created."),
		one("move_retries", Counter, &c.Retries, "Moves retried because the task was still being created (EINVAL)."),
		one("gone_tasks", Counter, &c.Gone, "Tasks that exited before they could be read or moved."),
		one("errors", Counter, &c.Errors, "Failures other than exited tasks (each is logged, recurring ones at most once a minute)."),
		one("inline_classifications", Counter, &c.Inline, "Classifications the event reader made itself instead of a worker."),
		one("sticky_marks", Gauge, &c.StickyMarks, "Processes marked sticky now (cgexec, cgclassify --sticky)."),
		one("sticky_added", Counter, &c.StickyAdded, "Sticky marks made, through the socket or inherited at fork."),
		one("sticky_refused", Counter, &c.StickyRefused, "Sticky socket requests refused (not allowed, malformed, too slow)."),
		one("sticky_skipped", Counter, &c.StickySkipped, "Events and classifications not acted on because the task is sticky."),
		one("sticky_full", Counter, &c.StickyFull, "Sticky marks not made because their table was full."),
		one("destinations_dropped", Counter, &c.DestinationsDropped, "Destinations not recorded for the per-destination series (their set is bounded)."),
		one("filter_errors", Counter, &c.FilterErrors, "Updates the event source's filter refused (a full table in the kernel), each repaired by a rescan."),
		one("reload_rechecks", Counter, &c.Rechecked, "Tasks classified again after a reload because the rules it replaced had classified them while new (in force less than a minute: a rules file seen half-written, an edit corrected at once)."),
		one("reclassifications", Counter, &c.Reclassifications, "Classifications of every running task (cgrulesengd --reclassify, --reclassify-on-reload)."),
		one("descriptor_shortages", Counter, &c.DescriptorShortages, "Classifications lost because the daemon had no file descriptor free (EMFILE, ENFILE: a /proc read, a move, a name look-up, the list of tasks), each repaired by a rescan; the failed moves among them are move_failures{cause=\"descriptors\"}."),
	}
	rows = group(rows, "events", "type", "Kernel process events received, by type.", EventKindNames[:], c.EventsByKind[:])
	rows = group(rows, "moved_tasks", "reason", "Tasks moved into their rule's cgroups, by what made the daemon look at them.", MoveReasonNames[:], c.Moved[:])
	rows = group(rows, "move_failures", "cause", "cgroup.procs writes that failed, by cause.", FailCauseNames[:], c.Failed[:])
	rows = group(rows, "left_alone", "reason", "Classifications that moved nothing, by reason.", LeftReasonNames[:], c.LeftAlone[:])
	return rows
}

// group appends the rows of a counter counted by kind.
func group[T any](rows []row[T], name, label, help string, names []string, vals []T) []row[T] {
	for i, n := range names {
		rows = append(rows, row[T]{Def{Name: n, Help: help, Kind: Counter, Group: name, Label: label}, &vals[i]})
	}
	return rows
}

// Values returns every counter of a snapshot with its definition, in
// table order.
func (c Counts[T]) Values() []Value {
	rows := c.table()
	out := make([]Value, len(rows))
	for i, r := range rows {
		out[i].Def = r.Def
		if v, ok := any(r.v).(*uint64); ok {
			out[i].Value = *v
		}
	}
	return out
}

// Defs is the table without values (a Prometheus collector's Describe).
func Defs() []Def {
	var s Stats
	rows := s.table()
	out := make([]Def, len(rows))
	for i, r := range rows {
		out[i] = r.Def
	}
	return out
}

// Stats returns a snapshot of the counters.
func (e *Engine) Stats() Stats {
	var s Stats
	live, snap := e.stats.table(), s.table()
	for i := range live {
		*snap[i].v = live[i].v.Load()
	}
	return s
}

// String renders stats as key=value pairs for logs, in table order.
func (c Counts[T]) String() string {
	var b strings.Builder
	for i, v := range c.Values() {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", v.Key(), v.Value)
	}
	return b.String()
}

// KernelValues are the counters of the netlink event source (the Source
// the daemon reads, *kernel.Conn).
func KernelValues(k kernel.Stats) []Value {
	one := func(name, help string, v uint64) Value {
		return Value{Def{Name: name, Help: help, Kind: Counter}, v}
	}
	return []Value{
		one("netlink_datagrams", "Datagrams read from the proc connector socket.", k.Datagrams),
		one("netlink_discarded", "Kernel events received but not wanted (acknowledgements, other types).", k.Discarded),
		one("netlink_malformed", "Datagrams from the kernel that failed to decode.", k.Malformed),
		one("netlink_foreign", "Datagrams dropped because a process, not the kernel, sent them.", k.Foreign),
	}
}

// Latency is the distribution of event-to-moved times so far (see
// LatencyBounds).
func (e *Engine) Latency() Latency { return e.latency.snapshot() }

// KernelDefs are the definitions of KernelValues.
func KernelDefs() []Def {
	vals := KernelValues(kernel.Stats{})
	out := make([]Def, len(vals))
	for i, v := range vals {
		out[i] = v.Def
	}
	return out
}
