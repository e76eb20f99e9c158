package proc

import (
	"errors"
	"os"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// TestReadOutOfDescriptors: a read that fails for lack of descriptors is
// an EMFILE error naming the pid and the file, never "the task is gone":
// the caller must repair it, not drop it.
func TestReadOutOfDescriptors(t *testing.T) {
	fs := NewFS("/proc")
	pid := os.Getpid()
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	highest := 0
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil && n > highest {
			highest = n
		}
	}
	low := lim
	low.Cur = uint64(highest + 4)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	var filled []int
	defer func() {
		for _, fd := range filled {
			unix.Close(fd)
		}
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
			t.Errorf("restoring the open-file limit: %v", err)
		}
	}()
	for {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			break
		}
		filled = append(filled, fd)
	}
	_, terr := fs.Task(pid, false)
	_, cerr := fs.Cgroups(pid)
	_, perr := fs.PIDs()
	for what, err := range map[string]error{"Task": terr, "Cgroups": cerr, "PIDs": perr} {
		if !errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ESRCH) {
			t.Errorf("%s with no descriptor free: %v; want EMFILE, not ESRCH", what, err)
		}
	}
	if terr != nil && terr.Error() != "proc: pid "+strconv.Itoa(pid)+": status: too many open files" {
		t.Errorf("Task's error does not name the pid and the file: %v", terr)
	}
}
