package kernel

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cgrulesengd/cgrulesengd/tests/eventlock"
	"github.com/cgrulesengd/cgrulesengd/tests/syscount"
)

// The test binary doubles as the helper processes of the integration tests
// (the os/exec helper-process pattern): with helperEnv set, TestMain runs
// the named helper instead of the tests.
const helperEnv = "CGRE_KERNEL_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "setuid":
		// Go applies these to every thread of the process, so the kernel
		// reports one GID and one UID event per thread.
		if err := syscall.Setresgid(65534, 65534, 65534); err != nil {
			fmt.Fprintln(os.Stderr, "setresgid:", err)
			os.Exit(2)
		}
		if err := syscall.Setresuid(65534, 65534, 65534); err != nil {
			fmt.Fprintln(os.Stderr, "setresuid:", err)
			os.Exit(2)
		}
		os.Exit(0)
	case "listen":
		// Reports how Listen fails in this process's namespaces/credentials;
		// with HEAR=1, a successful Listen must also deliver the FORK of a
		// child this process starts ("heard"), else it is "deaf".
		timeout, _ := time.ParseDuration(os.Getenv("ACK_TIMEOUT"))
		c, err := Listen(Config{AckTimeout: timeout})
		switch {
		case err == nil:
			if os.Getenv("HEAR") == "1" {
				fmt.Println(hears(c))
			} else {
				fmt.Println("ok")
			}
			c.Close()
		case errors.Is(err, ErrNoAck):
			fmt.Println("noack")
		case errors.Is(err, unix.EPERM):
			fmt.Println("eperm")
		default:
			fmt.Println("other:", err)
		}
		os.Exit(0)
	default:
		fmt.Fprintln(os.Stderr, "unknown helper", os.Getenv(helperEnv))
		os.Exit(2)
	}
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: joining the proc connector multicast group needs CAP_NET_ADMIN, and the kernel only answers the initial user and PID namespaces")
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	des, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(des)
}

// checkFDs fails the test if it ends with more open descriptors than it
// started with. The runtime's poller opens its own descriptors on first use,
// so it is warmed up first.
func checkFDs(t *testing.T) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.SetReadDeadline(time.Now()) // registers with the poller
	r.Close()
	w.Close()
	before := openFDs(t)
	t.Cleanup(func() {
		if after := openFDs(t); after != before {
			t.Errorf("open file descriptors: %d before, %d after: leaked", before, after)
		}
	})
}

func listen(t *testing.T, cfg Config) *Conn {
	t.Helper()
	start := time.Now()
	c, err := Listen(cfg)
	if err != nil {
		t.Fatalf("Listen(%+v): %v", cfg, err)
	}
	t.Logf("Listen(%+v) took %v (filtered by the kernel: %v)", cfg, time.Since(start), c.Filtered())
	t.Cleanup(func() { c.Close() })
	return c
}

// reader runs Read in a goroutine and hands out the events one by one.
type reader struct {
	c   *Conn
	ch  chan Event
	err chan error
}

func startReader(c *Conn) *reader {
	r := &reader{c: c, ch: make(chan Event, 1<<16), err: make(chan error, 1)}
	go func() {
		buf := make([]Event, 0, 64)
		for {
			evs, err := c.Read(buf[:0])
			for _, e := range evs {
				r.ch <- e
			}
			if err != nil {
				r.err <- err
				close(r.ch)
				return
			}
		}
	}()
	return r
}

// until consumes events until done returns true or timeout passes, and
// returns what it consumed.
func (r *reader) until(t *testing.T, timeout time.Duration, done func(e Event) bool) []Event {
	t.Helper()
	var seen []Event
	deadline := time.After(timeout)
	for {
		select {
		case e, ok := <-r.ch:
			if !ok {
				t.Fatalf("reader stopped: %v (after %d events)", <-r.err, len(seen))
			}
			seen = append(seen, e)
			if done(e) {
				return seen
			}
		case <-deadline:
			t.Fatalf("timed out after %v and %d events; stats %+v", timeout, len(seen), r.c.Stats())
		}
	}
}

