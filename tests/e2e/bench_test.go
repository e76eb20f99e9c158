package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkE2E is issue #4's end-to-end measurement (make bench-e2e):
//
//	go test -run '^$' -bench . -benchtime 1x ./tests/e2e/
//
// For 3 rules and for 10,000 rules (fillerRules, all before the matching
// "cgresjo cpu,unified dest"), each with its own users, cgroups and daemons
// (logging at info level, -vvv -q, for its ready and stats lines):
//
//   - idle: a daemon is started (ready time: from the start of its process
//     to its pidfile, and the took= of its "ready" line). The latency tool
//     forks 1,000 children one after another, 1 ms apart; each takes t0,
//     changes its uid to cgresjo and spins on its /proc/self/cgroup until
//     its cpu line shows the destination (the latency), then until its
//     cgroup2 line does too ("both"); not moved within 1 s is a miss. Then
//     the same with children that sleep 20 µs between two reads instead of
//     spinning ("poll"), and 50 children 100 ms apart ("sparse", polling).
//     Then the daemon is stopped: CPU per kernel event, RSS.
//   - storm: a second daemon; the storm tool (2 processes creating children
//     that change their uid to cgrenobody, which no rule names, and exit; in
//     the in-scope cgroup "storm") runs while the latency tool takes up to
//     1,000 spinning samples (at most 30 s) and the escape tool runs 5
//     rounds (250 children and 250 grandchildren). Then the same counters.
//
// A third column, "floor", runs the same latency measurements against
// tests/tools/floor.c instead of the daemon: a single-threaded C loop doing
// the least a mover can do (read the event, /proc/PID/cgroup and status,
// write two cgroup.procs files opened once). It shows what the machine
// allows.
//
// Daemon CPU is utime+stime from /proc/PID/stat (clock ticks of 10 ms)
// between its readiness and just before its SIGTERM, divided by the
// datagrams it read from its socket (the stats line logged at SIGTERM:
// datagrams= counts every message received, kernel_events= those handed on;
// the kernel filters by type, so they differ only by acks).
//
// The benchmark reports (b.ReportMetric, and a table on standard output); it
// never fails on a target, only when a measurement cannot be made.
func BenchmarkE2E(b *testing.B) {
	requireDaemon(b)
	requireTools(b)
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
	run("floor", benchFloor)
	for _, n := range []int{3, 10000} {
		run(fmt.Sprintf("rules=%d", n), func(b *testing.B) *benchResult { return benchRules(b, n) })
	}
	if len(order) > 0 {
		printBenchTable(os.Stdout, order, results)
	}
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
	rssKB     int64
	hwmKB     int64
	log       string
}

func (r *daemonRun) perEvent() time.Duration {
	if r.datagrams == 0 {
		return -1
	}
	return r.cpu / time.Duration(r.datagrams)
}

type benchResult struct {
	name         string
	floor        bool // the C floor, not the daemon
	idle, poll   latencies
	sparse       latencies
	storm        latencies
	idleD        daemonRun
	stormD       daemonRun
	esc          escapeStats
	stormForks   string // the storm tool's totals
	stormSeconds float64
}

// latencyPhases runs the idle measurements: spinning children 1 ms apart,
// polling children 1 ms apart, polling children 100 ms apart.
func (e *env) latencyPhases(r *benchResult, uid, dest string) {
	r.idle = e.latencyRunArgs(uid, dest, []string{"-n", "1000", "-g", "1000", "-d", "60"})
	r.poll = e.latencyRunArgs(uid, dest, []string{"-n", "1000", "-g", "1000", "-s", "20", "-d", "60"})
	r.sparse = e.latencyRunArgs(uid, dest, []string{"-n", "50", "-g", "100000", "-s", "20", "-d", "60"})
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
	e.latencyPhases(r, uid, dest)
	e.stormPhase(r, uidOf(b, "cgrenobody"), func() {
		r.storm = e.latencyRunArgs(uid, dest, []string{"-n", "1000", "-d", "30"})
	})
	fl.stop()
	return r
}

