package bpfevents

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGeneratedObjectIsCurrent compiles events.bpf.c again, as `make
// generate` does, into a temporary directory, and checks that the committed
// object and Go file are what the sources compile to, byte for byte. It
// needs the clang the object was made with (testdata/clang-version: Debian
// 12's clang 14) and skips, saying so, without it: scripts/test-deps.sh
// installs it, so CI checks.
func TestGeneratedObjectIsCurrent(t *testing.T) {
	want, err := os.ReadFile("testdata/clang-version")
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"clang", "llvm-strip", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (scripts/test-deps.sh installs clang and llvm): the committed BPF object cannot be checked against its sources", tool)
		}
	}
	if _, err := os.Stat("/usr/include/bpf/bpf_helpers.h"); err != nil {
		t.Skip("libbpf-dev's headers are not installed (scripts/test-deps.sh installs them): the committed BPF object cannot be checked against its sources")
	}
	out, err := exec.Command("clang", "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if have := firstLine(string(out)); have != strings.TrimSpace(string(want)) {
		t.Skipf("the object was made with %q, this machine has %q: their output differs, so the check needs the same compiler", strings.TrimSpace(string(want)), have)
	}
	modcache, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.ReadDir(strings.TrimSpace(string(modcache))); err != nil {
		t.Skipf("the Go module cache is not readable here (%v): bpf2go cannot be built", err)
	}
	dir := t.TempDir()
	// The same command as gen.go's, with the output elsewhere.
	cmd := exec.Command("go", "tool", "github.com/cilium/ebpf/cmd/bpf2go", "-output-dir", dir,
		"-cc", "clang", "-strip", "llvm-strip", "-target", "amd64", "bpf", "events.bpf.c",
		"--", "-I/usr/include/x86_64-linux-gnu", "-Wall", "-Werror")
	cmd.Env = append(os.Environ(), "GOPACKAGE=bpfevents")
	if os.Geteuid() != 0 {
		// Another user's build cache (make test-unprivileged runs the
		// test as nobody) is not writable.
		cmd.Env = append(cmd.Env, "GOCACHE="+filepath.Join(dir, "cache"), "GOFLAGS=-modcacherw=false")
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bpf2go: %v\n%s", err, out)
	}
	for _, f := range []string{"bpf_x86_bpfel.o", "bpf_x86_bpfel.go"} {
		committed, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		fresh, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(committed, fresh) {
			t.Errorf("%s is not what events.bpf.c compiles to (%d bytes committed, %d compiled): run make generate and commit the result", f, len(committed), len(fresh))
		}
	}
}
