package proc

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// FS is a procfs tree rooted at a directory: "/proc" in production, a
// fixture tree in tests.
type FS struct {
	root string
}

// NewFS returns an FS rooted at root.
func NewFS(root string) FS {
	return FS{root: strings.TrimRight(root, "/")}
}

// Root returns the directory the FS reads from.
func (fs FS) Root() string {
	if fs.root == "" {
		return "/"
	}
	return fs.root
}

// Task is one process as the rules engine sees it.
type Task struct {
	PID, PPID  int // PID is the thread-group id, even when a thread id was asked for
	RUID, EUID uint32
	RGID, EGID uint32
	Comm       string // from status, unescaped
	Process    string // libcgroup's procname: not read by Task (see ProcName)
	Kernel     bool   // kernel thread (PF_KTHREAD)
}

// taskCommLen is TASK_COMM_LEN-1: comm is truncated to 15 bytes.
const taskCommLen = 15

// Task reads /proc/PID/status (Process stays empty: ProcName computes it,
// when a rule needs it). errors.Is(err, unix.ESRCH) when the task is gone.
//
// Kernel comes from status's "Kthread:" field, or, on kernels that do not
// report it, from PF_KTHREAD in /proc/PID/stat (a second read). "Parent is
// kthreadd" is not used: user-mode helpers (modprobe, core-dump pipes) are
// forked with CLONE_PARENT from a kworker and so have ppid 2 while being
// ordinary user processes.
func (fs FS) Task(pid int) (Task, error) {
	sc := getScratch()
	defer putScratch(sc)
	b, err := readInto(sc.pidPath(fs.root, pid, "status"), &sc.buf, true)
	if err != nil {
		return Task{}, goneErr(pid, "status", err)
	}
	st, err := parseStatusBytes(b, sc)
	if err != nil {
		return Task{}, fmt.Errorf("proc: pid %d: %w", pid, err)
	}
	t := Task{
		PID:    st.Tgid,
		PPID:   st.PPid,
		RUID:   st.Uid[0],
		EUID:   st.Uid[1],
		RGID:   st.Gid[0],
		EGID:   st.Gid[1],
		Comm:   st.Name,
		Kernel: st.Kthread == 1,
	}
	if st.Kthread < 0 {
		sst, err := fs.stat(sc, pid)
		if err != nil {
			return Task{}, err
		}
		t.Kernel = sst.Flags&pfKthread != 0
	}
	return t, nil
}

// RealTime reports whether pid runs under a realtime policy (SCHED_FIFO or
// SCHED_RR), from /proc/PID/stat. Such a task cannot join a v1 cpu cgroup
// without an rt_runtime_us budget (EINVAL), and "ignore_rt" rules skip it.
func (fs FS) RealTime(pid int) (bool, error) {
	sc := getScratch()
	defer putScratch(sc)
	st, err := fs.stat(sc, pid)
	if err != nil {
		return false, err
	}
	return st.Policy == schedFIFO || st.Policy == schedRR, nil
}

func (fs FS) stat(sc *scratch, pid int) (stat, error) {
	b, err := readInto(sc.pidPath(fs.root, pid, "stat"), &sc.buf, true)
	if err != nil {
		return stat{}, goneErr(pid, "stat", err)
	}
	st, err := parseStatBytes(b)
	if err != nil {
		return stat{}, fmt.Errorf("proc: pid %d: %w", pid, err)
	}
	return st, nil
}

// PIDs lists every thread-group id in the tree (the numeric directories of
// the root; threads are hidden from readdir by the kernel). The order is
// the kernel's, ascending in practice.
func (fs FS) PIDs() ([]int, error) {
	out, err := readDirInts(cstr(fs.Root()), make([]int, 0, 512))
	if err != nil {
		return nil, fmt.Errorf("proc: list %s: %w", fs.Root(), err)
	}
	return out, nil
}

