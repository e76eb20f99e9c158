package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cgrulesengd/cgrulesengd/rules"
	"github.com/cgrulesengd/cgrulesengd/rules/rulestest"
)

// explainAccounts: accounts for the command tests; no real account is used.
func explainAccounts() rules.Resolver {
	return rulestest.NewStatic(
		[]rules.User{
			{Name: "alice", UID: 1000, GID: 1000},
			{Name: "bob", UID: 1001, GID: 100},
			{Name: "1234", UID: 4321, GID: 100}, // an all-digit name
		},
		[]rules.Group{
			{Name: "alice", GID: 1000},
			{Name: "users", GID: 100},
			{Name: "students", GID: 2000, Members: []string{"alice"}},
		},
	)
}

// fixture writes the main file and drop-ins into a fresh directory and
// returns their paths.
func fixture(t *testing.T, main string, dropins map[string]string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	mainFile := filepath.Join(dir, "cgrules.conf")
	if err := os.WriteFile(mainFile, []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	d := filepath.Join(dir, "cgrules.d")
	if len(dropins) > 0 {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, data := range dropins {
			if err := os.WriteFile(filepath.Join(d, name), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return mainFile, d
}

func cmdOptions() rules.Options {
	return rules.Options{Resolver: explainAccounts(), Controllers: []string{"cpu", "memory", "pids"}}
}

func TestRunCheck(t *testing.T) {
	tests := []struct {
		name       string
		main       string
		dropins    map[string]string
		noMain     bool
		wantCode   int
		wantOut    []string // stdout lines; MAIN and DIR stand for the paths
		wantStderr string
	}{
		{name: "clean", main: "alice cpu a\n", wantCode: 0, wantOut: nil, wantStderr: "cgrulesengd: 1 rule loaded, 0 warnings\n"},
		{name: "warnings only", main: "peter cpu a\nalice bogus,cpu a\n", wantCode: 0,
			wantOut: []string{
				`MAIN:1: warning: user "peter" not found, rule skipped`,
				`MAIN:2: warning: controller "bogus" is not available on this machine, dropped from this target`,
			},
			wantStderr: "cgrulesengd: 1 rule loaded, 2 warnings\n"},
		{name: "errors in main and drop-in", main: "alice cpu\npeter cpu a\n",
			dropins:  map[string]string{"b.conf": "bob cpu a sticky\n", "a.conf": "% cpu a\n"},
			wantCode: 1,
			wantOut: []string{
				`MAIN:1: expected 3 or 4 fields (who[:process] controllers destination [options]), found 2: "alice cpu"`,
				`MAIN:2: warning: user "peter" not found, rule skipped`,
				`DIR/a.conf:1: "%" line with no rule above it in this file: "% cpu a"`,
				`DIR/b.conf:1: unknown option "sticky" (known: ignore, ignore_rt)`,
			},
			wantStderr: "cgrulesengd: rules not loaded: 3 errors, 1 warning\n"},
		// Issue #13: a 10 MB destination passed --check.
		{name: "destination of 10 MB", main: "alice cpu " + strings.Repeat("d", 10<<20) + "\n", wantCode: 1,
			wantOut:    []string{`MAIN:1: destination "` + strings.Repeat("d", 60) + `..." is 10485760 bytes long: name too long (PATH_MAX is 4096)`},
			wantStderr: "cgrulesengd: rules not loaded: 1 error, 0 warnings\n"},
		{name: "component of 300 bytes", main: "alice cpu a/" + strings.Repeat("c", 300) + "\n", wantCode: 1,
			wantOut:    []string{`MAIN:1: destination component "` + strings.Repeat("c", 60) + `..." is 300 bytes long: name too long (NAME_MAX is 255)`},
			wantStderr: "cgrulesengd: rules not loaded: 1 error, 0 warnings\n"},
		{name: "what libcgroup accepts", main: "\uFEFFalice cpu,,memory a ignore,\n", wantCode: 0,
			wantOut: []string{
				`MAIN:1: warning: UTF-8 byte-order mark at the start of the file, skipped`,
				`MAIN:1: warning: empty item in controller list "cpu,,memory" ignored`,
				`MAIN:1: warning: empty item in options "ignore," ignored`,
			},
			wantStderr: "cgrulesengd: 1 rule loaded, 3 warnings\n"},
		{name: "missing main file", noMain: true, wantCode: 1,
			wantOut:    []string{"MAIN: cannot open: no such file or directory"},
			wantStderr: "cgrulesengd: rules not loaded: 1 error, 0 warnings\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mainFile, dir := fixture(t, tc.main, tc.dropins)
			if tc.noMain {
				os.Remove(mainFile)
			}
			var out, errOut bytes.Buffer
			code := runCheck(&out, &errOut, mainFile, dir, cmdOptions(), nil)
			if code != tc.wantCode {
				t.Errorf("exit %d, want %d", code, tc.wantCode)
			}
			want := ""
			for _, l := range tc.wantOut {
				want += strings.NewReplacer("MAIN", mainFile, "DIR", dir).Replace(l) + "\n"
			}
			if out.String() != want {
				t.Errorf("stdout:\n%s\nwant:\n%s", out.String(), want)
			}
			if errOut.String() != tc.wantStderr {
				t.Errorf("stderr %q, want %q", errOut.String(), tc.wantStderr)
			}
		})
	}
}

func TestRunExplain(t *testing.T) {
	const main = `# site rules
alice:/usr/bin/vim  cpu        /editors/%u
@students           cpu,memory "/students/%g/%p"
%                   pids       /students/pids/%P
bob                 *          /users/%u   ignore
%                   memory     /users/mem
*:make              memory     build ignore_rt
1234                cpu        digits
`
	tests := []struct {
		name                 string
		user, group, process string
		wantCode             int
		wantOut              string // MAIN stands for the main file's path
		wantStderr           string // substring
	}{
		{name: "user and process", user: "alice", process: "/usr/bin/vim", wantCode: 0,
			wantOut: "# rule MAIN:2: alice:/usr/bin/vim  cpu        /editors/%u\ncpu\t/editors/alice\n"},
		{name: "group by membership, templates", user: "alice", process: "/bin/bash", wantCode: 0,
			wantOut: "# rule MAIN:3: @students           cpu,memory \"/students/%g/%p\"\n" +
				"# MAIN:4: %P (the pid) left as is\n" +
				"cpu\t/students/alice/bash\nmemory\t/students/alice/bash\npids\t/students/pids/%P\n"},
		{name: "no process: %p kept", user: "1000", wantCode: 0,
			wantOut: "# rule MAIN:3: @students           cpu,memory \"/students/%g/%p\"\n" +
				"# MAIN:3: %p left as is: no --process given\n" +
				"# MAIN:4: %P (the pid) left as is\n" +
				"cpu\t/students/alice/%p\nmemory\t/students/alice/%p\npids\t/students/pids/%P\n"},
		{name: "group given by gid", user: "alice", group: "2000", process: "sh", wantCode: 0,
			wantOut: "# rule MAIN:3: @students           cpu,memory \"/students/%g/%p\"\n" +
				"# MAIN:4: %P (the pid) left as is\n" +
				"cpu\t/students/students/sh\nmemory\t/students/students/sh\npids\t/students/pids/%P\n"},
		{name: "ignore option and star", user: "bob", wantCode: 0,
			wantOut: "# rule MAIN:5: bob                 *          /users/%u   ignore\n" +
				"# option ignore: a task already at or below these destinations stays where it is; elsewhere this rule is skipped (no later rule matches)\n" +
				"cpu\t/users/bob\nmemory\t/users/bob\npids\t/users/bob\nmemory\t/users/mem\n"},
		{name: "ignore_rt names the next match", user: "1234", process: "/usr/bin/make", wantCode: 0,
			wantOut: "# rule MAIN:7: *:make              memory     build ignore_rt\n" +
				"# option ignore_rt: a realtime task already at or below these destinations stays where it is; a realtime task elsewhere skips this rule (next match: MAIN:8: 1234                cpu        digits); other tasks are moved\n" +
				"memory\t/build\n"},
		{name: "all-digit name wins over uid", user: "1234", wantCode: 0,
			wantOut: "# rule MAIN:8: 1234                cpu        digits\ncpu\t/digits\n"},
		{name: "unknown uid with a group", user: "777", group: "users", wantCode: 1,
			wantOut: "# no rule matches uid 777 gid 100 process \"\"\n"},
		{name: "unknown uid without a group", user: "777", wantCode: 2, wantStderr: "uid 777 has no account, so no primary group: give --group"},
		{name: "unknown gid number is allowed", user: "bob", group: "5555", wantCode: 0,
			wantOut: "# rule MAIN:5: bob                 *          /users/%u   ignore\n" +
				"# option ignore: a task already at or below these destinations stays where it is; elsewhere this rule is skipped (no later rule matches)\n" +
				"cpu\t/users/bob\nmemory\t/users/bob\npids\t/users/bob\nmemory\t/users/mem\n"},
		{name: "unknown user name", user: "mallory", wantCode: 2, wantStderr: `unknown user "mallory"`},
		{name: "unknown group name", user: "bob", group: "nogroup", wantCode: 2, wantStderr: `unknown group "nogroup"`},
		{name: "no user", user: "", wantCode: 2, wantStderr: "--explain needs --user"},
	}
	mainFile, dir := fixture(t, main, nil)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := runExplain(&out, &errOut, mainFile, dir, cmdOptions(), nil, "/", tc.user, tc.group, tc.process)
			if code != tc.wantCode {
				t.Errorf("exit %d, want %d (stderr %q)", code, tc.wantCode, errOut.String())
			}
			if want := strings.ReplaceAll(tc.wantOut, "MAIN", mainFile); out.String() != want {
				t.Errorf("stdout:\n%s\nwant:\n%s", out.String(), want)
			}
			if !strings.Contains(errOut.String(), tc.wantStderr) {
				t.Errorf("stderr %q, want it to contain %q", errOut.String(), tc.wantStderr)
			}
		})
	}
}