func monotonic(t *testing.T) uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return uint64(ts.Nano())
}

func helper(name string, env ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append(env, helperEnv+"="+name)...)
	cmd.Stderr = os.Stderr
	return cmd
}

func TestIntegrationEvents(t *testing.T) {
	requireRoot(t)
	checkFDs(t)
	start := time.Now()
	c := listen(t, Config{})
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Errorf("Listen took %v; the daemon must be ready within 0.2 s", d)
	}
	t.Logf("the kernel filters events per listener: %v", c.Filtered())
	if n, err := c.ReceiveBuffer(); err != nil || n < 2*DefaultReceiveBuffer {
		t.Errorf("ReceiveBuffer() = %d, %v; want at least %d (SO_RCVBUFFORCE, doubled)", n, err, 2*DefaultReceiveBuffer)
	}
	r := startReader(c)

	t0 := monotonic(t)
	child := exec.Command("/bin/true")
	if err := child.Run(); err != nil {
		t.Fatal(err)
	}
	setuid := helper("setuid")
	if err := setuid.Run(); err != nil {
		t.Fatalf("setuid helper: %v", err)
	}
	cpid, hpid := int32(child.Process.Pid), int32(setuid.Process.Pid)

	var fork, exe, exit, uid, gid *Event
	r.until(t, 5*time.Second, func(e Event) bool {
		switch {
		case e.What == EventFork && e.PID == cpid:
			fork = &e
		case e.What == EventExec && e.PID == cpid:
			exe = &e
		case e.What == EventExit && e.PID == cpid:
			exit = &e
		case e.What == EventUID && e.TGID == hpid && e.EUID == 65534:
			uid = &e
		case e.What == EventGID && e.TGID == hpid && e.EGID == 65534:
			gid = &e
		}
		return fork != nil && exe != nil && exit != nil && uid != nil && gid != nil
	})
	t1 := monotonic(t)

	if fork.TGID != cpid || fork.ParentTGID != int32(os.Getpid()) || fork.ParentPID == 0 {
		t.Errorf("fork event %+v: want child %d of process %d", fork, cpid, os.Getpid())
	}
	if exe.TGID != cpid {
		t.Errorf("exec event %+v", exe)
	}
	if exit.ExitCode != 0 || exit.ExitSignal != uint32(unix.SIGCHLD) || exit.ParentTGID != int32(os.Getpid()) {
		t.Errorf("exit event %+v: want code 0, signal SIGCHLD, parent %d", exit, os.Getpid())
	}
	if uid.RUID != 65534 {
		t.Errorf("uid event %+v: want ruid 65534", uid)
	}
	if gid.RGID != 65534 {
		t.Errorf("gid event %+v: want rgid 65534", gid)
	}
	// CLOCK_MONOTONIC, and in order for the one child.
	ts := []uint64{t0, fork.Timestamp, exe.Timestamp, exit.Timestamp, t1}
	for i := 1; i < len(ts); i++ {
		if ts[i] < ts[i-1] {
			t.Errorf("timestamps out of order: start %d, fork %d, exec %d, exit %d, end %d", t0, fork.Timestamp, exe.Timestamp, exit.Timestamp, t1)
			break
		}
	}
	if uid.Timestamp < t0 || uid.Timestamp > t1 || gid.Timestamp > uid.Timestamp {
		t.Errorf("credential timestamps %d (gid), %d (uid) not within [%d, %d] in order", gid.Timestamp, uid.Timestamp, t0, t1)
	}
	if s := c.Stats(); s.Datagrams == 0 || s.Events == 0 || s.Malformed != 0 || s.Foreign != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestIntegrationFilter(t *testing.T) {
	requireRoot(t)
	checkFDs(t)
	c := listen(t, Config{Events: EventFork})
	if !c.Filtered() {
		// Probed, not inferred from the version: this kernel did not
		// acknowledge the 8-byte request (TestIntegrationFallback covers
		// that path).
		t.Skip("this kernel did not acknowledge the filtered listen request")
	}
	c.deliverAll() // see what the kernel sends, not what Read would keep
	t0 := monotonic(t)
	r := startReader(c)

	child := exec.Command("/bin/true")
	if err := child.Run(); err != nil {
		t.Fatal(err)
	}
	// The child's exec and exit were queued before the sentinel's fork, and
	// the socket queue is FIFO: reading up to the sentinel's fork shows
	// everything the kernel sent about the child.
	sentinel := exec.Command("/bin/true")
	if err := sentinel.Run(); err != nil {
		t.Fatal(err)
	}
	cpid, spid := int32(child.Process.Pid), int32(sentinel.Process.Pid)
	sawFork := false
	seen := r.until(t, 5*time.Second, func(e Event) bool {
		if e.What == EventFork && e.PID == cpid {
			sawFork = true
		}
		return e.What == EventFork && e.PID == spid
	})
	if !sawFork {
		t.Errorf("no FORK event for the child %d", cpid)
	}
	for _, e := range seen {
		// Events queued before the filter was installed predate t0.
		if e.Timestamp >= t0 && e.What != EventFork && e.What != EventOverflow {
			t.Errorf("kernel delivered %v (pid %d) through a FORK-only filter", e.What, e.PID)
		}
	}
}