// benchRules measures one rule count.
func benchRules(b *testing.B, nrules int) *benchResult {
	e := benchEnv(b, nrules)
	uid := uidOf(b, "cgresjo")
	dest := e.cg("dest")
	r := &benchResult{name: fmt.Sprintf("%d rules", nrules)}

	d := e.startDaemon(dopts{extra: benchDaemonArgs()})
	start := d.readyCPU()
	e.latencyPhases(r, uid, dest)
	r.idleD = d.finish(start)

	d = e.startDaemon(dopts{extra: benchDaemonArgs()})
	start = d.readyCPU()
	e.stormPhase(r, uidOf(b, "cgrenobody"), func() {
		r.storm = e.latencyRunArgs(uid, dest, []string{"-n", "1000", "-d", "30"})
		r.esc = e.escapeRounds(uid, 5, 50, dest, 2*time.Second)
	})
	r.stormD = d.finish(start)
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
	var r daemonRun
	cpu, err := procCPU(d.pid)
	if err != nil {
		t.Fatalf("daemon CPU: %v", err)
	}
	r.cpu = cpu - startCPU
	r.rssKB, r.hwmKB = procRSS(d.pid)
	if r.rssKB <= 0 || r.hwmKB <= 0 {
		t.Fatalf("cannot read VmRSS/VmHWM of the daemon (pid %d)", d.pid)
	}
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
	if r.datagrams == 0 || r.events == 0 {
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

// procRSS reads VmRSS and VmHWM (kB) from /proc/PID/status.
func procRSS(pid int) (rss, hwm int64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1, -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		n, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = n
		case "VmHWM:":
			hwm = n
		}
	}
	return rss, hwm
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
	if r.floor {
		return
	}
	b.ReportMetric(float64(r.esc.stragglers+r.esc.vanished), "escapes-storm")
	b.ReportMetric(us(r.idleD.perEvent()), "cpu-µs/event-idle")
	b.ReportMetric(us(r.stormD.perEvent()), "cpu-µs/event-storm")
	b.ReportMetric(float64(max(r.idleD.hwmKB, r.stormD.hwmKB))/1024, "hwm-MB")
	b.ReportMetric(float64(r.stormD.rssKB)/1024, "rss-MB")
	b.ReportMetric(float64(r.idleD.ready)/float64(time.Millisecond), "ready-ms")
}

