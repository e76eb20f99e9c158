package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cgrulesengd/cgrulesengd/internal/bpfevents"
)

// requireBPFRun skips a test of the BPF source outside a run with it
// (CGRE_E2E_EVENTS=bpf; make test-e2e's second run).
func requireBPFRun(t *testing.T) {
	t.Helper()
	if eventsSource != "bpf" {
		t.Skipf("a test of the BPF event source: it runs with %s=bpf (make test-e2e's second run)", eventsEnv)
	}
}

// TestEventsFallback: with --events=auto the daemon falls back to the proc
// connector for each reason the BPF source cannot run, says why once, and
// moves a ruled task; with --events=bpf it refuses to start, naming the
// reason. The reasons are forced: no kernel BTF (--bpf-kernel-btf names a
// file that is not BTF), no privilege (the daemon without CAP_BPF,
// CAP_PERFMON and CAP_SYS_ADMIN), a refused program (a seccomp filter
// refuses bpf(BPF_PROG_LOAD) with EPERM, as kernel lockdown or a security
// module would).
func TestEventsFallback(t *testing.T) {
	requireDaemon(t)
	requireBPFRun(t)
	requireTool(t, "setpriv", "util-linux")
	if out, err := exec.Command("/usr/bin/python3", "-c", "import seccomp").CombinedOutput(); err != nil {
		t.Fatalf("python3's seccomp module: %v: %s: install the Debian package python3-seccomp (.ci/run does)", err, out)
	}
	identities(t)
	e := newEnv(t, []string{"cpu"}, "dest")
	e.writeRules("cgresjo  cpu  dest\n")
	badBTF := filepath.Join(e.dir, "vmlinux")
	if err := os.WriteFile(badBTF, []byte("not BTF\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	refuse := filepath.Join(moduleDir, "tests", "e2e", "testdata", "refuse_bpf.py")
	for _, c := range []struct {
		name   string
		reason bpfevents.Reason
		extra  []string
		wrap   []string
	}{
		{"no BTF", bpfevents.ReasonNoBTF, []string{"--bpf-kernel-btf", badBTF}, nil},
		{"no CAP_BPF", bpfevents.ReasonNoPrivilege, nil, []string{"setpriv", "--bounding-set=-bpf,-perfmon,-sys_admin", "--inh-caps=-all", "--"}},
		{"a refused program", bpfevents.ReasonRefused, nil, []string{"/usr/bin/python3", refuse, "5", "--"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := *e
			e.t = t
			e.dir = t.TempDir() // a log of this daemon's own
			d := e.startDaemon(dopts{extra: append([]string{"--events=auto"}, c.extra...), wrap: c.wrap})
			h := e.harness(hopts{user: "cgresjo"})
			waitCgroup(t, h.pid, "cpu", e.cg("dest"), 2*time.Second)
			log := d.log()
			why := regexp.MustCompile(`(?m)^.*level=warning msg="kernel events: using the proc connector: .*$`).FindAllString(log, -1)
			if len(why) != 1 || !strings.Contains(why[0], "("+c.reason.String()+")") {
				t.Errorf("want one warning saying the proc connector runs because of %q, got %q", c.reason, why)
			}
			if !strings.Contains(log, `msg="kernel events: proc connector"`) {
				t.Errorf("the log does not say the proc connector runs")
			}
			st := e.status(t)
			if !strings.Contains(st, "event source: netlink (the proc connector, as BPF cannot run here: "+c.reason.String()+")") {
				t.Errorf("--status does not show the fallback and its reason:\n%s", st)
			}
			d.stop()

			// --events=bpf: no start, the reason said.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			args := append(e.daemonArgs(filepath.Join(e.dir, "bpf.pid"), "-", "--events=bpf"), c.extra...)
			argv := append(append(append([]string{}, c.wrap...), daemonBin, "-n"), args...)
			cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
			out, err := cmd.CombinedOutput()
			if exitCode(err) != 1 || !strings.Contains(string(out), "--events=bpf") || !strings.Contains(string(out), c.reason.String()) {
				t.Errorf("--events=bpf where the source cannot run: %v, want exit status 1 naming %q:\n%s", err, c.reason, out)
			}
		})
	}
}

// status is the environment's daemon's --status report.
func (e *env) status(t *testing.T) string {
	t.Helper()
	out, err := exec.Command(daemonBin, "--status", "--status-socket", e.statusPath()).CombinedOutput()
	if err != nil {
		t.Fatalf("--status: %v\n%s", err, out)
	}
	return string(out)
}

// TestIdleDaemonSleeps (issue 21): with the BPF source and no event a rule
// could act on, no thread of the daemon wakes up: no timer, no ticker, no
// poll. (With the proc connector the daemon hears every process event of
// this shared machine, so it is never idle here.)
func TestIdleDaemonSleeps(t *testing.T) {
	requireDaemon(t)
	requireBPFRun(t)
	identities(t)
	e := newEnv(t, []string{"cpu"}, "dest")
	e.writeRules("cgresjo  cpu  dest\n")
	d := e.startDaemon(dopts{})
	// A move first: the engine's timers that follow it (the hot table's
	// expiry) must stop again once it is done.
	h := e.harness(hopts{user: "cgresjo"})
	waitCgroup(t, h.pid, "cpu", e.cg("dest"), 2*time.Second)
	h.stop()
	time.Sleep(7 * time.Second) // HotWindow (5 s) and a sweep
	before, err := threadSwitches(d.pid)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second)
	after, err := threadSwitches(d.pid)
	if err != nil {
		t.Fatal(err)
	}
	var woke []string
	total := uint64(0)
	for tid, n := range after {
		if n > before[tid] {
			woke = append(woke, fmt.Sprintf("thread %d: %d", tid, n-before[tid]))
			total += n - before[tid]
		}
	}
	t.Logf("context switches of the daemon's %d threads in 5 s: %d %v", len(after), total, woke)
	if total > 1 {
		t.Errorf("an idle daemon woke up %d times in 5 s (%v)", total, woke)
	}
}

// threadSwitches reads the context switches (voluntary and not) of each
// thread of pid.
func threadSwitches(pid int) (map[int]uint64, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[int]uint64{}
	for _, ent := range ents {
		b, err := os.ReadFile(filepath.Join(dir, ent.Name(), "status"))
		if err != nil {
			continue // the thread ended
		}
		var tid int
		fmt.Sscan(ent.Name(), &tid)
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "voluntary_ctxt_switches:"); ok {
				var n uint64
				fmt.Sscan(strings.TrimSpace(v), &n)
				out[tid] += n
			} else if v, ok := strings.CutPrefix(l, "nonvoluntary_ctxt_switches:"); ok {
				var n uint64
				fmt.Sscan(strings.TrimSpace(v), &n)
				out[tid] += n
			}
		}
	}
	return out, nil
}