// TestIntegrationFilterInUserSpace checks that Read honours the mask even
// for events the kernel did deliver (here: everything received before the
// filter was installed, simulated by asking the kernel for everything).
func TestIntegrationFilterInUserSpace(t *testing.T) {
	requireRoot(t)
	checkFDs(t)
	c := listen(t, Config{Events: EventExec})
	// Re-subscribe for all events behind Read's back (a 4-byte request
	// resets the kernel's mask to "all").
	if _, err := c.send(procCnMcastListen, 0, 0); err != nil {
		t.Fatal(err)
	}
	onlyExecs(t, startReader(c))
	if s := c.Stats(); s.Discarded == 0 {
		t.Errorf("nothing discarded in user space: %+v", s)
	}
}

// TestIntegrationFallback makes the kernel ignore the filter probe, as a
// kernel older than 6.6 would, and checks the fallback to the classic
// request, the cached result, and filtering in user space.
func TestIntegrationFallback(t *testing.T) {
	requireRoot(t)
	checkFDs(t)
	filterSupport.Store(filterUnknown)
	t.Cleanup(func() { filterSupport.Store(filterUnknown) })
	const timeout = 100 * time.Millisecond
	start := time.Now()
	c, err := listenIgnoredProbe(Config{Events: EventExec, AckTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if d := time.Since(start); d < timeout {
		t.Errorf("Listen took %v, less than the probe's timeout %v", d, timeout)
	}
	if c.Filtered() {
		t.Fatal("Filtered() = true although the kernel ignored the probe")
	}
	if filterSupport.Load() != filterUnsupported {
		t.Errorf("the probe's outcome was not cached")
	}
	onlyExecs(t, startReader(c))
	if s := c.Stats(); s.Discarded == 0 {
		t.Errorf("unfiltered socket but nothing discarded in user space: %+v", s)
	}

	// The cached result skips the probe and its timeout.
	start = time.Now()
	c2 := listen(t, Config{AckTimeout: timeout})
	if d := time.Since(start); d >= timeout {
		t.Errorf("second Listen took %v: the probe was not skipped", d)
	}
	if c2.Filtered() {
		t.Error("second Conn claims kernel filtering")
	}
}

func TestIntegrationOverflow(t *testing.T) {
	eventlock.Hold(t)
	requireRoot(t)
	checkFDs(t)
	c := listen(t, Config{ReceiveBuffer: 4096})
	n, err := c.ReceiveBuffer()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("requested 4096, kernel accounts %d", n)

	// A thousand forks (two thousand events) while nobody reads: about ten
	// fit, the rest are dropped.
	burst := exec.Command("/bin/sh", "-c", "i=0; while [ $i -lt 1000 ]; do (:); i=$((i+1)); done")
	if err := burst.Run(); err != nil {
		t.Fatal(err)
	}
	r := startReader(c)
	r.until(t, 5*time.Second, func(e Event) bool { return e.What == EventOverflow })
	if s := c.Stats(); s.Overflows == 0 {
		t.Errorf("Stats().Overflows = 0 after an overflow event: %+v", s)
	}

	// Still working afterwards.
	child := exec.Command("/bin/true")
	if err := child.Run(); err != nil {
		t.Fatal(err)
	}
	cpid := int32(child.Process.Pid)
	r.until(t, 5*time.Second, func(e Event) bool { return e.What == EventExec && e.PID == cpid })
	t.Logf("stats %+v", c.Stats())
}

// TestIntegrationOverflowAfterBacklog: the kernel reports ENOBUFS on the
// first receive after a loss, with the queue still full, and drops every
// event until the queue is read empty. The marker must therefore come after
// the backlog (not first, where ENOBUFS is seen), exactly once for the
// whole loss, and events after it must be delivered again.
func TestIntegrationOverflowAfterBacklog(t *testing.T) {
	eventlock.Hold(t)
	requireRoot(t)
	checkFDs(t)
	c := listen(t, Config{ReceiveBuffer: 4096, Events: EventFork | EventExit})
	burst := exec.Command("/bin/sh", "-c", "i=0; while [ $i -lt 1000 ]; do (:); i=$((i+1)); done")
	if err := burst.Run(); err != nil {
		t.Fatal(err)
	}
	afterBurst := monotonic(t)
	r := startReader(c)
	seen := r.until(t, 5*time.Second, func(e Event) bool { return e.What == EventOverflow })
	marker := seen[len(seen)-1]
	backlog := seen[:len(seen)-1]
	if len(backlog) == 0 {
		t.Fatalf("the overflow marker came first: it must follow the events queued before the loss")
	}
	for _, e := range backlog {
		if e.Timestamp > afterBurst {
			t.Errorf("event %v (ts %d) before the marker is from after the burst (%d): the queue was drained before the marker", e.What, e.Timestamp, afterBurst)
		}
	}
	if marker.Timestamp < backlog[len(backlog)-1].Timestamp {
		t.Errorf("marker time %d before the last backlog event's %d", marker.Timestamp, backlog[len(backlog)-1].Timestamp)
	}
	t.Logf("%d backlog events, then the marker", len(backlog))

	// Delivered again after the marker: a fork's FORK and EXIT, and no
	// second marker for the same loss.
	child := exec.Command("/bin/true")
	if err := child.Run(); err != nil {
		t.Fatal(err)
	}
	cpid := int32(child.Process.Pid)
	for _, e := range r.until(t, 5*time.Second, func(e Event) bool { return e.What == EventExit && e.PID == cpid }) {
		if e.What == EventOverflow {
			t.Errorf("a second overflow marker after the queue was drained")
		}
	}
	if s := c.Stats(); s.Overflows != 1 {
		t.Errorf("Stats().Overflows = %d, want 1 for one loss: %+v", s.Overflows, s)
	}
}

func TestIntegrationCloseUnblocksRead(t *testing.T) {
	requireRoot(t)
	checkFDs(t)
	// PTRACE events are rare: Read will block.
	c, err := Listen(Config{Events: EventPtrace})
	if err != nil {
		t.Fatal(err)
	}
	closeWakesRead(t, c, 50*time.Millisecond, 100*time.Millisecond)
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := c.Read(nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Read on a closed Conn: %v", err)
	}
}

// TestIntegrationCloseWithoutWake: where Close cannot send the socket its
// wake-up datagram (an unprivileged listener), the receive timeout still
// lets a blocked Read see Close, within about pollInterval.
func TestIntegrationCloseWithoutWake(t *testing.T) {
	requireRoot(t)
	checkFDs(t)
	c, err := Listen(Config{Events: EventPtrace})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.pollForClose(); err != nil {
		t.Fatal(err)
	}
	// Read times out a few times before Close.
	closeWakesRead(t, c, 3*pollInterval, 2*pollInterval)
}

// closeWakesRead starts a reader of c, closes c after blocked, and checks
// that Read returns ErrClosed within the given time.
func closeWakesRead(t *testing.T, c *Conn, blocked, within time.Duration) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		buf := make([]Event, 0, 8)
		for {
			if _, err := c.Read(buf[:0]); err != nil {
				done <- err
				return
			}
		}
	}()
	time.Sleep(blocked) // let Read block in recvmmsg
	start := time.Now()
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("Read after Close: %v, want ErrClosed", err)
		}
		if d := time.Since(start); d > within {
			t.Errorf("Read returned %v after Close, later than %v", d, within)
		} else {
			t.Logf("Read returned %v after Close", d)
		}
	case <-time.After(time.Second):
		t.Fatal("Read still blocked 1 s after Close")
	}
}

