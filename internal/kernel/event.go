package kernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// What is the type of a proc connector event (enum proc_cn_event), and, as a
// set of bits, a mask of event types.
type What uint32

// Event types, with the kernel's values (include/uapi/linux/cn_proc.h).
const (
	EventNone     What = 0x00000000 // acknowledgement of a listen/ignore request
	EventFork     What = 0x00000001
	EventExec     What = 0x00000002
	EventUID      What = 0x00000004
	EventGID      What = 0x00000040
	EventSID      What = 0x00000080
	EventPtrace   What = 0x00000100
	EventComm     What = 0x00000200
	EventCoredump What = 0x40000000
	EventExit     What = 0x80000000

	// EventNonzeroExit is only meaningful in Config.Events: it asks for EXIT
	// events whose exit code is not zero (PROC_EVENT_NONZERO_EXIT). The
	// kernel never reports an event of this type; such exits arrive as
	// EventExit.
	EventNonzeroExit What = 0x20000000

	// EventOverflow is synthetic, never sent by the kernel: the receive
	// buffer overflowed (ENOBUFS) and an unknown number of events were lost.
	// Conn.Read returns it once the receive queue has been read empty after
	// the loss, when the kernel delivers events again: every event before
	// it was queued before the loss, every event after it is delivered, so
	// a resynchronisation started on seeing it leaves no gap.
	// The value is a bit cn_proc.h does not use (its bits are 0x1, 0x2, 0x4,
	// 0x40, 0x80, 0x100, 0x200, 0x20000000, 0x40000000, 0x80000000), so it
	// can share masks with the kernel's types; it is never sent to the kernel.
	EventOverflow What = 0x10000000
)

// eventAll is PROC_EVENT_ALL: every bit the kernel accepts in a filter.
const eventAll = EventFork | EventExec | EventUID | EventGID | EventSID |
	EventPtrace | EventComm | EventNonzeroExit | EventCoredump | EventExit

var whatNames = [...]struct {
	w    What
	name string
}{
	{EventFork, "FORK"},
	{EventExec, "EXEC"},
	{EventUID, "UID"},
	{EventGID, "GID"},
	{EventSID, "SID"},
	{EventPtrace, "PTRACE"},
	{EventComm, "COMM"},
	{EventOverflow, "OVERFLOW"},
	{EventNonzeroExit, "NONZERO_EXIT"},
	{EventCoredump, "COREDUMP"},
	{EventExit, "EXIT"},
}

// String names an event type ("EXEC"), or the bits of a mask joined by "|"
// ("FORK|EXIT"); bits without a name are shown in hex.
func (w What) String() string {
	if w == EventNone {
		return "NONE"
	}
	for _, n := range whatNames {
		if w == n.w {
			return n.name
		}
	}
	var b strings.Builder
	rest := w
	for _, n := range whatNames {
		if rest&n.w != 0 {
			if b.Len() > 0 {
				b.WriteByte('|')
			}
			b.WriteString(n.name)
			rest &^= n.w
		}
	}
	if rest != 0 {
		if b.Len() > 0 {
			b.WriteByte('|')
		}
		fmt.Fprintf(&b, "0x%x", uint32(rest))
	}
	return b.String()
}

// Event is one decoded proc connector event. Fields that the event's type
// does not carry are zero.
type Event struct {
	What      What
	CPU       uint32 // CPU that reported it; Seq is per CPU
	Timestamp uint64 // ns, CLOCK_MONOTONIC (kernel ktime_get_ns); for EventOverflow the time the loss ended (the queue was drained)

	// PID and TGID are the subject: for FORK the child, for every other type
	// the process (thread) the event is about. PIDs are in the init PID
	// namespace.
	PID, TGID int32

	// ParentPID and ParentTGID: FORK (the parent), and also EXIT and
	// COREDUMP, for which the kernel reports the real parent too (zero when
	// it was already gone).
	ParentPID, ParentTGID int32

	RUID, EUID           uint32 // UID events, in the init user namespace
	RGID, EGID           uint32 // GID events, in the init user namespace
	ExitCode, ExitSignal uint32 // EXIT: wait(2) status (code<<8 | signal) and the signal sent to the parent

	// Seq and Ack are the cn_msg header's. Seq counts events per CPU (also
	// for acks: the kernel does not echo the request's seq). Ack is 0 except
	// in acks, where it is the request's cn_msg.ack + 1.
	Seq, Ack uint32
	Err      uint32 // acks: errno of the request, 0 for success

	// Comm is the new command name for COMM events, NUL padded. It is an
	// array so that decoding does not allocate; see CommString.
	Comm [16]byte
}

