package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Issue 19: hostile local users and tight limits. The daemon runs under a
// small open-file limit (a shell sets it, then execs the daemon: same pid)
// and is pushed to need more descriptors than the limit allows.

// ulimitWrap runs the daemon with soft and hard RLIMIT_NOFILE set to n.
func ulimitWrap(n int) []string {
	return []string{"/bin/sh", "-c", fmt.Sprintf(`ulimit -n %d && exec "$0" "$@"`, n)}
}

// openFDs counts the descriptors pid has open.
func openFDs(pid int) int {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(fds)
}

// openSockets counts the sockets among pid's descriptors.
func openSockets(pid int) int {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	n := 0
	for _, fd := range fds {
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}

// burstPids fires a started burst tool (SIGUSR1) and collects its
// children's pids.
func burstPids(t testing.TB, burst *tool, timeout time.Duration) []int {
	t.Helper()
	if err := syscall.Kill(burst.pid, syscall.SIGUSR1); err != nil {
		t.Fatalf("signalling the burst tool: %v", err)
	}
	var pids []int
	for {
		l, ok := burst.next(timeout)
		if !ok {
			t.Fatalf("the burst tool stopped reporting after %d children; stderr: %s", len(pids), burst.stderr.String())
		}
		if l == "done" {
			return pids
		}
		if f := strings.Fields(l); len(f) == 2 && f[0] == "C" {
			pid, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatalf("bad line %q", l)
			}
			pids = append(pids, pid)
		}
	}
}

