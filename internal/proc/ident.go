package proc

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Ident is what names one process for the lifetime of the machine (a pid
// with its start time: pids are reused, start times of one pid never
// repeat) and who runs it. The sticky socket reads it to check a client's
// right to a pid and to tell a reused pid from the process it marked.
type Ident struct {
	PID, TGID int       // the pid asked for, and its thread group (they differ for a thread id)
	UID       [3]uint32 // real, effective and saved uid
	StartTime uint64    // /proc/PID/stat field 22, clock ticks after boot
	Zombie    bool      // it has exited and waits to be reaped (state Z or X)
}

// Ident reads pid's status and stat. errors.Is(err, unix.ESRCH) when there
// is no such task. A zombie is reported (Zombie), not treated as gone: the
// caller decides.
func (fs FS) Ident(pid int) (Ident, error) {
	sc := getScratch()
	defer putScratch(sc)
	b, err := readInto(sc.pidPath(fs.root, pid, "status"), &sc.buf, true)
	if err != nil {
		return Ident{}, goneErr(pid, "status", err)
	}
	st, err := parseStatusBytes(b, sc)
	if err != nil {
		return Ident{}, fmt.Errorf("proc: pid %d: %w", pid, err)
	}
	b, err = readInto(sc.pidPath(fs.root, pid, "stat"), &sc.buf, true)
	if err != nil {
		return Ident{}, goneErr(pid, "stat", err)
	}
	sst, err := parseStatBytes(b)
	if err != nil {
		return Ident{}, fmt.Errorf("proc: pid %d: %w", pid, err)
	}
	return Ident{
		PID: pid, TGID: st.Tgid,
		UID:       [3]uint32{st.Uid[0], st.Uid[1], st.Uid[2]},
		StartTime: sst.StartTime,
		Zombie:    sst.State == 'Z' || sst.State == 'X',
	}, nil
}

// StartTime returns the start time of process pid (/proc/PID/stat field
// 22, clock ticks after boot). A process that has exited, zombies
// included, is gone: errors.Is(err, unix.ESRCH).
func (fs FS) StartTime(pid int) (uint64, error) {
	sc := getScratch()
	defer putScratch(sc)
	st, err := fs.stat(sc, pid)
	if err != nil {
		return 0, err
	}
	if st.State == 'Z' || st.State == 'X' {
		return 0, fmt.Errorf("proc: pid %d: exited (a zombie): %w", pid, unix.ESRCH)
	}
	return st.StartTime, nil
}
