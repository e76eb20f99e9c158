package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ---------------------------------------------------------------------------
// Hierarchies

// A cgroupMount is one mounted cgroup hierarchy of this (the test's) mount
// namespace.
type cgroupMount struct {
	dir         string   // mount point, e.g. /sys/fs/cgroup/cpu
	v2          bool     // cgroup2
	controllers []string // v1: controllers and name=NAME from the mount options
}

// cgroupMounts parses /proc/self/mountinfo; only mounts of a hierarchy's
// root are returned.
func cgroupMounts() []cgroupMount {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var mounts []cgroupMount
	for _, line := range strings.Split(string(data), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f := strings.Fields(pre)
		g := strings.Fields(post)
		if len(f) < 5 || len(g) < 3 || f[3] != "/" {
			continue
		}
		switch g[0] {
		case "cgroup2":
			mounts = append(mounts, cgroupMount{dir: f[4], v2: true})
		case "cgroup":
			var ctrls []string
			for _, o := range strings.Split(g[2], ",") {
				switch {
				case o == "rw" || o == "ro" || o == "noprefix" || o == "xattr" ||
					o == "clone_children" || o == "cpuset_v2_mode" ||
					strings.HasPrefix(o, "release_agent="):
				default:
					ctrls = append(ctrls, o)
				}
			}
			mounts = append(mounts, cgroupMount{dir: f[4], controllers: ctrls})
		}
	}
	return mounts
}

// hierarchy finds the mount of a hierarchy named the way the tests (and the
// rules on this hybrid machine) name them: a v1 controller ("cpu",
// "memory", "pids"), "systemd" for name=systemd, or "unified" for cgroup2.
func hierarchy(name string) (cgroupMount, bool) {
	for _, m := range cgroupMounts() {
		if name == "unified" && m.v2 {
			return m, true
		}
		for _, c := range m.controllers {
			if c == name || c == "name="+name {
				return m, true
			}
		}
	}
	return cgroupMount{}, false
}

// requireHierarchies skips the test unless every named hierarchy is mounted.
func requireHierarchies(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, ok := hierarchy(n); !ok {
			t.Skipf("this test needs the %s cgroup hierarchy mounted (cgroup v1 hybrid with cgroup2 at /sys/fs/cgroup/unified)", n)
		}
	}
}

// cgroupOf returns the path of pid's cgroup in hierarchy hier, read from
// /proc/PID/cgroup, and the whole file for messages.
func cgroupOf(pid int, hier string) (string, string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", "", err
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if hier == "unified" {
			if parts[0] == "0" && parts[1] == "" {
				return parts[2], string(data), nil
			}
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == hier || c == "name="+hier {
				return parts[2], string(data), nil
			}
		}
	}
	return "", string(data), fmt.Errorf("no %s line in /proc/%d/cgroup", hier, pid)
}

