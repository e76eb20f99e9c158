package kernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

const (
	// DefaultReceiveBuffer is the receive buffer requested when
	// Config.ReceiveBuffer is 0. The kernel charges each queued 76-byte
	// event its skb truesize, about 680 bytes (measured on 6.18: a 4 KiB
	// request, accounted as 8 KiB, holds 12 events). 8 MiB, accounted as
	// 16 MiB, thus holds ~24 000 events: 0.4 s of the 60 000 events/s fork
	// storm in which libcgroup (default buffer, ~300 events) lost millions,
	// enough to ride out a descheduled reader or a GC pause. The memory is
	// pinned only while events are queued, and there is one such socket per
	// host.
	DefaultReceiveBuffer = 8 << 20

	// DefaultAckTimeout bounds each wait for the kernel's acknowledgement.
	// The ack is sent synchronously from within our sendmsg(2), so on a
	// kernel that understands the request it is already queued when send
	// returns; the timeout is only ever reached on kernels older than 6.6
	// (probe for filtering, then fall back) or from outside the init
	// namespaces. It must stay short: the daemon has to be ready in 0.2 s.
	DefaultAckTimeout = 250 * time.Millisecond

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
	buf        []byte                    // slots × slotLen
	iovs       []unix.Iovec              // one per slot
	froms      []unix.RawSockaddrNetlink // senders, one per slot
	hdrs       []unix.Mmsghdr            // recvmmsg vector over the slots
	rdst       []Event                   // destination of receive
	rerr       unix.Errno                // hard error seen by receive
	receiveFn  func(uintptr) bool        // c.receive, bound once so Read does not allocate
	waitFn     func(uintptr)             // c.wait, bound once
	pfd        [1]unix.PollFd            // poll(2) vector for wait
	readMu     sync.Mutex                // held by Read while it may use the descriptor
	released   bool                      // Close has seen every Read let go (under readMu)
	drained    bool                      // the last receive emptied the socket: poll before reading
	lost       bool                      // ENOBUFS seen and the queue not yet drained since (see markDrained)
	pending    []Event                   // received while Listen waited for the ack
	deliverAll bool                      // tests only: skip user-space filtering

	closeOnce sync.Once
	closed    atomic.Bool
	closeErr  error

	datagrams, events, overflows, discarded, malformed, foreign atomic.Uint64
}

// Filter support as probed by the first Listen that got an answer; later
// Listens on a kernel without it skip the probe and its timeout.
const (
	filterUnknown int32 = iota
	filterSupported
	filterUnsupported
)

var filterSupport atomic.Int32

// probePad lengthens the filter probe; tests set it so that this kernel
// ignores the probe the way a pre-6.6 kernel ignores any 8-byte request.
var probePad = 0

// seqCounter numbers our requests (cn_msg.seq, nlmsg_seq). The kernel does
// not echo it: the ack's seq is overwritten with the per-CPU event counter.
var seqCounter atomic.Uint32

// newTag returns a cn_msg.ack value for a request. The kernel echoes it + 1
// in the acknowledgement, and acks are multicast to every listener, so this
// is the only way to tell ours from others'. Random, so it collides neither
// with other processes (which mostly send 0) nor with our earlier requests;
// never so large that +1 wraps to 0.
func newTag() uint32 {
	for {
		if t := rand.Uint32(); t > 1<<16 && t < math.MaxUint32 {
			return t
		}
	}
}