func TestIntegrationNoFDLeak(t *testing.T) {
	requireRoot(t)
	checkFDs(t)
	var took []time.Duration
	for range 20 {
		start := time.Now()
		c, err := Listen(Config{Events: EventFork | EventExec | EventUID | EventGID | EventExit})
		if err != nil {
			t.Fatal(err)
		}
		took = append(took, time.Since(start))
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(took)
	t.Logf("Listen (socket, buffer, subscribe, ack, filter): median %v, max %v", took[len(took)/2], took[len(took)-1])
}

// TestIntegrationListenFromOtherPIDNamespace: the kernel ignores listen
// requests from outside the initial PID namespace; Listen must say so
// instead of waiting forever or succeeding deaf.
func TestIntegrationListenFromOtherPIDNamespace(t *testing.T) {
	requireRoot(t)
	cmd := helper("listen", "ACK_TIMEOUT=50ms")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	out, err := cmd.Output()
	if err != nil {
		t.Skipf("cannot start a helper in a new PID namespace: %v", err)
	}
	if got := strings.TrimSpace(string(out)); got != "noack" {
		t.Errorf("Listen in a new PID namespace: %q, want ErrNoAck", got)
	}
}

// TestListenUnprivileged runs Listen without CAP_NET_ADMIN: directly when
// the tests run unprivileged, else in a helper running as nobody. Whether
// the kernel lets an unprivileged process join the multicast group is a
// property of the kernel build, not of its version (Linux 6.6 allowed it,
// yet some 6.6+ kernels still refuse), so both outcomes pass, and only
// these two: a refusal is an error wrapping EPERM, and a success delivers
// events (a Listen that succeeds deaf, or fails any other way, fails the
// test).
func TestListenUnprivileged(t *testing.T) {
	var got string
	if os.Geteuid() == 0 {
		// go test's build directory is private to root: run a copy.
		bin := copyForNobody(t)
		cmd := helper("listen", "ACK_TIMEOUT=50ms", "HEAR=1")
		cmd.Path, cmd.Args[0] = bin, bin
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.Output()
		if err != nil {
			t.Skipf("cannot run the helper as nobody: %v", err)
		}
		got = strings.TrimSpace(string(out))
	} else {
		if hasCapNetAdmin(t) {
			t.Skip("this unprivileged user has CAP_NET_ADMIN")
		}
		checkFDs(t)
		c, err := Listen(Config{AckTimeout: 50 * time.Millisecond})
		switch {
		case err == nil:
			n, rerr := c.ReceiveBuffer()
			t.Logf("unprivileged: filtered %v, receive buffer %d, %v (SO_RCVBUF, capped by net.core.rmem_max)", c.Filtered(), n, rerr)
			got = hears(c)
			c.Close()
		case errors.Is(err, unix.EPERM):
			got = "eperm"
			if !strings.Contains(err.Error(), "CAP_NET_ADMIN") {
				t.Errorf("Listen: %v; the error must name CAP_NET_ADMIN", err)
			}
		default:
			got = "other: " + err.Error()
		}
	}
	switch got {
	case "eperm":
		t.Log("this kernel refuses unprivileged proc connector listeners (EPERM)")
	case "heard":
		t.Log("this kernel lets unprivileged processes listen, and delivers their events")
	default:
		t.Errorf("Listen without CAP_NET_ADMIN: %q; want an EPERM refusal or a listener that hears events", got)
	}
}

// hears reports "heard" when c delivers the FORK event of a child started
// after it subscribed, within 5 s, and "deaf" (or the read error) if not.
func hears(c *Conn) string {
	child := exec.Command("/bin/true")
	if err := child.Run(); err != nil {
		return "cannot start a child: " + err.Error()
	}
	pid := int32(child.Process.Pid)
	// Read blocks until an event comes: a deaf socket is closed under it.
	deaf := time.AfterFunc(5*time.Second, func() { c.Close() })
	defer deaf.Stop()
	buf := make([]Event, 0, 64)
	for {
		evs, err := c.Read(buf[:0])
		if errors.Is(err, ErrClosed) {
			return "deaf"
		}
		if err != nil {
			return "read: " + err.Error()
		}
		for _, e := range evs {
			if e.What == EventFork && e.PID == pid {
				return "heard"
			}
		}
	}
}

func hasCapNetAdmin(t *testing.T) bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return caps&(1<<unix.CAP_NET_ADMIN) != 0
		}
	}
	return false
}

