package bpfevents

import (
	"encoding/binary"
	"errors"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf/btf"

	"github.com/cgrulesengd/cgrulesengd/internal/kernel"
)

// record builds a ring buffer record as events.bpf.c writes it.
func record(what uint32, f func(b []byte)) []byte {
	b := make([]byte, recordLen)
	binary.NativeEndian.PutUint32(b[0:], what)
	binary.NativeEndian.PutUint32(b[4:], 1)         // cpu
	binary.NativeEndian.PutUint64(b[8:], 123456789) // timestamp
	binary.NativeEndian.PutUint32(b[16:], 1001)     // pid
	binary.NativeEndian.PutUint32(b[20:], 1000)     // tgid
	binary.NativeEndian.PutUint32(b[24:], 901)      // ppid
	binary.NativeEndian.PutUint32(b[28:], 900)      // ptgid
	binary.NativeEndian.PutUint32(b[32:], 42)       // rid
	binary.NativeEndian.PutUint32(b[36:], 43)       // eid
	binary.NativeEndian.PutUint32(b[40:], 256)      // exit code
	binary.NativeEndian.PutUint32(b[44:], 17)       // exit signal
	if f != nil {
		f(b)
	}
	return b
}

func TestDecode(t *testing.T) {
	base := kernel.Event{CPU: 1, Timestamp: 123456789, PID: 1001, TGID: 1000}
	with := func(f func(e *kernel.Event)) kernel.Event {
		e := base
		f(&e)
		return e
	}
	for _, c := range []struct {
		name string
		b    []byte
		want []kernel.Event
		err  bool
	}{
		{"fork", record(uint32(kernel.EventFork), nil), []kernel.Event{with(func(e *kernel.Event) {
			e.What, e.ParentPID, e.ParentTGID = kernel.EventFork, 901, 900
		})}, false},
		{"exec", record(uint32(kernel.EventExec), nil), []kernel.Event{with(func(e *kernel.Event) { e.What = kernel.EventExec })}, false},
		{"uid", record(uint32(kernel.EventUID), nil), []kernel.Event{with(func(e *kernel.Event) {
			e.What, e.RUID, e.EUID = kernel.EventUID, 42, 43
		})}, false},
		{"gid", record(uint32(kernel.EventGID), nil), []kernel.Event{with(func(e *kernel.Event) {
			e.What, e.RGID, e.EGID = kernel.EventGID, 42, 43
		})}, false},
		{"exit", record(uint32(kernel.EventExit), nil), []kernel.Event{with(func(e *kernel.Event) {
			e.What, e.ParentPID, e.ParentTGID, e.ExitCode, e.ExitSignal = kernel.EventExit, 901, 900, 256, 17
		})}, false},
		{"lost wakes only", record(whatLost, nil), nil, false},
		{"longer record", append(record(uint32(kernel.EventExec), nil), 0, 0, 0, 0, 0, 0, 0, 0), []kernel.Event{with(func(e *kernel.Event) { e.What = kernel.EventExec })}, false},
		{"short", record(uint32(kernel.EventExec), nil)[:47], nil, true},
		{"empty", nil, nil, true},
		{"unknown type", record(0x100, nil), nil, true},
		{"the overflow marker's value", record(uint32(kernel.EventOverflow), nil), nil, false}, // == whatLost
		{"none", record(0, nil), nil, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := decode(c.b, nil)
			if (err != nil) != c.err {
				t.Fatalf("decode: error %v, want error %v", err, c.err)
			}
			if err != nil && !errors.Is(err, errMalformed) {
				t.Errorf("error %v does not wrap errMalformed", err)
			}
			if len(got) != len(c.want) {
				t.Fatalf("decode: %+v, want %+v", got, c.want)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Errorf("decode: %+v, want %+v", got[i], c.want[i])
				}
			}
		})
	}
}

