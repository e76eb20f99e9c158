package proc

import (
	"bytes"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

const realStatus = "Name:\tcat\nUmask:\t0022\nState:\tR (running)\nTgid:\t7514\nNgid:\t0\nPid:\t7514\nPPid:\t7512\nTracerPid:\t0\n" +
	"Uid:\t1000\t1001\t1002\t1003\nGid:\t2000\t2001\t2002\t2003\nFDSize:\t256\nGroups:\t \nNStgid:\t7514\nNSpid:\t7514\nKthread:\t0\n" +
	"VmPeak:\t    3060 kB\nThreads:\t1\nCpus_allowed_list:\t0-1\nvoluntary_ctxt_switches:\t0\n"

func TestParseStatus(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    status
		wantErr bool
	}{
		{
			name: "real kernel 6.18",
			in:   realStatus,
			want: status{Name: "cat", Tgid: 7514, PPid: 7512, Uid: [4]uint32{1000, 1001, 1002, 1003}, Gid: [4]uint32{2000, 2001, 2002, 2003}, Kthread: 0},
		},
		{
			name: "kernel thread",
			in:   "Name:\tkthreadd\nTgid:\t2\nPPid:\t0\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nKthread:\t1\n",
			want: status{Name: "kthreadd", Tgid: 2, Kthread: 1},
		},
		{name: "bad kthread", in: "Name:\tn\nTgid:\t1\nPPid:\t0\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nKthread:\t2\n", wantErr: true},
		{
			name: "escaped backslash and newline in comm",
			in:   "Name:\ta\\\\b\\nc\nTgid:\t1\nPPid:\t0\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n",
			want: status{Name: "a\\b\nc", Tgid: 1, Kthread: -1},
		},
		{
			name: "comm with leading blank and colon",
			in:   "Name:\t x:y\nTgid:\t1\nPPid:\t0\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0",
			want: status{Name: " x:y", Tgid: 1, Kthread: -1},
		},
		{
			name: "max uid",
			in:   "Name:\tn\nTgid:\t1\nPPid:\t0\nUid:\t4294967295\t0\t0\t0\nGid:\t0\t0\t0\t0\n",
			want: status{Name: "n", Tgid: 1, Uid: [4]uint32{4294967295}, Kthread: -1},
		},
		{name: "uid overflow", in: "Name:\tn\nTgid:\t1\nPPid:\t0\nUid:\t4294967296\t0\t0\t0\nGid:\t0\t0\t0\t0\n", wantErr: true},
		{name: "missing gid", in: "Name:\tn\nTgid:\t1\nPPid:\t0\nUid:\t0\t0\t0\t0\n", wantErr: true},
		{name: "short uid", in: "Name:\tn\nTgid:\t1\nPPid:\t0\nUid:\t0\t0\nGid:\t0\t0\t0\t0\n", wantErr: true},
		{name: "bad tgid", in: "Name:\tn\nTgid:\tx\nPPid:\t0\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n", wantErr: true},
		{name: "empty", in: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatus(strings.NewReader(tt.in))
			if tt.wantErr {
				if !errors.Is(err, errMalformed) {
					t.Fatalf("err = %v, want malformed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    stat
		wantErr bool
	}{
		{
			name: "real cat",
			in:   "6523 (cat) R 6519 6519 4738 0 -1 4194304 97 0 0 0 0 0 0 0 20 0 1 0 1149170 3133440 358 18446744073709551615 94569978081280 94569978101161 140730792832384 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 94569978117168 94569978118784 94570042466304 140730792835584 140730792835604 140730792835604 140730792837099 0\n",
			want: stat{PID: 6523, State: 'R', PPID: 6519, Flags: 4194304, Policy: 0, StartTime: 1149170},
		},
		{
			name: "real kthreadd",
			in:   "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 18 0 0 18446744073709551615 0 0 0 0 0 0 0 2147483647 0 1 0 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
			want: stat{PID: 2, State: 'S', PPID: 0, Flags: 2129984, Policy: 0, StartTime: 18},
		},
		{
			name: "comm with parens and blanks, SCHED_RR",
			in:   "9 (a) b (c) S 1 9 9 0 -1 4194560 97 0 0 0 0 0 0 0 20 0 1 0 1 1 1 1 1 1 0 0 0 0 0 0 0 0 0 0 17 0 50 2 0\n",
			want: stat{PID: 9, State: 'S', PPID: 1, Flags: 4194560, Policy: 2, StartTime: 1},
		},
		{
			name: "old kernel without policy",
			in:   "9 (x) S 1 9 9 0 -1 256 0 0",
			want: stat{PID: 9, State: 'S', PPID: 1, Flags: 256, Policy: -1},
		},
		{name: "too short", in: "9 (x) S 1 9", wantErr: true},
		{name: "no comm", in: "9 x S 1 9 9 0 -1 256", wantErr: true},
		{name: "bad ppid", in: "9 (x) S -1 9 9 0 -1 256", wantErr: true},
		{name: "bad starttime", in: "9 (x) S 1 9 9 0 -1 256 0 0 0 0 0 0 0 0 20 0 1 0 -5 1", wantErr: true},
		{name: "empty", in: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStat(strings.NewReader(tt.in))
			if tt.wantErr {
				if !errors.Is(err, errMalformed) {
					t.Fatalf("err = %v, want malformed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseCgroup(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []CgroupLine
		wantErr bool
	}{
		{
			name: "hybrid reference machine",
			in:   "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/cc7c\n2:cpuacct:/\n1:cpu:/\n0::/\n",
			want: []CgroupLine{
				{9, []string{"name=systemd"}, "/"},
				{8, []string{"pids"}, "/"},
				{4, []string{"memory"}, "/process_api/cc7c"},
				{2, []string{"cpuacct"}, "/"},
				{1, []string{"cpu"}, "/"},
				{0, nil, "/"},
			},
		},
		{
			name: "pure v2",
			in:   "0::/user.slice/user-1000.slice/session-2.scope\n",
			want: []CgroupLine{{0, nil, "/user.slice/user-1000.slice/session-2.scope"}},
		},
		{
			name: "co-mounted and named with controllers",
			in:   "3:cpu,cpuacct:/a\n1:cpuset,name=foo:/b\n",
			want: []CgroupLine{{3, []string{"cpu", "cpuacct"}, "/a"}, {1, []string{"cpuset", "name=foo"}, "/b"}},
		},
		{
			name: "path with colon, outside namespace, no trailing newline",
			in:   "0::/../../x:y",
			want: []CgroupLine{{0, nil, "/../../x:y"}},
		},
		{name: "empty", in: "", want: nil},
		{name: "one colon", in: "0:/\n", wantErr: true},
		{name: "bad id", in: "x::/\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseCgroup(strings.NewReader(tt.in))
			if tt.wantErr {
				if !errors.Is(err, errMalformed) {
					t.Fatalf("err = %v, want malformed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseCgroupSlicesIndependent(t *testing.T) {
	// Controllers slices share one backing array; appending to one must
	// not overwrite the next line's names.
	got, err := parseCgroupBytes([]byte("2:a,b:/\n1:c:/\n"))
	if err != nil {
		t.Fatal(err)
	}
	_ = append(got[0].Controllers, "x")
	if got[1].Controllers[0] != "c" {
		t.Fatalf("append clobbered next line: %v", got[1].Controllers)
	}
}

func TestParserAllocations(t *testing.T) {
	cg := []byte("9:name=systemd:/\n8:pids:/\n7:blkio:/\n6:freezer:/\n5:devices:/\n4:memory:/p/c\n3:cpuset:/\n2:cpuacct:/\n1:cpu:/\n0::/\n")
	if n := testing.AllocsPerRun(100, func() { _, _ = parseCgroupBytes(cg) }); n > 3 {
		t.Errorf("parseCgroupBytes: %v allocs, want <= 3", n)
	}
	st := []byte(realStatus)
	if n := testing.AllocsPerRun(100, func() { _, _ = parseStatusBytes(st, nil) }); n > 1 {
		t.Errorf("parseStatusBytes: %v allocs, want <= 1", n)
	}
	sst := []byte("6523 (cat) R 6519 6519 4738 0 -1 4194304 97 0 0 0 0 0 0 0 20 0 1 0 1149170 3133440 358 1 1 1 1 0 0 0 0 0 0 0 0 0 17 0 0 0 0\n")
	if n := testing.AllocsPerRun(100, func() { _, _ = parseStatBytes(sst) }); n > 0 {
		t.Errorf("parseStatBytes: %v allocs, want 0", n)
	}
}

func FuzzParseStatus(f *testing.F) {
	f.Add([]byte(realStatus))
	f.Add([]byte("Name:\ta\\\\b\\n\nTgid:\t1\nPPid:\t0\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n"))
	f.Add([]byte("Uid:\t99999999999999999999\t0\t0\t0\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := parseStatusBytes(b, nil)
		if err != nil {
			if !errors.Is(err, errMalformed) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if st.Tgid < 0 || st.PPid < 0 {
			t.Fatalf("negative ids: %+v", st)
		}
		st2, err := parseStatus(bytes.NewReader(b))
		if err != nil || st2 != st {
			t.Fatalf("reader and bytes parsers disagree: %+v %+v %v", st, st2, err)
		}
	})
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("6523 (cat) R 6519 6519 4738 0 -1 4194304 97 0 0 0 0 0 0 0 20 0 1 0 1149170 3133440 358 1 1 1 1 0 0 0 0 0 0 0 0 0 17 0 0 0 0\n"))
	f.Add([]byte("9 (a) b (c) S 1 9 9 0 -1 4194560"))
	f.Add([]byte("1 () S"))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := parseStatBytes(b)
		if err != nil {
			if !errors.Is(err, errMalformed) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if st.PID < 0 || st.PPID < 0 || st.Policy < -1 {
			t.Fatalf("bad values: %+v", st)
		}
	})
}

func FuzzParseCgroup(f *testing.F) {
	f.Add([]byte("9:name=systemd:/\n8:pids:/\n4:memory:/process_api/x\n0::/\n"))
	f.Add([]byte("3:cpu,cpuacct:/a\n1:cpuset,name=foo:/b:c\n"))
	f.Add([]byte("0::/../x"))
	f.Add([]byte("\n\n,:,:\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		lines, err := parseCgroupBytes(b)
		if err != nil {
			if !errors.Is(err, errMalformed) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		// Re-serialising must give back every non-empty input line.
		var want []string
		for _, l := range strings.Split(string(b), "\n") {
			if l != "" {
				want = append(want, l)
			}
		}
		if len(want) != len(lines) {
			t.Fatalf("%d lines parsed, %d in input", len(lines), len(want))
		}
		for i, l := range lines {
			// The id may have leading zeros in fuzz input; compare the
			// text after the first colon exactly and the id numerically.
			c := strings.IndexByte(want[i], ':')
			id, err := strconv.Atoi(want[i][:c])
			if err != nil || id != l.ID {
				t.Fatalf("line %d: id %q parsed as %d", i, want[i][:c], l.ID)
			}
			if s := strings.Join(l.Controllers, ",") + ":" + l.Path; s != want[i][c+1:] {
				t.Fatalf("line %d: %q re-serialised as %q", i, want[i], s)
			}
		}
	})
}
