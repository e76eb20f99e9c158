package bpfevents

import (
	"encoding/binary"
	"fmt"

	"github.com/cgrulesengd/cgrulesengd/internal/kernel"
)

// A ring buffer record is a struct event of events.bpf.c, native endian:
//
//	u32 what, cpu; u64 timestamp; s32 pid, tgid, ppid, ptgid;
//	u32 rid, eid, exit_code, exit_signal                       48 bytes
//
// TestRecordLayout checks these offsets against the object's BTF.
const (
	recordLen = 48

	// whatLost is the record a loss that emitted no event of its own sends
	// to wake the reader (EV_LOST); it carries nothing.
	whatLost = 0x10000000
)

// errMalformed is wrapped by decode's errors.
var errMalformed = fmt.Errorf("malformed BPF event record")

// decode appends the event in record b to dst. A record that only wakes
// the reader (whatLost) appends nothing. It is pure: it reads b, never
// keeps it, and allocates only by growing dst.
func decode(b []byte, dst []kernel.Event) ([]kernel.Event, error) {
	if len(b) < recordLen {
		return dst, fmt.Errorf("%w: %d bytes, want %d", errMalformed, len(b), recordLen)
	}
	ne := binary.NativeEndian
	w := kernel.What(ne.Uint32(b[0:]))
	switch w {
	case whatLost:
		return dst, nil
	case kernel.EventFork, kernel.EventExec, kernel.EventUID, kernel.EventGID, kernel.EventExit:
	default:
		return dst, fmt.Errorf("%w: event type %#x", errMalformed, uint32(w))
	}
	dst = append(dst, kernel.Event{})
	e := &dst[len(dst)-1]
	e.What = w
	e.CPU = ne.Uint32(b[4:])
	e.Timestamp = ne.Uint64(b[8:])
	e.PID = int32(ne.Uint32(b[16:]))
	e.TGID = int32(ne.Uint32(b[20:]))
	switch w {
	case kernel.EventFork, kernel.EventExit:
		e.ParentPID = int32(ne.Uint32(b[24:]))
		e.ParentTGID = int32(ne.Uint32(b[28:]))
		if w == kernel.EventExit {
			e.ExitCode = ne.Uint32(b[40:])
			e.ExitSignal = ne.Uint32(b[44:])
		}
	case kernel.EventUID:
		e.RUID = ne.Uint32(b[32:])
		e.EUID = ne.Uint32(b[36:])
	case kernel.EventGID:
		e.RGID = ne.Uint32(b[32:])
		e.EGID = ne.Uint32(b[36:])
	}
	return dst, nil
}
