package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/cgrulesengd/cgrulesengd/internal/kernel"
	"github.com/cgrulesengd/cgrulesengd/internal/metrics"
	"github.com/cgrulesengd/cgrulesengd/internal/ratelimit"
	"github.com/cgrulesengd/cgrulesengd/internal/status"
	"github.com/cgrulesengd/cgrulesengd/rules"
)

// exitNoDaemon is --status's exit status when no daemon runs (LSB's
// "program is not running").
const exitNoDaemon = 3

// runStatus is --status: ask the running daemon, print its report.
func runStatus(stdout, stderr io.Writer, path string) int {
	if path == "" {
		fmt.Fprintln(stderr, "cgrulesengd: --status needs a --status-socket")
		return 2
	}
	r, err := status.Query(path, 5*time.Second)
	if err != nil {
		fmt.Fprintf(stderr, "cgrulesengd: %v\n", err)
		if errors.Is(err, status.ErrNoDaemon) {
			return exitNoDaemon
		}
		return 1
	}
	status.Format(stdout, r)
	return 0
}

// observer serves what the daemon does: the status socket and, with
// --metrics, Prometheus. It also keeps the reload history they show.
type observer struct {
	d       *daemon
	started time.Time

	mu         sync.Mutex
	lastReload *status.Reload
	reloadsOK  uint64
	reloadsBad uint64

	status   *status.Server
	metrics  *metrics.Server
	refusals ratelimit.Limiter
}

// listenObservers starts the status socket and the metrics server.
func (d *daemon) listenObservers(started time.Time) (*observer, error) {
	ob := &observer{d: d, started: started, refusals: ratelimit.Limiter{Burst: 5, Window: time.Second}}
	o := &d.opt
	if o.statusSocket != "" {
		s, err := status.Listen(o.statusSocket, ob.report, ob.refused("status"))
		if err != nil {
			return nil, err
		}
		ob.status = s
	}
	if o.metricsAddr != "" {
		a, err := metrics.ParseAddress(o.metricsAddr)
		if err != nil {
			ob.close()
			return nil, err
		}
		ln, err := metrics.Listen(a, ob.refused("metrics"))
		if err != nil {
			ob.close()
			return nil, err
		}
		reg := prometheus.NewRegistry()
		reg.MustRegister(
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
			collectors.NewGoCollector(),
			metrics.NewCollector(ob.snapshot, metrics.NewUsageReader(d.layout), o.maxDests, d.engine.ForgetDestination),
		)
		ob.metrics = metrics.Serve(ln, reg, func(err error) { d.log.Error(err) })
		d.log.WithField("address", a.String()).Info("serving metrics")
	}
	return ob, nil
}

// refused logs a peer a root-only socket turned away, a few a second.
func (ob *observer) refused(what string) func(uid uint32, pid int32) {
	return func(uid uint32, pid int32) {
		if n, ok := ob.refusals.Allow(time.Now()); ok {
			ob.d.log.WithField("peer_uid", uid).WithField("peer_pid", pid).WithField(ratelimit.NotLogged, n).
				Warnf("%s socket: refused a peer that is not root", what)
		}
	}
}

// reloaded records a reload's outcome; rules is the count in force after it.
func (ob *observer) reloaded(rules int, err error) {
	if ob == nil {
		return
	}
	r := &status.Reload{Time: time.Now(), OK: err == nil, Rules: rules}
	if err != nil {
		r.Error = firstLine(err)
	}
	ob.mu.Lock()
	defer ob.mu.Unlock()
	ob.lastReload = r
	if err == nil {
		ob.reloadsOK++
	} else {
		ob.reloadsBad++
	}
}

func (ob *observer) close() {
	if ob == nil {
		return
	}
	if ob.metrics != nil {
		if err := ob.metrics.Close(); err != nil {
			ob.d.log.Warnf("metrics: %v", err)
		}
	}
	if ob.status != nil {
		if err := ob.status.Close(); err != nil {
			ob.d.log.Warn(err)
		}
	}
}

