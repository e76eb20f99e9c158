package bpfevents

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/cgrulesengd/cgrulesengd/internal/kernel"
	"github.com/cgrulesengd/cgrulesengd/tests/eventlock"
)

// Ids of the coverage cases: below 65536, for the 16-bit system calls. No
// user or group needs to exist.
const (
	covU1, covU2     = 42001, 42002 // uids
	covG1, covG2     = 42011, 42012 // gids
	covSentinel      = 42009        // the sentinel's uid: ends each case
	covUnnamed       = 42099        // a uid no filter names
	covStickyPause   = "300"        // ms the sticky cases' helper waits to be marked
	covNamed         = "cgre-named" // the name of a copy of the helper that rows name
	covSettleTimeout = 10 * time.Second
)

// covCase is a row of the coverage table: the setid helper runs ops (as
// root) under the filter, while both sources listen.
type covCase struct {
	name   string
	i386   bool     // run the i386 helper (compat system calls)
	ops    []string // "$SUIDROOT", "$SGID", "$SUIDU2" name the set-ID copies of the native helper, "$NAMED" a plain copy named covNamed
	filter Filter
	sticky bool // the helper is marked sticky (children too) before its ops
	// stickyBy: the uid of the client that made the sticky mark (0: root).
	// A user's mark still reports credential changes, which end it.
	stickyBy uint32
	// execNamed: the roles (0 = the helper, then its children in fork
	// order) whose first exec passes the name prefilter; a later exec of
	// the same role does not (the rows' later execs run /bin/true).
	execNamed []int
	// want: keys both sources must report (and only ever the model's).
	want []string
}

