package systemd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
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
	Unit     string        // the scope the tasks are in (when Err is nil)
	Done     time.Time     // when the manager reported the move (see Result.Done)
	Latency  time.Duration // from the first call to Done
	Attempts int           // calls made, retries included
	Err      error         // nil, or an *Error of one of the Err* kinds
}

// PlacerConfig configures a Placer.
type PlacerConfig struct {
	Client *Client
	// Workers is the bound on calls in flight (default 4).
	Workers int
	// Queue bounds the placements accepted and not yet finished,
	// retries included (default 4096); Submit refuses beyond it.
	Queue int
	// Retries is how many times a placement is tried again while the
	// manager is unreachable (default 5), after 50 ms, 100 ms, ... 1.6 s.
	Retries int
	// Backoff is the first retry's delay (default 50 ms), doubled each
	// time.
	Backoff time.Duration
	// Done receives every outcome, on a worker goroutine: it must not
	// block for long.
	Done func(Outcome)
}

// PlacerStats are the placer's counters.
type PlacerStats struct {
	Submitted   uint64 // placements accepted
	Refused     uint64 // placements refused: queue full (ErrBusy) or closed
	Placed      uint64 // placements done (tasks in their scope)
	Started     uint64 // scopes started (StartTransientUnit)
	Attached    uint64 // placements into an existing scope (AttachProcessesToUnit)
	Retries     uint64 // calls retried while the manager was unreachable
	Unreachable uint64 // placements given up: the manager stayed unreachable
	Gone        uint64 // placements whose every task exited first
	Outside     uint64 // placements refused: a task outside the manager's pid namespace
	Failed      uint64 // placements failed for another reason
	Calls       uint64 // D-Bus calls made
	CallErrors  uint64 // D-Bus calls that failed
	Reconnects  uint64 // connections made after the first
	InFlight    int64  // calls in progress now
	Pending     int64  // placements accepted and not finished
	LatencySum  time.Duration
	LatencyMax  time.Duration
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
type Placer struct {
	cfg     PlacerConfig
	queue   chan *job
	stop    chan struct{}
	wg      sync.WaitGroup
	closing atomic.Bool
	// timers holds the placements waiting for a retry, so that Close can
	// finish them at once.
	timersMu sync.Mutex
	timers   map[*job]*time.Timer
	// submitMu orders Submit's send before Close's drain.
	submitMu sync.RWMutex

	scopesMu sync.Mutex
	scopes   map[string]struct{} // scopes believed to exist (started or seen)

	submitted, refused, placed, started, attached, retries atomic.Uint64
	unreachable, gone, outside, failed, calls, callErrors  atomic.Uint64
	inFlight, pending                                      atomic.Int64
	latSum, latMax                                         atomic.Int64
}

type job struct {
	Placement
	attempts int
	retries  int
	first    time.Time
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
	if cfg.Retries < 0 {
		cfg.Retries = 0
	} else if cfg.Retries == 0 {
		cfg.Retries = 5
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 50 * time.Millisecond
	}
	p := &Placer{
		cfg:    cfg,
		queue:  make(chan *job, cfg.Queue),
		stop:   make(chan struct{}),
		scopes: make(map[string]struct{}),
		timers: make(map[*job]*time.Timer),
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
	// Never blocks: pending (queued, waiting for a retry, or running)
	// never exceeds the channel's capacity.
	p.queue <- &job{Placement: pl}
	return nil
}

func (p *Placer) worker() {
	defer p.wg.Done()
	for {
		select {
		case <-p.stop:
			return
		case j := <-p.queue:
			p.run(j)
		}
	}
}

// run makes one attempt at a placement and either finishes it or
// schedules its retry.
func (p *Placer) run(j *job) {
	if j.first.IsZero() {
		j.first = time.Now()
	}
	res, err := p.place(j)
	if err != nil && errors.Is(err, ErrUnreachable) && j.retries < p.cfg.Retries && !p.closing.Load() {
		delay := p.cfg.Backoff << j.retries
		j.retries++
		p.retries.Add(1)
		p.timersMu.Lock()
		defer p.timersMu.Unlock()
		if p.closing.Load() {
			p.finish(j, Result{}, &Error{Op: "place", Unit: j.Slice, PID: j.PIDs[0], Kind: ErrClosed, Err: err})
			return
		}
		p.timers[j] = time.AfterFunc(delay, func() {
			p.timersMu.Lock()
			_, mine := p.timers[j]
			delete(p.timers, j)
			p.timersMu.Unlock()
			if mine { // else Close finished it
				p.queue <- j // room is reserved by pending
			}
		})
		return
	}
	p.finish(j, res, err)
}

func (p *Placer) finish(j *job, res Result, err error) {
	o := Outcome{Placement: j.Placement, Unit: res.Unit, Done: res.Done, Attempts: j.attempts, Err: err}
	switch {
	case err == nil:
		p.placed.Add(1)
		o.Latency = res.Done.Sub(j.first)
		p.latSum.Add(int64(o.Latency))
		for {
			m := p.latMax.Load()
			if int64(o.Latency) <= m || p.latMax.CompareAndSwap(m, int64(o.Latency)) {
				break
			}
		}
	case errors.Is(err, ErrUnreachable):
		p.unreachable.Add(1)
	case errors.Is(err, ErrTaskGone):
		p.gone.Add(1)
	case errors.Is(err, ErrOutsideNamespace):
		p.outside.Add(1)
	default:
		p.failed.Add(1)
	}
	p.pending.Add(-1)
	if p.cfg.Done != nil {
		p.cfg.Done(o)
	}
}

// place joins the user's scope in the slice, or starts it. Two workers may
// race to start the same scope: the loser's "already loaded" turns into an
// attach. A scope that emptied and is being removed refuses the attach and
// may still hold its name for a moment: a few rounds settle it.
func (p *Placer) place(j *job) (Result, error) {
	scope := ScopeName(j.Slice, j.UID)
	ctx := context.Background()
	var err error
	for round := 0; round < 4; round++ {
		if round > 0 {
			time.Sleep(time.Duration(round) * 5 * time.Millisecond)
		}
		if p.known(scope) {
			var res Result
			res, err = p.call(j, func() (Result, error) { return p.cfg.Client.Attach(ctx, scope, "", j.PIDs) })
			if err == nil {
				p.attached.Add(1)
				return res, nil
			}
			if !errors.Is(err, ErrNoUnit) {
				return p.gonePIDs(j, err)
			}
			p.forget(scope)
		}
		var res Result
		res, err = p.call(j, func() (Result, error) {
			return p.cfg.Client.StartScope(ctx, scope, j.PIDs, ScopeOptions{
				Slice: j.Slice, Delegate: true,
				Description: fmt.Sprintf("Tasks of uid %d placed by cgrulesengd", j.UID),
			})
		})
		if err == nil {
			p.started.Add(1)
			p.remember(scope)
			return res, nil
		}
		if !errors.Is(err, ErrUnitExists) {
			return p.gonePIDs(j, err)
		}
		p.remember(scope)
	}
	return Result{}, err
}

// gonePIDs handles a failure that may be due to one task of several having
// exited ("Process with ID N does not exist" fails the whole call): the
// tasks still alive are placed again, alone.
func (p *Placer) gonePIDs(j *job, err error) (Result, error) {
	if !errors.Is(err, ErrTaskGone) || len(j.PIDs) < 2 {
		return Result{}, err
	}
	alive := make([]int, 0, len(j.PIDs))
	for _, pid := range j.PIDs {
		if _, serr := os.Stat(p.cfg.Client.cfg.Proc + "/" + strconv.Itoa(pid)); serr == nil {
			alive = append(alive, pid)
		}
	}
	if len(alive) == 0 || len(alive) == len(j.PIDs) {
		return Result{}, err
	}
	j.PIDs = alive
	return p.place(j)
}

func (p *Placer) call(j *job, f func() (Result, error)) (Result, error) {
	j.attempts++
	p.calls.Add(1)
	p.inFlight.Add(1)
	res, err := f()
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
		Started: p.started.Load(), Attached: p.attached.Load(), Retries: p.retries.Load(),
		Unreachable: p.unreachable.Load(), Gone: p.gone.Load(), Outside: p.outside.Load(),
		Failed: p.failed.Load(), Calls: p.calls.Load(), CallErrors: p.callErrors.Load(),
		Reconnects: p.cfg.Client.Reconnects(), InFlight: p.inFlight.Load(), Pending: p.pending.Load(),
		LatencySum: time.Duration(p.latSum.Load()), LatencyMax: time.Duration(p.latMax.Load()),
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
		p.finish(j, Result{}, &Error{Op: "place", Unit: j.Slice, PID: j.PIDs[0], Kind: ErrClosed})
	}
	p.timersMu.Unlock()
	for {
		select {
		case j := <-p.queue:
			p.finish(j, Result{}, &Error{Op: "place", Unit: j.Slice, PID: j.PIDs[0], Kind: ErrClosed})
		default:
			return
		}
	}
}
