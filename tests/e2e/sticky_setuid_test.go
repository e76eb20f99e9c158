package e2e

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// setuidCopy makes a copy of the harness that is set-uid to user, in a
// directory everyone may search, and returns its path: run by another
// user it gets user's effective uid at exec (and, with -u user, sets all
// its uids to it), as a set-uid program of another user does.
func setuidCopy(t testing.TB, user string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "cgre-e2e-suid-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(harnessBin)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	// Named as the harness, so that the suite's clean-up knows it.
	p := filepath.Join(dir, "setuid")
	dst, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(uidOf(t, user))
	if err := os.Chown(p, uid, -1); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o755|os.ModeSetuid); err != nil { // after chown, which clears it
		t.Fatal(err)
	}
	return p
}

// placeIn writes pid into the cgroup directory dir.
func placeIn(t testing.TB, pid int, dir string) {
	t.Helper()
	if err := os.WriteFile(dir+"/cgroup.procs", []byte(strconv.Itoa(pid)), 0); err != nil {
		t.Fatalf("moving pid %d to %s: %v", pid, dir, err)
	}
}

// euidOf is the effective uid of pid.
func euidOf(t testing.TB, pid int) string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) >= 3 && f[0] == "Uid:" {
			return f[2]
		}
	}
	t.Fatalf("no Uid line in /proc/%d/status", pid)
	return ""
}

// TestStickySetuidDropsUserMark (issue 19, item 6): a member of the sticky
// socket's group may mark its own process, but the mark must not let it
// keep a set-uid program of another user out of that user's rules. A mark
// made by a non-root client is dropped when the task's uids change (the
// program is then classified by the rules); a mark made by root stays (as
// cgexec run by root: the program stays where it was put). With flags 1
// (children too), a child that execs the program loses the mark it
// inherited, and one that does not keeps it.
func TestStickySetuidDropsUserMark(t *testing.T) {
	requireDaemon(t)
	requireTools(t)
	identities(t)
	e := newEnv(t, []string{"cpu"}, "dest", "mine")
	e.writeRules("cgrecgtest  cpu  dest\n")
	d := e.startDaemon(dopts{extra: []string{"-g", "cgrecgroup"}})
	suid := setuidCopy(t, "cgrecgtest")
	sock := e.socketPath()
	uid, gid, other := uidOf(t, "cgresjo"), gidOf(t, "cgrecgroup"), uidOf(t, "cgrecgtest")
	mine, dest := e.cg("mine"), e.cg("dest")

	// start runs, as cgresjo, a shell that prints its pid, waits for a
	// line, then runs script (the set-uid copy is "$0").
	start := func(t *testing.T, script string) *lineProc {
		e := *e
		e.t = t
		p := e.startLines("setpriv", "--reuid="+uid, "--regid="+primaryGID(t, "cgresjo"), "--clear-groups",
			"/bin/sh", "-c", `echo $$; read a; `+script, suid, "-u", "cgrecgtest", "-die-with-parent")
		if pid := p.nextPid(t); pid != p.pid {
			t.Fatalf("the shell says pid %d, want %d", pid, p.pid)
		}
		placeIn(t, p.pid, e.path("cpu", "mine"))
		return p
	}
	mark := func(t *testing.T, pid int, flags uint32, asUID, asGID string) {
		t.Helper()
		if got := stickyClient(t, sock, pid, flags, asUID, asGID); got != "reply" {
			t.Fatalf("marking pid %d (flags %d) as uid %s: %q", pid, flags, asUID, got)
		}
	}

	t.Run("user-mark/program", func(t *testing.T) {
		p := start(t, `exec "$0" "$@"`)
		mark(t, p.pid, 0, uid, gid)
		fmt.Fprintln(p.stdin)
		if pid := p.nextPid(t); pid != p.pid {
			t.Fatalf("the set-uid program runs as pid %d, want %d", pid, p.pid)
		}
		if got := euidOf(t, p.pid); got != other {
			t.Fatalf("the set-uid program's euid is %s, want %s (set-uid not honoured here?)", got, other)
		}
		waitCgroup(t, p.pid, "cpu", dest, 2*time.Second)
		d.waitLog(0, regexp.MustCompile(`msg="sticky: unmarked" pid=`+strconv.Itoa(p.pid)+` reason=uid_change`), time.Second)
	})
	t.Run("root-mark/program", func(t *testing.T) {
		p := start(t, `exec "$0" "$@"`)
		mark(t, p.pid, 0, "0", "0")
		fmt.Fprintln(p.stdin)
		p.nextPid(t)
		if got := euidOf(t, p.pid); got != other {
			t.Fatalf("the set-uid program's euid is %s, want %s", got, other)
		}
		expectCgroupStays(t, p.pid, "cpu", mine, 700*time.Millisecond)
	})
	t.Run("user-mark/children", func(t *testing.T) {
		// The child that runs the set-uid program prints its pid; the one
		// that sleeps is the shell's $! (printed by the shell first).
		p := start(t, `sleep 600 & echo $!; "$0" "$@" & wait`)
		mark(t, p.pid, 1, uid, gid)
		fmt.Fprintln(p.stdin)
		sleeper := p.nextPid(t)
		child := p.nextPid(t)
		t.Cleanup(func() { _ = syscall.Kill(child, syscall.SIGKILL); _ = syscall.Kill(sleeper, syscall.SIGKILL) })
		waitCgroup(t, child, "cpu", dest, 2*time.Second)
		d.waitLog(0, regexp.MustCompile(`msg="sticky: unmarked" pid=`+strconv.Itoa(child)+` reason=uid_change`), time.Second)
		// The other child inherited the mark and keeps it: exec'ing a
		// program that changes no uid is not a reason to drop it.
		d.waitLog(0, regexp.MustCompile(`msg="sticky: marked" by=fork children=true parent=`+strconv.Itoa(p.pid)+` pid=`+strconv.Itoa(sleeper)+`\b`), time.Second)
		expectCgroupStays(t, sleeper, "cpu", mine, 300*time.Millisecond)
		if regexp.MustCompile(`msg="sticky: unmarked" pid=` + strconv.Itoa(sleeper) + `\b`).MatchString(d.log()) {
			t.Errorf("the child that changed no uid lost its mark:\n%s", d.log())
		}
	})
}
