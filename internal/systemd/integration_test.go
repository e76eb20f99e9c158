package systemd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cgrulesengd/cgrulesengd/internal/unitname"
	"github.com/cgrulesengd/cgrulesengd/tests/eventlock"
	"github.com/cgrulesengd/cgrulesengd/tests/sdbox"
)

// startTasks starts a service in the box running n sleeping processes and
// returns their host pids (the service's shell excluded).
func startTasks(t testing.TB, b *sdbox.Box, unit string, n int) []int {
	t.Helper()
	script := fmt.Sprintf("i=0; while [ $i -lt %d ]; do sleep 1000 & i=$((i+1)); done; exec sleep 1000", n)
	if _, err := b.Run("systemd-run", "--quiet", "--unit="+unit, "--property=KillMode=control-group", "sh", "-c", script); err != nil {
		t.Fatal(err)
	}
	cg := "/system.slice/" + unit + ".service"
	deadline := time.Now().Add(60 * time.Second)
	for {
		pids, err := b.HostPIDs(cg)
		if err == nil && len(pids) == n+1 {
			// The service's main process execs the last sleep: leave it
			// out, it is the service's MainPID.
			main, err := b.Show(unit+".service", "MainPID")
			if err != nil {
				t.Fatal(err)
			}
			var out []int
			for _, p := range pids {
				if nspid(t, p) != main {
					out = append(out, p)
				}
			}
			if len(out) != n {
				t.Fatalf("%d tasks besides MainPID %s, want %d", len(out), main, n)
			}
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has %d processes (%v), want %d", cg, len(pids), err, n+1)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// nspid is a host pid's pid in its innermost namespace.
func nspid(t testing.TB, pid int) string {
	t.Helper()
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	ns, err := parseNSpid(status)
	if err != nil {
		t.Fatal(err)
	}
	return strconv.Itoa(ns[len(ns)-1])
}

func dialBox(t testing.TB, addr string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Dial(ctx, Config{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// TestIntegrationPlaceTask: a task of a service in the box is placed into
// x.slice through each kind of address; the kernel, GetUnitByPID and
// systemctl status agree.
func TestIntegrationPlaceTask(t *testing.T) {
	b := sdbox.Start(t, sdbox.Options{})
	for i, addr := range []string{b.PrivateAddress, b.SystemBusAddress} {
		c := dialBox(t, addr)
		if c.hello != (i == 1) {
			t.Errorf("%s: Hello detected %v", addr, c.hello)
		}
		if d := c.ns.Depth(); d != 1 {
			t.Errorf("%s: manager at depth %d, want 1", addr, d)
		}
		if root, err := c.CgroupRoot(); err != nil || root != b.CgroupPath {
			t.Errorf("%s: the manager's root cgroup %q (%v), want %s", addr, root, err, b.CgroupPath)
		}
		pids := startTasks(t, b, fmt.Sprintf("cgre-src%d", i), 1)
		scope := fmt.Sprintf("cgre-test-%d.scope", i)
		res, err := c.StartScope(context.Background(), scope, pids, ScopeOptions{Slice: "x.slice"})
		if err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		if res.Unit != scope {
			t.Errorf("result unit %q", res.Unit)
		}
		where, err := b.BoxCgroupOf(pids[0])
		if err != nil || where != "/x.slice/"+scope {
			t.Errorf("kernel: pid %d in %q (%v), want /x.slice/%s", pids[0], where, err, scope)
		}
		unit, err := c.UnitOf(context.Background(), pids[0])
		if err != nil || unit != scope {
			t.Errorf("GetUnitByPID: %q (%v), want %s", unit, err, scope)
		}
		st, err := b.Systemctl("status", scope)
		if err != nil || !strings.Contains(st, "sleep 1000") || !strings.Contains(st, nspid(t, pids[0])) {
			t.Errorf("systemctl status %s: %v\n%s", scope, err, st)
		}
		// Placing into an existing name is a typed error.
		_, err = c.StartScope(context.Background(), scope, pids, ScopeOptions{Slice: "x.slice"})
		if !errors.Is(err, ErrUnitExists) {
			t.Errorf("second StartScope %s: %v, want ErrUnitExists", scope, err)
		}
	}
}

// placeAll submits one placement per pid for user uid into slice and waits
// for every outcome.
func placeAll(t *testing.T, p *Placer, outs <-chan Outcome, pids []int, slice string, uid uint32) []Outcome {
	t.Helper()
	for _, pid := range pids {
		if err := p.Submit(Placement{PIDs: []int{pid}, Slice: slice, UID: uid, Tag: pid}); err != nil {
			t.Fatal(err)
		}
	}
	var got []Outcome
	timeout := time.After(120 * time.Second)
	for len(got) < len(pids) {
		select {
		case o := <-outs:
			got = append(got, o)
		case <-timeout:
			t.Fatalf("%d of %d outcomes after 120 s; stats %+v", len(got), len(pids), p.Stats())
		}
	}
	return got
}

func newPlacer(t *testing.T, c *Client, n int) (*Placer, chan Outcome) {
	outs := make(chan Outcome, n)
	p := NewPlacer(PlacerConfig{Client: c, Workers: 4, Queue: n, Done: func(o Outcome) { outs <- o }})
	t.Cleanup(p.Close)
	return p, outs
}

// checkPlaced checks with the kernel that every pid is in the user's scope
// in the slice.
func checkPlaced(t *testing.T, b *sdbox.Box, outs []Outcome, slice string, uid uint32) {
	t.Helper()
	want := "/" + unitname.SliceCgroupPath(slice) + "/" + ScopeName(slice, uid)
	bad := 0
	for _, o := range outs {
		if o.Err != nil {
			bad++
			if bad < 5 {
				t.Errorf("pid %v: %v", o.Tag, o.Err)
			}
			continue
		}
		where, err := b.BoxCgroupOf(o.Tag.(int))
		if err != nil || where != want {
			bad++
			if bad < 5 {
				t.Errorf("pid %v in %q (%v), want %s", o.Tag, where, err, want)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d tasks not placed", bad, len(outs))
	}
}

// TestIntegrationBurst: 500 tasks placed at once all land in their scope,
// in a few calls.
func TestIntegrationBurst(t *testing.T) {
	b := sdbox.Start(t, sdbox.Options{})
	eventlock.Hold(t) // hundreds of forks: not beside the tests that count events
	c := dialBox(t, b.PrivateAddress)
	pids := startTasks(t, b, "cgre-burst", 500)
	p, outs := newPlacer(t, c, 500)
	start := time.Now()
	got := placeAll(t, p, outs, pids, "batch.slice", 1000)
	t.Logf("500 placements in %v; stats %+v", time.Since(start), p.Stats())
	checkPlaced(t, b, got, "batch.slice", 1000)
	st := p.Stats()
	// One scope, started once; the placements that waited behind a call
	// joined the next one (at most Batch each).
	if st.Placed != 500 || st.Started != 1 || st.Started+st.Attached != st.Calls || st.Calls < 500/64 || st.Calls > 100 {
		t.Errorf("stats %+v: want 500 placed, 1 scope started, the rest attached in batches", st)
	}
	// systemd agrees: one scope, running, holding the 500 tasks (the
	// box has no pids controller for TasksCurrent: count its cgroup).
	scope := ScopeName("batch.slice", 1000)
	if s, err := b.Show(scope, "ActiveState"); err != nil || s != "active" {
		t.Errorf("ActiveState of %s: %q (%v)", scope, s, err)
	}
	if in, err := b.HostPIDs("/batch.slice/" + scope); err != nil || len(in) != 500 {
		t.Errorf("%s holds %d tasks (%v), want 500", scope, len(in), err)
	}
}

// TestIntegrationBatch: a task's placement and those of 60 children
// submitted right behind it (the fork race's shape) all land in the
// user's scope, in far fewer calls than placements: those that wait while
// a call is in flight join the next one.
func TestIntegrationBatch(t *testing.T) {
	b := sdbox.Start(t, sdbox.Options{})
	c := dialBox(t, b.PrivateAddress)
	const n = 61
	pids := startTasks(t, b, "cgre-batch", n)
	p, outs := newPlacer(t, c, n)
	got := placeAll(t, p, outs, pids, "batch.slice", 1000)
	checkPlaced(t, b, got, "batch.slice", 1000)
	st := p.Stats()
	t.Logf("%d placements in %d calls (%d started, %d attaches, %d batched)", st.Placed, st.Calls, st.Started, st.Attached, st.Batched)
	if st.Placed != n || st.Calls > n/4 || st.Batched < n/2 {
		t.Errorf("stats %+v: want %d placed in at most %d calls", st, n, n/4)
	}
	joined := 0
	for _, o := range got {
		if o.Batch > 1 {
			joined++
		}
	}
	if uint64(joined) != st.Batched {
		t.Errorf("%d outcomes say they joined a call, the stats %d", joined, st.Batched)
	}
}

// TestIntegrationRepair: placements given up while the manager cannot be
// reached (its socket's proxy stopped) are reported once it answers
// again (Reachable, counted), found by the placer's probe.
func TestIntegrationRepair(t *testing.T) {
	b := sdbox.Start(t, sdbox.Options{})
	c := dialBox(t, b.PrivateAddress)
	pids := startTasks(t, b, "cgre-src", 1)
	outs := make(chan Outcome, 2)
	repaired := make(chan struct{}, 2)
	p := NewPlacer(PlacerConfig{Client: c, Retries: 2, Backoff: 10 * time.Millisecond, ProbeInterval: 50 * time.Millisecond,
		Reachable: func() { repaired <- struct{}{} }, Done: func(o Outcome) { outs <- o }})
	defer p.Close()
	if _, err := b.Systemctl("stop", "cgre-bus-proxy.socket", "cgre-bus-proxy.service"); err != nil {
		t.Fatal(err)
	}
	if err := p.Submit(Placement{PIDs: pids, Slice: "x.slice", UID: 1}); err != nil {
		t.Fatal(err)
	}
	if o := <-outs; !errors.Is(o.Err, ErrUnreachable) {
		t.Fatalf("outcome %v, want unreachable", o.Err)
	}
	select {
	case <-repaired:
		t.Fatal("Reachable while the socket is down")
	case <-time.After(200 * time.Millisecond):
	}
	if _, err := b.Systemctl("start", "cgre-bus-proxy.socket"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-repaired:
	case <-time.After(30 * time.Second):
		t.Fatalf("no Reachable after the socket came back; stats %+v", p.Stats())
	}
	if err := p.Submit(Placement{PIDs: pids, Slice: "x.slice", UID: 1}); err != nil {
		t.Fatal(err)
	}
	if o := <-outs; o.Err != nil {
		t.Fatalf("placement after the repair: %v", o.Err)
	}
	if st := p.Stats(); st.Repairs != 1 || st.Unreachable != 1 || st.Placed != 1 || st.Reconnects == 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestIntegrationReexec: the manager re-executes in the middle of a burst;
// every placement still lands (the client reconnects, retries are
// counted).
func TestIntegrationReexec(t *testing.T) {
	b := sdbox.Start(t, sdbox.Options{})
	eventlock.Hold(t) // hundreds of forks: not beside the tests that count events
	c := dialBox(t, b.PrivateAddress)
	const n = 400
	pids := startTasks(t, b, "cgre-burst", n)
	p, outs := newPlacer(t, c, n)
	var got []Outcome
	for i, pid := range pids {
		if i == n/4 {
			// Without waiting: the burst goes on while it re-executes.
			go func() {
				if _, err := b.Systemctl("daemon-reexec"); err != nil {
					t.Error(err)
				}
			}()
		}
		if err := p.Submit(Placement{PIDs: []int{pid}, Slice: "batch.slice", UID: 7, Tag: pid}); err != nil {
			t.Fatal(err)
		}
		// A burst spread over the re-execution (~0.3 s), not one instant.
		if i%20 == 0 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	timeout := time.After(120 * time.Second)
	for len(got) < n {
		select {
		case o := <-outs:
			got = append(got, o)
		case <-timeout:
			t.Fatalf("%d of %d outcomes; stats %+v", len(got), n, p.Stats())
		}
	}
	st := p.Stats()
	t.Logf("stats %+v", st)
	checkPlaced(t, b, got, "batch.slice", 7)
	if st.Reconnects == 0 {
		t.Errorf("no reconnection counted across daemon-reexec: %+v", st)
	}
}

// TestIntegrationPrefixDropIn: a templated per-user slice gets the prefix
// drop-in (batch-.slice.d) applied, and the user name's dash is escaped so
// that the slice sits directly below batch.slice.
func TestIntegrationPrefixDropIn(t *testing.T) {
	b := sdbox.Start(t, sdbox.Options{Units: map[string]string{
		"batch-.slice.d/50-cgre.conf": "[Slice]\nCPUWeight=37\n",
	}})
	c := dialBox(t, b.PrivateAddress)
	pids := startTasks(t, b, "cgre-src", 1)
	slice := "batch-" + unitname.Escape("john-doe") + ".slice"
	p, outs := newPlacer(t, c, 1)
	got := placeAll(t, p, outs, pids, slice, 1001)
	checkPlaced(t, b, got, slice, 1001)
	if w, err := b.Show(slice, "CPUWeight"); err != nil || w != "37" {
		t.Errorf("CPUWeight of %s: %q (%v), want 37 from batch-.slice.d", slice, w, err)
	}
	if where, _ := b.BoxCgroupOf(pids[0]); !strings.HasPrefix(where, `/batch.slice/batch-john\x2ddoe.slice/`) {
		t.Errorf("task in %q, want below /batch.slice/batch-john\\x2ddoe.slice", where)
	}
	// Stopping the scope ends the task.
	if err := c.Stop(context.Background(), ScopeName(slice, 1001)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		// Gone, or a zombie: its parent (the service's main process,
		// sleep) never reaps it.
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pids[0]))
		if err != nil || strings.Contains(string(stat), ") Z ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still alive after its scope was stopped", pids[0])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestIntegrationUnreachable: a manager that powered off gives a clear,
// counted error after the bounded retries, and the placer keeps working.
func TestIntegrationUnreachable(t *testing.T) {
	b := sdbox.Start(t, sdbox.Options{})
	c := dialBox(t, b.PrivateAddress)
	pids := startTasks(t, b, "cgre-src", 1)
	outs := make(chan Outcome, 1)
	p := NewPlacer(PlacerConfig{Client: c, Retries: 3, Backoff: 10 * time.Millisecond, Done: func(o Outcome) { outs <- o }})
	defer p.Close()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Submit(Placement{PIDs: pids, Slice: "x.slice", UID: 1}); err != nil {
		t.Fatal(err)
	}
	o := <-outs
	// The task died with the box: either the manager is unreachable, or
	// the task is gone (checked before any call).
	if !errors.Is(o.Err, ErrUnreachable) && !errors.Is(o.Err, ErrTaskGone) {
		t.Fatalf("outcome %v", o.Err)
	}
	t.Logf("outcome: %v; stats %+v", o.Err, p.Stats())
	if errors.Is(o.Err, ErrUnreachable) && (p.Stats().Retries != 3 || p.Stats().Unreachable != 1) {
		t.Errorf("stats %+v", p.Stats())
	}
}

// TestIntegrationNotDBus: an address whose socket is not a D-Bus peer is a
// clear error at Dial.
func TestIntegrationNotDBus(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the peer's /proc/PID/ns/pid")
	}
	dir := t.TempDir()
	l, err := net.Listen("unix", filepath.Join(dir, "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			conn.Write([]byte("HTTP/1.0 400 nope\r\n\r\n"))
			conn.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = Dial(ctx, Config{Address: "unix:path=" + filepath.Join(dir, "s")})
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "connect unix:path=") {
		t.Errorf("Dial of a socket that does not speak D-Bus: %v", err)
	}
	t.Logf("error: %v", err)
}
