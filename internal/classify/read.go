package classify

import (
	"errors"
	"io/fs"

	"golang.org/x/sys/unix"

	"github.com/cgrulesengd/cgrulesengd/internal/proc"
)

// taskRead is what the read step learned about a task: what deciding needs.
type taskRead struct {
	task  proc.Task         // ids (those of the thread that reported the change), comm, process name when rules name processes
	lines []proc.CgroupLine // /proc/PID/cgroup; shared by proc, read-only
}

// read reads what deciding needs to know about j's task, in the order that
// stops soonest: its ids first (status), since most tasks an event names
// match no rule at all and for them nothing more is read; then its
// cgroups, and, when rules name processes, its process name. The verdict
// says whether to go on, or why not.
func (e *Engine) read(rs *ruleset, j *job) (taskRead, verdict) {
	pid := int(j.pid)
	t, err := e.cfg.Tasks.Task(pid)
	if err != nil {
		return taskRead{}, e.readFailed(j, err)
	}
	if t.Kernel {
		return taskRead{}, leftOutOfScope
	}
	if j.tid != 0 && int(j.tid) != pid {
		if euid, egid, err := e.cfg.Tasks.ThreadCreds(pid, int(j.tid)); err == nil {
			t.EUID, t.EGID = euid, egid
		}
	}
	if !rs.list.MayMatch(t.EUID, t.EGID) {
		return taskRead{task: t}, leftNoRule
	}
	lines, err := e.cfg.Tasks.Cgroups(pid)
	if err != nil {
		return taskRead{}, e.readFailed(j, err)
	}
	if !e.scope.anyInScope(lines) {
		return taskRead{}, leftOutOfScope
	}
	if rs.list.NeedsProcess() {
		if t.Process, err = e.cfg.Tasks.ProcName(pid, t.Comm); err != nil {
			return taskRead{}, e.readFailed(j, err)
		}
	}
	return taskRead{task: t, lines: lines}, proceed
}

// readFailed is the verdict on a task that could not be read: gone (it
// exited), quietly skipped (a scan may not read every task: EACCES), or a
// failure, logged at debug level.
func (e *Engine) readFailed(j *job, err error) verdict {
	switch {
	case outOfDescriptors(err): // descriptors.go
		e.lostForDescriptors(int(j.pid), err)
		return readError
	case errors.Is(err, unix.ESRCH) || isNotExist(err):
		return taskGone
	case errors.Is(err, unix.EACCES) && j.why.scanning():
		return skipped
	}
	e.log.WithField("pid", j.pid).Debugf("reading task: %v", err)
	return readError
}

func isNotExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOENT)
}
