package cgroupfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cgrulesengd/cgrulesengd/internal/fdreserve/fdtest"
	"github.com/cgrulesengd/cgrulesengd/internal/ratelimit"
)

// fdFixture is a v2 hierarchy of plain directories g0..g(n-1), each with a
// cgroup.procs file, and a Mover whose opens are counted.
type fdFixture struct {
	mnt   string
	h     *Hierarchy
	m     *Mover
	mu    sync.Mutex
	opens map[string]int // cgroup path -> opens
}

func newFDFixture(t *testing.T, n, max int) *fdFixture {
	t.Helper()
	f := &fdFixture{mnt: t.TempDir(), opens: map[string]int{}}
	files := map[string]string{}
	for i := 0; i < n; i++ {
		files[fmt.Sprintf("g%d/cgroup.procs", i)] = ""
	}
	writeFiles(t, f.mnt, files)
	f.h = &Hierarchy{Version: V2, Mountpoint: f.mnt, Root: "/"}
	f.m = NewMover(WithMaxOpen(max))
	open := f.m.fds.openFn
	f.m.fds.openFn = func(p string) (int, error) {
		f.mu.Lock()
		f.opens["/"+filepath.Base(filepath.Dir(p))]++
		f.mu.Unlock()
		return open(p)
	}
	t.Cleanup(func() { _ = f.m.Close() })
	return f
}

func (f *fdFixture) opened(cg string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.opens[cg]
}

// openProcsFiles counts this process's descriptors open on a file named
// cgroup.procs below dir.
func openProcsFiles(t *testing.T, dir string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err == nil && strings.HasPrefix(target, dir+"/") && strings.HasSuffix(target, "/cgroup.procs") {
			n++
		}
	}
	return n
}

