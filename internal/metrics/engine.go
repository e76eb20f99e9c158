package metrics

import (
	"github.com/cgrulesengd/cgrulesengd/internal/classify"
	"github.com/cgrulesengd/cgrulesengd/internal/kernel"
)

const prefix = "cgrulesengd_"

// EngineSamples turns the engine's and the kernel reader's counters into
// samples, one family per counter (or per group of counters with a label).
// It is the one place their names and meanings are given: the Prometheus
// series and --status both read it.
func EngineSamples(s classify.Stats, k kernel.Stats) []Sample {
	var out []Sample
	labelled := func(name, help, label string, names []string, vals []uint64) {
		for i, n := range names {
			out = append(out, Sample{Name: prefix + name, Help: help, Kind: Counter, Label: label, LabelValue: n, Value: float64(vals[i])})
		}
	}
	one := func(name, help string, kind Kind, v uint64) {
		out = append(out, Sample{Name: prefix + name, Help: help, Kind: kind, Value: float64(v)})
	}
	labelled("events_total", "Kernel process events received, by type.", "type", classify.EventKindNames[:], s.EventsByKind[:])
	labelled("moved_tasks_total", "Tasks moved into their rule's cgroups, by what made the daemon look at them.", "reason", classify.MoveReasonNames[:], s.Moved[:])
	labelled("move_failures_total", "cgroup.procs writes that failed, by cause.", "cause", classify.FailCauseNames[:], s.Failed[:])
	labelled("left_alone_total", "Classifications that moved nothing, by reason.", "reason", classify.LeftReasonNames[:], s.LeftAlone[:])
	one("moves_total", "Successful cgroup.procs writes (one per hierarchy a task is moved in).", Counter, s.Moves)
	one("netlink_overflows_total", "Losses of kernel events (netlink receive buffer overflows), each repaired by a rescan.", Counter, s.Overflows)
	one("queue_overflows_total", "Events dropped because the classification queue or the table of recent tasks was full, each repaired by a rescan.", Counter, s.QueueFull)
	one("repair_scans_total", "Rescans of /proc after lost events (not the start-up scan).", Counter, s.Rescans)
	one("scanned_tasks_total", "Tasks looked at by the start-up scan and the rescans.", Counter, s.Scanned)
	one("forks_followed_total", "Children classified because their parent was being moved when they were forked.", Counter, s.ForksFollowed)
	one("children_followed_total", "Children found right after a scan moved their parent.", Counter, s.ChildrenFollowed)
	one("coalesced_events_total", "Events merged into a classification already queued (e.g. one per thread of a setuid).", Counter, s.Coalesced)
	one("created_cgroups_total", "Template destinations created.", Counter, s.Created)
	one("move_retries_total", "Moves retried because the task was still being created (EINVAL).", Counter, s.Retries)
	one("gone_tasks_total", "Tasks that exited before they could be read or moved.", Counter, s.Gone)
	one("errors_total", "Failures other than exited tasks (each is logged, recurring ones at most once a minute).", Counter, s.Errors)
	one("inline_classifications_total", "Classifications the event reader made itself instead of a worker.", Counter, s.Inline)
	one("sticky_marks", "Processes marked sticky now (cgexec, cgclassify --sticky).", Gauge, s.StickyMarks)
	one("sticky_marks_added_total", "Sticky marks made, through the socket or inherited at fork.", Counter, s.StickyAdded)
	one("sticky_refused_total", "Sticky socket requests refused.", Counter, s.StickyRefused)
	one("sticky_full_total", "Sticky marks not made because their table was full.", Counter, s.StickyFull)
	one("destinations_dropped_total", "Destinations not recorded for the per-destination series (their set is bounded).", Counter, s.DestinationsDropped)
	one("netlink_datagrams_total", "Datagrams read from the proc connector socket.", Counter, k.Datagrams)
	one("netlink_discarded_total", "Kernel events received but not wanted (acknowledgements, other types).", Counter, k.Discarded)
	one("netlink_malformed_total", "Datagrams from the kernel that failed to decode.", Counter, k.Malformed)
	one("netlink_foreign_total", "Datagrams dropped because a process, not the kernel, sent them.", Counter, k.Foreign)
	return out
}

// LatencyHistogram is the engine's event-to-moved latency as a Histogram.
func LatencyHistogram(l classify.Latency) Histogram {
	h := Histogram{
		Name:  prefix + "move_latency_seconds",
		Help:  "Time from a credential change or exec (the kernel's event timestamp) to the end of the task's move.",
		Count: l.Count, Sum: l.Sum.Seconds(),
	}
	for i, b := range classify.LatencyBounds {
		h.Bounds = append(h.Bounds, b.Seconds())
		h.Counts = append(h.Counts, l.Counts[i])
	}
	// The last count (above every bound) is in Count only: the +Inf bucket.
	return h
}
