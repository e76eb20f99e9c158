package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// rulesWatch watches the rules files for changes. inotify watches
// directories (editors save by renaming a new file over the old one) and
// reports names as they are in the watched directory; a rules file that is a
// symbolic link changes when its target is edited, which happens in the
// target's directory under the target's name. So for the main file and each
// drop-in that is a link, the directory of every link on the way and of the
// final target is watched too, and an event on any of those names counts.
// The links are resolved again after every reload, since an edit may have
// re-pointed one.
//
// refresh (on the reloads' goroutine) and relevant (on the goroutine of
// changes) may run at once: mu guards what refresh changes.
type rulesWatch struct {
	w                 *fsnotify.Watcher
	config, configDir string
	base              map[string]bool // directories watched whatever the links say (set once)

	mu      sync.Mutex
	extra   map[string]bool // directories watched for links and their targets
	targets map[string]bool // links and targets on the way from a rules file
}

// newRulesWatch starts watching config's directory, configDir (or its
// parent while it does not exist) and the targets of symbolic links.
func newRulesWatch(config, configDir string) (*rulesWatch, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	rw := &rulesWatch{w: w, config: config, configDir: configDir, base: map[string]bool{}}
	dir := filepath.Dir(config)
	if err := w.Add(dir); err != nil {
		w.Close()
		return nil, fmt.Errorf("watching %s: %w", dir, err)
	}
	rw.base[dir] = true
	if configDir != "" {
		if err := w.Add(configDir); err == nil {
			rw.base[configDir] = true
		} else {
			// The drop-in directory may appear later: watch its parent.
			_ = w.Add(filepath.Dir(configDir))
			rw.base[filepath.Dir(configDir)] = true
		}
	}
	rw.refresh()
	return rw, nil
}

func (rw *rulesWatch) Close() error { return rw.w.Close() }

// refresh resolves the symbolic links of the rules files again and adjusts
// the extra watches to them.
func (rw *rulesWatch) refresh() {
	targets := map[string]bool{}
	for _, p := range linkChain(rw.config) {
		targets[p] = true
	}
	if rw.configDir != "" {
		ents, _ := os.ReadDir(rw.configDir)
		for _, e := range ents {
			if e.Type()&os.ModeSymlink == 0 || !strings.HasSuffix(e.Name(), ".conf") || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			for _, p := range linkChain(filepath.Join(rw.configDir, e.Name())) {
				targets[p] = true
			}
		}
	}
	rw.mu.Lock()
	defer rw.mu.Unlock()
	extra := map[string]bool{}
	for p := range targets {
		if d := filepath.Dir(p); !rw.base[d] {
			extra[d] = true
		}
	}
	for d := range rw.extra {
		if !extra[d] {
			_ = rw.w.Remove(d)
		}
	}
	for d := range extra {
		if !rw.extra[d] {
			// A directory that cannot be watched (gone): the reload that
			// follows the next change elsewhere, or a signal, still works.
			if err := rw.w.Add(d); err != nil {
				delete(extra, d)
			}
		}
	}
	rw.extra, rw.targets = extra, targets
}

// linkChain is p followed by every path its symbolic links lead to, up to
// the final target (which may not exist); just p when it is not a link.
func linkChain(p string) []string {
	chain := []string{filepath.Clean(p)}
	for range 40 { // the kernel's limit on links in a row
		cur := chain[len(chain)-1]
		fi, err := os.Lstat(cur)
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			break
		}
		t, err := os.Readlink(cur)
		if err != nil {
			break
		}
		if !filepath.IsAbs(t) {
			t = filepath.Join(filepath.Dir(cur), t)
		}
		chain = append(chain, filepath.Clean(t))
	}
	return chain
}

// relevant reports whether ev may have changed the rules.
func (rw *rulesWatch) relevant(ev fsnotify.Event) bool {
	rw.mu.Lock()
	target := rw.targets[ev.Name]
	rw.mu.Unlock()
	if ev.Name == rw.config || target {
		return true
	}
	if rw.configDir == "" {
		return false
	}
	if ev.Name == rw.configDir {
		if ev.Has(fsnotify.Create) {
			_ = rw.w.Add(rw.configDir)
		}
		return true
	}
	return filepath.Dir(ev.Name) == rw.configDir && strings.HasSuffix(ev.Name, ".conf")
}

// changes watches on a goroutine of its own until the watch is closed, and
// sends on the channel it returns once the rules files have changed and
// then stayed unchanged for settle (editors write in several steps); a
// change while one is waiting to be read adds nothing. Errors of the watch
// go to warn.
func (rw *rulesWatch) changes(settle time.Duration, warn func(format string, args ...any)) <-chan struct{} {
	out := make(chan struct{}, 1)
	go func() {
		timer := time.NewTimer(settle)
		timer.Stop()
		defer timer.Stop()
		events, errs := rw.w.Events, rw.w.Errors
		for events != nil || errs != nil {
			select {
			case ev, ok := <-events:
				if !ok {
					events = nil
				} else if rw.relevant(ev) {
					timer.Reset(settle)
				}
			case err, ok := <-errs:
				if !ok {
					errs = nil
				} else {
					warn("watching rules files: %v", err)
				}
			case <-timer.C:
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}()
	return out
}