// TestFDCacheBoundAndEviction: no more than the bound is open, the least
// recently used descriptor goes first, and a hit opens nothing.
func TestFDCacheBoundAndEviction(t *testing.T) {
	f := newFDFixture(t, 5, 3)
	for _, cg := range []string{"/g0", "/g1", "/g2", "/g0", "/g0"} {
		if err := f.m.Move(f.h, cg, 7); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.opened("/g0"); got != 1 {
		t.Errorf("g0 opened %d times for three moves, want 1 (cached)", got)
	}
	// g1 is now the least recently used: g3 evicts it, g0 and g2 stay.
	if err := f.m.Move(f.h, "/g3", 7); err != nil {
		t.Fatal(err)
	}
	if n := f.m.OpenFiles(); n != 3 {
		t.Errorf("%d descriptors open, want the bound, 3", n)
	}
	if n := openProcsFiles(t, f.mnt); n != 3 {
		t.Errorf("/proc/self/fd shows %d cgroup.procs descriptors, want 3", n)
	}
	for _, cg := range []string{"/g0", "/g2", "/g3"} {
		if err := f.m.Move(f.h, cg, 7); err != nil {
			t.Fatal(err)
		}
		if got := f.opened(cg); got != 1 {
			t.Errorf("%s opened %d times, want 1: it should have stayed cached", cg, got)
		}
	}
	if err := f.m.Move(f.h, "/g1", 7); err != nil {
		t.Fatal(err)
	}
	if got := f.opened("/g1"); got != 2 {
		t.Errorf("g1 opened %d times, want 2 (evicted, then reopened)", got)
	}
	if n := openProcsFiles(t, f.mnt); n != 3 {
		t.Errorf("/proc/self/fd shows %d cgroup.procs descriptors, want 3", n)
	}
	_ = f.m.Close()
	if n, m := f.m.OpenFiles(), openProcsFiles(t, f.mnt); n != 0 || m != 0 {
		t.Errorf("after Close: %d counted, %d in /proc/self/fd; want 0", n, m)
	}
	// Still usable after Close.
	if err := f.m.Move(f.h, "/g4", 7); err != nil {
		t.Fatal(err)
	}
	if got := readString(t, filepath.Join(f.mnt, "g4/cgroup.procs")); got != "7" {
		t.Errorf("g4/cgroup.procs = %q", got)
	}
}

// TestMoveReopensOnce: a cached descriptor of a removed cgroup fails with
// ENODEV (kernfs deactivates the file); Move opens the path once more and
// writes through the new descriptor. When that fails as well, it reports
// the cgroup as gone, after one reopen, with nothing left open.
func TestMoveReopensOnce(t *testing.T) {
	f := newFDFixture(t, 1, 4)
	if err := f.m.Move(f.h, "/g0", 1); err != nil {
		t.Fatal(err)
	}
	// The cached descriptor is stale: its next write fails.
	stale := 1
	f.m.fds.writeFn = func(fd, pid int) error {
		if stale > 0 {
			stale--
			return unix.ENODEV
		}
		return writePID(fd, pid)
	}
	// The cgroup was removed and created again: the second descriptor works.
	if err := f.m.Move(f.h, "/g0", 2); err != nil {
		t.Fatalf("move after ENODEV: %v", err)
	}
	if got := f.opened("/g0"); got != 2 {
		t.Errorf("opened %d times, want 2", got)
	}
	if got := readString(t, filepath.Join(f.mnt, "g0/cgroup.procs")); got != "2" {
		t.Errorf("cgroup.procs = %q, want 2 written through the new descriptor", got)
	}
	if n := openProcsFiles(t, f.mnt); n != 1 {
		t.Errorf("%d descriptors open after the reopen, want 1 (the stale one closed)", n)
	}

	// Every descriptor fails: one reopen, then the error.
	f.m.fds.writeFn = func(int, int) error { return unix.ENODEV }
	err := f.m.Move(f.h, "/g0", 3)
	if !errors.Is(err, unix.ENODEV) || !errors.Is(err, unix.ENOENT) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want ENODEV that also matches ENOENT", err)
	}
	if !strings.Contains(err.Error(), "pid 3") || !strings.Contains(err.Error(), "/g0") {
		t.Errorf("error does not name pid and cgroup: %v", err)
	}
	if got := f.opened("/g0"); got != 3 {
		t.Errorf("opened %d times in all, want 3 (one reopen for the failing move)", got)
	}
	if n, m := f.m.OpenFiles(), openProcsFiles(t, f.mnt); n != 0 || m != 0 {
		t.Errorf("after the failed reopen: %d counted, %d in /proc/self/fd; want 0", n, m)
	}

	// Removed for good: the reopen fails with ENOENT.
	f.m.fds.writeFn = nil
	if err := f.m.Move(f.h, "/g0", 4); err != nil {
		t.Fatal(err)
	}
	f.m.fds.writeFn = func(int, int) error { return unix.ENODEV }
	if err := os.RemoveAll(filepath.Join(f.mnt, "g0")); err != nil {
		t.Fatal(err)
	}
	err = f.m.Move(f.h, "/g0", 5)
	if !errors.Is(err, unix.ENOENT) {
		t.Fatalf("err = %v, want ENOENT", err)
	}
	if n := f.m.OpenFiles(); n != 0 {
		t.Errorf("%d descriptors open for a removed cgroup", n)
	}
}

// TestFDCacheKeepsDescriptorInUse: a descriptor evicted while a move still
// writes to it is closed by that move, not before (its number could
// otherwise be reused by another open and the pid written there).
func TestFDCacheKeepsDescriptorInUse(t *testing.T) {
	f := newFDFixture(t, 3, 1)
	p, err := f.m.fds.acquire(fileKey{f.h, "/g0"}, func() (string, error) { return filepath.Join(f.mnt, "g0/cgroup.procs"), nil })
	if err != nil {
		t.Fatal(err)
	}
	if err := f.m.Move(f.h, "/g1", 9); err != nil { // evicts g0: bound 1
		t.Fatal(err)
	}
	if _, err := unix.FcntlInt(uintptr(p.fd), unix.F_GETFD, 0); err != nil {
		t.Fatalf("descriptor closed while held: %v", err)
	}
	if n := f.m.OpenFiles(); n != 2 {
		t.Errorf("OpenFiles = %d, want 2 (g1 cached, g0 evicted but held)", n)
	}
	fd := p.fd
	f.m.fds.release(p)
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil {
		if target, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd)); strings.HasSuffix(target, "g0/cgroup.procs") {
			t.Errorf("descriptor %d still open on %s after its last holder released it", fd, target)
		}
	}
	if n := f.m.OpenFiles(); n != 1 {
		t.Errorf("OpenFiles = %d after release, want 1", n)
	}
}

