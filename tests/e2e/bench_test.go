package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cgrulesengd/cgrulesengd/internal/bpfevents"
	"github.com/cgrulesengd/cgrulesengd/tests/syscount"
)

// BenchmarkE2E is the end-to-end measurement of issues #4 and #12 (make
// bench-e2e):
//
//	go test -run '^$' -bench . -benchtime 1x ./tests/e2e/
//
// Columns, each with its own users, cgroups and daemons, all in one run so
// that the ratios compare like with like on this shared VM:
//
//   - "C floor": tests/tools/floor.c, a single-threaded C loop doing the
//     least a mover can do (read the event, /proc/PID/cgroup and status,
//     write two cgroup.procs files opened once): what the machine allows.
//   - "3 rules" and "10,000 rules" (fillerRules, all before the matching
//     "cgresjo cpu,unified dest"): our daemon, logging at info level
//     (-vvv -q, for its ready and stats lines), once with each event
//     source: the proc connector (--events=netlink) and the BPF source
//     (--events=bpf, where it can run).
//   - "libcgroup" (when /usr/sbin/cgrulesengd is installed: Debian's
//     cgroup-tools): the daemon we replace, with the same 3 rules in
//     /etc/cgrules.conf (their destinations absolute; the machine's
//     /etc/cgrules.conf, /etc/cgrules.d, /etc/cgconfig.conf, /etc/cgconfig.d
//     and /var/run/cgred.socket are put aside and restored). Its rules name
//     only the suite's users: it is not confined by --cgroup-root and
//     classifies the whole machine at start. It moves tasks in cgroup v1
//     only here, so its latencies are to the cpu line (-c) and its escapes
//     are counted in cpu alone.
//
// Phases of each column:
//
//   - wake-ups: a daemon is started and left alone for 10 s: the context
//     switches of all its threads (voluntary and not) in those 10 s, with
//     only the machine's own activity (other sessions) to hear about.
//   - idle: a daemon is started (ready time: from the start of its process
//     to its pidfile, or for libcgroup to its proc connector socket). The
//     latency tool forks 1,000 children one after another, 1 ms apart; each
//     takes t0, changes its uid to cgresjo and spins on its /proc/self/cgroup
//     until its cpu line shows the destination (the latency), then until its
//     cgroup2 line does too ("both"); not moved within 1 s is a miss. Then
//     the same with children that sleep 20 µs between two reads instead of
//     spinning ("poll"), and 50 children 100 ms apart ("sparse", polling).
//   - system calls: 200 polling children 2 ms apart while every thread of
//     the daemon (or the floor) is counted with the raw_syscalls:sys_enter
//     tracepoint (tests/syscount): system calls per moved task, in all and
//     without futex (the Go runtime's thread wake-ups).
//   - the daemon is stopped: CPU per kernel event, VmRSS and RssAnon.
//   - storm: a second daemon; the storm tool (2 processes creating children
//     that change their uid to cgrenobody, which no rule names, and exit; in
//     the in-scope cgroup "storm") runs while the latency tool takes up to
//     1,000 spinning samples (at most 30 s) and the escape tool runs 5
//     rounds (250 children and 250 grandchildren). Then the same counters;
//     memory is read when the daemon is ready and after the storm.
//
// Before the columns, "storm cost": the storm tool alone for 5 s with no
// daemon, with our daemon on the proc connector and with it on the BPF
// source (3 rules, idle), twice in turn: the storm's own forks per second,
// what each source costs the rest of the machine.
//
// Daemon CPU is utime+stime from /proc/PID/stat (clock ticks of 10 ms)
// between its readiness and just before its SIGTERM. Per event it is
// divided by the kernel events the storm caused (3 per storm child: FORK,
// UID, EXIT; the same count for every daemon, whether it read them all or
// lost them to overflows) and, for our daemon, also by the datagrams it
// read (its stats line at SIGTERM).
//
// The benchmark reports (b.ReportMetric, and tables on standard output); it
// never fails on a target, only when a measurement cannot be made.
func BenchmarkE2E(b *testing.B) {
	requireDaemon(b)
	requireTools(b)
	if load, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Fprintf(os.Stdout, "load average at the start: %s", load)
	}
	results := map[string]*benchResult{}
	var order []string
	run := func(name string, f func(b *testing.B) *benchResult) {
		b.Run(name, func(b *testing.B) {
			r := f(b)
			if _, seen := results[name]; !seen {
				order = append(order, name)
			}
			results[name] = r
			r.report(b)
		})
	}
	if bpfErr := bpfevents.Probe(); bpfErr == nil {
		b.Run("storm-cost", func(b *testing.B) { stormCost = benchStormCost(b) })
	} else {
		fmt.Fprintf(os.Stdout, "the BPF source cannot run here (%v): no BPF columns\n", bpfErr)
	}
	run("floor", benchFloor)
	for _, src := range benchSources() {
		for _, n := range []int{3, 10000} {
			run(benchKey(src, n), func(b *testing.B) *benchResult { return benchRules(b, n, src) })
		}
	}
	if libcgroupBinary() != "" {
		run("libcgroup", benchLibcgroup)
	} else {
		fmt.Fprintf(os.Stdout, "libcgroup's daemon is not installed: no libcgroup column (apt-get install cgroup-tools)\n")
	}
	if len(order) > 0 {
		printBenchTable(os.Stdout, order, results)
		printTargets(os.Stdout, results)
		printStormCost(os.Stdout, stormCost)
	}
}

// benchSources are the event sources of our daemon's columns: netlink,
// and bpf where the BPF source can run.
func benchSources() []string {
	if bpfevents.Probe() != nil {
		return []string{"netlink"}
	}
	return []string{"netlink", "bpf"}
}

// benchKey names a column of our daemon: "rules=3" (proc connector),
// "bpf rules=3".
func benchKey(src string, n int) string {
	if src == "bpf" {
		return fmt.Sprintf("bpf rules=%d", n)
	}
	return fmt.Sprintf("rules=%d", n)
}

// latencies are the samples of one latency tool run.
type latencies struct {
	cpu, all []time.Duration // moved samples only
	samples  int
	misses   int   // not moved within 1 s (cpu or cgroup2)
	missed   []int // their pids
}

