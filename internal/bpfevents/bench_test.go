package bpfevents

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/cgrulesengd/cgrulesengd/internal/kernel"
	"github.com/cgrulesengd/cgrulesengd/tests/eventlock"
)

// The benchmarks of docs/performance.md ("The BPF event source"): what each
// source costs the daemon and the rest of the machine, measured in one run
// so that the phases compare (the machine is shared: other sessions load
// it). Run with -benchtime 1x; each takes 10-20 s.

// daemonEvents is the daemon's proc connector subscription
// (cmd/cgrulesengd: wantedEvents).
const daemonEvents = kernel.EventFork | kernel.EventExec | kernel.EventUID | kernel.EventGID | kernel.EventExit

// cpuTime is this process's user and system CPU time (not its children's:
// the storm's).
func cpuTime() time.Duration {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// drain reads src until it is closed, discarding, as fast as it can (no
// pause between reads, unlike the daemon's reader under a storm).
func drain(src eventSource, done *sync.WaitGroup, n *uint64) {
	defer done.Done()
	buf := make([]kernel.Event, 0, 256)
	for {
		evs, err := src.Read(buf[:0])
		*n += uint64(len(evs))
		if err != nil {
			return
		}
	}
}

type stormResult struct {
	children uint64
	cpu      time.Duration
	events   uint64 // delivered to the reader
}

// stormPhase runs the storm (2 processes, children changing to a uid no
// filter names) for secs seconds with listen's source read, if any.
func stormPhase(b *testing.B, storm string, secs int, listen func() (eventSource, func())) stormResult {
	var r stormResult
	var wg sync.WaitGroup
	var stop func()
	if listen != nil {
		src, closer := listen()
		stop = closer
		wg.Add(1)
		go drain(src, &wg, &r.events)
	}
	time.Sleep(100 * time.Millisecond)
	c0 := cpuTime()
	r.children = runStorm(b, storm, 2, secs, covUnnamed)
	r.cpu = cpuTime() - c0
	if stop != nil {
		stop()
		wg.Wait()
	}
	return r
}

// BenchmarkIntegrationStorm: a fork storm by a user no rule names, with no
// listener, with the proc connector and with the BPF source: the storm's
// children per second (what each source costs the machine) and this
// process's CPU per storm event (3 kernel events per child: FORK, UID,
// EXIT; what each source costs the daemon). Three rounds of the three
// phases in turn; the medians are reported.
func BenchmarkIntegrationStorm(b *testing.B) {
	eventlock.Hold(b)
	requireRoot(b)
	storm := buildStorm(b)
	const secs, rounds = 3, 3
	netlink := func() (eventSource, func()) {
		c, err := kernel.Listen(kernel.Config{Events: daemonEvents})
		if err != nil {
			b.Fatal(err)
		}
		return c, func() { c.Close() }
	}
	bpf := func() (eventSource, func()) {
		s, err := Open(Config{})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.SetFilter(Filter{UIDs: []uint32{covU1}, GIDs: []uint32{covG1}, Processes: []string{"cgre-no-such-program"}}); err != nil {
			b.Fatal(err)
		}
		return s, func() { s.Close() }
	}
	phases := []struct {
		name   string
		listen func() (eventSource, func())
	}{{"none", nil}, {"netlink", netlink}, {"bpf", bpf}}
	for range b.N {
		perSec := map[string][]float64{}
		perEvent := map[string][]float64{}
		delivered := map[string][]float64{}
		for range rounds {
			for _, p := range phases {
				r := stormPhase(b, storm, secs, p.listen)
				perSec[p.name] = append(perSec[p.name], float64(r.children)/secs)
				perEvent[p.name] = append(perEvent[p.name], float64(r.cpu.Nanoseconds())/1000/float64(3*r.children))
				delivered[p.name] = append(delivered[p.name], float64(r.events))
			}
		}
		median := func(v []float64) float64 {
			v = slices.Clone(v)
			slices.Sort(v)
			return v[len(v)/2]
		}
		for _, p := range phases {
			b.ReportMetric(median(perSec[p.name]), p.name+"-children/s")
			if p.listen != nil {
				b.ReportMetric(median(perEvent[p.name]), p.name+"-µs/event")
			}
			b.Logf("%s: children/s %.0f, daemon CPU µs per storm event %.3f, events delivered %.0f (rounds)",
				p.name, perSec[p.name], perEvent[p.name], delivered[p.name])
		}
	}
}

// BenchmarkIntegrationSyscallHook: what the sys_exit hook costs every
// system call on the machine, against the alternative of the per-call
// tracepoint (a program on syscalls:sys_exit_setuid through perf, as the
// daemon would attach it with the id read from a private tracefs mount):
// ns per getppid(2) on one thread, with no hook, with an empty tp_btf
// program on sys_exit (the kernel's cost of any such hook: the system
// calls' slow path and the program's dispatch), with the BPF source (its
// sys_exit program, on every call) and with that tracepoint program. Five
// rounds of the phases in turn; the medians are reported.
func BenchmarkIntegrationSyscallHook(b *testing.B) {
	eventlock.Hold(b)
	requireRoot(b)
	const calls, rounds = 1_000_000, 5
	loop := func() float64 {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		start := time.Now()
		for range calls {
			unix.Getppid()
		}
		return float64(time.Since(start).Nanoseconds()) / calls
	}
	empty := func() func() {
		p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Type: ebpf.Tracing, AttachType: ebpf.AttachTraceRawTp, AttachTo: "sys_exit",
			Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
			License:      "Dual MIT/GPL",
		})
		if err != nil {
			b.Fatal(err)
		}
		l, err := link.AttachTracing(link.TracingOptions{Program: p})
		if err != nil {
			b.Fatal(err)
		}
		return func() { l.Close(); p.Close() }
	}
	bpf := func() func() {
		s, err := Open(Config{})
		if err != nil {
			b.Fatal(err)
		}
		return func() { s.Close() }
	}
	perf := func() func() {
		closer, err := attachSyscallTracepoint("syscalls/sys_exit_setuid")
		if err != nil {
			b.Skip(err)
		}
		return closer
	}
	phases := []struct {
		name   string
		attach func() func()
	}{{"none", nil}, {"empty-tp_btf", empty}, {"bpf-source", bpf}, {"perf-syscall-tp", perf}}
	for range b.N {
		ns := map[string][]float64{}
		for range rounds {
			for _, p := range phases {
				var detach func()
				if p.attach != nil {
					detach = p.attach()
				}
				ns[p.name] = append(ns[p.name], loop())
				if detach != nil {
					detach()
				}
			}
		}
		for _, p := range phases {
			slices.Sort(ns[p.name])
			med := ns[p.name][rounds/2]
			b.ReportMetric(med, p.name+"-ns/syscall")
			b.Logf("%s: median %.1f ns per getppid (rounds: %.0f)", p.name, med, ns[p.name])
		}
	}
}

