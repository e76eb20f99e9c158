package e2e

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func monoNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// escapeStats sums up rounds of the escape tool.
type escapeStats struct {
	rounds     int
	tasks      int // children and grandchildren watched
	stragglers int // not in the destination (cpu and cgroup2) within the wait
	vanished   int // exited before they were seen in place (they must idle)
	// slow counts tasks seen out of place more than 100 ms after the
	// setuid. Tasks are watched from the moment the tool reports them (a
	// fork costs ~1 ms on the test VM, so the last of 150 arrives late): a
	// task first seen in place may have needed any time up to then, so this
	// is a lower bound, and so is maxOut, the latest a task was seen out of
	// place after the setuid.
	slow       int
	maxOut     time.Duration
	parentsOut int // tool processes (the setuid task itself) not in place
	// late: stragglers that reached their place afterwards (a repair
	// rescan, say), within lateWait; the rest of the stragglers never did
	// (or exited first). Both fail the tests; the split says which defect.
	late    int
	details []string     // the first stragglers: where they were
	kinds   map[int]byte // every pid watched: 'P', 'C' or 'G'
}

func (s escapeStats) String() string {
	return fmt.Sprintf("%d rounds, %d tasks: %d left behind (%d of them in place later), %d vanished, %d seen out of place more than 100 ms after the setuid (latest seen out of place: %v after it), %d setuid parents not in place",
		s.rounds, s.tasks, s.stragglers, s.late, s.vanished, s.slow, s.maxOut.Round(time.Microsecond), s.parentsOut)
}

// escapeRounds runs the escape tool rounds times as user uid with children
// children (each double-forking) and checks that the parent, every child
// and every grandchild end in cgroup dest of the cpu and cgroup2 hierarchies:
// each is polled from the moment the tool reports it, for up to wait. Each
// round's processes are killed before the next. Failures to run the tool
// are fatal; stragglers are only counted, and watched for lateWait more to
// tell a late move (a repair rescan) from none.
func (e *env) escapeRounds(uid string, rounds, children int, dest string, wait time.Duration) escapeStats {
	e.t.Helper()
	return e.escapeRoundsIn(uid, rounds, children, dest, wait, lateWait, false)
}