// waitCgroup polls /proc/PID/cgroup until pid is in cgroup want of
// hierarchy hier, and fails the test after timeout.
func waitCgroup(t testing.TB, pid int, hier, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got, all, err := cgroupOf(pid, hier)
		if err == nil && got == want {
			return
		}
		if time.Now().After(deadline) {
			if err != nil {
				t.Fatalf("pid %d: %v (want %s in %s)\n/proc/%d/cgroup:\n%s", pid, err, hier, want, pid, all)
			}
			t.Fatalf("pid %d: %s cgroup is %s, want %s (waited %v)\n/proc/%d/cgroup:\n%s",
				pid, hier, got, want, timeout, pid, all)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// expectCgroupStays checks during d that pid stays in cgroup want of
// hierarchy hier.
func expectCgroupStays(t testing.TB, pid int, hier, want string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		got, all, err := cgroupOf(pid, hier)
		if err != nil {
			t.Fatalf("pid %d: %v", pid, err)
		}
		if got != want {
			t.Fatalf("pid %d: %s cgroup is %s, want it to stay %s\n/proc/%d/cgroup:\n%s", pid, hier, got, want, pid, all)
		}
		if time.Now().After(deadline) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ---------------------------------------------------------------------------
// Users and groups

// identities creates the suite's users and groups (after libcgroup's test
// plan, with the "cgre" prefix) and removes them in cleanup:
//
//	groups: cgrecgroup (members cgresjo, cgreroot, cgrecgtest),
//	        cgreroot (member cgreroot), cgreusers (no members)
//	        cgreother (no members)
//	users:  cgresjo, cgrecgtest, cgreroot, cgrenobody (in no test group),
//	        cgreother (in no test group; the filler rules of the fork-race
//	        tests and the benchmark name it and group cgreother)
//
// User cgrepeter is never created. Users get no home, no user group
// (useradd -N) and /usr/sbin/nologin as shell. Users named in skip are not
// created (a test may add them later with addUser).
func identities(t testing.TB, skip ...string) {
	t.Helper()
	for _, n := range suiteUsers {
		if fileHasEntry("/etc/passwd", n) {
			t.Fatalf("user %s exists already: another run, or a leftover TestMain could not remove", n)
		}
	}
	for _, n := range suiteGroups {
		if fileHasEntry("/etc/group", n) {
			t.Fatalf("group %s exists already: another run, or a leftover TestMain could not remove", n)
		}
	}
	run := func(name string, args ...string) {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
		}
	}
	for _, g := range suiteGroups {
		run("groupadd", g)
		t.Cleanup(func() {
			if out, err := exec.Command("groupdel", g).CombinedOutput(); err != nil {
				t.Errorf("cleanup: groupdel %s: %v: %s", g, err, out)
			}
		})
	}
	for _, u := range suiteUsers {
		if !slices.Contains(skip, u) {
			addUser(t, u)
		}
	}
}

// addUser creates one of the suite's users, with its test-plan group
// memberships, and deletes it in cleanup.
func addUser(t testing.TB, u string) {
	t.Helper()
	if !slices.Contains(suiteUsers, u) {
		t.Fatalf("addUser(%s): not one of the suite's users", u)
	}
	run := func(name string, args ...string) {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
		}
	}
	run("useradd", "-M", "-N", "-s", "/usr/sbin/nologin", u)
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", u).CombinedOutput(); err != nil {
			t.Errorf("cleanup: userdel %s: %v: %s", u, err, out)
		}
	})
	for _, m := range [][2]string{
		{"cgresjo", "cgrecgroup"}, {"cgreroot", "cgrecgroup"}, {"cgrecgtest", "cgrecgroup"},
		{"cgreroot", "cgreroot"},
	} {
		if m[0] == u {
			run("usermod", "-a", "-G", m[1], m[0])
		}
	}
}

// ---------------------------------------------------------------------------
// The test environment: test directories, rules, files

type env struct {
	t       testing.TB
	name    string   // cgre-e2e-<random>
	root    string   // /cgre-e2e-<random>: the daemon's --cgroup-root
	hiers   []string // hierarchies with a test directory
	dir     string   // temporary directory: rules, logs, pidfile
	rules   string   // the rules file, dir/cgrules.conf
	confDir string   // the (empty) --config-dir
	sock    string   // the daemon's --socket; see socketPath
}

// newEnv makes a test environment with a test directory /cgre-e2e-<random>
// in each named hierarchy and, in each, the given subdirectories. Everything
// is removed in cleanup (after the test's processes are stopped: cleanups
// run last-registered first).
func newEnv(t testing.TB, hiers []string, subdirs ...string) *env {
	t.Helper()
	requireRoot(t)
	requireHierarchies(t, hiers...)
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, name: testDirPrefix + hex.EncodeToString(rnd[:]), hiers: hiers, dir: t.TempDir()}
	e.root = "/" + e.name
	e.rules = filepath.Join(e.dir, "cgrules.conf")
	e.confDir = filepath.Join(e.dir, "cgrules.d")
	if err := os.Mkdir(e.confDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, h := range hiers {
		p := e.path(h, "")
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatalf("creating the test directory: %v", err)
		}
		t.Cleanup(func() {
			if err := removeCgroupTree(p, 3*time.Second); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		})
	}
	for _, s := range subdirs {
		e.mkdir(s)
	}
	return e
}

