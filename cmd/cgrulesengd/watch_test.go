package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

// waitRelevant reads the watch's events until one is relevant; false after
// the timeout.
func waitRelevant(rw *rulesWatch, timeout time.Duration) (string, bool) {
	deadline := time.After(timeout)
	for {
		select {
		case ev := <-rw.w.Events:
			if rw.relevant(ev) {
				return ev.Name, true
			}
		case <-rw.w.Errors:
		case <-deadline:
			return "", false
		}
	}
}

// TestRulesWatchSymlinkTargets: editing the target of a rules file or of a
// drop-in that is a symbolic link is seen (issue #13: only re-pointing the
// link was), and so is an edit of a re-pointed link's new target.
func TestRulesWatchSymlinkTargets(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"etc/cgrules.d", "real", "real2", "real3"} {
		must(t, os.MkdirAll(filepath.Join(dir, d), 0o755))
	}
	for _, f := range []string{"real/r.conf", "real2/x.conf", "real3/r.conf", "real/other"} {
		must(t, os.WriteFile(filepath.Join(dir, f), []byte("alice cpu a\n"), 0o644))
	}
	config := filepath.Join(dir, "etc", "cgrules.conf")
	confDir := filepath.Join(dir, "etc", "cgrules.d")
	must(t, os.Symlink("../real/r.conf", config))
	// A chain: the drop-in links to a link in real/, which links to real2.
	must(t, os.Symlink(filepath.Join(dir, "real", "link"), filepath.Join(confDir, "l.conf")))
	must(t, os.Symlink("../real2/x.conf", filepath.Join(dir, "real", "link")))
	rw, err := newRulesWatch(config, confDir)
	if err != nil {
		t.Fatal(err)
	}
	defer rw.Close()

	edit := func(rel string) {
		t.Helper()
		f, err := os.OpenFile(filepath.Join(dir, rel), os.O_WRONLY|os.O_TRUNC, 0)
		must(t, err)
		_, err = f.WriteString("bob cpu b\n")
		must(t, err)
		must(t, f.Close())
	}
	for _, rel := range []string{"real/r.conf", "real2/x.conf"} {
		edit(rel)
		if name, ok := waitRelevant(rw, 3*time.Second); !ok {
			t.Fatalf("editing %s (a link's target) was not seen", rel)
		} else if name != filepath.Join(dir, rel) {
			t.Logf("seen as %s", name)
		}
	}
	if rw.relevant(fsnotify.Event{Name: filepath.Join(dir, "real", "other"), Op: fsnotify.Write}) {
		t.Errorf("another file in a target's directory counts as a rules change")
	}

	// Re-point the main file's link: after the reload (refresh), the new
	// target counts and the old directory is no longer watched for it.
	must(t, os.Remove(config))
	must(t, os.Symlink("../real3/r.conf", config))
	if _, ok := waitRelevant(rw, 3*time.Second); !ok {
		t.Fatal("re-pointing the link was not seen")
	}
	rw.refresh()
	if rw.relevant(fsnotify.Event{Name: filepath.Join(dir, "real", "r.conf"), Op: fsnotify.Write}) {
		t.Errorf("the old target still counts after the link was re-pointed")
	}
	edit("real3/r.conf")
	if _, ok := waitRelevant(rw, 3*time.Second); !ok {
		t.Fatal("editing the re-pointed link's new target was not seen")
	}
}
