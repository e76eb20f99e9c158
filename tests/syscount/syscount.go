// Package syscount counts the system calls of threads and processes with
// the kernel's raw_syscalls:sys_enter tracepoint (calls entered) or
// raw_syscalls:sys_exit (calls returned), through perf_event_open(2)
// counters: no trace buffer, no ptrace, and nothing the counted program can
// notice beyond the tracepoint's small cost on every system call.
//
// It exists for the benchmarks (classify's BenchmarkClassifyReal, the
// end-to-end benchmark's system-call phase), which report system calls per
// move, and for tests that count a reader's system calls. It is not used by
// the daemon.
//
// Privileges: root (perf_event_open of a tracepoint for another process,
// and reading the tracepoint's id from a tracefs mounted in a private mount
// namespace by unshare(1), so that the machine's mounts are not touched).
//
// Concurrency: a Counter is safe for concurrent use.
package syscount

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The tracepoints: a system call entered (raw_syscalls:sys_enter: fields
// id and args) or returned (raw_syscalls:sys_exit: fields id and ret).
const (
	enterTP = "raw_syscalls/sys_enter"
	exitTP  = "raw_syscalls/sys_exit"
)

var (
	idMu  sync.Mutex
	ids   = map[string]uint64{}
	idErr = map[string]error{}
)

// tracepointID returns the id of tracepoint name (e.g. enterTP), from the
// tracefs mount if there is one, else from a tracefs mounted in a private
// mount namespace.
func tracepointID(name string) (uint64, error) {
	idMu.Lock()
	defer idMu.Unlock()
	if id, ok := ids[name]; ok {
		return id, nil
	}
	if err, ok := idErr[name]; ok {
		return 0, err
	}
	id, err := readTracepointID(name)
	if err != nil {
		idErr[name] = err
		return 0, err
	}
	ids[name] = id
	return id, nil
}

func readTracepointID(name string) (uint64, error) {
	idFile := "events/" + name + "/id"
	var b []byte
	var err error
	for _, dir := range []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"} {
		if b, err = os.ReadFile(dir + "/" + idFile); err == nil {
			break
		}
	}
	if err != nil {
		cmd := exec.Command("unshare", "-m", "sh", "-c",
			"mount --make-rprivate / && mount -t tracefs nodev /sys/kernel/tracing && cat /sys/kernel/tracing/"+idFile)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if b, err = cmd.Output(); err != nil {
			return 0, fmt.Errorf("syscount: reading the id of %s from a private tracefs mount: %w: %s", name, err, stderr.String())
		}
	}
	id, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("syscount: tracepoint %s id %q: %w", name, b, err)
	}
	return id, nil
}

// Counter counts the system calls entered by a set of threads.
type Counter struct {
	mu     sync.Mutex
	fds    []int
	filter string
	tp     string // enterTP or exitTP
}

// Thread counts the system calls of thread tid (0: the calling thread) and,
// with inherit, of the threads and processes it creates from now on.
func Thread(tid int, inherit bool) (*Counter, error) {
	return ThreadFilter(tid, inherit, "")
}

// ThreadFilter is Thread counting only the system calls that pass filter,
// a tracepoint filter on the sys_enter fields, e.g. "id != 202" (every call
// but futex on x86-64: use the unix.SYS_* numbers). "" counts all.
func ThreadFilter(tid int, inherit bool, filter string) (*Counter, error) {
	c := &Counter{filter: filter, tp: enterTP}
	if err := c.add(tid, inherit); err != nil {
		return nil, err
	}
	return c, nil
}

// ThreadReturns counts the system calls of thread tid (0: the calling
// thread) that return and pass filter, a tracepoint filter on the sys_exit
// fields id and ret ("" counts all). Unlike the entries, a call the kernel
// restarts after a signal (ret -512 to -516, ERESTARTSYS and its kin) is
// counted once per return, so "ret < -516 || ret > -512" leaves the
// restarts out.
func ThreadReturns(tid int, inherit bool, filter string) (*Counter, error) {
	c := &Counter{filter: filter, tp: exitTP}
	if err := c.add(tid, inherit); err != nil {
		return nil, err
	}
	return c, nil
}

// Process counts the system calls of every thread of pid, and of the
// threads and processes they create from now on.
func Process(pid int) (*Counter, error) {
	return ProcessFilter(pid, "")
}

// ProcessFilter is Process counting only the calls that pass filter (see
// ThreadFilter).
func ProcessFilter(pid int, filter string) (*Counter, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return nil, fmt.Errorf("syscount: %w", err)
	}
	c := &Counter{filter: filter, tp: enterTP}
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if err := c.add(tid, true); err != nil {
			if errors.Is(err, unix.ESRCH) {
				continue // the thread exited meanwhile
			}
			c.Close()
			return nil, err
		}
	}
	if len(c.fds) == 0 {
		return nil, fmt.Errorf("syscount: pid %d: no thread to count", pid)
	}
	return c, nil
}

func (c *Counter) add(tid int, inherit bool) error {
	tp, err := tracepointID(c.tp)
	if err != nil {
		return err
	}
	// Opened disabled and enabled once the filter is in place: enabled
	// from the start, it would count the filter's own ioctl.
	attr := unix.PerfEventAttr{
		Type:   unix.PERF_TYPE_TRACEPOINT,
		Size:   uint32(unsafe.Sizeof(unix.PerfEventAttr{})),
		Config: tp,
		Bits:   unix.PerfBitDisabled,
	}
	if inherit {
		attr.Bits |= unix.PerfBitInherit
	}
	fd, err := unix.PerfEventOpen(&attr, tid, -1, -1, unix.PERF_FLAG_FD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("syscount: perf_event_open(%s, tid %d): %w", c.tp, tid, err)
	}
	if c.filter != "" {
		f, err := unix.BytePtrFromString(c.filter)
		if err != nil {
			unix.Close(fd)
			return fmt.Errorf("syscount: filter %q: %w", c.filter, err)
		}
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.PERF_EVENT_IOC_SET_FILTER, uintptr(unsafe.Pointer(f))); errno != 0 {
			unix.Close(fd)
			return fmt.Errorf("syscount: setting filter %q: %w", c.filter, errno)
		}
	}
	if err := unix.IoctlSetInt(fd, unix.PERF_EVENT_IOC_ENABLE, 0); err != nil {
		unix.Close(fd)
		return fmt.Errorf("syscount: enabling the counter: %w", err)
	}
	c.mu.Lock()
	c.fds = append(c.fds, fd)
	c.mu.Unlock()
	return nil
}

// Count returns the system calls counted so far (inherited threads
// included).
func (c *Counter) Count() (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var sum uint64
	var b [8]byte
	for _, fd := range c.fds {
		if n, err := unix.Read(fd, b[:]); err != nil || n != 8 {
			return 0, fmt.Errorf("syscount: reading a counter: %d bytes, %v", n, err)
		}
		sum += binary.NativeEndian.Uint64(b[:])
	}
	return sum, nil
}

// Close releases the counters.
func (c *Counter) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, fd := range c.fds {
		unix.Close(fd)
	}
	c.fds = nil
}
