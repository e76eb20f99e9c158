package main

// --systemd and --systemd-bus: whether destinations that name a systemd
// slice are placed through the service manager, which manager, and the
// load-time warnings for raw destinations that would write into cgroups
// systemd manages. The same resolution serves the daemon, --check and
// --explain, so that they agree on what a rules file means.

import (
	"context"
	"fmt"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cgrulesengd/cgrulesengd/internal/cgroupfs"
	"github.com/cgrulesengd/cgrulesengd/internal/classify"
	"github.com/cgrulesengd/cgrulesengd/internal/metrics"
	"github.com/cgrulesengd/cgrulesengd/internal/systemd"
	"github.com/cgrulesengd/cgrulesengd/rules"
)

// systemdSetting is what --systemd resolved to on this machine. The probe
// is made whatever the mode: the warnings about raw destinations in
// systemd's cgroups depend on the machine, not on the mode.
type systemdSetting struct {
	mode    string            // --systemd as given: auto, on, off
	on      bool              // slice destinations are placed through systemd
	address string            // the manager's D-Bus address, when on
	det     systemd.Detection // PID 1 and the cgroup2 hierarchy, as probed
	detErr  error             // the probe failed (then det says nothing)
}

// resolveSystemd probes the machine below fsRoot ("/"; the hidden
// --proc-root's parent in tests) once, and applies mode and bus.
func resolveSystemd(mode, bus, fsRoot string, layout *cgroupfs.Layout) systemdSetting {
	s := systemdSetting{mode: mode}
	s.det, s.detErr = systemd.Detect(fsRoot, layout)
	switch mode {
	case "on":
		s.on = true
	case "auto":
		s.on = s.detErr == nil && s.det.Systemd
	}
	if s.on {
		s.address = bus
		if s.address == "" {
			s.address = systemd.DefaultAddress
		}
	}
	return s
}

// fsRootOf is the file system root whose proc is procRoot: "/" for
// "/proc".
func fsRootOf(procRoot string) string { return filepath.Dir(filepath.Clean(procRoot)) }

// probe says what Detect found.
func (s systemdSetting) probe() string {
	if s.detErr != nil {
		return "not probed: " + s.detErr.Error()
	}
	return s.det.Reason
}

// String is the start-up log line's text.
func (s systemdSetting) String() string {
	probe := s.probe()
	switch {
	case s.on && s.mode == "auto":
		return fmt.Sprintf("slice destinations are placed through the service manager at %s (--systemd=auto: %s)", s.address, probe)
	case s.on:
		return fmt.Sprintf("slice destinations are placed through the service manager at %s (--systemd=on; this machine: %s)", s.address, probe)
	case s.mode == "auto":
		return fmt.Sprintf("slice destinations are refused (--systemd=auto: %s)", probe)
	default:
		return fmt.Sprintf("slice destinations are refused (--systemd=off; this machine: %s)", probe)
	}
}

// offReason says why slice destinations are refused, for the rules'
// error ("" when they are not).
func (s systemdSetting) offReason() string {
	if s.on {
		return ""
	}
	if s.mode == "auto" {
		return "--systemd=auto: " + s.probe()
	}
	return "--systemd=off"
}

// dialSystemd connects to the manager of an enabled setting. Failing is
// fatal at start: the admin asked for this manager (--systemd=on, or a
// systemd machine under auto, whose private socket always exists for
// root), and slice rules could never be placed.
func dialSystemd(s systemdSetting, procRoot string, timeout time.Duration) (*systemd.Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := systemd.Dial(ctx, systemd.Config{Address: s.address, Proc: procRoot})
	if err != nil {
		hint := "check --systemd-bus"
		if s.mode == "auto" {
			hint = "or give --systemd=off to refuse slice destinations instead"
		}
		return nil, fmt.Errorf("--systemd=%s: %w (%s)", s.mode, err, hint)
	}
	return c, nil
}