// The coverage table: every way a task's euid or egid changes, and the
// process events of hot and sticky processes. TestIntegrationCoverage runs
// each row against both sources at once, and checks that the BPF source
// reports exactly what the proc connector reports, filtered as the kernel
// side filters (see expectBPF): the same credential changes, forks, execs
// and exits.
var covCases = []covCase{
	{name: "setuid", ops: []string{"uid", u(covU1)}, filter: Filter{UIDs: ids(covU1)}, want: []string{"0 EXIT", "0 UID " + u(covU1)}},
	{name: "setreuid", ops: []string{"reuid", "-1", u(covU1)}, filter: Filter{UIDs: ids(covU1)}, want: []string{"0 EXIT", "0 UID " + u(covU1)}},
	{name: "setresuid", ops: []string{"resuid", "-1", u(covU1), "-1"}, filter: Filter{UIDs: ids(covU1)}, want: []string{"0 EXIT", "0 UID " + u(covU1)}},
	// setfsuid never changes the euid; the proc connector reports it (the
	// fsuid changed), and so does the BPF source when euid or egid is named.
	{name: "setfsuid", ops: []string{"gid", u(covG1), "fsuid", u(covU1)}, filter: Filter{GIDs: ids(covG1)}, want: []string{"0 EXIT", "0 GID " + u(covG1), "0 UID 0"}},
	{name: "setgid", ops: []string{"gid", u(covG1)}, filter: Filter{GIDs: ids(covG1)}, want: []string{"0 EXIT", "0 GID " + u(covG1)}},
	{name: "setregid", ops: []string{"regid", "-1", u(covG1)}, filter: Filter{GIDs: ids(covG1)}, want: []string{"0 EXIT", "0 GID " + u(covG1)}},
	{name: "setresgid", ops: []string{"resgid", "-1", u(covG1), "-1"}, filter: Filter{GIDs: ids(covG1)}, want: []string{"0 EXIT", "0 GID " + u(covG1)}},
	{name: "setfsgid", ops: []string{"gid", u(covG1), "fsgid", "0"}, filter: Filter{GIDs: ids(covG1)}, want: []string{"0 EXIT", "0 GID " + u(covG1), "0 GID " + u(covG1)}},
	// setgroups changes no uid or gid: neither source reports it.
	{name: "setgroups", ops: []string{"groups", u(covG1), "uid", u(covU1)}, filter: Filter{UIDs: ids(covU1), GIDs: ids(covG1)}, want: []string{"0 EXIT", "0 UID " + u(covU1)}},
	{name: "unnamed setuid", ops: []string{"uid", u(covUnnamed)}, filter: Filter{UIDs: ids(covU1)}},
	{name: "any", ops: []string{"resgid", u(covG2), u(covG2), u(covG2), "resuid", u(covUnnamed), u(covUnnamed), u(covUnnamed)}, filter: Filter{Any: true},
		want: []string{"0 EXIT", "0 GID " + u(covG2), "0 UID " + u(covUnnamed)}},

	{name: "i386 setuid32", i386: true, ops: []string{"uid", u(covU1)}, filter: Filter{UIDs: ids(covU1)}, want: []string{"0 EXIT", "0 UID " + u(covU1)}},
	{name: "i386 setreuid32", i386: true, ops: []string{"reuid", "-1", u(covU1)}, filter: Filter{UIDs: ids(covU1)}, want: []string{"0 EXIT", "0 UID " + u(covU1)}},
	{name: "i386 setresuid32", i386: true, ops: []string{"resuid", "-1", u(covU1), "-1"}, filter: Filter{UIDs: ids(covU1)}, want: []string{"0 EXIT", "0 UID " + u(covU1)}},
	{name: "i386 setfsuid32", i386: true, ops: []string{"gid", u(covG1), "fsuid", u(covU1)}, filter: Filter{GIDs: ids(covG1)}, want: []string{"0 EXIT", "0 GID " + u(covG1), "0 UID 0"}},
	{name: "i386 setgid32", i386: true, ops: []string{"gid", u(covG1)}, filter: Filter{GIDs: ids(covG1)}, want: []string{"0 EXIT", "0 GID " + u(covG1)}},
	{name: "i386 setregid32", i386: true, ops: []string{"regid", "-1", u(covG1)}, filter: Filter{GIDs: ids(covG1)}, want: []string{"0 EXIT", "0 GID " + u(covG1)}},
	{name: "i386 setresgid32", i386: true, ops: []string{"resgid", "-1", u(covG1), "-1"}, filter: Filter{GIDs: ids(covG1)}, want: []string{"0 EXIT", "0 GID " + u(covG1)}},
	{name: "i386 setfsgid32", i386: true, ops: []string{"gid", u(covG1), "fsgid", "0"}, filter: Filter{GIDs: ids(covG1)}, want: []string{"0 EXIT", "0 GID " + u(covG1), "0 GID " + u(covG1)}},
	{name: "i386 setuid (16-bit)", i386: true, ops: []string{"uid16", u(covU1)}, filter: Filter{UIDs: ids(covU1)}, want: []string{"0 EXIT", "0 UID " + u(covU1)}},
	{name: "i386 setresuid (16-bit)", i386: true, ops: []string{"resuid16", "65535", u(covU1), "65535"}, filter: Filter{UIDs: ids(covU1)}, want: []string{"0 EXIT", "0 UID " + u(covU1)}},
	{name: "i386 setgid (16-bit)", i386: true, ops: []string{"gid16", u(covG1)}, filter: Filter{GIDs: ids(covG1)}, want: []string{"0 EXIT", "0 GID " + u(covG1)}},
	{name: "i386 setresgid (16-bit)", i386: true, ops: []string{"resgid16", "65535", u(covG1), "65535"}, filter: Filter{GIDs: ids(covG1)}, want: []string{"0 EXIT", "0 GID " + u(covG1)}},

	// glibc changes every thread, each with its own system call.
	{name: "multi-threaded setuid", ops: []string{"threads", "3", "resuid", u(covU1), u(covU1), u(covU1)}, filter: Filter{UIDs: ids(covU1)},
		want: []string{"0 EXIT", "0 UID " + u(covU1), "0 UID " + u(covU1), "0 UID " + u(covU1), "0 UID " + u(covU1)}},
	{name: "exec of a set-user-ID root program", ops: []string{"resuid", u(covU1), u(covU1), u(covU1), "exec", "$SUIDROOT"}, filter: Filter{UIDs: ids(covU1, 0)},
		want: []string{"0 EXIT", "0 UID " + u(covU1), "0 UID 0"}},
	{name: "exec of a set-user-ID program", ops: []string{"resuid", u(covU1), u(covU1), u(covU1), "exec", "$SUIDU2"}, filter: Filter{UIDs: ids(covU1, covU2)},
		want: []string{"0 EXIT", "0 UID " + u(covU1), "0 UID " + u(covU2)}},
	{name: "exec of a set-group-ID program", ops: []string{"resuid", u(covU1), u(covU1), u(covU1), "exec", "$SGID"}, filter: Filter{UIDs: ids(covU1), GIDs: ids(covG1)},
		want: []string{"0 EXIT", "0 UID " + u(covU1), "0 GID " + u(covG1)}},

	{name: "hot fork, exec, exit", ops: []string{"resuid", u(covU1), u(covU1), u(covU1), "fork", "fork", "exec", "/bin/true"},
		filter: Filter{UIDs: ids(covU1), Processes: []string{"true"}}, execNamed: []int{2},
		want: []string{"0 UID " + u(covU1), "0>1 FORK", "1>2 FORK", "2 EXEC", "2 EXIT", "1 EXIT", "0 EXIT"}},
	{name: "exec by name", ops: []string{"fork", "exec", "/bin/true"}, filter: Filter{Processes: []string{"/usr/bin/true"}}, execNamed: []int{1},
		want: []string{"1 EXEC", "1 EXIT"}},
	// A task that leaves a named program by an exec is reported whatever
	// it runs next (a process rule may have put it where it is), and so is
	// a child of a named program (it runs the same program until its exec).
	{name: "exec away from a named program", ops: []string{"fork", "exec", "$NAMED", "exec", "/bin/true"},
		filter: Filter{Processes: []string{covNamed}}, execNamed: []int{1},
		want: []string{"1 EXEC", "1 EXEC", "1 EXIT"}},
	{name: "exec by the child of a named program", ops: []string{"fork", "exec", "$NAMED", "fork", "exec", "/bin/true"},
		filter: Filter{Processes: []string{covNamed}}, execNamed: []int{1},
		want: []string{"1 EXEC", "1>2 FORK", "2 EXEC", "2 EXIT", "1 EXIT"}},
	{name: "exec away from an unnamed program", ops: []string{"fork", "exec", "/bin/true"},
		filter: Filter{Processes: []string{covNamed}}},
	{name: "sticky inheritance", ops: []string{"sleep", covStickyPause, "fork", "fork", "resuid", u(covU1), u(covU1), u(covU1), "exec", "/bin/true"},
		filter: Filter{UIDs: ids(covU1), Processes: []string{"true"}}, sticky: true, execNamed: []int{2},
		want: []string{"0>1 FORK", "1>2 FORK", "2 EXIT", "1 EXIT", "0 EXIT"}},
	// A user's mark (issue 19, item 6): the credential change is reported
	// (user space drops the mark when the uids are no longer the user's),
	// the exec of a named program is not.
	{name: "a user's sticky mark", ops: []string{"sleep", covStickyPause, "fork", "fork", "resuid", u(covU1), u(covU1), u(covU1), "exec", "/bin/true"},
		filter: Filter{UIDs: ids(covU1), Processes: []string{"true"}}, sticky: true, stickyBy: covU2, execNamed: []int{2},
		want: []string{"0>1 FORK", "1>2 FORK", "2 UID " + u(covU1), "2 EXIT", "1 EXIT", "0 EXIT"}},
}