// attachSyscallTracepoint attaches an empty tracepoint program to a
// syscalls:* tracepoint through perf_event_open: the alternative to the raw
// sys_exit tracepoint. The tracepoint's id comes from a tracefs mounted in a
// private mount namespace. One perf event (on CPU 0) is enough: the
// programs of a tracepoint run for its events on every CPU.
func attachSyscallTracepoint(name string) (func(), error) {
	id, err := tracepointID(name)
	if err != nil {
		return nil, err
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.TracePoint,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
		License:      "Dual MIT/GPL",
	})
	if err != nil {
		return nil, fmt.Errorf("loading a tracepoint program: %w", err)
	}
	var fds []int
	closer := func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
		prog.Close()
	}
	for cpu := range 1 {
		attr := unix.PerfEventAttr{Type: unix.PERF_TYPE_TRACEPOINT, Config: id, Sample: 1, Wakeup: 1}
		attr.Size = uint32(unsafe.Sizeof(attr))
		fd, err := unix.PerfEventOpen(&attr, -1, cpu, -1, unix.PERF_FLAG_FD_CLOEXEC)
		if err != nil {
			closer()
			return nil, fmt.Errorf("perf_event_open(%s, cpu %d): %w", name, cpu, err)
		}
		fds = append(fds, fd)
		if err := unix.IoctlSetInt(fd, unix.PERF_EVENT_IOC_SET_BPF, prog.FD()); err != nil {
			closer()
			return nil, fmt.Errorf("attaching to %s: %w", name, err)
		}
		if err := unix.IoctlSetInt(fd, unix.PERF_EVENT_IOC_ENABLE, 0); err != nil {
			closer()
			return nil, err
		}
	}
	return closer, nil
}

