package sticky

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// RequestSize is the size of a request: a pid_t, then an int of flags, both
// 4 bytes in the machine's byte order, as libcgroup's
// cgroup_register_unchanged_process writes them.
const RequestSize = 8

// Reply is what a client reads once its request has been carried out:
// libcgroup's CGRULE_SUCCESS_STORE_PID with its terminating NUL, 18 bytes.
// A request that is not carried out gets no reply: the connection is
// closed, and the client reports a failure.
const Reply = "SUCCESS_STORE_PID\x00"

// Flags is the second word of a request (libcgroup's enum
// cgroup_daemon_type, plus 0).
type Flags uint32

const (
	// FlagsProcess (0): leave this process alone (plain cgexec).
	FlagsProcess Flags = 0
	// FlagsChildren (1, CGROUP_DAEMON_UNCHANGE_CHILDREN): leave it and the
	// children it forks from now on alone (cgexec --sticky, cgclassify
	// --sticky).
	FlagsChildren Flags = 1
	// FlagsCancel (2, CGROUP_DAEMON_CANCEL_UNCHANGE_PROCESS): classify it
	// normally again (cgclassify --cancel-sticky).
	FlagsCancel Flags = 2
)

func (f Flags) String() string {
	switch f {
	case FlagsProcess:
		return "process"
	case FlagsChildren:
		return "children"
	case FlagsCancel:
		return "cancel"
	}
	return fmt.Sprintf("flags(%d)", uint32(f))
}

// Request is one decoded request.
type Request struct {
	PID   int32
	Flags Flags
}

// ErrMalformed is wrapped by DecodeRequest's errors.
var ErrMalformed = errors.New("malformed sticky request")

// DecodeRequest decodes what a client sent. It is pure: b is everything
// that was read. Exactly RequestSize bytes, a positive pid and flags 0, 1
// or 2 are a request; anything else is an error wrapping ErrMalformed.
//
// libcgroup's daemon accepts any flags word, storing every value but 2 as
// "sticky" (with children when bit 0 is set): cgclassify --sticky
// --cancel-sticky sends 3 and gets a sticky-with-children mark. Here such a
// contradiction is an error, and so is any other value: a client that means
// something else should not be guessed at.
func DecodeRequest(b []byte) (Request, error) {
	if len(b) != RequestSize {
		return Request{}, fmt.Errorf("%w: %d bytes, want %d (a pid and a flags word)", ErrMalformed, len(b), RequestSize)
	}
	r := Request{
		PID:   int32(binary.NativeEndian.Uint32(b[0:4])),
		Flags: Flags(binary.NativeEndian.Uint32(b[4:8])),
	}
	if r.PID <= 0 {
		return Request{}, fmt.Errorf("%w: pid %d", ErrMalformed, r.PID)
	}
	switch r.Flags {
	case FlagsProcess, FlagsChildren, FlagsCancel:
	default:
		return Request{}, fmt.Errorf("%w: flags %d for pid %d (want 0, 1 or 2)", ErrMalformed, int32(r.Flags), r.PID)
	}
	return r, nil
}
