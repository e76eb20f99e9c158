package sched

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cgrulesengd/cgrulesengd/internal/proc"
)

// ErrNotSupported is returned when the kernel does not keep a requested
// slice for SCHED_OTHER threads (before Linux 6.12).
var ErrNotSupported = errors.New("sched: the kernel does not support custom time slices for SCHED_OTHER (needs Linux 6.12)")

// The kernel's bounds for a SCHED_OTHER thread's slice.
const (
	MinSlice = 100 * time.Microsecond
	MaxSlice = 100 * time.Millisecond
)

var (
	mu        sync.Mutex
	supported *bool // probe result, once known
)

// SetSlice sets the requested time slice of every SCHED_OTHER thread of the
// calling process to d (see the package comment), or back to the kernel's
// default when d is 0. It returns the number of threads changed.
func SetSlice(d time.Duration) (int, error) {
	if d != 0 && (d < MinSlice || d > MaxSlice) {
		return 0, fmt.Errorf("sched: slice %v out of range (%v to %v, or 0 for the default)", d, MinSlice, MaxSlice)
	}
	mu.Lock()
	defer mu.Unlock()
	if supported != nil && !*supported {
		return 0, ErrNotSupported
	}
	done := map[int]bool{}
	for {
		tids, err := proc.NewFS("/proc").Threads(os.Getpid())
		if err != nil {
			return len(done), fmt.Errorf("sched: listing threads: %w", err)
		}
		fresh := 0
		for _, tid := range tids {
			if done[tid] {
				continue
			}
			fresh++
			done[tid] = true
			if err := setThread(tid, d); err != nil {
				if errors.Is(err, unix.ESRCH) {
					continue // the thread exited
				}
				return len(done), err
			}
			if supported == nil {
				if err := probe(tid, d); err != nil {
					return 0, err
				}
			}
		}
		if fresh == 0 {
			return len(done), nil
		}
	}
}

// Slice reports the requested slice of thread tid (0 = the calling thread),
// as the kernel keeps it.
func Slice(tid int) (time.Duration, error) {
	a, err := unix.SchedGetAttr(tid, 0)
	if err != nil {
		return 0, fmt.Errorf("sched: reading the scheduling attributes of thread %d: %w", tid, err)
	}
	return time.Duration(a.Runtime), nil
}

func setThread(tid int, d time.Duration) error {
	cur, err := unix.SchedGetAttr(tid, 0)
	if err != nil {
		return fmt.Errorf("sched: reading the scheduling attributes of thread %d: %w", tid, err)
	}
	if cur.Policy != unix.SCHED_NORMAL {
		return nil
	}
	// Keep the nice value (and with it the thread's share of CPU time).
	attr := unix.SchedAttr{Policy: unix.SCHED_NORMAL, Nice: cur.Nice, Runtime: uint64(d)}
	if err := unix.SchedSetAttr(tid, &attr, 0); err != nil {
		return fmt.Errorf("sched: setting a %v slice for thread %d: %w", d, tid, err)
	}
	return nil
}

// probe reads the slice back from tid: a kernel without custom slices
// accepts sched_runtime for SCHED_OTHER and drops it.
func probe(tid int, d time.Duration) error {
	got, err := Slice(tid)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil // try with the next thread
		}
		return err
	}
	ok := d == 0 || got == d
	supported = &ok
	if !ok {
		return ErrNotSupported
	}
	return nil
}
