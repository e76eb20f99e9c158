package classify

import (
	"sync"
	"time"
)

// retryQueue is the one owner of EINVAL retries: jobs whose move must be
// tried again later (the task was still being created) wait here, ordered
// by when they are due, and one goroutine (run) queues each for the workers
// when its time comes. No goroutine that handles events or classifies tasks
// ever sleeps for a retry. Its size is bounded by the hot table's: a job
// waits here only while its pid is queued in the table, and a pid has at
// most one job.
type retryQueue struct {
	mu    sync.Mutex
	items []retryItem // a binary min-heap on due
	wake  chan struct{}
}

type retryItem struct {
	due time.Time
	j   job
}

func newRetryQueue() *retryQueue {
	return &retryQueue{wake: make(chan struct{}, 1)}
}

// retryDelay is how long the n-th retry (n >= 1) of a job waits: 10 ms,
// 20 ms, ... (with the default 5 retries, 150 ms in all, about what it takes
// a task to leave TASK_NEW on a loaded machine).
func retryDelay(n uint8) time.Duration { return time.Duration(n) * 10 * time.Millisecond }

// add schedules j to be queued at due.
func (q *retryQueue) add(j job, due time.Time) {
	q.mu.Lock()
	q.items = append(q.items, retryItem{due: due, j: j})
	q.up(len(q.items) - 1)
	q.mu.Unlock()
	select { // run recomputes its timer
	case q.wake <- struct{}{}:
	default:
	}
}

// due removes and returns the jobs due at now (appended to dst), and the
// time the next one is due (zero when none waits).
func (q *retryQueue) due(now time.Time, dst []job) ([]job, time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) > 0 && !q.items[0].due.After(now) {
		dst = append(dst, q.items[0].j)
		last := len(q.items) - 1
		q.items[0] = q.items[last]
		q.items = q.items[:last]
		if last > 0 {
			q.down(0)
		}
	}
	if len(q.items) == 0 {
		return dst, time.Time{}
	}
	return dst, q.items[0].due
}

// len is the number of jobs waiting.
func (q *retryQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// run hands each job to push when it is due, until stop is closed. With no
// job waiting it sleeps until one is added (no timer runs).
func (q *retryQueue) run(stop <-chan struct{}, push func(job)) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var ready []job
	for {
		var next time.Time
		ready, next = q.due(time.Now(), ready[:0])
		for _, j := range ready {
			push(j)
		}
		if next.IsZero() {
			timer.Stop()
		} else {
			timer.Reset(max(time.Until(next), 0))
		}
		select {
		case <-stop:
			return
		case <-q.wake:
		case <-timer.C:
		}
	}
}

func (q *retryQueue) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !q.items[i].due.Before(q.items[p].due) {
			return
		}
		q.items[i], q.items[p] = q.items[p], q.items[i]
		i = p
	}
}

func (q *retryQueue) down(i int) {
	n := len(q.items)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && q.items[r].due.Before(q.items[l].due) {
			m = r
		}
		if !q.items[m].due.Before(q.items[i].due) {
			return
		}
		q.items[i], q.items[m] = q.items[m], q.items[i]
		i = m
	}
}
