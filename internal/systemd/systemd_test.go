package systemd

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/cgrulesengd/cgrulesengd/internal/unitname"
)

func TestParseNSpid(t *testing.T) {
	for in, want := range map[string][]int{
		"Name:\tsleep\nNSpid:\t1234\n":               {1234},
		"Name:\tsleep\nNSpid:\t1234\t56\t7\nUid:\t0": {1234, 56, 7},
		"NSpid:\t9":       {9},
		"Name:\tx\n":      nil,
		"NSpid:\n":        nil,
		"NSpid:\t12\tx\n": nil,
		"NSpid:\t0\n":     nil,
	} {
		got, err := parseNSpid([]byte(in))
		if want == nil {
			if err == nil {
				t.Errorf("parseNSpid(%q) = %v, want an error", in, got)
			}
			continue
		}
		if err != nil || len(got) != len(want) {
			t.Errorf("parseNSpid(%q) = %v, %v; want %v", in, got, err, want)
			continue
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("parseNSpid(%q) = %v, want %v", in, got, want)
			}
		}
	}
}

func FuzzParseNSpid(f *testing.F) {
	for _, s := range []string{"NSpid:\t1\t2\n", "NSpid:", "x\nNSpid:\t-1\n", "NSpid:\t99999999999999999999"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		pids, err := parseNSpid(b)
		if err == nil {
			for _, p := range pids {
				if p <= 0 {
					t.Fatalf("parseNSpid(%q) = %v", b, pids)
				}
			}
		}
	})
}

// TestTranslateSameNamespace: a manager in our own pid namespace (the
// machine's systemd) names tasks by our pids.
func TestTranslateSameNamespace(t *testing.T) {
	ns, err := NewPIDNamespace("/proc", os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if ns.Depth() != 0 && !ns.same {
		t.Skipf("this test runs in a pid namespace %d deep", ns.Depth())
	}
	if p, err := ns.Translate(os.Getpid()); err != nil || p != os.Getpid() {
		t.Errorf("Translate(self) = %d, %v", p, err)
	}
}

func TestTranslateGone(t *testing.T) {
	ns := &PIDNamespace{proc: t.TempDir(), depth: 1}
	if _, err := ns.Translate(12345); !errors.Is(err, ErrTaskGone) {
		t.Errorf("Translate of a missing pid: %v, want ErrTaskGone", err)
	}
	// A task in a shallower namespace than the manager's is outside it.
	dir := filepath.Join(ns.proc, "77")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "status"), []byte("NSpid:\t77\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ns.Translate(77); !errors.Is(err, ErrOutsideNamespace) {
		t.Errorf("Translate of a host task for a nested manager: %v, want ErrOutsideNamespace", err)
	}
}