// waitMoved waits until every pid is in want(i) in both the cpu and the
// cgroup2 hierarchy, and returns those that are not by the deadline.
func waitMoved(pids []int, want func(i int) string, timeout time.Duration) (moved int, left []string) {
	deadline := time.Now().Add(timeout)
	done := make([]bool, len(pids))
	for {
		moved, left = 0, left[:0]
		for i, pid := range pids {
			if done[i] {
				moved++
				continue
			}
			cpu, v2, err := cgroupPaths(pid)
			if err == nil && cpu == want(i) && v2 == want(i) {
				done[i] = true
				moved++
				continue
			}
			if len(left) < 10 {
				left = append(left, fmt.Sprintf("pid %d: cpu %s, cgroup2 %s (err %v), want %s", pid, cpu, v2, err, want(i)))
			}
		}
		if moved == len(pids) || time.Now().After(deadline) {
			return moved, left
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// statusAnswers runs --status against d and fails the test unless it
// prints a report within timeout.
func statusAnswers(t testing.TB, d *daemon, timeout time.Duration) string {
	t.Helper()
	cmd := exec.Command(daemonBin, "--status", "--status-socket", d.e.statusPath())
	done := make(chan struct{})
	var out []byte
	var err error
	go func() {
		out, err = cmd.CombinedOutput()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("--status did not answer within %v", timeout)
	}
	if err != nil || !strings.Contains(string(out), fmt.Sprintf("pid %d,", d.pid)) {
		t.Fatalf("--status: %v\n%s", err, out)
	}
	return string(out)
}

// TestDescriptorLimitTemplates (issue 19, item 1): under `ulimit -n 1024`,
// 2,000 tasks of distinct uids (raw uids, no users: %u expands to the
// number) each need a cgroup of their own in two hierarchies, 4,000
// cgroup.procs files in all, far more than the limit. Every task must be
// moved, a plain rule must still work afterwards, and --status and
// /metrics must answer.
func TestDescriptorLimitTemplates(t *testing.T) {
	requireDaemon(t)
	requireTools(t)
	identities(t)
	e := newEnv(t, []string{"cpu", "unified"}, "plain")
	e.writeRules("cgresjo  cpu,unified  plain\n*  cpu,unified  users/%u\n")
	port := freePort(t)
	const limit, tasks = 1024, 2000
	// Info level: a debug line per task and cgroup would be most of the
	// test's time.
	d := e.startDaemon(dopts{wrap: ulimitWrap(limit), extra: []string{"-q", "-v", "--metrics", fmt.Sprintf("127.0.0.1:%d", port)}})
	const base = 2100000000 // raw uids: no user has them
	burst := e.startTool(nil, "", "burst", strconv.Itoa(base), strconv.Itoa(tasks), "300", "1")
	pids := burstPids(t, burst, 60*time.Second)
	if len(pids) != tasks {
		t.Fatalf("the burst tool forked %d children, want %d", len(pids), tasks)
	}
	start := time.Now()
	moved, left := waitMoved(pids, func(i int) string { return e.cg(fmt.Sprintf("users/%d", base+i)) }, 120*time.Second)
	t.Logf("%d of %d tasks moved into a cgroup of their own in %v; the daemon has %d descriptors open (limit %d)",
		moved, tasks, time.Since(start).Round(time.Millisecond), openFDs(d.pid), limit)
	if moved != tasks {
		t.Errorf("%d of %d tasks moved; some left behind:\n%s", moved, tasks, strings.Join(left, "\n"))
	}

	h := e.harness(hopts{user: "cgresjo"})
	waitCgroup(t, h.pid, "cpu", e.cg("plain"), 5*time.Second)
	waitCgroup(t, h.pid, "unified", e.cg("plain"), 5*time.Second)
	st := statusAnswers(t, d, 10*time.Second)
	if !strings.Contains(st, "rules: 2 in force") {
		t.Errorf("--status:\n%s", st)
	}
	body := scrape(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if v, ok := sampleValue(body, "cgrulesengd_rules"); !ok || v != 2 {
		t.Errorf("/metrics: cgrulesengd_rules %v (present %v)", v, ok)
	}
	burst.stop()
	killPids(pids, 5*time.Second)
}

// TestDescriptorLimitMetricsFlood (issue 19, item 1): under `ulimit -n 64`,
// 100 idle TCP connections to the metrics port must not take the
// descriptors the moves need: 20 ruled tasks are still moved, and the
// flood is logged at error level (the default level).
func TestDescriptorLimitMetricsFlood(t *testing.T) {
	requireDaemon(t)
	requireTools(t)
	identities(t)
	e := newEnv(t, []string{"cpu", "unified"}, "dest")
	e.writeRules("cgresjo  cpu,unified  dest\n")
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	const limit = 64
	d := e.startDaemon(dopts{wrap: ulimitWrap(limit), extra: []string{"--metrics", addr}})
	from := d.logSize()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 100; i++ {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			continue // a full backlog: the flood is as big as it gets
		}
		conns = append(conns, c)
	}
	time.Sleep(500 * time.Millisecond) // the daemon accepts what it will
	t.Logf("%d idle connections made; the daemon has %d descriptors open (limit %d)", len(conns), openFDs(d.pid), limit)

	burst := e.startTool(nil, "", "burst", uidOf(t, "cgresjo"), "20", "120")
	pids := burstPids(t, burst, 10*time.Second)
	dest := e.cg("dest")
	moved, left := waitMoved(pids, func(int) string { return dest }, 10*time.Second)
	if moved != len(pids) {
		t.Errorf("%d of %d ruled tasks moved; left behind:\n%s", moved, len(pids), strings.Join(left, "\n"))
	}
	d.waitLog(from, regexp.MustCompile(`level=error msg="metrics: `), 5*time.Second)
	statusAnswers(t, d, 10*time.Second)
	burst.stop()
	killPids(pids, 3*time.Second)
}

// floodHelperEnv makes the test binary a connection flooder instead (see
// TestMain): "ADDR N" opens up to N TCP connections to ADDR, prints
// "open K failed F", and holds them until its standard input closes.
const floodHelperEnv = "CGRE_FLOOD"

func floodHelper(spec string) int {
	var addr string
	var n int
	if _, err := fmt.Sscanf(spec, "%s %d", &addr, &n); err != nil {
		fmt.Println("bad spec:", err)
		return 2
	}
	var mu sync.Mutex
	var conns []net.Conn
	failed := 0
	work := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				c, err := net.DialTimeout("tcp", addr, time.Second)
				mu.Lock()
				if err != nil {
					failed++
				} else {
					conns = append(conns, c)
				}
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < n; i++ {
		work <- struct{}{}
	}
	close(work)
	wg.Wait()
	fmt.Printf("open %d failed %d\n", len(conns), failed)
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	return 0
}

// flood starts flooders as an unprivileged user (nobody) and returns once
// they have made n connections in all; they are closed in cleanup or by
// calling the returned function. Each flooder holds as many as this
// process's hard open-file limit allows (raising a hard limit needs
// CAP_SYS_RESOURCE, which root may lack), so a big flood takes several.
func flood(t testing.TB, addr string, n int) (opened int, stop func()) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	per := int(lim.Max) - 256
	if per < 100 {
		t.Fatalf("hard open-file limit %d: too low for a flood", lim.Max)
	}
	var stops []func()
	stop = func() {
		for _, s := range stops {
			s()
		}
	}
	for left := n; left > 0; left -= per {
		k := min(left, per)
		lk := strconv.Itoa(k + 128)
		cmd := exec.Command("prlimit", "--nofile="+lk+":"+lk, "--",
			"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", self)
		cmd.Env = append(os.Environ(), floodHelperEnv+"="+addr+" "+strconv.Itoa(k))
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr syncBuffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting a flooder: %v", err)
		}
		var once sync.Once
		s := func() {
			once.Do(func() {
				stdin.Close()
				done := make(chan struct{})
				go func() { _ = cmd.Wait(); close(done) }()
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					_ = cmd.Process.Kill()
					<-done
				}
			})
		}
		stops = append(stops, s)
		t.Cleanup(s)
		line, err := bufio.NewReader(stdout).ReadString('\n')
		var got, failed int
		if _, serr := fmt.Sscanf(line, "open %d failed %d", &got, &failed); err != nil || serr != nil {
			stop()
			t.Fatalf("a flooder: %q, %v, %v; stderr: %s", line, err, serr, stderr.String())
		}
		opened += got
	}
	return opened, stop
}

