package kernel

import (
	"fmt"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	// The receive buffer, allocated once, is cut into slots, one datagram
	// each, filled by one recvmmsg(2) call: on a VM where a syscall costs
	// ~1.5 µs that halves the cost per event compared with one recvfrom(2)
	// per datagram. The proc connector sends one 76-byte event per datagram
	// (only it sends to the CN_IDX_PROC group), so 1 KiB slots leave ample
	// room; a longer datagram is truncated (MSG_TRUNC) and counted as
	// malformed.
	slotLen    = 1 << 10
	slots      = 64
	recvBufLen = slots * slotLen

	// maxBatch bounds how many datagrams one Read drains without blocking,
	// so a flood cannot starve the consumer of a return.
	maxBatch = 256
)

// Read blocks until at least one wanted event, or an overflow, is available
// and appends the available events (up to a batch of datagrams) to dst.
// Acks and types outside Config.Events are dropped. An EventOverflow marks
// where events were lost. After Close it returns ErrClosed.
//
// Read must not be called concurrently with itself. In the steady state it
// does not allocate when dst has room for the events.
func (c *Conn) Read(dst []Event) ([]Event, error) {
	start := len(dst)
	if c.closed.Load() {
		return dst, ErrClosed
	}
	if c.pending != nil {
		dst = append(dst, c.pending...)
		c.pending = nil
		if dst = c.keep(dst, start); len(dst) > start {
			return dst, nil
		}
	}
	for {
		c.rdst, c.rerr = dst, 0
		c.readMu.Lock()
		if c.released {
			c.readMu.Unlock()
			return dst[:start], ErrClosed
		}
		err := c.raw.Control(c.waitFn)
		c.readMu.Unlock()
		dst, c.rdst = c.rdst, nil
		dst = c.keep(dst, start)
		if c.closed.Load() {
			return dst[:start], ErrClosed
		}
		if err != nil {
			return dst, fmt.Errorf("kernel: receiving from the proc connector: %w", err)
		}
		if c.rerr != 0 {
			return dst, fmt.Errorf("kernel: receiving from the proc connector: %w", c.rerr)
		}
		if len(dst) > start {
			return dst, nil
		}
		// Only acks or unwanted events: wait for more.
	}
}

// newConn sets up the reader state around f: the receive slots and the
// recvmmsg vector pointing into them, built once.
func newConn(f *os.File, mask What) *Conn {
	c := &Conn{
		f:     f,
		mask:  mask,
		buf:   make([]byte, recvBufLen),
		iovs:  make([]unix.Iovec, slots),
		froms: make([]unix.RawSockaddrNetlink, slots),
		hdrs:  make([]unix.Mmsghdr, slots),
	}
	for i := range slots {
		c.iovs[i].Base = &c.buf[i*slotLen]
		c.iovs[i].SetLen(slotLen)
		h := &c.hdrs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&c.froms[i]))
		h.Iov = &c.iovs[i]
		h.SetIovlen(1)
	}
	c.receiveFn = func(fd uintptr) { c.receive(fd, true) }
	c.waitFn = c.wait
	return c
}

// receive is the raw read callback: it reads up to maxBatch datagrams,
// decoding them into c.rdst, and reports whether anything was received.
// With block, its first recvmmsg waits for the first datagram (for ever,
// or as long as SO_RCVTIMEO says: see probeWake and waitAck); every later
// one in the same call takes only what is queued. So an idle reader that an
// event wakes makes one system call for it: recvmmsg, blocking for the
// first datagram (MSG_WAITFORONE: the rest of the vector only if already
// queued).
func (c *Conn) receive(fd uintptr, block bool) bool {
	got := 0
	for got < maxBatch {
		// Ask for no more datagrams than the caller's slice has room for
		// (one event each), so a Read into a reused buffer does not grow
		// (allocate) it; the rest stays queued for the next Read.
		room := cap(c.rdst) - len(c.rdst)
		if got > 0 && room <= 0 {
			return true
		}
		want := min(max(room, 1), slots, maxBatch-got)
		// After a loss the queue is read without waiting, so that the
		// read that finds it empty delivers the marker at once.
		n, errno := c.recvmmsg(fd, want, block && got == 0 && !c.lost)
		switch errno {
		case 0:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			// Empty (or, blocking, nothing within SO_RCVTIMEO).
			if c.markDrained() {
				got++
			}
			return got > 0
		case unix.ENOBUFS:
			// The kernel dropped events; the socket stays usable and the
			// error is reported once per overflow. (When it strikes after
			// some datagrams, recvmmsg returns those and the kernel keeps
			// the error for the next call.) The loss is not over yet: see
			// markDrained.
			c.lost = true
			continue
		default:
			if got == 0 {
				c.rerr = errno
			} // else deliver what we have; a persistent error recurs next time
			return true
		}
		got += n
		c.datagrams.Add(uint64(n))
		for i := range n {
			if p := c.froms[i].Pid; p != 0 {
				if p != c.portID { // not Close's wake-up (see probeWake)
					c.foreign.Add(1)
				}
				continue
			}
			h := &c.hdrs[i]
			if h.Hdr.Flags&unix.MSG_TRUNC != 0 {
				c.malformed.Add(1)
				continue
			}
			var err error
			off := i * slotLen
			if c.rdst, err = Decode(c.buf[off:off+int(h.Len)], c.rdst); err != nil {
				c.malformed.Add(1)
			}
		}
		if n < want {
			// Fewer datagrams than asked for: the queue is empty.
			c.markDrained()
			return true
		}
	}
	return true
}

