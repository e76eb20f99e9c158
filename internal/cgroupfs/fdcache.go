package cgroupfs

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cgrulesengd/cgrulesengd/internal/ratelimit"
)

// The bound on the cgroup.procs descriptors a Mover keeps open. Template
// destinations (%u, %g, %p) can name one cgroup per user on a node with
// thousands of users; the least recently used descriptor is closed beyond
// the bound, and reopening it later costs one open(2).
//
// The bound is half of the process's open-file limit (MaxOpenFor): the
// other half is for everything else the daemon opens (the netlink socket,
// the log, /proc files being read, the clients of its sockets, NSS), so
// that a cache full of destinations can never starve them. It is at most
// MaxOpenCap (a cached descriptor costs kernel and heap memory) and at
// least MinOpen.
const (
	MaxOpenCap = 16384
	MinOpen    = 8
)

// MaxOpenFor is the cache bound for an open-file limit (RLIMIT_NOFILE's
// soft value).
func MaxOpenFor(nofile uint64) int {
	return int(min(max(nofile/2, MinOpen), MaxOpenCap))
}

// DefaultMaxOpen is MaxOpenFor the process's current open-file limit (the
// daemon raises its soft limit to the hard one before it makes its Mover),
// or 512 if the limit cannot be read.
func DefaultMaxOpen() int {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return MaxOpenFor(1024)
	}
	return MaxOpenFor(lim.Cur)
}

// ErrOutOfDescriptors is matched (errors.Is) by a Shortage, and by Move's
// error when the process has no descriptor left for a cgroup.procs file
// even after closing idle cached ones. The error then also matches the
// kernel's cause, unix.EMFILE or unix.ENFILE.
var ErrOutOfDescriptors = errors.New("out of file descriptors")

// Shortage reports an open(2) of a cgroup.procs file that failed with
// EMFILE (the process's limit) or ENFILE (the system's): the cache closed
// Closed idle descriptors, lowered its bound to Bound (it grows back by one
// per later open, see fdCache.shortage), and opened the file again, which
// failed with Retry (nil: it worked). Suppressed is the number
// of shortages not reported since the last report (see WithShortageReport).
type Shortage struct {
	Path       string // the cgroup.procs file
	Err        error  // EMFILE or ENFILE
	Closed     int
	Bound      int
	Retry      error
	Suppressed int
}

func (s *Shortage) Error() string {
	out := "recovered"
	if s.Retry != nil {
		out = fmt.Sprintf("still failing (%v): the move is lost and must be repaired", s.Retry)
	}
	msg := fmt.Sprintf("cgroupfs: opening %s: %v: closed %d idle cached cgroup.procs descriptors and lowered the cache's bound to %d; opened again: %s",
		s.Path, s.Err, s.Closed, s.Bound, out)
	if s.Suppressed > 0 {
		msg += fmt.Sprintf(" (%d more shortages since the last report)", s.Suppressed)
	}
	return msg
}

// Is makes errors.Is(s, ErrOutOfDescriptors) hold.
func (s *Shortage) Is(target error) bool { return target == ErrOutOfDescriptors }

// Unwrap exposes the kernel's error.
func (s *Shortage) Unwrap() error { return s.Err }

// outOfDescriptors reports whether err is EMFILE or ENFILE.
func outOfDescriptors(err error) bool {
	return errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE)
}

// fileKey names one cgroup.procs file: a cgroup path in a hierarchy.
type fileKey struct {
	h    *Hierarchy
	path string
}

// procsFile is one open cgroup.procs descriptor.
//
// refs counts its holders: one for the cache while it is cached, one for
// each move writing to it right now. The descriptor is closed when refs
// drops to 0, never while a write may still use its number: a descriptor
// closed under a concurrent write could be reused by another open and the
// pid written into the wrong file.
type procsFile struct {
	key        fileKey
	fd         int
	refs       int
	cached     bool       // in the map and the LRU list
	prev, next *procsFile // LRU list; the most recently used follows the sentinel
}

// fdCache is a bounded LRU cache of cgroup.procs descriptors, opened with
// raw open(2) (never registered with the runtime's poller: cgroupfs files
// are pollable, and registering one wakes the poller's thread) and written
// with raw write(2). Safe for concurrent use.
type fdCache struct {
	mu    sync.Mutex
	max   int // the bound now: limit, or less after a shortage
	limit int // the bound asked for
	files map[fileKey]*procsFile
	lru   procsFile // sentinel of a circular list
	open  int       // descriptors open: cached, or evicted but still in use

	// report is told of every shortage that shortLog lets through
	// (WithShortageReport); nil: none are reported.
	report   func(*Shortage)
	shortLog ratelimit.Limiter

	// System calls, replaceable by tests (a plain file cannot fail with
	// ENODEV the way a removed cgroup's file does). writeFn nil means
	// writePID; it takes the pid, not its bytes, so that the bytes can stay
	// on the caller's stack.
	openFn  func(path string) (int, error)
	writeFn func(fd, pid int) error
	closeFn func(fd int) error
}

func newFDCache(max int) *fdCache {
	if max <= 0 {
		max = DefaultMaxOpen()
	}
	c := &fdCache{max: max, limit: max, files: make(map[fileKey]*procsFile), openFn: openProcs, closeFn: unix.Close}
	c.lru.prev, c.lru.next = &c.lru, &c.lru
	return c
}

// write writes pid to fd.
func (c *fdCache) write(fd, pid int) error {
	if c.writeFn != nil {
		return c.writeFn(fd, pid)
	}
	return writePID(fd, pid)
}