// escapeRoundsIn is escapeRounds; with cpuOnly a task is in place once its
// cpu line shows dest (for a daemon that does not move tasks in cgroup2:
// libcgroup's, in the benchmark).
func (e *env) escapeRoundsIn(uid string, rounds, children int, dest string, wait, late time.Duration, cpuOnly bool) escapeStats {
	e.t.Helper()
	t := e.t
	st := escapeStats{kinds: map[int]byte{}}
	for r := 0; r < rounds; r++ {
		tl := e.startTool(nil, "", "escape", uid, strconv.Itoa(children), "120")
		type watch struct {
			kind     byte
			deadline time.Time
			slow     bool
		}
		all := []int{tl.pid}
		var left []int // this round's stragglers
		pending := map[int]*watch{tl.pid: {kind: 'P', deadline: time.Now().Add(wait)}}
		st.kinds[tl.pid] = 'P'
		var t0 int64
		done := false
		lastLine := time.Now()
		for !done || len(pending) > 0 {
			// Take what the tool reported since the last pass.
			for more := !done; more; {
				select {
				case line, ok := <-tl.lines:
					if !ok {
						t.Fatalf("round %d: the escape tool ended its output early (%d pids); stderr: %s", r, len(all), tl.stderr.String())
					}
					lastLine = time.Now()
					f := strings.Fields(line)
					switch {
					case line == "done":
						done, more = true, false
					case len(f) == 2 && f[0] == "T":
						t0, _ = strconv.ParseInt(f[1], 10, 64)
					case len(f) == 2 && (f[0] == "C" || f[0] == "G"):
						pid, err := strconv.Atoi(f[1])
						if err != nil {
							t.Fatalf("round %d: bad line %q", r, line)
						}
						all = append(all, pid)
						pending[pid] = &watch{kind: f[0][0], deadline: time.Now().Add(wait)}
						st.kinds[pid] = f[0][0]
					default:
						t.Fatalf("round %d: unexpected line %q from the escape tool", r, line)
					}
				default:
					more = false
				}
			}
			if !done && time.Since(lastLine) > 15*time.Second {
				t.Fatalf("round %d: the escape tool stopped reporting (%d pids so far); stderr: %s", r, len(all), tl.stderr.String())
			}
			now := time.Now()
			for pid, w := range pending {
				cpu, v2, err := cgroupPaths(pid)
				age := time.Duration(monoNow() - t0)
				switch {
				case err != nil && processGone(pid):
					if w.kind != 'P' {
						st.vanished++
					}
					st.details = appendDetail(st.details, fmt.Sprintf("round %d: %c %d exited before it was seen in place", r, w.kind, pid))
					delete(pending, pid)
				case err == nil && cpu == dest && (v2 == dest || cpuOnly):
					delete(pending, pid)
				case now.After(w.deadline):
					if w.kind == 'P' {
						st.parentsOut++
					} else {
						st.stragglers++
					}
					st.details = appendDetail(st.details, fmt.Sprintf("round %d: %c %d (ppid %d) left in cpu %s, cgroup2 %s (want %s; err %v)", r, w.kind, pid, parentPid(pid), cpu, v2, dest, err))
					left = append(left, pid)
					delete(pending, pid)
				case t0 != 0 && w.kind != 'P':
					if age > st.maxOut {
						st.maxOut = age
					}
					if age > 100*time.Millisecond && !w.slow {
						w.slow = true
						st.slow++
					}
				}
			}
			time.Sleep(time.Millisecond)
		}
		if t0 == 0 || len(all) != 1+2*children {
			t.Fatalf("round %d: got %d pids and setuid time %d from the escape tool, want %d pids", r, len(all), t0, 1+2*children)
		}
		st.rounds++
		st.tasks += 2 * children
		st.lateArrivals(r, left, dest, late, cpuOnly)

		tl.stop()
		if still := killPids(all, 3*time.Second); len(still) > 0 {
			t.Fatalf("round %d: escape tool processes %v still run after SIGKILL", r, still)
		}
	}
	return st
}

// movesOf counts the daemon's "moved task" log lines in the cpu hierarchy
// (one per move of a task) for the watched pids, by kind (P, C, G) and
// reason (why=): which tasks were born before their parent was moved, so
// that the daemon had to catch them (why=fork or why=child), and how. Only
// ruled tasks are ever moved, so a storm's recycled pids do not count; a pid
// reused by a later round is counted with its latest kind.
func (s escapeStats) movesOf(log string) map[string]int {
	re := regexp.MustCompile(`msg="moved task".*\bcontroller=cpu\b.*\bpid=(\d+)\b.*\bwhy=(\w+)`)
	out := map[string]int{}
	for _, l := range strings.Split(log, "\n") {
		m := re.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if k, ok := s.kinds[pid]; ok {
			out[string(k)+":"+m[2]]++
		}
	}
	return out
}

func formatMoves(moves map[string]int) string {
	keys := make([]string, 0, len(moves))
	for k := range moves {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%d", k, moves[k])
	}
	return b.String()
}

// lateWait is how long stragglers are watched after their wait, to tell
// a late move from none.
const lateWait = 10 * time.Second

// lateArrivals watches round r's stragglers for late more and notes which
// reached dest, and when (st.late, st.details).
func (st *escapeStats) lateArrivals(r int, left []int, dest string, late time.Duration, cpuOnly bool) {
	if late <= 0 {
		return
	}
	deadline := time.Now().Add(late)
	start := time.Now()
	for len(left) > 0 && time.Now().Before(deadline) {
		left = slices.DeleteFunc(left, func(pid int) bool {
			cpu, v2, err := cgroupPaths(pid)
			switch {
			case err == nil && cpu == dest && (v2 == dest || cpuOnly):
				st.late++
				st.details = appendDetail(st.details, fmt.Sprintf("round %d: %d in place %v after its wait ended", r, pid, time.Since(start).Round(time.Millisecond)))
				return true
			case err != nil && processGone(pid):
				return true
			}
			return false
		})
		time.Sleep(5 * time.Millisecond)
	}
	for _, pid := range left {
		st.details = appendDetail(st.details, fmt.Sprintf("round %d: %d still out of place %v after its wait ended", r, pid, late))
	}
}