// Threads lists the thread ids of pid (/proc/PID/task).
func (fs FS) Threads(pid int) ([]int, error) {
	sc := getScratch()
	defer putScratch(sc)
	return fs.threads(sc, pid)
}

func (fs FS) threads(sc *scratch, pid int) ([]int, error) {
	out, err := readDirInts(sc.pidPath(fs.root, pid, "task"), nil)
	if err != nil {
		return nil, goneErr(pid, "task", err)
	}
	return out, nil
}

// Children returns the union of /proc/PID/task/*/children: the processes
// whose parent is any thread of pid. It needs CONFIG_PROC_CHILDREN; without
// it the error wraps fs.ErrNotExist but not unix.ESRCH (pid itself exists).
// The list is a snapshot: children forked or re-parented meanwhile may be
// missed or stale, which is why the daemon also listens to FORK events.
func (fs FS) Children(pid int) ([]int, error) {
	sc := getScratch()
	defer putScratch(sc)
	tids, err := fs.threads(sc, pid)
	if err != nil {
		return nil, err
	}
	var out []int
	found := false
	for _, tid := range tids {
		b, err := readInto(sc.threadPath(fs.root, pid, tid, "children"), &sc.buf, false)
		if err != nil {
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
				continue // thread exited since the listing (or no CONFIG_PROC_CHILDREN)
			}
			return nil, fmt.Errorf("proc: pid %d: task/%d/children: %w", pid, tid, err)
		}
		found = true
		for len(b) > 0 {
			for len(b) > 0 && (b[0] == ' ' || b[0] == '\n') {
				b = b[1:]
			}
			j := 0
			for j < len(b) && b[j] != ' ' && b[j] != '\n' {
				j++
			}
			if j > 0 {
				v, ok := atoiBytes(b[:j])
				if !ok {
					return nil, fmt.Errorf("proc: pid %d: task/%d/children: %q: %w", pid, tid, b[:j], errMalformed)
				}
				out = append(out, int(v))
			}
			b = b[j:]
		}
	}
	if !found && len(tids) > 0 {
		// Either every thread exited in between, or the kernel lacks
		// CONFIG_PROC_CHILDREN: tell them apart by the task itself.
		if err := access(sc.pidPath(fs.root, pid, "")); err != nil {
			return nil, goneErr(pid, "children", err)
		}
		return nil, fmt.Errorf("proc: pid %d: task/*/children: %w", pid, unix.ENOENT)
	}
	if len(tids) == 0 {
		return nil, goneErr(pid, "task", unix.ENOENT)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// Cgroups parses /proc/PID/cgroup. The lines must not be modified: the
// lines of tasks whose files read the same are shared (tasks of one cgroup
// have the same file), which spares a parse and its allocations per call.
func (fs FS) Cgroups(pid int) ([]CgroupLine, error) {
	sc := getScratch()
	defer putScratch(sc)
	b, err := readInto(sc.pidPath(fs.root, pid, "cgroup"), &sc.buf, true)
	if err != nil {
		return nil, goneErr(pid, "cgroup", err)
	}
	if lines, ok := sc.cgroups[string(b)]; ok {
		return lines, nil
	}
	lines, err := parseCgroupBytes(b)
	if err != nil {
		return nil, fmt.Errorf("proc: pid %d: %w", pid, err)
	}
	if sc.cgroups == nil || len(sc.cgroups) >= maxCached {
		sc.cgroups = make(map[string][]CgroupLine)
	}
	sc.cgroups[string(b)] = slices.Clip(lines)
	return lines, nil
}

// ProcName computes libcgroup's process name for pid, whose comm (from
// status) is given:
//
//  1. exe = readlink /proc/PID/exe, with a trailing " (deleted)" removed.
//     If it cannot be read (kernel thread, zombie, EACCES), the name is comm,
//     as in libcgroup.
//  2. If comm equals exe's base name truncated to 15 bytes, the name is exe.
//  3. Otherwise (scripts: exe is the interpreter), the first argument in
//     /proc/PID/cmdline whose base name, truncated to 15 bytes, equals comm
//     decides: an absolute argument is the name; a relative one is joined to
//     /proc/PID/cwd and resolved with filepath.EvalSymlinks (libcgroup's
//     realpath(3), which also requires that the file exists in our mount
//     namespace); if that fails the name is exe.
//  4. Otherwise the name is exe.
//
// Deviations from libcgroup, all where it would give a worse answer: the
// " (deleted)" suffix is stripped; comm is unescaped (see Task); cwd is
// read only when a relative argument needs it (libcgroup reads it first and
// falls back to exe when it cannot, even for an absolute argument).
//
// errors.Is(err, unix.ESRCH) when the task is gone.
func (fs FS) ProcName(pid int, comm string) (string, error) {
	sc := getScratch()
	defer putScratch(sc)
	return fs.procName(sc, pid, comm)
}

func (fs FS) procName(sc *scratch, pid int, comm string) (string, error) {
	exeb, err := readlinkInto(sc.pidPath(fs.root, pid, "exe"), &sc.buf)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			// No exe: a kernel thread or a zombie, or the task is gone.
			if aerr := access(sc.pidPath(fs.root, pid, "")); aerr != nil {
				return "", goneErr(pid, "exe", aerr)
			}
		}
		return comm, nil
	}
	exeb = bytes.TrimSuffix(exeb, []byte(" (deleted)"))
	exe := sc.intern(exeb)
	if commMatches(exe, comm) {
		return exe, nil
	}
	cmdline, err := readInto(sc.pidPath(fs.root, pid, "cmdline"), &sc.buf, false)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return "", goneErr(pid, "cmdline", err)
		}
		return exe, nil
	}
	for len(cmdline) > 0 {
		var arg []byte
		if i := bytes.IndexByte(cmdline, 0); i >= 0 {
			arg, cmdline = cmdline[:i], cmdline[i+1:]
		} else {
			arg, cmdline = cmdline, nil
		}
		if !commMatches(arg, comm) {
			continue
		}
		if len(arg) > 0 && arg[0] == '/' {
			return string(arg), nil
		}
		cwd, err := readlink(sc.pidPath(fs.root, pid, "cwd"))
		if err != nil {
			return exe, nil
		}
		real, err := filepath.EvalSymlinks(filepath.Join(cwd, string(arg)))
		if err != nil {
			return exe, nil
		}
		return real, nil
	}
	return exe, nil
}

