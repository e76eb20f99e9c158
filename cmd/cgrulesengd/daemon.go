package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cgrulesengd/cgrulesengd/internal/cgroupfs"
	"github.com/cgrulesengd/cgrulesengd/internal/classify"
	"github.com/cgrulesengd/cgrulesengd/internal/kernel"
	"github.com/cgrulesengd/cgrulesengd/internal/proc"
	"github.com/cgrulesengd/cgrulesengd/internal/sched"
	"github.com/cgrulesengd/cgrulesengd/internal/sticky"
	"github.com/cgrulesengd/cgrulesengd/rules"
)

// wantedEvents are the kernel events the engine uses: credential changes and
// execs to classify, forks and exits to follow fork races.
const wantedEvents = kernel.EventFork | kernel.EventExec | kernel.EventUID | kernel.EventGID | kernel.EventExit

type daemon struct {
	opt            options
	notify         *notifier
	sd             *sdNotifier // systemd's NOTIFY_SOCKET (Type=notify)
	stdout, stderr io.Writer

	log    *logrus.Logger
	out    *logOutput
	layout *cgroupfs.Layout
	engine *classify.Engine
	obs    *observer                   // observe.go: --status and --metrics
	sys    sdState                     // sdmode.go: --systemd, the manager's client and applier
	events atomic.Pointer[eventSource] // for the observers, once subscribed

	// Owned by the reloads (start, then the reloader's goroutine).
	watch *rulesWatch
	rules *rules.List
}

// running is what start set up; Close takes it all down, in the reverse
// order, whatever point start reached.
type running struct {
	d       *daemon
	sticky  *sticky.Server
	events  *eventSource
	reader  chan error // Run's end; nil until the reader runs
	stopped bool       // the reader's end was received
	engine  bool       // the engine's goroutines run
	pidfile string     // written: removed by Close
}

// run is the daemon: start-up, the signal loop, shut-down. An error that
// ends it is logged before the log closes.
func (d *daemon) run() (err error) {
	log, out, err := newLogger(&d.opt, !d.notify.background(), d.stdout, d.stderr, d.notify.warn)
	if err != nil {
		return err
	}
	// Registered first, so run last: the error that ends the daemon is
	// logged before the log file closes (a background daemon has no other
	// trace of why it died).
	defer func() {
		if err != nil {
			log.Error(err)
		}
		out.Close()
	}()
	d.log, d.out = log, out
	d.sd.warn = log.Warnf
	// A signal that comes during start-up waits for the loop.
	stops, reloads, unnotify := notifySignals()
	defer unnotify()

	r, err := d.start()
	if err != nil {
		return err
	}
	var changes <-chan struct{}
	if d.watch != nil {
		changes = d.watch.changes(250*time.Millisecond, log.Warnf)
	}
	err = d.loop(stops, reloads, changes, r.reader, d.reload)
	r.stopped = err != nil // the loop received the reader's end
	r.Close()
	return err
}

// notifySignals routes the daemon's signals: SIGTERM and SIGINT to stops,
// a channel of their own, so that no burst of reload signals can crowd one
// out (issue 19: they shared a buffer of 8, and a signal that finds its
// channel full is dropped); SIGUSR1, SIGUSR2 and SIGHUP to reloads (one
// that finds it full is not lost either: those waiting in it ask for the
// same reload). SIGPIPE is ignored. unnotify undoes it.
func notifySignals() (stops, reloads chan os.Signal, unnotify func()) {
	signal.Ignore(syscall.SIGPIPE)
	stops = make(chan os.Signal, 1)
	signal.Notify(stops, syscall.SIGTERM, syscall.SIGINT)
	reloads = make(chan os.Signal, 16)
	signal.Notify(reloads, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGHUP)
	return stops, reloads, func() {
		signal.Stop(stops)
		signal.Stop(reloads)
	}
}

// loop serves signals and rules changes until a stopping signal (nil) or
// the end of the kernel reader (its error). Reloads (reload) run on a
// reloader's goroutine: the loop never waits for one, and requests made
// while one runs are merged into one more.
func (d *daemon) loop(stops, reloads <-chan os.Signal, changes <-chan struct{}, reader <-chan error, reload func(reloadWhy)) error {
	rl := newReloader(reload)
	defer rl.stop()
	for {
		select {
		case s := <-stops:
			d.log.WithField("signal", s.String()).Info("stopping")
			d.sd.stopping()
			return nil
		case s := <-reloads:
			if sig, ok := s.(syscall.Signal); ok {
				rl.request(reloadSignal(sig))
			}
		case <-changes:
			rl.request(byFiles)
		case err := <-reader:
			return fmt.Errorf("kernel event reader stopped: %w", err)
		}
	}
}

