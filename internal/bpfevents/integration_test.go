package bpfevents

import (
	"errors"
	"fmt"
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

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/cgrulesengd/cgrulesengd/internal/kernel"
	"github.com/cgrulesengd/cgrulesengd/tests/eventlock"
	"github.com/cgrulesengd/cgrulesengd/tests/syscount"
)

func TestIntegrationOpenCloseNoLeak(t *testing.T) {
	requireRoot(t)
	checkFDs(t)
	var took []time.Duration
	for range 5 {
		start := time.Now()
		s, err := Open(Config{})
		if err != nil {
			t.Fatal(err)
		}
		took = append(took, time.Since(start))
		// The links hold the programs: an open source keeps no program or
		// BTF descriptor (a daemon under a tight open-file limit needs
		// them), only its maps, links and the ring buffer's poller.
		if n := fdsOfKind(t, "anon_inode:bpf-prog", "anon_inode:btf"); n != 0 {
			t.Errorf("an open source holds %d program or BTF descriptors, want 0", n)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		if _, err := s.Read(nil); !errors.Is(err, kernel.ErrClosed) {
			t.Errorf("Read after Close: %v, want kernel.ErrClosed", err)
		}
		if err := s.MarkHot(1); !errors.Is(err, ErrClosed) {
			t.Errorf("MarkHot after Close: %v, want ErrClosed", err)
		}
		if err := s.SetFilter(Filter{Any: true}); !errors.Is(err, ErrClosed) {
			t.Errorf("SetFilter after Close: %v, want ErrClosed", err)
		}
		if _, err := s.MapMemory(); !errors.Is(err, ErrClosed) {
			t.Errorf("MapMemory after Close: %v, want ErrClosed", err)
		}
	}
	slices.Sort(took)
	t.Logf("Open (load the kernel's BTF, load and attach the programs): median %v, max %v", took[len(took)/2], took[len(took)-1])
}

func TestIntegrationCloseWakesRead(t *testing.T) {
	requireRoot(t)
	checkFDs(t)
	s, err := Open(Config{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		buf := make([]kernel.Event, 0, 8)
		for {
			if _, err := s.Read(buf[:0]); err != nil {
				done <- err
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond) // into epoll_wait: nothing is named
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, kernel.ErrClosed) {
			t.Errorf("Read after Close: %v, want kernel.ErrClosed", err)
		}
		t.Logf("Read returned %v after Close", time.Since(start))
	case <-time.After(time.Second):
		t.Fatal("Read still blocked 1 s after Close")
	}
}

// TestIntegrationIdleReaderSleeps: with a filter that names no one active,
// a reader's thread makes no system call and is not switched to in 3 s,
// whatever the machine does (other tests fork and exec meanwhile).
func TestIntegrationIdleReaderSleeps(t *testing.T) {
	requireRoot(t)
	s := openSource(t, Config{})
	if err := s.SetFilter(Filter{UIDs: []uint32{covU1}, Processes: []string{"cgre-no-such-program"}}); err != nil {
		t.Fatal(err)
	}
	tids := make(chan int, 1)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // ends with the goroutine: the thread exits
		tids <- unix.Gettid()
		buf := make([]kernel.Event, 0, 8)
		for {
			evs, err := s.Read(buf[:0])
			if err != nil {
				done <- err
				return
			}
			t.Logf("woken by %+v", evs)
		}
	}()
	tid := <-tids
	time.Sleep(100 * time.Millisecond)
	calls, err := syscount.Thread(tid, false)
	if err != nil {
		t.Fatal(err)
	}
	defer calls.Close()
	sw0 := contextSwitches(t, tid)
	seen0 := s.Stats()
	time.Sleep(3 * time.Second)
	n, err := calls.Count()
	if err != nil {
		t.Fatal(err)
	}
	sw := contextSwitches(t, tid) - sw0
	seen := s.Stats()
	t.Logf("idle reader over 3 s: %d system calls, %d context switches; the programs saw %d credential changes and %d execs meanwhile",
		n, sw, seen.CredsSeen-seen0.CredsSeen, seen.ExecsSeen-seen0.ExecsSeen)
	if n != 0 || sw > 1 {
		t.Errorf("an idle reader woke: %d system calls and %d context switches in 3 s, want none", n, sw)
	}
	s.Close()
	select {
	case err := <-done:
		if !errors.Is(err, kernel.ErrClosed) {
			t.Errorf("Read after Close: %v", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Read still blocked 1 s after Close")
	}
}

// contextSwitches returns the context switches of thread tid of this
// process.
func contextSwitches(t testing.TB, tid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/status", tid))
	if err != nil {
		t.Fatal(err)
	}
	sum := 0
	for _, l := range strings.Split(string(b), "\n") {
		for _, p := range []string{"voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:"} {
			if v, ok := strings.CutPrefix(l, p); ok {
				n, _ := strconv.Atoi(strings.TrimSpace(v))
				sum += n
			}
		}
	}
	return sum
}

// TestIntegrationReadOneSyscallPerWake: a Read makes at most one system
// call, epoll_wait when the ring is empty, and reads the records from
// shared memory.
// Counted on the reader's locked thread while inside Read, as the kernel
// package's test of the same name does (the runtime's futex, sched_yield and
// rt_sigreturn, and the kernel's restarts, are logged, not counted).
func TestIntegrationReadOneSyscallPerWake(t *testing.T) {
	requireRoot(t)
	h := buildHelpers(t)
	s := openSource(t, Config{})
	if err := s.SetFilter(Filter{UIDs: []uint32{covU1}}); err != nil {
		t.Fatal(err)
	}
	const children = 20
	go func() { // on another thread
		for range children {
			time.Sleep(10 * time.Millisecond)
			if err := exec.Command(h.native, "resuid", u(covU1), u(covU1), u(covU1)).Run(); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	watchdog := time.AfterFunc(10*time.Second, func() { s.Close() })
	defer watchdog.Stop()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	counter := func(k *syscount.Counter, err error) *syscount.Counter {
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(k.Close)
		return k
	}
	waits := fmt.Sprintf("(id == %d || id == %d)", unix.SYS_EPOLL_WAIT, unix.SYS_EPOLL_PWAIT)
	polls := counter(syscount.ThreadReturns(0, false, waits+" && (ret < -516 || ret > -512)"))
	restarts := counter(syscount.ThreadReturns(0, false, waits+" && ret >= -516 && ret <= -512"))
	others := counter(syscount.ThreadFilter(0, false, fmt.Sprintf("id != %d && id != %d && id != %d && id != %d && id != %d && id != %d",
		unix.SYS_READ, unix.SYS_EPOLL_WAIT, unix.SYS_EPOLL_PWAIT, unix.SYS_FUTEX, unix.SYS_SCHED_YIELD, unix.SYS_RT_SIGRETURN)))
	runtimes := counter(syscount.ThreadFilter(0, false, fmt.Sprintf("id == %d || id == %d || id == %d", unix.SYS_FUTEX, unix.SYS_SCHED_YIELD, unix.SYS_RT_SIGRETURN)))
	ks := []*syscount.Counter{polls, others, restarts, runtimes}
	snap := func() (v [4]int) {
		for i, k := range ks {
			n, err := k.Count()
			if err != nil {
				t.Fatal(err)
			}
			v[i] = int(n)
		}
		return v
	}
	buf := make([]kernel.Event, 0, 64)
	reads, changes := 0, 0 // no one else changes to covU1
	var in [4]int
	start := time.Now()
	for changes < children {
		v0 := snap()
		evs, err := s.Read(buf[:0])
		v1 := snap()
		for i := range in {
			in[i] += v1[i] - v0[i]
		}
		if err != nil {
			t.Fatalf("after %v: %v", time.Since(start), err)
		}
		reads++
		for _, e := range evs {
			if e.What == kernel.EventUID && e.EUID == covU1 {
				changes++
			}
		}
	}
	t.Logf("%d Reads over %v: %d epoll_wait and %d other system calls; %d epoll_wait restarted by the kernel, %d calls of the runtime",
		reads, time.Since(start).Round(time.Millisecond), in[0], in[1], in[2], in[3])
	// A Read that finds records already in the ring makes none.
	if in[0] > reads || in[1] != 0 {
		t.Errorf("%d Reads made %d epoll_wait and %d other system calls: want at most one epoll_wait each", reads, in[0], in[1])
	}
}

// buildStorm compiles tests/tools/storm.c (the end-to-end tests' fork
// storm) into the helpers' directory.
func buildStorm(t testing.TB) string {
	t.Helper()
	buildHelpers(t)
	bin := filepath.Join(helpersDir, "storm")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	src, _ := filepath.Abs("../../tests/tools/storm.c")
	if out, err := exec.Command("gcc", "-O2", "-Wall", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc storm.c: %v: %s", err, out)
	}
	return bin
}

// runStorm runs the storm tool (children changing their uid to uid) for
// secs seconds and returns the children it made.
func runStorm(t testing.TB, bin string, procs, secs int, uid uint32) uint64 {
	t.Helper()
	out, err := exec.Command(bin, "-p", strconv.Itoa(procs), "-s", strconv.Itoa(secs), "-u", strconv.Itoa(int(uid))).Output()
	if err != nil {
		t.Fatalf("storm: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	f := strings.Fields(lines[len(lines)-1])
	if len(f) < 2 || f[0] != "forks" {
		t.Fatalf("storm printed %q", out)
	}
	n, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestIntegrationUnnamedStormSilent: a fork and setuid storm by a user no
// rule names reaches the programs, and none of it reaches user space.
func TestIntegrationUnnamedStormSilent(t *testing.T) {
	eventlock.Hold(t)
	requireRoot(t)
	storm := buildStorm(t)
	s := openSource(t, Config{})
	if err := s.SetFilter(Filter{UIDs: []uint32{covU1}, GIDs: []uint32{covG1}, Processes: []string{"cgre-no-such-program"}}); err != nil {
		t.Fatal(err)
	}
	r := startReader(s)
	before := s.Stats()
	children := runStorm(t, storm, 2, 2, covUnnamed)
	got := r.during(200 * time.Millisecond)
	after := s.Stats()
	t.Logf("storm: %d children; the programs saw %d credential changes, user space got %d events", children, after.CredsSeen-before.CredsSeen, len(got))
	if after.CredsSeen-before.CredsSeen < children {
		t.Errorf("the programs saw %d credential changes for %d children", after.CredsSeen-before.CredsSeen, children)
	}
	for _, e := range got {
		t.Errorf("delivered %+v", e)
	}
}

// TestIntegrationSettle: a hot process's forks are reported until user
// space settles it; after the settle (and the slack) they are not, until
// its credentials change again.
func TestIntegrationSettle(t *testing.T) {
	requireRoot(t)
	h := buildHelpers(t)
	s := openSource(t, Config{})
	if err := s.SetFilter(Filter{UIDs: []uint32{covU1, covU2}}); err != nil {
		t.Fatal(err)
	}
	r := startReader(s)
	cmd := exec.Command(h.native, "reuid", "-1", u(covU1), "sleep", "300", "spawn", "reuid", "-1", "0", "reuid", "-1", u(covU2), "spawn")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := int32(cmd.Process.Pid)
	first := r.until(t, 5*time.Second, func(e kernel.Event) bool { return e.What == kernel.EventUID && e.TGID == pid })
	ev := first[len(first)-1]
	if err := s.Settled(pid, ev.Timestamp, kernel.Now()); err != nil {
		t.Fatal(err)
	}
	var forks []int32
	var second bool
	r.until(t, 5*time.Second, func(e kernel.Event) bool {
		switch {
		case e.What == kernel.EventFork && e.ParentTGID == pid:
			forks = append(forks, e.TGID)
		case e.What == kernel.EventUID && e.TGID == pid && e.EUID == covU2:
			second = true
		}
		return e.What == kernel.EventExit && e.TGID == pid
	})
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if !second {
		t.Errorf("the second change (euid %d) was not reported", covU2)
	}
	if len(forks) != 1 {
		t.Fatalf("forks reported: %v; want one: the one after the second change, not the one after the settle", forks)
	}
}

// TestIntegrationHotTTL: the forks of a hot process nobody settles are
// reported for Config.HotTTL, then no longer.
func TestIntegrationHotTTL(t *testing.T) {
	requireRoot(t)
	h := buildHelpers(t)
	s := openSource(t, Config{HotTTL: 200 * time.Millisecond})
	if err := s.SetFilter(Filter{UIDs: []uint32{covU1}}); err != nil {
		t.Fatal(err)
	}
	r := startReader(s)
	pid := runSetid(t, h.native, "resuid", u(covU1), u(covU1), u(covU1), "spawn", "sleep", "500", "spawn")
	var forks int
	r.until(t, 5*time.Second, func(e kernel.Event) bool {
		if e.What == kernel.EventFork && e.ParentTGID == pid {
			forks++
		}
		return e.What == kernel.EventExit && e.TGID == pid
	})
	if forks != 1 {
		t.Errorf("%d forks reported, want 1: the one within the TTL", forks)
	}
}

// TestIntegrationMarkHotAndCool: MarkHot makes a process's forks reported
// (and its exit), Cool stops it.
func TestIntegrationMarkHotAndCool(t *testing.T) {
	requireRoot(t)
	h := buildHelpers(t)
	s := openSource(t, Config{})
	r := startReader(s)
	cmd := exec.Command(h.native, "sleep", "200", "spawn", "sleep", "500", "spawn", "sleep", "300")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := int32(cmd.Process.Pid)
	if err := s.MarkHot(pid); err != nil {
		t.Fatal(err)
	}
	evs := r.until(t, 5*time.Second, func(e kernel.Event) bool { return e.What == kernel.EventFork && e.ParentTGID == pid })
	first := evs[len(evs)-1].TGID
	if err := s.Cool(pid); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	for _, e := range r.during(200 * time.Millisecond) {
		if e.TGID == first && e.What == kernel.EventExit {
			continue // the first child inherited the mark: its exit is reported
		}
		if e.TGID == pid || e.ParentTGID == pid {
			t.Errorf("after Cool: %+v", e)
		}
	}
}

// TestIntegrationWatchExit: a watched process's EXIT is reported, with its
// code; an unwatched one's is not.
func TestIntegrationWatchExit(t *testing.T) {
	requireRoot(t)
	h := buildHelpers(t)
	s := openSource(t, Config{})
	r := startReader(s)
	watched := exec.Command(h.native, "sleep", "200", "exec", "/nonexistent") // fails: exit 2
	other := exec.Command(h.native, "sleep", "200")
	for _, c := range []*exec.Cmd{watched, other} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.WatchExit(int32(watched.Process.Pid)); err != nil {
		t.Fatal(err)
	}
	if err := s.WatchExit(int32(other.Process.Pid)); err != nil {
		t.Fatal(err)
	}
	if err := s.UnwatchExit(int32(other.Process.Pid)); err != nil {
		t.Fatal(err)
	}
	watched.Wait()
	other.Wait()
	evs := r.until(t, 5*time.Second, func(e kernel.Event) bool { return e.What == kernel.EventExit && e.TGID == int32(watched.Process.Pid) })
	exit := evs[len(evs)-1]
	if exit.ExitCode != 2<<8 || exit.ExitSignal != uint32(syscall.SIGCHLD) || exit.ParentTGID != int32(os.Getpid()) {
		t.Errorf("exit %+v: want code 2<<8, SIGCHLD, parent %d", exit, os.Getpid())
	}
	for _, e := range append(evs, r.during(100*time.Millisecond)...) {
		if e.TGID == int32(other.Process.Pid) {
			t.Errorf("unwatched process reported: %+v", e)
		}
	}
}

// TestIntegrationStaleStickyMark: a sticky mark left for a pid (its process
// exited before the mark was stored) must not silence the next process with
// that pid: the kernel drops it when the pid is forked again. The pid is
// steered with ns_last_pid, a few pids ahead of where the kernel is
// (nothing else notices pids being skipped); other processes may take it
// first, so it is tried a few times.
func TestIntegrationStaleStickyMark(t *testing.T) {
	requireRoot(t)
	h := buildHelpers(t)
	s := openSource(t, Config{})
	if err := s.SetFilter(Filter{UIDs: []uint32{covU1}}); err != nil {
		t.Fatal(err)
	}
	r := startReader(s)
	for try := 0; try < 20; try++ {
		b, err := os.ReadFile("/proc/sys/kernel/ns_last_pid")
		if err != nil {
			t.Skipf("cannot steer pids: %v", err)
		}
		last, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		p := last + 10
		for ; ; p++ {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", p)); os.IsNotExist(err) {
				break
			}
		}
		if err := s.MarkSticky(int32(p), false, 0); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(strconv.Itoa(p-1)), 0); err != nil {
			t.Skipf("cannot steer pids: %v", err)
		}
		cmd := exec.Command(h.native, "resuid", u(covU1), u(covU1), u(covU1))
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		if cmd.Process.Pid != p {
			s.Unsticky(int32(p))
			continue
		}
		r.until(t, 5*time.Second, func(e kernel.Event) bool { return e.What == kernel.EventUID && e.TGID == int32(p) })
		t.Logf("pid %d reused after %d tries: its credential change was reported", p, try+1)
		return
	}
	t.Skip("could not get the intended pid in 20 tries (a busy machine)")
}

// TestIntegrationOverflow: with the reader stopped, a storm of named
// credential changes overflows a one-page ring buffer. Every event the
// programs tried to report is either delivered or counted as lost, the
// marker comes after the delivered backlog (and no loss is counted after
// it), and what happens after the marker is delivered.
func TestIntegrationOverflow(t *testing.T) {
	eventlock.Hold(t)
	requireRoot(t)
	storm := buildStorm(t)
	h := buildHelpers(t)
	s := openSource(t, Config{RingBuffer: os.Getpagesize()})
	if err := s.SetFilter(Filter{UIDs: []uint32{covU1}}); err != nil {
		t.Fatal(err)
	}
	children := runStorm(t, storm, 1, 1, covU1)
	time.Sleep(50 * time.Millisecond) // the last children's exits
	r := startReader(s)
	backlog := r.until(t, 5*time.Second, func(e kernel.Event) bool { return e.What == kernel.EventOverflow })
	// The marker ends the first batch; the rest of the ring's records
	// (reserved before the losses) follow it.
	rest := r.during(200 * time.Millisecond)
	st := s.Stats()
	t.Logf("storm: %d children (a UID and an EXIT event each); %d delivered before the marker and %d after, %d lost: %+v",
		children, len(backlog)-1, len(rest), st.LostRing, st)
	if st.LostRing == 0 || st.Lost != st.LostRing {
		t.Fatalf("no loss counted in a %d-byte ring: %+v", os.Getpagesize(), st)
	}
	if st.Events+st.LostRing != 2*children || st.Events != uint64(len(backlog)-1+len(rest)) {
		t.Errorf("%d delivered + %d lost != %d events tried: a loss went uncounted", st.Events, st.LostRing, 2*children)
	}
	for _, e := range rest {
		if e.What == kernel.EventOverflow {
			t.Errorf("a second marker in the backlog")
		}
	}
	// After the marker: delivered, and no second marker for the same loss.
	var pids []int32
	for range 10 {
		pids = append(pids, runSetid(t, h.native, "resuid", u(covU1), u(covU1), u(covU1)))
	}
	last := pids[len(pids)-1]
	after := r.until(t, 5*time.Second, func(e kernel.Event) bool { return e.What == kernel.EventExit && e.TGID == last })
	for _, p := range pids {
		if !slices.ContainsFunc(after, func(e kernel.Event) bool { return e.What == kernel.EventUID && e.TGID == p }) {
			t.Errorf("pid %d's credential change after the marker was not delivered", p)
		}
	}
	for _, e := range after {
		if e.What == kernel.EventOverflow {
			t.Errorf("a second marker: %+v", s.Stats())
		}
	}
	if st2 := s.Stats(); st2.Lost != st.Lost || st2.Overflows != 1 {
		t.Errorf("stats after the marker: %+v, before %+v", st2, st)
	}
}

// TestIntegrationOverflowThenRescan is TestOverflowGap's proof (tests/e2e)
// for this source: a credential change whose event is lost (the ring is
// full) is counted before the marker, and is already in /proc when it is
// counted (the programs run after the kernel committed the credentials), so
// a rescan that starts at the marker sees it; the event itself never comes.
func TestIntegrationOverflowThenRescan(t *testing.T) {
	eventlock.Hold(t)
	requireRoot(t)
	storm := buildStorm(t)
	h := buildHelpers(t)
	s := openSource(t, Config{RingBuffer: os.Getpagesize()})
	if err := s.SetFilter(Filter{UIDs: []uint32{covU1, covU2}}); err != nil {
		t.Fatal(err)
	}
	runStorm(t, storm, 1, 1, covU1) // fills the ring; nobody reads
	lost := s.Stats().Lost
	// Changes its uid while the ring is full, then waits to be looked at.
	cmd := exec.Command(h.native, "resuid", u(covU2), u(covU2), u(covU2), "sleep", "3000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill() // our own child
		cmd.Wait()
	}()
	pid := int32(cmd.Process.Pid)
	for deadline := time.Now().Add(2 * time.Second); s.Stats().Lost == lost; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the change was not counted as lost: the ring was not full")
		}
	}
	r := startReader(s)
	evs := r.until(t, 5*time.Second, func(e kernel.Event) bool { return e.What == kernel.EventOverflow })
	// The rescan, at the marker: /proc already shows the change.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), fmt.Sprintf("\nUid:\t%d\t%d\t%d", covU2, covU2, covU2)) {
		t.Errorf("/proc/%d/status at the marker does not show uid %d", pid, covU2)
	}
	for _, e := range append(evs, r.during(200*time.Millisecond)...) {
		if e.TGID == pid {
			t.Errorf("the lost event came after all: %+v", e)
		}
	}
}

// TestIntegrationMarksFull: when the kernel cannot store an inherited mark
// (a table of MaxTasks entries is full), it counts a loss and user space
// gets a marker; a mark user space cannot store fails with ErrFull.
func TestIntegrationMarksFull(t *testing.T) {
	requireRoot(t)
	h := buildHelpers(t)
	const max = 8
	s := openSource(t, Config{MaxTasks: max})
	if err := s.SetFilter(Filter{UIDs: []uint32{covU1}}); err != nil {
		t.Fatal(err)
	}
	r := startReader(s)
	// A chain of 11 live hot processes: 3 more than the table holds.
	ops := []string{"resuid", u(covU1), u(covU1), u(covU1)}
	for range 10 {
		ops = append(ops, "fork")
	}
	pid := runSetid(t, h.native, ops...)
	exited := func(e kernel.Event) bool { return e.What == kernel.EventExit && e.TGID == pid }
	// The marker ends the batch in which the loss was counted: the
	// helper's EXIT may be in that batch, before it.
	backlog := r.until(t, 5*time.Second, func(e kernel.Event) bool { return e.What == kernel.EventOverflow })
	st := s.Stats()
	t.Logf("chain of 11 hot processes, table of %d: %+v", max, st)
	if st.LostMarks == 0 {
		t.Errorf("no mark counted as lost: %+v", st)
	}
	if !slices.ContainsFunc(backlog, exited) {
		r.until(t, 5*time.Second, exited)
	}

	for i := int32(1); i <= max; i++ {
		if err := s.MarkSticky(4000000+i, false, 0); err != nil {
			t.Fatalf("mark %d of %d: %v", i, max, err)
		}
	}
	err := s.MarkSticky(4000000+max+1, true, 0)
	if !errors.Is(err, ErrFull) {
		t.Errorf("a mark beyond the table: %v, want ErrFull", err)
	}
	if st := s.Stats(); st.MarksRefused != 1 {
		t.Errorf("MarksRefused = %d, want 1", st.MarksRefused)
	}
}

// TestIntegrationSetFilter: the kernel's maps follow the filter through
// replacements, and limits widen it instead of narrowing.
func TestIntegrationSetFilter(t *testing.T) {
	requireRoot(t)
	s := openSource(t, Config{MaxIDs: 4, MaxNames: 2})
	contents := func(m *ebpf.Map) []uint32 {
		var k uint32
		var v uint8
		var out []uint32
		it := m.Iterate()
		for it.Next(&k, &v) {
			out = append(out, k)
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		slices.Sort(out)
		return out
	}
	state := func() string {
		return fmt.Sprintf("any=%d execs=%d uids=%v gids=%v names=%d", s.config.AnyID, s.config.Execs, contents(s.uids), contents(s.gids), len(s.filter.names))
	}
	for _, c := range []struct {
		f    Filter
		want string
		full bool
	}{
		{Filter{UIDs: []uint32{1, 2}, GIDs: []uint32{3}}, "any=0 execs=0 uids=[1 2] gids=[3] names=0", false},
		{Filter{UIDs: []uint32{2, 5}, Processes: []string{"cgre-no-such-program"}}, "any=0 execs=1 uids=[2 5] gids=[] names=1", false},
		{Filter{Any: true, Processes: []string{"cc1", "*"}}, "any=1 execs=2 uids=[] gids=[] names=0", false},
		{Filter{UIDs: []uint32{1, 2, 3, 4, 5}}, "any=1 execs=0 uids=[] gids=[] names=0", true},
		{Filter{UIDs: []uint32{7}, Processes: []string{"a", "b", "c"}}, "any=0 execs=2 uids=[7] gids=[] names=0", true},
		{Filter{}, "any=0 execs=0 uids=[] gids=[] names=0", false},
	} {
		if err := s.SetFilter(c.f); err != nil {
			t.Errorf("SetFilter(%+v): %v", c.f, err)
		}
		if w := s.Widened(); (w != "") != c.full {
			t.Errorf("SetFilter(%+v): widened %q, want widened %v", c.f, w, c.full)
		}
		if got := state(); got != c.want {
			t.Errorf("after SetFilter(%+v): %s, want %s", c.f, got, c.want)
		}
	}
}

// TestIntegrationMapMemory reports the kernel memory of the maps, empty and
// with 10,000 rule uids and gids (docs/performance.md), and checks it is
// bounded and given back.
func TestIntegrationMapMemory(t *testing.T) {
	requireRoot(t)
	s := openSource(t, Config{})
	empty, err := s.MapMemory()
	if err != nil {
		t.Fatal(err)
	}
	var uids, gids []uint32
	for i := range uint32(10000) {
		uids = append(uids, 100000+i)
		gids = append(gids, 200000+i)
	}
	start := time.Now()
	if err := s.SetFilter(Filter{UIDs: uids, GIDs: gids}); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	full, err := s.MapMemory()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetFilter(Filter{}); err != nil {
		t.Fatal(err)
	}
	again, err := s.MapMemory()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kernel memory of the maps: %.1f MiB empty, %.1f MiB with 10,000 uids and 10,000 gids (SetFilter took %v), %.1f MiB emptied again",
		mib(empty), mib(full), took.Round(time.Millisecond), mib(again))
	if full <= empty || again >= full {
		t.Errorf("the id maps do not grow and shrink with their contents: %d, %d, %d bytes", empty, full, again)
	}
	if full > 16<<20 {
		t.Errorf("%d bytes of maps at 10,000 ids: more than 16 MiB", full)
	}
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// TestIntegrationHooks: the hooks in use are the best this kernel allows,
// and the system call hooks can be forced where commit_creds could be
// hooked (the coverage table then runs both).
func TestIntegrationHooks(t *testing.T) {
	requireRoot(t)
	s := openSource(t, Config{})
	commit := commitHookAllowed(nil)
	t.Logf("fentry on commit_creds: %v", commit)
	if (commit == nil) != strings.Contains(s.Hooks(), "fentry/fexit commit_creds") {
		t.Errorf("hooks %q, though fentry on commit_creds is allowed: %v", s.Hooks(), commit == nil)
	}
	if commit != nil && !errors.Is(commit, unix.EPERM) {
		t.Logf("note: fentry refused with something other than EPERM: %v", commit)
	}
	forced, err := open(Config{}, options{noCommitHook: true})
	if err != nil {
		t.Fatal(err)
	}
	defer forced.Close()
	if !strings.Contains(forced.Hooks(), "sys_exit") {
		t.Errorf("forced system call hooks: %q", forced.Hooks())
	}
}

// TestIntegrationNotSupported forces each reason Open can give, and checks
// it is typed, named and matched by ErrNotSupported.
func TestIntegrationNotSupported(t *testing.T) {
	requireRoot(t)
	checkFDs(t)
	reason := func(err error) Reason {
		var nse *NotSupportedError
		if !errors.As(err, &nse) || !errors.Is(err, ErrNotSupported) {
			t.Fatalf("error %v is not a *NotSupportedError", err)
		}
		return nse.Reason
	}
	t.Run("no BTF", func(t *testing.T) {
		_, err := open(Config{}, options{kernelBTF: "/dev/null"})
		if r := reason(err); r != ReasonNoBTF {
			t.Errorf("reason %v: %v", r, err)
		}
		t.Log(err)
	})
	t.Run("a refused program", func(t *testing.T) {
		_, err := open(Config{}, options{mutate: func(spec *ebpf.CollectionSpec) {
			spec.Programs[progFork].AttachTo = "cgre_no_such_tracepoint"
		}})
		if r := reason(err); r != ReasonRefused {
			t.Errorf("reason %v: %v", r, err)
		}
		t.Log(err)
	})
	t.Run("a program the verifier refuses", func(t *testing.T) {
		_, err := open(Config{}, options{mutate: func(spec *ebpf.CollectionSpec) {
			p := spec.Programs[progExit]
			p.Instructions = p.Instructions[:len(p.Instructions)-1] // no exit
		}})
		if r := reason(err); r != ReasonRefused {
			t.Errorf("reason %v: %v", r, err)
		}
		t.Log(firstLine(err.Error()))
	})
	t.Run("root without CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN", func(t *testing.T) {
		if _, err := exec.LookPath("setpriv"); err != nil {
			t.Skip("no setpriv (util-linux) to drop capabilities")
		}
		cmd := exec.Command("setpriv", "--bounding-set", "-bpf,-perfmon,-sys_admin", "--inh-caps", "-all", "--", os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), helperEnv+"=open")
		out, err := cmd.Output()
		if err != nil {
			t.Skipf("setpriv: %v", err)
		}
		got := strings.TrimSpace(string(out))
		t.Log(got)
		if !strings.HasPrefix(got, strconv.Itoa(int(ReasonNoPrivilege))+" ") || !strings.Contains(got, "CAP_BPF") {
			t.Errorf("Open without the capabilities: %q, want ReasonNoPrivilege naming CAP_BPF", got)
		}
	})
	t.Run("a pid namespace of its own", func(t *testing.T) {
		// A container's daemon: root with every capability, but the
		// kernel's pids are not its /proc's.
		if _, err := exec.LookPath("unshare"); err != nil {
			t.Skip("no unshare (util-linux) to make a pid namespace")
		}
		cmd := exec.Command("unshare", "--pid", "--fork", "--mount-proc", "--", os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), helperEnv+"=open")
		out, err := cmd.Output()
		if err != nil {
			t.Skipf("unshare: %v", err)
		}
		got := strings.TrimSpace(string(out))
		t.Log(got)
		if !strings.HasPrefix(got, strconv.Itoa(int(ReasonPIDNamespace))+" ") || !strings.Contains(got, "not the initial one") {
			t.Errorf("Open in a new pid namespace: %q, want ReasonPIDNamespace", got)
		}
	})
	t.Run("no privilege", func(t *testing.T) {
		bin := copyForNobody(t)
		cmd := exec.Command(bin, "-test.run=^$")
		cmd.Env = append(os.Environ(), helperEnv+"=open")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.Output()
		if err != nil {
			t.Skipf("cannot run the helper as nobody: %v", err)
		}
		got := strings.TrimSpace(string(out))
		t.Log(got)
		if !strings.HasPrefix(got, strconv.Itoa(int(ReasonNoPrivilege))+" ") || !strings.Contains(got, "CAP_BPF") {
			t.Errorf("Open as nobody: %q, want ReasonNoPrivilege naming CAP_BPF", got)
		}
		if !strings.HasSuffix(got, "cached true") {
			t.Errorf("a second Open did not return the cached error: %q", got)
		}
	})
}

// TestIntegrationProbe: Probe answers once, from the first attempt.
func TestIntegrationProbe(t *testing.T) {
	requireRoot(t)
	start := time.Now()
	if err := Probe(); err != nil {
		t.Fatalf("Probe: %v", err)
	}
	first := time.Since(start)
	start = time.Now()
	if err := Probe(); err != nil {
		t.Fatal(err)
	}
	if again := time.Since(start); again > time.Millisecond {
		t.Errorf("second Probe took %v: not cached", again)
	}
	t.Logf("Probe took %v", first)
}

// copyForNobody copies the test binary where user nobody can run it.
func copyForNobody(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "cgre-bpfevents-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "bpfevents.test")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}
