package classify

// Out of descriptors (issue 19): a /proc read or a move that failed with
// EMFILE or ENFILE (for a move, the Mover has already closed idle cached
// descriptors and tried once more; for the rest, the engine has it close
// them: Mover.Shed) has lost its event, exactly as a kernel overflow loses
// one. It is logged as an error, at most once a second, and repaired
// by a full rescan. Rescans asked for this way are at least a second
// apart, so that a shortage that lasts does not turn into back-to-back
// scans that fail the same way.
//
// This file is the engine's whole hook for it: Engine holds fdLog and
// fdRepair; the read step (readFailed), the decide step (reportExpand: a
// name look-up for %u or %g, which fails with EMFILE too, see rules.NSS),
// the cgroupfs writes (cgroupfsApplier.Apply) and scan call
// lostForDescriptors. Each loss is counted (Stats.DescriptorShortages; a
// failed move also as Failed[FailedDescriptors]).

import (
	"errors"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/cgrulesengd/cgrulesengd/internal/cgroupfs"
	"github.com/cgrulesengd/cgrulesengd/internal/ratelimit"
)

// shedder is the part of cgroupfs.Mover that gives back cached
// descriptors; a test's fake Mover may lack it.
type shedder interface{ Shed() (closed int) }

// fdRepairSpacing is the shortest time between two rescans asked for by
// descriptor shortages.
const fdRepairSpacing = time.Second

// outOfDescriptors reports whether err is EMFILE or ENFILE (cgroupfs and
// proc wrap the kernel's errno with %w).
func outOfDescriptors(err error) bool {
	return errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE)
}

// lostForDescriptors reports a classification of pid (0: the list of
// tasks) that failed for lack of descriptors, and asks for a repair scan.
func (e *Engine) lostForDescriptors(pid int, err error) {
	e.stats.DescriptorShortages.Add(1)
	// A /proc read that failed for lack of descriptors frees none: the
	// Mover's idle cached ones make room, as a failed open of cgroup.procs
	// makes it itself. Without it a process whose other descriptors are
	// many (the BPF source holds some 40) stayed at its limit, every
	// rescan failing.
	// A move's shortage (*cgroupfs.Shortage) was handled by the Mover.
	var moved *cgroupfs.Shortage
	if s, ok := e.cfg.Mover.(shedder); ok && !errors.As(err, &moved) {
		s.Shed()
	}
	if n, ok := e.fdLog.Allow(time.Now()); ok {
		f := logrus.Fields{}
		if pid > 0 {
			f["pid"] = pid
		}
		if n > 0 {
			f[ratelimit.NotLogged] = n
		}
		e.log.WithFields(f).Errorf("out of file descriptors: a task was not classified, rescanning /proc: %v", err)
	}
	e.fdRepair.request(e.RequestRescan)
}

// spacedRequest calls a request function at most once per fdRepairSpacing:
// a call that comes sooner is made when the spacing is over (one for all
// the calls in between).
type spacedRequest struct {
	mu      sync.Mutex
	last    time.Time
	pending bool
}

func (s *spacedRequest) request(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	wait := fdRepairSpacing - now.Sub(s.last)
	if wait <= 0 {
		s.last = now
		f()
		return
	}
	if s.pending {
		return
	}
	s.pending = true
	time.AfterFunc(wait, func() {
		s.mu.Lock()
		s.pending = false
		s.last = time.Now()
		s.mu.Unlock()
		f()
	})
}