func u(id int) string { return strconv.Itoa(id) }

func ids(v ...uint32) []uint32 { return v }

// TestIntegrationCoverage runs the coverage table against both sources:
// with the hooks this kernel allows and, where that is commit_creds, again
// with the system call hooks.
func TestIntegrationCoverage(t *testing.T) {
	eventlock.Hold(t)
	requireRoot(t)
	h := buildHelpers(t)
	suid := setIDCopies(t, h.native)
	modes := []struct {
		name string
		o    options
	}{{"best hooks", options{}}}
	if err := commitHookAllowed(nil); err == nil {
		modes = append(modes, struct {
			name string
			o    options
		}{"system call hooks", options{noCommitHook: true}})
	} else {
		t.Logf("commit_creds cannot be hooked here (%v): the table runs with the system call hooks only", err)
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) { coverage(t, h, suid, m.o) })
	}
}

func coverage(t *testing.T, h helpers, suid map[string]string, o options) {
	for _, c := range covCases {
		t.Run(c.name, func(t *testing.T) {
			bin := h.native
			if c.i386 {
				if h.i386 == "" {
					t.Skip(h.noI386)
				}
				bin = h.i386
			}
			ops := make([]string, len(c.ops))
			for i, op := range c.ops {
				if p, ok := suid[op]; ok {
					if p == "" {
						t.Skipf("%s: the helper's directory is on a nosuid file system", op)
					}
					op = p
				}
				ops[i] = op
			}
			runCoverage(t, c, bin, ops, o)
		})
	}
}

