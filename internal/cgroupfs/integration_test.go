package cgroupfs

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cgrulesengd/cgrulesengd/internal/proc"
	"github.com/cgrulesengd/cgrulesengd/tests/syscount"
)

// Integration tests run on the real cgroup hierarchies. Rules they follow:
// every cgroup they make is under one "cgre-test-<random>" directory per
// hierarchy; they only move processes they started themselves (helper
// children: this test binary re-executed in "sleep" mode, or sleep), kill
// those by pid, and remove their directories in t.Cleanup even on failure.
// The memory hierarchy is never touched; cpuset only by the cpuset test.

const (
	envHelper = "CGRE_TEST_HELPER"  // "sleep": be a multi-threaded child that sleeps
	envPureV2 = "CGRE_TEST_PURE_V2" // set inside the unshare'd mount namespace
	envV2Dir  = "CGRE_TEST_V2_DIR"  // the test directory the pure-v2 run must use
	nonPID    = 4194305             // PID_MAX_LIMIT+1: can never name a task
	helperLen = 120 * time.Second   // helpers die on their own eventually
)

func TestMain(m *testing.M) {
	if os.Getenv(envHelper) == "sleep" {
		// Several locked threads, so that "all threads move" is tested.
		for i := 0; i < 3; i++ {
			go func() {
				runtime.LockOSThread()
				time.Sleep(helperLen)
			}()
		}
		time.Sleep(helperLen)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("integration test: needs root to create cgroups and move processes")
	}
}

var liveProc = proc.NewFS("/proc")

func discoverLive(t testing.TB) *Layout {
	t.Helper()
	l, err := Discover("/proc")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// startHelper starts this test binary as a multi-threaded sleeping child,
// killed (by pid) and reaped at cleanup, and also killed by the kernel if
// the test process dies first.
func startHelper(t testing.TB) int {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), envHelper+"=sleep")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	// Wait until the threads exist.
	deadline := time.Now().Add(5 * time.Second)
	for {
		th, _ := liveProc.Threads(cmd.Process.Pid)
		if len(th) >= 4 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	return cmd.Process.Pid
}

func randomName() string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return "cgre-test-" + hex.EncodeToString(b[:])
}

// testCgroup returns a fresh "<root>/cgre-test-<random>" path in h,
// created, and removed (with everything below it) at cleanup. Cleanup is
// registered before anything can be moved in, so helpers (registered
// later) are killed first.
func testCgroup(t testing.TB, m *Mover, h *Hierarchy, name string) string {
	t.Helper()
	root := h.Root
	if root == "" {
		root = "/"
	}
	p := filepath.Join(root, name)
	d, err := h.dir(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeTree(t, d) })
	if err := m.Create(h, p, nil); err != nil {
		t.Fatal(err)
	}
	return p
}

// removeTree removes the cgroup directory d and its descendants, deepest
// first, retrying briefly while killed tasks are still leaving.
func removeTree(t testing.TB, d string) {
	if !strings.Contains(filepath.Base(d), "cgre-test-") {
		t.Errorf("refusing to remove %s: not a test cgroup", d)
		return
	}
	var dirs []string
	_ = filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
		if err == nil && e.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	slices.Reverse(dirs)
	for _, p := range dirs {
		var err error
		for i := 0; i < 50; i++ {
			if err = unix.Rmdir(p); err == nil || errors.Is(err, unix.ENOENT) {
				err = nil
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			t.Errorf("cleanup: rmdir %s: %v", p, err)
		}
	}
}

// checkIn verifies that every thread of pid is in path in h.
func checkIn(t testing.TB, l *Layout, h *Hierarchy, pid int, want string) {
	t.Helper()
	tids, err := liveProc.Threads(pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, tid := range tids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/cgroup", pid, tid))
		if err != nil {
			t.Fatal(err)
		}
		tl := parseLines(t, b)
		got, ok := l.TaskPath(h, tl)
		if !ok || got != want {
			t.Errorf("thread %d of %d in %s:%q (ok=%v), want %q", tid, pid, h.Name(), got, ok, want)
		}
	}
	if len(tids) < 2 {
		t.Errorf("helper %d has %d threads; want several", pid, len(tids))
	}
}

func parseLines(t testing.TB, b []byte) []proc.CgroupLine {
	t.Helper()
	var out []proc.CgroupLine
	for _, ln := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(ln, ":", 3)
		if len(parts) != 3 {
			t.Fatalf("bad cgroup line %q", ln)
		}
		id, _ := strconv.Atoi(parts[0])
		var ctrls []string
		if parts[1] != "" {
			ctrls = strings.Split(parts[1], ",")
		}
		out = append(out, proc.CgroupLine{ID: id, Controllers: ctrls, Path: parts[2]})
	}
	return out
}

