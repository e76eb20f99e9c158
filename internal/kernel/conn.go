package kernel

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The Conn's code is split by lifetime: listen.go opens and subscribes
// (once), read.go is the reader's loop (every event), clock.go the clock of
// event timestamps; this file holds the type and what any goroutine may call
// at any time (Stats, Close).

const (
	// DefaultReceiveBuffer is the receive buffer requested when
	// Config.ReceiveBuffer is 0, and the daemon's default
	// (--netlink-buffer). The kernel charges each queued 76-byte event its
	// skb truesize, about 680 bytes (measured on 6.18: a 4 KiB request,
	// accounted as 8 KiB, holds 12 events). 16 MiB, accounted as 32 MiB,
	// thus holds ~49 000 events: 0.8 s of the 60 000 events/s fork storm in
	// which libcgroup (default buffer, ~300 events) lost millions, enough to
	// ride out a descheduled reader, a GC pause or a burst of slow moves.
	// The memory is pinned only while events are queued, and there is one
	// such socket per host.
	DefaultReceiveBuffer = 16 << 20

	// DefaultAckTimeout bounds each wait for the kernel's acknowledgement.
	// The ack is sent synchronously from within our sendmsg(2), so on a
	// kernel that understands the request it is already queued when send
	// returns; the timeout is only ever reached on kernels older than 6.6
	// (probe for filtering, then fall back) or from outside the init
	// namespaces. It must stay short: the daemon has to be ready in 0.2 s.
	DefaultAckTimeout = 250 * time.Millisecond

	// maxPending bounds the events kept while Listen waits for the ack.
	maxPending = 16384

	procCnMcastListen = 1 // PROC_CN_MCAST_LISTEN
	// PROC_CN_MCAST_IGNORE. Not nl.PROC_CN_MCAST_IGNORE: in netlink v1.3.1
	// that constant repeats the previous const expression and equals 1
	// (LISTEN).
	procCnMcastIgnore = 2
)

var (
	// ErrClosed is returned by Read after Close.
	ErrClosed = errors.New("proc connector connection closed")

	// ErrNoAck: the kernel never acknowledged the listen request. Either the
	// process is not in the initial user and PID namespaces (the kernel then
	// ignores it silently) or the kernel lacks CONFIG_PROC_EVENTS.
	ErrNoAck = errors.New("the kernel did not acknowledge the proc connector listen request (the caller must be in the initial user and PID namespaces, and the kernel needs CONFIG_PROC_EVENTS)")

	// ErrNotSupported: the kernel has no netlink connector at all
	// (CONFIG_CONNECTOR unset). Wrapped together with the errno.
	ErrNotSupported = errors.New("netlink proc connector not supported by this kernel")
)

// Config configures Listen. The zero value is valid.
type Config struct {
	// ReceiveBuffer is the socket receive buffer in bytes, set with
	// SO_RCVBUFFORCE so that net.core.rmem_max does not cap it (without
	// CAP_NET_ADMIN: SO_RCVBUF, capped). The kernel doubles the value (for
	// its bookkeeping overhead) and enforces a small minimum (a 4 KiB
	// request becomes 8 KiB). 0 means DefaultReceiveBuffer.
	ReceiveBuffer int

	// Events is the mask of event types to deliver; 0 means all.
	// EventOverflow is always delivered and need not be set. On kernels that
	// support it the kernel filters (see Conn.Filtered); Read filters in any
	// case.
	Events What

	// AckTimeout bounds each wait for the kernel's acknowledgement; 0 means
	// DefaultAckTimeout.
	AckTimeout time.Duration
}

// Stats are counters of a Conn since Listen.
type Stats struct {
	Datagrams uint64 // datagrams received from the socket, from any sender
	Events    uint64 // kernel events returned by Read
	Overflows uint64 // losses (ENOBUFS), each returned as one EventOverflow once the queue was drained
	Discarded uint64 // kernel events received but not returned: acks, types outside Config.Events
	Malformed uint64 // datagrams from the kernel that failed to decode (events before the fault are kept)
	Foreign   uint64 // datagrams dropped because a process, not the kernel, sent them
}