func (l *latencies) pct(p float64, all bool) time.Duration {
	s := l.cpu
	if all {
		s = l.all
	}
	if len(s) == 0 {
		return -1
	}
	i := int(p*float64(len(s))+0.5) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(s) {
		i = len(s) - 1
	}
	return s[i]
}

// daemonRun is what one daemon's run measured.
type daemonRun struct {
	ready     time.Duration // start of the process to the pidfile
	took      string        // took= of its "ready" line
	cpu       time.Duration // utime+stime from readiness to SIGTERM
	datagrams uint64
	events    uint64 // kernel_events=
	stats     map[string]uint64
	mem       memory // just before SIGTERM
	log       string
}

// memory is what /proc/PID/status says of a process's memory, in kB.
type memory struct {
	rss, anon, file, hwm int64
}

func (m memory) String() string {
	return fmt.Sprintf("%.1f / %.1f MB", float64(m.rss)/1024, float64(m.anon)/1024)
}

// perEvent is the daemon's CPU per datagram (proc connector) or ring
// buffer record (BPF source) it read.
func (r *daemonRun) perEvent() time.Duration {
	n := r.datagrams
	if n == 0 {
		n = r.events
	}
	if n == 0 {
		return -1
	}
	return r.cpu / time.Duration(n)
}

type benchResult struct {
	name         string
	floor        bool // the C floor, not a daemon
	libcg        bool // libcgroup's daemon
	idle, poll   latencies
	sparse       latencies
	storm        latencies
	idleD        daemonRun
	stormD       daemonRun
	readyMem     memory // the storm daemon, when ready
	esc          escapeStats
	stormForks   string // the storm tool's totals
	stormChilds  uint64 // children the storm made
	stormSeconds float64
	sys          syscallCount
	src          string // our daemon's --events
	wakeups      wakeups
	// The BPF source's map memory (kernel, bytes): when ready, after the
	// storm.
	mapsReady, mapsStorm uint64
}

// wakeups are the context switches of every thread of a process over a
// quiet period.
type wakeups struct {
	total, threads, busiest int
	period                  time.Duration
}

func (w wakeups) String() string {
	if w.period == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%d in %v (%d threads, busiest %d)", w.total, w.period, w.threads, w.busiest)
}

// wakeupPhase counts the context switches of every thread of pid over 10 s
// in which the benchmark does nothing.
func (e *env) wakeupPhase(pid int) wakeups {
	const period = 10 * time.Second
	before, err := threadSwitches(pid)
	if err != nil {
		e.t.Fatalf("context switches of pid %d: %v", pid, err)
	}
	time.Sleep(period)
	after, err := threadSwitches(pid)
	if err != nil {
		e.t.Fatalf("context switches of pid %d: %v", pid, err)
	}
	w := wakeups{threads: len(after), period: period}
	for tid, n := range after {
		d := int(n - before[tid])
		w.total += d
		w.busiest = max(w.busiest, d)
	}
	return w
}

// bpfMapMemory sums the kernel memory (memlock) of the BPF maps pid holds
// descriptors of: /proc/PID/fdinfo.
func bpfMapMemory(pid int) uint64 {
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var sum uint64
	for _, ent := range ents {
		b, err := os.ReadFile(filepath.Join(dir, ent.Name()))
		if err != nil || !regexp.MustCompile(`(?m)^map_id:`).Match(b) {
			continue
		}
		if m := regexp.MustCompile(`(?m)^memlock:\s+(\d+)$`).FindSubmatch(b); m != nil {
			n, _ := strconv.ParseUint(string(m[1]), 10, 64)
			sum += n
		}
	}
	return sum
}

// syscallCount is the system-call phase's result.
type syscallCount struct {
	moved  int      // tasks moved (samples not missed)
	all    uint64   // system calls of the mover during the phase
	byKind []uint64 // per syscallKinds
}

// perMove is the number of system calls per move: in all, or without the
// runtime's (futex and nanosleep).
func (c syscallCount) perMove(withoutRuntime bool) float64 {
	if c.moved == 0 {
		return -1
	}
	n := c.all
	if withoutRuntime {
		for k, kind := range syscallKinds {
			if kind.name == "futex" || kind.name == "nanosleep" {
				n -= c.byKind[k]
			}
		}
	}
	return float64(n) / float64(c.moved)
}

// kinds renders the per-kind counts per move.
func (c syscallCount) kinds() string {
	if c.moved == 0 {
		return "n/a"
	}
	var b strings.Builder
	rest := c.all
	for k, kind := range syscallKinds {
		fmt.Fprintf(&b, "%s %.1f, ", kind.name, float64(c.byKind[k])/float64(c.moved))
		rest -= c.byKind[k]
	}
	fmt.Fprintf(&b, "other %.1f", float64(rest)/float64(c.moved))
	return b.String()
}

// stormEvents is the number of kernel events the storm caused: FORK, UID
// and EXIT for each child.
func (r *benchResult) stormEvents() uint64 { return 3 * r.stormChilds }

// cpuPerStormEvent is the daemon's CPU during the storm phase per kernel
// event the storm caused.
func (r *benchResult) cpuPerStormEvent() time.Duration {
	if r.stormChilds == 0 {
		return -1
	}
	return r.stormD.cpu / time.Duration(r.stormEvents())
}

// latencyPhases runs the idle measurements: spinning children 1 ms apart,
// polling children 1 ms apart, polling children 100 ms apart.
func (e *env) latencyPhases(r *benchResult, uid, dest string) {
	r.idle = e.latencyRunArgs(uid, dest, r.latencyOpts("-n", "1000", "-g", "1000", "-d", "60"))
	r.poll = e.latencyRunArgs(uid, dest, r.latencyOpts("-n", "1000", "-g", "1000", "-s", "20", "-d", "60"))
	r.sparse = e.latencyRunArgs(uid, dest, r.latencyOpts("-n", "50", "-g", "100000", "-s", "20", "-d", "60"))
}

// latencyOpts are the latency tool's options for this column: libcgroup's
// are waited for in cpu alone (-c).
func (r *benchResult) latencyOpts(opts ...string) []string {
	if r.libcg {
		return append([]string{"-c"}, opts...)
	}
	return opts
}