// writePID writes pid in decimal to fd with one write(2).
func writePID(fd, pid int) error {
	var buf [20]byte
	b := strconv.AppendInt(buf[:0], int64(pid), 10)
	for {
		_, err := unix.Write(fd, b)
		if err != unix.EINTR {
			return err
		}
	}
}

func openProcs(path string) (int, error) {
	for {
		fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CLOEXEC, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// get returns the cached descriptor of key, held (release it), or nil.
func (c *fdCache) get(key fileKey) *procsFile {
	c.mu.Lock()
	f := c.files[key]
	if f != nil {
		f.refs++
		c.unlink(f)
		c.pushFront(f)
	}
	c.mu.Unlock()
	return f
}

// acquire returns key's descriptor, held, opening file (the cgroup.procs
// path, computed by the caller only on a miss) when it is not cached.
// Errors are open(2)'s.
func (c *fdCache) acquire(key fileKey, file func() (string, error)) (*procsFile, error) {
	if f := c.get(key); f != nil {
		return f, nil
	}
	p, err := file()
	if err != nil {
		return nil, err
	}
	fd, err := c.openFn(p)
	short := outOfDescriptors(err)
	if short {
		fd, err = c.shortage(p, err)
	}
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !short && c.max < c.limit {
		c.max++ // recovering from a shortage: one more per open that needed none
	}
	if f := c.files[key]; f != nil {
		// Another move opened it meanwhile: use theirs.
		f.refs++
		c.unlink(f)
		c.pushFront(f)
		_ = c.closeFn(fd)
		return f, nil
	}
	f := &procsFile{key: key, fd: fd, refs: 2, cached: true}
	c.files[key] = f
	c.pushFront(f)
	c.open++
	for len(c.files) > c.max {
		c.evict(c.lru.prev)
	}
	return f, nil
}

// shortage handles an open of path that failed with EMFILE or ENFILE: the
// least recently used half of the cached descriptors is dropped (those not
// in use are closed at once), the bound is lowered to what is left (at
// least MinOpen) so that the cache does not take the freed descriptors back
// from the rest of the process at once, and the open is tried once more.
// The bound grows back by one with each later open that finds a descriptor
// (acquire), up to the one asked for: a shortage that lasts halves the
// cache again, one that is over costs nothing for long. The shortage is
// reported, rate-limited. A failed retry returns a *Shortage, which
// matches ErrOutOfDescriptors and the kernel's error.
func (c *fdCache) shortage(path string, cause error) (int, error) {
	closed, bound := c.shed()
	fd, err := c.openFn(path)
	s := &Shortage{Path: path, Err: cause, Closed: closed, Bound: bound, Retry: err}
	if c.report != nil {
		if n, ok := c.shortLog.Allow(time.Now()); ok {
			s.Suppressed = n
			c.report(s)
		}
	}
	if err != nil {
		return -1, s
	}
	return fd, nil
}

// shed drops the least recently used half of the cached descriptors
// (those not in use are closed at once) and lowers the bound to what is
// left, at least MinOpen; it returns how many it closed, and the bound.
func (c *fdCache) shed() (closed, bound int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	before := c.open
	for n := (len(c.files) + 1) / 2; n > 0; n-- {
		c.evict(c.lru.prev)
	}
	c.max = max(len(c.files), MinOpen)
	return before - c.open, c.max
}

// release gives back a descriptor from get or acquire.
func (c *fdCache) release(f *procsFile) {
	c.mu.Lock()
	c.unref(f)
	c.mu.Unlock()
}

// drop removes f from the cache if it is still the cached descriptor of its
// key (a stale descriptor, e.g. after ENODEV); it stays usable by its
// holders and is closed by the last one.
func (c *fdCache) drop(f *procsFile) {
	c.mu.Lock()
	if f.cached {
		c.evict(f)
	}
	c.mu.Unlock()
}

// forget drops the descriptor of key, if cached.
func (c *fdCache) forget(key fileKey) {
	c.mu.Lock()
	if f := c.files[key]; f != nil {
		c.evict(f)
	}
	c.mu.Unlock()
}

// clear drops every cached descriptor; those in use are closed by their
// last holder.
func (c *fdCache) clear() {
	c.mu.Lock()
	for c.lru.next != &c.lru {
		c.evict(c.lru.next)
	}
	c.mu.Unlock()
}

// stats returns the number of cached descriptors and of open ones (cached,
// or evicted while still in use).
func (c *fdCache) stats() (cached, open int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.files), c.open
}

// evict removes a cached f from the map and the list and gives up the
// cache's reference. c.mu is held.
func (c *fdCache) evict(f *procsFile) {
	delete(c.files, f.key)
	c.unlink(f)
	f.cached = false
	c.unref(f)
}

// unref drops one reference and closes the descriptor with the last. c.mu
// is held.
func (c *fdCache) unref(f *procsFile) {
	f.refs--
	if f.refs == 0 {
		_ = c.closeFn(f.fd)
		f.fd = -1
		c.open--
	}
}

func (c *fdCache) unlink(f *procsFile) {
	if f.prev != nil {
		f.prev.next, f.next.prev = f.next, f.prev
		f.prev, f.next = nil, nil
	}
}

func (c *fdCache) pushFront(f *procsFile) {
	f.prev, f.next = &c.lru, c.lru.next
	c.lru.next.prev = f
	c.lru.next = f
}