// Conn is a subscription to the proc connector.
type Conn struct {
	f      *os.File
	raw    syscall.RawConn
	portID uint32 // our netlink port id (nlmsg_pid of requests)

	mask     What // requested kernel event types, eventAll when everything
	filtered bool // the kernel accepted the per-socket filter request

	// subscribed is set once the kernel acknowledged a listen request, so
	// Close knows it owes an IGNORE (sending one without a prior LISTEN
	// would decrement the kernel's global listener count on old kernels).
	subscribed bool

	// Reader state, owned by the goroutine in Read (or Listen before it).
	buf       []byte                    // slots × slotLen
	iovs      []unix.Iovec              // one per slot
	froms     []unix.RawSockaddrNetlink // senders, one per slot
	hdrs      []unix.Mmsghdr            // recvmmsg vector over the slots
	rdst      []Event                   // destination of receive
	rerr      unix.Errno                // hard error seen by receive
	receiveFn func(uintptr)             // one blocking receive, bound once (Listen's ack wait)
	waitFn    func(uintptr)             // c.wait, bound once
	readMu    sync.Mutex                // held by Read while it may use the descriptor
	released  bool                      // Close has seen every Read let go (under readMu)
	lost      bool                      // ENOBUFS seen and the queue not yet drained since (see markDrained)
	pending   []Event                   // received while Listen waited for the ack

	// rcvTimeout is the socket's SO_RCVTIMEO outside Listen's ack wait: 0
	// (none) when Close can wake Read with a datagram, else pollInterval
	// (see probeWake).
	rcvTimeout time.Duration

	closeOnce sync.Once
	closed    atomic.Bool
	closeErr  error

	datagrams, events, overflows, discarded, malformed, foreign atomic.Uint64
}

// Filtered reports whether the kernel filters events for this socket
// (kernel 6.6+). Without it every event type reaches the socket and Read
// discards the unwanted ones, which costs receive-buffer space.
func (c *Conn) Filtered() bool { return c.filtered }

// ReceiveBuffer returns the socket's receive buffer size as the kernel
// accounts it (SO_RCVBUF: twice the requested size).
func (c *Conn) ReceiveBuffer() (int, error) {
	var n int
	var serr error
	err := c.raw.Control(func(fd uintptr) {
		n, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return 0, fmt.Errorf("kernel: reading SO_RCVBUF: %w", err)
	}
	return n, nil
}

// Stats returns the counters. Safe from any goroutine.
func (c *Conn) Stats() Stats {
	return Stats{
		Datagrams: c.datagrams.Load(),
		Events:    c.events.Load(),
		Overflows: c.overflows.Load(),
		Discarded: c.discarded.Load(),
		Malformed: c.malformed.Load(),
		Foreign:   c.foreign.Load(),
	}
}

// Close unsubscribes (PROC_CN_MCAST_IGNORE, best effort) and closes the
// socket, waking a blocked Read, which returns ErrClosed. It may be called
// from any goroutine, more than once; later calls return the first result.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		if c.subscribed {
			// Best effort: the kernel also forgets the socket when it closes;
			// the request keeps its listener count (which gates whether
			// events are generated at all) accurate on older kernels.
			_, _ = c.send(procCnMcastIgnore, 0, 0)
		}
		if c.rcvTimeout == 0 {
			// Wakes a Read blocked in recvmmsg, or makes its next receive
			// return at once (see probeWake). A failure leaves Read blocked
			// until the next event: report it.
			if err := c.wake(); err != nil {
				c.closeErr = err
			}
		}
		if err := c.f.Close(); err != nil && c.closeErr == nil {
			c.closeErr = fmt.Errorf("kernel: closing the netlink socket: %w", err)
		}
		// The descriptor is released when a Read in progress lets go of it:
		// wait for that, so that after Close the socket is really gone.
		c.readMu.Lock()
		c.released = true
		c.readMu.Unlock()
	})
	return c.closeErr
}