// TestMoverNoFDLeak: concurrent moves into more cgroups than the bound,
// with Forget and failing moves mixed in, never hold more descriptors than
// the bound plus the moves in flight, and leave none open after Close.
func TestMoverNoFDLeak(t *testing.T) {
	const cgroups, max, workers = 40, 8, 8
	f := newFDFixture(t, cgroups, max)
	before := openProcsFiles(t, f.mnt)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				cg := fmt.Sprintf("/g%d", (w*7+i*3)%cgroups)
				if err := f.m.Move(f.h, cg, 100+i); err != nil {
					t.Error(err)
					return
				}
				switch i % 50 {
				case 10:
					f.m.Forget(f.h, cg)
				case 20:
					if err := f.m.Move(f.h, "/missing", 1); !errors.Is(err, unix.ENOENT) {
						t.Errorf("missing cgroup: %v", err)
					}
				}
				if n := f.m.OpenFiles(); n > max+workers {
					t.Errorf("%d descriptors open, bound %d + %d in flight", n, max, workers)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := openProcsFiles(t, f.mnt); n > max {
		t.Errorf("%d descriptors open when idle, want at most %d", n, max)
	}
	_ = f.m.Close()
	if n, m := f.m.OpenFiles(), openProcsFiles(t, f.mnt); n != 0 || m != before {
		t.Errorf("after Close: %d counted, %d in /proc/self/fd (%d before); want 0 and %d", n, m, before, before)
	}
}

// TestMoveAllocs: a move through a cached descriptor does not allocate.
func TestMoveAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	f := newFDFixture(t, 1, 4)
	if err := f.m.Move(f.h, "/g0", 1); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if err := f.m.Move(f.h, "/g0", 12345); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("a cached move allocates %v times", allocs)
	}
}

