package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/cgrulesengd/cgrulesengd/internal/bpfevents"
	"github.com/cgrulesengd/cgrulesengd/internal/classify"
	"github.com/cgrulesengd/cgrulesengd/internal/kernel"
	"github.com/cgrulesengd/cgrulesengd/rules"
)

// eventSource is the daemon's source of kernel process events, chosen by
// --events: the BPF source or the proc connector. The engine reads it
// through Read alone; only start-up, --status and the metrics look at
// which one it is.
type eventSource struct {
	kind string            // eventsBPF or eventsNetlink
	bpf  *bpfevents.Source // the BPF source, or nil
	conn *kernel.Conn      // the proc connector, or nil
	// fallback: why --events=auto runs the proc connector (the BPF
	// source's *bpfevents.NotSupportedError); nil when it was not asked
	// for or is in use.
	fallback error
}

// openEvents opens the event source o.events asks for: with "auto" the BPF
// source where it can run here, else the proc connector (subscribed to
// wanted), logging why once; with "bpf" the BPF source or an error saying
// why not; with "netlink" the proc connector. The log says which source
// runs, and the BPF source's kernel hooks.
func openEvents(o options, wanted kernel.What, log logrus.FieldLogger) (*eventSource, error) {
	es := &eventSource{}
	if o.events != eventsNetlink {
		s, err := bpfevents.Open(bpfevents.Config{RingBuffer: o.bpfRing, KernelBTF: o.bpfBTF})
		switch {
		case err == nil:
			es.kind, es.bpf = eventsBPF, s
			log.WithField("hooks", s.Hooks()).Info("kernel events: BPF source")
			return es, nil
		case o.events == eventsBPF:
			return nil, fmt.Errorf("opening the BPF event source (--events=bpf): %w", err)
		case !errors.Is(err, bpfevents.ErrNotSupported):
			// Not a lack of support: memory, a bug. The proc connector
			// still serves; say so louder.
			log.Errorf("kernel events: the BPF source failed, using the proc connector: %v", err)
		default:
			log.Warnf("kernel events: using the proc connector: %v", err)
		}
		es.fallback = err
	}
	conn, err := kernel.Listen(kernel.Config{ReceiveBuffer: o.netlinkBuf, Events: wanted})
	if err != nil {
		return nil, fmt.Errorf("subscribing to the kernel's process events: %w", err)
	}
	es.kind, es.conn = eventsNetlink, conn
	log.WithField("filtered", conn.Filtered()).Info("kernel events: proc connector")
	return es, nil
}

// Read reads the source in use (classify.Source).
func (es *eventSource) Read(dst []kernel.Event) ([]kernel.Event, error) {
	if es.bpf != nil {
		return es.bpf.Read(dst)
	}
	return es.conn.Read(dst)
}

// Close closes the source in use; a blocked Read returns kernel.ErrClosed.
func (es *eventSource) Close() error {
	if es.bpf != nil {
		return es.bpf.Close()
	}
	return es.conn.Close()
}

// fallbackReason is the short reason of a fallback ("no kernel BTF", ...),
// or "".
func (es *eventSource) fallbackReason() string {
	var nse *bpfevents.NotSupportedError
	if errors.As(es.fallback, &nse) {
		return nse.Reason.String()
	}
	if es.fallback != nil {
		return "error"
	}
	return ""
}

// The BPF source is a classify.Filter: the engine tells it what it needs.
var _ classify.Filter = (*bpfevents.Source)(nil)

// reader is what the engine reads: the BPF source itself (the engine finds
// its Filter by a type assertion) or the proc connector.
func (es *eventSource) reader() classify.Source {
	if es.bpf != nil {
		return es.bpf
	}
	return es.conn
}

// setFilter tells the BPF source what rules name (nothing for the proc
// connector): at start, before the scan, and, with the union of the old
// and the new rules', before a reload swaps them (the engine then sets the
// new rules' names).
func (es *eventSource) setFilter(n rules.Names) error {
	if es.bpf == nil {
		return nil
	}
	return es.bpf.SetFilter(n)
}

// warnWidened logs why the BPF source's filter is wider than the rules
// ask (more ids or process names than its maps hold), if it is.
func (es *eventSource) warnWidened(log logrus.FieldLogger) {
	if es.bpf == nil {
		return
	}
	if w := es.bpf.Widened(); w != "" {
		log.Warnf("kernel events: the BPF source's filter is wider than the rules ask: %s", w)
	}
}

// values are the source's counters, with the daemon's RssAnon and the BPF
// maps' kernel memory beside it, for --status, /metrics and the log.
func (es *eventSource) values() []classify.Value {
	one := func(name, help string, kind classify.Kind, v uint64) classify.Value {
		return classify.Value{Def: classify.Def{Name: name, Help: help, Kind: kind}, Value: v}
	}
	src := func(name string) classify.Value {
		v := classify.Value{Def: classify.Def{Name: name, Group: "event_source", Label: "source", Kind: classify.Gauge,
			Help: "The kernel event source in use (1; --events): bpf, or netlink (the proc connector)."}}
		if es.kind == name {
			v.Value = 1
		}
		return v
	}
	vals := []classify.Value{src(eventsBPF), src(eventsNetlink),
		one("rss_anon_bytes", "The daemon's anonymous resident memory (RssAnon of /proc/self/status).", classify.Gauge, rssAnon())}
	if es.bpf == nil {
		var ks kernel.Stats
		if es.conn != nil {
			ks = es.conn.Stats()
		}
		return append(vals, classify.KernelValues(ks)...)
	}
	st := es.bpf.Stats()
	mem, _ := es.bpf.MapMemory() // 0 once closed
	return append(vals,
		one("bpf_map_bytes", "Kernel memory of the BPF event source's maps (ring buffer and tables).", classify.Gauge, mem),
		one("bpf_events", "Events read from the BPF source's ring buffer.", classify.Counter, st.Events),
		one("bpf_lost", "Events or marks the BPF programs could not keep (each repaired by a rescan).", classify.Counter, st.Lost),
		one("bpf_lost_ring", "Events lost because the ring buffer was full.", classify.Counter, st.LostRing),
		one("bpf_lost_marks", "Marks lost because a table of the BPF programs was full.", classify.Counter, st.LostMarks),
		one("bpf_credential_changes_seen", "Credential changes the BPF programs saw, before the filter.", classify.Counter, st.CredsSeen),
		one("bpf_execs_seen", "Execs the BPF programs saw, before the filter.", classify.Counter, st.ExecsSeen),
		one("bpf_marks_refused", "Marks the engine asked for that a full table refused.", classify.Counter, st.MarksRefused),
		one("bpf_malformed", "Ring buffer records that did not decode.", classify.Counter, st.Malformed),
	)
}

// defs are the definitions of values.
func (es *eventSource) defs() []classify.Def {
	vals := es.values()
	out := make([]classify.Def, len(vals))
	for i, v := range vals {
		out[i] = v.Def
	}
	return out
}

// rssAnon is this process's RssAnon in bytes, 0 when unknown.
func rssAnon() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "RssAnon:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// logFields are the source's totals for the log line at shut-down.
func (es *eventSource) logFields() logrus.Fields {
	if es.bpf != nil {
		st := es.bpf.Stats()
		return logrus.Fields{"events": es.kind, "kernel_events": st.Events, "bpf_lost": st.Lost}
	}
	ks := es.conn.Stats()
	return logrus.Fields{"events": es.kind, "datagrams": ks.Datagrams, "kernel_events": ks.Events}
}
