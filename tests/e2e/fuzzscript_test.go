package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeGo stands in for the go command in TestFuzzScript: "env GOCACHE",
// "list", the fuzzing run of a target (what it does is FAKE_<target>:
// pass, deadline: the coordinator's spurious "context deadline exceeded",
// crash: a real failure that writes its input, written: the deadline
// message after writing an input) and the corpus replay (FAKE_REPLAY: its
// exit status).
const fakeGo = `#!/bin/sh
case $1 in
env) echo "$FAKE_CACHE"; exit 0 ;;
list) echo example.com/m/p; exit 0 ;;
esac
t=$(echo "$*" | sed -n 's/.*-fuzz ^\(Fuzz[A-Za-z]*\)\$.*/\1/p')
if [ -z "$t" ]; then
	echo replayed
	exit "${FAKE_REPLAY:-0}"
fi
eval mode=\${FAKE_$t:-pass}
deadline() {
	printf -- '--- FAIL: %s (1.03s)\n    context deadline exceeded\nFAIL\nexit status 1\nFAIL\texample.com/m/p\t1.1s\n' "$t"
}
case $mode in
pass) printf 'fuzz: elapsed: 1s\nPASS\nok  \texample.com/m/p\t1.1s\n' ;;
deadline) deadline; exit 1 ;;
written)
	mkdir -p p/testdata/fuzz/$t && echo 'go test fuzz v1' >p/testdata/fuzz/$t/0123
	deadline; exit 1 ;;
crash)
	mkdir -p p/testdata/fuzz/$t && echo 'go test fuzz v1' >p/testdata/fuzz/$t/4567
	printf -- '--- FAIL: %s (0.50s)\n    --- FAIL: %s (0.00s)\n        x_test.go:9: boom\n\n    Failing input written to testdata/fuzz/%s/4567\nFAIL\n' "$t" "$t" "$t"
	exit 1 ;;
esac
`

// TestFuzzScript (issue 19, Also): make fuzz (scripts/fuzz.sh) does not
// count the go command's spurious -fuzztime deadline error as a failure
// (golang/go#75804: FuzzDecode of internal/kernel "failed" so, 2 runs in
// 60), but does count a real failure, a deadline error after which an
// input was written, and one whose corpus does not replay clean. The
// script runs on a scratch repository with a fake go command.
func TestFuzzScript(t *testing.T) {
	requireRoot(t)
	src, err := os.ReadFile(filepath.Join(moduleDir, "scripts", "fuzz.sh"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		env  []string
		code int
		want string
	}{
		{"all pass", nil, 0, "fuzz: 0 new inputs kept in all"},
		{"deadline", []string{"FAKE_FuzzA=deadline"}, 0, "fuzz: FuzzA: not a failure: the go command's fuzzing coordinator reported its own -fuzztime deadline"},
		{"deadline, corpus fails", []string{"FAKE_FuzzA=deadline", "FAKE_REPLAY=1"}, 1, "fuzz: FAILED: example.com/m/p.FuzzA"},
		{"deadline after an input was written", []string{"FAKE_FuzzB=written"}, 1, "fuzz: FAILED: example.com/m/p.FuzzB"},
		{"a real failure", []string{"FAKE_FuzzA=crash", "FAKE_FuzzB=deadline"}, 1, "fuzz: FAILED: example.com/m/p.FuzzA ("},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range map[string]string{
				"scripts/fuzz.sh": string(src),
				"p/x_test.go":     "package p\n\nfunc FuzzA(f *testing.F) {}\n\nfunc FuzzB(f *testing.F) {}\n",
				"fakego":          fakeGo,
			} {
				p := filepath.Join(dir, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			git := exec.Command("sh", "-c", "git init -q && git add scripts p")
			git.Dir = dir
			if out, err := git.CombinedOutput(); err != nil {
				t.Fatalf("git: %v\n%s", err, out)
			}
			cmd := exec.Command("sh", filepath.Join(dir, "scripts", "fuzz.sh"))
			cmd.Env = append(os.Environ(), append([]string{"GO=" + filepath.Join(dir, "fakego"), "FAKE_CACHE=" + filepath.Join(dir, "cache"), "FUZZTIME=1s"}, c.env...)...)
			out, err := cmd.CombinedOutput()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != c.code || !strings.Contains(string(out), c.want) {
				t.Errorf("exit %d, want %d with %q; output:\n%s", code, c.code, c.want, out)
			}
			if c.code == 0 && strings.Contains(string(out), "FAILED") {
				t.Errorf("a failure reported:\n%s", out)
			}
		})
	}
}
