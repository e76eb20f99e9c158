package main

import (
	"strings"
	"sync"
	"syscall"
)

// reloadWhy says what asked for a reload; requests merge into a set.
type reloadWhy uint8

const (
	bySIGUSR2 reloadWhy = 1 << iota // reload (and reopen the log file)
	bySIGHUP                        // reopen the log file (and reload)
	bySIGUSR1                       // reload, and log the counters
	byFiles                         // the rules files changed
)

// reloadSignal is what a reload signal asks for.
func reloadSignal(s syscall.Signal) reloadWhy {
	switch s {
	case syscall.SIGUSR2:
		return bySIGUSR2
	case syscall.SIGHUP:
		return bySIGHUP
	case syscall.SIGUSR1:
		return bySIGUSR1
	}
	return 0
}

// reopensLog: a rotated log file is reopened before the reload (SIGHUP and
// SIGUSR2, as logrotate's postrotate sends).
func (w reloadWhy) reopensLog() bool { return w&(bySIGUSR2|bySIGHUP) != 0 }

// logsStats: the counters are logged after the reload (SIGUSR1).
func (w reloadWhy) logsStats() bool { return w&bySIGUSR1 != 0 }

func (w reloadWhy) String() string {
	var out []string
	for i, n := range []string{"SIGUSR2", "SIGHUP", "SIGUSR1", "rules files changed"} {
		if w&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return strings.Join(out, ",")
}

// reloader runs reloads one at a time, on a goroutine of its own, so that
// the daemon's signal loop never waits for one (a reload of 20,000 rules
// takes a second or more, and a SIGTERM must be seen meanwhile). Requests
// made while a reload runs, however many, are merged into one more reload
// that asks for everything they asked for: never a queue.
type reloader struct {
	reload func(reloadWhy)

	mu      sync.Mutex
	pending reloadWhy
	wake    chan struct{} // capacity 1: a request is waiting
	quit    chan struct{}
	done    chan struct{}
}

// newReloader starts a reloader that calls reload for each (merged) request.
func newReloader(reload func(reloadWhy)) *reloader {
	r := &reloader{reload: reload, wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	go r.run()
	return r
}

// request asks for a reload; it never blocks.
func (r *reloader) request(why reloadWhy) {
	r.mu.Lock()
	r.pending |= why
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *reloader) run() {
	defer close(r.done)
	for {
		select {
		case <-r.quit:
			return
		case <-r.wake:
		}
		r.mu.Lock()
		why := r.pending
		r.pending = 0
		r.mu.Unlock()
		if why != 0 {
			r.reload(why)
		}
	}
}

// stop ends the reloader once the reload that runs, if any, is done; the
// requests still waiting are dropped (the daemon is stopping).
func (r *reloader) stop() {
	close(r.quit)
	<-r.done
}
