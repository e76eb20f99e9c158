package e2e

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const skipMessage = "end-to-end tests need root: they create users, groups and cgroups and run the daemon against the kernel"

// Built once by TestMain.
var (
	daemonBin  string // cgrulesengd
	harnessBin string // tests/setuid
	daemonErr  error  // why the daemon could not be built
	harnessErr error  // why the harness could not be built
	toolDir    string // the C tools of tests/tools, as cgre-NAME
	toolErr    error  // why they could not be built
	toolSkip   string // why they cannot be built here (no gcc): tests skip
	moduleDir  string
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	if p := os.Getenv(scrapeHelperEnv); p != "" {
		return scrapeHelper(p) // a helper process of TestStatusAndMetrics
	}
	if spec := os.Getenv(floodHelperEnv); spec != "" {
		return floodHelper(spec) // a helper process of the flood tests
	}
	flag.Parse()
	if os.Geteuid() != 0 {
		return m.Run() // every test skips
	}

	// One run at a time on this machine: runs share the users' names.
	lock, err := os.OpenFile("/run/lock/cgre-e2e.lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: lock: %v\n", err)
		return 1
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: another end-to-end run holds /run/lock/cgre-e2e.lock; waiting")
		if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: lock: %v\n", err)
			return 1
		}
	}

	removeLeftovers(func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "e2e: leftover from an earlier run: "+format+"\n", args...)
	})

	skip, err := checkEvents(os.Getenv(eventsEnv))
	switch {
	case err != nil:
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	case skip != "":
		fmt.Fprintf(os.Stderr, "e2e: %s\n", skip)
		return 0
	case eventsSource != "":
		fmt.Fprintf(os.Stderr, "e2e: every daemon runs with --events=%s\n", eventsSource)
	}

	moduleDir, err = findModuleRoot()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	tmp, err := os.MkdirTemp("", "cgre-e2e-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	// The harness is exec'd by root before it changes its uid, but -exec
	// programs and the daemon need nothing from this directory afterwards.
	harnessBin = filepath.Join(tmp, "setuid")
	harnessErr = goBuild(harnessBin, "./tests/setuid")
	daemonBin = filepath.Join(tmp, "cgrulesengd")
	daemonErr = goBuild(daemonBin, "./cmd/cgrulesengd")
	if other := os.Getenv("CGRE_E2E_DAEMON"); other != "" {
		// An A/B measurement: another build of the daemon (an older
		// commit's, say) under the same tests and benchmarks.
		daemonBin, daemonErr = other, nil
		fmt.Fprintf(os.Stderr, "e2e: CGRE_E2E_DAEMON: testing %s, not the tree's daemon\n", other)
	}
	if harnessErr != nil {
		fmt.Fprintf(os.Stderr, "e2e: building the harness: %v\n", harnessErr)
	}
	if daemonErr != nil {
		fmt.Fprintf(os.Stderr, "e2e: building the daemon: %v\n", daemonErr)
	}
	toolDir = tmp
	toolSkip, toolErr = buildTools(tmp)
	if toolErr != nil {
		fmt.Fprintf(os.Stderr, "e2e: building the C tools: %v\n", toolErr)
	}

	code := m.Run()
	if packageDir != "" {
		os.RemoveAll(packageDir)
	}

	// Whatever a test failed to remove (its cleanup reports it too).
	left := 0
	removeLeftovers(func(format string, args ...any) {
		left++
		fmt.Fprintf(os.Stderr, "e2e: left behind by this run: "+format+"\n", args...)
	})
	if left > 0 && code == 0 {
		code = 1
	}
	return code
}

func findModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(data, []byte("module github.com/cgrulesengd/cgrulesengd")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cannot find the module root (go.mod of github.com/cgrulesengd/cgrulesengd) above the working directory")
		}
		dir = parent
	}
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	// `go test` sets GOROOT for the test binary; /usr/local/go is where
	// this project's machines keep Go when PATH lacks it.
	root := os.Getenv("GOROOT")
	if root == "" {
		root = "/usr/local/go"
	}
	p := filepath.Join(root, "bin", "go")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return "go"
}