// path is the directory of cgroup root/sub in hierarchy h.
func (e *env) path(h, sub string) string {
	m, ok := hierarchy(h)
	if !ok {
		e.t.Fatalf("no %s hierarchy", h)
	}
	return filepath.Join(m.dir, e.name, sub)
}

// cg is the path of cgroup root/sub as /proc/PID/cgroup shows it.
func (e *env) cg(sub string) string {
	if sub == "" {
		return e.root
	}
	return e.root + "/" + sub
}

// mkdir creates root/sub (and its parents) in every test hierarchy.
func (e *env) mkdir(sub string) {
	e.t.Helper()
	for _, h := range e.hiers {
		if err := os.MkdirAll(e.path(h, sub), 0o755); err != nil {
			e.t.Fatal(err)
		}
	}
}

// writeRules writes the rules file (a new file, or truncated in place).
func (e *env) writeRules(content string) {
	e.t.Helper()
	if err := os.WriteFile(e.rules, []byte(content), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// replaceRules writes the rules into a temporary file in the same directory
// and renames it over the rules file, as editors and package managers do.
func (e *env) replaceRules(content string) {
	e.t.Helper()
	tmp := filepath.Join(e.dir, ".cgrules.conf.new")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Rename(tmp, e.rules); err != nil {
		e.t.Fatal(err)
	}
}

// ---------------------------------------------------------------------------
// Harness processes

// hopts says how to start a harness process.
type hopts struct {
	user, group string        // -u, -g (neither: the harness becomes root)
	exec        []string      // -exec PATH ARGS...
	delay       time.Duration // -delay
	// Where the process is put before it changes its credentials: the test
	// directory's root (or its sub-cgroup sub) in these hierarchies; nil
	// means every hierarchy of the environment. outside leaves it where the
	// test process is.
	place   []string
	sub     string
	outside bool
	// wrap runs the harness under a command that execs it in the end
	// (same pid), e.g. cgexec -g cpu:PATH; not with outside.
	wrap []string
}

type harness struct {
	pid    int
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{}
}

// harness starts the setuid harness and returns once it has changed its
// credentials and printed its pid. It is stopped in cleanup.
func (e *env) harness(o hopts) *harness {
	e.t.Helper()
	t := e.t
	var args []string
	if o.user != "" {
		args = append(args, "-u", o.user)
	}
	if o.group != "" {
		args = append(args, "-g", o.group)
	}
	if o.delay > 0 {
		args = append(args, "-delay", o.delay.String())
	}
	args = append(args, "-die-with-parent")
	if len(o.exec) > 0 {
		args = append(args, "-exec")
		args = append(args, o.exec...)
	}

	var cmd *exec.Cmd
	if o.outside {
		cmd = exec.Command(harnessBin, args...)
	} else {
		place := o.place
		if place == nil {
			place = e.hiers
		}
		// The shell joins the test directories, then becomes the harness
		// (same pid) which changes its credentials.
		argv := append(append([]string{"-c", e.placeScript(place, o.sub)}, o.wrap...), harnessBin)
		cmd = exec.Command("/bin/sh", append(argv, args...)...)
	}
	h := &harness{cmd: cmd, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stderr = h.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the harness: %v", err)
	}
	t.Cleanup(h.stop)
	lines := make(chan string, 1)
	go func() {
		r := bufio.NewReader(stdout)
		line, _ := r.ReadString('\n')
		lines <- line
		_, _ = r.WriteTo(discard{})
	}()
	go func() {
		_ = cmd.Wait()
		close(h.done)
	}()
	select {
	case line := <-lines:
		pid, err := strconv.Atoi(strings.TrimSpace(line))
		if err != nil {
			<-h.done
			t.Fatalf("harness %v: no pid line (%q); state %v; stderr: %s", cmd.Args, line, cmd.ProcessState, h.stderr.String())
		}
		if pid != cmd.Process.Pid {
			t.Fatalf("harness printed pid %d, started as %d", pid, cmd.Process.Pid)
		}
		h.pid = pid
	case <-time.After(10 * time.Second):
		t.Fatalf("harness %v: no pid line after 10s; stderr: %s", cmd.Args, h.stderr.String())
	}
	return h
}

// placeScript is a sh -c script that joins cgroup root/sub of each
// hierarchy in place and then becomes "$0" "$@" (same pid).
func (e *env) placeScript(place []string, sub string) string {
	var script strings.Builder
	for _, h := range place {
		fmt.Fprintf(&script, "echo $$ > '%s' || exit 111; ", filepath.Join(e.path(h, sub), "cgroup.procs"))
	}
	script.WriteString(`exec "$0" "$@"`)
	return script.String()
}

// stop stops the harness (SIGTERM, then SIGKILL) and waits for it.
func (h *harness) stop() {
	select {
	case <-h.done:
		return
	default:
	}
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.done:
	case <-time.After(3 * time.Second):
		_ = h.cmd.Process.Kill()
		<-h.done
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// ---------------------------------------------------------------------------
// The daemon

type dopts struct {
	pureV2 bool     // run it in a private mount namespace with only cgroup2 mounted at /sys/fs/cgroup
	extra  []string // more arguments
	// cgroupNS, a subdirectory of the test directory: run the daemon as in
	// a container, in its own cgroup namespace rooted at that cgroup of
	// the unified hierarchy, with cgroup2 mounted afresh (pureV2) and
	// --cgroup-root "/", the whole namespace.
	cgroupNS string
	env      []string // more environment variables (NOTIFY_SOCKET=...)
	// wrap: run the daemon through this command, which is given the
	// daemon's path and arguments and must exec it (same pid).
	wrap []string
}

type daemon struct {
	e       *env
	cmd     *exec.Cmd
	pid     int
	pidfile string
	logfile string
	logFrom int         // the log's size when this daemon started: a daemon of the same env before it appended to the same file
	output  *syncBuffer // standard output and error
	done    chan struct{}
	started time.Time     // just before the daemon's process was started
	ready   time.Duration // from started until the pidfile named it
}

// daemonArgs is the daemon's command line for this environment, without -n:
// the run's event source (eventsArgs) comes before extra, which may
// override it.
func (e *env) daemonArgs(pidfile, logfile string, extra ...string) []string {
	args := []string{"-c", e.rules, "--config-dir", e.confDir, "--cgroup-root", e.root,
		"--pidfile", pidfile, "-f", logfile, "-vvv", "--socket", e.socketPath(),
		"--status-socket", e.statusPath()}
	args = append(args, eventsArgs()...)
	return append(args, extra...)
}

// statusPath is the environment's status socket (--status-socket), beside
// its sticky socket, so that no test daemon takes /run/cgrulesengd.sock.
func (e *env) statusPath() string {
	return filepath.Join(filepath.Dir(e.socketPath()), "status.sock")
}

// socketPath is the environment's sticky socket, in a temporary directory
// of its own with a short name (a Unix socket path has at most 107 bytes),
// so that no test touches /var/run/cgred.socket unless it says so (its
// extra "--socket" comes later and wins). The directory is searchable by
// all: the socket file's own mode and group decide who may connect.
func (e *env) socketPath() string {
	if e.sock == "" {
		dir, err := os.MkdirTemp("", "cgre-sock-")
		if err != nil {
			e.t.Fatal(err)
		}
		e.t.Cleanup(func() { os.RemoveAll(dir) })
		if err := os.Chmod(dir, 0o755); err != nil {
			e.t.Fatal(err)
		}
		e.sock = filepath.Join(dir, "cgred.socket")
	}
	return e.sock
}

// pureV2Script mounts cgroup2 alone on /sys/fs/cgroup in the (private)
// mount namespace made by unshare -m, then runs "$0" "$@".
const pureV2Script = `mount --make-rprivate / && { umount -R /sys/fs/cgroup || umount -l /sys/fs/cgroup; } && mount -t cgroup2 none /sys/fs/cgroup && exec "$0" "$@"`

// cgroupNSScript moves the shell into $CGRE_NS_PROCS's cgroup, then runs
// "$0" "$@" in a new cgroup namespace (rooted there) and a private mount
// namespace set up by pureV2Script.
const cgroupNSScript = `echo $$ > "$CGRE_NS_PROCS" && exec unshare -C -m /bin/sh -c "$CGRE_V2_SCRIPT" "$0" "$@"`

// startDaemon starts the daemon in the foreground (-n) and waits until it is
// ready: its pidfile names it. It is stopped in cleanup, and its log is
// shown if the test failed.
//
// The log and the pidfile go to a subdirectory: the daemon watches the rules
// file's directory (inotify, not recursive), and a log written there would
// wake its watcher for every line.
func (e *env) startDaemon(o dopts) *daemon {
	e.t.Helper()
	t := e.t
	requireDaemon(t)
	run := filepath.Join(e.dir, "run")
	if err := os.MkdirAll(run, 0o755); err != nil {
		t.Fatal(err)
	}
	d := &daemon{
		e:       e,
		pidfile: filepath.Join(run, "cgrulesengd.pid"),
		logfile: filepath.Join(run, "cgrulesengd.log"),
		output:  &syncBuffer{},
		done:    make(chan struct{}),
	}
	if st, err := os.Stat(d.logfile); err == nil {
		d.logFrom = int(st.Size())
	}
	args := append([]string{"-n"}, e.daemonArgs(d.pidfile, d.logfile, o.extra...)...)
	switch {
	case o.cgroupNS != "":
		// The shell joins the cgroup that becomes the namespace's root,
		// then execs unshare; the pid stays the daemon's throughout.
		for i := range args {
			if args[i] == "--cgroup-root" {
				args[i+1] = "/"
			}
		}
		d.cmd = exec.Command("/bin/sh", append([]string{"-c", cgroupNSScript, daemonBin}, args...)...)
		d.cmd.Env = append(os.Environ(),
			"CGRE_NS_PROCS="+filepath.Join(e.path("unified", o.cgroupNS), "cgroup.procs"),
			"CGRE_V2_SCRIPT="+pureV2Script)
	case o.pureV2:
		d.cmd = exec.Command("unshare", append([]string{"-m", "/bin/sh", "-c", pureV2Script, daemonBin}, args...)...)
	case len(o.wrap) > 0:
		d.cmd = exec.Command(o.wrap[0], append(append(o.wrap[1:len(o.wrap):len(o.wrap)], daemonBin), args...)...)
	default:
		d.cmd = exec.Command(daemonBin, args...)
	}
	if len(o.env) > 0 {
		d.cmd.Env = append(append(os.Environ(), d.cmd.Env...), o.env...)
	}
	d.cmd.Stdout = d.output
	d.cmd.Stderr = d.output
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	d.started = time.Now()
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("starting the daemon: %v", err)
	}
	d.pid = d.cmd.Process.Pid
	go func() {
		_ = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		d.kill()
		if t.Failed() {
			t.Logf("daemon %v\n--- its output:\n%s\n--- its log:\n%s", d.cmd.Args, d.output.String(), shortLog(d.log()))
		}
	})
	d.waitReady(15 * time.Second)
	return d
}

// waitReady waits until the pidfile names the daemon.
func (d *daemon) waitReady(timeout time.Duration) {
	d.e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		data, err := os.ReadFile(d.pidfile)
		if err == nil && strings.TrimSpace(string(data)) == strconv.Itoa(d.pid) {
			d.ready = time.Since(d.started)
			return
		}
		select {
		case <-d.done:
			d.e.t.Fatalf("the daemon exited before it was ready (%v)\noutput:\n%s\nlog:\n%s", d.cmd.ProcessState, d.output.String(), d.log())
		default:
		}
		if time.Now().After(deadline) {
			d.e.t.Fatalf("the daemon (pid %d) not ready after %v: pidfile %q (err %v)", d.pid, timeout, data, err)
		}
		time.Sleep(time.Millisecond) // fine enough for the benchmark's ready time

	}
}

