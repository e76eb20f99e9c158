package cgroupfs

import (
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// DefaultMaxOpen bounds the cgroup.procs descriptors a Mover keeps open.
// Template destinations (%u, %g, %p) can name one cgroup per user on a node
// with thousands of users; the least recently used descriptor is closed
// beyond this bound, and reopening it later costs one open(2).
const DefaultMaxOpen = 1024

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
	max   int
	files map[fileKey]*procsFile
	lru   procsFile // sentinel of a circular list
	open  int       // descriptors open: cached, or evicted but still in use

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
		max = DefaultMaxOpen
	}
	c := &fdCache{max: max, files: make(map[fileKey]*procsFile), openFn: openProcs, closeFn: unix.Close}
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
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
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
