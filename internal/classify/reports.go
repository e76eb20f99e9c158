package classify

import (
	"sync"
	"sync/atomic"
	"time"
)

// reportLimiter decides when a problem that recurs under one key (a missing
// destination; a move of one process that fails) is logged: the first time,
// then at most once per interval while it lasts, with the number of times it
// was not logged in between. forget ends an episode (the destination was seen
// to exist: its next absence is reported at once); reset ends them all (a
// reload). It is safe for concurrent use: the workers and the rescan share it.
type reportLimiter[K comparable] struct {
	interval time.Duration
	max      int // bound on the keys remembered

	mu   sync.Mutex
	seen map[K]*episode
	n    atomic.Int64 // len(seen), so that forget costs nothing when empty
}

type episode struct {
	last       time.Time // when it was last logged
	suppressed int       // occurrences since then, not logged
}

func newReportLimiter[K comparable](interval time.Duration, max int) *reportLimiter[K] {
	return &reportLimiter[K]{interval: interval, max: max, seen: make(map[K]*episode)}
}

// allow reports whether an occurrence of k at now is to be logged, and if so
// how many were not logged since the last report.
func (r *reportLimiter[K]) allow(k K, now time.Time) (suppressed int, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ep, found := r.seen[k]; found {
		if now.Sub(ep.last) < r.interval {
			ep.suppressed++
			return 0, false
		}
		n := ep.suppressed
		ep.last, ep.suppressed = now, 0
		return n, true
	}
	if len(r.seen) >= r.max {
		// Keep the bound: episodes whose interval has passed would be
		// logged again anyway; if none has, start over (the cost is a
		// few repeated lines, never a lost first report).
		for key, ep := range r.seen {
			if now.Sub(ep.last) >= r.interval {
				delete(r.seen, key)
			}
		}
		if len(r.seen) >= r.max {
			clear(r.seen)
		}
	}
	r.seen[k] = &episode{last: now}
	r.n.Store(int64(len(r.seen)))
	return 0, true
}

// forget ends k's episode.
func (r *reportLimiter[K]) forget(k K) {
	if r.n.Load() == 0 {
		return
	}
	r.mu.Lock()
	delete(r.seen, k)
	r.n.Store(int64(len(r.seen)))
	r.mu.Unlock()
}

// reset ends every episode.
func (r *reportLimiter[K]) reset() {
	r.mu.Lock()
	clear(r.seen)
	r.n.Store(0)
	r.mu.Unlock()
}