func TestIntegrationDiscover(t *testing.T) {
	requireRoot(t)
	l := discoverLive(t)
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	hasV1 := strings.Contains(string(mi), " - cgroup ")
	hasV2 := strings.Contains(string(mi), " - cgroup2 ")
	want := map[[2]bool]string{{true, true}: "hybrid", {true, false}: "v1", {false, true}: "v2", {false, false}: "none"}[[2]bool{hasV1, hasV2}]
	if got := l.Mode(); got != want {
		t.Errorf("Mode() = %q, want %q", got, want)
	}
	t.Logf("mode %s, controllers %v", l.Mode(), l.Controllers())
	self, err := liveProc.Cgroups(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	m := NewMover()
	for _, h := range l.Hierarchies {
		var st unix.Statfs_t
		if err := unix.Statfs(h.Mountpoint, &st); err != nil {
			t.Errorf("%s: %v", h.Mountpoint, err)
			continue
		}
		magic := map[Version]int64{V1: unix.CGROUP_SUPER_MAGIC, V2: unix.CGROUP2_SUPER_MAGIC}[h.Version]
		if st.Type != magic {
			t.Errorf("%s: fs magic %#x, want %#x", h.Mountpoint, st.Type, magic)
		}
		p, ok := l.TaskPath(h, self)
		if !ok {
			t.Errorf("%s: no line for us in /proc/self/cgroup", h.Name())
			continue
		}
		if !m.Exists(h, p) {
			t.Errorf("%s: our own cgroup %q does not exist", h.Name(), p)
		}
		t.Logf("%-14s v%d %-28s root=%s self=%s", h.Name(), h.Version, h.Mountpoint, h.Root, p)
	}
}

// moveAndCheck creates dest (relative to a fresh test cgroup) in h, moves a
// helper there and verifies all its threads moved.
func moveAndCheck(t *testing.T, l *Layout, h *Hierarchy, controllers []string) {
	base := randomName()
	m := NewMover(WithCgroupRoot("/" + base))
	top := testCgroup(t, m, h, base)
	dest := top + "/default"
	err := m.Create(h, dest, controllers)
	if err != nil && !errors.Is(err, ErrControllers) {
		t.Fatal(err)
	}
	if err != nil {
		t.Logf("Create(%s, %v): %v", dest, controllers, err)
	}
	if !m.Exists(h, dest) {
		t.Fatalf("%s not created", dest)
	}
	pid := startHelper(t)
	start := time.Now()
	if err := m.Move(h, dest, pid); err != nil {
		t.Fatal(err)
	}
	t.Logf("first Move into %s:%s took %v", h.Name(), dest, time.Since(start))
	checkIn(t, l, h, pid, dest)
	// And back up one level, through the cached handle path too.
	if err := m.Move(h, top, pid); err != nil {
		t.Fatal(err)
	}
	checkIn(t, l, h, pid, top)
}

func TestIntegrationMoveV1(t *testing.T) {
	requireRoot(t)
	l := discoverLive(t)
	hs := l.Resolve("cpu")
	if len(hs) != 1 || hs[0].Version != V1 {
		t.Skipf("no v1 cpu hierarchy (mode %s)", l.Mode())
	}
	moveAndCheck(t, l, hs[0], []string{"cpu"})
}

func TestIntegrationMoveV2(t *testing.T) {
	requireRoot(t)
	l := discoverLive(t)
	if l.Unified == nil {
		t.Skip("no cgroup2 mount")
	}
	moveAndCheck(t, l, l.Unified, l.Unified.Controllers)
}

func TestIntegrationCreateV2Controllers(t *testing.T) {
	requireRoot(t)
	l := discoverLive(t)
	h := l.Unified
	if h == nil || len(h.Controllers) == 0 {
		t.Skip("no cgroup2 mount with controllers")
	}
	base := randomName()
	m := NewMover(WithCgroupRoot("/" + base))
	top := testCgroup(t, m, h, base)
	ctl := h.Controllers[0]
	err := m.Create(h, top+"/a/b", []string{ctl})
	// The test cgroup's own cgroup.controllers is what the root enables
	// for its children; the test must not change the root.
	avail, _ := hasToken(filepath.Join(h.Mountpoint, top, "cgroup.controllers"), ctl)
	if avail {
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		for _, p := range []string{top, top + "/a"} {
			if on, _ := hasToken(filepath.Join(h.Mountpoint, p, "cgroup.subtree_control"), ctl); !on {
				t.Errorf("%s not enabled in %s", ctl, p)
			}
		}
	} else {
		var ce *ControllerError
		if !errors.As(err, &ce) || len(ce.Failures) != 1 || ce.Failures[0].Cgroup != top || !errors.Is(ce.Failures[0].Err, ErrNotAvailable) {
			t.Fatalf("Create: %v; want %s reported unavailable at %s", err, ctl, top)
		}
		t.Logf("as expected on this machine: %v", err)
	}
	if !m.Exists(h, top+"/a/b") {
		t.Error("directory not created")
	}
}

func TestIntegrationCpuset(t *testing.T) {
	requireRoot(t)
	l := discoverLive(t)
	hs := l.Resolve("cpuset")
	if len(hs) != 1 || hs[0].Version != V1 {
		t.Skip("no v1 cpuset hierarchy")
	}
	h := hs[0]
	m := NewMover()
	top := testCgroup(t, m, h, randomName())
	dest := top + "/a/b"
	if err := m.Create(h, dest, []string{"cpuset"}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
		b, err := os.ReadFile(filepath.Join(h.Mountpoint, dest, f))
		if err != nil || len(strings.TrimSpace(string(b))) == 0 {
			t.Errorf("%s of %s = %q, %v; want initialised", f, dest, b, err)
		}
	}
	pid := startHelper(t)
	if err := m.Move(h, dest, pid); err != nil {
		t.Fatal(err)
	}
	checkIn(t, l, h, pid, dest)
}

// cpuAndUnified are the v1 cpu hierarchy and the cgroup2 one, those of
// them that are mounted.
func cpuAndUnified(l *Layout) []*Hierarchy {
	var hs []*Hierarchy
	if c := l.Resolve("cpu"); len(c) == 1 && c[0].Version == V1 {
		hs = append(hs, c[0])
	}
	if l.Unified != nil {
		hs = append(hs, l.Unified)
	}
	return hs
}

func TestIntegrationMoveErrors(t *testing.T) {
	requireRoot(t)
	l := discoverLive(t)
	for _, h := range cpuAndUnified(l) {
		t.Run(h.Name(), func(t *testing.T) {
			m := NewMover()
			top := testCgroup(t, m, h, randomName())
			if err := m.Move(h, top, nonPID); !errors.Is(err, unix.ESRCH) {
				t.Errorf("pid that cannot exist: err = %v, want ESRCH", err)
			}
			// An exited, reaped child. Its pid could only be reused
			// after a wrap-around of the whole pid space in between.
			cmd := exec.Command("true")
			if err := cmd.Run(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", cmd.Process.Pid)); err == nil {
				t.Skip("pid reused already; not moving a stranger")
			}
			if err := m.Move(h, top, cmd.Process.Pid); !errors.Is(err, unix.ESRCH) {
				t.Errorf("exited pid: err = %v, want ESRCH", err)
			}
			err := m.Move(h, top+"/missing", nonPID)
			if !errors.Is(err, fs.ErrNotExist) || !errors.Is(err, unix.ENOENT) {
				t.Errorf("missing cgroup: err = %v, want ENOENT", err)
			}
		})
	}
}

// TestIntegrationMoveRemovedCgroup: the kernel fails a write through a
// descriptor of a removed cgroup with ENODEV. A cgroup removed and created
// again under its name is reached through a fresh descriptor; one removed
// for good is reported as missing (ENOENT), and no descriptor of it stays
// open.
func TestIntegrationMoveRemovedCgroup(t *testing.T) {
	requireRoot(t)
	l := discoverLive(t)
	for _, h := range cpuAndUnified(l) {
		t.Run(h.Name(), func(t *testing.T) {
			m := NewMover()
			top := testCgroup(t, m, h, randomName())
			x := top + "/x"
			dx, _ := h.dir(x)
			if err := m.Create(h, x, nil); err != nil {
				t.Fatal(err)
			}
			pid := startHelper(t)
			if err := m.Move(h, x, pid); err != nil {
				t.Fatal(err)
			}
			if err := m.Move(h, top, pid); err != nil {
				t.Fatal(err)
			}
			if n := openProcsFiles(t, dx); n != 1 {
				t.Fatalf("%d descriptors open on %s, want 1 (cached)", n, dx)
			}
			// Removed and created again: the cached descriptor is stale.
			if err := unix.Rmdir(dx); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(dx, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := m.Move(h, x, pid); err != nil {
				t.Fatalf("move into the re-created cgroup: %v", err)
			}
			checkIn(t, l, h, pid, x)
			if n := openProcsFiles(t, dx); n != 1 {
				t.Errorf("%d descriptors open on %s after the reopen, want 1", n, dx)
			}
			// Removed for good.
			if err := m.Move(h, top, pid); err != nil {
				t.Fatal(err)
			}
			if err := unix.Rmdir(dx); err != nil {
				t.Fatal(err)
			}
			err := m.Move(h, x, pid)
			if !errors.Is(err, unix.ENOENT) || !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("move into a removed cgroup: err = %v, want ENOENT", err)
			}
			if n := openProcsFiles(t, dx); n != 0 {
				t.Errorf("%d descriptors still open on the removed %s", n, dx)
			}
			if err := m.Close(); err != nil {
				t.Fatal(err)
			}
			if n := m.OpenFiles(); n != 0 {
				t.Errorf("%d descriptors open after Close", n)
			}
		})
	}
}

// TestIntegrationMoveEINVAL moves a SCHED_FIFO child into a fresh v1 cpu
// cgroup, whose cpu.rt_runtime_us is 0: the kernel refuses with EINVAL, and
// Move returns it at once (retrying is the engine's business: containerd
// retried 5 x 30 ms here, on whatever goroutine called it).
func TestIntegrationMoveEINVAL(t *testing.T) {
	requireRoot(t)
	l := discoverLive(t)
	hs := l.Resolve("cpu")
	if len(hs) != 1 || hs[0].Version != V1 {
		t.Skip("no v1 cpu hierarchy")
	}
	h := hs[0]
	if _, err := os.Stat(filepath.Join(h.Mountpoint, "cpu.rt_runtime_us")); err != nil {
		t.Skip("no CONFIG_RT_GROUP_SCHED")
	}
	chrt, err := exec.LookPath("chrt")
	if err != nil {
		t.Skip("chrt not installed")
	}
	m := NewMover()
	top := testCgroup(t, m, h, randomName())
	cmd := exec.Command(chrt, "-f", "1", "sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(5 * time.Second)
	for {
		task, err := liveProc.Task(cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		if task.Comm == "sleep" {
			if rt, err := liveProc.RealTime(cmd.Process.Pid); err != nil || !rt {
				t.Fatalf("chrt -f did not make an RT task: %+v", task)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("child never became sleep")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Counted on this (locked) thread: one write (the kernel may restart
	// it once after a signal: the attach waits for an RCU grace period),
	// no retry, no sleep. containerd retried 5 times, 30 ms apart.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	writes, err := syscount.ThreadFilter(0, false, fmt.Sprintf("id == %d", unix.SYS_WRITE))
	if err != nil {
		t.Fatal(err)
	}
	defer writes.Close()
	sleeps, err := syscount.ThreadFilter(0, false, fmt.Sprintf("id == %d || id == %d", unix.SYS_NANOSLEEP, unix.SYS_CLOCK_NANOSLEEP))
	if err != nil {
		t.Fatal(err)
	}
	defer sleeps.Close()
	start := time.Now()
	err = m.Move(h, top, cmd.Process.Pid)
	took := time.Since(start)
	nw, err1 := writes.Count()
	ns, err2 := sleeps.Count()
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(err, unix.EINVAL) {
		t.Fatalf("err = %v, want EINVAL", err)
	}
	t.Logf("EINVAL after %v, %d write calls: %v", took, nw, err)
	if nw > 2 || ns != 0 {
		t.Errorf("Move made %d write and %d sleep calls: it must not retry or wait", nw, ns)
	}
	if n := m.OpenFiles(); n != 1 {
		t.Errorf("%d descriptors open after a refused move, want 1 (kept for the next move)", n)
	}
}

// TestIntegrationPureV2 re-runs TestIntegrationInsidePureV2 in a private
// mount namespace where only a cgroup2 hierarchy is mounted on
// /sys/fs/cgroup. The proc connector and the cgroup hierarchies themselves
// are shared with the host: the cgroup2 mount is the same hierarchy.
func TestIntegrationPureV2(t *testing.T) {
	requireRoot(t)
	if os.Getenv(envPureV2) != "" {
		t.Skip("already inside")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("unshare not installed")
	}
	l := discoverLive(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	name := randomName()
	// If the inner run dies before its cleanup, remove its directory from
	// the host's view of the same cgroup2 hierarchy.
	if l.Unified != nil && l.Unified.Root == "/" {
		d := filepath.Join(l.Unified.Mountpoint, name)
		t.Cleanup(func() {
			if _, err := os.Stat(d); err == nil {
				t.Logf("inner run left %s behind; removing", d)
				removeTree(t, d)
			}
		})
	}
	script := `mount --make-rprivate / ; umount -R /sys/fs/cgroup 2>/dev/null || umount -l /sys/fs/cgroup; mount -t cgroup2 none /sys/fs/cgroup && exec "$0" -test.run='^TestIntegrationInsidePureV2$' -test.v`
	cmd := exec.Command(unshare, "-m", "sh", "-c", script, exe)
	cmd.Env = append(os.Environ(), envPureV2+"=1", envV2Dir+"="+name)
	out, err := cmd.CombinedOutput()
	t.Logf("inner run:\n%s", out)
	if err != nil {
		t.Fatalf("inner run: %v", err)
	}
	if !strings.Contains(string(out), "--- PASS: TestIntegrationInsidePureV2") {
		t.Fatal("inner test did not pass")
	}
}

func TestIntegrationInsidePureV2(t *testing.T) {
	if os.Getenv(envPureV2) == "" {
		t.Skip("runs only inside TestIntegrationPureV2's mount namespace")
	}
	requireRoot(t)
	l := discoverLive(t)
	if l.Mode() != "v2" || l.Unified == nil || l.Unified.Mountpoint != "/sys/fs/cgroup" {
		t.Fatalf("mode %s, unified %+v; want pure v2 on /sys/fs/cgroup", l.Mode(), l.Unified)
	}
	for _, c := range []string{"cpu", "memory", "io", "pids", "unified", "*"} {
		if r := l.Resolve(c); len(r) != 1 || r[0] != l.Unified {
			t.Errorf("Resolve(%q) = %v, want the unified hierarchy", c, r)
		}
	}
	if cs := l.Controllers(); !slices.Contains(cs, "cpu") || !slices.Contains(cs, "unified") {
		t.Errorf("Controllers() = %v", cs)
	}
	h := l.Unified
	name := os.Getenv(envV2Dir)
	if name == "" {
		name = randomName()
	}
	m := NewMover(WithCgroupRoot("/" + name))
	top := testCgroup(t, m, h, name)
	dest := top + "/x"
	if err := m.Create(h, dest, []string{"cpu"}); err != nil && !errors.Is(err, ErrControllers) {
		t.Fatal(err)
	} else if err != nil {
		t.Logf("Create: %v (moves still work)", err)
	}
	pid := startHelper(t)
	if err := m.Move(h, dest, pid); err != nil {
		t.Fatal(err)
	}
	checkIn(t, l, h, pid, dest)
	if err := m.Move(h, dest, nonPID); !errors.Is(err, unix.ESRCH) {
		t.Errorf("err = %v, want ESRCH", err)
	}
}

// BenchmarkIntegrationMove moves a helper back and forth between two test
// cgroups: through Mover (a write on a cached descriptor) and with a raw
// open+write+close, to show what caching the descriptor saves.
func BenchmarkIntegrationMove(b *testing.B) {
	requireRoot(b)
	l := discoverLive(b)
	var hs []*Hierarchy
	if c := l.Resolve("cpu"); len(c) == 1 {
		hs = append(hs, c[0])
	}
	if l.Unified != nil && l.Unified.Version == V2 && (len(hs) == 0 || hs[0] != l.Unified) {
		hs = append(hs, l.Unified)
	}
	for _, h := range hs {
		m := NewMover()
		top := testCgroup(b, m, h, randomName())
		a, c := top+"/a", top+"/b"
		for _, p := range []string{a, c} {
			if err := m.Create(h, p, nil); err != nil {
				b.Fatal(err)
			}
		}
		pid := startHelper(b)
		b.Run(h.Name()+"/mover", func(b *testing.B) {
			i := 0
			for b.Loop() {
				p := a
				if i%2 == 1 {
					p = c
				}
				i++
				if err := m.Move(h, p, pid); err != nil {
					b.Fatal(err)
				}
			}
		})
		da, _ := h.dir(a)
		dc, _ := h.dir(c)
		data := []byte(strconv.Itoa(pid))
		b.Run(h.Name()+"/raw", func(b *testing.B) {
			i := 0
			for b.Loop() {
				d := da
				if i%2 == 1 {
					d = dc
				}
				i++
				fd, err := unix.Open(d+"/cgroup.procs", unix.O_WRONLY|unix.O_CLOEXEC, 0)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := unix.Write(fd, data); err != nil {
					b.Fatal(err)
				}
				unix.Close(fd)
			}
		})
		// The same cgroup every time: no migration, so this is the
		// pure per-call cost (the kernel returns early).
		b.Run(h.Name()+"/mover-same", func(b *testing.B) {
			for b.Loop() {
				if err := m.Move(h, a, pid); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(h.Name()+"/raw-same", func(b *testing.B) {
			for b.Loop() {
				fd, err := unix.Open(da+"/cgroup.procs", unix.O_WRONLY|unix.O_CLOEXEC, 0)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := unix.Write(fd, data); err != nil {
					b.Fatal(err)
				}
				unix.Close(fd)
			}
		})
	}
}