// TestIntegrationReadAllocs checks the steady-state read path does not
// allocate while events stream in.
func TestIntegrationReadAllocs(t *testing.T) {
	eventlock.Hold(t)
	requireRoot(t)
	checkFDs(t)
	c := listen(t, Config{})
	load := exec.Command("/bin/sh", "-c", "while :; do (:); done")
	if err := load.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		load.Process.Kill() // our own child only
		load.Wait()
	}()
	buf := make([]Event, 0, 64)
	for range 10 { // warm up: pending start-up events, first poller use
		if _, err := c.Read(buf[:0]); err != nil {
			t.Fatal(err)
		}
	}
	allocs := testing.AllocsPerRun(200, func() {
		evs, err := c.Read(buf[:0])
		if err != nil || len(evs) == 0 {
			t.Fatalf("Read: %d events, %v", len(evs), err)
		}
	})
	if allocs != 0 {
		t.Errorf("Read allocates %v times per call", allocs)
	}
	t.Logf("stats %+v", c.Stats())
}

// copyForNobody copies the test binary where user nobody can run it.
func copyForNobody(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "cgre-kernel-test-")
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
	bin := dir + "/kernel.test"
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// BenchmarkIntegrationDrain measures the read path on a full socket: a
// burst of a thousand forks queues a few thousand events while nobody
// reads, then Read drains them (recvmmsg + Decode + filter, one datagram per
// event). It reports the drain's ns/event; ns/op is dominated by the burst
// (the timer runs through it, so that b.N stays small).
func BenchmarkIntegrationDrain(b *testing.B) {
	eventlock.Hold(b)
	if os.Geteuid() != 0 {
		b.Skip("needs root: joining the proc connector multicast group needs CAP_NET_ADMIN")
	}
	c, err := Listen(Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]Event, 0, 256)
	events, reads := 0, 0
	var drain time.Duration
	b.ResetTimer()
	for range b.N {
		burst := exec.Command("/bin/sh", "-c", "i=0; while [ $i -lt 1000 ]; do (:); i=$((i+1)); done")
		if err := burst.Run(); err != nil {
			b.Fatal(err)
		}
		sentinel := exec.Command("/bin/true")
		if err := sentinel.Run(); err != nil {
			b.Fatal(err)
		}
		spid := int32(sentinel.Process.Pid)
		start := time.Now()
		for done := false; !done; {
			evs, err := c.Read(buf[:0])
			if err != nil {
				b.Fatal(err)
			}
			reads++
			events += len(evs)
			for _, e := range evs {
				if e.What == EventExec && e.PID == spid {
					done = true
				}
			}
		}
		drain += time.Since(start)
	}
	if s := c.Stats(); s.Overflows > 0 {
		b.Fatalf("the burst overflowed the receive buffer: %+v", s)
	}
	b.ReportMetric(float64(drain.Nanoseconds())/float64(events), "ns/event")
	b.ReportMetric(float64(events)/float64(reads), "events/Read")
}

