package metrics

import (
	"errors"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cgrulesengd/cgrulesengd/internal/classify"
)

// Snapshot is what a scrape reads from the daemon.
type Snapshot struct {
	// Counters are the engine's and its event source's (classify's table
	// of counters: Stats.Values, KernelValues), each with its definition.
	Counters []classify.Value
	RuleHits []RuleHit // every rule in force, in file order
	Reloads  Reloads
	Latency  classify.Latency
	// SystemdCalls is the latency of the D-Bus calls that place tasks into
	// slices (nil: slice destinations are not placed).
	SystemdCalls *Histogram
	// Destinations in use, at most the collector's cap, and how many there
	// are in all.
	Destinations      []classify.Destination
	DestinationsTotal int
}

// Histogram is a latency histogram kept outside the engine: Counts[i]
// observations took at most Bounds[i]; the last count is above every
// bound.
type Histogram struct {
	Bounds []time.Duration
	Counts []uint64
	Count  uint64
	Sum    time.Duration
}

// RuleHit is a rule in force ("file:line") and the classifications it
// decided since it was loaded.
type RuleHit struct {
	Rule string
	Hits uint64
}

// Reloads is the reload history.
type Reloads struct {
	OK, Failed uint64
	Last       time.Time // the last reload; zero: none since start
	LastOK     bool
}

// Collector turns Snapshots into metrics at scrape time, with the usage of
// each destination read from its cgroup (the first max of them). Every
// family it can send is known when it is made: Describe sends them all.
type Collector struct {
	snapshot func(maxDests int) Snapshot
	usage    *UsageReader
	max      int
	gone     func(classify.Destination) // told of a destination whose cgroup is gone

	counters map[string]family // by series name, from the counters' definitions
	order    []string          // the series of counters, in table order

	rules, ruleHits, reloads, lastReload, lastReloadOK *prometheus.Desc
	latency, systemdCalls                              *prometheus.Desc
	tasks, cpu, mem, omitted, errs                     *prometheus.Desc
}

// family is the description of one counter series.
type family struct {
	desc      *prometheus.Desc
	valueType prometheus.ValueType
}

// NewCollector returns a collector of the counters defs describes (the
// daemon passes classify.Defs and classify.KernelDefs) and of the rules,
// reloads, latency and destinations of each snapshot, which is called once
// per scrape with the cap on destinations; gone (may be nil) is told of
// each destination whose cgroup no longer exists, so that it can be
// forgotten.
func NewCollector(defs []classify.Def, snapshot func(maxDests int) Snapshot, usage *UsageReader, maxDests int, gone func(classify.Destination)) *Collector {
	c := &Collector{snapshot: snapshot, usage: usage, max: maxDests, gone: gone, counters: map[string]family{}}
	for _, d := range defs {
		name := d.Series()
		if _, ok := c.counters[name]; ok {
			continue // another member of a group
		}
		var labels []string
		if d.Label != "" {
			labels = []string{d.Label}
		}
		vt := prometheus.CounterValue
		if d.Kind == classify.Gauge {
			vt = prometheus.GaugeValue
		}
		c.counters[name] = family{prometheus.NewDesc(name, d.Help, labels, nil), vt}
		c.order = append(c.order, name)
	}
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prefix+name, help, labels, nil)
	}
	c.rules = desc("rules", "Rules in force.")
	c.ruleHits = desc("rule_hits_total", "Classifications a rule decided since it was loaded, by the rule's file:line.", "rule")
	c.reloads = desc("reloads_total", "Reloads of the rules, by result (a failed one keeps the rules before).", "result")
	c.lastReload = desc("last_reload_timestamp_seconds", "When the rules were last reloaded (Unix time).")
	c.lastReloadOK = desc("last_reload_success", "Whether the last reload succeeded (1) or kept the rules before (0).")
	c.latency = desc("move_latency_seconds", "Time from a credential change or exec (the kernel's event timestamp) to the end of the task's move.")
	c.systemdCalls = desc("systemd_call_latency_seconds", "Duration of the D-Bus calls that place tasks into slices (a new scope's includes its start job).")
	dest := []string{"hierarchy", "cgroup"}
	c.tasks = desc("destination_tasks", "Processes in a destination cgroup the daemon has moved tasks into (not counting its sub-cgroups).", dest...)
	c.cpu = desc("destination_cpu_seconds_total", "CPU time used by the tasks of a destination cgroup and its sub-cgroups (v1: cpuacct hierarchies only).", dest...)
	c.mem = desc("destination_memory_bytes", "Memory charged to a destination cgroup and its sub-cgroups (v1: memory hierarchies; v2: where the memory controller is enabled).", dest...)
	c.omitted = desc("destinations_omitted", "Destinations in use whose series were left out (over --metrics-max-destinations).")
	c.errs = desc("destination_read_errors", "Destinations whose usage could not be read at this scrape (a removed cgroup is forgotten instead).")
	return c
}