// Listen opens a proc connector socket, sizes its receive buffer, subscribes
// (with a kernel-side event filter where supported) and waits for the
// kernel's acknowledgement. Events that arrive meanwhile are kept for Read.
//
// Errors wrap the cause: errors.Is(err, unix.EPERM) without CAP_NET_ADMIN
// on kernels before 6.6 (later ones let anyone listen; see the package doc),
// ErrNoAck when the kernel ignores the request (not in the initial user and
// PID namespaces), ErrNotSupported without a netlink connector.
func Listen(cfg Config) (*Conn, error) {
	if cfg.ReceiveBuffer < 0 {
		return nil, fmt.Errorf("kernel: negative receive buffer size %d", cfg.ReceiveBuffer)
	}
	if cfg.AckTimeout < 0 {
		return nil, fmt.Errorf("kernel: negative ack timeout %v", cfg.AckTimeout)
	}
	if bad := cfg.Events &^ (eventAll | EventOverflow); bad != 0 {
		return nil, fmt.Errorf("kernel: unknown event types %v in Config.Events", bad)
	}
	mask := cfg.Events &^ EventOverflow
	if mask == 0 {
		if cfg.Events != 0 {
			return nil, errors.New("kernel: Config.Events asks for no kernel event type (EventOverflow is always delivered)")
		}
		mask = eventAll
	}
	rcvbuf := cfg.ReceiveBuffer
	if rcvbuf == 0 {
		rcvbuf = DefaultReceiveBuffer
	}
	timeout := cfg.AckTimeout
	if timeout == 0 {
		timeout = DefaultAckTimeout
	}

	s, err := nl.Subscribe(unix.NETLINK_CONNECTOR, cnIdxProc)
	if err != nil {
		if errors.Is(err, unix.EPROTONOSUPPORT) {
			return nil, fmt.Errorf("kernel: opening a NETLINK_CONNECTOR socket: %w: %w", ErrNotSupported, err)
		}
		return nil, fmt.Errorf("kernel: joining the proc connector multicast group (needs CAP_NET_ADMIN before Linux 6.6): %w", err)
	}
	if err := s.SetReceiveBufferSize(rcvbuf, true); err != nil {
		// Since Linux 6.6 any user may listen, but SO_RCVBUFFORCE still
		// needs CAP_NET_ADMIN. Then take what SO_RCVBUF gives (capped at
		// net.core.rmem_max); Conn.ReceiveBuffer tells the caller.
		if !errors.Is(err, unix.EPERM) || s.SetReceiveBufferSize(rcvbuf, false) != nil {
			s.Close()
			return nil, fmt.Errorf("kernel: setting the receive buffer to %d bytes: %w", rcvbuf, err)
		}
	}
	// nl.NetlinkSocket keeps its *os.File private and its Receive allocates
	// per call, so the Conn reads through a duplicate descriptor wrapped in
	// its own *os.File: that registers it with the runtime poller, which
	// gives blocking reads without a blocked thread, read deadlines for the
	// ack wait, and a Close that wakes a blocked Read and defers the real
	// close(2) until that Read has let go of the descriptor.
	fd, err := unix.FcntlInt(uintptr(s.GetFd()), unix.F_DUPFD_CLOEXEC, 0)
	s.Close()
	if err != nil {
		return nil, fmt.Errorf("kernel: duplicating the netlink socket: %w", err)
	}
	// The duplicate shares the file description, so it is non-blocking too
	// and NewFile makes it pollable.
	f := os.NewFile(uintptr(fd), "netlink:proc-connector")
	c := newConn(f, mask)
	if c.raw, err = f.SyscallConn(); err != nil {
		f.Close()
		return nil, fmt.Errorf("kernel: %w", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("kernel: reading the netlink port id: %w", err)
	}
	if nsa, ok := sa.(*unix.SockaddrNetlink); ok {
		c.portID = nsa.Pid
	}
	if err := c.subscribe(timeout); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.leavePoller(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// leavePoller moves the socket out of the runtime's netpoller once the
// subscription is acknowledged. Read waits in poll(2) itself; a descriptor
// still registered with the runtime's (edge-triggered) epoll would wake an
// idle runtime thread for every datagram the kernel queues, which under a
// fork storm cost more CPU than reading the events. The new *os.File wraps
// a blocking duplicate, which the runtime does not register; reads use
// MSG_DONTWAIT, and RawConn.Control still keeps Close from freeing the
// descriptor number under a Read.
func (c *Conn) leavePoller() error {
	var nfd int
	var derr error
	if err := c.raw.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	if derr != nil {
		return fmt.Errorf("kernel: duplicating the netlink socket: %w", derr)
	}
	if err := unix.SetNonblock(nfd, false); err != nil {
		unix.Close(nfd)
		return fmt.Errorf("kernel: %w", err)
	}
	f := os.NewFile(uintptr(nfd), c.f.Name())
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return fmt.Errorf("kernel: %w", err)
	}
	old := c.f
	c.f, c.raw = f, raw
	old.Close()
	return nil
}

// subscribe sends the listen request(s) and waits for the acknowledgement.
func (c *Conn) subscribe(timeout time.Duration) error {
	var probeTag uint32
	if filterSupport.Load() != filterUnsupported {
		// 8-byte proc_input with mask "all": acknowledged by 6.6+ kernels
		// (acks only pass a filter whose mask is "all"), ignored by older.
		var err error
		if probeTag, err = c.send(procCnMcastListen, eventAll, true); err != nil {
			return err
		}
		tag, ackErr, err := c.waitAck(timeout, probeTag, 0)
		if err != nil {
			return err
		}
		if tag != 0 {
			if ackErr != 0 {
				return fmt.Errorf("kernel: proc connector listen request refused: %w", unix.Errno(ackErr))
			}
			c.filtered = true
		}
	}
	if !c.filtered {
		tag4, err := c.send(procCnMcastListen, 0, false)
		if err != nil {
			return err
		}
		// A late ack of the probe still proves filter support.
		tag, ackErr, err := c.waitAck(timeout, tag4, probeTag)
		if err != nil {
			return err
		}
		if tag == 0 {
			if lost(c.pending) {
				// The ack may have been among the dropped events.
				return fmt.Errorf("kernel: no acknowledgement within %v, but the receive buffer overflowed meanwhile (too small for this system's event rate?): %w", timeout, ErrNoAck)
			}
			return fmt.Errorf("kernel: no acknowledgement within %v: %w", timeout, ErrNoAck)
		}
		if ackErr != 0 {
			return fmt.Errorf("kernel: proc connector listen request refused: %w", unix.Errno(ackErr))
		}
		c.filtered = tag == probeTag
	}
	c.subscribed = true
	if c.filtered {
		filterSupport.Store(filterSupported)
	} else if probeTag != 0 && !lost(c.pending) {
		// Only a clean "4-byte acked, 8-byte not" is proof; a probe ack lost
		// to an overflow is not.
		filterSupport.Store(filterUnsupported)
	}
	if c.filtered && c.mask != eventAll {
		// Processed synchronously inside sendmsg; there will be no ack for
		// us (it does not pass the filter), and errors (EINVAL for a bad
		// op) cannot happen for LISTEN.
		if _, err := c.send(procCnMcastListen, c.mask, true); err != nil {
			return err
		}
	}
	return nil
}

// send sends one proc connector control message: op as the classic 4-byte
// request, or with mask as an 8-byte struct proc_input.
// It returns the request's tag: the ack carries tag+1.
func (c *Conn) send(op uint32, mask What, withMask bool) (tag uint32, err error) {
	seq := seqCounter.Add(1)
	tag = newTag()
	dlen := 4
	if withMask {
		dlen = 8 + probePad
	}
	b := make([]byte, nlmsgHdrLen+cnMsgLen+dlen)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], unix.NLMSG_DONE) // the connector's message type, both ways
	ne.PutUint16(b[6:], 0)
	ne.PutUint32(b[8:], seq)
	ne.PutUint32(b[12:], c.portID)
	m := b[nlmsgHdrLen:]
	ne.PutUint32(m[0:], cnIdxProc)
	ne.PutUint32(m[4:], cnValProc)
	ne.PutUint32(m[8:], seq)
	ne.PutUint32(m[12:], tag) // echoed back +1: tells our acks from others'
	ne.PutUint16(m[16:], uint16(dlen))
	ne.PutUint16(m[18:], 0)
	ne.PutUint32(m[20:], op)
	if withMask {
		ne.PutUint32(m[24:], uint32(mask))
	}
	var serr error
	kernelAddr := &unix.SockaddrNetlink{Family: unix.AF_NETLINK}
	err = c.raw.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), b, 0, kernelAddr)
		return serr != unix.EAGAIN
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return 0, fmt.Errorf("kernel: sending proc connector request (op %d, %d bytes): %w", op, dlen, err)
	}
	return tag, nil
}