// syscallKinds are the kinds of system calls the benchmark tells apart:
// receiving events, reading /proc, writing (cgroup.procs, and log lines at
// info level), and the Go runtime's thread wake-ups and naps.
var syscallKinds = []struct {
	name string
	ids  []int
}{
	{"recv", []int{unix.SYS_RECVMMSG, unix.SYS_RECVFROM, unix.SYS_RECVMSG, unix.SYS_POLL, unix.SYS_PPOLL}},
	{"open/read/close", []int{unix.SYS_OPENAT, unix.SYS_OPEN, unix.SYS_READ, unix.SYS_CLOSE, unix.SYS_READLINKAT, unix.SYS_READLINK}},
	{"write", []int{unix.SYS_WRITE}},
	{"futex", []int{unix.SYS_FUTEX}},
	{"nanosleep", []int{unix.SYS_NANOSLEEP, unix.SYS_CLOCK_NANOSLEEP}},
}

// syscallPhase counts the system calls of every thread of pid (the floor or
// a daemon), in all and by kind, while 200 polling children, 2 ms apart,
// are moved.
func (e *env) syscallPhase(r *benchResult, pid int, uid, dest string) {
	t := e.t
	counters := make([]*syscount.Counter, 0, 1+len(syscallKinds))
	for k := -1; k < len(syscallKinds); k++ {
		filter := ""
		if k >= 0 {
			var terms []string
			for _, id := range syscallKinds[k].ids {
				terms = append(terms, fmt.Sprintf("id == %d", id))
			}
			filter = strings.Join(terms, " || ")
		}
		c, err := syscount.ProcessFilter(pid, filter)
		if err != nil {
			t.Fatalf("counting system calls: %v", err)
		}
		defer c.Close()
		counters = append(counters, c)
	}
	read := func() []uint64 {
		out := make([]uint64, len(counters))
		for i, c := range counters {
			n, err := c.Count()
			if err != nil {
				t.Fatalf("counting system calls: %v", err)
			}
			out[i] = n
		}
		return out
	}
	before := read()
	l := e.latencyRunArgs(uid, dest, r.latencyOpts("-n", "200", "-g", "2000", "-s", "20", "-d", "60"))
	after := read()
	r.sys = syscallCount{moved: l.samples - l.misses, all: after[0] - before[0], byKind: make([]uint64, len(syscallKinds))}
	for k := range syscallKinds {
		r.sys.byKind[k] = after[k+1] - before[k+1]
	}
}

// stormPhase starts the storm, runs during returns, and stops the storm;
// it fails the benchmark if the storm ended before.
func (e *env) stormPhase(r *benchResult, stormUID string, during func()) {
	t := e.t
	storm := e.startTool(nil, "storm", "storm", "-p", "2", "-s", "120", "-u", stormUID)
	t0 := time.Now()
	during()
	select {
	case <-storm.done:
		t.Fatalf("the storm ended before the measurements (after %v): %s", time.Since(t0), storm.stderr.String())
	default:
	}
	r.stormSeconds = time.Since(t0).Seconds()
	storm.stop() // SIGTERM: the storm ends early and prints its totals
	if line, ok := storm.next(5 * time.Second); ok && strings.HasPrefix(line, "forks ") {
		r.stormForks = line
		if f := strings.Fields(line); len(f) >= 2 {
			r.stormChilds, _ = strconv.ParseUint(f[1], 10, 64)
		}
	} else {
		t.Fatalf("the storm tool printed no totals (%q); stderr: %s", line, storm.stderr.String())
	}
}

// benchEnv makes the environment: rules naming user and group cgreother
// (3: "cgreother", "@cgreother", then the match; or fillerRules), never
// cgrenobody, the storm's user, whose tasks must match no rule.
func benchEnv(b *testing.B, nrules int) *env {
	identities(b)
	e := newEnv(b, []string{"cpu", "unified"}, "dest", "other", "storm")
	rules := "cgreother  cpu  other\n@cgreother  cpu  other\n"
	if nrules > 3 {
		rules = fillerRules(nrules)
	}
	e.writeRules(rules + "cgresjo  cpu,unified  dest\n")
	return e
}

// benchFloor measures the latencies with the C floor mover.
func benchFloor(b *testing.B) *benchResult {
	e := benchEnv(b, 3)
	uid := uidOf(b, "cgresjo")
	dest := e.cg("dest")
	r := &benchResult{name: "C floor", floor: true}
	// Left in the test process's cgroups (place: none): it is no test task.
	fl := e.startTool([]string{}, "", "floor", uid, e.root,
		filepath.Join(e.path("cpu", "dest"), "cgroup.procs"), filepath.Join(e.path("unified", "dest"), "cgroup.procs"), "600")
	r.wakeups = e.wakeupPhase(fl.pid)
	e.latencyPhases(r, uid, dest)
	e.syscallPhase(r, fl.pid, uid, dest)
	c0, err := procCPU(fl.pid)
	if err != nil {
		b.Fatalf("floor CPU: %v", err)
	}
	e.stormPhase(r, uidOf(b, "cgrenobody"), func() {
		r.storm = e.latencyRunArgs(uid, dest, []string{"-n", "1000", "-d", "30"})
	})
	c1, err := procCPU(fl.pid)
	if err != nil {
		b.Fatalf("floor CPU: %v", err)
	}
	r.stormD.cpu = c1 - c0
	fl.stop()
	return r
}

// benchRules measures one rule count with event source src.
func benchRules(b *testing.B, nrules int, src string) *benchResult {
	e := benchEnv(b, nrules)
	uid := uidOf(b, "cgresjo")
	dest := e.cg("dest")
	r := &benchResult{name: fmt.Sprintf("%s rules, %s", map[int]string{3: "3", 10000: "10,000"}[nrules], map[string]string{"bpf": "BPF", "netlink": "netlink"}[src]), src: src}
	args := append(benchDaemonArgs(), "--events="+src)

	d := e.startDaemon(dopts{extra: args})
	start := d.readyCPU()
	r.wakeups = e.wakeupPhase(d.pid)
	e.latencyPhases(r, uid, dest)
	e.syscallPhase(r, d.pid, uid, dest)
	r.idleD = d.finish(start)

	d = e.startDaemon(dopts{extra: args})
	start = d.readyCPU()
	r.readyMem = procMemory(d.pid)
	r.mapsReady = bpfMapMemory(d.pid)
	e.stormPhase(r, uidOf(b, "cgrenobody"), func() {
		r.storm = e.latencyRunArgs(uid, dest, []string{"-n", "1000", "-d", "30"})
		r.esc = e.escapeRounds(uid, 5, 50, dest, 2*time.Second)
	})
	r.mapsStorm = bpfMapMemory(d.pid)
	r.stormD = d.finish(start)
	return r
}

