package bpfevents

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/cgrulesengd/cgrulesengd/internal/kernel"
)

// Defaults of Config.
const (
	// DefaultRingBuffer holds ~21,000 events (48 bytes and an 8-byte
	// header each): events are rare once the kernel filters them, so this
	// only matters for a burst of what rules do name.
	DefaultRingBuffer = 1 << 20
	// DefaultMaxIDs bounds the uids and the gids rules name, each.
	DefaultMaxIDs = 32768
	// DefaultMaxNames bounds the process names of exec rules.
	DefaultMaxNames = 16384
	// DefaultMaxTasks bounds each table of marked processes (hot, settled,
	// sticky, exit-watched).
	DefaultMaxTasks = 16384
	// DefaultForkSlack is the engine's default (classify.Config.ForkSlack).
	DefaultForkSlack = 20 * time.Millisecond
	// DefaultHotTTL: a classification takes milliseconds; a hot mark
	// nobody settled for this long is left alone.
	DefaultHotTTL = 30 * time.Second
)

// Config configures Open. The zero value is valid.
type Config struct {
	// RingBuffer is the ring buffer's size in bytes: a power of two, at
	// least a page. 0 means DefaultRingBuffer.
	RingBuffer int
	// MaxIDs bounds the uids and the gids of a Filter, each; a Filter with
	// more makes the kernel report every credential change (see
	// SetFilter). 0 means DefaultMaxIDs.
	MaxIDs int
	// MaxNames bounds the process names of a Filter; more make the kernel
	// report every exec. 0 means DefaultMaxNames.
	MaxNames int
	// MaxTasks bounds each table of marked processes; a mark that does not
	// fit is a loss (ErrFull, or EventOverflow when the kernel's own mark
	// does not fit). 0 means DefaultMaxTasks.
	MaxTasks int
	// ForkSlack: forks of a settled hot process this long after its settle
	// are still reported (see Settled). 0 means DefaultForkSlack.
	ForkSlack time.Duration
	// HotTTL bounds how long the forks of a hot process that user space
	// never settles are reported (and inherit the mark): a backstop, not
	// a substitute for Settled or Cool. 0 means DefaultHotTTL.
	HotTTL time.Duration
	// KernelBTF is a BTF file to use instead of the running kernel's
	// (/sys/kernel/btf/vmlinux): for tests, which force the fallback with
	// a file that is not BTF (ReasonNoBTF); Open does not cache such a
	// failure. "" means the kernel's.
	KernelBTF string
}

// Validate reports whether Open accepts c's values (not whether the kernel
// does).
func (c Config) Validate() error {
	_, err := c.withDefaults()
	return err
}

func (c Config) withDefaults() (Config, error) {
	if c.RingBuffer == 0 {
		c.RingBuffer = DefaultRingBuffer
	}
	if c.MaxIDs == 0 {
		c.MaxIDs = DefaultMaxIDs
	}
	if c.MaxNames == 0 {
		c.MaxNames = DefaultMaxNames
	}
	if c.MaxTasks == 0 {
		c.MaxTasks = DefaultMaxTasks
	}
	if c.ForkSlack == 0 {
		c.ForkSlack = DefaultForkSlack
	}
	if c.HotTTL == 0 {
		c.HotTTL = DefaultHotTTL
	}
	page := os.Getpagesize()
	switch {
	case c.RingBuffer < page || c.RingBuffer&(c.RingBuffer-1) != 0:
		return c, fmt.Errorf("bpfevents: ring buffer of %d bytes: must be a power of two of at least %d", c.RingBuffer, page)
	case c.MaxIDs < 1 || c.MaxNames < 1 || c.MaxTasks < 1:
		return c, fmt.Errorf("bpfevents: map bounds must be positive: MaxIDs %d, MaxNames %d, MaxTasks %d", c.MaxIDs, c.MaxNames, c.MaxTasks)
	case c.ForkSlack < 0 || c.HotTTL < 0:
		return c, fmt.Errorf("bpfevents: negative fork slack %v or hot TTL %v", c.ForkSlack, c.HotTTL)
	}
	return c, nil
}

