package classify

import (
	"sync"
	"testing"
	"time"
)

// TestRetryQueueOrder: jobs come out in the order they are due, only once
// due, whatever the order they went in.
func TestRetryQueueOrder(t *testing.T) {
	q := newRetryQueue()
	base := time.Now()
	for i, d := range []int{50, 10, 40, 20, 30, 10} {
		q.add(job{pid: int32(i + 1)}, base.Add(time.Duration(d)*time.Millisecond))
	}
	got, next := q.due(base.Add(5*time.Millisecond), nil)
	if len(got) != 0 || !next.Equal(base.Add(10*time.Millisecond)) {
		t.Fatalf("before anything is due: %v, next %v", got, next.Sub(base))
	}
	got, next = q.due(base.Add(25*time.Millisecond), nil)
	if len(got) != 3 || got[2].pid != 4 || !next.Equal(base.Add(30*time.Millisecond)) {
		t.Fatalf("due at 25 ms: %v (want pids 2 and 6 at 10 ms, then 4), next %v", got, next.Sub(base))
	}
	got, next = q.due(base.Add(time.Second), nil)
	var pids []int32
	for _, j := range got {
		pids = append(pids, j.pid)
	}
	if len(pids) != 3 || pids[0] != 5 || pids[1] != 3 || pids[2] != 1 || !next.IsZero() || q.len() != 0 {
		t.Fatalf("the rest: %v (want 5 3 1), next %v, %d left", pids, next, q.len())
	}
}

// TestRetryQueueRun: run hands each job over when it is due, a job added
// meanwhile with an earlier time first, and stops when told.
func TestRetryQueueRun(t *testing.T) {
	q := newRetryQueue()
	stop := make(chan struct{})
	var mu sync.Mutex
	var got []int32
	at := map[int32]time.Time{}
	done := make(chan struct{})
	go func() {
		q.run(stop, func(j job) {
			mu.Lock()
			got = append(got, j.pid)
			at[j.pid] = time.Now()
			mu.Unlock()
		})
		close(done)
	}()
	start := time.Now()
	q.add(job{pid: 1}, start.Add(60*time.Millisecond))
	q.add(job{pid: 2}, start.Add(20*time.Millisecond)) // earlier: the timer must be reset
	waitFor(t, "both retried", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 2 })
	mu.Lock()
	if got[0] != 2 || got[1] != 1 {
		t.Errorf("order %v, want 2 then 1", got)
	}
	if d := at[2].Sub(start); d < 20*time.Millisecond {
		t.Errorf("job 2 handed over after %v, before it was due", d)
	}
	if d := at[1].Sub(start); d < 60*time.Millisecond {
		t.Errorf("job 1 handed over after %v, before it was due", d)
	}
	mu.Unlock()
	close(stop)
	<-done
}
