package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"

	"github.com/cgrulesengd/cgrulesengd/internal/cgroupfs"
	"github.com/cgrulesengd/cgrulesengd/internal/classify"
	"github.com/cgrulesengd/cgrulesengd/internal/metrics"
	"github.com/cgrulesengd/cgrulesengd/internal/systemd"
	"github.com/cgrulesengd/cgrulesengd/rules"
)

// machine writes the files systemd.Detect reads below a fresh root: PID
// 1's name and cgroup, and /run/systemd/system when booted.
func machine(t *testing.T, comm, cgroup string, booted bool) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "proc", "1"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{"comm": comm + "\n", "cgroup": cgroup} {
		if err := os.WriteFile(filepath.Join(root, "proc", "1", name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if booted {
		if err := os.MkdirAll(filepath.Join(root, "run", "systemd", "system"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func pureV2() *cgroupfs.Layout {
	u := &cgroupfs.Hierarchy{Version: cgroupfs.V2, Controllers: []string{"cpu", "memory", "pids"}, Mountpoint: "/m", Root: "/"}
	return &cgroupfs.Layout{Hierarchies: []*cgroupfs.Hierarchy{u}, Unified: u}
}

func hybrid() *cgroupfs.Layout {
	cpu := &cgroupfs.Hierarchy{Version: cgroupfs.V1, Controllers: []string{"cpu", "cpuacct"}, Mountpoint: "/c/cpu", Root: "/"}
	mem := &cgroupfs.Hierarchy{Version: cgroupfs.V1, Controllers: []string{"memory"}, Mountpoint: "/c/memory", Root: "/"}
	sd := &cgroupfs.Hierarchy{Version: cgroupfs.V1, Controllers: []string{"name=systemd"}, Mountpoint: "/c/systemd", Root: "/"}
	u := &cgroupfs.Hierarchy{Version: cgroupfs.V2, Mountpoint: "/m", Root: "/"}
	return &cgroupfs.Layout{Hierarchies: []*cgroupfs.Hierarchy{cpu, mem, sd, u}, Unified: u}
}

func TestResolveSystemd(t *testing.T) {
	sdRoot := machine(t, "systemd", "0::/init.scope\n", true)
	initRoot := machine(t, "init", "0::/\n", false)
	for _, c := range []struct {
		name, mode, bus, root string
		on                    bool
		addr, says            string
	}{
		{"auto on systemd", "auto", "", sdRoot, true, "unix:path=/run/systemd/private", "--systemd=auto: PID 1 is systemd"},
		{"auto elsewhere", "auto", "", initRoot, false, "", `refused (--systemd=auto: PID 1 is "init", not systemd)`},
		{"auto elsewhere with a bus", "auto", "unix:path=/x", initRoot, false, "", "refused"},
		{"on elsewhere, another manager", "on", "unix:path=/tmp/box/private", initRoot, true, "unix:path=/tmp/box/private", `--systemd=on; this machine: PID 1 is "init"`},
		{"off on systemd", "off", "", sdRoot, false, "", "refused (--systemd=off; this machine: PID 1 is systemd"},
		{"auto, no proc", "auto", "", t.TempDir(), false, "", "not probed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := resolveSystemd(c.mode, c.bus, c.root, pureV2())
			if s.on != c.on || s.address != c.addr {
				t.Errorf("on %v address %q, want %v %q", s.on, s.address, c.on, c.addr)
			}
			if !strings.Contains(s.String(), c.says) {
				t.Errorf("log line %q does not say %q", s.String(), c.says)
			}
		})
	}
	if got := fsRootOf("/proc"); got != "/" {
		t.Errorf("fsRootOf(/proc) = %q", got)
	}
}

func TestManagedDiags(t *testing.T) {
	const file = "/etc/cgrules.conf"
	// /m/user.slice/job.scope is a delegated scope.
	xattr := func(p, name string) ([]byte, error) {
		if p == "/m/user.slice/job.scope" && name == "trusted.delegate" {
			return []byte("1"), nil
		}
		return nil, unix.ENODATA
	}
	onSystemd := systemdSetting{mode: "auto", on: true}
	onSystemd.det.Systemd = true
	offSystemd := onSystemd
	offSystemd.on, offSystemd.mode = false, "off"
	notSystemd := systemdSetting{mode: "auto"}
	load := func(t *testing.T, l *cgroupfs.Layout, text string, sd systemdSetting) *rules.List {
		t.Helper()
		list, ds, err := rules.Parse(file, []byte(text), rules.Options{Resolver: explainAccounts(), Controllers: l.Controllers(), Systemd: sd.on})
		if err != nil {
			t.Fatalf("%v %v", err, ds)
		}
		return list
	}
	for _, c := range []struct {
		name   string
		layout *cgroupfs.Layout
		sd     systemdSetting
		root   string
		rules  string
		lines  []int // lines warned about
	}{
		{"pure v2: raw destinations in systemd's tree", pureV2(), onSystemd, "/",
			"alice cpu system.slice/x\nbob * users/%u\n@students memory a/b\n", []int{1, 2, 3}},
		{"pure v2: below a delegated scope, a slice", pureV2(), onSystemd, "/",
			"alice cpu user.slice/job.scope/a\nbob * batch-%u.slice\n", nil},
		{"pure v2: below --cgroup-root", pureV2(), onSystemd, "/rules",
			"alice cpu a\nbob * b/%u\n", nil},
		{"pure v2: not a systemd machine", pureV2(), notSystemd, "/",
			"alice cpu a\n", nil},
		{"pure v2: systemd off, still its tree", pureV2(), offSystemd, "/",
			"alice cpu a\n", []int{1}},
		{"hybrid: v1 controllers are not systemd's", hybrid(), onSystemd, "/",
			"alice cpu,memory a\nbob cpu b\n", nil},
		{"hybrid: * includes unified, and named hierarchies", hybrid(), onSystemd, "/",
			"alice * a\nbob unified b\n@students name=systemd c\n% cpu d\n", []int{1, 2, 3}},
	} {
		t.Run(c.name, func(t *testing.T) {
			list := load(t, c.layout, c.rules, c.sd)
			ds := managedDiags(list, c.layout, c.sd, c.root, xattr)
			var lines []int
			for _, d := range ds {
				lines = append(lines, d.Line)
				if d.File != file || d.Severity != rules.Warning {
					t.Errorf("diagnostic %v: want a warning in %s", d, file)
				}
				for _, w := range []string{"which systemd manages", "systemctl stop no longer ends it", "slice destination", "Delegate=yes", "--cgroup-root"} {
					if !strings.Contains(d.Msg, w) {
						t.Errorf("%s does not say %q", d, w)
					}
				}
				if c.sd.on == strings.Contains(d.Msg, "with --systemd=auto") {
					t.Errorf("%s: the advice should name --systemd=auto only when systemd is off", d)
				}
			}
			if !slices.Equal(lines, c.lines) {
				t.Errorf("warned about lines %v, want %v: %v", lines, c.lines, ds)
			}
		})
	}
	// The message names the destination and the cgroup it writes into.
	list := load(t, pureV2(), "alice cpu system.slice/x\n", onSystemd)
	ds := managedDiags(list, pureV2(), onSystemd, "/", xattr)
	if len(ds) != 1 || !strings.HasPrefix(ds[0].String(), file+":1: warning: destination system.slice/x writes into /system.slice/x of the unified hierarchy") {
		t.Errorf("got %v", ds)
	}
	// Unable to read either attribute (no CAP_SYS_ADMIN, an old kernel):
	// still a warning, saying why it may be wrong.
	blind := func(p, name string) ([]byte, error) {
		if name == "trusted.delegate" {
			return nil, unix.EPERM
		}
		return nil, unix.EOPNOTSUPP
	}
	ds = managedDiags(list, pureV2(), onSystemd, "/", blind)
	if len(ds) != 1 || !strings.Contains(ds[0].Msg, "which systemd may manage") || !strings.Contains(ds[0].Msg, "operation not permitted") {
		t.Errorf("got %v", ds)
	}
}

func TestFixedPrefix(t *testing.T) {
	for in, want := range map[string]string{
		"":             "",
		"a/b":          "a/b",
		"users/%u":     "users",
		"a/x%u/b":      "a",
		`a/\%lit/b`:    "a",
		"%g/students":  "",
		"web sites/%u": "web sites",
	} {
		if got := fixedPrefix(in); got != want {
			t.Errorf("fixedPrefix(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestRunCheckExtra: the daemon's own warnings are printed and counted
// with the parser's; a list that does not load gets none.
func TestRunCheckExtra(t *testing.T) {
	mainFile, dir := fixture(t, "alice cpu a\npeter cpu b\n", nil)
	extra := func(l *rules.List) rules.Diagnostics {
		return rules.Diagnostics{{File: mainFile, Line: 1, Severity: rules.Warning, Msg: "in systemd's tree"}}
	}
	var out, errOut bytes.Buffer
	if code := runCheck(&out, &errOut, mainFile, dir, cmdOptions(), extra); code != 0 {
		t.Fatalf("exit %d", code)
	}
	want := mainFile + ":2: warning: user \"peter\" not found, rule skipped\n" + mainFile + ":1: warning: in systemd's tree\n"
	if out.String() != want || errOut.String() != "cgrulesengd: 1 rule loaded, 2 warnings\n" {
		t.Errorf("stdout %q stderr %q", out.String(), errOut.String())
	}
	bad, dir2 := fixture(t, "alice cpu\n", nil)
	out.Reset()
	errOut.Reset()
	if code := runCheck(&out, &errOut, bad, dir2, cmdOptions(), extra); code != 1 || strings.Contains(out.String(), "systemd") {
		t.Errorf("exit %d stdout %q", code, out.String())
	}
}

// TestRunExplainSlice: --explain names the slice and the scope a task
// would join, with the scope's cgroup below the slices (not below
// --cgroup-root); without systemd the rule is an error naming file:line.
func TestRunExplainSlice(t *testing.T) {
	mainFile, dir := fixture(t, "@users  *  batch-%u.slice\nalice cpu a\n", nil)
	opt := cmdOptions()
	opt.Systemd = true
	var out, errOut bytes.Buffer
	code := runExplain(&out, &errOut, mainFile, dir, opt, nil, "/rules", "bob", "", "")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
	want := "# rule " + mainFile + ":1: @users  *  batch-%u.slice\n" +
		"# " + mainFile + ":1: systemd slice batch-bob.slice: the service manager puts the task into scope cgrulesengd-batch-bob-1001.scope (one delegated scope per slice and user, started by the first task, joined by the next)\n" +
		"*\t/batch.slice/batch-bob.slice/cgrulesengd-batch-bob-1001.scope\n"
	if out.String() != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", out.String(), want)
	}
	out.Reset()
	errOut.Reset()
	if code := runExplain(&out, &errOut, mainFile, dir, cmdOptions(), nil, "/", "bob", "", ""); code != 2 ||
		!strings.Contains(errOut.String(), mainFile+":1: destination \"batch-%u.slice\" names a systemd slice") {
		t.Errorf("without systemd: exit %d stderr %q", code, errOut.String())
	}
}

// TestPlacerValues: the counters of placements through systemd are rows of
// the one table: unique names, the results a group, the latency's
// quantiles for --status only (not described to /metrics, whose histogram
// has them), and the families pass promlint.
func TestPlacerValues(t *testing.T) {
	st := systemd.PlacerStats{Placed: 3, Unreachable: 1, Calls: 5, CallErrors: 2, InFlight: 1}
	st.CallLatency.Counts[2], st.CallLatency.Count, st.CallLatency.Max = 5, 5, 400*time.Microsecond
	vals := placerValues(st)
	if len(vals) != len(placerResults)+numPlacerCounters+3 {
		t.Fatalf("%d rows", len(vals))
	}
	seen := map[string]bool{}
	for i, v := range vals {
		if seen[v.Key()] {
			t.Errorf("%s twice", v.Key())
		}
		seen[v.Key()] = true
		quantile := strings.HasSuffix(v.Name, "_microseconds")
		if quantile != (i >= len(placerResults)+numPlacerCounters) {
			t.Errorf("row %d %s: the quantiles come last, and only they", i, v.Name)
		}
	}
	get := func(key string) uint64 {
		for _, v := range vals {
			if v.Key() == key {
				return v.Value
			}
		}
		t.Fatalf("no %s", key)
		return 0
	}
	if get("systemd_placements_placed") != 3 || get("systemd_placements_unreachable") != 1 || get("systemd_call_errors") != 2 ||
		get("systemd_calls_in_flight") != 1 || get("systemd_call_latency_p50_microseconds") != 400 {
		t.Errorf("values %v", vals)
	}
	s := &sdState{}
	if s.values() != nil || s.defs() != nil || s.callHistogram() != nil {
		t.Errorf("without systemd: values, definitions or a histogram")
	}
	defs := placerValues(systemd.PlacerStats{})[:len(placerResults)+numPlacerCounters]
	snap := metrics.Snapshot{Counters: vals, SystemdCalls: &metrics.Histogram{Bounds: systemd.HistogramBounds[:], Counts: st.CallLatency.Counts[:], Count: 5}}
	var ds []classify.Def
	for _, v := range defs {
		ds = append(ds, v.Def)
	}
	c := metrics.NewCollector(ds, func(int) metrics.Snapshot { return snap }, nil, 0, nil)
	problems, err := testutil.CollectAndLint(c)
	if err != nil || len(problems) > 0 {
		t.Errorf("promlint: %v %v", problems, err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	if n, err := testutil.GatherAndCount(reg, "cgrulesengd_systemd_call_latency_p50_microseconds"); err != nil || n != 0 {
		t.Errorf("the quantiles reach /metrics: %d (%v)", n, err)
	}
	if n, err := testutil.GatherAndCount(reg, "cgrulesengd_systemd_placements_total", "cgrulesengd_systemd_call_latency_seconds"); err != nil || n != len(placerResults)+1 {
		t.Errorf("%d placement and histogram series (%v)", n, err)
	}
}