func goBuild(out, pkg string) error {
	cmd := exec.Command(goTool(), "build", "-o", out, pkg)
	cmd.Dir = moduleDir
	var buf bytes.Buffer
	cmd.Stdout = &buf
	cmd.Stderr = &buf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, buf.String())
	}
	return nil
}

// The C tools of tests/tools: Go cannot fork without exec, and the
// fork-race tests need forks at precise moments. Each NAME.c is built as
// cgre-NAME (the prefix lets the leftover cleanup recognise them).
var toolNames = []string{"escape", "storm", "latency", "floor", "burst", "sticky"}

// buildTools compiles the C tools into dir with gcc -O2 -Wall. Without
// gcc it returns a reason to skip; a failed compilation is an error.
func buildTools(dir string) (skip string, err error) {
	gcc, lerr := exec.LookPath("gcc")
	if lerr != nil {
		return "this test needs gcc to build the C tools of tests/tools (Go cannot fork without exec): gcc not found in PATH", nil
	}
	for _, n := range toolNames {
		cmd := exec.Command(gcc, "-O2", "-Wall", "-o", filepath.Join(dir, "cgre-"+n), filepath.Join("tests", "tools", n+".c"))
		cmd.Dir = moduleDir
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("%v: %v\n%s", cmd.Args, err, out)
		}
		if len(out) > 0 {
			fmt.Fprintf(os.Stderr, "e2e: %v:\n%s", cmd.Args, out)
		}
	}
	return "", nil
}

// requireTools skips the test when gcc is missing and fails it when the C
// tools did not build.
func requireTools(t testing.TB) {
	t.Helper()
	requireRoot(t)
	if toolSkip != "" {
		t.Skip(toolSkip)
	}
	if toolErr != nil {
		t.Fatalf("the C tools did not build: %v", toolErr)
	}
}

// toolPath is the path of the built C tool cgre-name.
func toolPath(name string) string {
	return filepath.Join(toolDir, "cgre-"+name)
}

// isSuiteExe reports whether exe (a base name) is one of the programs the
// suite runs in its test cgroups: the harness, what it execs, the C tools.
func isSuiteExe(exe string) bool {
	switch exe {
	case "setuid", "sleep":
		return true
	}
	for _, n := range toolNames {
		if exe == "cgre-"+n {
			return true
		}
	}
	return false
}

// requireRoot skips the test unless it runs as root, and fails it when the
// harness could not be built.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip(skipMessage)
	}
	if harnessErr != nil {
		t.Fatalf("the setuid harness did not build: %v", harnessErr)
	}
}

// requireDaemon fails the test when the daemon could not be built.
func requireDaemon(t testing.TB) {
	t.Helper()
	requireRoot(t)
	if daemonErr != nil {
		t.Fatalf("the daemon did not build: %v", daemonErr)
	}
}

// The fixed identities of the suite. Leftovers are removed by exact name
// only, never by prefix, so that nothing else that happens to start with
// "cgre" (libcgroup's "cgred" group, say) is ever touched.
var (
	suiteUsers  = []string{"cgresjo", "cgrecgtest", "cgreroot", "cgrenobody", "cgreother"}
	suiteGroups = []string{"cgrecgroup", "cgreroot", "cgreusers", "cgreother"}
)

const testDirPrefix = "cgre-e2e-"

