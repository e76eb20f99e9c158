package sched

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cgrulesengd/cgrulesengd/internal/proc"
)

func TestSetSliceRange(t *testing.T) {
	for _, d := range []time.Duration{-time.Millisecond, time.Microsecond, 99 * time.Microsecond, 101 * time.Millisecond} {
		if _, err := SetSlice(d); err == nil {
			t.Errorf("SetSlice(%v) = nil error, want out of range", d)
		}
	}
}

// TestThreads: the thread list SetSlice walks (proc.FS.Threads) keeps the
// numeric entries of /proc/PID/task only.
func TestThreads(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"12", "7", "self", "x1"} {
		if err := os.MkdirAll(filepath.Join(dir, "42", "task", name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	got, err := proc.NewFS(dir).Threads(42)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if want := []int{7, 12}; !slices.Equal(got, want) {
		t.Errorf("threads = %v, want %v", got, want)
	}
	if _, err := proc.NewFS(dir).Threads(43); err == nil {
		t.Error("threads of a missing process: nil error")
	}
}

// TestIntegrationSetSlice sets a slice on this test process's own threads
// (needs no privilege), checks every thread, including threads created
// afterwards, and puts the default back.
func TestIntegrationSetSlice(t *testing.T) {
	const want = 300 * time.Microsecond
	n, err := SetSlice(want)
	if errors.Is(err, ErrNotSupported) {
		t.Skipf("kernel without custom slices: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := SetSlice(0); err != nil {
			t.Errorf("putting the default slice back: %v", err)
		}
	})
	if n < 1 {
		t.Fatalf("SetSlice changed %d threads", n)
	}
	// Force new threads: goroutines locked to their threads while others
	// are blocked make the runtime start more.
	var wg sync.WaitGroup
	release := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			<-release
		}()
	}
	time.Sleep(20 * time.Millisecond)
	tids, err := proc.NewFS("/proc").Threads(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if len(tids) < 5 {
		t.Logf("only %d threads", len(tids))
	}
	for _, tid := range tids {
		got, err := Slice(tid)
		if err != nil {
			t.Errorf("thread %d: %v", tid, err)
			continue
		}
		if got != want {
			t.Errorf("thread %d: slice %v, want %v", tid, got, want)
		}
	}
	close(release)
	wg.Wait()
}