// onlyExecs runs /bin/true, reads until its EXEC event, and checks that
// Read returned nothing outside an EXEC-only mask (overflows aside).
func onlyExecs(t *testing.T, r *reader) {
	t.Helper()
	child := exec.Command("/bin/true")
	if err := child.Run(); err != nil {
		t.Fatal(err)
	}
	cpid := int32(child.Process.Pid)
	seen := r.until(t, 5*time.Second, func(e Event) bool { return e.What == EventExec && e.PID == cpid })
	for _, e := range seen {
		if e.What != EventExec && e.What != EventOverflow {
			t.Errorf("Read returned %v outside the EXEC mask", e.What)
		}
	}
}

// TestIntegrationReadOneSyscallPerWake: a Read that waits for an event
// makes one system call for it (a blocking recvmmsg, which has no timeout),
// counted on the reader's locked thread with the raw_syscalls tracepoints,
// only while it is inside Read. (Waiting in poll(2) and then reading took
// two per event.) What the Go runtime and the kernel do on that thread on
// their own is left out, and logged: the runtime's futex and sched_yield
// (it wakes its monitor thread, sysmon, when a thread comes back from a
// blocking system call to an idle process), returns from signals that reach
// the thread (rt_sigreturn: preemption requests, the children's SIGCHLD),
// and the kernel's restarts of the blocked recvmmsg after a signal or a
// task-work notification (a new entry, so recvmmsg is counted as it
// returns, restarts excepted). The counters' own read(2)s are not counted
// (Read makes none).
func TestIntegrationReadOneSyscallPerWake(t *testing.T) {
	requireRoot(t)
	checkFDs(t)
	c := listen(t, Config{Events: EventExec})
	const children = 20
	pids := make(chan int32, children)
	go func() { // on another thread: its forks are not counted
		for range children {
			time.Sleep(10 * time.Millisecond)
			cmd := exec.Command("/bin/true")
			if err := cmd.Start(); err != nil {
				t.Error(err)
				close(pids)
				return
			}
			pids <- int32(cmd.Process.Pid)
			_ = cmd.Wait()
		}
		close(pids)
	}()
	watchdog := time.AfterFunc(10*time.Second, func() { c.Close() }) // unblocks Read
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
	// -516..-512: ERESTART_RESTARTBLOCK, ERESTARTNOHAND, ERESTARTNOINTR, ERESTARTSYS.
	recvs := counter(syscount.ThreadReturns(0, false, fmt.Sprintf("id == %d && (ret < -516 || ret > -512)", unix.SYS_RECVMMSG)))
	restarts := counter(syscount.ThreadReturns(0, false, fmt.Sprintf("id == %d && ret >= -516 && ret <= -512", unix.SYS_RECVMMSG)))
	others := counter(syscount.ThreadFilter(0, false, fmt.Sprintf("id != %d && id != %d && id != %d && id != %d && id != %d",
		unix.SYS_READ, unix.SYS_RECVMMSG, unix.SYS_FUTEX, unix.SYS_SCHED_YIELD, unix.SYS_RT_SIGRETURN)))
	runtimes := counter(syscount.ThreadFilter(0, false, fmt.Sprintf("id == %d || id == %d || id == %d", unix.SYS_FUTEX, unix.SYS_SCHED_YIELD, unix.SYS_RT_SIGRETURN)))
	ks := []*syscount.Counter{recvs, others, restarts, runtimes}
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
	buf := make([]Event, 0, 64)
	ours, execd := map[int32]bool{}, map[int32]bool{}
	seen := 0
	reads := 0
	var in [4]int // inside Read: recvmmsg returned, other calls, recvmmsg restarted, the runtime's
	start := time.Now()
	for seen < children {
		v0 := snap()
		evs, err := c.Read(buf[:0])
		v1 := snap()
		for i := range in {
			in[i] += v1[i] - v0[i]
		}
		if err != nil {
			t.Fatalf("after %v, %d of %d EXEC events seen: %v", time.Since(start), seen, children, err)
		}
		reads++
		for more := true; more; {
			select {
			case p, ok := <-pids:
				if ok {
					ours[p] = true
				} else {
					more = false
				}
			default:
				more = false
			}
		}
		for _, e := range evs {
			if e.What == EventExec {
				execd[e.PID] = true
			}
		}
		seen = 0
		for p := range ours {
			if execd[p] {
				seen++
			}
		}
	}
	t.Logf("%d Reads over %v: %d recvmmsg and %d other system calls; %d recvmmsg restarted by the kernel, %d calls of the runtime (futex, sched_yield, rt_sigreturn)",
		reads, time.Since(start).Round(time.Millisecond), in[0], in[1], in[2], in[3])
	if in[0] != reads || in[1] != 0 {
		t.Errorf("%d Reads made %d recvmmsg and %d other system calls: want one recvmmsg per wake-up", reads, in[0], in[1])
	}
}

