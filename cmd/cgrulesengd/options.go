package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/cgrulesengd/cgrulesengd/internal/bpfevents"
	"github.com/cgrulesengd/cgrulesengd/internal/kernel"
	"github.com/cgrulesengd/cgrulesengd/internal/metrics"
	"github.com/cgrulesengd/cgrulesengd/internal/sched"
	"github.com/cgrulesengd/cgrulesengd/internal/status"
	"github.com/cgrulesengd/cgrulesengd/internal/sticky"
	"github.com/cgrulesengd/cgrulesengd/internal/systemd"
)

// options are the daemon's command-line settings. The short options and
// their meaning follow libcgroup's cgrulesengd so that existing service
// files keep working.
type options struct {
	nodaemon    bool
	debug       bool
	verbosity   int // -v minus -q
	nolog       bool
	logfile     string // "" = not set, "-" = stdout
	syslog      bool
	facility    string // "" = default (DAEMON), "0".."7" = LOCAL0..7, "D" = DAEMON
	socketUser  string
	socketGroup string
	socket      string // sticky socket path; "" = none

	statusSocket string // the root-only status socket; "" = none
	metricsAddr  string // --metrics; "" = off
	maxDests     int    // per-destination series at most
	status       bool   // --status: ask the running daemon
	reclassify   bool   // --reclassify: ask the running daemon to classify every task again
	reclassOnRel bool   // --reclassify-on-reload

	config     string
	configDir  string
	cgroupRoot string
	pidfile    string
	netlinkBuf int
	slice      time.Duration // requested scheduler slice; 0 = the kernel's default
	events     string        // --events: eventsAuto, eventsBPF or eventsNetlink

	// Hidden, for tests: the BPF source's ring buffer in bytes (0 = its
	// default), and a BTF file to load instead of the kernel's (a bad one
	// forces the fallback to the proc connector).
	bpfRing int
	bpfBTF  string

	systemd    string // --systemd: "auto", "on" or "off"
	systemdBus string // --systemd-bus: the manager's D-Bus address; "" = its private socket

	check    bool
	explain  bool
	settings []string // --check-settings: the service's settings files to check
	exUser   string
	exGroup  string
	exProc   string
	help     bool
	version  bool
	procRoot string // hidden: /proc, for tests
}

func defaultOptions() options {
	return options{
		config:     "/etc/cgrules.conf",
		configDir:  "/etc/cgrules.d",
		cgroupRoot: "/",
		netlinkBuf: kernel.DefaultReceiveBuffer,
		events:     eventsAuto,
		slice:      100 * time.Microsecond,
		procRoot:   "/proc",
		socket:     sticky.DefaultPath,
		systemd:    "auto",

		statusSocket: status.DefaultPath,
		maxDests:     1000,
	}
}