// TestDecodeAppends: decode appends to dst without touching what is there,
// and without allocating when dst has room.
func TestDecodeAppends(t *testing.T) {
	dst := make([]kernel.Event, 1, 8)
	dst[0].PID = 7
	b := record(uint32(kernel.EventExec), nil)
	allocs := testing.AllocsPerRun(100, func() {
		dst, _ = decode(b, dst[:1])
	})
	if allocs != 0 {
		t.Errorf("decode allocates %v times", allocs)
	}
	if len(dst) != 2 || dst[0].PID != 7 || dst[1].What != kernel.EventExec {
		t.Errorf("decode: %+v", dst)
	}
}

func FuzzDecode(f *testing.F) {
	for _, w := range []kernel.What{kernel.EventFork, kernel.EventExec, kernel.EventUID, kernel.EventGID, kernel.EventExit, whatLost, 0} {
		f.Add(record(uint32(w), nil))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		evs, err := decode(b, nil)
		if err != nil {
			if len(evs) != 0 || !errors.Is(err, errMalformed) {
				t.Fatalf("decode failed with %v but returned %+v", err, evs)
			}
			return
		}
		if len(evs) > 1 {
			t.Fatalf("one record, %d events", len(evs))
		}
		for _, e := range evs {
			switch e.What {
			case kernel.EventFork, kernel.EventExec, kernel.EventUID, kernel.EventGID, kernel.EventExit:
			default:
				t.Fatalf("decoded an event of type %v", e.What)
			}
		}
	})
}

// TestRecordLayout checks decode's offsets, and the Go mirrors of the
// shared structures, against the object's BTF (struct event, cgre_config,
// cgre_counters, settle, name_key of events.bpf.c).
func TestRecordLayout(t *testing.T) {
	spec, err := loadSpec()
	if err != nil {
		t.Skip(err)
	}
	offsets := func(name string) (map[string]uint32, uint32) {
		var st *btf.Struct
		if err := spec.Types.TypeByName(name, &st); err != nil {
			t.Fatalf("struct %s in the object's BTF: %v", name, err)
		}
		m := map[string]uint32{}
		for _, mb := range st.Members {
			m[mb.Name] = mb.Offset.Bytes()
		}
		return m, st.Size
	}
	check := func(name string, size uint32, want map[string]uint32) {
		got, gotSize := offsets(name)
		if gotSize != size {
			t.Errorf("struct %s: %d bytes, the Go side assumes %d", name, gotSize, size)
		}
		for f, off := range want {
			if o, ok := got[f]; !ok || o != off {
				t.Errorf("struct %s: field %s at %d (present %v), the Go side assumes %d", name, f, o, ok, off)
			}
		}
		if len(got) != len(want) {
			t.Errorf("struct %s has fields %v, the Go side knows %v", name, got, want)
		}
	}
	check("event", recordLen, map[string]uint32{
		"what": 0, "cpu": 4, "timestamp": 8, "pid": 16, "tgid": 20, "ppid": 24, "ptgid": 28,
		"rid": 32, "eid": 36, "exit_code": 40, "exit_signal": 44,
	})
	check("cgre_config", 24, map[string]uint32{"any_id": 0, "execs": 4, "fork_slack": 8, "hot_ttl": 16})
	check("cgre_counters", 40, map[string]uint32{"lost": 0, "lost_ring": 8, "lost_marks": 16, "creds_seen": 24, "execs_seen": 32})
	check("settle", 16, map[string]uint32{"as_of": 0, "at": 8})
	if unsafe.Sizeof(configValue{}) != 24 || unsafe.Sizeof(countersValue{}) != 40 || unsafe.Sizeof(settleValue{}) != 16 || unsafe.Sizeof(nameKey{}) != 20 {
		t.Errorf("Go mirrors: config %d, counters %d, settle %d, name key %d bytes",
			unsafe.Sizeof(configValue{}), unsafe.Sizeof(countersValue{}), unsafe.Sizeof(settleValue{}), unsafe.Sizeof(nameKey{}))
	}
	check("name_key", 20, map[string]uint32{"prefixlen": 0, "name": 4})
}