func TestMaxOpenFor(t *testing.T) {
	for _, c := range []struct {
		nofile uint64
		want   int
	}{
		{0, MinOpen}, {10, MinOpen}, {64, 32}, {1024, 512}, {4096, 2048},
		{32768, MaxOpenCap}, {524288, MaxOpenCap}, {1 << 62, MaxOpenCap},
	} {
		if got := MaxOpenFor(c.nofile); got != c.want {
			t.Errorf("MaxOpenFor(%d) = %d, want %d", c.nofile, got, c.want)
		}
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if got := NewMover().MaxOpen(); got != MaxOpenFor(lim.Cur) {
		t.Errorf("the default bound is %d, want half the open-file limit %d: %d", got, lim.Cur, MaxOpenFor(lim.Cur))
	}
}

// TestMoveShortage: an open that fails with EMFILE drops the least recently
// used half of the cache, lowers the bound, retries and reports; a retry
// that fails too is an error matching ErrOutOfDescriptors and EMFILE that
// names the pid and the cgroup.
func TestMoveShortage(t *testing.T) {
	f := newFDFixture(t, 20, 20)
	var reports []*Shortage
	f.m.fds.report = func(s *Shortage) { reports = append(reports, s) }
	for i := 0; i < 16; i++ {
		if err := f.m.Move(f.h, fmt.Sprintf("/g%d", i), 7); err != nil {
			t.Fatal(err)
		}
	}
	open := f.m.fds.openFn
	fail := 1
	f.m.fds.openFn = func(p string) (int, error) {
		if fail > 0 {
			fail--
			return -1, unix.EMFILE
		}
		return open(p)
	}
	if err := f.m.Move(f.h, "/g16", 7); err != nil {
		t.Fatalf("the retry after closing idle descriptors failed: %v", err)
	}
	if len(reports) != 1 || reports[0].Closed != 8 || reports[0].Bound != 8 || reports[0].Retry != nil || !errors.Is(reports[0], ErrOutOfDescriptors) || !errors.Is(reports[0], unix.EMFILE) {
		t.Fatalf("reports %+v, want one: 8 closed, bound 8, recovered", reports)
	}
	if !strings.Contains(reports[0].Error(), "g16/cgroup.procs: too many open files: closed 8 idle") {
		t.Errorf("report: %v", reports[0])
	}
	if n, m := f.m.OpenFiles(), openProcsFiles(t, f.mnt); n != 8 || m != 8 || f.m.MaxOpen() != 8 {
		t.Errorf("after the shortage: %d descriptors counted, %d in /proc/self/fd, bound %d; want 8, 8, 8", n, m, f.m.MaxOpen())
	}
	// The most recently used stayed: g8..g15 are cached, g0 is not.
	if !f.m.Cached(f.h, "/g15") || !f.m.Cached(f.h, "/g16") || f.m.Cached(f.h, "/g0") {
		t.Errorf("the wrong half was dropped")
	}
	// The bound grows back by one per open that finds a descriptor.
	for i, cg := range []string{"/g0", "/g1"} {
		if err := f.m.Move(f.h, cg, 7); err != nil {
			t.Fatal(err)
		}
		if got := f.m.MaxOpen(); got != 9+i {
			t.Errorf("bound %d after %d opens with no shortage, want %d", got, i+1, 9+i)
		}
	}

	f.m.fds.openFn = func(string) (int, error) { return -1, unix.ENFILE }
	f.m.fds.shortLog = ratelimit.Limiter{Burst: 100}
	err := f.m.Move(f.h, "/g17", 4242)
	if !errors.Is(err, ErrOutOfDescriptors) || !errors.Is(err, unix.ENFILE) {
		t.Fatalf("err = %v, want ErrOutOfDescriptors and ENFILE", err)
	}
	if !strings.Contains(err.Error(), "pid 4242") || !strings.Contains(err.Error(), "/g17") || !strings.Contains(err.Error(), "still failing") {
		t.Errorf("error does not name pid and cgroup, or hide the failed retry: %v", err)
	}
	if len(reports) != 2 || reports[1].Retry == nil {
		t.Errorf("reports %+v, want a second one with the failed retry", reports)
	}
	if f.m.MaxOpen() != MinOpen {
		t.Errorf("bound %d, want it never below MinOpen %d", f.m.MaxOpen(), MinOpen)
	}
}

// TestMoverShed: a shortage seen elsewhere in the process (Shed) closes the
// least recently used half of the cached descriptors and lowers the bound,
// as a failed open does; the bound grows back with opens that find a
// descriptor.
func TestMoverShed(t *testing.T) {
	f := newFDFixture(t, 20, 20)
	for i := 0; i < 16; i++ {
		if err := f.m.Move(f.h, fmt.Sprintf("/g%d", i), 7); err != nil {
			t.Fatal(err)
		}
	}
	if closed := f.m.Shed(); closed != 8 {
		t.Errorf("Shed closed %d, want 8 of 16", closed)
	}
	if n, m := f.m.OpenFiles(), openProcsFiles(t, f.mnt); n != 8 || m != 8 || f.m.MaxOpen() != 8 {
		t.Errorf("after Shed: %d descriptors counted, %d in /proc/self/fd, bound %d; want 8, 8, 8", n, m, f.m.MaxOpen())
	}
	if !f.m.Cached(f.h, "/g15") || f.m.Cached(f.h, "/g0") {
		t.Errorf("the wrong half was dropped")
	}
	if err := f.m.Move(f.h, "/g0", 7); err != nil {
		t.Fatal(err)
	}
	if got := f.m.MaxOpen(); got != 9 {
		t.Errorf("bound %d after an open with no shortage, want 9", got)
	}
	// A lasting shortage: the bound never goes below MinOpen.
	for range 5 {
		f.m.Shed()
	}
	if f.m.MaxOpen() != MinOpen {
		t.Errorf("bound %d, want MinOpen %d", f.m.MaxOpen(), MinOpen)
	}
}

// TestMoveRealDescriptorLimit: with the open-file limit lowered so that
// the cache cannot hold every destination, moves into 40 cgroups all work:
// the kernel's EMFILE makes the cache close idle descriptors.
func TestMoveRealDescriptorLimit(t *testing.T) {
	const cgroups = 40
	f := newFDFixture(t, cgroups, cgroups) // a bound the limit cannot hold
	var reports []*Shortage
	f.m.fds.report = func(s *Shortage) { reports = append(reports, s) }
	fdtest.Exhaust(t, 20)
	for round := 0; round < 2; round++ {
		for i := 0; i < cgroups; i++ {
			if err := f.m.Move(f.h, fmt.Sprintf("/g%d", i), 100+i); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
	if len(reports) == 0 {
		t.Fatalf("no shortage with room for 20 descriptors and %d destinations", cgroups)
	}
	t.Logf("first shortage: %v; bound now %d", reports[0], f.m.MaxOpen())
	if n := f.m.OpenFiles(); n > f.m.MaxOpen() {
		t.Errorf("%d descriptors open, bound %d", n, f.m.MaxOpen())
	}
}
