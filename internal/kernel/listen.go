package kernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

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
// on kernels that refuse unprivileged listeners (see the package doc),
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
		return nil, fmt.Errorf("kernel: joining the proc connector multicast group (this kernel needs CAP_NET_ADMIN for it): %w", err)
	}
	if err := s.SetReceiveBufferSize(rcvbuf, true); err != nil {
		// A kernel that lets any user listen still wants CAP_NET_ADMIN
		// for SO_RCVBUFFORCE. Then take what SO_RCVBUF gives (capped at
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
// subscription is acknowledged. Read waits in a blocking recvmmsg(2) itself; a descriptor
// still registered with the runtime's (edge-triggered) epoll would wake an
// idle runtime thread for every datagram the kernel queues, which under a
// fork storm cost more CPU than reading the events. The new *os.File wraps
// a blocking duplicate, which the runtime does not register, with a receive
// timeout (SO_RCVTIMEO, pollInterval) so that a blocked Read notices Close;
// RawConn.Control still keeps Close from freeing the descriptor number
// under a Read.
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
	// A blocking receive returns EAGAIN after this long, so that Read sees
	// Close (see pollInterval).
	tv := unix.NsecToTimeval(pollInterval.Nanoseconds())
	if err := unix.SetsockoptTimeval(nfd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(nfd)
		return fmt.Errorf("kernel: setting SO_RCVTIMEO: %w", err)
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

// lost reports whether evs contains an overflow marker.
func lost(evs []Event) bool {
	for i := range evs {
		if evs[i].What == EventOverflow {
			return true
		}
	}
	return false
}
