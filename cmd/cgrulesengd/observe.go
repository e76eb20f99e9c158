package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/cgrulesengd/cgrulesengd/internal/classify"
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

// reclassifyTimeout bounds --reclassify's wait: a pass over every task of
// a large machine under load takes seconds, not minutes.
const reclassifyTimeout = time.Minute

// runReclassify is --reclassify: ask the running daemon to classify every
// running task again, print what it did.
func runReclassify(stdout, stderr io.Writer, path string) int {
	if path == "" {
		fmt.Fprintln(stderr, "cgrulesengd: --reclassify needs a --status-socket")
		return 2
	}
	r, err := status.Reclassify(path, reclassifyTimeout)
	if err != nil {
		fmt.Fprintf(stderr, "cgrulesengd: %v\n", err)
		if errors.Is(err, status.ErrNoDaemon) {
			return exitNoDaemon
		}
		return 1
	}
	fmt.Fprintf(stdout, "cgrulesengd: classified again: %d tasks looked at, %d moved, in %v\n", r.Tasks, r.Moved, r.Took.Round(time.Millisecond))
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
func (d *daemon) listenObservers(started time.Time, es *eventSource) (*observer, error) {
	ob := &observer{d: d, started: started, refusals: ratelimit.Limiter{Burst: 5, Window: time.Second}}
	o := &d.opt
	if o.statusSocket != "" {
		s, err := status.Listen(o.statusSocket, ob.report, ob.refused("status"), status.WithReclassify(ob.reclassify))
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
			metrics.NewCollector(append(append(classify.Defs(), es.defs()...), d.sys.defs()...), ob.snapshot,
				metrics.NewUsageReader(d.layout), o.maxDests, d.engine.ForgetDestination),
		)
		ob.metrics = metrics.Serve(ln, reg, func(err error) { d.log.Error(err) })
		d.log.WithField("address", a.String()).Info("serving metrics")
		if w := metricsExposure(a); w != "" {
			d.log.Warn(w) // realMain said it on standard error too
		}
	}
	return ob, nil
}

// metricsExposure is the warning for a --metrics address that other
// machines may reach (not loopback, not a Unix socket), "" for one they
// cannot. It is allowed (a Prometheus server elsewhere needs it) but
// serves without authentication what the daemon knows: destinations with
// user names, rules by file:line, counters.
func metricsExposure(a metrics.Address) string {
	if a.Network != "tcp" || a.Loopback() {
		return ""
	}
	return fmt.Sprintf("--metrics %s is not a loopback address: anyone who can reach it over the network can read the metrics (destinations with user names, rules, counters) without authentication; firewall the port, or use 127.0.0.1:PORT or unix:PATH (root only)", a.Addr)
}

// reclassify serves `cgrulesengd --reclassify` (a root peer of the status
// socket): every running task classified again by the rules in force.
func (ob *observer) reclassify() status.Reclassified {
	r, ok := ob.d.engine.Reclassify()
	if !ok {
		return status.Reclassified{Error: "the daemon is starting or stopping: try again"}
	}
	return status.Reclassified{Tasks: r.Tasks, Moved: r.Moved, Took: r.Took}
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
	hits := d.engine.RuleHits()
	r := &status.Report{
		Version: version, PID: os.Getpid(), Started: ob.started, Now: time.Now(),
		Mode: d.layout.Mode(), CgroupRoot: d.opt.cgroupRoot,
		Rules: len(hits), Counters: statusCounters(ob.counters()),
	}
	if es := d.events.Load(); es != nil {
		r.Events, r.EventsFallback = es.kind, es.fallbackReason()
		r.RssAnon = rssAnon()
		if es.bpf != nil {
			r.MapMemory, _ = es.bpf.MapMemory()
		}
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

// counters are the engine's and the event source's counters, with their
// definitions (classify's table).
func (ob *observer) counters() []classify.Value {
	vals := ob.d.engine.Stats().Values()
	if es := ob.d.events.Load(); es != nil {
		vals = append(vals, es.values()...)
	}
	return append(vals, ob.d.sys.values()...)
}

// snapshot is what a scrape reads: the counters, the rules' hits, the
// reloads, the latency histogram, and up to maxDests destinations in use.
func (ob *observer) snapshot(maxDests int) metrics.Snapshot {
	d := ob.d
	s := metrics.Snapshot{Counters: ob.counters(), Latency: d.engine.Latency(), SystemdCalls: d.sys.callHistogram()}
	for _, h := range d.engine.RuleHits() {
		s.RuleHits = append(s.RuleHits, metrics.RuleHit{Rule: ruleName(h.Rule), Hits: h.Hits})
	}
	ob.mu.Lock()
	s.Reloads = metrics.Reloads{OK: ob.reloadsOK, Failed: ob.reloadsBad}
	if last := ob.lastReload; last != nil {
		s.Reloads.Last, s.Reloads.LastOK = last.Time, last.OK
	}
	ob.mu.Unlock()
	s.Destinations, s.DestinationsTotal = d.engine.Destinations(maxDests)
	return s
}

// statusCounters arranges the table of counters for --status: each group
// (events: fork 3, exec 1, ...) is a line of its own, first; the counters
// of their own follow under "counters".
func statusCounters(vals []classify.Value) []status.Counter {
	var grouped, single []status.Counter
	for _, v := range vals {
		if v.Group != "" {
			grouped = append(grouped, status.Counter{Group: v.Group, Name: v.Name, Value: v.Value})
		} else {
			single = append(single, status.Counter{Group: "counters", Name: v.Name, Value: v.Value})
		}
	}
	return append(grouped, single...)
}