// sdState is the daemon's systemd side: the setting resolved once at
// start and, when slice destinations are placed, the manager's client, the
// engine's applier for them and where the manager's tree is in our
// cgroup2 hierarchy.
type sdState struct {
	setting   systemdSetting
	client    *systemd.Client
	applier   *systemd.Applier
	sliceRoot string
}

// appliers are the engine's extra appliers (classify.Config.Appliers).
func (s *sdState) appliers() []classify.Applier {
	if s.applier == nil {
		return nil
	}
	return []classify.Applier{s.applier}
}

// startSystemd resolves --systemd once, logs what it found and, when
// slice destinations are placed, connects to the manager.
func (d *daemon) startSystemd() error {
	d.sys.setting = resolveSystemd(d.opt.systemd, d.opt.systemdBus, fsRootOf(d.opt.procRoot), d.layout)
	s := &d.sys.setting
	if s.mode == "auto" && !s.on && d.opt.systemdBus != "" {
		d.log.Warnf("--systemd-bus %s is not used: %s", d.opt.systemdBus, s.offReason())
	}
	if !s.on {
		d.log.Info("systemd: " + s.String())
		return nil
	}
	c, err := dialSystemd(*s, d.opt.procRoot, 10*time.Second)
	if err != nil {
		return err
	}
	d.sys.client = c
	ns, _ := c.Namespace()
	depth := 0
	if ns != nil {
		depth = ns.Depth()
	}
	root, err := c.CgroupRoot()
	if err != nil {
		// Slices are then judged as if the manager's tree were ours: a
		// task already in its slice may be placed again (harmless).
		d.log.Warnf("systemd: where the manager's cgroups are is unknown (%v): taken as /", err)
		root = "/"
	}
	d.sys.sliceRoot = root
	d.sys.applier = systemd.NewApplier(systemd.ApplierConfig{
		Placer: systemd.PlacerConfig{Client: c},
		Log:    d.log,
		Repair: func() {
			if d.engine != nil {
				d.engine.RequestRescan()
			}
		},
	})
	a := d.sys.applier
	d.sd.placed = func() uint64 { return a.Stats().Placed }
	d.log.WithFields(logrus.Fields{"manager_pid_ns_depth": depth, "manager_cgroup": root}).Info("systemd: " + s.String())
	return nil
}

// stopApplier ends the placements through systemd: calls in flight end,
// the rest are handed back to the engine as not placed. Before the engine
// stops.
func (d *daemon) stopApplier() {
	if d.sys.applier != nil {
		d.sys.applier.Close()
	}
}

// stopSystemd closes the manager's connection.
func (d *daemon) stopSystemd() {
	if d.sys.client != nil {
		d.sys.client.Close()
	}
}

// systemdRules sets what the rules parser needs to know of --systemd.
func (d *daemon) systemdRules(opt *rules.Options) {
	opt.Systemd, opt.SystemdOff = d.sys.setting.on, d.sys.setting.offReason()
}

// systemdDiags are the load-time warnings for raw destinations in cgroups
// systemd manages (managedDiags), for a list that loaded.
func (d *daemon) systemdDiags(list *rules.List) rules.Diagnostics {
	return managedDiags(list, d.layout, d.sys.setting, d.opt.cgroupRoot, systemd.Getxattr)
}

