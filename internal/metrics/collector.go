package metrics

import (
	"errors"
	"sort"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cgrulesengd/cgrulesengd/internal/classify"
)

// Kind is a sample's Prometheus type.
type Kind uint8

const (
	Counter Kind = iota
	Gauge
)

// Sample is one value of a series: family Name (with the label Label set
// to LabelValue, when Label is not ""). Every sample of a family has the
// same Help, Kind and Label.
type Sample struct {
	Name       string
	Help       string
	Kind       Kind
	Label      string
	LabelValue string
	Value      float64
}

// Histogram is a latency distribution: Counts[i] observations at most
// Bounds[i] seconds (not cumulative), Count in all, summing to Sum seconds.
type Histogram struct {
	Name   string
	Help   string
	Bounds []float64
	Counts []uint64
	Count  uint64
	Sum    float64
}

// Snapshot is what a scrape reads from the daemon.
type Snapshot struct {
	Samples    []Sample
	Histograms []Histogram
	// Destinations in use, at most the collector's cap, and how many there
	// are in all.
	Destinations      []classify.Destination
	DestinationsTotal int
}

// Collector turns Snapshots into metrics at scrape time, with the usage of
// each destination read from its cgroup (the first max of them).
type Collector struct {
	snapshot func(maxDests int) Snapshot
	usage    *UsageReader
	max      int
	gone     func(classify.Destination) // told of a destination whose cgroup is gone

	tasks, cpu, mem, omitted, errs *prometheus.Desc
}

// NewCollector returns a collector over snapshot, which is called once per
// scrape with the cap on destinations; gone (may be nil) is told of each
// destination whose cgroup no longer exists, so that it can be forgotten.
func NewCollector(snapshot func(maxDests int) Snapshot, usage *UsageReader, maxDests int, gone func(classify.Destination)) *Collector {
	labels := []string{"hierarchy", "cgroup"}
	return &Collector{
		snapshot: snapshot, usage: usage, max: maxDests, gone: gone,
		tasks: prometheus.NewDesc("cgrulesengd_destination_tasks",
			"Processes in a destination cgroup the daemon has moved tasks into (not counting its sub-cgroups).", labels, nil),
		cpu: prometheus.NewDesc("cgrulesengd_destination_cpu_seconds_total",
			"CPU time used by the tasks of a destination cgroup and its sub-cgroups (v1: cpuacct hierarchies only).", labels, nil),
		mem: prometheus.NewDesc("cgrulesengd_destination_memory_bytes",
			"Memory charged to a destination cgroup and its sub-cgroups (v1: memory hierarchies; v2: where the memory controller is enabled).", labels, nil),
		omitted: prometheus.NewDesc("cgrulesengd_destinations_omitted",
			"Destinations in use whose series were left out (over --metrics-max-destinations).", nil, nil),
		errs: prometheus.NewDesc("cgrulesengd_destination_read_errors",
			"Destinations whose usage could not be read at this scrape (a removed cgroup is forgotten instead).", nil, nil),
	}
}

// Describe sends nothing: the engine's families are known only from a
// snapshot, which makes this an unchecked collector.
func (c *Collector) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.snapshot(c.max)
	descs := map[string]*prometheus.Desc{}
	for _, smp := range s.Samples {
		d, ok := descs[smp.Name]
		if !ok {
			var labels []string
			if smp.Label != "" {
				labels = []string{smp.Label}
			}
			d = prometheus.NewDesc(smp.Name, smp.Help, labels, nil)
			descs[smp.Name] = d
		}
		vt := prometheus.CounterValue
		if smp.Kind == Gauge {
			vt = prometheus.GaugeValue
		}
		var lv []string
		if smp.Label != "" {
			lv = []string{smp.LabelValue}
		}
		ch <- prometheus.MustNewConstMetric(d, vt, smp.Value, lv...)
	}
	for _, h := range s.Histograms {
		buckets := make(map[float64]uint64, len(h.Bounds))
		var cum uint64
		for i, b := range h.Bounds {
			cum += h.Counts[i]
			buckets[b] = cum
		}
		ch <- prometheus.MustNewConstHistogram(prometheus.NewDesc(h.Name, h.Help, nil, nil), h.Count, h.Sum, buckets)
	}
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