const usageText = `Usage: cgrulesengd [options]

CGroup Rules Engine Daemon: moves each task into the cgroups that
/etc/cgrules.conf names for its user, group or program.

  -n, --nodaemon               stay in the foreground
  -d, --debug                  same as -nvvv -f - (foreground, debug log on stdout)
  -v, --verbose                more log messages (repeat: warnings, info, debug)
  -q, --quiet                  fewer log messages
  -Q, --nolog                  no log at all
  -f, --logfile=FILE           log to FILE ("-" = standard output)
  -s[FAC], --syslog[=FAC]      log to syslog; FAC is 0-7 (LOCAL0-7) or D (DAEMON, default)
  -u, --socket-user=USER       owner of the sticky socket (default: root)
  -g, --socket-group=GROUP     group of the sticky socket: its members may mark their
                               own processes with cgexec/cgclassify (default: root)
      --socket=PATH            the sticky socket of cgexec and cgclassify --sticky
                               (default /var/run/cgred.socket, which libcgroup's
                               tools use; "" = no socket)
  -c, --config=FILE            rules file (default /etc/cgrules.conf)
      --config-dir=DIR         drop-in directory, *.conf in lexical order (default /etc/cgrules.d)
      --cgroup-root=PATH       act only below PATH in every hierarchy; destinations are
                               relative to it (default /)
      --pidfile=FILE           write the daemon's pid to FILE once it is ready
      --events=SOURCE          where process events come from: bpf (BPF programs that
                               report only what the rules may act on), netlink (the
                               proc connector: every event on the machine), or auto
                               (default: bpf where the kernel and the daemon's
                               privileges allow it, else netlink, saying why)
      --netlink-buffer=BYTES   netlink receive buffer (default 16777216; K, M suffixes)
      --sched-slice=DURATION   scheduler time slice the daemon's threads ask for, so that
                               they run as soon as an event wakes them even when the
                               task that changed its uid keeps the CPU busy; no extra
                               CPU share (default 100us; 0 = kernel default; Linux 6.12+)
      --systemd=auto|on|off    place tasks whose destination is a systemd slice
                               (batch.slice, batch-%u.slice) through the service
                               manager over D-Bus; auto (default): when PID 1 is a
                               booted systemd that owns the cgroup2 hierarchy; off:
                               such rules are errors
      --systemd-bus=ADDRESS    the manager's D-Bus address (default
                               unix:path=/run/systemd/private; a proxied socket or a
                               system bus of a container's manager work too)
      --status                 print what the running daemon is doing (counters, rules
                               by hits, the last reload); exit 3 when none runs
      --status-socket=PATH     the root-only socket --status asks (default
                               /run/cgrulesengd.sock; "" = none)
      --reclassify             ask the running daemon (through --status-socket) to
                               classify every running task again by the rules in
                               force, now; sticky tasks stay (exit 3: none runs)
      --reclassify-on-reload   after every reload that loads, classify every running
                               task again (default: a reload applies from the next
                               credential change or exec, as libcgroup's)
      --metrics=ADDR           serve Prometheus metrics at http://ADDR/metrics: IP:PORT
                               (e.g. 127.0.0.1:9580, [::1]:9580) or unix:PATH (root
                               only); off by default
      --metrics-max-destinations=N
                               per-destination series at most (default 1000)
      --check                  load the rules, print every problem as file:line: message
      --check-settings=FILE    exit 6 unless FILE, a settings file of the service (which
                               gives its variables to the daemon, as root), is root's
                               alone like the rules files; repeatable; a missing FILE is
                               fine (the systemd unit runs this before the daemon)
      --explain                print which rule and cgroups apply to --user [--group] [--process]
      --user=NAME|UID          (with --explain)
      --group=NAME|GID         (with --explain; default: the user's primary group)
      --process=PATH           (with --explain)
  -h, --help                   this help
      --version                print the version

Signals: SIGUSR2 or SIGHUP reload the rules and reopen the log file (logrotate),
SIGTERM or SIGINT stop the daemon.
Environment: CGROUP_LOGLEVEL=ERROR|WARNING|INFO|DEBUG sets the starting log level;
NOTIFY_SOCKET (systemd Type=notify): stay in the foreground, report readiness.
See cgrulesengd(8), cgrules.conf(5), cgred.conf(5).
`

func usage(w io.Writer) { fmt.Fprint(w, usageText) }

var errUsage = errors.New("usage error")