// managedDiags warns, for each raw (not slice) target of the list, when
// its destination would write into a cgroup that systemd manages on this
// machine: in the cgroup2 hierarchy (pure v2, or hybrid's unified) or in
// the name=systemd one, when PID 1 is a systemd that owns the cgroup2
// hierarchy. Not managed: a destination at or below --cgroup-root (other
// than /), or below a delegated cgroup (systemd.Managed). Rules that name
// v1 controllers only (cpu, memory on a hybrid machine) write nowhere
// systemd tracks units, and get no warning. A templated destination is
// checked through its fixed part ("users" of "users/%u").
func managedDiags(list *rules.List, layout *cgroupfs.Layout, s systemdSetting, cgroupRoot string, getxattr systemd.XattrFunc) rules.Diagnostics {
	if list == nil || layout == nil || !s.det.Systemd || layout.Unified == nil {
		return nil
	}
	mount := layout.Unified.Mountpoint
	var ds rules.Diagnostics
	for _, r := range list.Rules() {
		for i := range r.Targets {
			tg := &r.Targets[i]
			if tg.Slice {
				continue
			}
			hier := systemdHierarchy(layout, tg.Controllers)
			if hier == "" {
				continue
			}
			fixed := fixedPrefix(tg.Dest)
			rel := path.Join("/", cgroupRoot, fixed)
			managed, _, err := systemd.Managed(mount, rel, cgroupRoot, getxattr)
			if !managed {
				continue
			}
			instead := "a slice destination (controllers *, such as batch.slice, or batch-%u.slice per user)"
			if !s.on {
				instead = "a slice destination with --systemd=auto (controllers *, such as batch.slice, or batch-%u.slice per user)"
			}
			where := fmt.Sprintf("destination %s writes into %s of the %s hierarchy", quoteDest(tg.Dest), path.Join("/", cgroupRoot, tg.Dest), hier)
			msg := where + ", which systemd manages: a task moved there leaves its unit behind systemd's back (systemctl stop no longer ends it, the unit's limits and accounting no longer apply, and systemd may move it back); write " +
				instead + " instead, or keep raw destinations below a delegated cgroup (a unit with Delegate=yes) and give that cgroup as --cgroup-root"
			if err != nil {
				msg = fmt.Sprintf("%s, which systemd may manage: no delegated cgroup was found above it, but %v; unless it is delegated, write %s instead", where, err, instead)
			}
			ds = append(ds, rules.Diagnostic{File: tg.File, Line: tg.Line, Severity: rules.Warning, Msg: msg})
		}
	}
	return ds
}

// systemdHierarchy names the hierarchy systemd tracks units in that a
// target with these controllers writes to ("unified" or "name=systemd"),
// or "" for none. "*" means every hierarchy but the named ones, as in
// rules.Expand.
func systemdHierarchy(layout *cgroupfs.Layout, controllers []string) string {
	var hs []*cgroupfs.Hierarchy
	if len(controllers) == 1 && controllers[0] == "*" {
		for _, h := range layout.Hierarchies {
			if h.Version == cgroupfs.V2 || !strings.HasPrefix(h.Controllers[0], "name=") {
				hs = append(hs, h)
			}
		}
	} else {
		for _, c := range controllers {
			hs = append(hs, layout.Resolve(c)...)
		}
	}
	for _, h := range hs {
		if h == layout.Unified {
			return cgroupfs.Unified
		}
		for _, c := range h.Controllers {
			if c == "name=systemd" {
				return c
			}
		}
	}
	return ""
}