// Stats are counters of a Source since Open.
type Stats struct {
	Events    uint64 // kernel events returned by Read
	Overflows uint64 // EventOverflow markers returned by Read
	Malformed uint64 // ring buffer records that did not decode (a bug)

	// The kernel's counters.
	Lost      uint64 // events or marks lost (each one repaired by a rescan)
	LostRing  uint64 // ... because the ring buffer was full
	LostMarks uint64 // ... because a table of marks was full
	CredsSeen uint64 // credential changes the programs saw, before the filter
	ExecsSeen uint64 // execs the programs saw, before the filter

	MarksRefused uint64 // control calls refused with ErrFull
}

// configValue mirrors struct cgre_config of events.bpf.c; countersValue
// struct cgre_counters. Both live in memory shared with the kernel (mmap of
// a BPF_F_MMAPABLE array): read and written with atomics, no system call.
type configValue struct {
	AnyID     uint32
	Execs     uint32
	ForkSlack uint64
	HotTTL    uint64
}

type countersValue struct {
	Lost      uint64
	LostRing  uint64
	LostMarks uint64
	CredsSeen uint64
	ExecsSeen uint64
}

// Exec modes (configValue.Execs).
const (
	execsNone  = 0
	execsNames = 1
	execsAll   = 2
)

// The objects of events.bpf.c, by name.
const (
	mapEvents   = "events"
	mapConfig   = "config"
	mapCounters = "counters"
	mapUIDs     = "uids"
	mapGIDs     = "gids"
	mapNames    = "names"
	mapHot      = "hot"
	mapSettled  = "settled"
	mapSticky   = "sticky"
	mapExits    = "exits"
	mapPending  = "pending"

	progFork       = "on_fork"
	progExec       = "on_exec"
	progExit       = "on_exit"
	progSysExit    = "on_sys_exit"
	progCommit     = "on_commit_creds"
	progCommitExit = "on_commit_creds_exit"

	varCommitHook = "commit_hook"
)

// Source is the BPF event source: see the package doc.
type Source struct {
	cfg   Config
	hooks string

	coll                                           *ebpf.Collection
	links                                          []link.Link
	rd                                             *ringbuf.Reader
	uids, gids, names, hot, settled, sticky, exits *ebpf.Map

	// Shared with the kernel (mmap); valid until Close, which takes memMu
	// for writing: every other use holds it for reading.
	memMu    sync.RWMutex
	cfgMem   []byte
	cntMem   []byte
	config   *configValue
	counters *countersValue

	// Reader state, owned by the goroutine in Read.
	rec      ringbuf.Record
	lostSeen uint64

	filterMu sync.Mutex // serialises SetFilter
	filter   filterState
	widened  atomic.Value // string: see Widened

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error

	events, overflows, malformed, refused atomic.Uint64
}

// Open loads the programs and maps into the kernel and attaches them; from
// then on the kernel reports, through Read, what the filter (SetFilter) and
// the marks let through: nothing until SetFilter or a mark says otherwise.
//
// When this kernel or process cannot run the source, the error is a
// *NotSupportedError (errors.Is(err, ErrNotSupported)) naming the reason;
// it is cached, and later calls return it at once.
func Open(cfg Config) (*Source, error) {
	// A failure with another BTF file (a test's) says nothing about this
	// kernel: it is neither cached nor answered from the cache.
	cache := cfg.KernelBTF == ""
	if cache {
		if err := cachedFailure(); err != nil {
			return nil, err
		}
	}
	s, err := open(cfg, options{kernelBTF: cfg.KernelBTF})
	if nse := (*NotSupportedError)(nil); cache && errors.As(err, &nse) {
		cacheFailure(err)
	}
	return s, err
}

