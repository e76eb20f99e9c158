// Command cgrulesengd is the CGroup Rules Engine Daemon: it listens to the
// kernel's process events and moves every task into the cgroups that
// /etc/cgrules.conf names for its user, group or program. It is a drop-in
// replacement for libcgroup's daemon of the same name (same rules format,
// same flags); see the README for where it differs.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/cgrulesengd/cgrulesengd/internal/cgroupfs"
	"github.com/cgrulesengd/cgrulesengd/internal/metrics"
	"github.com/cgrulesengd/cgrulesengd/internal/systemd"
	"github.com/cgrulesengd/cgrulesengd/rules"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
	o, err := parseArgs(args)
	if err != nil {
		fmt.Fprintf(stderr, "cgrulesengd: %v\nTry 'cgrulesengd --help' for more information.\n", err)
		return 2
	}
	switch {
	case o.help:
		usage(stdout)
		return 0
	case o.version:
		fmt.Fprintf(stdout, "cgrulesengd %s\n", version)
		return 0
	case o.status:
		return runStatus(stdout, stderr, o.statusSocket)
	case o.reclassify:
		return runReclassify(stdout, stderr, o.statusSocket)
	case len(o.settings) > 0:
		return runCheckSettings(stderr, o.settings)
	case o.check || o.explain:
		ropt := rules.Options{Resolver: rules.NSS(), CheckTrust: os.Geteuid() == 0}
		layout, err := cgroupfs.Discover(o.procRoot)
		if err == nil && len(layout.Hierarchies) > 0 {
			ropt.Controllers = layout.Controllers()
		} else {
			// Validating a file on a machine without cgroups (a build host)
			// still works; controller names are then not checked.
			fmt.Fprintf(stderr, "cgrulesengd: no cgroup hierarchies found (%v): controller names are not checked\n", errOrNone(err))
			layout = nil
		}
		// The daemon's meaning of a slice destination, without
		// connecting: --check validates files, it places nothing.
		sd := resolveSystemd(o.systemd, o.systemdBus, fsRootOf(o.procRoot), layout)
		ropt.Systemd, ropt.SystemdOff = sd.on, sd.offReason()
		extra := func(l *rules.List) rules.Diagnostics {
			return managedDiags(l, layout, sd, o.cgroupRoot, systemd.Getxattr)
		}
		if o.check {
			return runCheck(stdout, stderr, o.config, o.configDir, ropt, extra)
		}
		return runExplain(stdout, stderr, o.config, o.configDir, ropt, extra, o.cgroupRoot, o.exUser, o.exGroup, o.exProc)
	}
	if _, _, err := socketOwner(&o); err != nil {
		// Before detaching, so that the starting command says it.
		fmt.Fprintf(stderr, "cgrulesengd: %v\n", err)
		return exitSocketOwner
	}
	if a, err := metrics.ParseAddress(o.metricsAddr); err == nil && metricsExposure(a) != "" {
		// Before detaching: the starting command (or the journal) shows
		// it whatever the log level; the log has it as a warning.
		fmt.Fprintf(stderr, "cgrulesengd: warning: %s\n", metricsExposure(a))
	}
	if err := raiseOpenFileLimit(); err != nil {
		fmt.Fprintf(stderr, "cgrulesengd: %v\n", err)
	}
	n := notifierFromEnv()
	if !o.nodaemon && !n.background() && !underServiceManager() {
		return startBackground(args, stderr)
	}
	d := &daemon{opt: o, notify: n, sd: newSDNotifier(nil), stdout: stdout, stderr: stderr}
	if err := d.run(); err != nil {
		// run has logged err already; the starter (background) or the
		// terminal (foreground) hears it too, unless the log is stderr.
		n.fail(err)
		d.sd.failed(err)
		if d.out == nil || !d.out.stderr {
			fmt.Fprintf(stderr, "cgrulesengd: %v\n", err)
		}
		return 1
	}
	return 0
}

func errOrNone(err error) error {
	if err == nil {
		return errors.New("none mounted")
	}
	return err
}

// raiseOpenFileLimit raises the soft open-file limit (RLIMIT_NOFILE) to the
// hard one, as daemons do (the Go runtime itself stops one short of it).
// The daemon's descriptors are budgeted from the soft limit: half of it
// for the cache of cgroup.procs descriptors (cgroupfs.DefaultMaxOpen), the
// rest for everything else; so it is raised before the Mover is made. A
// failure is not fatal: the budget follows whatever limit is in force.
func raiseOpenFileLimit() error {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("reading the open-file limit: %w", err)
	}
	if lim.Cur == lim.Max {
		return nil
	}
	want := lim
	want.Cur = lim.Max
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &want); err != nil {
		return fmt.Errorf("raising the open-file limit from %d to its hard limit %d: %w", lim.Cur, lim.Max, err)
	}
	return nil
}
