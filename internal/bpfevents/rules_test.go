package bpfevents

import (
	"bytes"
	"encoding/binary"
	"path"
	"slices"
	"testing"

	"github.com/cgrulesengd/cgrulesengd/internal/classify"
	"github.com/cgrulesengd/cgrulesengd/rules"
	"github.com/cgrulesengd/cgrulesengd/rules/rulestest"
)

// The engine drives the source through its Filter interface.
var _ classify.Filter = (*Source)(nil)

func testRules(t *testing.T, src string) *rules.List {
	t.Helper()
	res := rulestest.NewStatic(
		[]rules.User{{Name: "alice", UID: 1000, GID: 1000}, {Name: "bob", UID: 1001, GID: 1001}, {Name: "carol", UID: 1002, GID: 100}},
		[]rules.Group{{Name: "users", GID: 100}, {Name: "staff", GID: 2001, Members: []string{"carol", "bob"}}},
	)
	l, _, err := rules.Parse("t.conf", []byte(src), rules.Options{Resolver: res})
	if err != nil {
		t.Fatalf("%q: %v", src, err)
	}
	return l
}

// kernelPasses models the kernel side of a Filter (events.bpf.c): whether
// a credential change to (euid, egid), or an exec whose comm is comm, is
// reported. The exec model looks at the comm only (the kernel also tries
// the base name of the file run), so it is the stricter one.
func kernelPasses(f Filter, euid, egid uint32, comm string) (creds, exec bool) {
	creds = f.Any || slices.Contains(f.UIDs, euid) || slices.Contains(f.GIDs, egid)
	keys, all := nameKeys(f.Processes)
	if f.AllExecs || all {
		return creds, true
	}
	var padded [16]byte
	copy(padded[:15], comm)
	for k := range keys {
		n := binary.NativeEndian.Uint32(k[:4]) / 8
		if bytes.Equal(padded[:n], k[4:4+n]) {
			return creds, true
		}
	}
	return creds, false
}

// TestFilterLetsThrough: whatever task a rule matches, the kernel side of
// the filter of the rules' Names reports its credential change, and, when
// the rule names a process, its exec (the comm is the first 15 bytes of
// the procname's base name).
func TestFilterLetsThrough(t *testing.T) {
	lists := []string{
		"alice cpu a\n",
		"alice:make cpu m\nalice cpu a\n",
		"@staff:cc1 cpu c\n@users cpu s\n",
		"*:ssh* cpu s\nbob:/usr/bin/perl cpu p\n",
		"carol:a-very-long-program-name cpu l\ncarol:/opt/x/fourteen-bytes cpu f\n",
		"*:exactly15bytes! cpu e\n",
		"alice cpu a/%p\n",
		"*:/usr/b* cpu x\n",
	}
	procs := []string{"", "make", "/usr/bin/make", "cc1", "/usr/lib/gcc/cc1", "sshd", "/usr/sbin/sshd", "ssh",
		"/usr/bin/perl", "/usr/local/bin/perl", "/opt/a-very-long-program-name", "a-very-long-program-nam",
		"/opt/x/fourteen-bytes", "fourteen-bytes", "exactly15bytes!", "/usr/bin/vim", "/usr/bin/x"}
	ids := []uint32{0, 100, 1000, 1001, 1002, 2001, 5000}
	for _, src := range lists {
		l := testRules(t, src)
		f := l.Names()
		for _, uid := range ids {
			for _, gid := range ids {
				for _, proc := range procs {
					r := l.Match(&rules.Task{PID: 42, UID: uid, GID: gid, Process: proc})
					if r == nil {
						continue
					}
					comm := path.Base(proc)
					if len(comm) > 15 {
						comm = comm[:15]
					}
					creds, exec := kernelPasses(f, uid, gid, comm)
					if !creds {
						t.Errorf("%q: %s matches uid %d gid %d, but the filter %+v drops its credential change", src, r.Text, uid, gid, f)
					}
					if r.Process != "" && !exec {
						t.Errorf("%q: %s matches process %q, but the filter %+v drops its exec (comm %q)", src, r.Text, proc, f, comm)
					}
				}
			}
		}
	}
}