// start sets the daemon up: the cgroup layout, the rules, the engine, the
// sticky, status and metrics sockets, the kernel subscription and its
// reader, the start-up scan, the watch on the rules files and the pidfile;
// then it says the daemon is ready. On failure it undoes what it did.
func (d *daemon) start() (r *running, err error) {
	o := &d.opt
	started := time.Now()
	r = &running{d: d}
	defer func() {
		if err != nil {
			r.Close()
			r = nil
		}
	}()
	for _, p := range []*string{&o.config, &o.configDir, &o.pidfile, &o.socket} {
		if *p != "" {
			if abs, err := filepath.Abs(*p); err == nil {
				*p = abs
			}
		}
	}
	d.setSlice()
	mover, err := d.discover()
	if err != nil {
		return r, err
	}
	if err := d.startSystemd(); err != nil {
		return r, err
	}
	tLoad := time.Now()
	list, names, err := d.load()
	if err != nil {
		return r, err
	}
	loadTook := time.Since(tLoad)
	d.engine = classify.New(classify.Config{
		Layout: d.layout, Mover: mover, Tasks: proc.NewFS(o.procRoot), Log: d.log, Root: o.cgroupRoot,
		Appliers: d.sys.appliers(), SliceRoot: d.sys.sliceRoot,
		// After a burst, the engine's hot table shrinks: hand the memory back.
		Release: debug.FreeOSMemory,
	})
	d.engine.SetRules(list, names)
	d.rules = list
	// The sticky socket is served (marks made) from now on, before the
	// start-up scan, which respects them.
	if r.sticky, err = d.listenSticky(); err != nil {
		return r, err
	}
	// Subscribe before scanning so that nothing started in between is
	// missed; the BPF source knows what the rules name before the scan.
	if r.events, err = openEvents(*o, wantedEvents, d.log); err != nil {
		return r, err
	}
	if err := r.events.setFilter(list.Names()); err != nil {
		d.log.Warnf("kernel events: %v", err)
	}
	r.events.warnWidened(d.log)
	d.events.Store(r.events)
	if d.obs, err = d.listenObservers(started, r.events); err != nil {
		return r, err
	}
	d.engine.Start()
	r.engine = true
	r.reader = make(chan error, 1)
	go func() { r.reader <- d.engine.Run(r.events.reader()) }()

	tScan := time.Now()
	tasks, moved := d.engine.Scan()
	scanTook := time.Since(tScan)
	// Loading a large rules file leaves megabytes of garbage; a daemon that
	// then idles should not keep them resident.
	live, gcPct := releaseMemory()

	if d.watch, err = newRulesWatch(o.config, o.configDir); err != nil {
		d.log.Warnf("not watching the rules files for changes (reload with SIGUSR2): %v", err)
	}
	if o.pidfile != "" {
		if err := writePidfile(o.pidfile, os.Getpid()); err != nil {
			return r, err
		}
		r.pidfile = o.pidfile
	}
	d.log.WithFields(logrus.Fields{
		"rules": list.Len(), "mode": d.layout.Mode(), "cgroup_root": o.cgroupRoot,
		"events": r.events.kind, "scanned": tasks, "moved": moved,
		"took": time.Since(started).Round(time.Microsecond),
		"load": loadTook.Round(time.Microsecond), "scan": scanTook.Round(time.Microsecond),
		"heap": live, "gogc": gcPct,
	}).Info("ready")
	d.notify.ready()
	d.sd.ready(d.engine, list.Len())
	if d.notify.background() || !o.nodaemon {
		_ = os.Chdir("/")
	}
	return r, nil
}

// discover finds the cgroup hierarchies and checks --cgroup-root in them;
// it returns the mover that writes to them.
func (d *daemon) discover() (*cgroupfs.Mover, error) {
	o := &d.opt
	var err error
	if d.layout, err = cgroupfs.Discover(o.procRoot); err != nil {
		return nil, fmt.Errorf("discovering cgroup hierarchies: %w", err)
	}
	if len(d.layout.Hierarchies) == 0 {
		return nil, errors.New("no cgroup hierarchy is mounted")
	}
	mover := cgroupfs.NewMover(cgroupfs.WithCgroupRoot(o.cgroupRoot),
		// Out of descriptors (issue 19): cgroupfs rate-limits the reports.
		cgroupfs.WithShortageReport(func(s *cgroupfs.Shortage) { d.log.Error(s) }))
	missing, err := checkCgroupRoot(d.layout, o.cgroupRoot, mover.Exists)
	if err != nil {
		return nil, err
	}
	if len(missing) > 0 {
		d.log.Warnf("--cgroup-root %s does not exist in hierarchies %q: there, only template destinations (which create it) can be used", o.cgroupRoot, missing)
	}
	return mover, nil
}

// Close takes down what start set up, in the reverse order: the pidfile,
// the watch, the kernel subscription (waiting for its reader), the engine
// (with the counters logged), the observers and the sticky socket.
func (r *running) Close() {
	d := r.d
	if r.pidfile != "" {
		removePidfile(r.pidfile, os.Getpid())
	}
	if d.watch != nil {
		d.watch.Close()
	}
	if r.events != nil {
		r.events.Close()
		if r.reader != nil && !r.stopped {
			select {
			case <-r.reader:
			case <-time.After(2 * time.Second):
				d.log.Warn("kernel event reader did not stop in time")
			}
		}
	}
	d.stopApplier() // before the engine: what it still holds is handed back
	if r.engine {
		d.engine.Stop()
		d.log.WithFields(r.events.logFields()).Infof("stats %s", d.engine.Stats().String())
	}
	d.stopSystemd()
	d.obs.close()
	if r.sticky != nil {
		if err := r.sticky.Close(); err != nil {
			d.log.Warn(err)
		}
	}
}

