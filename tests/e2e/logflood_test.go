package e2e

import (
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestExpandErrorFlood (issue 19, item 5): a user chooses what %p becomes.
// A program started through a link with a 15-character (or longer) name
// has that name, cut to 15 bytes, as its short name (comm), and its
// process name is then the first absolute argument whose base name starts
// with it: argv[0], which the user sets. 2,000 execs with an argv[0] whose
// base name is 315 bytes long make "procs/%p" expand beyond NAME_MAX each
// time. Each failure is counted, but logged per rule like the other
// recurring reports: the first at once, then at most once a minute with
// the number left out (before: one error line per exec, 2,000 lines).
func TestExpandErrorFlood(t *testing.T) {
	requireDaemon(t)
	identities(t)
	e := newEnv(t, []string{"cpu"})
	e.writeRules("cgresjo  cpu  procs/%p\n")
	d := e.startDaemon(dopts{})

	dir, err := os.MkdirTemp("", "cgre-e2e-flood-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "abcdefghijklmnopqrstuvwxyz")
	if err := os.Symlink("/bin/sleep", link); err != nil {
		t.Fatal(err)
	}
	argv0 := "/abcdefghijklmno" + strings.Repeat("Z", 300)
	const execs, batch = 2000, 100
	// bash's exec -a sets argv[0]; each program lives 0.3 s, so that the
	// daemon reads it before it is gone.
	script := `i=0; while [ $i -lt ` + strconv.Itoa(execs) + ` ]; do (exec -a "$0" "$1" 0.3) & i=$((i+1)); [ $((i % ` + strconv.Itoa(batch) + `)) = 0 ] && wait; done; wait; echo done`
	p := e.startLines("setpriv", "--reuid="+uidOf(t, "cgresjo"), "--regid="+primaryGID(t, "cgresjo"), "--clear-groups",
		"/bin/bash", "-c", script, argv0, link)
	if l := p.next(t, 120*time.Second); l != "done" {
		t.Fatalf("the exec loop said %q", l)
	}
	time.Sleep(500 * time.Millisecond) // the last classifications
	if code := d.stop(); code != 0 {
		t.Errorf("exit status %d after SIGTERM", code)
	}
	log := d.log()
	lines := regexp.MustCompile(`(?m)^.*cannot expand destination.*$`).FindAllString(log, -1)
	stats, line := statsOf(log)
	t.Logf("%d execs: %d error lines; counters: %s", execs, len(lines), line)
	if len(lines) > 0 {
		t.Logf("first: %.300s", lines[0])
	}
	if len(lines) == 0 {
		t.Fatalf("no \"cannot expand destination\" line at all: the test did not trigger the error")
	}
	if len(lines) > 3 {
		t.Errorf("%d \"cannot expand destination\" lines for %d execs, want at most 3 (once per rule and minute)", len(lines), execs)
	}
	if !strings.Contains(lines[0], `rule="`+e.rules+`:1"`) || !strings.Contains(lines[0], "name too long") {
		t.Errorf("the line does not name the rule and the reason: %s", lines[0])
	}
	if stats["errors"] < execs/2 {
		t.Errorf("errors=%d: the failures are not counted (want most of %d): %s", stats["errors"], execs, line)
	}
}

// primaryGID is user's primary group id.
func primaryGID(t testing.TB, name string) string {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return u.Gid
}
