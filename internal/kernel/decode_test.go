package kernel

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// --- test encoder: builds datagrams from explicit layouts -------------------

var ne = binary.NativeEndian

func u32s(vs ...uint32) []byte {
	b := make([]byte, 4*len(vs))
	for i, v := range vs {
		ne.PutUint32(b[4*i:], v)
	}
	return b
}

// nlmsg returns one netlink message, padded to 4 bytes.
func nlmsg(typ uint16, seq uint32, payload []byte) []byte {
	return padded(nlmsgRaw(uint32(nlmsgHdrLen+len(payload)), typ, seq, payload))
}

// nlmsgRaw returns a netlink message with the given length field, unpadded.
func nlmsgRaw(length uint32, typ uint16, seq uint32, payload []byte) []byte {
	b := make([]byte, nlmsgHdrLen, nlmsgHdrLen+len(payload))
	ne.PutUint32(b[0:], length)
	ne.PutUint16(b[4:], typ)
	ne.PutUint32(b[8:], seq)
	return append(b, payload...)
}

func padded(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// cnmsg returns a cn_msg carrying data; dlen < 0 means len(data).
func cnmsg(idx, val, seq, ack uint32, dlen int, data []byte) []byte {
	if dlen < 0 {
		dlen = len(data)
	}
	b := make([]byte, cnMsgLen, cnMsgLen+len(data))
	ne.PutUint32(b[0:], idx)
	ne.PutUint32(b[4:], val)
	ne.PutUint32(b[8:], seq)
	ne.PutUint32(b[12:], ack)
	ne.PutUint16(b[16:], uint16(dlen))
	return append(b, data...)
}

// procEvent returns a proc_event: header plus payload, the union padded to
// its kernel size of 24 bytes.
func procEvent(what What, cpu uint32, ts uint64, payload []byte) []byte {
	b := make([]byte, procHdrLen, procEventLen)
	ne.PutUint32(b[0:], uint32(what))
	ne.PutUint32(b[4:], cpu)
	ne.PutUint64(b[8:], ts)
	b = append(b, payload...)
	for len(b) < procEventLen {
		b = append(b, 0)
	}
	return b
}

// datagram is what the kernel sends for one event.
func datagram(seq, ack uint32, ev []byte) []byte {
	return nlmsg(unix.NLMSG_DONE, seq, cnmsg(cnIdxProc, cnValProc, seq, ack, -1, ev))
}

func cat(bs ...[]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

// encode is the inverse of Decode for the fields Decode fills: it renders
// events the way the kernel would send them.
func encode(evs []Event) []byte {
	var out []byte
	for _, e := range evs {
		if e.What == EventOverflow {
			out = append(out, nlmsg(unix.NLMSG_OVERRUN, 0, nil)...)
			continue
		}
		var p []byte
		switch e.What {
		case EventNone:
			p = u32s(e.Err)
		case EventFork:
			p = u32s(uint32(e.ParentPID), uint32(e.ParentTGID), uint32(e.PID), uint32(e.TGID))
		case EventExec, EventSID, EventPtrace:
			p = u32s(uint32(e.PID), uint32(e.TGID))
		case EventUID:
			p = u32s(uint32(e.PID), uint32(e.TGID), e.RUID, e.EUID)
		case EventGID:
			p = u32s(uint32(e.PID), uint32(e.TGID), e.RGID, e.EGID)
		case EventComm:
			p = append(u32s(uint32(e.PID), uint32(e.TGID)), e.Comm[:]...)
		case EventCoredump:
			p = u32s(uint32(e.PID), uint32(e.TGID), uint32(e.ParentPID), uint32(e.ParentTGID))
		case EventExit:
			p = u32s(uint32(e.PID), uint32(e.TGID), e.ExitCode, e.ExitSignal, uint32(e.ParentPID), uint32(e.ParentTGID))
		}
		out = append(out, datagram(e.Seq, e.Ack, procEvent(e.What, e.CPU, e.Timestamp, p))...)
	}
	return out
}

// negErrno is how NLMSG_ERROR carries an errno: negated, as an int32.
func negErrno(e unix.Errno) uint32 { return uint32(-int32(e)) }

func comm(s string) (c [16]byte) {
	copy(c[:], s)
	return c
}

// forkLE is a FORK datagram written out byte by byte (little endian), so
// that the offsets are checked independently of the encoder above.
const forkLE = "" +
	"4c000000" + "0300" + "0000" + "10000000" + "00000000" + // nlmsghdr: len 76, NLMSG_DONE, seq 16, pid 0
	"01000000" + "01000000" + "10000000" + "00000000" + "2800" + "0000" + // cn_msg: idx 1, val 1, seq 16, ack 0, len 40
	"01000000" + "03000000" + "0807060504030201" + // proc_event: FORK, cpu 3, timestamp
	"64000000" + "65000000" + "c8000000" + "c9000000" + // parent pid 100, tgid 101, child pid 200, tgid 201
	"0000000000000000" // rest of the union

func TestDecode(t *testing.T) {
	const ts = 123456789
	fork := procEvent(EventFork, 1, ts, u32s(10, 10, 20, 20))
	exec := procEvent(EventExec, 0, ts+1, u32s(20, 20))

	tests := []struct {
		name    string
		in      []byte
		want    []Event
		wantErr error // checked with errors.Is; nil means success
	}{
		{name: "empty", in: nil, want: nil},
		{
			name: "fork",
			in:   datagram(7, 0, fork),
			want: []Event{{What: EventFork, CPU: 1, Timestamp: ts, ParentPID: 10, ParentTGID: 10, PID: 20, TGID: 20, Seq: 7}},
		},
		{
			name: "fork thread",
			in:   datagram(7, 0, procEvent(EventFork, 1, ts, u32s(20, 20, 21, 20))),
			want: []Event{{What: EventFork, CPU: 1, Timestamp: ts, ParentPID: 20, ParentTGID: 20, PID: 21, TGID: 20, Seq: 7}},
		},
		{
			name: "exec",
			in:   datagram(8, 0, exec),
			want: []Event{{What: EventExec, Timestamp: ts + 1, PID: 20, TGID: 20, Seq: 8}},
		},
		{
			name: "uid",
			in:   datagram(9, 0, procEvent(EventUID, 1, ts, u32s(21, 20, 1000, 65534))),
			want: []Event{{What: EventUID, CPU: 1, Timestamp: ts, PID: 21, TGID: 20, RUID: 1000, EUID: 65534, Seq: 9}},
		},
		{
			name: "gid",
			in:   datagram(9, 0, procEvent(EventGID, 1, ts, u32s(20, 20, 100, 65534))),
			want: []Event{{What: EventGID, CPU: 1, Timestamp: ts, PID: 20, TGID: 20, RGID: 100, EGID: 65534, Seq: 9}},
		},
		{
			name: "exit with parent",
			in:   datagram(1, 0, procEvent(EventExit, 0, ts, u32s(20, 20, 0x100, uint32(unix.SIGCHLD), 10, 10))),
			want: []Event{{What: EventExit, Timestamp: ts, PID: 20, TGID: 20, ExitCode: 0x100, ExitSignal: uint32(unix.SIGCHLD), ParentPID: 10, ParentTGID: 10, Seq: 1}},
		},
		{
			name: "exit without parent fields",
			in: nlmsg(unix.NLMSG_DONE, 1, cnmsg(cnIdxProc, cnValProc, 1, 0, -1,
				append(procEvent(EventExit, 0, ts, nil)[:procHdrLen], u32s(20, 20, 9, 17)...))),
			want: []Event{{What: EventExit, Timestamp: ts, PID: 20, TGID: 20, ExitCode: 9, ExitSignal: 17, Seq: 1}},
		},
		{
			name: "ack",
			in:   datagram(42, 1001, procEvent(EventNone, 0xffffffff, ts, u32s(0))),
			want: []Event{{What: EventNone, CPU: 0xffffffff, Timestamp: ts, Seq: 42, Ack: 1001}},
		},
		{
			name: "ack with error",
			in:   datagram(42, 1001, procEvent(EventNone, 0xffffffff, ts, u32s(uint32(unix.EPERM)))),
			want: []Event{{What: EventNone, CPU: 0xffffffff, Timestamp: ts, Seq: 42, Ack: 1001, Err: uint32(unix.EPERM)}},
		},
		{
			name: "sid",
			in:   datagram(3, 0, procEvent(EventSID, 0, ts, u32s(30, 30))),
			want: []Event{{What: EventSID, Timestamp: ts, PID: 30, TGID: 30, Seq: 3}},
		},
		{
			name: "ptrace: tracer not decoded",
			in:   datagram(3, 0, procEvent(EventPtrace, 0, ts, u32s(30, 30, 40, 40))),
			want: []Event{{What: EventPtrace, Timestamp: ts, PID: 30, TGID: 30, Seq: 3}},
		},
		{
			name: "comm",
			in:   datagram(3, 0, procEvent(EventComm, 0, ts, append(u32s(30, 31), []byte("kworker\x00\x00\x00\x00\x00\x00\x00\x00\x00")...))),
			want: []Event{{What: EventComm, Timestamp: ts, PID: 30, TGID: 31, Comm: comm("kworker"), Seq: 3}},
		},
		{
			name: "coredump",
			in:   datagram(3, 0, procEvent(EventCoredump, 0, ts, u32s(30, 30, 1, 1))),
			want: []Event{{What: EventCoredump, Timestamp: ts, PID: 30, TGID: 30, ParentPID: 1, ParentTGID: 1, Seq: 3}},
		},
		{
			name: "unknown event type: header fields only",
			in:   datagram(5, 6, procEvent(0x400, 1, ts, u32s(30, 30, 1, 1))),
			want: []Event{{What: 0x400, CPU: 1, Timestamp: ts, Seq: 5, Ack: 6}},
		},
		{
			name:    "proc_event claiming to be an overflow",
			in:      datagram(5, 6, procEvent(EventOverflow, 1, ts, nil)),
			wantErr: ErrMalformed,
		},
		{
			name: "two messages in one datagram",
			in:   cat(datagram(1, 0, fork), datagram(2, 0, exec)),
			want: []Event{
				{What: EventFork, CPU: 1, Timestamp: ts, ParentPID: 10, ParentTGID: 10, PID: 20, TGID: 20, Seq: 1},
				{What: EventExec, Timestamp: ts + 1, PID: 20, TGID: 20, Seq: 2},
			},
		},
		{
			name: "noop, netlink ack and unknown netlink type are skipped",
			in: cat(nlmsg(unix.NLMSG_NOOP, 0, nil), datagram(1, 0, exec),
				nlmsg(unix.NLMSG_ERROR, 0, u32s(0)), nlmsg(0x20, 0, []byte{1, 2, 3})),
			want: []Event{{What: EventExec, Timestamp: ts + 1, PID: 20, TGID: 20, Seq: 1}},
		},
		{
			name: "last message unpadded",
			in:   cat(datagram(1, 0, exec), nlmsgRaw(nlmsgHdrLen+3, unix.NLMSG_NOOP, 0, []byte{1, 2, 3})),
			want: []Event{{What: EventExec, Timestamp: ts + 1, PID: 20, TGID: 20, Seq: 1}},
		},
		{
			name: "other connector id skipped",
			in:   cat(nlmsg(unix.NLMSG_DONE, 1, cnmsg(2, 1, 1, 0, -1, fork)), datagram(2, 0, exec)),
			want: []Event{{What: EventExec, Timestamp: ts + 1, PID: 20, TGID: 20, Seq: 2}},
		},
		{
			name: "overrun is an overflow",
			in:   nlmsg(unix.NLMSG_OVERRUN, 0, nil),
			want: []Event{{What: EventOverflow}},
		},
		{
			name:    "netlink error",
			in:      nlmsg(unix.NLMSG_ERROR, 0, u32s(negErrno(unix.EPERM))),
			wantErr: unix.EPERM,
		},
		{
			name:    "netlink error truncated",
			in:      nlmsg(unix.NLMSG_ERROR, 0, nil),
			wantErr: ErrMalformed,
		},
		{
			name:    "truncated netlink header",
			in:      datagram(1, 0, fork)[:10],
			wantErr: ErrMalformed,
		},
		{
			name:    "netlink length smaller than its header",
			in:      nlmsgRaw(8, unix.NLMSG_DONE, 0, cnmsg(1, 1, 0, 0, -1, fork)),
			wantErr: ErrMalformed,
		},
		{
			name:    "netlink length beyond the datagram",
			in:      nlmsgRaw(200, unix.NLMSG_DONE, 0, cnmsg(1, 1, 0, 0, -1, fork)),
			wantErr: ErrMalformed,
		},
		{
			name:    "datagram cut inside the event",
			in:      datagram(1, 0, fork)[:60],
			wantErr: ErrMalformed,
		},
		{
			name:    "cn_msg truncated",
			in:      nlmsg(unix.NLMSG_DONE, 0, make([]byte, 10)),
			wantErr: ErrMalformed,
		},
		{
			name:    "cn_msg length beyond its message",
			in:      nlmsg(unix.NLMSG_DONE, 0, cnmsg(1, 1, 0, 0, 41, fork)),
			wantErr: ErrMalformed,
		},
		{
			name:    "proc_event shorter than its header",
			in:      nlmsg(unix.NLMSG_DONE, 0, cnmsg(1, 1, 0, 0, 8, fork)),
			wantErr: ErrMalformed,
		},
		{
			name:    "fork with short payload",
			in:      nlmsg(unix.NLMSG_DONE, 0, cnmsg(1, 1, 0, 0, procHdrLen+8, fork)),
			wantErr: ErrMalformed,
		},
		{
			name:    "ack without its error field",
			in:      nlmsg(unix.NLMSG_DONE, 0, cnmsg(1, 1, 0, 0, procHdrLen, fork)),
			wantErr: ErrMalformed,
		},
		{
			name:    "good event then garbage keeps the good one",
			in:      cat(datagram(1, 0, exec), []byte{1, 2, 3, 4, 5}),
			want:    []Event{{What: EventExec, Timestamp: ts + 1, PID: 20, TGID: 20, Seq: 1}},
			wantErr: ErrMalformed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []Event{{What: EventExit, PID: 99}}
			got, err := Decode(tt.in, prefix)
			if tt.wantErr == nil && err != nil {
				t.Fatalf("Decode: unexpected error %v", err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Decode: error %v, want one wrapping %v", err, tt.wantErr)
			}
			if !reflect.DeepEqual(got[:1], prefix) {
				t.Fatalf("Decode changed dst's existing events: %+v", got[:1])
			}
			if got := got[1:]; !reflect.DeepEqual(got, tt.want) && !(len(got) == 0 && len(tt.want) == 0) {
				t.Errorf("Decode:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestDecodeHandWrittenBytes(t *testing.T) {
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("the hand-written datagram is little endian")
	}
	b, err := hex.DecodeString(forkLE)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != procDatagram {
		t.Fatalf("hand-written datagram is %d bytes, the kernel sends %d", len(b), procDatagram)
	}
	got, err := Decode(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []Event{{What: EventFork, CPU: 3, Timestamp: 0x0102030405060708, ParentPID: 100, ParentTGID: 101, PID: 200, TGID: 201, Seq: 16}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

func TestDecodeDoesNotAllocate(t *testing.T) {
	b := cat(datagram(1, 0, procEvent(EventFork, 1, 5, u32s(1, 1, 2, 2))),
		datagram(2, 0, procEvent(EventExit, 1, 5, u32s(2, 2, 0, 17, 1, 1))))
	dst := make([]Event, 0, 2)
	allocs := testing.AllocsPerRun(100, func() {
		var err error
		if dst, err = Decode(b, dst[:0]); err != nil || len(dst) != 2 {
			t.Fatalf("Decode: %v, %d events", err, len(dst))
		}
	})
	if allocs != 0 {
		t.Errorf("Decode allocates %v times per call with room in dst", allocs)
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	in := []Event{
		{What: EventFork, CPU: 1, Timestamp: 10, ParentPID: 1, ParentTGID: 1, PID: 2, TGID: 2, Seq: 3},
		{What: EventExec, Timestamp: 11, PID: 2, TGID: 2},
		{What: EventUID, PID: 2, TGID: 2, RUID: 5, EUID: 6},
		{What: EventGID, PID: 2, TGID: 2, RGID: 5, EGID: 6},
		{What: EventComm, PID: 2, TGID: 2, Comm: comm("0123456789abcdef")},
		{What: EventExit, PID: 2, TGID: 2, ExitCode: 256, ExitSignal: 17, ParentPID: 1, ParentTGID: 1},
		{What: EventNone, CPU: 0xffffffff, Seq: 9, Ack: 10, Err: 1},
		{What: EventOverflow},
	}
	got, err := Decode(encode(in), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, in) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, in)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(datagram(1, 0, procEvent(EventFork, 1, 5, u32s(1, 1, 2, 2))))
	f.Add(datagram(1, 0, procEvent(EventExit, 1, 5, u32s(2, 2, 0, 17, 1, 1))))
	f.Add(datagram(1, 0, procEvent(EventUID, 1, 5, u32s(2, 2, 0, 65534))))
	f.Add(datagram(1, 2, procEvent(EventNone, 0xffffffff, 5, u32s(0))))
	f.Add(datagram(1, 0, procEvent(EventComm, 1, 5, append(u32s(2, 2), "bash"...))))
	f.Add(datagram(1, 0, procEvent(0x400, 1, 5, nil)))
	f.Add(cat(datagram(1, 0, procEvent(EventExec, 1, 5, u32s(2, 2))), nlmsg(unix.NLMSG_NOOP, 0, nil), nlmsg(unix.NLMSG_OVERRUN, 0, nil)))
	f.Add(nlmsg(unix.NLMSG_ERROR, 0, u32s(0xffffffff)))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		prefix := []Event{{What: EventExit, PID: 99}}
		got, err := Decode(b, prefix)
		if len(got) < 1 || got[0] != prefix[0] {
			t.Fatalf("Decode lost dst's existing events")
		}
		if err != nil {
			var errno unix.Errno
			if !errors.Is(err, ErrMalformed) && !errors.As(err, &errno) {
				t.Fatalf("error %v is neither ErrMalformed nor an errno", err)
			}
		}
		// Whatever decoded, decodes the same after re-encoding.
		evs := got[1:]
		again, err := Decode(encode(evs), nil)
		if err != nil {
			t.Fatalf("re-encoded events do not decode: %v\nevents: %+v", err, evs)
		}
		if len(evs) != len(again) || (len(evs) > 0 && !reflect.DeepEqual(evs, again)) {
			t.Fatalf("round trip changed the events:\n got %+v\nwant %+v", again, evs)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	// One event per datagram, as the kernel sends them.
	in := datagram(1, 0, procEvent(EventFork, 1, 5, u32s(1, 1, 2, 2)))
	dst := make([]Event, 0, 1)
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		var err error
		if dst, err = Decode(in, dst[:0]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/event")
}

func BenchmarkDecodeMulti(b *testing.B) {
	// 16 events in one buffer: the per-message cost without per-call overhead.
	const n = 16
	var in []byte
	for i := range n {
		in = append(in, datagram(uint32(i), 0, procEvent(EventExit, 1, 5, u32s(2, 2, 0, 17, 1, 1)))...)
	}
	dst := make([]Event, 0, n)
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		var err error
		if dst, err = Decode(in, dst[:0]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/event")
}

func TestWhatString(t *testing.T) {
	for w, want := range map[What]string{
		EventNone:                        "NONE",
		EventFork:                        "FORK",
		EventExit:                        "EXIT",
		EventOverflow:                    "OVERFLOW",
		EventFork | EventExit:            "FORK|EXIT",
		EventUID | 0x400:                 "UID|0x400",
		0x800:                            "0x800",
		EventNonzeroExit | EventCoredump: "NONZERO_EXIT|COREDUMP",
	} {
		if got := w.String(); got != want {
			t.Errorf("What(%#x).String() = %q, want %q", uint32(w), got, want)
		}
	}
}

// TestOverflowValueIsFree guards the choice of EventOverflow: it must not be
// a bit the kernel uses.
func TestOverflowValueIsFree(t *testing.T) {
	if eventAll&EventOverflow != 0 || EventOverflow == EventNone {
		t.Fatalf("EventOverflow %#x collides with the kernel's event bits %#x", uint32(EventOverflow), uint32(eventAll))
	}
}

func TestCommString(t *testing.T) {
	e := Event{Comm: comm("sh")}
	if got := e.CommString(); got != "sh" {
		t.Errorf("CommString() = %q", got)
	}
	e.Comm = comm(strings.Repeat("x", 16))
	if got := e.CommString(); got != strings.Repeat("x", 16) {
		t.Errorf("CommString() = %q", got)
	}
}

func TestWants(t *testing.T) {
	ev := func(w What, code uint32) *Event { return &Event{What: w, ExitCode: code} }
	tests := []struct {
		name string
		mask What
		e    *Event
		want bool
	}{
		{"all: fork", eventAll, ev(EventFork, 0), true},
		{"all: unknown type", eventAll, ev(0x400, 0), true},
		{"all: ack dropped", eventAll, ev(EventNone, 0), false},
		{"fork: exec dropped", EventFork, ev(EventExec, 0), false},
		{"fork: overflow kept", EventFork, ev(EventOverflow, 0), true},
		{"exit", EventExit, ev(EventExit, 0), true},
		{"nonzero exit: zero dropped", EventNonzeroExit, ev(EventExit, 0), false},
		{"nonzero exit: non-zero kept", EventNonzeroExit, ev(EventExit, 256), true},
		{"fork: unknown type dropped", EventFork, ev(0x400, 0), false},
	}
	for _, tt := range tests {
		c := &Conn{mask: tt.mask}
		if got := c.wants(tt.e); got != tt.want {
			t.Errorf("%s: wants = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestKeepCounts(t *testing.T) {
	c := &Conn{mask: EventExec}
	dst := []Event{{What: EventFork}, {What: EventExec, PID: 1}, {What: EventNone}, {What: EventOverflow}, {What: EventExec, PID: 2}}
	got := c.keep(dst, 1)
	want := []Event{{What: EventFork}, {What: EventExec, PID: 1}, {What: EventOverflow}, {What: EventExec, PID: 2}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("keep = %+v", got)
	}
	if s := c.Stats(); s.Events != 2 || s.Overflows != 1 || s.Discarded != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestListenConfigErrors(t *testing.T) {
	for _, cfg := range []Config{
		{ReceiveBuffer: -1},
		{AckTimeout: -time.Second},
		{Events: EventOverflow},
		{Events: 0x400},
	} {
		if c, err := Listen(cfg); err == nil {
			c.Close()
			t.Errorf("Listen(%+v) succeeded", cfg)
		}
	}
}