// setSlice asks for the short scheduler slice of --sched-slice, before the
// engine and the reader start their threads (which inherit it). Failing is
// not fatal: the daemon works, only with longer delays on busy CPUs.
func (d *daemon) setSlice() {
	if d.opt.slice == 0 {
		return
	}
	n, err := sched.SetSlice(d.opt.slice)
	switch {
	case errors.Is(err, sched.ErrNotSupported):
		d.log.Infof("--sched-slice %v not applied: %v", d.opt.slice, err)
	case err != nil:
		d.log.Warnf("--sched-slice %v not applied: %v", d.opt.slice, err)
	default:
		d.log.Debugf("scheduler slice %v set on %d threads", d.opt.slice, n)
	}
}

// load reads the rules; every diagnostic is logged as file:line: message.
func (d *daemon) load() (*rules.List, rules.Resolver, error) {
	names := rules.NSS()
	opt := rules.Options{Resolver: names, Controllers: d.layout.Controllers(), CheckTrust: os.Geteuid() == 0}
	d.systemdRules(&opt)
	list, diags, err := rules.Load(d.opt.config, d.opt.configDir, opt)
	if err == nil {
		diags = append(diags, d.systemdDiags(list)...)
	}
	for _, dg := range diags {
		if dg.Severity == rules.Error {
			d.log.Error(dg.String())
		} else {
			d.log.Warn(dg.String())
		}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("loading rules: %w", err)
	}
	return list, names, nil
}

// reopenLog continues the log in a new file after a rotation (SIGHUP,
// SIGUSR2); the old file is kept when the new one cannot be opened.
func (d *daemon) reopenLog() {
	if err := d.out.Reopen(); err != nil {
		d.log.Errorf("log file not reopened, still writing to the one open before: %v", err)
	}
}

// reload loads the rules again (on the reloader's goroutine): why says who
// asked, and whether the log file is reopened first and the counters
// logged afterwards. A failed load keeps the rules in force.
func (d *daemon) reload(why reloadWhy) {
	if why.reopensLog() {
		d.reopenLog()
	}
	d.log.WithField("by", why.String()).Info("reloading rules")
	if d.watch != nil {
		// An edit may have re-pointed a symbolic link (watched even if
		// this load fails, so that fixing the new target reloads).
		d.watch.refresh()
	}
	d.sd.reloading()
	list, names, err := d.load()
	if err != nil {
		n := 0
		if d.rules != nil {
			n = d.rules.Len()
		}
		d.sd.reloaded(n, err)
		d.obs.reloaded(n, err)
		d.log.Errorf("reload failed, the %d rules loaded before stay in force: %v", n, firstLine(err))
	} else {
		// The kernel lets through what either list needs while both may
		// be in force; the engine narrows it to the new one's names.
		if es := d.events.Load(); es != nil && d.rules != nil {
			if err := es.setFilter(d.rules.Names().Union(list.Names())); err != nil {
				d.log.Warnf("kernel events: %v (rescanning)", err)
				d.engine.RequestRescan()
			}
		}
		if d.rules != nil && d.rules.Len() > 0 && list.Len() == 0 {
			// Issue 19: a rules file rewritten in place (truncated, then
			// written) is seen empty for a moment.
			d.log.Warnf("rules reloaded with no rule (%d before): no task is classified until rules come back (the tasks classified meanwhile go by the rules of the next reload, if it comes within a minute)", d.rules.Len())
		}
		d.engine.SetRules(list, names)
		d.rules = list
		if es := d.events.Load(); es != nil {
			es.warnWidened(d.log)
		}
		live, gcPct := releaseMemory()
		d.log.WithFields(logrus.Fields{"rules": list.Len(), "heap": live, "gogc": gcPct}).Info("rules reloaded")
		d.sd.reloaded(list.Len(), nil)
		d.obs.reloaded(list.Len(), nil)
		if d.opt.reclassOnRel {
			// --reclassify-on-reload: running tasks follow the new rules.
			if _, ok := d.engine.Reclassify(); !ok {
				d.log.Warn("--reclassify-on-reload: the tasks were not classified again (the daemon is stopping)")
			}
		}
	}
	if why.logsStats() {
		d.log.WithField("stats", d.engine.Stats().String()).Info("stats")
	}
}

// releaseMemory hands the garbage of a load back to the system and sets
// the collector's goal from the live heap that remains (gc.go).
func releaseMemory() (live uint64, gcPct int) {
	debug.FreeOSMemory()
	return tuneGC()
}

func firstLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " (and more, see above)"
	}
	return s
}