// removeLeftovers removes what an earlier (crashed) run left: orphaned
// daemons confined to a /cgre-e2e-* root, the suite's harness processes in
// /cgre-e2e-* cgroups, those cgroups, and the suite's users and groups.
// report is called once for each thing found.
func removeLeftovers(report func(format string, args ...any)) {
	var dirs []string
	for _, mnt := range cgroupMounts() {
		entries, err := os.ReadDir(mnt.dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if e.IsDir() && strings.HasPrefix(e.Name(), testDirPrefix) {
				dirs = append(dirs, filepath.Join(mnt.dir, e.Name()))
			}
		}
	}

	// Orphaned daemons (background mode, or a run killed before its
	// cleanup): only cgrulesengd processes re-parented to init whose
	// --cgroup-root is a test directory.
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if exeBase(pid) != "cgrulesengd" || parentPid(pid) != 1 {
			continue
		}
		args := cmdline(pid)
		for i, a := range args {
			root := ""
			if a == "--cgroup-root" && i+1 < len(args) {
				root = args[i+1]
			} else if strings.HasPrefix(a, "--cgroup-root=") {
				root = strings.TrimPrefix(a, "--cgroup-root=")
			}
			if strings.HasPrefix(root, "/"+testDirPrefix) {
				report("daemon pid %d (%s): SIGTERM", pid, strings.Join(args, " "))
				killAndWaitGone(pid, syscall.SIGTERM, 5*time.Second)
				break
			}
		}
	}

	// The suite's processes (the harness, sleep when it exec'd, the C
	// tools and their descendants) in the test directories. A fork storm
	// may still create some while its leader is killed: a few passes.
	for _, d := range dirs {
		foreign := map[int]bool{}
		for pass := 0; pass < 20; pass++ {
			killed := 0
			for _, pid := range pidsBelow(d) {
				if exe := exeBase(pid); isSuiteExe(exe) {
					report("suite process pid %d (%s) in %s: SIGKILL", pid, exe, d)
					_ = syscall.Kill(pid, syscall.SIGKILL)
					killed++
				} else if !foreign[pid] {
					foreign[pid] = true
					report("pid %d (%s) in %s is not the suite's: left alone", pid, exe, d)
				}
			}
			if killed == 0 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for _, d := range dirs {
		report("cgroup %s: removing", d)
		if err := removeCgroupTree(d, 2*time.Second); err != nil {
			report("cgroup %s: %v", d, err)
		}
	}

	restoreSystemSocket(report) // see sticky_test.go

	for _, u := range suiteUsers {
		if fileHasEntry("/etc/passwd", u) {
			report("user %s: userdel", u)
			if out, err := exec.Command("userdel", u).CombinedOutput(); err != nil {
				report("userdel %s: %v: %s", u, err, out)
			}
		}
	}
	for _, g := range suiteGroups {
		if fileHasEntry("/etc/group", g) {
			report("group %s: groupdel", g)
			if out, err := exec.Command("groupdel", g).CombinedOutput(); err != nil {
				report("groupdel %s: %v: %s", g, err, out)
			}
		}
	}
}

// fileHasEntry reports whether a passwd/group style file has a line for name.
func fileHasEntry(file, name string) bool {
	data, err := os.ReadFile(file)
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, name+":") {
			return true
		}
	}
	return false
}

// exeBase is the base name of /proc/PID/exe without " (deleted)".
func exeBase(pid int) string {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return ""
	}
	return filepath.Base(strings.TrimSuffix(exe, " (deleted)"))
}

func cmdline(pid int) []string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(data), "\x00"), "\x00")
}

// parentPid reads PPid from /proc/PID/status (-1 when unknown).
func parentPid(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "PPid:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err == nil {
				return n
			}
		}
	}
	return -1
}

// processGone reports whether pid no longer runs (absent or a zombie).
func processGone(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the command name in parentheses.
	s := string(data)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] == 'Z' || s[i+2] == 'X'
	}
	return false
}

// killAndWaitGone signals a process that is not this process's child and
// waits until it is gone; SIGKILL after the timeout.
func killAndWaitGone(pid int, sig syscall.Signal, timeout time.Duration) bool {
	_ = syscall.Kill(pid, sig)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if processGone(pid) {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	if sig != syscall.SIGKILL {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		for i := 0; i < 200; i++ {
			if processGone(pid) {
				return true
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return processGone(pid)
}

// pidsBelow lists the processes in the cgroup directory dir and below.
func pidsBelow(dir string) []int {
	var pids []int
	_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		data, err := os.ReadFile(filepath.Join(path, "cgroup.procs"))
		if err != nil {
			return nil
		}
		for _, f := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	return pids
}

// removeCgroupTree removes the cgroup directory dir and every cgroup below
// it, deepest first, retrying while tasks that just exited still hold them.
func removeCgroupTree(dir string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var subdirs []string
		err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				subdirs = append(subdirs, path)
			}
			return nil
		})
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		var last error
		for i := len(subdirs) - 1; i >= 0; i-- {
			if err := syscall.Rmdir(subdirs[i]); err != nil && !errors.Is(err, syscall.ENOENT) {
				last = fmt.Errorf("rmdir %s: %w", subdirs[i], err)
			}
		}
		if last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%v (tasks still there: %v)", last, pidsBelow(dir))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
