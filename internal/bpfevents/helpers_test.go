package bpfevents

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cgrulesengd/cgrulesengd/internal/kernel"
)

// The test binary doubles as a helper process (the os/exec helper-process
// pattern): with helperEnv set, TestMain runs the helper instead of tests.
const helperEnv = "CGRE_BPF_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		code := m.Run()
		if helpersDir != "" {
			os.RemoveAll(helpersDir)
		}
		os.Exit(code)
	case "open":
		// How Open fails in this process's credentials: the Reason and the
		// error, then whether a second Open returned the cached error; or
		// "ok".
		s, err := Open(Config{})
		var nse *NotSupportedError
		switch {
		case err == nil:
			fmt.Println("ok")
			s.Close()
		case errors.As(err, &nse):
			_, again := Open(Config{})
			fmt.Printf("%d %v\ncached %v\n", int(nse.Reason), err, again == err)
		default:
			fmt.Println("other:", err)
		}
		os.Exit(0)
	default:
		fmt.Fprintln(os.Stderr, "unknown helper", os.Getenv(helperEnv))
		os.Exit(2)
	}
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: loading and attaching tracing programs needs CAP_BPF and CAP_PERFMON")
	}
}

// fdsOfKind counts this process's descriptors whose link reads as one of
// kinds ("anon_inode:bpf-prog").
func fdsOfKind(t testing.TB, kinds ...string) int {
	t.Helper()
	des, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, de := range des {
		if l, err := os.Readlink("/proc/self/fd/" + de.Name()); err == nil && slices.Contains(kinds, l) {
			n++
		}
	}
	return n
}

func openFDs(t testing.TB) int {
	t.Helper()
	des, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(des)
}

var warmOnce sync.Once

// checkFDs fails the test if it ends with more open descriptors than it
// started with (cilium's tests do the same). The first Open of the process
// caches what lives as long as it (the kernel's BTF, cilium's feature
// probes), so one Open and Close comes first.
func checkFDs(t testing.TB) {
	t.Helper()
	warmOnce.Do(func() {
		if s, err := Open(Config{}); err == nil {
			s.Close()
		}
	})
	before := openFDs(t)
	t.Cleanup(func() {
		if after := openFDs(t); after != before {
			t.Errorf("open file descriptors: %d before, %d after: leaked", before, after)
		}
	})
}

func openSource(t testing.TB, cfg Config) *Source {
	t.Helper()
	start := time.Now()
	s, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open(%+v): %v", cfg, err)
	}
	t.Logf("Open took %v; hooks: %s", time.Since(start).Round(time.Millisecond), s.Hooks())
	t.Cleanup(func() { s.Close() })
	return s
}

// eventSource is what the tests read: a *Source or a *kernel.Conn.
type eventSource interface {
	Read(dst []kernel.Event) ([]kernel.Event, error)
}

// reader runs Read in a goroutine and hands out the events one by one.
type reader struct {
	ch  chan kernel.Event
	err chan error
}

func startReader(src eventSource) *reader {
	r := &reader{ch: make(chan kernel.Event, 1<<16), err: make(chan error, 1)}
	go func() {
		buf := make([]kernel.Event, 0, 64)
		for {
			evs, err := src.Read(buf[:0])
			for _, e := range evs {
				r.ch <- e
			}
			if err != nil {
				r.err <- err
				close(r.ch)
				return
			}
		}
	}()
	return r
}

// until consumes events until done returns true or timeout passes, and
// returns what it consumed.
func (r *reader) until(t testing.TB, timeout time.Duration, done func(e kernel.Event) bool) []kernel.Event {
	t.Helper()
	var seen []kernel.Event
	deadline := time.After(timeout)
	for {
		select {
		case e, ok := <-r.ch:
			if !ok {
				t.Fatalf("reader stopped: %v (after %d events)", <-r.err, len(seen))
			}
			seen = append(seen, e)
			if done(e) {
				return seen
			}
		case <-deadline:
			t.Fatalf("timed out after %v and %d events", timeout, len(seen))
		}
	}
}

// during returns what the reader delivers within d.
func (r *reader) during(d time.Duration) []kernel.Event {
	var seen []kernel.Event
	deadline := time.After(d)
	for {
		select {
		case e, ok := <-r.ch:
			if !ok {
				return seen
			}
			seen = append(seen, e)
		case <-deadline:
			return seen
		}
	}
}

// helpers are the compiled testdata/setid.c: native and, where the
// toolchain can build it, i386 (static).
type helpers struct {
	native, i386 string
	noI386       string // why there is no i386 helper
}

var (
	helpersOnce sync.Once
	helpersDir  string
	helperBins  helpers
	helpersErr  error
)

// buildHelpers compiles testdata/setid.c once per test binary, into a
// directory anyone may enter (the helpers run as other users too).
func buildHelpers(t testing.TB) helpers {
	t.Helper()
	helpersOnce.Do(func() {
		if _, err := exec.LookPath("gcc"); err != nil {
			helpersErr = fmt.Errorf("no gcc to build testdata/setid.c: %w", err)
			return
		}
		dir, err := os.MkdirTemp("", "cgre-bpfevents-")
		if err != nil {
			helpersErr = err
			return
		}
		helpersDir = dir
		if err := os.Chmod(dir, 0o755); err != nil {
			helpersErr = err
			return
		}
		src, _ := filepath.Abs("testdata/setid.c")
		native := filepath.Join(dir, "setid")
		if out, err := exec.Command("gcc", "-O2", "-Wall", "-pthread", "-o", native, src).CombinedOutput(); err != nil {
			helpersErr = fmt.Errorf("gcc setid.c: %w: %s", err, out)
			return
		}
		helperBins.native = native
		i386 := filepath.Join(dir, "setid32")
		var stderr bytes.Buffer
		cmd := exec.Command("gcc", "-m32", "-static", "-O2", "-Wall", "-pthread", "-o", i386, src)
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			helperBins.noI386 = fmt.Sprintf("gcc -m32 -static failed (scripts/test-deps.sh installs gcc-multilib): %v: %s", err, strings.TrimSpace(firstLine(stderr.String())))
		} else {
			helperBins.i386 = i386
		}
	})
	if helpersErr != nil {
		t.Skip(helpersErr)
	}
	return helperBins
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// runSetid runs the helper with ops and waits for it.
func runSetid(t testing.TB, bin string, ops ...string) int32 {
	t.Helper()
	cmd := exec.Command(bin, ops...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v: %s", filepath.Base(bin), strings.Join(ops, " "), err, stderr.String())
	}
	return int32(cmd.Process.Pid)
}