func TestRunExplainRulesError(t *testing.T) {
	mainFile, dir := fixture(t, "alice cpu a\n", map[string]string{"x.conf": "bob cpu ../up\n"})
	var out, errOut bytes.Buffer
	code := runExplain(&out, &errOut, mainFile, dir, cmdOptions(), nil, "/", "alice", "", "")
	if code != 2 || out.Len() != 0 {
		t.Fatalf("exit %d stdout %q, want 2 and nothing", code, out.String())
	}
	want := filepath.Join(dir, "x.conf") + `:1: destination "../up" has a ".." component`
	if !strings.Contains(errOut.String(), want) {
		t.Errorf("stderr %q does not name the problem %q", errOut.String(), want)
	}
}

func TestRunExplainNoTargets(t *testing.T) {
	mainFile, dir := fixture(t, "alice blkio a\n* cpu b\n", nil)
	var out, errOut bytes.Buffer
	code := runExplain(&out, &errOut, mainFile, dir, cmdOptions(), nil, "/", "alice", "", "")
	if code != 0 || !strings.Contains(out.String(), "# no targets:") {
		t.Errorf("exit %d stdout %q", code, out.String())
	}
	if !strings.Contains(errOut.String(), `warning: controller "blkio" is not available`) {
		t.Errorf("warnings not shown on stderr: %q", errOut.String())
	}
}

// TestExplainCgroupRoot: --explain prints the cgroups below --cgroup-root,
// where the daemon would put the task (issue #13: the root was ignored).
func TestExplainCgroupRoot(t *testing.T) {
	mainFile, dir := fixture(t, "root  cpu  users/%u\n", nil)
	for root, want := range map[string]string{"/demo": "cpu\t/demo/users/root\n", "//demo//": "cpu\t/demo/users/root\n", "/": "cpu\t/users/root\n"} {
		var stdout, stderr bytes.Buffer
		code := realMain([]string{"--explain", "--user", "root", "--cgroup-root", root, "-c", mainFile, "--config-dir", dir, "--proc-root", fakeProcRoot(t)}, &stdout, &stderr)
		if code != 0 {
			t.Fatalf("--cgroup-root %s: exit %d, stderr %q", root, code, stderr.String())
		}
		if got := stdout.String(); !strings.HasSuffix(got, want) {
			t.Errorf("--cgroup-root %s: stdout %q, want it to end with %q", root, got, want)
		}
	}
}
