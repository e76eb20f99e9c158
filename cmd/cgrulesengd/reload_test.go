package main

import (
	"io"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// reloadLog records the reloads a test's reloader ran, each taking delay.
type reloadLog struct {
	mu    sync.Mutex
	whys  []reloadWhy
	delay time.Duration
}

func (l *reloadLog) reload(why reloadWhy) {
	l.mu.Lock()
	l.whys = append(l.whys, why)
	l.mu.Unlock()
	time.Sleep(l.delay)
}

func (l *reloadLog) ran() []reloadWhy {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]reloadWhy(nil), l.whys...)
}

// settle waits until no reload started for quiet, and returns them all.
func (l *reloadLog) settle(quiet time.Duration) []reloadWhy {
	n := -1
	for {
		time.Sleep(quiet)
		got := l.ran()
		if len(got) == n {
			return got
		}
		n = len(got)
	}
}

// TestReloaderCoalesces: requests made while a reload runs, however many,
// give one more reload that asks for all of them; never a queue.
func TestReloaderCoalesces(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var ran []reloadWhy
	started := make(chan struct{}, 10)
	r := newReloader(func(why reloadWhy) {
		mu.Lock()
		ran = append(ran, why)
		mu.Unlock()
		started <- struct{}{}
		<-release
	})
	r.request(bySIGUSR2)
	<-started // the first reload runs
	for i := 0; i < 100; i++ {
		r.request(bySIGHUP)
		r.request(bySIGUSR1)
		r.request(byFiles)
	}
	close(release)
	<-started // the one more
	time.Sleep(50 * time.Millisecond)
	r.stop()
	mu.Lock()
	defer mu.Unlock()
	if len(ran) != 2 || ran[0] != bySIGUSR2 || ran[1] != bySIGHUP|bySIGUSR1|byFiles {
		t.Errorf("reloads %v, want [SIGUSR2 SIGHUP,SIGUSR1,rules files changed]", ran)
	}
	if !ran[1].reopensLog() || !ran[1].logsStats() || ran[1].String() != "SIGHUP,SIGUSR1,rules files changed" {
		t.Errorf("merged request %q: reopens the log %v, logs the counters %v", ran[1], ran[1].reopensLog(), ran[1].logsStats())
	}
}

// TestSignalLoop sends the test process real signals, as an admin's
// scripts do (issue 19: after 200 rounds of USR2, HUP and USR1, the TERM
// that followed was lost in 2 of 13 trials): a burst of reload signals
// while reloads are slow gives at most one reload running and one more,
// and a SIGTERM sent right after a burst stops the loop at once, while a
// reload runs.
func TestSignalLoop(t *testing.T) {
	stops, reloads, unnotify := notifySignals()
	defer unnotify()
	log := logrus.New()
	log.SetOutput(io.Discard)
	d := &daemon{log: log}
	rl := &reloadLog{delay: 100 * time.Millisecond}
	done := make(chan error, 1)
	go func() { done <- d.loop(stops, reloads, nil, nil, rl.reload) }()

	burst := func() {
		for i := 0; i < 200; i++ {
			for _, s := range []syscall.Signal{syscall.SIGUSR2, syscall.SIGHUP, syscall.SIGUSR1} {
				if err := syscall.Kill(os.Getpid(), s); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	burst()
	got := rl.settle(300 * time.Millisecond)
	if len(got) == 0 || len(got) > 2 {
		t.Fatalf("%d reloads for a burst of 600 reload signals, want 1 or 2 (one running and one more): %v", len(got), got)
	}
	var all reloadWhy
	for _, w := range got {
		all |= w
	}
	if all != bySIGUSR2|bySIGHUP|bySIGUSR1 {
		t.Errorf("the reloads asked for %q, want every signal's", all)
	}

	burst()
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("loop: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the loop did not stop within 5 s of SIGTERM")
	}
	if n := len(rl.ran()) - len(got); n > 2 {
		t.Errorf("%d reloads for the second burst, want at most 2", n)
	}
}

// TestLoopEndsWithTheReader: when the kernel reader stops, the loop ends
// with its error.
func TestLoopEndsWithTheReader(t *testing.T) {
	log := logrus.New()
	log.SetOutput(io.Discard)
	d := &daemon{log: log}
	reader := make(chan error, 1)
	reader <- syscall.EIO
	err := d.loop(nil, nil, nil, reader, func(reloadWhy) {})
	if err == nil || err.Error() != "kernel event reader stopped: input/output error" {
		t.Errorf("loop = %v", err)
	}
}
