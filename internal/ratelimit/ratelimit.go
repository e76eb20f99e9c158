// Package ratelimit bounds how often the daemon logs a recurring report (a
// refused client, an overflow, a destination that stays missing, a task
// that cannot be moved): Burst reports per Window get through, the rest are
// counted, and the next report that gets through says how many were left
// out (in the log field NotLogged), so a flood costs a few log lines and
// nothing is hidden.
//
// A Limiter limits one kind of report; a Keyed limits each key (a
// destination, a process and destination) on its own and remembers a
// bounded number of keys.
//
// It needs no privilege. Limiter and Keyed are safe for concurrent use;
// their zero values let one report through per second (per key).
package ratelimit

import (
	"sync"
	"sync/atomic"
	"time"
)

// NotLogged is the log field that carries how many reports were left out
// since the last one that got through.
const NotLogged = "not_logged"

// window is the state of one limited report: when its window started, how
// many reports got through in it, and how many were left out since the
// last one that did.
type window struct {
	start      time.Time
	n          int
	suppressed int
}

// allow lets a report made at now through when fewer than burst did in the
// current window (which starts again once it is older than length).
func (w *window) allow(now time.Time, burst int, length time.Duration) (suppressed int, ok bool) {
	if burst <= 0 {
		burst = 1
	}
	if length <= 0 {
		length = time.Second
	}
	if w.start.IsZero() || now.Sub(w.start) >= length {
		w.start, w.n = now, 0
	}
	if w.n >= burst {
		w.suppressed++
		return 0, false
	}
	w.n++
	n := w.suppressed
	w.suppressed = 0
	return n, true
}

// Limiter lets Burst reports through per Window (defaults: 1 per second).
type Limiter struct {
	Burst  int
	Window time.Duration

	mu sync.Mutex
	w  window
}

// Allow reports whether a report made at now gets through and, if it does,
// how many were suppressed since the last one that did.
func (r *Limiter) Allow(now time.Time) (suppressed int, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.w.allow(now, r.Burst, r.Window)
}

// Keyed is a Limiter per key: Burst reports of each key per Window
// (defaults: 1 per second). It remembers at most Max keys (default 4096):
// when full, it forgets the keys whose window has passed (their next report
// would get through anyway), and if none has, all of them (the cost is a
// few repeated lines, never a lost first report).
type Keyed[K comparable] struct {
	Burst  int
	Window time.Duration
	Max    int

	mu   sync.Mutex
	keys map[K]*window
	n    atomic.Int64 // len(keys), so that Forget costs nothing when none is kept
}

// Allow is Limiter.Allow for the reports of k.
func (r *Keyed[K]) Allow(k K, now time.Time) (suppressed int, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w, found := r.keys[k]
	if !found {
		r.makeRoom(now)
		w = &window{}
		r.keys[k] = w
		r.n.Store(int64(len(r.keys)))
	}
	return w.allow(now, r.Burst, r.Window)
}

// makeRoom keeps the bound before a new key is added (r.mu is held).
func (r *Keyed[K]) makeRoom(now time.Time) {
	if r.keys == nil {
		r.keys = make(map[K]*window)
	}
	max := r.Max
	if max <= 0 {
		max = 4096
	}
	if len(r.keys) < max {
		return
	}
	length := r.Window
	if length <= 0 {
		length = time.Second
	}
	for k, w := range r.keys {
		if now.Sub(w.start) >= length {
			delete(r.keys, k)
		}
	}
	if len(r.keys) >= max {
		clear(r.keys)
	}
}

// Forget ends k's episode: its next report gets through at once (the
// problem was seen to be over, say a missing destination exists again).
func (r *Keyed[K]) Forget(k K) {
	if r.n.Load() == 0 {
		return
	}
	r.mu.Lock()
	delete(r.keys, k)
	r.n.Store(int64(len(r.keys)))
	r.mu.Unlock()
}

// Reset forgets every key (new rules: what is still wrong is said again).
func (r *Keyed[K]) Reset() {
	r.mu.Lock()
	clear(r.keys)
	r.n.Store(0)
	r.mu.Unlock()
}
