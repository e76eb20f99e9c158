package bpfevents

import "golang.org/x/sys/unix"

// initPIDNamespaceIno is the inode number of the initial pid namespace
// (PROC_PID_INIT_INO in include/linux/proc_ns.h): fixed by the kernel, the
// same on every machine.
const initPIDNamespaceIno = 0xEFFFFFFC

// inInitialPIDNamespace fails with ReasonPIDNamespace unless this process
// is in the initial pid namespace. The programs report task->pid and
// task->tgid, the kernel's own numbers; in a container they name other
// processes than this process's /proc does (or none), so every move would
// go to the wrong task. A pid namespace's file is found through /proc of
// whichever namespace is mounted there: self is always this process.
func inInitialPIDNamespace() error {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/pid", &st); err != nil {
		return notSupported(ReasonPIDNamespace, "cannot tell which pid namespace this process is in: %w", err)
	}
	if st.Ino != initPIDNamespaceIno {
		return notSupported(ReasonPIDNamespace, "pid namespace %d is not the initial one (%d): the kernel's pids are not this /proc's", st.Ino, uint64(initPIDNamespaceIno))
	}
	return nil
}
