package classify

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/cgrulesengd/cgrulesengd/internal/cgroupfs"
	"github.com/cgrulesengd/cgrulesengd/internal/proc"
	"github.com/cgrulesengd/cgrulesengd/rules"
	"github.com/cgrulesengd/cgrulesengd/rules/rulestest"
	"github.com/cgrulesengd/cgrulesengd/tests/syscount"
)

// benchUID is the uid of the benchmark's child (nobody on most systems);
// the rules name it alone, and the engine is only ever asked about the
// child's pid.
const benchUID = 65534

// realFixture is the benchmark's set-up: a child (a sleep as uid 65534)
// in a test cgroup, an engine on the real /proc and cgroups, and two rule
// lists moving the child to a and to b.
type realFixture struct {
	e    *Engine
	sets [2]*ruleset
	pid  int
	hs   []*cgroupfs.Hierarchy
	lay  *cgroupfs.Layout
	top  string
}

// newRealFixture is the fixture with one rule for the child's user after
// filler (rules for another user, in the end-to-end benchmark's form).
func newRealFixture(tb testing.TB, filler string) *realFixture {
	if os.Geteuid() != 0 {
		tb.Skip("needs root: creates cgroups and moves a process")
	}
	lay, err := cgroupfs.Discover("/proc")
	if err != nil {
		tb.Fatal(err)
	}
	var hs []*cgroupfs.Hierarchy
	var names []string
	if c := lay.Resolve("cpu"); len(c) == 1 && c[0].Version == cgroupfs.V1 {
		hs, names = append(hs, c[0]), append(names, "cpu")
	}
	if lay.Unified != nil {
		hs, names = append(hs, lay.Unified), append(names, cgroupfs.Unified)
	}
	if len(hs) == 0 {
		tb.Skip("no cpu or cgroup2 hierarchy")
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	top := "/cgre-test-" + hex.EncodeToString(rnd[:])
	mover := cgroupfs.NewMover()
	tb.Cleanup(func() { _ = mover.Close() })
	for _, h := range hs {
		for _, p := range []string{top + "/a", top + "/b"} {
			if err := mover.Create(h, p, nil); err != nil && !errors.Is(err, cgroupfs.ErrControllers) {
				tb.Fatal(err)
			}
		}
		dir := filepath.Join(h.Mountpoint, top)
		tb.Cleanup(func() {
			for _, d := range []string{dir + "/a", dir + "/b", dir} {
				for i := 0; i < 50 && unix.Rmdir(d) == unix.EBUSY; i++ {
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	child := exec.Command("sleep", "600")
	child.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: &syscall.Credential{Uid: benchUID, Gid: benchUID}}
	if err := child.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	pid := child.Process.Pid
	for _, h := range hs {
		if err := mover.Move(h, top+"/a", pid); err != nil {
			tb.Fatal(err)
		}
	}

	log := logrus.New()
	log.SetOutput(io.Discard)
	log.SetLevel(logrus.ErrorLevel) // the daemon's default
	e := New(Config{Layout: lay, Mover: mover, Tasks: proc.NewFS("/proc"), Log: log, Root: top})
	resolver := rulestest.NewStatic([]rules.User{{Name: "cgrebench", UID: benchUID, GID: benchUID}, {Name: "cgreother", UID: benchUID + 1, GID: benchUID + 1}},
		[]rules.Group{{Name: "cgreother", GID: benchUID + 1}})
	var sets [2]*ruleset
	for i, dest := range []string{"a", "b"} {
		text := filler + "cgrebench " + strings.Join(names, ",") + " " + dest + "\n"
		l, diags, err := rules.Parse("bench.conf", []byte(text), rules.Options{Resolver: resolver, Controllers: lay.Controllers()})
		if err != nil {
			tb.Fatalf("%v %v", err, diags)
		}
		sets[i] = newRuleset(l, resolver)
	}

	return &realFixture{e: e, sets: sets, pid: pid, hs: hs, lay: lay, top: top}
}

// classifyOnce runs the i-th classification: the child is in a after an
// even number of them, in b after an odd one.
func (f *realFixture) classifyOnce(tb testing.TB, st *workState, i int) {
	f.e.rs.Store(f.sets[(i+1)%2])
	j := job{pid: int32(f.pid), why: reasonCreds}
	if a := f.e.classify(st, &j, false); a.Moved == 0 {
		tb.Fatalf("iteration %d: the child was not moved", i)
	}
}

// TestIntegrationClassifyAllocs: the whole classification of a real
// process, from the real /proc to the cgroup.procs writes, allocates
// nothing once the caches are warm. Root only.
func TestIntegrationClassifyAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	f := newRealFixture(t, "")
	var st workState
	for i := 0; i < 4; i++ {
		f.classifyOnce(t, &st, i)
	}
	i := 4
	if n := testing.AllocsPerRun(200, func() { f.classifyOnce(t, &st, i); i++ }); n != 0 {
		t.Errorf("%v allocations per classification", n)
	}
}

// BenchmarkClassifyReal is the whole classification of one real process,
// as a worker runs it for a UID event: read /proc/PID/cgroup and
// /proc/PID/status from the real /proc, match the rules, and write the pid
// to cgroup.procs in the cpu (v1) and cgroup2 hierarchies. The process is
// the benchmark's own child, a sleep running as uid 65534, moved between
// two test cgroups (cgre-test-<random>/a and /b, removed afterwards) by
// two rule lists used in turn. It reports allocations and the system calls
// made per classification, counted on the benchmark's (locked) thread with
// the raw_syscalls:sys_enter tracepoint. Root only. The rule comes after
// no other ("rules=1"), or after 10,000 rules for another user as in the
// end-to-end benchmark (half of them "@cgreother", half
// "cgreother:progN"): with the program rules ("rules=10000") every
// classification reads the process name, since some rule names a program;
// without ("rules=10000-groups") it does not.
func BenchmarkClassifyReal(b *testing.B) {
	var progs, groups strings.Builder
	for i := 0; i < 10000; i++ {
		groups.WriteString("@cgreother cpu other\n")
		if i%2 == 0 {
			progs.WriteString("@cgreother cpu other\n")
		} else {
			fmt.Fprintf(&progs, "cgreother:prog%d cpu other\n", i/2)
		}
	}
	for _, c := range []struct{ name, filler string }{{"rules=1", ""}, {"rules=10000", progs.String()}, {"rules=10000-groups", groups.String()}} {
		b.Run(c.name, func(b *testing.B) { benchClassifyReal(b, c.filler) })
	}
}

func benchClassifyReal(b *testing.B, filler string) {
	f := newRealFixture(b, filler)
	pid, lay, top, hs := f.pid, f.lay, f.top, f.hs
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var st workState
	classifyOnce := func(i int) { f.classifyOnce(b, &st, i) }
	for i := 0; i < 4; i++ { // warm the descriptor cache, the buffers and the caches
		classifyOnce(i)
	}
	counter, err := syscount.Thread(0, false)
	if err != nil {
		b.Fatal(err)
	}
	defer counter.Close()
	before, err := counter.Count()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for b.Loop() {
		classifyOnce(4 + n)
		n++
	}
	b.StopTimer()
	after, err := counter.Count()
	if err != nil {
		b.Fatal(err)
	}
	// The counter's own read (one system call) is in the difference.
	b.ReportMetric(float64(after-before-1)/float64(n), "syscalls/op")
	b.ReportMetric(float64(len(hs)), "writes/op")
	for _, h := range hs {
		want := top + "/" + string("ab"[(4+n)%2])
		if lines, err := proc.NewFS("/proc").Cgroups(pid); err == nil {
			if got, _ := lay.TaskPath(h, lines); got != want {
				b.Errorf("%s: child in %s after %d moves, want %s", h.Name(), got, 4+n, want)
			}
		}
	}
}
