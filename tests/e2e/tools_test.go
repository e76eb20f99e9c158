package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A tool is a running C tool of tests/tools (see main_test.go).
type tool struct {
	name   string
	pid    int
	cmd    *exec.Cmd
	stderr *syncBuffer
	lines  chan string // standard output after the pid line; closed at EOF
	done   chan struct{}
}

// startTool starts the C tool cgre-name with args, placed like the harness
// (sh joins cgroup root/sub of every hierarchy in place, nil meaning all of
// the environment's, then execs the tool: same pid), and returns once it
// printed its pid. It gets SIGKILL if the test binary dies; in cleanup it is
// stopped and whatever suite process is left in the test cgroups (its
// children, a storm's short-lived ones) is killed, by pid.
func (e *env) startTool(place []string, sub, name string, args ...string) *tool {
	e.t.Helper()
	t := e.t
	requireTools(t)
	if place == nil {
		place = e.hiers
	}
	bin := toolPath(name)
	cmd := exec.Command("/bin/sh", append([]string{"-c", e.placeScript(place, sub), bin}, args...)...)
	tl := &tool{name: name, cmd: cmd, stderr: &syncBuffer{}, lines: make(chan string, 1<<16), done: make(chan struct{})}
	cmd.Stderr = tl.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	t.Cleanup(func() {
		tl.stop()
		e.killSuiteTasks()
	})
	first := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		if sc.Scan() {
			first <- sc.Text()
		} else {
			first <- ""
		}
		for sc.Scan() {
			tl.lines <- sc.Text()
		}
		close(tl.lines)
	}()
	go func() {
		_ = cmd.Wait()
		close(tl.done)
	}()
	select {
	case line := <-first:
		pid, err := strconv.Atoi(strings.TrimSpace(line))
		if err != nil {
			select {
			case <-tl.done:
			case <-time.After(5 * time.Second):
			}
			t.Fatalf("%v: no pid line (%q); state %v; stderr: %s", cmd.Args, line, cmd.ProcessState, tl.stderr.String())
		}
		if pid != cmd.Process.Pid {
			t.Fatalf("%s printed pid %d, started as %d", name, pid, cmd.Process.Pid)
		}
		tl.pid = pid
	case <-time.After(15 * time.Second):
		t.Fatalf("%v: no pid line after 15s; stderr: %s", cmd.Args, tl.stderr.String())
	}
	return tl
}

// next returns the tool's next output line; ok is false at EOF or timeout.
func (tl *tool) next(timeout time.Duration) (line string, ok bool) {
	select {
	case l, open := <-tl.lines:
		return l, open
	case <-time.After(timeout):
		return "", false
	}
}

// wait waits up to timeout for the tool to exit by itself.
func (tl *tool) wait(timeout time.Duration) bool {
	select {
	case <-tl.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// stop stops the tool (SIGTERM, then SIGKILL) and waits for it.
func (tl *tool) stop() {
	select {
	case <-tl.done:
		return
	default:
	}
	_ = tl.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-tl.done:
	case <-time.After(3 * time.Second):
		_ = tl.cmd.Process.Kill()
		<-tl.done
	}
}

// killSuiteTasks kills, by pid, every suite process (harness, C tools and
// their descendants) left in the environment's test cgroups, until none is
// left or 5 s passed. Other processes are left alone (the cgroup removal
// reports them).
func (e *env) killSuiteTasks() {
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := 0
		for _, h := range e.hiers {
			m, ok := hierarchy(h)
			if !ok {
				continue
			}
			for _, pid := range pidsBelow(m.dir + e.root) {
				if isSuiteExe(exeBase(pid)) {
					_ = syscall.Kill(pid, syscall.SIGKILL)
					n++
				}
			}
		}
		if n == 0 || time.Now().After(deadline) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// killPids kills the listed pids, by pid, when they still run one of the
// suite's programs, and waits up to timeout for them to be gone.
func killPids(pids []int, timeout time.Duration) (left []int) {
	for _, pid := range pids {
		if isSuiteExe(exeBase(pid)) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	deadline := time.Now().Add(timeout)
	for {
		left = left[:0]
		for _, pid := range pids {
			if !processGone(pid) && isSuiteExe(exeBase(pid)) {
				left = append(left, pid)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// uidOf looks up a test user's uid, as a decimal string for the tools.
func uidOf(t testing.TB, name string) string {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("looking up %s: %v", name, err)
	}
	return u.Uid
}

// fillerRules are n rules that name user and group cgreother (which none of
// the tasks the tests watch has): n/2 "@cgreother cpu other" lines and n/2
// "cgreother:progN cpu other" lines (n odd: one more @ line). They load
// fast, each name resolving through NSS once per load, and they all come
// before the rule the test is about.
func fillerRules(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		if i%2 == 0 {
			b.WriteString("@cgreother  cpu  other\n")
		} else {
			fmt.Fprintf(&b, "cgreother:prog%d  cpu  other\n", i/2)
		}
	}
	return b.String()
}

// cgroupPaths reads pid's paths in the cpu (v1) and cgroup2 hierarchies
// from /proc/PID/cgroup (one read).
func cgroupPaths(pid int) (cpu, unified string, err error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return "", "", err
	}
	var okCPU, okV2 bool
	for _, line := range strings.Split(string(data), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			unified, okV2 = parts[2], true
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == "cpu" {
				cpu, okCPU = parts[2], true
			}
		}
	}
	if !okCPU || !okV2 {
		return cpu, unified, fmt.Errorf("/proc/%d/cgroup has no cpu or no cgroup2 line:\n%s", pid, data)
	}
	return cpu, unified, nil
}
