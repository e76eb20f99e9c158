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

// procInputLen is the length of struct proc_input, the filtered listen
// request of Linux 6.6+.
const procInputLen = 8

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
	return listenWith(cfg, procInputLen)
}

// listenWith is Listen with the length of the filtered listen request as a
// parameter: the tests lengthen it, so that this kernel ignores it the way
// a kernel older than 6.6 ignores any request of that length.
func listenWith(cfg Config, probeLen int) (*Conn, error) {
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
	// nl.NetlinkSocket keeps its descriptor private and allocates on every
	// receive, so the Conn takes a duplicate of the (blocking) socket and
	// wraps it in an *os.File of its own. A blocking descriptor is never
	// registered with the runtime's poller: Read waits in recvmmsg(2) on
	// its own thread (see Conn.wait for why), and the *os.File only keeps
	// Close from releasing the descriptor number under a Read
	// (RawConn.Control holds a reference).
	fd, err := unix.FcntlInt(uintptr(s.GetFd()), unix.F_DUPFD_CLOEXEC, 0)
	s.Close()
	if err != nil {
		return nil, fmt.Errorf("kernel: duplicating the netlink socket: %w", err)
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("kernel: %w", err)
	}
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
	if err := c.probeWake(); err != nil {
		f.Close()
		return nil, err
	}
	if err := c.subscribe(timeout, probeLen); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// probeWake finds out how Close will wake a blocked Read. Netlink sockets
// have no shutdown(2), and closing a descriptor does not interrupt a
// receive blocked on it, so Close sends the socket a datagram of its own
// (Conn.wake), which Read recognises by its sender (our own port id) and
// drops. Sending to a netlink port needs CAP_NET_ADMIN (the connector
// allows unprivileged processes to receive at most, on the kernels that do),
// so the first wake-up is sent here, where Read's ack wait drops it; if the
// kernel refuses it, the socket gets a receive timeout instead and a
// blocked Read looks at the closed flag every pollInterval.
func (c *Conn) probeWake() error {
	err := c.wake()
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EPERM):
		c.rcvTimeout = pollInterval
		return c.setReceiveTimeout(pollInterval)
	default:
		return err
	}
}

// wake sends the socket an empty message from itself (see probeWake). It
// never blocks: a full receive queue (EAGAIN) means Read has plenty to read
// and sees the closed flag after its next receive anyway.
func (c *Conn) wake() error {
	var b [nlmsgHdrLen]byte
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], nlmsgHdrLen)
	ne.PutUint16(b[4:], unix.NLMSG_NOOP)
	ne.PutUint32(b[12:], c.portID)
	self := &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Pid: c.portID}
	var serr error
	if err := c.raw.Control(func(fd uintptr) {
		serr = unix.Sendto(int(fd), b[:], unix.MSG_DONTWAIT, self)
	}); err != nil {
		return fmt.Errorf("kernel: waking the reader: %w", err)
	}
	if serr != nil && serr != unix.EAGAIN {
		return fmt.Errorf("kernel: sending the socket's wake-up datagram to itself: %w", serr)
	}
	return nil
}

// setReceiveTimeout sets SO_RCVTIMEO (0: wait for ever).
func (c *Conn) setReceiveTimeout(d time.Duration) error {
	tv := unix.NsecToTimeval(d.Nanoseconds())
	var serr error
	if err := c.raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptTimeval(int(fd), unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	}); err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("kernel: setting SO_RCVTIMEO to %v: %w", d, serr)
	}
	return nil
}

// subscribe sends the listen request(s) and waits for the acknowledgement.
func (c *Conn) subscribe(timeout time.Duration, probeLen int) error {
	var probeTag uint32
	if filterSupport.Load() != filterUnsupported {
		// 8-byte proc_input with mask "all": acknowledged by 6.6+ kernels
		// (acks only pass a filter whose mask is "all"), ignored by older.
		var err error
		if probeTag, err = c.send(procCnMcastListen, eventAll, probeLen); err != nil {
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
		tag4, err := c.send(procCnMcastListen, 0, 0)
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
		if _, err := c.send(procCnMcastListen, c.mask, procInputLen); err != nil {
			return err
		}
	}
	return nil
}

// send sends one proc connector control message: op as the classic 4-byte
// request (maskLen 0), or with mask as a struct proc_input of maskLen bytes
// (procInputLen; the tests send longer ones).
// It returns the request's tag: the ack carries tag+1.
func (c *Conn) send(op uint32, mask What, maskLen int) (tag uint32, err error) {
	seq := seqCounter.Add(1)
	tag = newTag()
	dlen := 4
	if maskLen > 0 {
		dlen = maskLen
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
	if maskLen > 0 {
		ne.PutUint32(m[24:], uint32(mask))
	}
	var serr error
	kernelAddr := &unix.SockaddrNetlink{Family: unix.AF_NETLINK}
	// The kernel handles the request within sendmsg(2): it does not block.
	err = c.raw.Control(func(fd uintptr) {
		serr = unix.Sendto(int(fd), b, 0, kernelAddr)
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
//
// The socket blocks; each receive waits at most for what is left of the
// timeout (SO_RCVTIMEO), which is reset afterwards.
func (c *Conn) waitAck(timeout time.Duration, tagA, tagB uint32) (tag, ackErr uint32, err error) {
	deadline := time.Now().Add(timeout)
	defer c.setReceiveTimeout(c.rcvTimeout)
	full := len(c.pending) >= maxPending
	for tag == 0 {
		left := time.Until(deadline)
		if left <= 0 {
			return 0, 0, nil
		}
		// SO_RCVTIMEO rounds to microseconds, and 0 would wait for ever.
		if err := c.setReceiveTimeout(max(left, time.Microsecond)); err != nil {
			return 0, 0, err
		}
		start := len(c.pending)
		c.rdst, c.rerr = c.pending, 0
		rerr := c.raw.Control(c.receiveFn)
		c.pending, c.rdst = c.rdst, nil
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