func appendDetail(d []string, s string) []string {
	if len(d) < 20 {
		return append(d, s)
	}
	return d
}

// TestNoEscapes: a task changes its uid to a ruled user and, before the
// daemon can move it, forks 50 children, each of which double-forks (the
// middle process exits at once). Over 20 rounds, none of the 2,000 children
// and grandchildren may stay behind in the old cgroups (cpu, v1, and
// cgroup2 alike), with 3 rules and with 10,000 rules before the matching
// one, and once more with 10,000 rules while a fork/setuid storm keeps the
// daemon busy (so that more children are born before their parent's move).
//
// On the test VM a fork costs ~0.8 ms and the daemon moves the parent
// ~0.5 ms after its setuid, so on an idle machine only the first child or
// two of each round are born in the old cgroup: the test logs how many tasks
// the daemon actually had to catch (why=fork: followed from the FORK
// event; why=child: found among the children of a task it had just moved).
func TestNoEscapes(t *testing.T) {
	requireDaemon(t)
	requireTools(t)
	for _, c := range []struct {
		name   string
		filler int
		storm  bool
	}{
		{"3-rules", 0, false},
		{"10000-rules", 10000, false},
		{"10000-rules-storm", 10000, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			identities(t)
			e := newEnv(t, []string{"cpu", "unified"}, "dest", "other", "storm")
			rules := "cgreother  cpu  other\n@cgreother  cpu  other\n"
			if c.filler > 0 {
				rules = fillerRules(c.filler)
			}
			e.writeRules(rules + "cgresjo  cpu,unified  dest\n")
			d := e.startDaemon(dopts{})
			var storm *tool
			if c.storm {
				storm = e.startTool(nil, "storm", "storm", "-p", "2", "-s", "120", "-u", uidOf(t, "cgrenobody"))
			}
			st := e.escapeRounds(uidOf(t, "cgresjo"), 20, 50, e.cg("dest"), 2*time.Second)
			if storm != nil {
				select {
				case <-storm.done:
					t.Errorf("the storm ended before the rounds did: %s", storm.stderr.String())
				default:
				}
				storm.stop()
				line, _ := storm.next(5 * time.Second)
				t.Logf("storm: %s", line)
			}
			t.Logf("%s: %s", c.name, st)
			t.Logf("%s: moves in cpu by kind (P parent, C child, G grandchild) and reason:%s", c.name, formatMoves(st.movesOf(d.log())))
			if st.stragglers > 0 || st.vanished > 0 || st.parentsOut > 0 {
				t.Errorf("%s: %d of %d tasks left behind (%d vanished, %d setuid parents not moved):\n%s",
					c.name, st.stragglers, st.tasks, st.vanished, st.parentsOut, strings.Join(st.details, "\n"))
			}
		})
	}
}

// statsOf reads the counters of the daemon's last stats line (the one
// logged at SIGTERM also has datagrams= and kernel_events=).
func statsOf(log string) (map[string]uint64, string) {
	var line string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "level=info") && regexp.MustCompile(`msg="?stats[ "]`).MatchString(l) {
			line = l
		}
	}
	m := map[string]uint64{}
	for _, kv := range regexp.MustCompile(`\b(\w+)=(\d+)\b`).FindAllStringSubmatch(line, -1) {
		n, _ := strconv.ParseUint(kv[2], 10, 64)
		m[kv[1]] = n
	}
	return m, line
}

