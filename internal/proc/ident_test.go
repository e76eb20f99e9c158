package proc

import (
	"errors"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func TestIdent(t *testing.T) {
	tests := []struct {
		name string
		pid  int
		want Ident
	}{
		{"process", 100, Ident{PID: 100, TGID: 100, UID: [3]uint32{1000, 1000, 1000}, StartTime: 1149170}},
		{"setuid: real and effective differ", 101, Ident{PID: 101, TGID: 101, UID: [3]uint32{1000, 0, 0}, StartTime: 1149170}},
		{"zombie", 110, Ident{PID: 110, TGID: 110, UID: [3]uint32{1000, 1000, 1000}, StartTime: 1149170, Zombie: true}},
		{"thread id", 120, Ident{PID: 120, TGID: 100, UID: [3]uint32{1000, 1000, 1000}, StartTime: 1149170}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := fixture.Ident(tt.pid)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Ident(%d)\n got %+v\nwant %+v", tt.pid, got, tt.want)
			}
		})
	}
	if _, err := fixture.Ident(4242); !errors.Is(err, unix.ESRCH) {
		t.Errorf("Ident of a missing pid: %v, want ESRCH", err)
	}
}

func TestStartTime(t *testing.T) {
	if st, err := fixture.StartTime(100); err != nil || st != 1149170 {
		t.Errorf("StartTime(100) = %d, %v; want 1149170", st, err)
	}
	if _, err := fixture.StartTime(110); !errors.Is(err, unix.ESRCH) {
		t.Errorf("StartTime of a zombie: %v, want ESRCH", err)
	}
	if _, err := fixture.StartTime(4242); !errors.Is(err, unix.ESRCH) {
		t.Errorf("StartTime of a missing pid: %v, want ESRCH", err)
	}
}

// TestIdentSelf reads this test process from the real /proc (no privilege
// needed): its own ids, and a start time that StartTime agrees with.
func TestIdentSelf(t *testing.T) {
	fs := NewFS("/proc")
	pid := os.Getpid()
	id, err := fs.Ident(pid)
	if err != nil {
		t.Fatal(err)
	}
	if id.TGID != pid || id.UID[0] != uint32(os.Getuid()) || id.UID[1] != uint32(os.Geteuid()) || id.Zombie || id.StartTime == 0 {
		t.Errorf("Ident(self) = %+v (pid %d, uid %d, euid %d)", id, pid, os.Getuid(), os.Geteuid())
	}
	st, err := fs.StartTime(pid)
	if err != nil || st != id.StartTime {
		t.Errorf("StartTime(self) = %d, %v; Ident says %d", st, err, id.StartTime)
	}
}