func TestSocketPath(t *testing.T) {
	for in, want := range map[string]string{
		"unix:path=/run/systemd/private": "/run/systemd/private",
		"unix:path=/tmp/a%20b,guid=0123": "/tmp/a b",
		"unix:guid=1,path=/x":            "/x",
		"unix:abstract=/tmp/dbus-x":      "",
		"tcp:host=localhost,port=1":      "",
		"/run/systemd/private":           "",
		"unix:path=":                     "",
	} {
		got, err := socketPath(in)
		if (err != nil) != (want == "") || got != want {
			t.Errorf("socketPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestCheckAddress(t *testing.T) {
	for in, ok := range map[string]bool{
		"":                               true,
		"unix:path=/run/systemd/private": true,
		"unix:path=/tmp/a%20b,guid=0123": true,
		"unix:path=run/private":          false,
		"unix:abstract=/tmp/dbus-x":      false,
		"tcp:host=localhost,port=1":      false,
		"/run/systemd/private":           false,
	} {
		if err := CheckAddress(in); (err == nil) != ok {
			t.Errorf("CheckAddress(%q) = %v, want ok %v", in, err, ok)
		}
	}
}

func TestRootOfInit(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"0::/init.scope\n", "/"},
		{"12:pids:/\n1:name=systemd:/init.scope\n0::/init.scope\n", "/"},
		{"0::/cgre-sdbox-1a2b/init.scope\n", "/cgre-sdbox-1a2b"},
		{"0::/\n", ""},
		{"0::/system.slice/x.service\n", ""},
		{"1:name=systemd:/init.scope\n", ""},
	} {
		got, err := rootOfInit([]byte(c.in))
		if got != c.want || (err != nil) != (c.want == "") {
			t.Errorf("rootOfInit(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func TestErrorKind(t *testing.T) {
	de := func(name, msg string) error { return dbus.Error{Name: name, Body: []any{msg}} }
	for _, c := range []struct {
		err  error
		kind error
	}{
		{de("org.freedesktop.systemd1.UnitExists", "Unit x.scope was already loaded or has a fragment file."), ErrUnitExists},
		{de("org.freedesktop.DBus.Error.Failed", "Unit x.scope was already loaded or has a fragment file."), ErrUnitExists},
		{de("org.freedesktop.DBus.Error.UnixProcessIdUnknown", "Process with ID 12 does not exist."), ErrTaskGone},
		{de("org.freedesktop.DBus.Error.Failed", "Process with ID 12 does not exist."), ErrTaskGone},
		{de("org.freedesktop.systemd1.NoSuchUnit", "Unit x.scope not loaded."), ErrNoUnit},
		{de("org.freedesktop.DBus.Error.NotSupported", "Process migration not available on non-delegated units."), ErrNotDelegated},
		{de("org.freedesktop.DBus.Error.NoReply", "timeout"), ErrUnreachable},
		{dbus.ErrClosed, ErrUnreachable},
		{context.DeadlineExceeded, ErrUnreachable},
		{de("org.freedesktop.DBus.Error.AccessDenied", "no"), nil},
	} {
		e := opError("op", "u", 1, c.err)
		if c.kind == nil {
			for _, k := range []error{ErrUnitExists, ErrTaskGone, ErrNoUnit, ErrNotDelegated, ErrUnreachable} {
				if errors.Is(e, k) {
					t.Errorf("%v classified as %v", c.err, k)
				}
			}
		} else if !errors.Is(e, c.kind) {
			t.Errorf("%v: %v, want kind %v", c.err, e, c.kind)
		}
		if !errors.Is(e, c.err) && !strings.Contains(e.Error(), c.err.Error()) {
			t.Errorf("%v does not wrap %v", e, c.err)
		}
	}
}

func TestScopeName(t *testing.T) {
	for _, c := range []struct {
		slice string
		uid   uint32
		want  string
	}{
		{"batch.slice", 1000, "cgrulesengd-batch-1000.scope"},
		{`batch-john\x2ddoe.slice`, 7, `cgrulesengd-batch-john\x2ddoe-7.scope`},
	} {
		if got := ScopeName(c.slice, c.uid); got != c.want {
			t.Errorf("ScopeName(%q, %d) = %q, want %q", c.slice, c.uid, got, c.want)
		}
	}
	long := strings.Repeat("a", 240) + ".slice"
	n := ScopeName(long, 4294967295)
	if err := unitname.CheckScope(n); err != nil || n == ScopeName(strings.Repeat("b", 240)+".slice", 4294967295) {
		t.Errorf("ScopeName of a long slice: %q, %v", n, err)
	}
}

// unreachableClient is a client whose manager is gone (its socket does not
// exist), as after the manager died.
func unreachableClient(t *testing.T) *Client {
	c := &Client{cfg: Config{Address: "unix:path=/nonexistent", Proc: "/proc", CallTimeout: time.Second}, path: filepath.Join(t.TempDir(), "gone.sock")}
	c.life, c.end = context.WithCancel(context.Background())
	t.Cleanup(c.Close)
	return c
}

// TestPlacerUnreachable: while the manager cannot be reached, a placement
// is tried 1 + Retries times, then reported with ErrUnreachable, and every
// step is counted; Submit never blocks.
func TestPlacerUnreachable(t *testing.T) {
	var mu sync.Mutex
	var outs []Outcome
	done := make(chan struct{}, 10)
	reachable := make(chan struct{}, 1)
	p := NewPlacer(PlacerConfig{Client: unreachableClient(t), Retries: 3, Backoff: time.Millisecond, ProbeInterval: time.Millisecond,
		Reachable: func() { reachable <- struct{}{} }, Done: func(o Outcome) {
			mu.Lock()
			outs = append(outs, o)
			mu.Unlock()
			done <- struct{}{}
		}})
	defer p.Close()
	start := time.Now()
	if err := p.Submit(Placement{PIDs: []int{os.Getpid()}, Slice: "x.slice", UID: 1}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Errorf("Submit took %v", d)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("no outcome")
	}
	o := outs[0]
	if !errors.Is(o.Err, ErrUnreachable) || !strings.Contains(o.Err.Error(), "connect unix:path=/nonexistent") {
		t.Errorf("outcome error %v", o.Err)
	}
	if o.Attempts != 4 {
		t.Errorf("%d attempts, want 4", o.Attempts)
	}
	st := p.Stats()
	if st.Retries != 3 || st.Unreachable != 1 || st.Placed != 0 || st.Pending != 0 || st.Calls != 4 || st.CallErrors != 4 {
		t.Errorf("stats %+v", st)
	}
	if st.CallLatency.Count != 4 || st.PlaceLatency.Count != 0 {
		t.Errorf("latencies: %d calls, %d placements; want 4 and 0", st.CallLatency.Count, st.PlaceLatency.Count)
	}
	// The probe runs while the manager stays away, and says nothing.
	select {
	case <-reachable:
		t.Error("Reachable called while the manager is unreachable")
	case <-time.After(50 * time.Millisecond):
	}
}

func TestHistogram(t *testing.T) {
	var h histogram
	if q := h.snapshot().Quantile(0.5); q != 0 {
		t.Errorf("empty: p50 %v", q)
	}
	for _, d := range []time.Duration{-1, 90 * time.Microsecond, 300 * time.Microsecond, 300 * time.Microsecond, 3 * time.Millisecond, 7 * time.Second} {
		h.observe(d)
	}
	s := h.snapshot()
	if s.Count != 6 || s.Counts[0] != 2 || s.Counts[2] != 2 || s.Counts[5] != 1 || s.Counts[len(HistogramBounds)] != 1 || s.Max != 7*time.Second {
		t.Errorf("snapshot %+v", s)
	}
	for q, want := range map[float64]time.Duration{0.1: 100 * time.Microsecond, 0.5: 500 * time.Microsecond, 0.8: 5 * time.Millisecond, 1: 7 * time.Second} {
		if got := s.Quantile(q); got != want {
			t.Errorf("Quantile(%v) = %v, want %v", q, got, want)
		}
	}
}

// TestPlacerBounds: a full queue refuses at once (ErrBusy, counted), bad
// placements are refused, and Close finishes what waits with ErrClosed.
func TestPlacerBounds(t *testing.T) {
	var mu sync.Mutex
	closed := 0
	p := NewPlacer(PlacerConfig{Client: unreachableClient(t), Workers: 1, Queue: 3, Retries: 5, Backoff: time.Hour, Done: func(o Outcome) {
		mu.Lock()
		defer mu.Unlock()
		if errors.Is(o.Err, ErrClosed) {
			closed++
		}
	}})
	pl := Placement{PIDs: []int{1}, Slice: "x.slice"}
	for i := 0; i < 3; i++ {
		if err := p.Submit(pl); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Submit(pl); !errors.Is(err, ErrBusy) {
		t.Errorf("fourth Submit: %v, want ErrBusy", err)
	}
	for _, bad := range []Placement{{Slice: "x.slice"}, {PIDs: []int{1}, Slice: "x"}, {PIDs: []int{1}, Slice: "a--b.slice"}} {
		if err := p.Submit(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("Submit(%+v): %v, want ErrInvalid", bad, err)
		}
	}
	if st := p.Stats(); st.Refused != 1 || st.Submitted != 3 {
		t.Errorf("stats %+v", st)
	}
	// Let the worker fail each once (they then wait an hour for a retry).
	deadline := time.Now().Add(10 * time.Second)
	for p.Stats().Retries < 3 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	p.Close()
	if closed != 3 {
		t.Errorf("%d placements closed, want 3", closed)
	}
	if err := p.Submit(pl); !errors.Is(err, ErrClosed) {
		t.Errorf("Submit after Close: %v", err)
	}
}

func TestDialBadAddress(t *testing.T) {
	for _, addr := range []string{"tcp:host=x,port=1", "unix:abstract=x", "nonsense"} {
		_, err := Dial(context.Background(), Config{Address: addr})
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "only unix:path=FILE") {
			t.Errorf("Dial(%q): %v", addr, err)
		}
	}
	_, err := Dial(context.Background(), Config{Address: "unix:path=" + filepath.Join(t.TempDir(), "none")})
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("Dial of a missing socket: %v", err)
	}
}