// printBenchTable prints the results side by side, with the targets.
func printBenchTable(w *os.File, order []string, res map[string]*benchResult) {
	dur := func(d time.Duration) string {
		if d < 0 {
			return "n/a"
		}
		if d >= 10*time.Millisecond {
			return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
		}
		return fmt.Sprintf("%.0f µs", us(d))
	}
	lat := func(get func(r *benchResult) *latencies, p float64) func(r *benchResult) string {
		return func(r *benchResult) string {
			l := get(r)
			return dur(l.pct(p, false)) + " / " + dur(l.pct(p, true))
		}
	}
	misses := func(get func(r *benchResult) *latencies) func(r *benchResult) string {
		return func(r *benchResult) string { l := get(r); return fmt.Sprintf("%d of %d", l.misses, l.samples) }
	}
	daemonOnly := func(f func(r *benchResult) string) func(r *benchResult) string {
		return func(r *benchResult) string {
			if r.floor {
				return "-"
			}
			return f(r)
		}
	}
	idle := func(r *benchResult) *latencies { return &r.idle }
	poll := func(r *benchResult) *latencies { return &r.poll }
	sparse := func(r *benchResult) *latencies { return &r.sparse }
	storm := func(r *benchResult) *latencies { return &r.storm }
	rows := []struct {
		name, target string
		f            func(r *benchResult) string
	}{
		{"p50 idle, spinning, 1 ms apart", "≤ 150 µs", lat(idle, 0.5)},
		{"p99 idle, spinning, 1 ms apart", "≤ 1 ms", lat(idle, 0.99)},
		{"misses idle, spinning", "0", misses(idle)},
		{"p50 idle, polling, 1 ms apart", "", lat(poll, 0.5)},
		{"p99 idle, polling, 1 ms apart", "", lat(poll, 0.99)},
		{"p50 idle, polling, 100 ms apart", "", lat(sparse, 0.5)},
		{"p99 idle, polling, 100 ms apart", "", lat(sparse, 0.99)},
		{"p50 storm, spinning", "", lat(storm, 0.5)},
		{"p99 storm, spinning", "", lat(storm, 0.99)},
		{"misses storm (not moved in 1 s)", "0", misses(storm)},
		{"escapes storm (of tasks)", "0", daemonOnly(func(r *benchResult) string {
			return fmt.Sprintf("%d of %d", r.esc.stragglers+r.esc.vanished, r.esc.tasks)
		})},
		{"daemon CPU/event idle (CPU/datagrams)", "", daemonOnly(func(r *benchResult) string {
			return fmt.Sprintf("%.1f µs (%v/%d)", us(r.idleD.perEvent()), r.idleD.cpu, r.idleD.datagrams)
		})},
		{"daemon CPU/event storm", "≤ 4 µs", daemonOnly(func(r *benchResult) string {
			return fmt.Sprintf("%.1f µs (%v/%d)", us(r.stormD.perEvent()), r.stormD.cpu, r.stormD.datagrams)
		})},
		{"storm: events read per s", "", daemonOnly(func(r *benchResult) string {
			return fmt.Sprintf("%.0f", float64(r.stormD.datagrams)/r.stormSeconds)
		})},
		{"storm: overflows/rescans/queue_full", "", daemonOnly(func(r *benchResult) string {
			s := r.stormD.stats
			return fmt.Sprintf("%d / %d / %d", s["overflows"], s["rescans"], s["queue_full"])
		})},
		{"VmRSS / VmHWM after idle", "", daemonOnly(func(r *benchResult) string {
			return fmt.Sprintf("%.1f / %.1f MB", float64(r.idleD.rssKB)/1024, float64(r.idleD.hwmKB)/1024)
		})},
		{"VmRSS / VmHWM after storm", "≤ 15 MB", daemonOnly(func(r *benchResult) string {
			return fmt.Sprintf("%.1f / %.1f MB", float64(r.stormD.rssKB)/1024, float64(r.stormD.hwmKB)/1024)
		})},
		{"ready: pidfile / took=", "≤ 0.2 s", daemonOnly(func(r *benchResult) string {
			return fmt.Sprintf("%.1f ms / %s", float64(r.idleD.ready)/float64(time.Millisecond), r.idleD.took)
		})},
	}
	const col = 26
	fmt.Fprintf(w, "\ncgrulesengd end-to-end benchmark (issue #4); latencies: cpu moved / cpu and cgroup2 moved\n")
	fmt.Fprintf(w, "%-38s", "")
	for _, n := range order {
		fmt.Fprintf(w, " %-*s", col, res[n].name)
	}
	fmt.Fprintf(w, " %s\n", "target")
	for _, row := range rows {
		fmt.Fprintf(w, "%-38s", row.name)
		for _, n := range order {
			fmt.Fprintf(w, " %-*s", col, row.f(res[n]))
		}
		fmt.Fprintf(w, " %s\n", row.target)
	}
	for _, n := range order {
		r := res[n]
		fmt.Fprintf(w, "%s, storm: %s; ran %.1f s during the measurements\n", r.name, r.stormForks, r.stormSeconds)
		if !r.floor {
			fmt.Fprintf(w, "%s, storm escapes: %s\n", r.name, r.esc)
			fmt.Fprintf(w, "%s, storm daemon: %s\n", r.name, statsString(r.stormD.stats))
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
