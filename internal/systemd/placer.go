package systemd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cgrulesengd/cgrulesengd/internal/unitname"
)

// ScopeName is the delegated scope that holds the tasks of user uid placed
// into slice: "cgrulesengd-<slice>-<uid>.scope" (the slice's name with
// its escapes, so that it stays a valid unit name); a slice name too long
// for that is replaced by a digest of it.
func ScopeName(slice string, uid uint32) string {
	stem := strings.TrimSuffix(slice, ".slice")
	name := "cgrulesengd-" + stem + "-" + strconv.FormatUint(uint64(uid), 10) + ".scope"
	if len(name) <= unitname.Max {
		return name
	}
	sum := sha256.Sum256([]byte(slice))
	return "cgrulesengd-" + hex.EncodeToString(sum[:12]) + "-" + strconv.FormatUint(uint64(uid), 10) + ".scope"
}

// Placement asks for tasks to be placed into a slice.
type Placement struct {
	// PIDs are the daemon's pids: the task, and children it forked
	// before its move (the fork race), which must land in the same
	// unit.
	PIDs []int
	// Slice is the slice unit ("batch-alice.slice"; see
	// unitname.CheckSlice and SliceFromPath).
	Slice string
	// UID is the user the tasks run as: one scope per (slice, user).
	UID uint32
	// Tag is the caller's, handed back in the Outcome.
	Tag any
}

// Outcome is a finished placement, handed to PlacerConfig.Done.
type Outcome struct {
	Placement
	Unit string    // the scope the tasks are in (when Err is nil)
	Done time.Time // when the manager reported the move (see Result.Done)
	// Latency is from Submit to Done: queueing, retries and the calls.
	Latency  time.Duration
	Attempts int   // calls made for it, retries included
	Batch    int   // placements joined in the call that placed it (1: alone)
	Err      error // nil, or an *Error of one of the Err* kinds
}

// PlacerConfig configures a Placer.
type PlacerConfig struct {
	Client *Client
	// Workers is the bound on calls in flight (default 4).
	Workers int
	// Queue bounds the placements accepted and not yet finished,
	// retries included (default 4096); Submit refuses beyond it.
	Queue int
	// Batch bounds the placements joined in one call (default 64).
	Batch int
	// Retries is how many times a placement is tried again while the
	// manager is unreachable (default 5), after 50 ms, 100 ms, ... 1.6 s.
	Retries int
	// Backoff is the first retry's delay (default 50 ms), doubled each
	// time.
	Backoff time.Duration
	// Done receives every outcome, on a worker goroutine: it must not
	// block for long.
	Done func(Outcome)
	// Reachable, if set, is called (on a goroutine of the placer's) once
	// the manager answers again after placements were given up as
	// unreachable (Outcome.Err wrapping ErrUnreachable): the caller
	// repairs them, as after lost events, with a rescan. While such
	// placements are outstanding the placer probes the manager every
	// ProbeInterval.
	Reachable func()
	// ProbeInterval is the probe's period (default 2 s).
	ProbeInterval time.Duration
}

// PlacerStats are the placer's counters.
type PlacerStats struct {
	Submitted   uint64 // placements accepted
	Refused     uint64 // placements refused: queue full (ErrBusy) or closed
	Placed      uint64 // placements done (tasks in their scope)
	Started     uint64 // scopes started (StartTransientUnit)
	Attached    uint64 // calls into an existing scope (AttachProcessesToUnit)
	Batched     uint64 // placements that joined another's call (the fork race's children, bursts)
	Retries     uint64 // calls retried while the manager was unreachable
	Unreachable uint64 // placements given up: the manager stayed unreachable
	Gone        uint64 // placements whose every task exited first
	Outside     uint64 // placements refused: a task outside the manager's pid namespace
	Failed      uint64 // placements failed for another reason
	Closed      uint64 // placements ended by Close
	Calls       uint64 // D-Bus calls made
	CallErrors  uint64 // D-Bus calls that failed
	Reconnects  uint64 // connections made after the first
	Repairs     uint64 // times Reachable was called
	InFlight    int64  // calls in progress now
	Pending     int64  // placements accepted and not finished
	// CallLatency is the duration of each D-Bus call (a new scope's
	// includes its start job); PlaceLatency from Submit to Done of each
	// placement that succeeded.
	CallLatency, PlaceLatency Histogram
}