// TestIntegrationIdleReaderSleeps: a Read with nothing to read sleeps in
// the kernel until Close wakes it: over 3 s its thread makes no system call
// and is not switched to (no periodic timeout), and Close still wakes it at
// once. Counted on the reader's locked thread: system calls with the
// raw_syscalls:sys_enter tracepoint, wake-ups as its context switches
// (/proc/self/task/TID/status).
func TestIntegrationIdleReaderSleeps(t *testing.T) {
	requireRoot(t)
	checkFDs(t)
	// PTRACE events are rare, and the kernel's filter keeps the others off
	// the socket.
	c := listen(t, Config{Events: EventPtrace})
	if !c.Filtered() {
		t.Skip("this kernel does not filter events per listener: every fork on the machine would wake the reader")
	}
	tids := make(chan int, 1)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // ends with the goroutine: the thread exits
		tids <- unix.Gettid()
		buf := make([]Event, 0, 8)
		for {
			evs, err := c.Read(buf[:0])
			if err != nil {
				done <- err
				return
			}
			t.Logf("woken by %d PTRACE events", len(evs))
		}
	}()
	tid := <-tids
	time.Sleep(100 * time.Millisecond) // into recvmmsg
	calls, err := syscount.Thread(tid, false)
	if err != nil {
		t.Fatal(err)
	}
	defer calls.Close()
	sw0 := contextSwitches(t, tid)
	time.Sleep(3 * time.Second)
	n, err := calls.Count()
	if err != nil {
		t.Fatal(err)
	}
	sw := contextSwitches(t, tid) - sw0
	t.Logf("idle reader over 3 s: %d system calls, %d context switches", n, sw)
	if n != 0 || sw > 1 {
		t.Errorf("an idle reader woke: %d system calls and %d context switches in 3 s, want none", n, sw)
	}
	start := time.Now()
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("Read after Close: %v, want ErrClosed", err)
		}
		t.Logf("Close woke the reader in %v", time.Since(start))
	case <-time.After(time.Second):
		t.Fatal("Read still blocked 1 s after Close")
	}
	if s := c.Stats(); s.Foreign != 0 {
		t.Errorf("Close's wake-up datagram counted as foreign: %+v", s)
	}
}

// contextSwitches returns the voluntary and involuntary context switches of
// thread tid of this process.
func contextSwitches(t *testing.T, tid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/status", tid))
	if err != nil {
		t.Fatal(err)
	}
	sum := 0
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "voluntary_ctxt_switches:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			sum += n
		} else if v, ok := strings.CutPrefix(l, "nonvoluntary_ctxt_switches:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			sum += n
		}
	}
	return sum
}