// stormCosts are the storm's own forks per second with no daemon and with
// our daemon on each source, in turns, and the daemon's CPU per event the
// storm caused (3 per child: FORK, UID, EXIT), with nothing else to do.
type stormCosts struct {
	rounds map[string][]float64       // children per second, by "none", "netlink", "bpf"
	cpu    map[string][]time.Duration // the daemon's CPU per storm event, by source
}

var stormCost *stormCosts

// benchStormCost runs the storm alone for 5 s with no daemon, with the
// proc connector's daemon and with the BPF source's (3 rules, idle), twice
// in turn.
func benchStormCost(b *testing.B) *stormCosts {
	e := benchEnv(b, 3)
	nobody := uidOf(b, "cgrenobody")
	c := &stormCosts{rounds: map[string][]float64{}, cpu: map[string][]time.Duration{}}
	for round := 0; round < 2; round++ {
		for _, src := range []string{"none", "netlink", "bpf"} {
			var d *daemon
			var cpu0 time.Duration
			if src != "none" {
				d = e.startDaemon(dopts{extra: append(benchDaemonArgs(), "--events="+src)})
				cpu0 = d.readyCPU()
			}
			storm := e.startTool(nil, "storm", "storm", "-p", "2", "-s", "5", "-u", nobody)
			line, ok := storm.next(30 * time.Second)
			f := strings.Fields(line)
			if !ok || len(f) < 4 || f[0] != "forks" {
				b.Fatalf("the storm printed no totals (%q); stderr: %s", line, storm.stderr.String())
			}
			n, _ := strconv.ParseFloat(f[1], 64)
			secs, _ := strconv.ParseFloat(f[3], 64)
			c.rounds[src] = append(c.rounds[src], n/secs)
			storm.wait(5 * time.Second)
			if d != nil {
				if cpu, err := procCPU(d.pid); err == nil && n > 0 {
					c.cpu[src] = append(c.cpu[src], (cpu-cpu0)/time.Duration(3*n))
				}
				d.stop()
			}
		}
	}
	return c
}

// printStormCost prints the storm's forks per second by source.
func printStormCost(w *os.File, c *stormCosts) {
	if c == nil {
		return
	}
	fmt.Fprintf(w, "\nThe storm alone (2 processes, children that change their uid to a user no rule names), 5 s per round, rounds in turn\n\n| | no daemon | proc connector (3 rules) | BPF source (3 rules) |\n| --- | --- | --- | --- |\n| storm children per second |")
	for _, src := range []string{"none", "netlink", "bpf"} {
		var parts []string
		for _, v := range c.rounds[src] {
			parts = append(parts, fmt.Sprintf("%.0f", v))
		}
		fmt.Fprintf(w, " %s |", strings.Join(parts, ", "))
	}
	fmt.Fprintf(w, "\n| daemon CPU per storm event (#21: ≤ 0.1 µs) | – |")
	for _, src := range []string{"netlink", "bpf"} {
		var parts []string
		for _, v := range c.cpu[src] {
			parts = append(parts, fmt.Sprintf("%.3f µs", us(v)))
		}
		fmt.Fprintf(w, " %s |", strings.Join(parts, ", "))
	}
	fmt.Fprintln(w)
}

// benchLibcgroup measures libcgroup's daemon with the 3 rules of the
// "3 rules" column (their destinations absolute, cpu only).
func benchLibcgroup(b *testing.B) *benchResult {
	e := benchEnv(b, 3)
	uid := uidOf(b, "cgresjo")
	dest := e.cg("dest")
	r := &benchResult{name: "libcgroup", libcg: true}
	e.libcgroupConfig(fmt.Sprintf("cgreother  cpu  %s\n@cgreother  cpu  %s\ncgresjo  cpu  %s\n", e.cg("other"), e.cg("other"), dest))

	d := e.startLibcgroup()
	start := d.readyCPU()
	r.wakeups = e.wakeupPhase(d.pid)
	e.latencyPhases(r, uid, dest)
	e.syscallPhase(r, d.pid, uid, dest)
	r.idleD = d.finishLibcgroup(start)

	d = e.startLibcgroup()
	start = d.readyCPU()
	r.readyMem = procMemory(d.pid)
	e.stormPhase(r, uidOf(b, "cgrenobody"), func() {
		r.storm = e.latencyRunArgs(uid, dest, r.latencyOpts("-n", "1000", "-d", "30"))
		r.esc = e.escapeRoundsIn(uid, 5, 50, dest, 2*time.Second, 0, true) // libcgroup leaves hundreds: no late watch
	})
	r.stormD = d.finishLibcgroup(start)
	return r
}

// libcgroupBenchFiles are what libcgroup's daemon reads or leaves behind;
// the benchmark puts the machine's aside and restores them.
var libcgroupBenchFiles = []string{"/etc/cgrules.conf", "/etc/cgrules.d", "/etc/cgconfig.conf", "/etc/cgconfig.d", "/var/run/cgred.socket"}

