// Package ratelimit bounds how often the daemon logs a recurring report (a
// refused client, an overflow): Burst reports per Window get through, the
// rest are counted, and the next report that gets through says how many
// were left out, so a flood costs a few log lines and nothing is hidden.
//
// It needs no privilege. A Limiter is safe for concurrent use; its zero
// value lets one report through per second.
package ratelimit

import (
	"sync"
	"time"
)

// Limiter lets Burst reports through per Window (defaults: 1 per second).
type Limiter struct {
	Burst  int
	Window time.Duration

	mu         sync.Mutex
	start      time.Time
	n          int
	suppressed int
}

// Allow reports whether a report made at now gets through and, if it does,
// how many were suppressed since the last one that did.
func (r *Limiter) Allow(now time.Time) (suppressed int, ok bool) {
	burst, window := r.Burst, r.Window
	if burst <= 0 {
		burst = 1
	}
	if window <= 0 {
		window = time.Second
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.start.IsZero() || now.Sub(r.start) >= window {
		r.start, r.n = now, 0
	}
	if r.n >= burst {
		r.suppressed++
		return 0, false
	}
	r.n++
	n := r.suppressed
	r.suppressed = 0
	return n, true
}
