package main

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sdd "github.com/coreos/go-systemd/v22/daemon"

	"github.com/cgrulesengd/cgrulesengd/internal/classify"
	"github.com/cgrulesengd/cgrulesengd/internal/kernel"
)

// statusInterval is how often the STATUS= line is refreshed while the
// daemon runs under a service manager.
const statusInterval = 10 * time.Second

// underServiceManager reports whether a service manager waits for our
// notifications (systemd's Type=notify sets NOTIFY_SOCKET). The daemon then
// stays in the foreground: a detached copy would leave the manager watching
// a main process that exits before it is ready.
func underServiceManager() bool { return os.Getenv("NOTIFY_SOCKET") != "" }

// sdNotifier sends sd_notify(3) messages to the socket in NOTIFY_SOCKET:
// READY=1 once the daemon is ready (subscribed, start-up scan done: the
// moment the pidfile is written), RELOADING=1 with MONOTONIC_USEC and then
// READY=1 around every reload, STOPPING=1 on shutdown, and a STATUS= line
// with the rules loaded, tasks moved and overflows repaired. Without
// NOTIFY_SOCKET every method does nothing. Its methods are called from the
// daemon's main goroutine; the status refresher runs on its own.
type sdNotifier struct {
	on     bool
	rules  atomic.Int64
	engine *classify.Engine
	stop   chan struct{}
	wg     sync.WaitGroup
	// placed counts the tasks placed through systemd, when slice
	// destinations are (set before ready).
	placed func() uint64
	warn   func(format string, args ...any)
}

func newSDNotifier(warn func(format string, args ...any)) *sdNotifier {
	return &sdNotifier{on: underServiceManager(), warn: warn}
}

func (s *sdNotifier) send(state string) {
	if s == nil || !s.on {
		return
	}
	if _, err := sdd.SdNotify(false, state); err != nil && s.warn != nil {
		s.warn("notifying the service manager (%s): %v", strings.SplitN(state, "\n", 2)[0], err)
	}
}

// status is the STATUS= text for the current counters.
func (s *sdNotifier) status(prefix string) string {
	st := s.engine.Stats()
	placed := ""
	if s.placed != nil {
		placed = fmt.Sprintf(", %d placed through systemd", s.placed())
	}
	return fmt.Sprintf("STATUS=%s%d rules loaded, %d tasks moved%s, %d overflows repaired (%d rescans)",
		prefix, s.rules.Load(), st.Moves, placed, st.Overflows+st.QueueFull, st.Rescans)
}

// ready reports readiness and starts refreshing the status line.
func (s *sdNotifier) ready(e *classify.Engine, rules int) {
	if s == nil || !s.on {
		return
	}
	s.engine = e
	s.rules.Store(int64(rules))
	s.send("READY=1\n" + s.status(""))
	s.stop = make(chan struct{})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(statusInterval)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				s.send(s.status(""))
			}
		}
	}()
}

// reloading is sent before a reload; MONOTONIC_USEC lets the manager match
// it with the reload it asked for (systemd 253+).
func (s *sdNotifier) reloading() {
	s.send(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", kernel.Now()/1000))
}

// reloaded is sent after a reload, failed or not: either way the daemon
// runs with a complete rule list again.
func (s *sdNotifier) reloaded(rules int, err error) {
	if s == nil || !s.on || s.engine == nil {
		return
	}
	s.rules.Store(int64(rules))
	prefix := ""
	if err != nil {
		prefix = "reload failed, previous rules kept: "
	}
	s.send("READY=1\n" + s.status(prefix))
}

// stopping is sent when the daemon begins to shut down.
func (s *sdNotifier) stopping() {
	if s == nil || !s.on {
		return
	}
	if s.stop != nil {
		close(s.stop)
		s.wg.Wait()
		s.stop = nil
	}
	s.send("STOPPING=1\nSTATUS=stopping")
}

// failed tells the manager why the daemon could not start or stopped.
func (s *sdNotifier) failed(err error) {
	s.send("STATUS=failed: " + strings.ReplaceAll(err.Error(), "\n", "; "))
}