// CommString returns Comm up to its first NUL byte.
func (e *Event) CommString() string {
	for i, c := range e.Comm {
		if c == 0 {
			return string(e.Comm[:i])
		}
	}
	return string(e.Comm[:])
}

// ErrMalformed is wrapped by Decode's errors: the datagram is truncated or
// is not a well-formed sequence of netlink messages.
var ErrMalformed = errors.New("malformed proc connector datagram")

// Layout of what the kernel sends (all fields native endian):
//
//	struct nlmsghdr  { u32 len; u16 type; u16 flags; u32 seq; u32 pid; }   16 bytes
//	struct cn_msg    { u32 idx; u32 val; u32 seq; u32 ack; u16 len; u16 flags; }  20 bytes
//	struct proc_event{ u32 what; u32 cpu; u64 timestamp_ns; union event_data; }   16 + 24 bytes
//
// The connector sends each message as nlmsg type NLMSG_DONE.
const (
	nlmsgHdrLen   = unix.SizeofNlMsghdr // 16
	cnMsgLen      = 20
	procHdrLen    = 16 // what, cpu, timestamp_ns
	procEventLen  = procHdrLen + 24
	cnIdxProc     = 1 // CN_IDX_PROC
	cnValProc     = 1 // CN_VAL_PROC
	procDatagram  = nlmsgHdrLen + cnMsgLen + procEventLen
	nlmsgAlignTo  = 4
	nlmsgErrorLen = 4 // struct nlmsgerr's error field; the echoed header is optional for us
)

// payloadLen is the minimum size of event_data for the types Decode knows.
// Known types with less data are malformed; the kernel always sends the
// whole union (24 bytes).
func payloadLen(w What) int {
	switch w {
	case EventNone:
		return 4 // err
	case EventExec, EventSID:
		return 8 // pid, tgid
	case EventFork, EventUID, EventGID, EventPtrace, EventCoredump, EventExit:
		return 16
	case EventComm:
		return 24 // pid, tgid, comm[16]
	}
	return 0
}

// Decode appends the events in one received datagram — one or more netlink
// messages, each a cn_msg carrying a proc_event — to dst and returns it.
// It is pure: it only reads b and appends to dst, never retaining b.
//
// Handling of what is not a proc event:
//   - NLMSG_NOOP and netlink message types other than NLMSG_DONE, NLMSG_ERROR
//     and NLMSG_OVERRUN are skipped, as are connector messages for other
//     connector ids than CN_IDX_PROC/CN_VAL_PROC.
//   - NLMSG_ERROR with error 0 (a netlink ack) is skipped; a non-zero error is
//     returned, wrapping the errno.
//   - NLMSG_OVERRUN (data lost) becomes an EventOverflow.
//   - A proc_event with a type Decode does not know (added by a newer
//     kernel) is returned with only the header fields set (What, CPU,
//     Timestamp, Seq, Ack), so consumers can count or log it; the payload is
//     not interpreted. The one exception is the value of EventOverflow,
//     which is reserved for the synthetic marker: such a proc_event is
//     malformed.
//
// Truncated or inconsistent input returns an error wrapping ErrMalformed.
// On error, dst holds the events decoded before the bad message.
func Decode(b []byte, dst []Event) ([]Event, error) {
	ne := binary.NativeEndian
	for off := 0; off < len(b); {
		rest := b[off:]
		if len(rest) < nlmsgHdrLen {
			return dst, fmt.Errorf("%w: %d bytes at offset %d, too short for a netlink header", ErrMalformed, len(rest), off)
		}
		l := int(ne.Uint32(rest[0:4]))
		if l < nlmsgHdrLen || l > len(rest) {
			return dst, fmt.Errorf("%w: netlink message length %d at offset %d, with %d bytes left", ErrMalformed, l, off, len(rest))
		}
		typ := ne.Uint16(rest[4:6])
		msg := rest[nlmsgHdrLen:l]
		switch typ {
		case unix.NLMSG_DONE:
			var err error
			dst, err = decodeCnMsg(msg, dst)
			if err != nil {
				return dst, fmt.Errorf("offset %d: %w", off, err)
			}
		case unix.NLMSG_ERROR:
			if len(msg) < nlmsgErrorLen {
				return dst, fmt.Errorf("%w: NLMSG_ERROR of %d bytes at offset %d", ErrMalformed, len(msg), off)
			}
			if code := int32(ne.Uint32(msg[0:4])); code != 0 {
				return dst, fmt.Errorf("netlink error message: %w", unix.Errno(-code))
			}
		case unix.NLMSG_OVERRUN:
			dst = append(dst, Event{What: EventOverflow})
		}
		// Messages are padded to 4 bytes; the last one may not be.
		off += min((l+nlmsgAlignTo-1)&^(nlmsgAlignTo-1), len(rest))
	}
	return dst, nil
}