// options are the tests' ways to force what a kernel might do.
type options struct {
	kernelBTF    string                     // a BTF file to use instead of the kernel's
	mutate       func(*ebpf.CollectionSpec) // changes the spec before loading
	noCommitHook bool                       // the system call hooks even where commit_creds can be hooked
}

func open(cfg Config, o options) (_ *Source, err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	spec, err := loadSpec()
	if err != nil {
		return nil, err
	}
	if err := inInitialPIDNamespace(); err != nil {
		return nil, err
	}
	l, err := load(spec, cfg, o)
	if err != nil {
		return nil, err
	}
	s := &Source{cfg: cfg, hooks: l.hooks, coll: l.coll, links: l.links}
	defer func() {
		if err != nil {
			s.release()
		}
	}()
	m := l.coll.Maps
	s.uids, s.gids, s.names = m[mapUIDs], m[mapGIDs], m[mapNames]
	s.hot, s.settled, s.sticky, s.exits = m[mapHot], m[mapSettled], m[mapSticky], m[mapExits]
	if s.cfgMem, err = mmapArray(m[mapConfig]); err != nil {
		return nil, err
	}
	s.config = (*configValue)(unsafe.Pointer(&s.cfgMem[0]))
	atomic.StoreUint64(&s.config.ForkSlack, uint64(cfg.ForkSlack))
	atomic.StoreUint64(&s.config.HotTTL, uint64(cfg.HotTTL))
	if s.cntMem, err = mmapArray(m[mapCounters]); err != nil {
		return nil, err
	}
	s.counters = (*countersValue)(unsafe.Pointer(&s.cntMem[0]))
	if s.rd, err = ringbuf.NewReader(m[mapEvents]); err != nil {
		return nil, fmt.Errorf("bpfevents: opening the ring buffer reader: %w", err)
	}
	s.filter = newFilterState()
	return s, nil
}

// mmapArray maps the one value of a BPF_F_MMAPABLE array (config,
// counters) into memory shared with the kernel.
func mmapArray(m *ebpf.Map) ([]byte, error) {
	size := (int(m.ValueSize()) + os.Getpagesize() - 1) &^ (os.Getpagesize() - 1)
	b, err := unix.Mmap(m.FD(), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("bpfevents: mapping BPF map %s: %w", m.String(), err)
	}
	return b, nil
}

// Hooks says which kernel hooks the source uses, and why (for the daemon's
// log).
func (s *Source) Hooks() string { return s.hooks }

// Read blocks until the kernel reports events, or a loss, and appends them
// to dst: up to cap(dst) events (one more for an EventOverflow), the rest
// stays for the next Read. An EventOverflow comes after every event the
// kernel could not report since the previous one: a /proc rescan started
// when the consumer reaches it sees what they would have reported. After
// Close it returns kernel.ErrClosed.
//
// An idle Read sleeps in epoll_wait(2), which Close interrupts, and makes
// one system call per wake-up: the records are read from memory shared with
// the kernel. Read must not be called concurrently with itself; it does not
// allocate when dst has room.
func (s *Source) Read(dst []kernel.Event) ([]kernel.Event, error) {
	start := len(dst)
	for {
		if s.closed.Load() {
			return dst[:start], kernel.ErrClosed
		}
		// Blocks only when the ring is empty.
		if err := s.rd.ReadInto(&s.rec); err != nil {
			if s.closed.Load() || errors.Is(err, os.ErrClosed) {
				return dst[:start], kernel.ErrClosed
			}
			return dst[:start], fmt.Errorf("bpfevents: reading the ring buffer: %w", err)
		}
		s.memMu.RLock()
		if s.closed.Load() {
			s.memMu.RUnlock()
			return dst[:start], kernel.ErrClosed
		}
		dst = s.take(dst, s.rec.RawSample)
		// Remaining > 0: more records are in the ring, and ReadInto returns
		// the next at once. (Not AvailableBytes: it reads the ring outside
		// the reader's lock, under which Close unmaps it.)
		for s.rec.Remaining > 0 && len(dst)+1 < cap(dst) {
			if err := s.rd.ReadInto(&s.rec); err != nil {
				break // closed: seen on the next turn
			}
			dst = s.take(dst, s.rec.RawSample)
		}
		// Read after the records: every loss counted so far happened before
		// this point, so a rescan that starts at the marker sees its effect.
		if lost := atomic.LoadUint64(&s.counters.Lost); lost != s.lostSeen {
			s.lostSeen = lost
			dst = append(dst, kernel.Event{What: kernel.EventOverflow, Timestamp: kernel.Now()})
			s.overflows.Add(1)
		}
		s.memMu.RUnlock()
		if len(dst) > start {
			return dst, nil
		}
	}
}