// markDrained appends the EventOverflow marker of a loss once the receive
// queue has been read empty, and reports whether it did.
//
// Why then and not when ENOBUFS is seen: the kernel reports ENOBUFS on the
// first receive after it dropped an event, while the queue is still full,
// and from that moment it drops every event for this socket, even when
// there is room again, until a receive leaves the queue empty
// (af_netlink.c: netlink_overrun sets NETLINK_S_CONGESTED, which
// netlink_broadcast_deliver honours and only netlink_rcv_wake, on an empty
// queue, clears). The loss therefore spans from the overflow to the
// receive that drained the queue, and only a resynchronisation that starts
// after that receive sees everything the lost events would have told. Placed
// here, the marker comes after every event that was queued before the
// loss, and every event after it was delivered: a consumer that rescans
// when it reaches the marker has no gap. A second overflow before the drain
// is part of the same loss (the kernel reports ENOBUFS once per congestion).
func (c *Conn) markDrained() bool {
	if !c.lost {
		return false
	}
	c.lost = false
	c.rdst = append(c.rdst, Event{What: EventOverflow, Timestamp: Now()})
	return true
}

// pollInterval is the receive timeout (SO_RCVTIMEO) of a socket that
// cannot send itself Close's wake-up datagram (see probeWake): how long
// Close may then take to wake a blocked Read, and how often an idle Read
// wakes to look at the closed flag. Sockets that can (every listener with
// CAP_NET_ADMIN) have no timeout and never wake without a datagram.
const pollInterval = 50 * time.Millisecond

// wait receives, blocking on this goroutine's thread while the socket is
// empty, until something arrives (Close's wake-up datagram included) or an
// error occurs.
// Waiting in the runtime's netpoller instead costs a park, an epoll wake-up
// and a hand-off between threads for every event; at a few thousand events
// per second that measured ~80 µs of CPU per event on a 2-vCPU VM, against
// a few µs for a blocking receive. (An earlier version waited in poll(2)
// and then read with MSG_DONTWAIT: two system calls per wake-up where one
// does.) Running inside RawConn.Control keeps the descriptor referenced, so
// a concurrent Close cannot let its number be reused under us.
func (c *Conn) wait(fd uintptr) {
	for !c.closed.Load() {
		if c.receive(fd, true) || c.rerr != 0 {
			return
		}
	}
}

// recvmmsg receives up to vlen datagrams into the first vlen slots, waiting
// for the first one if block. (x/sys/unix has no wrapper; its Recvfrom
// would also allocate a Sockaddr per datagram, and the sender's port id is
// all we need.)
func (c *Conn) recvmmsg(fd uintptr, vlen int, block bool) (int, unix.Errno) {
	for i := range vlen {
		// In/out: the kernel overwrites it with the address's length.
		c.hdrs[i].Hdr.Namelen = unix.SizeofSockaddrNetlink
	}
	flags := uintptr(unix.MSG_DONTWAIT)
	if block {
		flags = unix.MSG_WAITFORONE
	}
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd,
		uintptr(unsafe.Pointer(&c.hdrs[0])), uintptr(vlen),
		flags, 0, 0)
	return int(n), errno
}

// keep compacts dst[start:] to the events the caller asked for and counts.
func (c *Conn) keep(dst []Event, start int) []Event {
	// Counted locally and published once: this runs for every event.
	out := start
	var discarded, overflows uint64
	for i := start; i < len(dst); i++ {
		if !c.wants(&dst[i]) {
			discarded++
			continue
		}
		if dst[i].What == EventOverflow {
			overflows++
		}
		if out != i {
			dst[out] = dst[i]
		}
		out++
	}
	if discarded > 0 {
		c.discarded.Add(discarded)
	}
	if overflows > 0 {
		c.overflows.Add(overflows)
	}
	if n := uint64(out-start) - overflows; n > 0 {
		c.events.Add(n)
	}
	return dst[:out]
}

// wants mirrors the kernel's cn_filter for the requested mask.
func (c *Conn) wants(e *Event) bool {
	switch {
	case e.What == EventOverflow:
		return true
	case e.What == EventNone:
		return false // acks belong to Listen
	case c.mask == eventAll:
		return true // including types newer than this package
	case e.What&c.mask != 0:
		return true
	case e.What == EventExit && c.mask&EventNonzeroExit != 0 && e.ExitCode != 0:
		return true
	}
	return false
}