// waitAck reads until the kernel acknowledges one of our requests tagged
// tagA or tagB (0 = unused) or timeout passes. It returns the acknowledged
// tag (0 on timeout) and the ack's error field. Everything else received is
// kept in c.pending for the first Read; acks are dropped.
func (c *Conn) waitAck(timeout time.Duration, tagA, tagB uint32) (tag, ackErr uint32, err error) {
	if err := c.f.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return 0, 0, fmt.Errorf("kernel: %w", err)
	}
	defer c.f.SetReadDeadline(time.Time{})
	full := len(c.pending) >= maxPending
	for tag == 0 {
		start := len(c.pending)
		c.rdst, c.rerr = c.pending, 0
		rerr := c.raw.Read(c.receiveFn)
		c.pending, c.rdst = c.rdst, nil
		if errors.Is(rerr, os.ErrDeadlineExceeded) {
			return 0, 0, nil
		}
		if rerr != nil {
			return 0, 0, fmt.Errorf("kernel: waiting for the ack: %w", rerr)
		}
		if c.rerr != 0 {
			return 0, 0, fmt.Errorf("kernel: waiting for the ack: %w", c.rerr)
		}
		// Drop acks (ours and other listeners') from what Read will see.
		kept := start
		for i := start; i < len(c.pending); i++ {
			e := c.pending[i]
			if e.What == EventNone {
				if t := e.Ack - 1; t != 0 && (t == tagA || t == tagB) {
					tag, ackErr = t, e.Err
				}
				c.discarded.Add(1)
				continue
			}
			c.pending[kept] = e
			kept++
		}
		c.pending = c.pending[:kept]
		if full {
			c.pending = c.pending[:start] // already ends with an overflow
		} else if len(c.pending) >= maxPending {
			c.pending = append(c.pending[:maxPending-1], Event{What: EventOverflow, Timestamp: Now()})
			full = true
		}
	}
	return tag, ackErr, nil
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
	c.receiveFn = c.receive
	c.waitFn = c.wait
	return c
}