// TestMetricsFlood (issue 19, item 2): an unprivileged user opens 5,000
// connections to the metrics port and holds them, while the daemon runs in
// a memory cgroup limited to 32 MB (4,000 connections got it OOM-killed
// there within 2 s). The daemon survives, keeps a bounded number of
// descriptors, logs the flood, and still moves ruled tasks, answers
// --status and serves a scrape; afterwards it is back to its sockets.
func TestMetricsFlood(t *testing.T) {
	requireDaemon(t)
	identities(t)
	e := newEnv(t, []string{"cpu", "unified", "memory"}, "dest", "daemon")
	e.writeRules("cgresjo  cpu,unified  dest\n")
	mem := e.path("memory", "daemon")
	if err := os.WriteFile(filepath.Join(mem, "memory.limit_in_bytes"), []byte("33554432"), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	d := e.startDaemon(dopts{extra: []string{"-q", "--metrics", addr},
		wrap: []string{"/bin/sh", "-c", fmt.Sprintf(`echo $$ > '%s' && exec "$0" "$@"`, filepath.Join(mem, "cgroup.procs"))}})
	base, baseSockets := openFDs(d.pid), openSockets(d.pid)
	from := d.logSize()
	opened, stop := flood(t, addr, 5000)
	during := openFDs(d.pid)
	t.Logf("the flooder opened %d connections; the daemon has %d descriptors open (%d before)", opened, during, base)
	// The bound: the metrics server's connections (maxConns, 16) and
	// what the accept may hold for a moment.
	if during > base+20 {
		t.Errorf("the daemon holds %d descriptors during the flood, %d before: the connections are not bounded", during, base)
	}
	d.waitLog(from, regexp.MustCompile(`level=error msg="metrics: `), 5*time.Second)
	h := e.harness(hopts{user: "cgresjo"})
	waitCgroup(t, h.pid, "cpu", e.cg("dest"), 5*time.Second)
	statusAnswers(t, d, 10*time.Second)
	resp, err := (&http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}).Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape during the flood: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if v, ok := sampleValue(string(body), `cgrulesengd_moved_tasks_total{reason="credentials"}`); !ok || v < 1 {
		t.Errorf("scrape during the flood: %s, moved_tasks credentials %v (present %v)", resp.Status, v, ok)
	}
	stop()
	select {
	case <-d.done:
		t.Fatalf("the daemon died during the flood: %v", d.cmd.ProcessState)
	default:
	}
	if b, err := os.ReadFile(filepath.Join(mem, "memory.max_usage_in_bytes")); err == nil {
		t.Logf("the daemon's memory cgroup peaked at %s bytes (limit 32 MB)", strings.TrimSpace(string(b)))
	}
	deadline := time.Now().Add(10 * time.Second)
	for openSockets(d.pid) > baseSockets && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := openSockets(d.pid); n > baseSockets {
		t.Errorf("%d sockets open 10 s after the flood, %d before", n, baseSockets)
	}
}

// TestRestartAfterKill (issue 19, item 2): a daemon killed with SIGKILL
// (the OOM killer's way) leaves its pidfile, its status socket and its
// metrics socket behind; the next one starts over them and works.
func TestRestartAfterKill(t *testing.T) {
	requireDaemon(t)
	identities(t)
	e := newEnv(t, []string{"cpu"}, "dest")
	e.writeRules("cgresjo  cpu  dest\n")
	metricsSock := e.socketPath() + ".metrics"
	args := []string{"--metrics", "unix:" + metricsSock}
	d := e.startDaemon(dopts{extra: args})
	_ = d.cmd.Process.Kill()
	<-d.done
	for _, f := range []string{d.pidfile, e.statusPath(), metricsSock, e.socketPath()} {
		if _, err := os.Lstat(f); err != nil {
			t.Fatalf("after SIGKILL %s is gone (%v): nothing stale to cope with", f, err)
		}
	}
	d2 := e.startDaemon(dopts{extra: args})
	h := e.harness(hopts{user: "cgresjo"})
	waitCgroup(t, h.pid, "cpu", e.cg("dest"), 5*time.Second)
	statusAnswers(t, d2, 10*time.Second)
	c := exec.Command(os.Args[0])
	c.Env = append(os.Environ(), scrapeHelperEnv+"="+metricsSock)
	if o, err := c.CombinedOutput(); err != nil || !strings.Contains(string(o), "cgrulesengd_rules 1") {
		t.Errorf("scraping the replaced metrics socket: %v\n%s", err, o)
	}
	if code := d2.stop(); code != 0 {
		t.Errorf("exit status %d", code)
	}
	for _, f := range []string{d.pidfile, e.statusPath(), metricsSock} {
		if _, err := os.Lstat(f); !os.IsNotExist(err) {
			t.Errorf("%s left after SIGTERM: %v", f, err)
		}
	}
}
