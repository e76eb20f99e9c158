package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cgrulesengd/cgrulesengd/internal/systemd"
	"github.com/cgrulesengd/cgrulesengd/internal/unitname"
	"github.com/cgrulesengd/cgrulesengd/tests/sdbox"
)

// The placement tests of issue 20: tasks of a service of the box change
// to a ruled user, and the daemon on the host has the box's manager put
// them into their scope.

// boxTask is a process of the box: its pid there and on the host.
type boxTask struct{ box, host int }

// service starts the transient service name in the box running script
// (sh -c) with KillMode=control-group; props are more --property values.
func (s *sdEnv) service(t testing.TB, name, script string, props ...string) {
	t.Helper()
	args := []string{"systemd-run", "--quiet", "--unit=" + name, "--property=KillMode=control-group"}
	for _, p := range props {
		args = append(args, "--property="+p)
	}
	if _, err := s.box.Run(append(args, "sh", "-c", script)...); err != nil {
		t.Fatal(err)
	}
}

// waitBoxFile waits until the box's file path has a line for which done
// is true, and returns the file.
func (s *sdEnv) waitBoxFile(t testing.TB, path string, done func(line string) bool, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		data, _ := s.box.ReadFile(path)
		for _, l := range strings.Split(string(data), "\n") {
			if done(l) {
				return string(data)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the box's %s has no such line after %v:\n%s", path, timeout, data)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// hostPID is the host pid of a box pid.
func (s *sdEnv) hostPID(t testing.TB, boxPID int) int {
	t.Helper()
	p, err := s.box.HostPID(boxPID)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// harnessTask starts, in the service name of the box, the setuid harness
// as a child of the service's main process (sh, which then sleeps):
// the harness changes its uid to user's and idles.
func (s *sdEnv) harnessTask(t testing.TB, name, user string) boxTask {
	t.Helper()
	out := "/run/" + name + ".out"
	s.service(t, name, fmt.Sprintf("%s -u %s >%s & exec sleep 1000", harnessBin, uid(t, user), out))
	data := s.waitBoxFile(t, out, func(l string) bool { return l != "" }, 30*time.Second)
	pid, err := strconv.Atoi(strings.TrimSpace(data))
	if err != nil {
		t.Fatalf("the harness in %s printed %q", name, data)
	}
	return boxTask{box: pid, host: s.hostPID(t, pid)}
}

// toolPIDs are the pids of a C tool's output lines "KIND PID" of these
// kinds (cgre-escape's C and G, cgre-burst's C).
func toolPIDs(out string, kinds ...string) []int {
	var pids []int
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 2 && slices.Contains(kinds, f[0]) {
			if p, err := strconv.Atoi(f[1]); err == nil {
				pids = append(pids, p)
			}
		}
	}
	return pids
}

// scopeOf is the cgroup, as the box sees it, of user's scope in slice.
func scopeOf(t testing.TB, slice, user string) (string, string) {
	t.Helper()
	u, _ := strconv.ParseUint(uid(t, user), 10, 32)
	scope := systemd.ScopeName(slice, uint32(u))
	return scope, "/" + unitname.SliceCgroupPath(slice) + "/" + scope
}

// waitBoxCgroup waits until host pid is in the box cgroup want.
func (s *sdEnv) waitBoxCgroup(t testing.TB, pid int, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got, err := s.box.BoxCgroupOf(pid)
		if err == nil && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d is in %q (%v), want %s (waited %v)", pid, got, err, want, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// unitOf asks the box's manager for a host pid's unit (GetUnitByPID).
func (s *sdEnv) unitOf(t testing.TB, pid int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := systemd.Dial(ctx, systemd.Config{Address: s.box.PrivateAddress})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	u, err := c.UnitOf(ctx, pid)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// alive reports whether a host pid still runs (not a zombie).
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && !strings.Contains(string(stat), ") Z ")
}

func waitGone(t testing.TB, pid int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still runs after %v", pid, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (d *daemon) status(t testing.TB) string {
	t.Helper()
	out, err := exec.Command(daemonBin, "--status", "--status-socket", d.e.statusPath()).CombinedOutput()
	if err != nil {
		t.Fatalf("--status: %v\n%s", err, out)
	}
	return string(out)
}

// TestSystemdPlace: a task of a service of the box changes to a ruled
// user and lands in its scope in the named slice; the kernel, GetUnitByPID
// and systemctl status agree; --status and /metrics count it; a raw rule
// still moves a host task.
func TestSystemdPlace(t *testing.T) {
	s := newSDEnv(t, sdbox.Options{})
	s.mkdir("raw")
	s.writeRules("cgresjo  *  batch.slice\ncgrecgtest  unified  raw\n")
	port := freePort(t)
	d := s.startDaemon(dopts{extra: append(s.busArgs(), "--metrics", fmt.Sprintf("127.0.0.1:%d", port))})
	task := s.harnessTask(t, "cgre-src", "cgresjo")
	scope, cg := scopeOf(t, "batch.slice", "cgresjo")
	s.waitBoxCgroup(t, task.host, cg, 5*time.Second)
	if u := s.unitOf(t, task.host); u != scope {
		t.Errorf("GetUnitByPID(%d): %s, want %s", task.box, u, scope)
	}
	st, err := s.box.Systemctl("status", scope)
	if err != nil || !strings.Contains(st, "Active: active") || !strings.Contains(st, strconv.Itoa(task.box)) || !strings.Contains(st, "batch.slice") {
		t.Errorf("systemctl status %s: %v\n%s", scope, err, st)
	}
	if src, _ := s.box.HostPIDs("/system.slice/cgre-src.service"); len(src) != 1 {
		t.Errorf("the source service keeps %v, want its main process alone", src)
	}
	h := s.harness(hopts{user: "cgrecgtest"})
	waitCgroup(t, h.pid, "unified", s.cg("raw"), 2*time.Second)
	// A task of the slice rule's user outside the manager's pid namespace
	// (on the host): reported, never placed.
	from := d.logSize()
	out := s.harness(hopts{user: "cgresjo"})
	d.waitLog(from, regexp.MustCompile(fmt.Sprintf(`not placed: the task is outside the service manager's pid namespace.* pid=%d`, out.pid)), 10*time.Second)
	expectCgroupStays(t, out.pid, "unified", s.cg(""), 200*time.Millisecond)
	// The harness is a Go program: its setuid changes every thread, one
	// UID event each; the task is placed once, in one call.
	status := d.status(t)
	if counter(status, "placed") != 1 || counter(status, "systemd_calls") != 1 || counter(status, "systemd_scopes_started") != 1 ||
		counter(status, "credential_events") < 2 || counter(status, "systemd_call_errors") != 0 || counter(status, "outside_namespace") < 1 {
		t.Errorf("--status: want one placement in one call for a multi-threaded setuid:\n%s", status)
	}
	scr := scrape(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	for series, want := range map[string]float64{
		`cgrulesengd_systemd_placements_total{result="placed"}`: 1,
		`cgrulesengd_systemd_placements_total{result="failed"}`: 0,
		`cgrulesengd_systemd_calls_total`:                       1,
		`cgrulesengd_systemd_call_errors_total`:                 0,
		`cgrulesengd_systemd_calls_in_flight`:                   0,
		`cgrulesengd_systemd_call_latency_seconds_count`:        1,
	} {
		if v, ok := sampleValue(scr, series); !ok || v != want {
			t.Errorf("/metrics: %s = %v (present %v), want %v", series, v, ok, want)
		}
	}
	cmd := exec.Command(promtool(t), "check", "metrics")
	cmd.Stdin = strings.NewReader(scr)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestSystemdLifetime: what systemd does with a placed task.
// daemon-reload and a restart of the source service leave it in its
// scope; stopping the source service does not end a placed task that was
// not its main process; a placed main process stays the service's
// MainPID, and stopping the service kills it; stopping its scope ends a
// placed task.
func TestSystemdLifetime(t *testing.T) {
	s := newSDEnv(t, sdbox.Options{})
	s.writeRules("cgresjo  *  batch.slice\ncgrecgtest  *  batch.slice\n")
	s.startDaemon(dopts{extra: s.busArgs()})
	scope, cg := scopeOf(t, "batch.slice", "cgresjo")

	// A non-main task.
	task := s.harnessTask(t, "cgre-src", "cgresjo")
	s.waitBoxCgroup(t, task.host, cg, 5*time.Second)
	if _, err := s.box.Systemctl("daemon-reload"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.box.Systemctl("restart", "cgre-src.service"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if where, _ := s.box.BoxCgroupOf(task.host); where != cg || !alive(task.host) {
		t.Fatalf("after daemon-reload and a restart of its source, pid %d is in %q (alive %v), want %s", task.host, where, alive(task.host), cg)
	}
	if _, err := s.box.Systemctl("stop", "cgre-src.service"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if !alive(task.host) {
		t.Errorf("stopping the source service ended the placed task %d (not its main process)", task.host)
	}

	// The main process: the service's ExecStart is the harness itself.
	out := "/run/cgre-main.out"
	s.service(t, "cgre-main", fmt.Sprintf("exec %s -u %s >%s", harnessBin, uid(t, "cgrecgtest"), out))
	data := s.waitBoxFile(t, out, func(l string) bool { return l != "" }, 30*time.Second)
	boxPID, _ := strconv.Atoi(strings.TrimSpace(data))
	mainHost := s.hostPID(t, boxPID)
	_, mainCg := scopeOf(t, "batch.slice", "cgrecgtest")
	s.waitBoxCgroup(t, mainHost, mainCg, 5*time.Second)
	if m, err := s.box.Show("cgre-main.service", "MainPID"); err != nil || m != strconv.Itoa(boxPID) {
		t.Errorf("MainPID of cgre-main.service after the placement: %q (%v), want %d (systemd keeps it)", m, err, boxPID)
	}
	if _, err := s.box.Systemctl("stop", "cgre-main.service"); err != nil {
		t.Fatal(err)
	}
	waitGone(t, mainHost, 10*time.Second)

	// Stopping the scope ends the task.
	if _, err := s.box.Systemctl("stop", scope); err != nil {
		t.Fatal(err)
	}
	waitGone(t, task.host, 10*time.Second)
}

// TestSystemdForkWindow: children (and grandchildren of double forks) a
// task forks right after its setuid, before the daemon placed it, land in
// the same scope.
func TestSystemdForkWindow(t *testing.T) {
	requireTools(t)
	s := newSDEnv(t, sdbox.Options{Binds: []string{toolDir}})
	s.writeRules("cgresjo  *  batch.slice\n")
	d := s.startDaemon(dopts{extra: s.busArgs()})
	_, cg := scopeOf(t, "batch.slice", "cgresjo")
	for round := 0; round < 5; round++ {
		out := fmt.Sprintf("/run/cgre-escape-%d.out", round)
		s.service(t, fmt.Sprintf("cgre-escape-%d", round), fmt.Sprintf("%s %s 20 60 >%s & exec sleep 1000", filepath.Join(toolDir, "cgre-escape"), uid(t, "cgresjo"), out))
		data := s.waitBoxFile(t, out, func(l string) bool { return l == "done" }, 30*time.Second)
		tool, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(data, "\n", 2)[0]))
		pids := append([]int{tool}, toolPIDs(data, "C", "G")...)
		if len(pids) != 41 {
			t.Fatalf("round %d: %d pids, want the tool, 20 children and 20 grandchildren:\n%s", round, len(pids), data)
		}
		for _, p := range pids {
			s.waitBoxCgroup(t, s.hostPID(t, p), cg, 5*time.Second)
		}
	}
	// Every fork of a task not yet placed was followed (children, middle
	// processes and grandchildren: 300); those forked before their
	// parent's move were placed by the manager, the later ones inherited
	// the scope (none escaped into the source service, checked above).
	st := d.status(t)
	if counter(st, "forks_followed") < 200 || counter(st, "fork_race") < 1 || counter(st, "unreachable") != 0 || counter(st, "failed") != 0 {
		t.Errorf("--status:\n%s", st)
	}
}

// TestSystemdPrefixDropIn: a templated per-user slice gets its prefix
// drop-in (systemctl show).
func TestSystemdPrefixDropIn(t *testing.T) {
	s := newSDEnv(t, sdbox.Options{Units: map[string]string{"batch-.slice.d/50-cgre.conf": "[Slice]\nCPUWeight=37\n"}})
	s.writeRules("cgresjo  *  batch-%u.slice\n")
	s.startDaemon(dopts{extra: s.busArgs()})
	task := s.harnessTask(t, "cgre-src", "cgresjo")
	_, cg := scopeOf(t, "batch-cgresjo.slice", "cgresjo")
	s.waitBoxCgroup(t, task.host, cg, 5*time.Second)
	if w, err := s.box.Show("batch-cgresjo.slice", "CPUWeight"); err != nil || w != "37" {
		t.Errorf("CPUWeight of batch-cgresjo.slice: %q (%v), want 37 from batch-.slice.d", w, err)
	}
}

// burstTasks starts the burst tool in a service of the box (n children
// that change to user's uid at SIGUSR1) and returns it and a function
// that fires the burst and returns the children's host pids.
func (s *sdEnv) burst(t testing.TB, name, user string, n int) func() []int {
	t.Helper()
	out := "/run/" + name + ".out"
	s.service(t, name, fmt.Sprintf("%s %s %d 120 >%s & exec sleep 1000", filepath.Join(toolDir, "cgre-burst"), uid(t, user), n, out))
	data := s.waitBoxFile(t, out, func(l string) bool { return l != "" }, 30*time.Second)
	tool, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(data, "\n", 2)[0]))
	toolHost := s.hostPID(t, tool)
	return func() []int {
		if err := syscall.Kill(toolHost, syscall.SIGUSR1); err != nil {
			t.Fatal(err)
		}
		data := s.waitBoxFile(t, out, func(l string) bool { return l == "done" }, 60*time.Second)
		var pids []int
		for _, p := range toolPIDs(data, "C") {
			pids = append(pids, s.hostPID(t, p))
		}
		if len(pids) != n {
			t.Fatalf("%d children, want %d", len(pids), n)
		}
		return pids
	}
}

// TestSystemdBurst: a burst of 500 ruled tasks, all placed; then the
// manager re-executes in the middle of another burst: none is lost.
func TestSystemdBurst(t *testing.T) {
	requireTools(t)
	s := newSDEnv(t, sdbox.Options{Binds: []string{toolDir}})
	s.writeRules("cgresjo  *  batch.slice\ncgrecgtest  *  batch.slice\n")
	d := s.startDaemon(dopts{extra: s.busArgs()})
	_, cg := scopeOf(t, "batch.slice", "cgresjo")
	pids := s.burst(t, "cgre-burst", "cgresjo", 500)()
	for _, p := range pids {
		s.waitBoxCgroup(t, p, cg, 30*time.Second)
	}
	st := d.status(t)
	if counter(st, "placed") != 500 || counter(st, "systemd_scopes_started") != 1 {
		t.Errorf("after the burst of 500, --status:\n%s", st)
	}

	// The manager re-executes as the next burst starts: every placement
	// made after it began reconnects (daemon-reexec closes every client).
	fire := s.burst(t, "cgre-burst2", "cgrecgtest", 400)
	reexec := make(chan error, 1)
	go func() { _, err := s.box.Systemctl("daemon-reexec"); reexec <- err }()
	time.Sleep(20 * time.Millisecond)
	pids = fire()
	_, cg2 := scopeOf(t, "batch.slice", "cgrecgtest")
	for _, p := range pids {
		s.waitBoxCgroup(t, p, cg2, 60*time.Second)
	}
	if err := <-reexec; err != nil {
		t.Fatal(err)
	}
	st = d.status(t)
	t.Logf("after the re-execution: systemd_reconnects %d, systemd_retries %d, systemd_call_errors %d",
		counter(st, "systemd_reconnects"), counter(st, "systemd_retries"), counter(st, "systemd_call_errors"))
	// A placement that ran out of retries while the manager re-executed
	// (unreachable) is repaired by a rescan: still none lost.
	if counter(st, "placed") != 900 || counter(st, "systemd_reconnects") < 1 || counter(st, "failed") != 0 {
		t.Errorf("after the burst across daemon-reexec, --status:\n%s", st)
	}
}

// counter reads one counter from --status output: "name N" in a group
// line ("group: a 1, b 2") or the counters block.
func counter(status, name string) int {
	m := regexp.MustCompile(`\b` + regexp.QuoteMeta(name) + ` (\d+)`).FindStringSubmatch(status)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestSystemdUnreachable: while the manager cannot be reached (the proxy
// of its socket stopped), a placement fails after its bounded retries with
// a clear error, counted, and raw destinations keep working; when the
// manager answers again, a rescan places the task.
func TestSystemdUnreachable(t *testing.T) {
	s := newSDEnv(t, sdbox.Options{})
	s.mkdir("raw")
	s.writeRules("cgresjo  *  batch.slice\ncgrecgtest  unified  raw\n")
	d := s.startDaemon(dopts{extra: s.busArgs()})
	if _, err := s.box.Systemctl("stop", "cgre-bus-proxy.socket", "cgre-bus-proxy.service"); err != nil {
		t.Fatal(err)
	}
	from := d.logSize()
	task := s.harnessTask(t, "cgre-src", "cgresjo")
	h := s.harness(hopts{user: "cgrecgtest"})
	waitCgroup(t, h.pid, "unified", s.cg("raw"), 2*time.Second)
	line := d.waitLog(from, regexp.MustCompile(`not placed: the service manager could not be reached`), 30*time.Second)
	if !strings.Contains(line, "systemd unreachable") || !strings.Contains(line, fmt.Sprintf("pid=%d", task.host)) {
		t.Errorf("the error does not say what and which task: %s", line)
	}
	st := d.status(t)
	if counter(st, "unreachable") != 1 || counter(st, "systemd_call_errors") < 1 || counter(st, "systemd_retries") < 1 {
		t.Errorf("--status does not count the unreachable placement:\n%s", st)
	}
	if where, _ := s.box.BoxCgroupOf(task.host); where != "/system.slice/cgre-src.service" {
		t.Errorf("the task is in %s while the manager is unreachable", where)
	}
	if _, err := s.box.Systemctl("start", "cgre-bus-proxy.socket"); err != nil {
		t.Fatal(err)
	}
	_, cg := scopeOf(t, "batch.slice", "cgresjo")
	s.waitBoxCgroup(t, task.host, cg, 30*time.Second)
	// Placed by the rescan, or by the classification that followed the
	// failure when the harness's threads had more events meanwhile: then
	// the task is in place before the rescan has run, so wait for it.
	d.waitLog(from, regexp.MustCompile(`msg="rescan done"`), 30*time.Second)
	st = d.status(t)
	if counter(st, "systemd_repairs") != 1 || counter(st, "repair_scans") < 1 || counter(st, "placed") != 1 || counter(st, "systemd_reconnects") < 1 {
		t.Errorf("--status after the repair:\n%s", st)
	}
}

// TestSystemdStickyIgnore: a sticky task is not placed; with ignore, a
// task already in the slice (in a unit of its own there) stays, one
// elsewhere skips the rule; without ignore, a task in a unit in the slice
// stays too, one elsewhere is placed.
func TestSystemdStickyIgnore(t *testing.T) {
	s := newSDEnv(t, sdbox.Options{})
	s.writeRules("cgresjo  *  batch.slice  ignore\ncgrecgtest  *  batch.slice\n")
	d := s.startDaemon(dopts{extra: s.busArgs()})

	// Sticky: the harness is the service's main process, marked before it
	// changes its uid.
	out := "/run/cgre-sticky.out"
	s.service(t, "cgre-sticky", fmt.Sprintf("exec %s -delay 1s -u %s >%s", harnessBin, uid(t, "cgrecgtest"), out))
	mainPID, err := s.box.Show("cgre-sticky.service", "MainPID")
	if err != nil {
		t.Fatal(err)
	}
	boxPID, _ := strconv.Atoi(mainPID)
	sticky := s.hostPID(t, boxPID)
	if got := rawAsk(t, s.socketPath(), request(sticky, 0)); got != reply {
		t.Fatalf("marking %d sticky: %q", sticky, got)
	}
	s.waitBoxFile(t, out, func(l string) bool { return l != "" }, 30*time.Second)

	in := func(name, user string) boxTask {
		out := "/run/" + name + ".out"
		if _, err := s.box.Run("systemd-run", "--quiet", "--unit="+name, "--slice=batch.slice", "sh", "-c",
			fmt.Sprintf("%s -u %s >%s & exec sleep 1000", harnessBin, uid(t, user), out)); err != nil {
			t.Fatal(err)
		}
		data := s.waitBoxFile(t, out, func(l string) bool { return l != "" }, 30*time.Second)
		p, _ := strconv.Atoi(strings.TrimSpace(data))
		return boxTask{box: p, host: s.hostPID(t, p)}
	}
	ignored := in("cgre-in", "cgresjo")
	inPlace := in("cgre-in2", "cgrecgtest")
	elsewhere := s.harnessTask(t, "cgre-out", "cgresjo")
	placed := s.harnessTask(t, "cgre-out2", "cgrecgtest")
	_, cg := scopeOf(t, "batch.slice", "cgrecgtest")
	s.waitBoxCgroup(t, placed.host, cg, 5*time.Second)
	time.Sleep(300 * time.Millisecond)
	for _, c := range []struct {
		name string
		pid  int
		want string
	}{
		{"sticky", sticky, "/system.slice/cgre-sticky.service"},
		{"ignore, in the slice", ignored.host, "/batch.slice/cgre-in.service"},
		{"in a unit of the slice", inPlace.host, "/batch.slice/cgre-in2.service"},
		{"ignore, elsewhere", elsewhere.host, "/system.slice/cgre-out.service"},
	} {
		if where, err := s.box.BoxCgroupOf(c.pid); err != nil || where != c.want {
			t.Errorf("%s: pid %d in %q (%v), want it left in %s", c.name, c.pid, where, err, c.want)
		}
	}
	st := d.status(t)
	// The BPF source drops a sticky process's events in the kernel: the
	// engine never sees them to skip.
	skipped := 1
	if eventsSource == "bpf" {
		skipped = 0
	}
	if counter(st, "sticky_skipped") < skipped || counter(st, "ignore") < 1 || counter(st, "in_place") < 1 || counter(st, "placed") != 1 {
		t.Errorf("--status:\n%s", st)
	}
}

// TestSystemdStartupScan: a task of a ruled user already running when the
// daemon starts is placed by the start-up scan.
func TestSystemdStartupScan(t *testing.T) {
	s := newSDEnv(t, sdbox.Options{})
	s.writeRules("cgresjo  *  batch.slice\n")
	task := s.harnessTask(t, "cgre-early", "cgresjo")
	d := s.startDaemon(dopts{extra: s.busArgs()})
	_, cg := scopeOf(t, "batch.slice", "cgresjo")
	s.waitBoxCgroup(t, task.host, cg, 5*time.Second)
	if st := d.status(t); counter(st, "startup_scan") != 1 {
		t.Errorf("--status:\n%s", st)
	}
}
