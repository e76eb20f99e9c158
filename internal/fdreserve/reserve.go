package fdreserve

import (
	"errors"
	"net"
	"sync"

	"golang.org/x/sys/unix"
)

// Reserve is one spare descriptor. The zero value holds none until Refill.
type Reserve struct {
	mu   sync.Mutex
	fd   int  // the spare, when held
	held bool // fd is open
}

// New returns a Reserve holding its spare (or none, if /dev/null cannot be
// opened now: Refill tries again).
func New() *Reserve {
	r := &Reserve{}
	r.Refill()
	return r
}

// Held reports whether the spare is held.
func (r *Reserve) Held() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.held
}

// Refill opens the spare again if it was spent. Call it whenever a
// connection is closed; it costs nothing while the spare is held. It may
// fail while the process is still out of descriptors, and is then tried
// again at the next call.
func (r *Reserve) Refill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.held {
		return
	}
	fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	r.fd, r.held = fd, true
}

// Close closes the spare; Refill would open it again.
func (r *Reserve) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.held {
		_ = unix.Close(r.fd)
		r.held = false
	}
}

// Accept calls accept. If it fails because the process (EMFILE) or the
// system (ENFILE) is out of descriptors and the spare is held, the spare is
// closed and accept called once more: the connection waiting in the queue
// takes its place. spent reports that: the caller should serve the
// connection and call Refill when it is closed. The error of a failed
// accept is returned as it is.
func (r *Reserve) Accept(accept func() (net.Conn, error)) (c net.Conn, spent bool, err error) {
	c, err = accept()
	if err == nil || !OutOfDescriptors(err) {
		return c, false, err
	}
	r.mu.Lock()
	if !r.held {
		r.mu.Unlock()
		return nil, false, err
	}
	_ = unix.Close(r.fd)
	r.held = false
	r.mu.Unlock()
	c, err2 := accept()
	if err2 != nil {
		r.Refill()
		return nil, false, err
	}
	return c, true, nil
}

// OutOfDescriptors reports whether err is EMFILE or ENFILE.
func OutOfDescriptors(err error) bool {
	return errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE)
}
