package systemd

import (
	"errors"
	"fmt"
	"strings"

	"github.com/godbus/dbus/v5"
)

// Kinds of failure, wrapped by every error of this package (errors.Is).
var (
	// ErrUnreachable: the manager could not be reached (dial or
	// authentication failed, the connection dropped, a call timed out).
	// Placements are retried a bounded number of times.
	ErrUnreachable = errors.New("systemd unreachable")
	// ErrOutsideNamespace: the task is not in the manager's pid namespace
	// (nor below it), so the manager cannot name it: reported, never
	// placed.
	ErrOutsideNamespace = errors.New("task outside the manager's pid namespace")
	// ErrTaskGone: the task exited before the manager moved it ("Process
	// with ID N does not exist", or no /proc/PID).
	ErrTaskGone = errors.New("task gone")
	// ErrUnitExists: "Unit X was already loaded or has a fragment file."
	ErrUnitExists = errors.New("unit already exists")
	// ErrNoUnit: the unit to attach to is not loaded or not active (a
	// scope is removed when it empties).
	ErrNoUnit = errors.New("no such unit")
	// ErrNotDelegated: AttachProcessesToUnit into a unit without
	// Delegate=yes ("Process migration not available on non-delegated
	// units.").
	ErrNotDelegated = errors.New("unit not delegated")
	// ErrJobFailed: the start job of a scope ended with a result other
	// than "done".
	ErrJobFailed = errors.New("start job failed")
	// ErrInvalid: a malformed unit or slice name, or a bad address.
	ErrInvalid = errors.New("invalid argument")
	// ErrBusy: the placer's queue is full; the placement was not taken.
	ErrBusy = errors.New("placement queue full")
	// ErrClosed: the client or placer was closed.
	ErrClosed = errors.New("closed")
)

// Error is a failed operation on a manager: which, on what, and the D-Bus
// error name when the manager answered with one. It unwraps to one of the
// kinds above and to the underlying error.
type Error struct {
	Op   string // "StartTransientUnit", "AttachProcessesToUnit", "dial", ...
	Unit string // the unit concerned, if any
	PID  int    // the task, as the daemon sees it (host pid), if any
	Name string // the D-Bus error name, if the manager answered with one
	Kind error  // one of the Err* kinds
	Err  error  // the underlying error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("systemd: ")
	b.WriteString(e.Op)
	if e.Unit != "" {
		b.WriteString(" ")
		b.WriteString(e.Unit)
	}
	if e.PID != 0 {
		fmt.Fprintf(&b, " (pid %d)", e.PID)
	}
	b.WriteString(": ")
	if e.Kind != nil {
		b.WriteString(e.Kind.Error())
	}
	if e.Err != nil {
		if e.Kind != nil {
			b.WriteString(": ")
		}
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() []error {
	var errs []error
	if e.Kind != nil {
		errs = append(errs, e.Kind)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// errorKind maps an error of a D-Bus call to its kind. D-Bus error names
// are systemd's (src/libsystemd/sd-bus/bus-common-errors.h); messages are
// matched too because a proxied or older manager may answer with a
// generic name.
func errorKind(err error) (name string, kind error) {
	if err == nil {
		return "", nil
	}
	var de dbus.Error
	if errors.As(err, &de) {
		name = de.Name
		msg := ""
		if len(de.Body) > 0 {
			msg, _ = de.Body[0].(string)
		}
		switch {
		case name == "org.freedesktop.systemd1.UnitExists" || strings.Contains(msg, "already loaded or has a fragment file"):
			return name, ErrUnitExists
		case name == "org.freedesktop.systemd1.NoSuchProcess" ||
			name == "org.freedesktop.DBus.Error.UnixProcessIdUnknown" ||
			strings.HasPrefix(msg, "Process with ID") && strings.HasSuffix(msg, "does not exist."):
			return name, ErrTaskGone
		case name == "org.freedesktop.systemd1.NoSuchUnit" || name == "org.freedesktop.systemd1.UnitInactive" ||
			strings.Contains(msg, "not loaded") || strings.Contains(msg, "is not active"):
			return name, ErrNoUnit
		case strings.Contains(msg, "non-delegated"):
			return name, ErrNotDelegated
		case name == "org.freedesktop.DBus.Error.NoReply" || name == "org.freedesktop.DBus.Error.Disconnected" ||
			name == "org.freedesktop.DBus.Error.Timeout":
			return name, ErrUnreachable
		}
		return name, nil
	}
	// Anything that is not an answer from the manager is a transport
	// failure: a closed connection, EOF, a context deadline.
	return "", ErrUnreachable
}

func opError(op, unit string, pid int, err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	name, kind := errorKind(err)
	return &Error{Op: op, Unit: unit, PID: pid, Name: name, Kind: kind, Err: err}
}
