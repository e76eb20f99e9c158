package bpfevents

import (
	"errors"
	"fmt"
)

// ErrNotSupported is matched (errors.Is) by every *NotSupportedError: this
// kernel or process cannot run the BPF source, and the caller should use
// the proc connector (package kernel) instead.
var ErrNotSupported = errors.New("the BPF event source is not supported here")

// ErrFull is wrapped by the errors of the control methods when a bounded
// kernel map is full (Config's limits): what was asked is not in force, and
// the caller must treat it as a loss (rescan /proc), as it treats
// kernel.EventOverflow.
var ErrFull = errors.New("a BPF map of the event source is full")

// ErrClosed is returned by the control methods after Close (Read returns
// kernel.ErrClosed).
var ErrClosed = errors.New("BPF event source closed")

// Reason says why the BPF source cannot run.
type Reason int

// Reasons, in the order Open checks them.
const (
	// ReasonArch: the BPF object is built for x86-64 only.
	ReasonArch Reason = iota + 1
	// ReasonPIDNamespace: the process is not in the initial pid namespace
	// (a container). The programs report the kernel's pids, which are not
	// the pids of this process's /proc; the proc connector refuses such a
	// listener for the same reason.
	ReasonPIDNamespace
	// ReasonNoPrivilege: the process lacks CAP_BPF and CAP_PERFMON (or
	// CAP_SYS_ADMIN), or the kernel refused bpf(2) with EPERM for another
	// reason of privilege (a seccomp filter, kernel.unprivileged_bpf_disabled
	// for a process without them).
	ReasonNoPrivilege
	// ReasonNoBTF: the kernel exposes no BTF (/sys/kernel/btf/vmlinux;
	// CONFIG_DEBUG_INFO_BTF), which the programs need to read task and
	// credential structures and to attach to BTF tracepoints.
	ReasonNoBTF
	// ReasonNoRingBuffer: the kernel has no BPF ring buffer (Linux 5.8+).
	ReasonNoRingBuffer
	// ReasonRefused: the kernel refused to load or attach a program (the
	// verifier, a missing tracepoint, lockdown, an old kernel).
	ReasonRefused
)

func (r Reason) String() string {
	switch r {
	case ReasonArch:
		return "not built for this architecture"
	case ReasonPIDNamespace:
		return "not in the initial pid namespace"
	case ReasonNoPrivilege:
		return "not privileged"
	case ReasonNoBTF:
		return "no kernel BTF"
	case ReasonNoRingBuffer:
		return "no BPF ring buffer"
	case ReasonRefused:
		return "a program was refused"
	}
	return fmt.Sprintf("Reason(%d)", int(r))
}

// NotSupportedError is Open's (and Probe's) error when the BPF source cannot
// run here: the reason, and the error that showed it.
type NotSupportedError struct {
	Reason Reason
	Err    error
}

func (e *NotSupportedError) Error() string {
	return fmt.Sprintf("BPF event source not supported (%v): %v", e.Reason, e.Err)
}

func (e *NotSupportedError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrNotSupported) true.
func (e *NotSupportedError) Is(target error) bool { return target == ErrNotSupported }

func notSupported(r Reason, format string, args ...any) error {
	return &NotSupportedError{Reason: r, Err: fmt.Errorf(format, args...)}
}