func (d *daemon) signal(sig syscall.Signal) {
	d.e.t.Helper()
	select {
	case <-d.done:
		d.e.t.Fatalf("the daemon is not running (%v); cannot send %v", d.cmd.ProcessState, sig)
	default:
	}
	if err := d.cmd.Process.Signal(sig); err != nil {
		d.e.t.Fatalf("signal %v: %v", sig, err)
	}
}

// stop sends SIGTERM and waits for the exit; it returns the exit status
// (-1 when killed by a signal) and fails the test after 10 s.
func (d *daemon) stop() int {
	d.e.t.Helper()
	d.signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		d.e.t.Fatalf("the daemon did not exit within 10s of SIGTERM")
	}
	return d.cmd.ProcessState.ExitCode()
}

// kill stops the daemon if it still runs: SIGTERM, SIGKILL after 5 s.
func (d *daemon) kill() {
	select {
	case <-d.done:
		return
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(5 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}

// shortLog is a log for a failure message: whole when short, else its first
// 50 and last 300 lines (a storm fills the debug log with millions).
func shortLog(log string) string {
	lines := strings.Split(strings.TrimRight(log, "\n"), "\n")
	if len(lines) <= 400 {
		return log
	}
	return strings.Join(lines[:50], "\n") + fmt.Sprintf("\n[... %d lines ...]\n", len(lines)-350) + strings.Join(lines[len(lines)-300:], "\n")
}

// log is what this daemon wrote to its log file (not what daemons of the
// same env started before it wrote there).
func (d *daemon) log() string {
	data, _ := os.ReadFile(d.logfile)
	if d.logFrom <= len(data) {
		data = data[d.logFrom:]
	}
	return string(data)
}

// logSize is the current length of the log, for waitLog.
func (d *daemon) logSize() int {
	return len(d.log())
}

// waitLog waits until the part of the log after offset from has a line
// matching re, and returns that line.
func (d *daemon) waitLog(from int, re *regexp.Regexp, timeout time.Duration) string {
	d.e.t.Helper()
	return d.waitLogFunc(from, re.MatchString, fmt.Sprintf("matching %q", re), timeout)
}

// waitLogFunc waits until the part of the log after offset from has a line
// for which match is true, and returns that line.
func (d *daemon) waitLogFunc(from int, match func(string) bool, what string, timeout time.Duration) string {
	d.e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		l := d.log()
		if from > len(l) {
			from = 0
		}
		for _, line := range strings.Split(l[from:], "\n") {
			if match(line) {
				return line
			}
		}
		if time.Now().After(deadline) {
			d.e.t.Fatalf("no log line %s within %v; log since offset %d:\n%s", what, timeout, from, l[from:])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// eventually starts harness processes with options o, one after the other,
// until one lands in cgroup want of hierarchy hier, for reloads whose moment
// of completion the test cannot see. Each attempt waits up to 1 s for the
// process to be moved somewhere; a process that was moved elsewhere, or not
// at all, is stopped and the next one started. Fails after timeout.
func (e *env) eventually(o hopts, hier, want string, timeout time.Duration) *harness {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	var tried []string
	for {
		h := e.harness(o)
		start, _, _ := cgroupOf(h.pid, hier)
		var got string
		for t0 := time.Now(); time.Since(t0) < time.Second; time.Sleep(10 * time.Millisecond) {
			got, _, _ = cgroupOf(h.pid, hier)
			if got == want {
				return h
			}
			if got != start {
				break
			}
		}
		tried = append(tried, fmt.Sprintf("pid %d: %s", h.pid, got))
		h.stop()
		if time.Now().After(deadline) {
			e.t.Fatalf("no harness (%+v) landed in %s %s within %v; where they were: %s",
				o, hier, want, timeout, strings.Join(tried, "; "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