// setIDCopies makes copies of the native helper: owned by root with the
// set-user-ID bit, by uid covU2 with it, and by group covG1 with the
// set-group-ID bit (they run with no operation: exec and exit), and one
// without set-ID bits named covNamed.
func setIDCopies(t *testing.T, native string) map[string]string {
	var st unix.Statfs_t
	dir := filepath.Dir(native)
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(native)
	if err != nil {
		t.Fatal(err)
	}
	named := filepath.Join(dir, covNamed)
	if err := os.WriteFile(named, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if st.Flags&unix.ST_NOSUID != 0 {
		return map[string]string{"$SUIDROOT": "", "$SUIDU2": "", "$SGID": "", "$NAMED": named}
	}
	m := map[string]string{"$NAMED": named}
	for _, c := range []struct {
		name     string
		uid, gid int
		mode     os.FileMode
	}{
		{"$SUIDROOT", 0, 0, 0o755 | os.ModeSetuid},
		{"$SUIDU2", covU2, 0, 0o755 | os.ModeSetuid},
		{"$SGID", 0, covG1, 0o755 | os.ModeSetgid},
	} {
		p := filepath.Join(dir, "setid-"+strings.ToLower(strings.TrimPrefix(c.name, "$")))
		if err := os.WriteFile(p, b, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, c.uid, c.gid); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, c.mode); err != nil {
			t.Fatal(err)
		}
		m[c.name] = p
	}
	return m
}