// parseArgs parses args (without the program name) getopt-style: short
// options may be bundled (-nvvv), their arguments attached or separate
// (-f FILE, -fFILE), except -s whose facility must be attached (-s0), as
// in libcgroup. Long options take --name=value or --name value, except
// --syslog whose facility must use "=".
func parseArgs(args []string) (options, error) {
	o := defaultOptions()
	type longOpt struct {
		arg int // 0 none, 1 required, 2 optional (only with =)
		set func(v string) error
	}
	str := func(p *string) func(string) error { return func(v string) error { *p = v; return nil } }
	flag := func(p *bool) func(string) error { return func(string) error { *p = true; return nil } }
	files := func(p *[]string) func(string) error {
		return func(v string) error {
			if v == "" {
				return errors.New("want a file name")
			}
			*p = append(*p, v)
			return nil
		}
	}
	long := map[string]longOpt{
		"nodaemon":      {set: flag(&o.nodaemon)},
		"debug":         {set: flag(&o.debug)},
		"verbose":       {set: func(string) error { o.verbosity++; return nil }},
		"quiet":         {set: func(string) error { o.verbosity--; return nil }},
		"nolog":         {set: flag(&o.nolog)},
		"logfile":       {arg: 1, set: str(&o.logfile)},
		"syslog":        {arg: 2, set: func(v string) error { o.syslog = true; return setFacility(&o, v) }},
		"socket-user":   {arg: 1, set: str(&o.socketUser)},
		"socket-group":  {arg: 1, set: str(&o.socketGroup)},
		"socket":        {arg: 1, set: str(&o.socket)},
		"status":        {set: flag(&o.status)},
		"status-socket": {arg: 1, set: str(&o.statusSocket)},
		"metrics": {arg: 1, set: func(v string) error {
			if v != "" {
				if _, err := metrics.ParseAddress(v); err != nil {
					return err
				}
			}
			o.metricsAddr = v
			return nil
		}},
		"metrics-max-destinations": {arg: 1, set: func(v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 1000000 {
				return fmt.Errorf("want a number of series from 0 to 1000000, got %q", v)
			}
			o.maxDests = n
			return nil
		}},
		"config":         {arg: 1, set: func(v string) error { o.config = cmp.Or(v, o.config); return nil }}, // "" (an unset service variable): the default
		"config-dir":     {arg: 1, set: str(&o.configDir)},
		"cgroup-root":    {arg: 1, set: str(&o.cgroupRoot)},
		"pidfile":        {arg: 1, set: str(&o.pidfile)},
		"netlink-buffer": {arg: 1, set: func(v string) error { n, err := parseSize(v); o.netlinkBuf = n; return err }},
		"sched-slice":    {arg: 1, set: func(v string) error { d, err := parseSlice(v); o.slice = d; return err }},
		"systemd": {arg: 1, set: func(v string) error {
			switch v {
			case "auto", "on", "off":
				o.systemd = v
				return nil
			}
			return fmt.Errorf("want auto, on or off, got %q", v)
		}},
		"systemd-bus": {arg: 1, set: func(v string) error {
			if err := systemd.CheckAddress(v); err != nil {
				return err
			}
			o.systemdBus = v
			return nil
		}},
		"check":     {set: flag(&o.check)},
		"explain":   {set: flag(&o.explain)},
		"user":      {arg: 1, set: str(&o.exUser)},
		"group":     {arg: 1, set: str(&o.exGroup)},
		"process":   {arg: 1, set: str(&o.exProc)},
		"help":      {set: flag(&o.help)},
		"version":   {set: flag(&o.version)},
		"proc-root": {arg: 1, set: str(&o.procRoot)},
		// The event source, and its hidden test knobs.
		"events": {arg: 1, set: func(v string) error {
			switch v {
			case eventsAuto, eventsBPF, eventsNetlink:
				o.events = v
				return nil
			}
			return fmt.Errorf("want auto, bpf or netlink, got %q", v)
		}},
		"bpf-ring-buffer": {arg: 1, set: func(v string) error { n, err := parseSize(v); o.bpfRing = n; return err }},
		"bpf-kernel-btf":  {arg: 1, set: str(&o.bpfBTF)},

		// Issue 19: the service's settings files (the unit's ExecStartPre).
		"check-settings": {arg: 1, set: files(&o.settings)},

		// Issue 19: what a reload does to running tasks.
		"reclassify":           {set: flag(&o.reclassify)},
		"reclassify-on-reload": {set: flag(&o.reclassOnRel)},
	}
	short := map[byte]string{
		'n': "nodaemon", 'd': "debug", 'v': "verbose", 'q': "quiet", 'Q': "nolog",
		'f': "logfile", 's': "syslog", 'u': "socket-user", 'g': "socket-group",
		'c': "config", 'h': "help",
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			if i+1 < len(args) {
				return o, fmt.Errorf("%w: unexpected argument %q", errUsage, args[i+1])
			}
			return o, finish(&o)
		case strings.HasPrefix(a, "--"):
			name, val, hasVal := strings.Cut(a[2:], "=")
			lo, ok := long[name]
			if !ok {
				return o, fmt.Errorf("%w: unknown option --%s", errUsage, name)
			}
			switch lo.arg {
			case 0:
				if hasVal {
					return o, fmt.Errorf("%w: option --%s takes no value", errUsage, name)
				}
			case 1:
				if !hasVal {
					if i+1 >= len(args) {
						return o, fmt.Errorf("%w: option --%s needs a value", errUsage, name)
					}
					i++
					val = args[i]
				}
			}
			if err := lo.set(val); err != nil {
				return o, fmt.Errorf("%w: --%s: %v", errUsage, name, err)
			}
		case len(a) > 1 && a[0] == '-':
			for j := 1; j < len(a); j++ {
				name, ok := short[a[j]]
				if !ok {
					return o, fmt.Errorf("%w: unknown option -%c", errUsage, a[j])
				}
				lo := long[name]
				if lo.arg == 0 {
					_ = lo.set("")
					continue
				}
				rest := a[j+1:]
				if lo.arg == 2 { // -s[FAC]: only an attached value
					if err := lo.set(rest); err != nil {
						return o, fmt.Errorf("%w: -%c: %v", errUsage, a[j], err)
					}
					break
				}
				if rest == "" {
					if i+1 >= len(args) {
						return o, fmt.Errorf("%w: option -%c needs a value", errUsage, a[j])
					}
					i++
					rest = args[i]
				}
				if err := lo.set(rest); err != nil {
					return o, fmt.Errorf("%w: -%c: %v", errUsage, a[j], err)
				}
				break
			}
		default:
			return o, fmt.Errorf("%w: unexpected argument %q", errUsage, a)
		}
	}
	return o, finish(&o)
}