// Placer places tasks through a Client asynchronously: Submit never
// blocks, at most Workers calls are in flight, and placements that meet
// an unreachable manager are retried with a growing delay, a bounded
// number of times, without holding a worker meanwhile.
//
// Granularity (measured, see docs/performance.md): one delegated scope per
// (slice, user). The first task of a user in a slice starts the scope
// (StartTransientUnit, Delegate=yes); later tasks join it
// (AttachProcessesToUnit, one call, ~0.35 ms). The manager removes the
// scope when it empties; the next placement starts it again.
//
// Batching: placements wait per scope, and one call serves every
// placement of that scope waiting when it starts (Batch at most), so that
// the children a task forked before its move, submitted while the task's
// own call is in flight, join its scope together in the next call. Calls
// for one scope are never in flight at once; different scopes are placed
// in parallel.
type Placer struct {
	cfg     PlacerConfig
	queue   chan string // scopes with placements waiting (one token each)
	stop    chan struct{}
	wg      sync.WaitGroup
	closing atomic.Bool
	// waiting holds, per scope, the placements not yet taken by a
	// worker; a scope is in it while its token is queued or held.
	waitMu  sync.Mutex
	waiting map[string][]*job
	drained bool // Close has finished what waited: enqueue finishes too
	// timers holds the placements waiting for a retry, so that Close can
	// finish them at once.
	timersMu sync.Mutex
	timers   map[*job]*time.Timer
	// submitMu orders Submit's send before Close's drain.
	submitMu sync.RWMutex

	scopesMu sync.Mutex
	scopes   map[string]struct{} // scopes believed to exist (started or seen)

	// lost counts placements given up as unreachable since the manager
	// last answered; the prober runs while it is not zero.
	lost    atomic.Int64
	probing atomic.Bool

	submitted, refused, placed, started, attached, batched, retries atomic.Uint64
	unreachable, gone, outside, failed, closed, calls, callErrors   atomic.Uint64
	repairs                                                         atomic.Uint64
	inFlight, pending                                               atomic.Int64
	callLat, placeLat                                               histogram
}

type job struct {
	Placement
	attempts  int
	retries   int
	submitted time.Time
}

// maxScopes bounds the memory of scopes believed to exist; past it the
// memory is cleared (a forgotten scope costs one failed start, then an
// attach).
const maxScopes = 65536

// NewPlacer starts a placer's workers.
func NewPlacer(cfg PlacerConfig) *Placer {
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 4096
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 64
	}
	if cfg.Retries < 0 {
		cfg.Retries = 0
	} else if cfg.Retries == 0 {
		cfg.Retries = 5
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 50 * time.Millisecond
	}
	if cfg.ProbeInterval <= 0 {
		cfg.ProbeInterval = 2 * time.Second
	}
	p := &Placer{
		cfg:     cfg,
		queue:   make(chan string, cfg.Queue),
		stop:    make(chan struct{}),
		waiting: make(map[string][]*job),
		scopes:  make(map[string]struct{}),
		timers:  make(map[*job]*time.Timer),
	}
	for i := 0; i < cfg.Workers; i++ {
		p.wg.Add(1)
		go p.worker()
	}
	return p
}

// Submit hands a placement to the placer. It never blocks: a full queue
// is ErrBusy (counted), a closed placer ErrClosed, a malformed placement
// ErrInvalid.
func (p *Placer) Submit(pl Placement) error {
	if len(pl.PIDs) == 0 {
		return &Error{Op: "place", Unit: pl.Slice, Kind: ErrInvalid, Err: errors.New("no pid")}
	}
	if err := unitname.CheckSlice(pl.Slice); err != nil {
		return &Error{Op: "place", Unit: pl.Slice, PID: pl.PIDs[0], Kind: ErrInvalid, Err: err}
	}
	p.submitMu.RLock()
	defer p.submitMu.RUnlock()
	if p.closing.Load() {
		p.refused.Add(1)
		return &Error{Op: "place", Unit: pl.Slice, PID: pl.PIDs[0], Kind: ErrClosed}
	}
	if p.pending.Add(1) > int64(p.cfg.Queue) {
		p.pending.Add(-1)
		p.refused.Add(1)
		return &Error{Op: "place", Unit: pl.Slice, PID: pl.PIDs[0], Kind: ErrBusy}
	}
	p.submitted.Add(1)
	p.enqueue(&job{Placement: pl, submitted: time.Now()})
	return nil
}

// enqueue adds j to its scope's waiting placements, and queues the scope's
// token unless it is queued or held already. Never blocks: there are never
// more tokens than pending placements, which the channel holds.
func (p *Placer) enqueue(j *job) {
	scope := ScopeName(j.Slice, j.UID)
	p.waitMu.Lock()
	if p.drained { // a retry's timer that fired as Close ran
		p.waitMu.Unlock()
		p.finish(j, Result{}, &Error{Op: "place", Unit: j.Slice, PID: j.PIDs[0], Kind: ErrClosed}, 1)
		return
	}
	defer p.waitMu.Unlock()
	js, busy := p.waiting[scope]
	p.waiting[scope] = append(js, j)
	if !busy {
		p.queue <- scope
	}
}

