package bpfevents

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func keyString(k nameKey) string {
	bits := binary.NativeEndian.Uint32(k[:4])
	name := k[4 : 4+bits/8]
	return strings.ReplaceAll(string(name), "\x00", `\0`)
}

func TestNameKeys(t *testing.T) {
	for _, c := range []struct {
		procs []string
		want  []string // keys: the bytes matched (\0 = the NUL of an exact name)
		all   bool
	}{
		{nil, nil, false},
		{[]string{"cc1"}, []string{`cc1\0`}, false},
		{[]string{"/usr/bin/make"}, []string{`make\0`}, false},
		{[]string{"php-fpm*"}, []string{`php-fpm`}, false},
		{[]string{"cc1", "cc1"}, []string{`cc1\0`}, false},
		// comm holds 15 bytes: a longer name can only be matched on those.
		{[]string{"a-very-long-program-name"}, []string{`a-very-long-pro`}, false},
		{[]string{"exactly15bytes!"}, []string{`exactly15bytes!\0`}, false},
		{[]string{"fourteen-bytes"}, []string{`fourteen-bytes\0`}, false},
		{[]string{"a-very-long-prefix*"}, []string{`a-very-long-pre`}, false},
		// Every exec.
		{[]string{"cc1", "*"}, nil, true},
		{[]string{"/usr/*"}, nil, true},
		{[]string{"/usr/bin/"}, nil, true},
	} {
		keys, all := nameKeys(c.procs)
		if all != c.all {
			t.Errorf("nameKeys(%q): all = %v, want %v", c.procs, all, c.all)
			continue
		}
		if all {
			continue
		}
		var got []string
		for k := range keys {
			got = append(got, keyString(k))
		}
		if strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("nameKeys(%q) = %v, want %v", c.procs, got, c.want)
		}
	}
}

func TestConfigDefaults(t *testing.T) {
	c, err := Config{}.withDefaults()
	if err != nil || c.RingBuffer != DefaultRingBuffer || c.MaxIDs != DefaultMaxIDs || c.MaxNames != DefaultMaxNames ||
		c.MaxTasks != DefaultMaxTasks || c.ForkSlack != DefaultForkSlack || c.HotTTL != DefaultHotTTL {
		t.Errorf("Config{}.withDefaults() = %+v, %v", c, err)
	}
	for _, bad := range []Config{{RingBuffer: 3000}, {RingBuffer: 1024}, {MaxIDs: -1}, {MaxTasks: -5}, {ForkSlack: -1}, {HotTTL: -1}} {
		if _, err := bad.withDefaults(); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}

// TestRefusalDropsMemlockHint: cilium/ebpf's RLIMIT_MEMLOCK hint on an
// EPERM does not reach the daemon's log (open removed that limit); the
// error still is the EPERM.
func TestRefusalDropsMemlockHint(t *testing.T) {
	cause := fmt.Errorf("program on_fork: load program: %w"+memlockHint, unix.EPERM)
	err := refusal("loading the programs", cause)
	var nse *NotSupportedError
	if !errors.As(err, &nse) || !errors.Is(err, unix.EPERM) {
		t.Fatalf("refusal = %v: want a *NotSupportedError wrapping EPERM", err)
	}
	if strings.Contains(err.Error(), "MEMLOCK") || !strings.Contains(err.Error(), "program on_fork: load program: operation not permitted") {
		t.Errorf("refusal = %q: want the cause without the MEMLOCK hint", err)
	}
}