// commMatches reports whether comm equals the base name of p truncated to
// TASK_COMM_LEN-1 bytes: libcgroup's strncmp(comm, basename(p), 15) == 0,
// with POSIX basename (trailing slashes ignored).
func commMatches[T ~string | ~[]byte](p T, comm string) bool {
	for len(p) > 1 && p[len(p)-1] == '/' {
		p = p[:len(p)-1]
	}
	base := p
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			base = p[i+1:]
			break
		}
	}
	if len(base) > taskCommLen {
		base = base[:taskCommLen]
	}
	return string(base) == comm
}

// ThreadCreds returns the effective uid and gid of thread tid of process
// pid, from /proc/PID/task/TID/status. A credential change of a
// multi-threaded process reaches its threads one at a time; the thread that
// reported it to the kernel's connector already has the new ids while the
// main thread (/proc/PID/status) may not. errors.Is(err, unix.ESRCH) when the
// thread is gone (or tid is not a thread of pid).
func (fs FS) ThreadCreds(pid, tid int) (euid, egid uint32, err error) {
	sc := getScratch()
	defer putScratch(sc)
	b, err := readInto(sc.threadPath(fs.root, pid, tid, "status"), &sc.buf, true)
	if err != nil {
		return 0, 0, goneErr(pid, "task/"+strconv.Itoa(tid)+"/status", err)
	}
	st, err := parseStatusBytes(b, sc)
	if err != nil {
		return 0, 0, fmt.Errorf("proc: pid %d thread %d: %w", pid, tid, err)
	}
	return st.Uid[1], st.Gid[1], nil
}