func (p *Placer) worker() {
	defer p.wg.Done()
	for {
		select {
		case <-p.stop:
			return
		case scope := <-p.queue:
			p.waitMu.Lock()
			js := p.waiting[scope]
			n := min(len(js), p.cfg.Batch)
			take := slices.Clone(js[:n])
			p.waiting[scope] = js[n:]
			p.waitMu.Unlock()
			p.run(scope, take)
			p.waitMu.Lock()
			if len(p.waiting[scope]) > 0 {
				p.queue <- scope
			} else {
				delete(p.waiting, scope)
			}
			p.waitMu.Unlock()
		}
	}
}

// run makes one attempt at a batch of placements of one scope (one call,
// or a few when a start and an attach race, or tasks exited) and finishes
// each, or schedules its retry.
func (p *Placer) run(scope string, js []*job) {
	var pids []int
	for _, j := range js {
		pids = append(pids, j.PIDs...)
	}
	res, attempts, err := p.place(scope, js[0].Slice, js[0].UID, pids)
	if err != nil && errors.Is(err, ErrTaskGone) && len(pids) > 1 {
		// "Process with ID N does not exist" fails the whole call, and N
		// is the manager's pid: the placements of a batch are made again
		// one by one (a middle process of a double fork often exits
		// first); the tasks of one placement, with those still alive.
		if len(js) > 1 {
			for _, j := range js {
				j.attempts += attempts
				p.run(scope, []*job{j})
			}
			return
		}
		if left := p.alive(pids); len(left) > 0 && len(left) < len(pids) {
			js[0].PIDs = left
			js[0].attempts += attempts
			res, attempts, err = p.place(scope, js[0].Slice, js[0].UID, left)
		}
	}
	for _, j := range js {
		j.attempts += attempts
		if err != nil && errors.Is(err, ErrUnreachable) && j.retries < p.cfg.Retries && !p.closing.Load() {
			p.retryLater(j, err)
			continue
		}
		p.finish(j, res, err, len(js))
	}
}

// retryLater queues j again after its backoff, without holding a worker.
func (p *Placer) retryLater(j *job, err error) {
	delay := p.cfg.Backoff << j.retries
	j.retries++
	p.retries.Add(1)
	p.timersMu.Lock()
	defer p.timersMu.Unlock()
	if p.closing.Load() {
		p.finish(j, Result{}, &Error{Op: "place", Unit: j.Slice, PID: j.PIDs[0], Kind: ErrClosed, Err: err}, 1)
		return
	}
	p.timers[j] = time.AfterFunc(delay, func() {
		p.timersMu.Lock()
		_, mine := p.timers[j]
		delete(p.timers, j)
		p.timersMu.Unlock()
		if mine { // else Close finished it
			p.enqueue(j) // room is reserved by pending
		}
	})
}

// alive returns the pids that still run (not gone, not zombies).
func (p *Placer) alive(pids []int) []int {
	var out []int
	for _, pid := range pids {
		stat, err := os.ReadFile(p.cfg.Client.cfg.Proc + "/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue
		}
		if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
			continue
		}
		out = append(out, pid)
	}
	return out
}

func (p *Placer) finish(j *job, res Result, err error, batch int) {
	o := Outcome{Placement: j.Placement, Unit: res.Unit, Done: res.Done, Attempts: j.attempts, Batch: batch, Err: err}
	switch {
	case err == nil:
		p.placed.Add(1)
		if batch > 1 {
			p.batched.Add(1)
		}
		o.Latency = res.Done.Sub(j.submitted)
		p.placeLat.observe(o.Latency)
		if p.lost.Load() > 0 {
			p.reachable()
		}
	case errors.Is(err, ErrUnreachable):
		p.unreachable.Add(1)
		if p.lost.Add(1) == 1 {
			p.startProbe()
		}
	case errors.Is(err, ErrTaskGone):
		p.gone.Add(1)
	case errors.Is(err, ErrOutsideNamespace):
		p.outside.Add(1)
	case errors.Is(err, ErrClosed):
		p.closed.Add(1)
	default:
		p.failed.Add(1)
	}
	p.pending.Add(-1)
	if p.cfg.Done != nil {
		p.cfg.Done(o)
	}
}

// reachable reports, once, that the manager answers again after
// placements were given up.
func (p *Placer) reachable() {
	if p.lost.Swap(0) == 0 || p.cfg.Reachable == nil || p.closing.Load() {
		return
	}
	p.repairs.Add(1)
	go p.cfg.Reachable()
}

// startProbe probes the manager while placements given up as unreachable
// wait for a repair, in case no other placement comes to find it back.
func (p *Placer) startProbe() {
	if !p.probing.CompareAndSwap(false, true) {
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer p.probing.Store(false)
		t := time.NewTicker(p.cfg.ProbeInterval)
		defer t.Stop()
		for p.lost.Load() > 0 {
			select {
			case <-p.stop:
				return
			case <-t.C:
			}
			if _, err := p.cfg.Client.Namespace(); err == nil {
				p.reachable()
			}
		}
	}()
}