// libcgroupConfig installs rules as /etc/cgrules.conf with an empty
// /etc/cgconfig.conf and /etc/cgconfig.d (libcgroup 2.0.2 refuses to start
// without them), after moving whatever the machine had there aside; the
// cleanup removes them and moves the machine's back. A sticky socket that a
// process serves means a rules daemon runs: the benchmark leaves it alone.
func (e *env) libcgroupConfig(rules string) {
	t := e.t
	t.Helper()
	if c, err := net.DialTimeout("unix", "/var/run/cgred.socket", time.Second); err == nil {
		c.Close()
		t.Skip("a process serves /var/run/cgred.socket (a rules daemon?): no libcgroup column")
	}
	setAside(t, libcgroupBenchFiles)
	if err := os.WriteFile("/etc/cgrules.conf", []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("/etc/cgconfig.conf", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir("/etc/cgconfig.d", 0o755); err != nil {
		t.Fatal(err)
	}
}

// libcgroupBinary is libcgroup's daemon: Debian's cgroup-tools installs it
// as /usr/sbin/cgrulesengd, and this project's package diverts it to
// /usr/sbin/cgrulesengd.libcgroup. "" when neither is libcgroup's (its
// --help names "the cgroups rules engine").
func libcgroupBinary() string {
	for _, p := range []string{"/usr/sbin/cgrulesengd.libcgroup", "/usr/sbin/cgrulesengd"} {
		out, _ := exec.Command(p, "--help").CombinedOutput()
		if strings.Contains(string(out), "a daemon for the cgroups rules engine") {
			return p
		}
	}
	return ""
}

// startLibcgroup starts libcgroup's daemon in the foreground and waits
// until it listens to the proc connector (it scans /proc first): its
// socket shows in /proc/net/netlink (protocol 11, its pid as port id).
func (e *env) startLibcgroup() *daemon {
	t := e.t
	t.Helper()
	run := filepath.Join(e.dir, "run")
	if err := os.MkdirAll(run, 0o755); err != nil {
		t.Fatal(err)
	}
	d := &daemon{e: e, logfile: filepath.Join(run, "libcgroup.log"), output: &syncBuffer{}, done: make(chan struct{})}
	bin := libcgroupBinary()
	d.cmd = exec.Command(bin, "-n", "-f", d.logfile)
	d.cmd.Stdout, d.cmd.Stderr = d.output, d.output
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	d.started = time.Now()
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	d.pid = d.cmd.Process.Pid
	go func() {
		_ = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(d.kill)
	deadline := time.Now().Add(15 * time.Second)
	for !listensToConnector(d.pid) {
		select {
		case <-d.done:
			t.Fatalf("libcgroup's daemon exited (%v): %s\nlog:\n%s", d.cmd.ProcessState, d.output.String(), d.log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("libcgroup's daemon (pid %d) does not listen after 15 s", d.pid)
		}
		time.Sleep(time.Millisecond)
	}
	d.ready = time.Since(d.started)
	return d
}

// listensToConnector reports whether pid has a NETLINK_CONNECTOR socket
// bound to its pid.
func listensToConnector(pid int) bool {
	data, err := os.ReadFile("/proc/net/netlink")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) > 3 && f[1] == "11" && f[2] == strconv.Itoa(pid) {
			return true
		}
	}
	return false
}

// measure reads the daemon's CPU since startCPU and its memory.
func (d *daemon) measure(startCPU time.Duration) daemonRun {
	t := d.e.t
	t.Helper()
	var r daemonRun
	cpu, err := procCPU(d.pid)
	if err != nil {
		t.Fatalf("daemon CPU: %v", err)
	}
	r.cpu = cpu - startCPU
	r.mem = procMemory(d.pid)
	if r.mem.rss <= 0 || r.mem.anon <= 0 {
		t.Fatalf("cannot read VmRSS/RssAnon of the daemon (pid %d)", d.pid)
	}
	return r
}

// finishLibcgroup is finish for libcgroup's daemon, which logs no counters.
func (d *daemon) finishLibcgroup(startCPU time.Duration) daemonRun {
	d.e.t.Helper()
	r := d.measure(startCPU)
	d.kill()
	r.log, r.ready, r.took = d.log(), d.ready, "-"
	return r
}

// benchDaemonArgs are the daemon's extra arguments: -q (with the -vvv of
// every test daemon: info level, for the ready and stats lines), then the
// words of CGRE_BENCH_ARGS, for comparisons (e.g. "--sched-slice 0").
func benchDaemonArgs() []string {
	return append([]string{"-q"}, strings.Fields(os.Getenv("CGRE_BENCH_ARGS"))...)
}

// readyCPU checks the daemon's readiness data and returns its CPU so far.
func (d *daemon) readyCPU() time.Duration {
	d.e.t.Helper()
	cpu, err := procCPU(d.pid)
	if err != nil {
		d.e.t.Fatalf("daemon CPU: %v", err)
	}
	return cpu
}

// finish reads the daemon's CPU and memory, stops it and reads its
// counters.
func (d *daemon) finish(startCPU time.Duration) daemonRun {
	t := d.e.t
	t.Helper()
	r := d.measure(startCPU)
	if code := d.stop(); code != 0 {
		t.Fatalf("daemon exit status %d after SIGTERM; log:\n%s", code, d.log())
	}
	log := d.log()
	r.log = log
	r.ready = d.ready
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "msg=ready") {
			if m := regexp.MustCompile(`\btook=(\S+)`).FindStringSubmatch(l); m != nil {
				r.took = m[1]
			}
		}
	}
	if r.took == "" {
		t.Fatalf("no took= in a msg=ready line of the daemon's log:\n%s", tail(log, 20))
	}
	var line string
	r.stats, line = statsOf(log)
	r.datagrams, r.events = r.stats["datagrams"], r.stats["kernel_events"]
	if r.events == 0 || (strings.Contains(line, "events=netlink") && r.datagrams == 0) {
		t.Fatalf("the daemon counted no kernel events: %q", line)
	}
	return r
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// procCPU is utime+stime of pid (all its threads) from /proc/PID/stat,
// counted in clock ticks of 10 ms (USER_HZ is 100 on Linux).
func procCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, s)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, s)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q stime %q", pid, f[11], f[12])
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// procMemory reads VmRSS, RssAnon, RssFile and VmHWM (kB) from
// /proc/PID/status (-1 when unreadable).
func procMemory(pid int) memory {
	m := memory{-1, -1, -1, -1}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		n, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			m.rss = n
		case "RssAnon:":
			m.anon = n
		case "RssFile:":
			m.file = n
		case "VmHWM:":
			m.hwm = n
		}
	}
	return m
}