const prefix = "cgrulesengd_"

// Describe sends the description of every family Collect may send.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, name := range c.order {
		ch <- c.counters[name].desc
	}
	for _, d := range []*prometheus.Desc{c.rules, c.ruleHits, c.reloads, c.lastReload, c.lastReloadOK, c.latency, c.systemdCalls, c.tasks, c.cpu, c.mem, c.omitted, c.errs} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.snapshot(c.max)
	for _, v := range s.Counters {
		f, ok := c.counters[v.Series()]
		if !ok {
			continue // not described: a counter the daemon did not declare
		}
		var lv []string
		if v.Label != "" {
			lv = []string{v.Name}
		}
		ch <- prometheus.MustNewConstMetric(f.desc, f.valueType, float64(v.Value), lv...)
	}
	ch <- prometheus.MustNewConstMetric(c.rules, prometheus.GaugeValue, float64(len(s.RuleHits)))
	for _, h := range s.RuleHits {
		ch <- prometheus.MustNewConstMetric(c.ruleHits, prometheus.CounterValue, float64(h.Hits), h.Rule)
	}
	ch <- prometheus.MustNewConstMetric(c.reloads, prometheus.CounterValue, float64(s.Reloads.OK), "ok")
	ch <- prometheus.MustNewConstMetric(c.reloads, prometheus.CounterValue, float64(s.Reloads.Failed), "failed")
	if !s.Reloads.Last.IsZero() {
		success := 0.0
		if s.Reloads.LastOK {
			success = 1
		}
		ch <- prometheus.MustNewConstMetric(c.lastReload, prometheus.GaugeValue, float64(s.Reloads.Last.UnixNano())/1e9)
		ch <- prometheus.MustNewConstMetric(c.lastReloadOK, prometheus.GaugeValue, success)
	}
	ch <- c.latencyHistogram(s.Latency)
	if h := s.SystemdCalls; h != nil {
		ch <- constHistogram(c.systemdCalls, h.Bounds, h.Counts, h.Count, h.Sum)
	}
	c.collectDestinations(ch, &s)
}

// latencyHistogram is the engine's event-to-moved latency as a histogram;
// the count above every bound is in the count only (the +Inf bucket).
func (c *Collector) latencyHistogram(l classify.Latency) prometheus.Metric {
	return constHistogram(c.latency, classify.LatencyBounds[:], l.Counts[:], l.Count, l.Sum)
}

// constHistogram makes a histogram metric of per-bucket counts (not
// cumulative; the last one above every bound, in the count only).
func constHistogram(d *prometheus.Desc, bounds []time.Duration, counts []uint64, count uint64, sum time.Duration) prometheus.Metric {
	buckets := make(map[float64]uint64, len(bounds))
	var cum uint64
	for i, b := range bounds {
		cum += counts[i]
		buckets[b.Seconds()] = cum
	}
	return prometheus.MustNewConstHistogram(d, count, sum.Seconds(), buckets)
}

// collectDestinations reads the usage of each destination in the snapshot.
func (c *Collector) collectDestinations(ch chan<- prometheus.Metric, s *Snapshot) {
	dests := s.Destinations
	sort.Slice(dests, func(i, j int) bool {
		if dests[i].H.Mountpoint != dests[j].H.Mountpoint {
			return dests[i].H.Mountpoint < dests[j].H.Mountpoint
		}
		return dests[i].Path < dests[j].Path
	})
	errs := 0
	for _, d := range dests {
		u, err := c.usage.Read(d.H, d.Path)
		if errors.Is(err, ErrNoCgroup) && c.gone != nil {
			c.gone(d)
			continue
		}
		if err != nil {
			errs++
			continue
		}
		lv := []string{d.H.Name(), d.Path}
		ch <- prometheus.MustNewConstMetric(c.tasks, prometheus.GaugeValue, float64(u.Tasks), lv...)
		if u.HasCPU {
			ch <- prometheus.MustNewConstMetric(c.cpu, prometheus.CounterValue, u.CPUSeconds, lv...)
		}
		if u.HasMemory {
			ch <- prometheus.MustNewConstMetric(c.mem, prometheus.GaugeValue, float64(u.MemoryBytes), lv...)
		}
	}
	ch <- prometheus.MustNewConstMetric(c.omitted, prometheus.GaugeValue, float64(s.DestinationsTotal-len(dests)))
	ch <- prometheus.MustNewConstMetric(c.errs, prometheus.GaugeValue, float64(errs))
}