// take decodes one record into dst.
func (s *Source) take(dst []kernel.Event, b []byte) []kernel.Event {
	n := len(dst)
	dst, err := decode(b, dst)
	if err != nil {
		s.malformed.Add(1)
		return dst
	}
	if len(dst) > n {
		s.events.Add(1)
	}
	return dst
}

// Stats returns the counters. Safe from any goroutine.
func (s *Source) Stats() Stats {
	st := Stats{
		Events:       s.events.Load(),
		Overflows:    s.overflows.Load(),
		Malformed:    s.malformed.Load(),
		MarksRefused: s.refused.Load(),
	}
	s.memMu.RLock()
	defer s.memMu.RUnlock()
	if c := s.counters; c != nil && !s.closed.Load() {
		st.Lost = atomic.LoadUint64(&c.Lost)
		st.LostRing = atomic.LoadUint64(&c.LostRing)
		st.LostMarks = atomic.LoadUint64(&c.LostMarks)
		st.CredsSeen = atomic.LoadUint64(&c.CredsSeen)
		st.ExecsSeen = atomic.LoadUint64(&c.ExecsSeen)
	}
	return st
}

// MapMemory returns the kernel memory of the source's maps in bytes, as the
// kernel accounts it (the memlock of /proc/self/fdinfo, which since Linux
// 6.4 is each map's real usage: the ring buffer's pages, and the hash maps'
// elements, preallocated or as used). Safe from any goroutine; it reads
// fdinfo, a few system calls per map.
func (s *Source) MapMemory() (uint64, error) {
	s.memMu.RLock()
	defer s.memMu.RUnlock()
	if s.closed.Load() {
		return 0, ErrClosed
	}
	var sum uint64
	for name, m := range s.coll.Maps {
		info, err := m.Info()
		if err != nil {
			return 0, fmt.Errorf("bpfevents: reading the info of map %s: %w", name, err)
		}
		n, _ := info.Memlock() // 0 for an empty map the kernel allocates as it fills
		sum += n
	}
	return sum, nil
}

// Close detaches the programs, frees the maps and wakes a blocked Read,
// which returns kernel.ErrClosed. Safe from any goroutine, more than once;
// later calls return the first result.
func (s *Source) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		// Wakes Read (an eventfd in its epoll set), then waits for it to
		// leave the ring.
		if err := s.rd.Close(); err != nil {
			s.closeErr = fmt.Errorf("bpfevents: closing the ring buffer reader: %w", err)
		}
		s.memMu.Lock()
		defer s.memMu.Unlock()
		if err := s.release(); err != nil && s.closeErr == nil {
			s.closeErr = err
		}
	})
	return s.closeErr
}

// release frees what open acquired (links first: no program runs after).
func (s *Source) release() error {
	var errs []error
	for _, l := range s.links {
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("bpfevents: detaching a program: %w", err))
		}
	}
	s.links = nil
	if s.rd != nil && !s.closed.Load() {
		errs = append(errs, s.rd.Close())
	}
	for _, b := range [][]byte{s.cfgMem, s.cntMem} {
		if b != nil {
			errs = append(errs, unix.Munmap(b))
		}
	}
	s.cfgMem, s.cntMem, s.config, s.counters = nil, nil, nil, nil
	if s.coll != nil {
		s.coll.Close()
	}
	return errors.Join(errs...)
}