// TestOverflowRepair: with the smallest netlink receive buffer or BPF ring
// buffer the daemon accepts (4096 bytes), a fork/setuid storm (two
// processes creating children that change their uid to cgrenobody and
// exit: tens of thousands of events a second) overflows it, while 50 tasks
// of a ruled user start one after another. The overflows must be counted,
// rescans must run, and every ruled task must be in its destination within
// a few seconds after the storm.
//
// The storm runs in the test cgroup "storm", inside --cgroup-root, and a
// rule sends cgrenobody there: its children are in scope and named, so the
// daemon hears of each (the BPF source too) and has to read and classify
// it (the most work per event it can be given), yet they stay where they
// are.
func TestOverflowRepair(t *testing.T) {
	requireDaemon(t)
	requireTools(t)
	identities(t)
	e := newEnv(t, []string{"cpu", "unified"}, "dest", "storm")
	e.writeRules("cgresjo  cpu,unified  dest\ncgrenobody  cpu,unified  storm\n")
	d := e.startDaemon(dopts{extra: []string{"--netlink-buffer", "4096", "--bpf-ring-buffer", "4096"}})
	uid := uidOf(t, "cgresjo")
	dest := e.cg("dest")

	storm := e.startTool(nil, "storm", "storm", "-p", "2", "-s", "5", "-u", uidOf(t, "cgrenobody"))
	stormStart := time.Now()
	var tasks []*tool
	duringStorm := 0
	for i := 0; i < 50; i++ {
		tasks = append(tasks, e.startTool(nil, "", "escape", uid, "0", "120"))
		select {
		case <-storm.done:
		default:
			duringStorm++
		}
		time.Sleep(20 * time.Millisecond)
	}
	startedIn := time.Since(stormStart)
	line, ok := storm.next(30 * time.Second)
	if !ok || !strings.HasPrefix(line, "forks ") {
		t.Fatalf("the storm did not report (%q); stderr: %s", line, storm.stderr.String())
	}
	if !storm.wait(5 * time.Second) {
		t.Fatalf("the storm did not exit")
	}
	stormEnd := time.Now()
	t.Logf("storm: %s; 50 ruled tasks started in %v, %d of them while the storm ran", line, startedIn.Round(time.Millisecond), duringStorm)

	var late []string
	var slowest time.Duration
	for _, tl := range tasks {
		for {
			cpu, v2, err := cgroupPaths(tl.pid)
			if err == nil && cpu == dest && v2 == dest {
				if d := time.Since(stormEnd); d > slowest {
					slowest = d
				}
				break
			}
			if time.Since(stormEnd) > 5*time.Second {
				late = append(late, fmt.Sprintf("pid %d: cpu %s, cgroup2 %s (err %v)", tl.pid, cpu, v2, err))
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if len(late) > 0 {
		t.Errorf("%d of %d ruled tasks not in %s 5 s after the storm:\n%s", len(late), len(tasks), dest, strings.Join(late, "\n"))
	}

	if code := d.stop(); code != 0 {
		t.Errorf("exit status %d after SIGTERM", code)
	}
	log := d.log()
	stats, statsLine := statsOf(log)
	t.Logf("daemon: %s", statsLine)
	if stats["event_overflows"] == 0 {
		t.Errorf("no overflow counted with a 4096-byte receive buffer during the storm: %s", statsLine)
	}
	if stats["repair_scans"] == 0 {
		t.Errorf("no rescan ran after overflows: %s", statsLine)
	}
	if !strings.Contains(log, "kernel events were lost") {
		t.Errorf("no overflow warning in the log")
	}
	// How the ruled tasks were found: by their own events, or by a rescan.
	byScan := 0
	for _, tl := range tasks {
		re := regexp.MustCompile(`msg="moved task".*\bpid=` + strconv.Itoa(tl.pid) + `\b.*\bwhy=scan\b`)
		if re.MatchString(log) {
			byScan++
		}
	}
	t.Logf("overflows=%d rescans=%d queue_full=%d; %d of %d ruled tasks were moved by a rescan; all in place at most %v after the storm",
		stats["event_overflows"], stats["repair_scans"], stats["queue_overflows"], byScan, len(tasks), slowest.Round(time.Millisecond))
}

// TestStormNoMisses (opt-in: CGRE_E2E_STRESS=1; it fails now and then, so
// it is not part of the default run) is issue #4's "0 misses under the
// storm" as a test: with 10,000 rules and a fork/setuid storm (children of
// cgrenobody, which no rule names; pids are reused every second or so), 1,500
// tasks change their uid to cgresjo one after another and each must be moved
// within 1 s. A miss is reported with the daemon's debug lines about its pid.
//
// Found with it (November 2026, 1-3 misses per 1,500): "no rule matches ...
// pid=N process=.../cgre-latency uid=1004" - the task was classified with
// the uid of cgrenobody (1004), that is, with the credentials a UID event
// had reported for an earlier process with the same pid, or not classified
// at all (no line).
func TestStormNoMisses(t *testing.T) {
	if os.Getenv("CGRE_E2E_STRESS") == "" {
		t.Skip("opt-in stress test: set CGRE_E2E_STRESS=1")
	}
	requireDaemon(t)
	requireTools(t)
	identities(t)
	e := newEnv(t, []string{"cpu", "unified"}, "dest", "other", "storm")
	e.writeRules(fillerRules(10000) + "cgresjo  cpu,unified  dest\n")
	d := e.startDaemon(dopts{})
	var l latencies
	r := &benchResult{}
	e.stormPhase(r, uidOf(t, "cgrenobody"), func() {
		l = e.latencyRunArgs(uidOf(t, "cgresjo"), e.cg("dest"), []string{"-n", "1500", "-d", "40"})
	})
	if code := d.stop(); code != 0 {
		t.Errorf("exit status %d after SIGTERM", code)
	}
	log := d.log()
	_, line := statsOf(log)
	t.Logf("storm: %s; %d samples, p50 %v, p99 %v; daemon: %s", r.stormForks, l.samples, l.pct(0.5, false), l.pct(0.99, false), line)
	for _, pid := range l.missed {
		re := regexp.MustCompile(`\bpid=` + strconv.Itoa(pid) + `\b`)
		var lines []string
		for _, ln := range strings.Split(log, "\n") {
			if re.MatchString(ln) {
				lines = append(lines, ln)
			}
		}
		t.Errorf("pid %d (cgresjo) was not moved within 1 s; the daemon's log lines naming it (%d, last 10; a storm child may have had the pid before):\n%s",
			pid, len(lines), strings.Join(lines[max(0, len(lines)-10):], "\n"))
	}
}

// TestOverflowGap is issue #13's first item: once a netlink socket's receive
// queue has overflowed, the kernel drops every event for it until the queue
// has been read empty, so a repair scan that starts when ENOBUFS is seen
// (while the backlog is still being read) misses every credential change
// made between its look at a task and the end of the backlog.
//
// The episode, for real: the daemon (default 16 MiB buffer; with the BPF
// source, a one-page ring buffer) is stopped with SIGSTOP while a
// fork/setuid storm (children of cgrenobody, whose rule leaves them where
// they are) fills its queue far past overflow; the storm ends, the daemon
// is continued, and D later 10 children fork and change their uid to
// cgresjo, whose rule sends them to "dest". For every D in 0-50 ms all 10
// must end in dest (cpu and cgroup2), and the daemon must have seen an
// overflow each time (else the round proves nothing). The BPF source counts
// its losses in the kernel and reports them after the records it read, so
// the same proof holds for it.
func TestOverflowGap(t *testing.T) {
	requireDaemon(t)
	requireTools(t)
	identities(t)
	e := newEnv(t, []string{"cpu", "unified"}, "dest", "storm")
	// The storm's user is named (its tasks stay in "storm", where they
	// are), so that the BPF source reports them too; its ring buffer is
	// the smallest, the proc connector's receive buffer the default.
	e.writeRules("cgresjo  cpu,unified  dest\ncgrenobody  cpu,unified  storm\n")
	// Info level, not debug: the storm's tasks would fill a debug log with
	// millions of lines.
	d := e.startDaemon(dopts{extra: []string{"-q", "--bpf-ring-buffer", "4096"}})
	uid := uidOf(t, "cgresjo")
	nobody := uidOf(t, "cgrenobody")
	dest := e.cg("dest")
	const children = 10
	overflowed := regexp.MustCompile(`kernel events were lost`)
	var failures []string
	for _, delay := range []time.Duration{0, time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond} {
		burst := e.startTool(nil, "", "burst", uid, strconv.Itoa(children), "60")
		from := d.logSize()

		// The storm runs until the kernel has dropped events for the
		// stopped daemon's socket (its queue is full), and a little longer.
		drops0, err := sourceDrops(d.pid)
		if err != nil {
			t.Fatal(err)
		}
		d.signal(syscall.SIGSTOP)
		storm := e.startTool(nil, "storm", "storm", "-p", "2", "-s", "20", "-u", nobody)
		var drops uint64
		for t0 := time.Now(); drops < drops0+1000 && time.Since(t0) < 15*time.Second; time.Sleep(20 * time.Millisecond) {
			if drops, err = sourceDrops(d.pid); err != nil {
				d.signal(syscall.SIGCONT)
				t.Fatal(err)
			}
		}
		storm.stop()
		line, _ := storm.next(5 * time.Second)
		if drops < drops0+1000 {
			d.signal(syscall.SIGCONT)
			t.Fatalf("delay %v: the storm (%s) did not overflow the stopped daemon's event source within 15 s: %d events dropped", delay, line, drops-drops0)
		}
		d.signal(syscall.SIGCONT)
		time.Sleep(delay)
		if err := syscall.Kill(burst.pid, syscall.SIGUSR1); err != nil {
			t.Fatalf("signalling the burst tool: %v", err)
		}

		var pids []int
		for done := false; !done; {
			l, ok := burst.next(10 * time.Second)
			if !ok {
				t.Fatalf("delay %v: the burst tool stopped reporting; stderr: %s", delay, burst.stderr.String())
			}
			f := strings.Fields(l)
			switch {
			case l == "done":
				done = true
			case len(f) == 2 && f[0] == "C":
				pid, err := strconv.Atoi(f[1])
				if err != nil {
					t.Fatalf("bad line %q", l)
				}
				pids = append(pids, pid)
			}
		}
		d.waitLog(from, overflowed, 10*time.Second)

		moved := 0
		var left []string
		deadline := time.Now().Add(5 * time.Second)
		for _, pid := range pids {
			for {
				cpu, v2, err := cgroupPaths(pid)
				if err == nil && cpu == dest && v2 == dest {
					moved++
					break
				}
				if time.Now().After(deadline) {
					left = append(left, fmt.Sprintf("pid %d: cpu %s, cgroup2 %s (err %v)", pid, cpu, v2, err))
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		t.Logf("delay %v: storm %s, the kernel dropped %d events for the stopped daemon; %d of %d children moved", delay, line, drops-drops0, moved, len(pids))
		if moved != children {
			failures = append(failures, fmt.Sprintf("delay %v: %d of %d children moved; left behind:\n%s", delay, moved, children, strings.Join(left, "\n")))
		}
		burst.stop()
		killPids(pids, 3*time.Second)
		// The next round starts after a second: the overflow warning is
		// rate-limited to one a second.
		time.Sleep(time.Second)
	}
	if len(failures) > 0 {
		t.Errorf("credential changes right after an overflow were lost:\n%s", strings.Join(failures, "\n"))
	}
}

// netlinkDrops sums the Drops column of /proc/net/netlink (events the
// kernel could not queue) over pid's NETLINK_CONNECTOR sockets.
func netlinkDrops(pid int) (uint64, error) {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, err
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	data, err := os.ReadFile("/proc/net/netlink")
	if err != nil {
		return 0, err
	}
	var sum uint64
	found := false
	for _, line := range strings.Split(string(data), "\n")[1:] {
		// sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
		f := strings.Fields(line)
		if len(f) < 10 || f[1] != "11" || !inodes[f[9]] {
			continue
		}
		n, err := strconv.ParseUint(f[8], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/net/netlink: %q: %w", line, err)
		}
		sum += n
		found = true
	}
	if !found {
		return 0, fmt.Errorf("pid %d has no NETLINK_CONNECTOR socket in /proc/net/netlink", pid)
	}
	return sum, nil
}