// receive is the raw read callback: it drains up to maxBatch datagrams
// without blocking, decoding them into c.rdst. It returns false (wait for
// the socket to become readable) only when nothing at all was received.
func (c *Conn) receive(fd uintptr) bool {
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
		n, errno := c.recvmmsg(fd, want)
		switch errno {
		case 0:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			c.drained = true
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
			if c.froms[i].Pid != 0 {
				c.foreign.Add(1)
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
			// Fewer datagrams than asked for: the queue is empty. Saying
			// so spares the next Read a recvmmsg that would fail with
			// EAGAIN before it polls (a syscall per event on an idle
			// machine).
			c.drained = true
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

// pollInterval bounds how long Read sleeps in poll(2) before it looks at
// the closed flag again: Close cannot interrupt poll, so this is how long
// Close may take to wake a blocked Read.
const pollInterval = 50 // ms

// wait drains the socket, sleeping in poll(2) on this goroutine's thread
// while it is empty. Waiting in the runtime's netpoller instead costs a
// park, an epoll wake-up and a hand-off between threads for every event;
// at a few thousand events per second that measured ~80 µs of CPU per event
// on a 2-vCPU VM, against a few µs for a blocking poll(2). Running inside
// RawConn.Control keeps the descriptor referenced, so a concurrent Close
// cannot let its number be reused under us.
func (c *Conn) wait(fd uintptr) {
	for !c.closed.Load() {
		if !c.drained && c.receive(fd) {
			return
		}
		c.drained = false
		c.pfd[0] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
		if _, err := unix.Poll(c.pfd[:], pollInterval); err != nil && err != unix.EINTR {
			c.rerr = err.(unix.Errno)
			return
		}
	}
}

// recvmmsg receives up to vlen datagrams into the first vlen slots.
// (x/sys/unix has no wrapper; its Recvfrom would also allocate a Sockaddr
// per datagram, and the sender's port id is all we need.)
func (c *Conn) recvmmsg(fd uintptr, vlen int) (int, unix.Errno) {
	for i := range vlen {
		// In/out: the kernel overwrites it with the address's length.
		c.hdrs[i].Hdr.Namelen = unix.SizeofSockaddrNetlink
	}
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd,
		uintptr(unsafe.Pointer(&c.hdrs[0])), uintptr(vlen),
		unix.MSG_DONTWAIT, 0, 0)
	return int(n), errno
}

// keep compacts dst[start:] to the events the caller asked for and counts.
func (c *Conn) keep(dst []Event, start int) []Event {
	// Counted locally and published once: this runs for every event.
	out := start
	var discarded, overflows uint64
	for i := start; i < len(dst); i++ {
		if !c.deliverAll && !c.wants(&dst[i]) {
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
			_, _ = c.send(procCnMcastIgnore, 0, false)
		}
		if err := c.f.Close(); err != nil {
			c.closeErr = fmt.Errorf("kernel: closing the netlink socket: %w", err)
		}
		// The descriptor is released when a Read in progress lets go of it
		// (within pollInterval): wait for that, so that after Close the
		// socket is really gone.
		c.readMu.Lock()
		c.released = true
		c.readMu.Unlock()
	})
	return c.closeErr
}

// lost reports whether evs contains an overflow marker.
func lost(evs []Event) bool {
	for i := range evs {
		if evs[i].What == EventOverflow {
			return true
		}
	}
	return false
}

// Now is CLOCK_MONOTONIC in ns: the clock of Event.Timestamp, for
// comparing event times with the caller's. unix.ClockGettime is a real
// system call; the runtime's monotonic clock (behind time.Since) reads the
// same clock through the vDSO, so it is read once and offset from then on.
func Now() uint64 {
	return monoBase + uint64(time.Since(monoStart))
}

var monoBase, monoStart = func() (uint64, time.Time) {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano()), time.Now()
}()