// report is the status socket's answer, made when a client asks.
func (ob *observer) report() *status.Report {
	d := ob.d
	snap := ob.snapshot(0)
	hits := d.engine.RuleHits()
	r := &status.Report{
		Version: version, PID: os.Getpid(), Started: ob.started, Now: time.Now(),
		Mode: d.layout.Mode(), CgroupRoot: d.opt.cgroupRoot,
		Rules: len(hits), Counters: statusCounters(snap.Samples),
	}
	for _, h := range hits {
		r.RuleHits = append(r.RuleHits, status.RuleHit{Rule: ruleName(h.Rule), Text: h.Rule.Text, Hits: h.Hits})
	}
	ob.mu.Lock()
	r.LastReload, r.ReloadsOK, r.ReloadsBad = ob.lastReload, ob.reloadsOK, ob.reloadsBad
	ob.mu.Unlock()
	return r
}

func ruleName(r *rules.Rule) string { return fmt.Sprintf("%s:%d", r.File, r.Line) }

// snapshot is what a scrape (or --status) reads: the engine's and the
// kernel reader's counters, the rules and reloads, the latency histogram,
// and up to maxDests destinations in use.
func (ob *observer) snapshot(maxDests int) metrics.Snapshot {
	d := ob.d
	var ks kernel.Stats
	if c := d.conn.Load(); c != nil {
		ks = c.Stats()
	}
	s := metrics.Snapshot{Samples: metrics.EngineSamples(d.engine.Stats(), ks)}
	add := func(name, help string, kind metrics.Kind, label, lv string, v float64) {
		s.Samples = append(s.Samples, metrics.Sample{Name: "cgrulesengd_" + name, Help: help, Kind: kind, Label: label, LabelValue: lv, Value: v})
	}
	hits := d.engine.RuleHits()
	add("rules", "Rules in force.", metrics.Gauge, "", "", float64(len(hits)))
	for _, h := range hits {
		add("rule_hits_total", "Classifications a rule decided since it was loaded, by the rule's file:line.", metrics.Counter, "rule", ruleName(h.Rule), float64(h.Hits))
	}
	ob.mu.Lock()
	ok, bad, last := ob.reloadsOK, ob.reloadsBad, ob.lastReload
	ob.mu.Unlock()
	add("reloads_total", "Reloads of the rules, by result (a failed one keeps the rules before).", metrics.Counter, "result", "ok", float64(ok))
	add("reloads_total", "Reloads of the rules, by result (a failed one keeps the rules before).", metrics.Counter, "result", "failed", float64(bad))
	if last != nil {
		success := 0.0
		if last.OK {
			success = 1
		}
		add("last_reload_timestamp_seconds", "When the rules were last reloaded (Unix time).", metrics.Gauge, "", "", float64(last.Time.UnixNano())/1e9)
		add("last_reload_success", "Whether the last reload succeeded (1) or kept the rules before (0).", metrics.Gauge, "", "", success)
	}
	s.Histograms = []metrics.Histogram{metrics.LatencyHistogram(d.engine.Latency())}
	s.Destinations, s.DestinationsTotal = d.engine.Destinations(maxDests)
	return s
}

// statusCounters groups the samples for --status: a labelled family is a
// group of its own (events: fork 3, exec 1, ...), the others are listed
// under "counters"; rules, reloads and per-rule hits have fields of their
// own in the report.
func statusCounters(samples []metrics.Sample) []status.Counter {
	var labelled, single []status.Counter
	for _, s := range samples {
		name := strings.TrimSuffix(strings.TrimPrefix(s.Name, "cgrulesengd_"), "_total")
		switch name {
		case "rule_hits", "rules", "reloads", "last_reload_timestamp_seconds", "last_reload_success":
			continue // the report has them in fields of their own
		}
		if s.Label != "" {
			labelled = append(labelled, status.Counter{Group: name, Name: s.LabelValue, Value: uint64(s.Value)})
		} else {
			single = append(single, status.Counter{Group: "counters", Name: name, Value: uint64(s.Value)})
		}
	}
	return append(labelled, single...)
}
