package sticky

import (
	"encoding/binary"
	"errors"
	"testing"
)

// encode is a request as libcgroup's client writes it.
func encode(pid int32, flags uint32) []byte {
	b := binary.NativeEndian.AppendUint32(nil, uint32(pid))
	return binary.NativeEndian.AppendUint32(b, flags)
}

func TestDecodeRequest(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    Request
		wantErr string
	}{
		{"cgexec", encode(1234, 0), Request{PID: 1234, Flags: FlagsProcess}, ""},
		{"cgexec --sticky", encode(1234, 1), Request{PID: 1234, Flags: FlagsChildren}, ""},
		{"cgclassify --cancel-sticky", encode(1, 2), Request{PID: 1, Flags: FlagsCancel}, ""},
		{"largest pid", encode(1<<31-1, 0), Request{PID: 1<<31 - 1}, ""},
		{"empty", nil, Request{}, "malformed sticky request: 0 bytes, want 8 (a pid and a flags word)"},
		{"pid only", encode(1234, 0)[:4], Request{}, "malformed sticky request: 4 bytes, want 8 (a pid and a flags word)"},
		{"one short", encode(1234, 0)[:7], Request{}, "malformed sticky request: 7 bytes, want 8 (a pid and a flags word)"},
		{"one too many", append(encode(1234, 0), 0), Request{}, "malformed sticky request: 9 bytes, want 8 (a pid and a flags word)"},
		{"pid 0", encode(0, 0), Request{}, "malformed sticky request: pid 0"},
		{"negative pid", encode(-1, 0), Request{}, "malformed sticky request: pid -1"},
		{"--sticky and --cancel-sticky", encode(1234, 3), Request{}, "malformed sticky request: flags 3 for pid 1234 (want 0, 1 or 2)"},
		{"flags -1", encode(1234, 0xffffffff), Request{}, "malformed sticky request: flags -1 for pid 1234 (want 0, 1 or 2)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeRequest(tt.in)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr || !errors.Is(err, ErrMalformed) {
					t.Fatalf("DecodeRequest(%x) = %+v, %v; want error %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("DecodeRequest(%x) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestFlagsString(t *testing.T) {
	for f, want := range map[Flags]string{0: "process", 1: "children", 2: "cancel", 7: "flags(7)"} {
		if got := f.String(); got != want {
			t.Errorf("Flags(%d).String() = %q, want %q", uint32(f), got, want)
		}
	}
}

func FuzzDecodeRequest(f *testing.F) {
	f.Add(encode(1234, 0))
	f.Add(encode(1234, 1))
	f.Add(encode(1234, 2))
	f.Add(encode(-5, 3))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRequest(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if len(b) != RequestSize || r.PID <= 0 || r.Flags > FlagsCancel {
			t.Fatalf("accepted %x as %+v", b, r)
		}
		if string(encode(r.PID, uint32(r.Flags))) != string(b) {
			t.Fatalf("%x decoded to %+v, which encodes differently", b, r)
		}
	})
}