// place joins the user's scope in the slice, or starts it: one call, or a
// few when two starts race, a scope is being removed, or the manager
// returns. It returns the calls made.
func (p *Placer) place(scope, slice string, uid uint32, pids []int) (Result, int, error) {
	ctx := context.Background()
	calls := 0
	// A task the manager cannot name (outside its pid namespace, or gone)
	// costs no call.
	err := p.cfg.Client.Name(ctx, pids)
	if err != nil && !errors.Is(err, ErrUnreachable) {
		return Result{}, 0, err
	}
	for round := 0; round < 4; round++ {
		if round > 0 {
			time.Sleep(time.Duration(round) * 5 * time.Millisecond)
		}
		if p.known(scope) {
			var res Result
			calls++
			res, err = p.call(func() (Result, error) { return p.cfg.Client.Attach(ctx, scope, "", pids) })
			if err == nil {
				p.attached.Add(1)
				return res, calls, nil
			}
			if !errors.Is(err, ErrNoUnit) {
				return Result{}, calls, err
			}
			p.forget(scope)
		}
		var res Result
		calls++
		res, err = p.call(func() (Result, error) {
			return p.cfg.Client.StartScope(ctx, scope, pids, ScopeOptions{
				Slice: slice, Delegate: true,
				Description: fmt.Sprintf("Tasks of uid %d placed by cgrulesengd", uid),
			})
		})
		if err == nil {
			p.started.Add(1)
			p.remember(scope)
			return res, calls, nil
		}
		if !errors.Is(err, ErrUnitExists) {
			return Result{}, calls, err
		}
		p.remember(scope)
	}
	return Result{}, calls, err
}

func (p *Placer) call(f func() (Result, error)) (Result, error) {
	p.calls.Add(1)
	p.inFlight.Add(1)
	start := time.Now()
	res, err := f()
	p.callLat.observe(time.Since(start))
	p.inFlight.Add(-1)
	if err != nil {
		p.callErrors.Add(1)
	}
	return res, err
}

func (p *Placer) known(scope string) bool {
	p.scopesMu.Lock()
	defer p.scopesMu.Unlock()
	_, ok := p.scopes[scope]
	return ok
}

func (p *Placer) remember(scope string) {
	p.scopesMu.Lock()
	defer p.scopesMu.Unlock()
	if len(p.scopes) >= maxScopes {
		clear(p.scopes)
	}
	p.scopes[scope] = struct{}{}
}

func (p *Placer) forget(scope string) {
	p.scopesMu.Lock()
	defer p.scopesMu.Unlock()
	delete(p.scopes, scope)
}

// Stats returns the counters.
func (p *Placer) Stats() PlacerStats {
	return PlacerStats{
		Submitted: p.submitted.Load(), Refused: p.refused.Load(), Placed: p.placed.Load(),
		Started: p.started.Load(), Attached: p.attached.Load(), Batched: p.batched.Load(),
		Retries: p.retries.Load(), Unreachable: p.unreachable.Load(), Gone: p.gone.Load(),
		Outside: p.outside.Load(), Failed: p.failed.Load(), Closed: p.closed.Load(),
		Calls: p.calls.Load(), CallErrors: p.callErrors.Load(), Reconnects: p.cfg.Client.Reconnects(),
		Repairs: p.repairs.Load(), InFlight: p.inFlight.Load(), Pending: p.pending.Load(),
		CallLatency: p.callLat.snapshot(), PlaceLatency: p.placeLat.snapshot(),
	}
}

// Close stops taking placements, lets the calls in progress end, and
// finishes the rest with ErrClosed. It does not close the Client.
func (p *Placer) Close() {
	p.submitMu.Lock()
	already := p.closing.Swap(true)
	p.submitMu.Unlock()
	if already {
		return
	}
	close(p.stop)
	p.wg.Wait()
	p.timersMu.Lock()
	for j, tm := range p.timers {
		tm.Stop()
		delete(p.timers, j)
		p.finish(j, Result{}, &Error{Op: "place", Unit: j.Slice, PID: j.PIDs[0], Kind: ErrClosed}, 1)
	}
	p.timersMu.Unlock()
	p.waitMu.Lock()
	left := p.waiting
	p.waiting = make(map[string][]*job)
	p.drained = true
	p.waitMu.Unlock()
	for _, js := range left {
		for _, j := range js {
			p.finish(j, Result{}, &Error{Op: "place", Unit: j.Slice, PID: j.PIDs[0], Kind: ErrClosed}, 1)
		}
	}
}
