package proc

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// These tests read the live /proc. They only start and kill their own
// children.

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("integration test: needs root (run the test binary as root to read other tasks' exe/cwd)")
	}
}

var live = NewFS("/proc")

// startSleep starts a child `sleep` and kills and reaps it at cleanup.
func startSleep(t testing.TB, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if len(args) > 0 {
		cmd = exec.Command(args[0], args[1:]...)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", cmd.Args, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

func TestIntegrationTask(t *testing.T) {
	requireRoot(t)
	cmd := startSleep(t)
	pid := cmd.Process.Pid
	exe, err := os.Readlink(filepath.Join("/proc", itoaPid(pid), "exe"))
	if err != nil {
		t.Fatal(err)
	}
	// Poll: right after fork the child may still be the Go binary.
	var task Task
	deadline := time.Now().Add(5 * time.Second)
	for {
		task, err = taskWithProcess(live, pid)
		if err != nil {
			t.Fatal(err)
		}
		if task.Comm == "sleep" || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
		exe, _ = os.Readlink(filepath.Join("/proc", itoaPid(pid), "exe"))
	}
	want := Task{PID: pid, PPID: os.Getpid(), Comm: "sleep", Process: exe}
	if task != want {
		t.Errorf("Task = %+v, want %+v", task, want)
	}
	kids, err := live.Children(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(kids, pid) {
		t.Errorf("Children(self) = %v, missing %d", kids, pid)
	}
	th, err := live.Threads(os.Getpid())
	if err != nil || len(th) < 2 {
		t.Errorf("Threads(self) = %v, %v; a Go test has several threads", th, err)
	}
	lines, err := live.Cgroups(pid)
	if err != nil || len(lines) == 0 {
		t.Errorf("Cgroups = %v, %v", lines, err)
	}
}

func TestIntegrationScript(t *testing.T) {
	requireRoot(t)
	task := scriptWaiting(t, t.TempDir())
	t.Logf("script task: %+v", task)
}

// scriptWaiting runs a shell script that blocks on a read from its stdin and
// returns its Task while it blocks.
func scriptWaiting(t *testing.T, dir string) Task {
	t.Helper()
	script := filepath.Join(dir, "cgre-wait.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nread x\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("./cgre-wait.sh")
	cmd.Dir = dir
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		task, err := taskWithProcess(live, cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		// Comm changes early in execve, cmdline only when the new image
		// is set up: wait until the shell sleeps in its read (the daemon
		// reads after the kernel's EXEC event, sent when execve is done).
		if st, err := live.stat(getScratch(), cmd.Process.Pid); err == nil && st.State == 'S' && task.Comm == "cgre-wait.sh" {
			task, err = taskWithProcess(live, cmd.Process.Pid)
			if err != nil {
				t.Fatal(err)
			}
			// argv is "/bin/sh ./cgre-wait.sh": relative, resolved via cwd.
			if want, _ := filepath.EvalSymlinks(filepath.Join(dir, "cgre-wait.sh")); task.Process != want {
				t.Errorf("Process = %q, want %q", task.Process, want)
			}
			return task
		}
		if time.Now().After(deadline) {
			t.Fatalf("script never showed up: %+v", task)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestIntegrationGone(t *testing.T) {
	requireRoot(t)
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	// The pid was reaped; reuse within this instant would need a full
	// wrap-around of the pid space, and this only reads.
	if _, err := taskWithProcess(live, cmd.Process.Pid); !errors.Is(err, unix.ESRCH) {
		t.Errorf("Task(exited) err = %v, want ESRCH", err)
	}
}

func TestIntegrationExeEACCES(t *testing.T) {
	requireRoot(t)
	if _, err := os.Readlink("/proc/1/exe"); !errors.Is(err, unix.EACCES) {
		t.Skipf("readlink /proc/1/exe: %v; the EACCES fallback is only observable where it fails", err)
	}
	task, err := taskWithProcess(live, 1)
	if err != nil {
		t.Fatal(err)
	}
	if task.Process != task.Comm {
		t.Errorf("Process = %q, want comm %q (EACCES fallback)", task.Process, task.Comm)
	}
}

// TestIntegrationScanAll reads every task like the daemon's start-up scan:
// only ESRCH (a task that exited meanwhile) is an acceptable error.
func TestIntegrationScanAll(t *testing.T) {
	requireRoot(t)
	start := time.Now()
	pids, err := live.PIDs()
	if err != nil {
		t.Fatal(err)
	}
	var kernel, gone int
	for _, pid := range pids {
		task, err := taskWithProcess(live, pid)
		if errors.Is(err, unix.ESRCH) {
			gone++
			continue
		}
		if err != nil {
			t.Errorf("pid %d: %v", pid, err)
			continue
		}
		if _, err := live.Cgroups(pid); err != nil && !errors.Is(err, unix.ESRCH) {
			t.Errorf("pid %d: %v", pid, err)
		}
		if task.Kernel {
			kernel++
		}
		if task.Process == "" {
			t.Errorf("pid %d: empty process name: %+v", pid, task)
		}
	}
	t.Logf("scanned %d tasks (%d kernel threads, %d gone) with procname and cgroups in %v", len(pids), kernel, gone, time.Since(start))
	if kernel == 0 {
		t.Error("no kernel thread found; kthreadd at least should be")
	}
}

func itoaPid(pid int) string { return strconv.Itoa(pid) }

func BenchmarkTask(b *testing.B) {
	pid := os.Getpid()
	b.Run("withoutProcess", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := live.Task(pid); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("withProcess", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := taskWithProcess(live, pid); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cgroups", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := live.Cgroups(pid); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkScan is the daemon's start-up scan: every task, with procname
// and cgroups.
func BenchmarkScan(b *testing.B) {
	b.ReportAllocs()
	var n int
	for b.Loop() {
		pids, err := live.PIDs()
		if err != nil {
			b.Fatal(err)
		}
		n = len(pids)
		for _, pid := range pids {
			_, _ = taskWithProcess(live, pid)
			_, _ = live.Cgroups(pid)
		}
	}
	b.ReportMetric(float64(n), "tasks")
}

// TestIntegrationKernelThread: kthreadd (pid 2) is a kernel thread, this
// process is not, whether the kernel reports "Kthread:" in status or only
// PF_KTHREAD in stat.
func TestIntegrationKernelThread(t *testing.T) {
	k, err := live.Task(2)
	if err != nil {
		t.Skipf("pid 2 not visible here (a PID namespace?): %v", err)
	}
	if !k.Kernel || k.Comm != "kthreadd" {
		t.Errorf("pid 2: %+v, want the kernel thread kthreadd", k)
	}
	self, err := live.Task(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if self.Kernel {
		t.Errorf("this process reads as a kernel thread: %+v", self)
	}
	if rt, err := live.RealTime(os.Getpid()); err != nil || rt {
		t.Errorf("RealTime(self) = %v, %v; want false", rt, err)
	}
}

// TestIntegrationShortReadIsEOF: status, stat and cgroup, read with the
// short-read-ends-the-file rule, equal a read until EOF, even with a tiny
// starting buffer.
func TestIntegrationShortReadIsEOF(t *testing.T) {
	for _, name := range []string{"status", "stat", "cgroup"} {
		path := "/proc/self/" + name
		small := make([]byte, 7)
		got, err := readFile(path, &small)
		if err != nil {
			t.Fatal(err)
		}
		full := make([]byte, 7)
		want, err := readFileFull(path, &full)
		if err != nil {
			t.Fatal(err)
		}
		// status changes between reads (State, counters): compare every
		// line's field name, so that nothing is cut off, and the values
		// that cannot change here.
		g, w := string(got), string(want)
		if name == "status" {
			g, w = statusShape(g), statusShape(w)
		}
		if name == "stat" {
			g, w = g[:strings.Index(g, ")")], w[:strings.Index(w, ")")]
			if len(got) < 100 || got[len(got)-1] != '\n' {
				t.Errorf("stat read short: %q", got)
			}
		}
		if g != w {
			t.Errorf("%s: read %q, want %q", name, g, w)
		}
	}
}

// statusShape keeps the field names of a /proc/PID/status text, and the
// values of those that stay the same while a test runs.
func statusShape(s string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(s, "\n") {
		key, val, _ := strings.Cut(line, ":")
		b.WriteString(key)
		switch key {
		case "Name", "Tgid", "Pid", "PPid", "Uid", "Gid":
			b.WriteString(val)
		default:
			b.WriteString("\n")
		}
	}
	return b.String()
}

// TestIntegrationReadsDoNotAllocate: once a scratch has seen a task's comm
// and cgroup file, reading its ids, its cgroups and a thread's ids costs no
// allocation.
func TestIntegrationReadsDoNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	pid := os.Getpid()
	tids, err := live.Threads(pid)
	if err != nil || len(tids) < 2 {
		t.Fatalf("threads of self: %v, %v", tids, err)
	}
	for name, f := range map[string]func(){
		"Task":        func() { _, _ = live.Task(pid) },
		"Cgroups":     func() { _, _ = live.Cgroups(pid) },
		"ThreadCreds": func() { _, _, _ = live.ThreadCreds(pid, tids[1]) },
		"RealTime":    func() { _, _ = live.RealTime(pid) },
	} {
		f()
		if n := testing.AllocsPerRun(200, f); n != 0 {
			t.Errorf("%s: %v allocations per call", name, n)
		}
	}
}