// latencyRunArgs runs the latency tool with options opts (see latency.c;
// the timeout is always 1 s) and collects its samples.
func (e *env) latencyRunArgs(uid, dest string, opts []string) latencies {
	e.t.Helper()
	t := e.t
	secs := 60
	for i := 0; i+1 < len(opts); i++ {
		if opts[i] == "-d" {
			secs, _ = strconv.Atoi(opts[i+1])
		}
	}
	tl := e.startTool(nil, "", "latency", append(append([]string{"-t", "1000"}, opts...), uid, dest)...)
	var l latencies
	for {
		line, ok := tl.next(time.Duration(secs+30) * time.Second)
		if !ok {
			t.Fatalf("the latency tool stopped after %d samples; stderr: %s", l.samples, tl.stderr.String())
		}
		if line == "done" {
			break
		}
		f := strings.Fields(line)
		if len(f) != 3 {
			t.Fatalf("unexpected line %q from the latency tool", line)
		}
		cpu, err1 := strconv.ParseInt(f[0], 10, 64)
		all, err2 := strconv.ParseInt(f[1], 10, 64)
		pid, err3 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil || err3 != nil {
			t.Fatalf("unexpected line %q from the latency tool", line)
		}
		l.samples++
		if cpu < 0 || all < 0 {
			l.misses++
			l.missed = append(l.missed, pid)
		}
		if cpu >= 0 {
			l.cpu = append(l.cpu, time.Duration(cpu))
		}
		if all >= 0 {
			l.all = append(l.all, time.Duration(all))
		}
	}
	if !tl.wait(10 * time.Second) {
		t.Fatalf("the latency tool did not exit")
	}
	if l.samples == 0 {
		t.Fatalf("the latency tool took no sample; stderr: %s", tl.stderr.String())
	}
	sort.Slice(l.cpu, func(i, j int) bool { return l.cpu[i] < l.cpu[j] })
	sort.Slice(l.all, func(i, j int) bool { return l.all[i] < l.all[j] })
	return l
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func (r *benchResult) report(b *testing.B) {
	for _, l := range []struct {
		name string
		l    *latencies
	}{{"idle", &r.idle}, {"poll", &r.poll}, {"sparse", &r.sparse}, {"storm", &r.storm}} {
		b.ReportMetric(us(l.l.pct(0.50, false)), "p50-"+l.name+"-µs")
		b.ReportMetric(us(l.l.pct(0.99, false)), "p99-"+l.name+"-µs")
		b.ReportMetric(float64(l.l.misses), "misses-"+l.name)
	}
	b.ReportMetric(r.sys.perMove(false), "syscalls/move")
	if r.floor {
		return
	}
	b.ReportMetric(float64(r.esc.stragglers+r.esc.vanished), "escapes-storm")
	b.ReportMetric(us(r.cpuPerStormEvent()), "cpu-µs/storm-event")
	b.ReportMetric(float64(r.stormD.mem.anon)/1024, "rssanon-MB")
	b.ReportMetric(float64(r.stormD.mem.rss)/1024, "rss-MB")
	b.ReportMetric(float64(r.idleD.ready)/float64(time.Millisecond), "ready-ms")
}

func ratioF(a, b float64) string {
	if a < 0 || b <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

func fmtDur(d time.Duration) string {
	if d < 0 {
		return "n/a"
	}
	if d >= 10*time.Millisecond {
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
	if d >= time.Millisecond {
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.0f µs", us(d))
}

// printBenchTable prints every measurement, one column per result, as a
// Markdown table.
func printBenchTable(w *os.File, order []string, res map[string]*benchResult) {
	lat := func(get func(r *benchResult) *latencies, p float64) func(r *benchResult) string {
		return func(r *benchResult) string {
			l := get(r)
			if r.libcg {
				return fmtDur(l.pct(p, false)) + " (cpu)"
			}
			return fmtDur(l.pct(p, false)) + " / " + fmtDur(l.pct(p, true))
		}
	}
	misses := func(get func(r *benchResult) *latencies) func(r *benchResult) string {
		return func(r *benchResult) string { l := get(r); return fmt.Sprintf("%d of %d", l.misses, l.samples) }
	}
	daemonOnly := func(f func(r *benchResult) string) func(r *benchResult) string {
		return func(r *benchResult) string {
			if r.floor {
				return "–"
			}
			return f(r)
		}
	}
	ours := func(f func(r *benchResult) string) func(r *benchResult) string {
		return func(r *benchResult) string {
			if r.floor || r.libcg {
				return "–"
			}
			return f(r)
		}
	}
	idle := func(r *benchResult) *latencies { return &r.idle }
	poll := func(r *benchResult) *latencies { return &r.poll }
	sparse := func(r *benchResult) *latencies { return &r.sparse }
	storm := func(r *benchResult) *latencies { return &r.storm }
	rows := []struct {
		name string
		f    func(r *benchResult) string
	}{
		{"idle, spinning, 1 ms apart: p50", lat(idle, 0.5)},
		{"idle, spinning: p90", lat(idle, 0.9)},
		{"idle, spinning: p99", lat(idle, 0.99)},
		{"idle, spinning: misses", misses(idle)},
		{"idle, polling, 1 ms apart: p50", lat(poll, 0.5)},
		{"idle, polling: p90", lat(poll, 0.9)},
		{"idle, polling: p99", lat(poll, 0.99)},
		{"idle, polling, 100 ms apart: p50 / p99", func(r *benchResult) string {
			return fmtDur(r.sparse.pct(0.5, true)) + " / " + fmtDur(r.sparse.pct(0.99, true))
		}},
		{"idle, polling, 100 ms apart: misses", misses(sparse)},
		{"storm, spinning: p50", lat(storm, 0.5)},
		{"storm, spinning: p90", lat(storm, 0.9)},
		{"storm, spinning: p99", lat(storm, 0.99)},
		{"storm: misses (not moved in 1 s)", misses(storm)},
		{"storm: escapes (children, grandchildren)", daemonOnly(func(r *benchResult) string {
			return fmt.Sprintf("%d of %d", r.esc.stragglers+r.esc.vanished, r.esc.tasks)
		})},
		{"system calls per move (without futex and nanosleep)", func(r *benchResult) string {
			return fmt.Sprintf("%.1f (%.1f)", r.sys.perMove(false), r.sys.perMove(true))
		}},
		{"system calls per move, by kind", func(r *benchResult) string { return r.sys.kinds() }},
		{"CPU per storm event (CPU / events the storm caused)", func(r *benchResult) string {
			return fmt.Sprintf("%.2f µs (%v / %d)", us(r.cpuPerStormEvent()), r.stormD.cpu, r.stormEvents())
		}},
		{"daemon CPU per datagram (netlink) or record (BPF) read, storm", ours(func(r *benchResult) string {
			return fmt.Sprintf("%.2f µs (%d read)", us(r.stormD.perEvent()), max(r.stormD.datagrams, r.stormD.events))
		})},
		{"storm: kernel events per s", func(r *benchResult) string {
			return fmt.Sprintf("%.0f", float64(r.stormEvents())/r.stormSeconds)
		}},
		{"storm: overflows / rescans / queue full", ours(func(r *benchResult) string {
			s := r.stormD.stats
			return fmt.Sprintf("%d / %d / %d", s["event_overflows"], s["repair_scans"], s["queue_overflows"])
		})},
		{"wake-ups: context switches of every thread in 10 s, idle", func(r *benchResult) string { return r.wakeups.String() }},
		{"BPF maps, kernel memory: when ready / after the storm", ours(func(r *benchResult) string {
			if r.src != "bpf" {
				return "–"
			}
			return fmt.Sprintf("%.2f / %.2f MB", float64(r.mapsReady)/(1<<20), float64(r.mapsStorm)/(1<<20))
		})},
		{"VmRSS / RssAnon after the idle phases", daemonOnly(func(r *benchResult) string { return r.idleD.mem.String() })},
		{"VmRSS / RssAnon when ready (storm daemon)", daemonOnly(func(r *benchResult) string { return r.readyMem.String() })},
		{"VmRSS / RssAnon after the storm", daemonOnly(func(r *benchResult) string { return r.stormD.mem.String() })},
		{"RssAnon growth in the storm", daemonOnly(func(r *benchResult) string {
			return fmt.Sprintf("%+.2f MB", float64(r.stormD.mem.anon-r.readyMem.anon)/1024)
		})},
		{"VmHWM", daemonOnly(func(r *benchResult) string {
			return fmt.Sprintf("%.1f MB", float64(max(r.idleD.mem.hwm, r.stormD.mem.hwm))/1024)
		})},
		{"ready (start to pidfile / socket)", daemonOnly(func(r *benchResult) string {
			return fmt.Sprintf("%.1f ms", float64(r.idleD.ready)/float64(time.Millisecond))
		})},
	}
	fmt.Fprintf(w, "\nEnd-to-end benchmark; latencies: moved in cpu / moved in cpu and cgroup2\n\n|")
	for _, n := range order {
		fmt.Fprintf(w, " | %s", res[n].name)
	}
	fmt.Fprintf(w, " |\n| ---")
	for range order {
		fmt.Fprintf(w, " | ---")
	}
	fmt.Fprintf(w, " |\n")
	for _, row := range rows {
		fmt.Fprintf(w, "| %s", row.name)
		for _, n := range order {
			fmt.Fprintf(w, " | %s", row.f(res[n]))
		}
		fmt.Fprintf(w, " |\n")
	}
	fmt.Fprintln(w)
	for _, n := range order {
		r := res[n]
		fmt.Fprintf(w, "%s, storm: %s; ran %.1f s during the measurements\n", r.name, r.stormForks, r.stormSeconds)
		if r.floor {
			continue
		}
		fmt.Fprintf(w, "%s, storm escapes: %s\n", r.name, r.esc)
		if !r.libcg {
			fmt.Fprintf(w, "%s, storm daemon: %s\n", r.name, statsString(r.stormD.stats))
		}
		for _, m := range []struct {
			what string
			l    *latencies
			log  string
		}{{"idle", &r.idle, r.idleD.log}, {"idle polling", &r.poll, r.idleD.log}, {"sparse", &r.sparse, r.idleD.log}, {"storm", &r.storm, r.stormD.log}} {
			for i, pid := range m.l.missed {
				if i == 5 {
					fmt.Fprintf(w, "%s, %s: %d more misses\n", r.name, m.what, len(m.l.missed)-i)
					break
				}
				fmt.Fprintf(w, "%s, %s miss: pid %d; the daemon's info log about it:\n%s", r.name, m.what, pid, logAbout(m.log, pid))
			}
		}
	}
}

// printTargets prints issue #12's targets for each rule count as ratios to
// the floor (and to libcgroup) measured in the same run.
func printTargets(w *os.File, res map[string]*benchResult) {
	fl := res["floor"]
	lc := res["libcgroup"]
	if fl == nil {
		return
	}
	ratio := func(a, b time.Duration) string {
		if a < 0 || b <= 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.2f×", float64(a)/float64(b))
	}
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "missed"
	}
	var cols []string
	for _, n := range []string{"rules=3", "rules=10000", "bpf rules=3", "bpf rules=10000"} {
		if res[n] != nil {
			cols = append(cols, n)
		}
	}
	fmt.Fprintf(w, "\nTargets (issues #12 and #21), ratios to the C floor of this run; latencies to cgroup2 (the last write)\n\n| target | C floor |")
	for _, n := range cols {
		fmt.Fprintf(w, " %s |", res[n].name)
	}
	fmt.Fprintf(w, "\n| --- | --- |%s\n", strings.Repeat(" --- |", len(cols)))
	type row struct {
		name  string
		floor string
		f     func(r *benchResult) string
	}
	latRow := func(name string, get func(r *benchResult) *latencies, p, factor float64, atLeast time.Duration) row {
		fv := get(fl).pct(p, true)
		limit := time.Duration(factor * float64(fv))
		if limit < atLeast {
			limit = atLeast
		}
		return row{name, fmtDur(fv), func(r *benchResult) string {
			v := get(r).pct(p, true)
			return fmt.Sprintf("%s = %s (limit %s): %s", fmtDur(v), ratio(v, fv), fmtDur(limit), verdict(v >= 0 && v <= limit))
		}}
	}
	idle := func(r *benchResult) *latencies { return &r.idle }
	poll := func(r *benchResult) *latencies { return &r.poll }
	storm := func(r *benchResult) *latencies { return &r.storm }
	rows := []row{
		latRow("idle p50 ≤ 1.5× floor (spinning)", idle, 0.5, 1.5, 0),
		latRow("idle p90 ≤ 1.5× floor or 300 µs (spinning)", idle, 0.9, 1.5, 300*time.Microsecond),
		latRow("idle p99 ≤ 1.5× floor or 1 ms (spinning)", idle, 0.99, 1.5, time.Millisecond),
		latRow("idle p50 ≤ 1.5× floor (polling)", poll, 0.5, 1.5, 0),
		latRow("idle p90 ≤ 1.5× floor or 300 µs (polling)", poll, 0.9, 1.5, 300*time.Microsecond),
		latRow("idle p99 ≤ 1.5× floor or 1 ms (polling)", poll, 0.99, 1.5, time.Millisecond),
		latRow("storm p50 ≤ 1.2× floor", storm, 0.5, 1.2, 0),
		{"storm: 0 misses, 0 escapes", fmt.Sprintf("%d misses", fl.storm.misses), func(r *benchResult) string {
			esc := r.esc.stragglers + r.esc.vanished
			return fmt.Sprintf("%d misses, %d escapes: %s", r.storm.misses, esc, verdict(r.storm.misses == 0 && esc == 0))
		}},
		{"CPU per storm event ≤ 0.25× libcgroup", "–", func(r *benchResult) string {
			v := r.cpuPerStormEvent()
			if lc == nil {
				return fmt.Sprintf("%.2f µs (no libcgroup column)", us(v))
			}
			l := lc.cpuPerStormEvent()
			return fmt.Sprintf("%.2f µs = %s libcgroup's %.2f µs: %s", us(v), ratio(v, l), us(l), verdict(v >= 0 && l > 0 && float64(v) <= 0.25*float64(l)))
		}},
		{"RssAnon ≤ 8 MB", "–", func(r *benchResult) string {
			a := max(r.idleD.mem.anon, r.stormD.mem.anon)
			return fmt.Sprintf("%.1f MB: %s", float64(a)/1024, verdict(a <= 8*1024))
		}},
		{"RssAnon flat in the storm (≤ 1 MB growth)", "–", func(r *benchResult) string {
			g := r.stormD.mem.anon - r.readyMem.anon
			return fmt.Sprintf("%+.2f MB: %s", float64(g)/1024, verdict(g <= 1024))
		}},
		{"ready ≤ 0.2 s", "–", func(r *benchResult) string {
			return fmt.Sprintf("%.1f ms: %s", float64(r.idleD.ready)/float64(time.Millisecond), verdict(r.idleD.ready <= 200*time.Millisecond))
		}},
		{"system calls per move ≤ floor + rule reads", fmt.Sprintf("%.1f", fl.sys.perMove(false)), func(r *benchResult) string {
			return fmt.Sprintf("%.1f = %s; %.1f without the runtime's futex and nanosleep", r.sys.perMove(false), ratioF(r.sys.perMove(false), fl.sys.perMove(false)), r.sys.perMove(true))
		}},
		// Issue 21.
		{"#21 daemon CPU per storm event ≤ 0.1 µs", "–", func(r *benchResult) string {
			v := r.cpuPerStormEvent()
			return fmt.Sprintf("%.3f µs (%v / %d): %s", us(v), r.stormD.cpu, r.stormEvents(), verdict(v >= 0 && us(v) <= 0.1))
		}},
		{"#21 storm p50 ≤ 1.5× own idle p50", "–", func(r *benchResult) string {
			st, id := r.storm.pct(0.5, true), r.idle.pct(0.5, true)
			return fmt.Sprintf("%s = %s of %s: %s", fmtDur(st), ratio(st, id), fmtDur(id), verdict(st >= 0 && id > 0 && float64(st) <= 1.5*float64(id)))
		}},
		latRow("#21 idle p50 ≤ 1.2× floor (spinning)", idle, 0.5, 1.2, 0),
		{"#21 misses and escapes: 0", "–", func(r *benchResult) string {
			m := r.idle.misses + r.poll.misses + r.sparse.misses + r.storm.misses
			esc := r.esc.stragglers + r.esc.vanished
			return fmt.Sprintf("%d misses, %d escapes: %s", m, esc, verdict(m == 0 && esc == 0))
		}},
		{"#21 idle wake-ups ≤ 10 in 10 s (every thread)", fl.wakeups.String(), func(r *benchResult) string {
			return fmt.Sprintf("%s: %s", r.wakeups, verdict(r.wakeups.period > 0 && r.wakeups.total <= 10))
		}},
		{"#21 BPF maps' kernel memory bounded", "–", func(r *benchResult) string {
			if r.src != "bpf" {
				return "–"
			}
			return fmt.Sprintf("%.2f MB ready, %.2f MB after the storm", float64(r.mapsReady)/(1<<20), float64(r.mapsStorm)/(1<<20))
		}},
	}
	for _, rw := range rows {
		fmt.Fprintf(w, "| %s | %s", rw.name, rw.floor)
		for _, n := range cols {
			fmt.Fprintf(w, " | %s", rw.f(res[n]))
		}
		fmt.Fprintf(w, " |\n")
	}
	if lc != nil {
		fmt.Fprintf(w, "\nlibcgroup, same run: idle p50/p90/p99 %s / %s / %s (cpu), storm p50 %s, %d storm misses, %d escapes of %d (cpu)\n",
			fmtDur(lc.idle.pct(0.5, false)), fmtDur(lc.idle.pct(0.9, false)), fmtDur(lc.idle.pct(0.99, false)), fmtDur(lc.storm.pct(0.5, false)),
			lc.storm.misses, lc.esc.stragglers+lc.esc.vanished, lc.esc.tasks)
	}
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Fprintf(w, "load average at the end: %s", load)
}

// logAbout returns the log lines naming pid (the moves, at info level: only
// ruled tasks are moved, so a storm's recycled pids do not show).
func logAbout(log string, pid int) string {
	re := regexp.MustCompile(`\bpid=` + strconv.Itoa(pid) + `\b`)
	var b strings.Builder
	for _, l := range strings.Split(log, "\n") {
		if re.MatchString(l) {
			b.WriteString("    " + l + "\n")
		}
	}
	if b.Len() == 0 {
		return "    (none: never moved)\n"
	}
	return b.String()
}

func statsString(m map[string]uint64) string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", k, m[k])
	}
	return b.String()
}
