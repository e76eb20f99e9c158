package e2e

import (
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestSchedSlice: every thread of the running daemon asks for the slice of
// --sched-slice (threads created after start-up inherit it), and
// --sched-slice 0 leaves the kernel's default. Kernels before 6.12 keep no
// custom slice: the test then checks that the daemon started anyway.
func TestSchedSlice(t *testing.T) {
	identities(t)
	e := newEnv(t, []string{"cpu"}, "default")
	e.writeRules("cgresjo  cpu  default\n")

	d := e.startDaemon(dopts{extra: []string{"--sched-slice", "250us"}})
	slices := threadSlices(t, d.pid)
	if len(slices) < 2 {
		t.Fatalf("daemon has %d threads", len(slices))
	}
	if first := slices[0]; first == 0 {
		t.Skipf("kernel keeps no custom slice (sched_runtime reads 0): the daemon started without it")
	}
	for i, s := range slices {
		if s != 250*time.Microsecond {
			t.Errorf("thread %d of %d: slice %v, want 250µs", i+1, len(slices), s)
		}
	}
	// A move makes the engine busy and may start threads; check again.
	h := e.harness(hopts{user: "cgresjo"})
	waitCgroup(t, h.pid, "cpu", e.cg("default"), 5*time.Second)
	for i, s := range threadSlices(t, d.pid) {
		if s != 250*time.Microsecond {
			t.Errorf("after a move, thread %d: slice %v, want 250µs", i+1, s)
		}
	}
	d.stop()

	d = e.startDaemon(dopts{extra: []string{"--sched-slice", "0"}})
	for i, s := range threadSlices(t, d.pid) {
		if s == 250*time.Microsecond || s == 100*time.Microsecond {
			t.Errorf("--sched-slice 0: thread %d has a custom slice %v", i+1, s)
		}
	}
}

// threadSlices reads the requested slice (sched_runtime) of each of pid's
// threads.
func threadSlices(t *testing.T, pid int) []time.Duration {
	t.Helper()
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	if err != nil {
		t.Fatal(err)
	}
	var out []time.Duration
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		a, err := unix.SchedGetAttr(tid, 0)
		if err != nil {
			t.Fatalf("sched_getattr of thread %d of the daemon: %v", tid, err)
		}
		out = append(out, time.Duration(a.Runtime))
	}
	return out
}
