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

	"github.com/fsnotify/fsnotify"
	"github.com/sirupsen/logrus"

	"github.com/cgrulesengd/cgrulesengd/internal/cgroupfs"
	"github.com/cgrulesengd/cgrulesengd/internal/classify"
	"github.com/cgrulesengd/cgrulesengd/internal/kernel"
	"github.com/cgrulesengd/cgrulesengd/internal/proc"
	"github.com/cgrulesengd/cgrulesengd/internal/sched"
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
	watch  *rulesWatch
	layout *cgroupfs.Layout
	engine *classify.Engine
	rules  *rules.List
	obs    *observer                   // observe.go: --status and --metrics
	conn   atomic.Pointer[kernel.Conn] // for the observers, once subscribed
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

func (d *daemon) run() (err error) {
	o := &d.opt
	start := time.Now()
	log, out, err := newLogger(o, !d.notify.background(), d.stdout, d.stderr, d.notify.warn)
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
	for _, p := range []*string{&o.config, &o.configDir, &o.pidfile, &o.socket} {
		if *p != "" {
			if abs, err := filepath.Abs(*p); err == nil {
				*p = abs
			}
		}
	}
	d.setSlice()
	signal.Ignore(syscall.SIGPIPE)
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)

	d.layout, err = cgroupfs.Discover(o.procRoot)
	if err != nil {
		return fmt.Errorf("discovering cgroup hierarchies: %w", err)
	}
	if len(d.layout.Hierarchies) == 0 {
		return errors.New("no cgroup hierarchy is mounted")
	}
	mover := cgroupfs.NewMover(cgroupfs.WithCgroupRoot(o.cgroupRoot),
		// Out of descriptors (issue 19): cgroupfs rate-limits the reports.
		cgroupfs.WithShortageReport(func(s *cgroupfs.Shortage) { log.Error(s) }))
	missing, err := checkCgroupRoot(d.layout, o.cgroupRoot, mover.Exists)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		log.Warnf("--cgroup-root %s does not exist in hierarchies %q: there, only template destinations (which create it) can be used", o.cgroupRoot, missing)
	}
	tLoad := time.Now()
	list, names, err := d.load()
	if err != nil {
		return err
	}
	loadTook := time.Since(tLoad)

	d.engine = classify.New(classify.Config{
		Layout: d.layout,
		Mover:  mover,
		Tasks:  proc.NewFS(o.procRoot),
		Log:    log,
		Root:   o.cgroupRoot,
		// After a burst, the engine's hot table shrinks: hand the memory back.
		Release: debug.FreeOSMemory,
	})
	d.engine.SetRules(list, names)
	d.rules = list
	// The sticky socket is served (marks made) from now on, before the
	// start-up scan, which respects them.
	srv, err := d.listenSticky()
	if err != nil {
		return err
	}
	if srv != nil {
		defer func() {
			if err := srv.Close(); err != nil {
				log.Warn(err)
			}
		}()
	}
	if d.obs, err = d.listenObservers(start); err != nil {
		return err
	}
	defer d.obs.close()

	// Subscribe before scanning so that nothing started in between is missed.
	conn, err := kernel.Listen(kernel.Config{ReceiveBuffer: o.netlinkBuf, Events: wantedEvents})
	if err != nil {
		return fmt.Errorf("subscribing to the kernel's process events: %w", err)
	}
	d.conn.Store(conn)
	d.engine.Start()
	readerDone := make(chan error, 1)
	go func() { readerDone <- d.engine.Run(conn) }()

	tScan := time.Now()
	tasks, moved := d.engine.Scan()
	scanTook := time.Since(tScan)
	// Loading a large rules file leaves megabytes of garbage; a daemon that
	// then idles should not keep them resident.
	debug.FreeOSMemory()
	live, gcPct := tuneGC()

	watcher, err := newRulesWatch(o.config, o.configDir)
	if err != nil {
		log.Warnf("not watching the rules files for changes (reload with SIGUSR2): %v", err)
	}
	if o.pidfile != "" {
		if err := writePidfile(o.pidfile, os.Getpid()); err != nil {
			conn.Close()
			d.engine.Stop()
			return err
		}
		defer removePidfile(o.pidfile, os.Getpid())
	}
	log.WithFields(logrus.Fields{
		"rules": list.Len(), "mode": d.layout.Mode(), "cgroup_root": o.cgroupRoot,
		"filtered_events": conn.Filtered(), "scanned": tasks, "moved": moved,
		"took": time.Since(start).Round(time.Microsecond),
		"load": loadTook.Round(time.Microsecond), "scan": scanTook.Round(time.Microsecond),
		"heap": live, "gogc": gcPct,
	}).Info("ready")
	d.notify.ready()
	d.sd.ready(d.engine, list.Len())
	if d.notify.background() || !o.nodaemon {
		_ = os.Chdir("/")
	}

	var reload <-chan time.Time
	var debounce *time.Timer
	var fsEvents <-chan fsnotify.Event
	var fsErrors <-chan error
	if watcher != nil {
		defer watcher.Close()
		fsEvents, fsErrors = watcher.w.Events, watcher.w.Errors
		d.watch = watcher
	}
	for {
		select {
		case s := <-sigs:
			switch s {
			case syscall.SIGUSR2, syscall.SIGHUP, syscall.SIGUSR1:
				if s != syscall.SIGUSR1 {
					d.reopenLog()
				}
				log.WithField("signal", s.String()).Info("reloading rules")
				d.reload()
				if s == syscall.SIGUSR1 {
					log.WithField("stats", d.engine.Stats().String()).Info("stats")
				}
			case syscall.SIGTERM, syscall.SIGINT:
				log.WithField("signal", s.String()).Info("stopping")
				d.sd.stopping()
				return d.shutdown(conn, readerDone)
			}
		case ev, ok := <-fsEvents:
			if !ok {
				fsEvents = nil
				continue
			}
			if !watcher.relevant(ev) {
				continue
			}
			// Editors write in several steps; wait until they are done.
			if debounce == nil {
				debounce = time.NewTimer(250 * time.Millisecond)
			} else {
				debounce.Reset(250 * time.Millisecond)
			}
			reload = debounce.C
		case err, ok := <-fsErrors:
			if !ok {
				fsErrors = nil
				continue
			}
			log.Warnf("watching rules files: %v", err)
		case <-reload:
			reload = nil
			log.Info("rules files changed, reloading")
			d.reload()
		case err := <-readerDone:
			d.engine.Stop()
			return fmt.Errorf("kernel event reader stopped: %w", err)
		}
	}
}