// runCoverage runs one row: both sources listen, the helper runs, then a
// sentinel process changes its uid to covSentinel; both streams are read up
// to the sentinel's UID event, which comes after everything the row did.
func runCoverage(t *testing.T, c covCase, bin string, ops []string, o options) {
	nl, err := kernel.Listen(kernel.Config{Events: kernel.EventFork | kernel.EventExec | kernel.EventUID | kernel.EventGID | kernel.EventExit})
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	s, err := open(Config{}, o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f := c.filter
	f.UIDs = append(slices.Clone(f.UIDs), covSentinel)
	if err := s.SetFilter(f); err != nil {
		t.Fatal(err)
	}
	rn, rb := startReader(nl), startReader(s)

	cmd := exec.Command(bin, ops...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	helper := int32(cmd.Process.Pid)
	if c.sticky {
		if err := s.MarkSticky(helper, true, c.stickyBy); err != nil {
			t.Fatal(err)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("setid %s: %v: %s", strings.Join(ops, " "), err, stderr.String())
	}
	sentinel := runSetid(t, bin, "resuid", u(covSentinel), u(covSentinel), u(covSentinel))
	isSentinel := func(e kernel.Event) bool {
		return e.What == kernel.EventUID && e.TGID == sentinel && e.EUID == covSentinel
	}
	nlEvents := rn.until(t, covSettleTimeout, isSentinel)
	bpfEvents := rb.until(t, covSettleTimeout, isSentinel)

	roles := rolesOf(helper, nlEvents)
	expected := expectBPF(c, roles, nlEvents)
	got := keys(roles, bpfEvents)
	t.Logf("proc connector, filtered as the kernel filters: %v", expected)
	t.Logf("BPF source: %v", got)
	if !slices.Equal(expected, got) {
		t.Errorf("the sources differ:\n  proc connector (filtered): %v\n  BPF source:                %v", expected, got)
	}
	want := slices.Clone(c.want)
	slices.Sort(want)
	if !slices.Equal(want, got) {
		t.Errorf("the BPF source reported %v, want %v", got, want)
	}
	if st := s.Stats(); st.Lost != 0 || st.Malformed != 0 {
		t.Errorf("stats %+v", st)
	}
}

// rolesOf numbers the row's processes: the helper 0, then its descendants
// in the order the proc connector reported their forks.
func rolesOf(helper int32, evs []kernel.Event) map[int32]int {
	roles := map[int32]int{helper: 0}
	for _, e := range evs {
		if e.What == kernel.EventFork && e.PID == e.TGID {
			if _, ok := roles[e.ParentTGID]; ok {
				if _, seen := roles[e.TGID]; !seen {
					roles[e.TGID] = len(roles)
				}
			}
		}
	}
	return roles
}

// expectBPF is the model of the kernel side: from the proc connector's
// complete stream, what the BPF source must report for the row's processes
// (as keys, sorted).
//   - a credential change, when the thread's new euid or egid is named and
//     the process is not sticky, or a user made its mark; it makes the
//     process hot;
//   - an exec whose name passes the prefilter (c.execNamed), or that leaves
//     a program whose name did (children run their parent's program until
//     they exec), of a process that is not sticky; it makes the process
//     hot;
//   - a fork of a hot process, or of a sticky one (children inherit), whose
//     child inherits the marks;
//   - an exit of a hot or sticky process.
//
// The proc connector's events carry the euid or the egid, not both: each
// thread's ids are followed from the helper's start (root's 0 and 0; a new
// thread or process inherits its creator's).
func expectBPF(c covCase, roles map[int32]int, evs []kernel.Event) []string {
	type ids struct{ euid, egid uint32 }
	creds := map[int32]ids{} // by thread id
	hot, sticky := map[int]bool{}, map[int]bool{}
	named := map[int]bool{} // the role's program passes the prefilter
	execs := map[int]int{}  // the role's execs so far
	helperExec := false     // the helper's own exec (the test's): not the row's
	if c.sticky {
		sticky[0] = true
	}
	namedIDs := func(x ids) bool {
		return c.filter.Any || slices.Contains(c.filter.UIDs, x.euid) || slices.Contains(c.filter.GIDs, x.egid)
	}
	var out []string
	for _, e := range evs {
		r, ok := roles[e.TGID]
		if !ok {
			continue
		}
		switch e.What {
		case kernel.EventFork:
			creds[e.PID] = creds[e.ParentPID]
			if e.PID != e.TGID {
				continue // a thread
			}
			p, ok := roles[e.ParentTGID]
			if ok && (hot[p] || sticky[p]) {
				out = append(out, fmt.Sprintf("%d>%d FORK", p, r))
				hot[r], sticky[r] = hot[p], sticky[p]
			}
			named[r] = named[p]
		case kernel.EventUID, kernel.EventGID:
			x := creds[e.PID]
			kind := "UID"
			if e.What == kernel.EventUID {
				x.euid = e.EUID
			} else {
				x.egid = e.EGID
				kind = "GID"
			}
			creds[e.PID] = x
			if (!sticky[r] || c.stickyBy != 0) && namedIDs(x) {
				id := x.euid
				if kind == "GID" {
					id = x.egid
				}
				out = append(out, fmt.Sprintf("%d %s %d", r, kind, id))
				hot[r] = true
			}
		case kernel.EventExec:
			if r == 0 && !helperExec {
				helperExec = true
				continue
			}
			passes := execs[r] == 0 && slices.Contains(c.execNamed, r)
			execs[r]++
			if !sticky[r] && (passes || named[r]) {
				out = append(out, fmt.Sprintf("%d EXEC", r))
				hot[r] = true
			}
			named[r] = passes
		case kernel.EventExit:
			if e.PID == e.TGID && (hot[r] || sticky[r]) {
				out = append(out, fmt.Sprintf("%d EXIT", r))
			}
		}
	}
	slices.Sort(out)
	return out
}

// keys are the BPF source's events of the row's processes, as expectBPF
// writes them, sorted.
func keys(roles map[int32]int, evs []kernel.Event) []string {
	var out []string
	for _, e := range evs {
		r, ok := roles[e.TGID]
		if !ok {
			continue
		}
		switch e.What {
		case kernel.EventFork:
			out = append(out, fmt.Sprintf("%d>%d FORK", roles[e.ParentTGID], r))
		case kernel.EventUID:
			out = append(out, fmt.Sprintf("%d UID %d", r, e.EUID))
		case kernel.EventGID:
			out = append(out, fmt.Sprintf("%d GID %d", r, e.EGID))
		case kernel.EventExec:
			out = append(out, fmt.Sprintf("%d EXEC", r))
		case kernel.EventExit:
			out = append(out, fmt.Sprintf("%d EXIT", r))
		}
	}
	slices.Sort(out)
	return out
}

// TestIntegrationSyscallTracepointsMissI386 shows why the source does not
// use the per-call system call tracepoints (syscalls:sys_exit_setuid and
// kin, through perf): on x86-64 they ignore i386 system calls
// (ARCH_TRACE_IGNORE_COMPAT_SYSCALLS), so a 32-bit program's setuid32 would
// go unseen, where the raw sys_exit tracepoint the source uses sees it.
func TestIntegrationSyscallTracepointsMissI386(t *testing.T) {
	requireRoot(t)
	h := buildHelpers(t)
	if h.i386 == "" {
		t.Skip(h.noI386)
	}
	id, err := tracepointID("syscalls/sys_exit_setuid")
	if err != nil {
		t.Skip(err)
	}
	count := func(bin string) uint64 {
		// The helper waits until the counter is attached to it.
		cmd := exec.Command(bin, "sleep", "200", "uid", u(covUnnamed))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		attr := unix.PerfEventAttr{Type: unix.PERF_TYPE_TRACEPOINT, Config: id, Size: uint32(unsafe.Sizeof(unix.PerfEventAttr{}))}
		fd, err := unix.PerfEventOpen(&attr, cmd.Process.Pid, -1, -1, unix.PERF_FLAG_FD_CLOEXEC)
		if err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("perf_event_open(syscalls:sys_exit_setuid): %v", err)
		}
		defer unix.Close(fd)
		if err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
		var b [8]byte
		if _, err := unix.Read(fd, b[:]); err != nil {
			t.Fatal(err)
		}
		return binary.NativeEndian.Uint64(b[:])
	}
	native, i386 := count(h.native), count(h.i386)
	t.Logf("syscalls:sys_exit_setuid fired %d times for a native setuid, %d for an i386 setuid32", native, i386)
	if native != 1 {
		t.Errorf("the tracepoint fired %d times for one native setuid", native)
	}
	if i386 != 0 {
		t.Logf("this kernel's syscall tracepoints see i386 calls: the per-call tracepoints would do here")
	}
}

// tracepointID reads a tracepoint's id from a tracefs mounted in a private
// mount namespace (the machine's mounts are not touched).
func tracepointID(name string) (uint64, error) {
	for _, dir := range []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"} {
		if b, err := os.ReadFile(dir + "/events/" + name + "/id"); err == nil {
			return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		}
	}
	cmd := exec.Command("unshare", "-m", "sh", "-c",
		"mount --make-rprivate / && mount -t tracefs nodev /sys/kernel/tracing && cat /sys/kernel/tracing/events/"+name+"/id")
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("reading the id of %s from a private tracefs: %w", name, err)
	}
	return strconv.ParseUint(strings.TrimSpace(string(out)), 10, 64)
}