// BenchmarkIntegrationIdleWakeups: both sources open at once, each read by
// a goroutine locked to its own thread, for 10 s as the machine is (other
// sessions may fork and exec), then for 10 s of a fork storm (one process)
// by a user no rule names: the context switches of each reader thread (the
// daemon's target: at most 10 in 10 s when nothing it needs happens), and
// the events each delivered.
func BenchmarkIntegrationIdleWakeups(b *testing.B) {
	eventlock.Hold(b)
	requireRoot(b)
	storm := buildStorm(b)
	const secs = 10
	for range b.N {
		c, err := kernel.Listen(kernel.Config{Events: daemonEvents})
		if err != nil {
			b.Fatal(err)
		}
		s, err := Open(Config{})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.SetFilter(Filter{UIDs: []uint32{covU1}, GIDs: []uint32{covG1}, Processes: []string{"cgre-no-such-program"}}); err != nil {
			b.Fatal(err)
		}
		var wg sync.WaitGroup
		var tids [2]int
		ready := make(chan struct{}, 2)
		for i, src := range []eventSource{c, s} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				runtime.LockOSThread()
				tids[i] = unix.Gettid()
				ready <- struct{}{}
				buf := make([]kernel.Event, 0, 256)
				for {
					if _, err := src.Read(buf[:0]); err != nil {
						return
					}
				}
			}()
		}
		<-ready
		<-ready
		time.Sleep(200 * time.Millisecond)
		for _, phase := range []string{"quiet", "storm"} {
			sw0 := [2]int{contextSwitches(b, tids[0]), contextSwitches(b, tids[1])}
			ev0 := [2]uint64{c.Stats().Events, s.Stats().Events}
			if phase == "storm" {
				runStorm(b, storm, 1, secs, covUnnamed)
			} else {
				time.Sleep(secs * time.Second)
			}
			sw := [2]int{contextSwitches(b, tids[0]) - sw0[0], contextSwitches(b, tids[1]) - sw0[1]}
			ev := [2]uint64{c.Stats().Events - ev0[0], s.Stats().Events - ev0[1]}
			b.ReportMetric(float64(sw[0]), phase+"-netlink-wakeups/10s")
			b.ReportMetric(float64(sw[1]), phase+"-bpf-wakeups/10s")
			b.Logf("%s, %d s: the proc connector's reader woke %d times for %d events; the BPF source's reader %d times for %d events",
				phase, secs, sw[0], ev[0], sw[1], ev[1])
		}
		c.Close()
		s.Close()
		wg.Wait()
	}
}

// BenchmarkIntegrationMemory: the kernel memory of the maps, empty and with
// 10,000 rule uids and 10,000 gids, and what Open costs the Go process
// (RssAnon: loading the kernel's BTF allocates, and the heap is given back).
func BenchmarkIntegrationMemory(b *testing.B) {
	eventlock.Hold(b)
	requireRoot(b)
	for range b.N {
		debug.FreeOSMemory()
		rss0 := rssAnon(b)
		s, err := Open(Config{})
		if err != nil {
			b.Fatal(err)
		}
		rssOpen := rssAnon(b)
		debug.FreeOSMemory()
		rssAfter := rssAnon(b)
		empty, err := s.MapMemory()
		if err != nil {
			b.Fatal(err)
		}
		var uids, gids []uint32
		for i := range uint32(10000) {
			uids = append(uids, 100000+i)
			gids = append(gids, 200000+i)
		}
		if err := s.SetFilter(Filter{UIDs: uids, GIDs: gids}); err != nil {
			b.Fatal(err)
		}
		full, err := s.MapMemory()
		if err != nil {
			b.Fatal(err)
		}
		s.Close()
		b.ReportMetric(mib(empty), "maps-empty-MiB")
		b.ReportMetric(mib(full), "maps-10k-MiB")
		b.ReportMetric((float64(rssAfter)-float64(rss0))/(1<<20), "rssanon-growth-MiB")
		b.Logf("maps: %.2f MiB empty, %.2f MiB with 10,000 uids and 10,000 gids; RssAnon %.1f MiB before Open, %.1f MiB just after, %.1f MiB after a GC",
			mib(empty), mib(full), float64(rss0)/(1<<20), float64(rssOpen)/(1<<20), float64(rssAfter)/(1<<20))
	}
}