func (d *daemon) shutdown(conn *kernel.Conn, readerDone <-chan error) error {
	conn.Close()
	select {
	case <-readerDone:
	case <-time.After(2 * time.Second):
		d.log.Warn("kernel event reader did not stop in time")
	}
	d.engine.Stop()
	ks := conn.Stats()
	d.log.WithFields(logrus.Fields{
		"datagrams": ks.Datagrams, "kernel_events": ks.Events,
	}).Infof("stats %s", d.engine.Stats().String())
	return nil
}

// load reads the rules; every diagnostic is logged as file:line: message.
func (d *daemon) load() (*rules.List, rules.Resolver, error) {
	names := rules.NSS()
	opt := rules.Options{Resolver: names, Controllers: d.layout.Controllers(), CheckTrust: os.Geteuid() == 0}
	list, diags, err := rules.Load(d.opt.config, d.opt.configDir, opt)
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

func (d *daemon) reload() {
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
		return
	}
	d.engine.SetRules(list, names)
	d.rules = list
	debug.FreeOSMemory()
	live, gcPct := tuneGC()
	d.log.WithFields(logrus.Fields{"rules": list.Len(), "heap": live, "gogc": gcPct}).Info("rules reloaded")
	d.sd.reloaded(list.Len(), nil)
	d.obs.reloaded(list.Len(), nil)
}

func firstLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " (and more, see above)"
	}
	return s
}
