package metrics

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/cgrulesengd/cgrulesengd/internal/classify"
	"github.com/cgrulesengd/cgrulesengd/internal/kernel"
)

// tableSnapshot is a snapshot in which every counter of the table has a
// value of its own (its position + 1).
func tableSnapshot() Snapshot {
	vals := append(classify.Stats{}.Values(), classify.KernelValues(kernel.Stats{})...)
	for i := range vals {
		vals[i].Value = uint64(i + 1)
	}
	var l classify.Latency
	l.Counts[0], l.Counts[3], l.Count, l.Sum = 2, 1, 4, 3*time.Millisecond // one above every bound
	return Snapshot{
		Counters: vals,
		RuleHits: []RuleHit{{"/etc/cgrules.conf:1", 7}, {"/etc/cgrules.conf:2", 0}},
		Reloads:  Reloads{OK: 3, Failed: 1, Last: time.Unix(1700000000, 0), LastOK: true},
		Latency:  l,
		SystemdCalls: &Histogram{Bounds: []time.Duration{time.Millisecond, 10 * time.Millisecond},
			Counts: []uint64{5, 2, 1}, Count: 8, Sum: 40 * time.Millisecond},
	}
}

func tableCollector(s Snapshot) *Collector {
	return NewCollector(append(classify.Defs(), classify.KernelDefs()...), func(int) Snapshot { return s }, nil, 10, nil)
}

// TestCollectorDescribe: Describe sends every family Collect sends (a
// pedantic registry checks each collected metric against it), each once,
// and the families pass promlint.
func TestCollectorDescribe(t *testing.T) {
	c := tableCollector(tableSnapshot())
	ch := make(chan *prometheus.Desc, 256)
	c.Describe(ch)
	close(ch)
	seen := map[string]bool{}
	for d := range ch {
		if seen[d.String()] {
			t.Errorf("described twice: %s", d)
		}
		seen[d.String()] = true
	}
	families := map[string]bool{}
	for _, d := range append(classify.Defs(), classify.KernelDefs()...) {
		families[d.Series()] = true
	}
	if want := len(families) + 12; len(seen) != want {
		t.Errorf("%d descriptions, want %d (one per counter family, and the rules, reloads, latency, systemd call latency and destination families)", len(seen), want)
	}
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Gather(); err != nil {
		t.Fatalf("a pedantic gather: %v", err)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// TestCollectorSamples: every counter of the table is scraped as its
// series (with its label in a group) and its value, with its type; the
// rules, reloads and latency with theirs.
func TestCollectorSamples(t *testing.T) {
	s := tableSnapshot()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(tableCollector(s))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{} // series{label="value"} -> value
	types := map[string]dto.MetricType{}
	for _, mf := range mfs {
		types[mf.GetName()] = mf.GetType()
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, lp := range m.GetLabel() {
				key += fmt.Sprintf("{%s=%q}", lp.GetName(), lp.GetValue())
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				got[key] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				got[key] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				got[key+"_count"] = float64(m.GetHistogram().GetSampleCount())
				got[key+"_sum"] = m.GetHistogram().GetSampleSum()
				for _, b := range m.GetHistogram().GetBucket() {
					got[fmt.Sprintf("%s_bucket{le=%g}", key, b.GetUpperBound())] = float64(b.GetCumulativeCount())
				}
			}
		}
	}
	for _, v := range s.Counters {
		key := v.Series()
		if v.Label != "" {
			key += fmt.Sprintf("{%s=%q}", v.Label, v.Name)
		}
		if g, ok := got[key]; !ok || g != float64(v.Value) {
			t.Errorf("%s = %v (present %v), want %d", key, g, ok, v.Value)
		}
		want := dto.MetricType_COUNTER
		if v.Kind == classify.Gauge {
			want = dto.MetricType_GAUGE
		}
		if types[v.Series()] != want {
			t.Errorf("%s is a %s, want a %s", v.Series(), types[v.Series()], want)
		}
	}
	bounds := classify.LatencyBounds
	for key, want := range map[string]float64{
		`cgrulesengd_rules`: 2,
		`cgrulesengd_rule_hits_total{rule="/etc/cgrules.conf:1"}`:                                      7,
		`cgrulesengd_rule_hits_total{rule="/etc/cgrules.conf:2"}`:                                      0,
		`cgrulesengd_reloads_total{result="ok"}`:                                                       3,
		`cgrulesengd_reloads_total{result="failed"}`:                                                   1,
		`cgrulesengd_last_reload_timestamp_seconds`:                                                    1700000000,
		`cgrulesengd_last_reload_success`:                                                              1,
		`cgrulesengd_move_latency_seconds_count`:                                                       4,
		`cgrulesengd_move_latency_seconds_sum`:                                                         0.003,
		fmt.Sprintf("cgrulesengd_move_latency_seconds_bucket{le=%g}", bounds[0].Seconds()):             2,
		fmt.Sprintf("cgrulesengd_move_latency_seconds_bucket{le=%g}", bounds[3].Seconds()):             3,
		fmt.Sprintf("cgrulesengd_move_latency_seconds_bucket{le=%g}", bounds[len(bounds)-1].Seconds()): 3,
		`cgrulesengd_systemd_call_latency_seconds_count`:                                               8,
		`cgrulesengd_systemd_call_latency_seconds_sum`:                                                 0.04,
		`cgrulesengd_systemd_call_latency_seconds_bucket{le=0.001}`:                                    5,
		`cgrulesengd_systemd_call_latency_seconds_bucket{le=0.01}`:                                     7,
		`cgrulesengd_destinations_omitted`:                                                             0,
		`cgrulesengd_destination_read_errors`:                                                          0,
	} {
		if g, ok := got[key]; !ok || g != want {
			t.Errorf("%s = %v (present %v), want %v", key, g, ok, want)
		}
	}
	// A daemon that places nothing through systemd has no such series.
	s.SystemdCalls = nil
	reg = prometheus.NewPedanticRegistry()
	reg.MustRegister(tableCollector(s))
	if n, err := testutil.GatherAndCount(reg, "cgrulesengd_systemd_call_latency_seconds"); err != nil || n != 0 {
		t.Errorf("without systemd: %d systemd_call_latency_seconds series (%v)", n, err)
	}
	// A daemon never reloaded has no last-reload series.
	s.Reloads = Reloads{}
	reg = prometheus.NewPedanticRegistry()
	reg.MustRegister(tableCollector(s))
	if n, err := testutil.GatherAndCount(reg, "cgrulesengd_last_reload_timestamp_seconds", "cgrulesengd_last_reload_success"); err != nil || n != 0 {
		t.Errorf("never reloaded: %d last-reload series (%v), want none", n, err)
	}
}