// rssAnon reads this process's RssAnon in bytes.
func rssAnon(b testing.TB) uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "RssAnon:"); ok {
			n, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n << 10
		}
	}
	return 0
}

// BenchmarkIntegrationDelivery is how long each source takes to hand a
// credential change to a waiting reader: from the event's kernel timestamp
// (the proc connector's is taken in commit_creds, the BPF source's when the
// set*id call returns) to the return of Read, on a reader that sleeps in
// the kernel until then (the daemon's idle case). One source listens at a
// time, in turn, three rounds of 200 setresuid calls 2 ms apart (each by a
// new helper process: a fork, an exec, the call). Reported: the medians of
// the rounds' p50 and p90, in µs.
func BenchmarkIntegrationDelivery(b *testing.B) {
	requireRoot(b)
	h := buildHelpers(b)
	const perRound = 200
	round := func(src eventSource) (p50, p90 time.Duration) {
		lat := make(chan time.Duration, perRound)
		done := make(chan struct{})
		go func() {
			runtime.LockOSThread()
			defer close(done)
			buf := make([]kernel.Event, 0, 64)
			for {
				evs, err := src.Read(buf[:0])
				now := kernel.Now()
				for _, e := range evs {
					if e.What == kernel.EventUID && e.EUID == covU1 && e.Timestamp > 0 {
						select {
						case lat <- time.Duration(now - e.Timestamp):
						default:
						}
					}
				}
				if err != nil {
					return
				}
			}
		}()
		for range perRound {
			runSetid(b, h.native, "resuid", u(covU1), u(covU1), u(covU1))
			time.Sleep(2 * time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond)
		src.(interface{ Close() error }).Close()
		<-done
		close(lat)
		var all []time.Duration
		for d := range lat {
			all = append(all, d)
		}
		if len(all) < perRound/2 {
			b.Fatalf("only %d of %d credential changes delivered", len(all), perRound)
		}
		slices.Sort(all)
		return all[len(all)/2], all[len(all)*9/10]
	}
	res := map[string][][2]time.Duration{}
	for r := 0; r < 3; r++ {
		nl, err := kernel.Listen(kernel.Config{Events: daemonEvents})
		if err != nil {
			b.Fatal(err)
		}
		p50, p90 := round(nl)
		res["netlink"] = append(res["netlink"], [2]time.Duration{p50, p90})
		s, err := Open(Config{})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.SetFilter(Filter{UIDs: []uint32{covU1}}); err != nil {
			b.Fatal(err)
		}
		p50, p90 = round(s)
		res["bpf"] = append(res["bpf"], [2]time.Duration{p50, p90})
	}
	for _, src := range []string{"netlink", "bpf"} {
		var p50s, p90s []time.Duration
		for _, r := range res[src] {
			p50s, p90s = append(p50s, r[0]), append(p90s, r[1])
		}
		fmt.Printf("delivery, %s: p50 %v, p90 %v (rounds)\n", src, p50s, p90s)
		slices.Sort(p50s)
		slices.Sort(p90s)
		b.ReportMetric(float64(p50s[1])/1e3, src+"-p50-µs")
		b.ReportMetric(float64(p90s[1])/1e3, src+"-p90-µs")
	}
}