// decodeCnMsg decodes one cn_msg (the payload of an NLMSG_DONE message).
func decodeCnMsg(m []byte, dst []Event) ([]Event, error) {
	ne := binary.NativeEndian
	if len(m) < cnMsgLen {
		return dst, fmt.Errorf("%w: %d-byte netlink payload, too short for a cn_msg", ErrMalformed, len(m))
	}
	idx, val := ne.Uint32(m[0:4]), ne.Uint32(m[4:8])
	dlen := int(ne.Uint16(m[16:18]))
	data := m[cnMsgLen:]
	if dlen > len(data) {
		return dst, fmt.Errorf("%w: cn_msg announces %d data bytes, %d present", ErrMalformed, dlen, len(data))
	}
	if idx != cnIdxProc || val != cnValProc {
		return dst, nil // another connector's message: not ours to decode
	}
	data = data[:dlen]
	if len(data) < procHdrLen {
		return dst, fmt.Errorf("%w: %d-byte proc_event, too short for its header", ErrMalformed, len(data))
	}
	w := What(ne.Uint32(data[0:4]))
	if w == EventOverflow {
		// Only Read and NLMSG_OVERRUN may produce this value; a proc_event
		// carrying it would be mistaken for lost events.
		return dst, fmt.Errorf("%w: proc_event type %#x is reserved for EventOverflow", ErrMalformed, uint32(w))
	}
	p := data[procHdrLen:]
	if need := payloadLen(w); len(p) < need {
		return dst, fmt.Errorf("%w: %v event with %d payload bytes, needs %d", ErrMalformed, w, len(p), need)
	}
	// Grow dst in place so the event is written once, without a temporary.
	dst = append(dst, Event{})
	e := &dst[len(dst)-1]
	e.What = w
	e.CPU = ne.Uint32(data[4:8])
	e.Timestamp = ne.Uint64(data[8:16])
	e.Seq = ne.Uint32(m[8:12])
	e.Ack = ne.Uint32(m[12:16])
	switch w {
	case EventNone:
		e.Err = ne.Uint32(p[0:4])
	case EventFork:
		e.ParentPID = int32(ne.Uint32(p[0:4]))
		e.ParentTGID = int32(ne.Uint32(p[4:8]))
		e.PID = int32(ne.Uint32(p[8:12]))
		e.TGID = int32(ne.Uint32(p[12:16]))
	case EventExec, EventSID, EventPtrace:
		// PTRACE's tracer pid/tgid (p[8:16]) are not decoded: nothing here
		// needs them, and Event has no field for them.
		e.PID = int32(ne.Uint32(p[0:4]))
		e.TGID = int32(ne.Uint32(p[4:8]))
	case EventUID:
		e.PID = int32(ne.Uint32(p[0:4]))
		e.TGID = int32(ne.Uint32(p[4:8]))
		e.RUID = ne.Uint32(p[8:12])
		e.EUID = ne.Uint32(p[12:16])
	case EventGID:
		e.PID = int32(ne.Uint32(p[0:4]))
		e.TGID = int32(ne.Uint32(p[4:8]))
		e.RGID = ne.Uint32(p[8:12])
		e.EGID = ne.Uint32(p[12:16])
	case EventComm:
		e.PID = int32(ne.Uint32(p[0:4]))
		e.TGID = int32(ne.Uint32(p[4:8]))
		copy(e.Comm[:], p[8:24])
	case EventCoredump:
		e.PID = int32(ne.Uint32(p[0:4]))
		e.TGID = int32(ne.Uint32(p[4:8]))
		e.ParentPID = int32(ne.Uint32(p[8:12]))
		e.ParentTGID = int32(ne.Uint32(p[12:16]))
	case EventExit:
		e.PID = int32(ne.Uint32(p[0:4]))
		e.TGID = int32(ne.Uint32(p[4:8]))
		e.ExitCode = ne.Uint32(p[8:12])
		e.ExitSignal = ne.Uint32(p[12:16])
		// Kernels before 4.18 had no parent fields in exit_proc_event.
		if len(p) >= 24 {
			e.ParentPID = int32(ne.Uint32(p[16:20]))
			e.ParentTGID = int32(ne.Uint32(p[20:24]))
		}
	}
	return dst, nil
}