// finish applies the options' combined meaning.
func finish(o *options) error {
	if o.debug {
		// libcgroup: -d is -nvvv -f -
		o.nodaemon = true
		o.verbosity += 3
		if o.logfile == "" {
			o.logfile = "-"
		}
	}
	if o.explain && o.exUser == "" {
		return fmt.Errorf("%w: --explain needs --user NAME|UID", errUsage)
	}
	if !o.explain && (o.exUser != "" || o.exGroup != "" || o.exProc != "") {
		return fmt.Errorf("%w: --user, --group and --process go with --explain", errUsage)
	}
	if n := countTrue(o.status, o.reclassify, o.check, o.explain); n > 1 {
		return fmt.Errorf("%w: --status, --reclassify, --check and --explain are exclusive", errUsage)
	}
	if len(o.settings) > 0 && (o.status || o.reclassify || o.check || o.explain) {
		return fmt.Errorf("%w: --check-settings goes alone (not with --status, --reclassify, --check or --explain)", errUsage)
	}
	if o.cgroupRoot == "" || o.cgroupRoot[0] != '/' {
		return fmt.Errorf("%w: --cgroup-root must be an absolute cgroup path, got %q", errUsage, o.cgroupRoot)
	}
	for _, part := range strings.Split(o.cgroupRoot, "/") {
		if part == ".." {
			return fmt.Errorf("%w: --cgroup-root must not contain \"..\": %q", errUsage, o.cgroupRoot)
		}
	}
	// "//", "/a/./b/": the daemon logs, compares and joins the clean path.
	o.cgroupRoot = path.Clean(o.cgroupRoot)
	if o.systemd == "off" && o.systemdBus != "" {
		return fmt.Errorf("%w: --systemd-bus %s goes with --systemd=on or auto, not off", errUsage, o.systemdBus)
	}
	if o.netlinkBuf < 4096 {
		return fmt.Errorf("%w: --netlink-buffer must be at least 4096 bytes, got %d", errUsage, o.netlinkBuf)
	}
	if o.bpfRing != 0 {
		if err := (bpfevents.Config{RingBuffer: o.bpfRing}).Validate(); err != nil {
			return fmt.Errorf("%w: --bpf-ring-buffer: %w", errUsage, err)
		}
	}
	return nil
}

// The event sources of --events.
const (
	eventsAuto    = "auto"
	eventsBPF     = "bpf"
	eventsNetlink = "netlink"
)

func countTrue(bs ...bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

// parseSlice parses a --sched-slice value: a Go duration ("100us", "1ms")
// or 0.
func parseSlice(v string) (time.Duration, error) {
	if v == "0" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (want e.g. 100us, 2ms, or 0)", v)
	}
	if d < sched.MinSlice || d > sched.MaxSlice {
		return 0, fmt.Errorf("--sched-slice %v out of range (%v to %v, or 0 for the kernel's default)", d, sched.MinSlice, sched.MaxSlice)
	}
	return d, nil
}

func setFacility(o *options, v string) error {
	switch {
	case v == "":
		o.facility = "D"
	case v == "D" || v == "d":
		o.facility = "D"
	case len(v) == 1 && v[0] >= '0' && v[0] <= '7':
		o.facility = v
	default:
		return fmt.Errorf("unknown syslog facility %q (want 0-7 for LOCAL0-7 or D for DAEMON)", v)
	}
	return nil
}

// parseSize reads a byte count with an optional K, M or G suffix.
func parseSize(v string) (int, error) {
	mult := 1
	s := strings.TrimSpace(v)
	if s != "" {
		switch s[len(s)-1] {
		case 'k', 'K':
			mult, s = 1<<10, s[:len(s)-1]
		case 'm', 'M':
			mult, s = 1<<20, s[:len(s)-1]
		case 'g', 'G':
			mult, s = 1<<30, s[:len(s)-1]
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > (1<<31-1)/mult {
		return 0, fmt.Errorf("invalid size %q", v)
	}
	return n * mult, nil
}