// fixedPrefix is the part of a canonical destination (rules.Target.Dest)
// before its first component with a template or an escape.
func fixedPrefix(dest string) string {
	var keep []string
	for _, c := range strings.Split(dest, "/") {
		if strings.ContainsAny(c, `%\`) {
			break
		}
		keep = append(keep, c)
	}
	return strings.Join(keep, "/")
}

func quoteDest(d string) string {
	if strings.ContainsAny(d, " \t\"") {
		return fmt.Sprintf("%q", d)
	}
	return d
}

// values are the counters of the placements through systemd, rows of the
// daemon's one table of counters (--status, STATUS=, /metrics), after the
// engine's and the kernel's; none when slice destinations are not placed.
func (s *sdState) values() []classify.Value {
	if s.applier == nil {
		return nil
	}
	return placerValues(s.applier.Stats())
}

// defs are the definitions of values, for the metrics collector.
func (s *sdState) defs() []classify.Def {
	if s.applier == nil {
		return nil
	}
	// The latency's quantiles are for --status: /metrics has the
	// histogram, systemd_call_latency_seconds.
	vals := placerValues(systemd.PlacerStats{})[:len(placerResults)+numPlacerCounters]
	out := make([]classify.Def, len(vals))
	for i, v := range vals {
		out[i] = v.Def
	}
	return out
}

// placerResults name the ends of a placement (the group
// systemd_placements, label result).
var placerResults = []string{"placed", "task_gone", "outside_namespace", "unreachable", "failed", "refused", "closed"}

// numPlacerCounters is the number of placerValues' rows after the
// results and before the latency's quantiles.
const numPlacerCounters = 10

// placerValues is the table's rows for a placer's counters: the results
// (a group), numPlacerCounters counters and gauges, then the call
// latency's median, 99th percentile and maximum in microseconds.
func placerValues(st systemd.PlacerStats) []classify.Value {
	one := func(name string, kind classify.Kind, v uint64, help string) classify.Value {
		return classify.Value{Def: classify.Def{Name: name, Help: help, Kind: kind}, Value: v}
	}
	us := func(d time.Duration) uint64 { return uint64(d / time.Microsecond) }
	res := []uint64{st.Placed, st.Gone, st.Outside, st.Unreachable, st.Failed, st.Refused, st.Closed}
	var out []classify.Value
	for i, name := range placerResults {
		out = append(out, classify.Value{Def: classify.Def{Name: name, Kind: classify.Counter, Group: "systemd_placements", Label: "result",
			Help: "Placements of tasks into slices through the service manager, by how they ended (refused: its queue was full, repaired by a rescan)."}, Value: res[i]})
	}
	return append(out,
		one("systemd_scopes_started", classify.Counter, st.Started, "Scopes started (StartTransientUnit): a user's first task in a slice, or after the scope emptied."),
		one("systemd_attaches", classify.Counter, st.Attached, "Calls that joined tasks to an existing scope (AttachProcessesToUnit)."),
		one("systemd_batched_placements", classify.Counter, st.Batched, "Placements made in a call with others (children forked before their parent's move, bursts)."),
		one("systemd_calls", classify.Counter, st.Calls, "D-Bus calls to the service manager."),
		one("systemd_call_errors", classify.Counter, st.CallErrors, "D-Bus calls that failed (each placement's error is logged, a few a minute per kind)."),
		one("systemd_retries", classify.Counter, st.Retries, "Placements tried again because the manager could not be reached."),
		one("systemd_reconnects", classify.Counter, st.Reconnects, "Connections to the manager made again (after daemon-reexec, or a dropped connection)."),
		one("systemd_repairs", classify.Counter, st.Repairs, "Rescans asked for because placements were given up while the manager could not be reached."),
		one("systemd_calls_in_flight", classify.Gauge, uint64(max(st.InFlight, 0)), "D-Bus calls in progress now."),
		one("systemd_placements_pending", classify.Gauge, uint64(max(st.Pending, 0)), "Placements taken and not finished (queued, in a call, or waiting to be tried again)."),
		one("systemd_call_latency_p50_microseconds", classify.Gauge, us(st.CallLatency.Quantile(0.5)), "Median duration of a D-Bus call so far (bucket bound; the histogram is systemd_call_latency_seconds)."),
		one("systemd_call_latency_p99_microseconds", classify.Gauge, us(st.CallLatency.Quantile(0.99)), "99th percentile of a D-Bus call's duration so far (bucket bound)."),
		one("systemd_call_latency_max_microseconds", classify.Gauge, us(st.CallLatency.Max), "Longest D-Bus call so far."),
	)
}

// callHistogram is the D-Bus call latency for /metrics.
func (s *sdState) callHistogram() *metrics.Histogram {
	if s.applier == nil {
		return nil
	}
	h := s.applier.Stats().CallLatency
	return &metrics.Histogram{Bounds: systemd.HistogramBounds[:], Counts: h.Counts[:], Count: h.Count, Sum: h.Sum}
}
