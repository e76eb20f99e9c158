package proc

import (
	"errors"
	"os"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cgrulesengd/cgrulesengd/internal/fdreserve/fdtest"
)

// TestReadOutOfDescriptors: a read that fails for lack of descriptors is
// an EMFILE error naming the pid and the file, never "the task is gone":
// the caller must repair it, not drop it.
func TestReadOutOfDescriptors(t *testing.T) {
	fs := NewFS("/proc")
	pid := os.Getpid()
	fdtest.Exhaust(t, 0)
	_, terr := fs.Task(pid)
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
