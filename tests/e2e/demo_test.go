package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const demoDir = "/cgrulesengd-demo"

// TestDemo runs `make run`'s script for real and then the commands it
// prints, as a newcomer would: they must run without an error and put their
// process where the comments say, in every hierarchy (issue #13: "echo: I/O
// error" on cpuset, whose demo cgroup had no cpus, and name=systemd left
// out), on this hybrid machine and on a pure v2 one.
func TestDemo(t *testing.T) {
	requireDaemon(t)
	hybridAndPureV2(t, demo)
}

// hybridAndPureV2 runs f as subtest "hybrid" (this machine's mounts) and
// "pure-v2" (cgroup2 alone, in a private mount namespace: pureV2Script).
func hybridAndPureV2(t *testing.T, f func(t *testing.T, pureV2 bool)) {
	t.Run("hybrid", func(t *testing.T) { f(t, false) })
	t.Run("pure-v2", func(t *testing.T) { f(t, true) })
}

func demo(t *testing.T, pureV2 bool) {
	for _, m := range cgroupMounts() {
		if _, err := os.Stat(filepath.Join(m.dir, demoDir)); err == nil {
			t.Skipf("%s exists: a demo (make run) is running on this machine", filepath.Join(m.dir, demoDir))
		}
	}
	script := []string{"/bin/sh", "scripts/run-demo.sh"}
	var cmd *exec.Cmd
	if pureV2 {
		cmd = exec.Command("unshare", append([]string{"-m", "/bin/sh", "-c", pureV2Script}, script...)...)
	} else {
		cmd = exec.Command(script[0], script[1:]...)
	}
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), "CGRE_DEMO_BIN="+filepath.Dir(daemonBin), "CGRE_DEMO_OPTIONS="+strings.Join(eventsArgs(), " "))
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, stopped as Ctrl-C would stop it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				<-done
			}
		}
		// Its processes are stopped (their cleanups ran first): the demo
		// removes what it created.
		for _, m := range cgroupMounts() {
			if _, err := os.Stat(filepath.Join(m.dir, demoDir)); err == nil {
				t.Errorf("the demo left %s behind", filepath.Join(m.dir, demoDir))
				_ = removeCgroupTree(filepath.Join(m.dir, demoDir), 3*time.Second)
			}
		}
		if t.Failed() {
			t.Logf("demo output:\n%s", shortLog(out.String()))
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(out.String(), "msg=ready") {
		select {
		case <-done:
			t.Fatalf("the demo exited before the daemon was ready: %v\n%s", cmd.ProcessState, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the demo's daemon not ready after 15s:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The printed commands, and the comment under each saying where its
	// process goes.
	var cmds, wants []string
	lines := strings.Split(out.String(), "\n")
	for i, l := range lines {
		l = strings.TrimSpace(l)
		if !strings.Contains(l, "setuid -u nobody") {
			continue
		}
		cmds = append(cmds, strings.TrimPrefix(l, "sudo "))
		rest := strings.Join(lines[i+1:i+3], "\n")
		_, want, ok := strings.Cut(rest, "# every line ends in ")
		if !ok {
			t.Fatalf("no comment saying where %q goes", l)
		}
		wants = append(wants, strings.Fields(want)[0])
	}
	if len(cmds) != 2 {
		t.Fatalf("found %d demo commands, want 2:\n%s", len(cmds), out.String())
	}
	if wants[0] != demoDir+"/users/nobody" || wants[1] != demoDir+"/sleepers" {
		t.Fatalf("the comments say %q", wants)
	}
	for i, c := range cmds {
		pid := runDemoCommand(t, c, pureV2, cmd.Process.Pid)
		deadline := time.Now().Add(3 * time.Second)
		for {
			data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
			if err != nil {
				t.Fatal(err)
			}
			bad := ""
			for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
				if pureV2 && !strings.HasPrefix(line, "0::") {
					continue // the v1 hierarchies are not mounted in the demo's namespace
				}
				if !strings.HasSuffix(line, ":"+wants[i]) {
					bad += line + "\n"
				}
			}
			if bad == "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("command %d: pid %d not in %s after 3s:\n%s", i+1, pid, wants[i], data)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// The printed --status command shows the two moves and their rules.
	var statusCmd string
	for _, l := range lines {
		if l = strings.TrimSpace(l); strings.Contains(l, "--status ") {
			statusCmd = strings.TrimPrefix(l, "sudo ")
		}
	}
	if statusCmd == "" {
		t.Fatalf("the demo prints no --status command:\n%s", out.String())
	}
	st, err := exec.Command("/bin/sh", "-c", statusCmd).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", statusCmd, err, st)
	}
	// At least the two setuid tasks were moved by their credentials (more,
	// when the "*" rule's move of a starting shell came before its setuid),
	// and their rules are among those with hits.
	moved := 0
	if m := regexp.MustCompile(`moved_tasks: credentials ([0-9]+),`).FindStringSubmatch(string(st)); m != nil {
		moved, _ = strconv.Atoi(m[1])
	}
	if moved < 2 {
		t.Errorf("the demo's --status does not count the two moves by credentials:\n%s", st)
	}
	for _, want := range []string{"top rules by hits", "users/%u\n", "sleepers\n"} {
		if !strings.Contains(string(st), want) {
			t.Errorf("the demo's --status lacks %q:\n%s", want, st)
		}
	}
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.Contains(l, "level=error") || strings.Contains(l, "level=fatal") {
			t.Errorf("the demo's daemon logged an error: %s", l)
		}
	}
}

// runDemoCommand runs one printed command line in a shell (in the demo's
// mount namespace for pure v2) and returns the pid its harness printed; the
// process is stopped in cleanup. Anything on its standard error fails the
// test.
func runDemoCommand(t *testing.T, line string, pureV2 bool, demoPid int) int {
	t.Helper()
	var c *exec.Cmd
	if pureV2 {
		c = exec.Command("nsenter", "-t", strconv.Itoa(demoPid), "-m", "/bin/sh", "-c", "exec "+line)
	} else {
		c = exec.Command("/bin/sh", "-c", "exec "+line)
	}
	errOut := &syncBuffer{}
	c.Stderr = errOut
	c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = c.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = c.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(3 * time.Second):
			_ = c.Process.Kill()
			<-exited
		}
	})
	got := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(stdout).ReadString('\n')
		got <- l
	}()
	var pidLine string
	select {
	case pidLine = <-got:
	case <-time.After(10 * time.Second):
		t.Fatalf("%q printed no pid in 10s; stderr: %s", line, errOut.String())
	}
	pid, err := strconv.Atoi(strings.TrimSpace(pidLine))
	if err != nil {
		<-exited
		t.Fatalf("%q: no pid (%q), stderr: %s", line, pidLine, errOut.String())
	}
	// nsenter forks: the harness is its child, not the process started.
	if !pureV2 && pid != c.Process.Pid {
		t.Fatalf("%q: harness pid %d, started %d", line, pid, c.Process.Pid)
	}
	if s := errOut.String(); s != "" {
		t.Errorf("%q wrote to standard error: %s", line, s)
	}
	return pid
}
