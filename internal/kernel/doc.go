// Package kernel is the daemon's only contact with the Linux proc connector:
// the netlink multicast channel (NETLINK_CONNECTOR, CN_IDX_PROC) on which the
// kernel reports process events — fork, exec, credential changes, exit.
//
// It does two things and nothing else:
//
//   - Decode turns one received datagram into Events. It is a pure function
//     over bytes (explicit native-endian decoding, no reflection, no
//     allocation beyond growing dst) so it can be fuzzed and benchmarked
//     without a kernel.
//   - Listen / Conn.Read / Conn.Close own the socket: subscription, the
//     kernel's acknowledgement, per-listener event filtering where the kernel
//     offers it, overflow reporting, and shutdown.
//
// # Reading
//
// Read waits on its caller's thread in a blocking recvmmsg(2) with no
// timeout (the socket is never registered with the runtime's poller: that
// cost a thread wake-up per event), so an idle reader sleeps until an event
// comes and makes one system call per wake-up, taking up to 64 datagrams per
// call, decoded without allocation into the caller's slice. Netlink sockets
// cannot be shut down and a close(2) does not interrupt a receive, so Close
// wakes a blocked Read by sending the socket a datagram from itself (to its
// own port id), which Read drops. Sending to a netlink port needs
// CAP_NET_ADMIN; Listen tries it once, and a socket that may not (an
// unprivileged listener, on kernels that allow those) gets a 50 ms receive
// timeout instead, so that its Read notices Close.
//
// # Privileges
//
// Joining the proc connector's multicast group needs CAP_NET_ADMIN on most
// kernels: bind(2) fails with EPERM without it, and Listen returns that
// error, naming CAP_NET_ADMIN. Linux 6.6 let any user listen, but kernel
// builds of 6.6 and later still refuse (6.18.44 on this project's machines
// does), so whether an unprivileged process may listen is a property of the
// running kernel, found by trying, never inferred from its version. Where
// the kernel allows it, CAP_NET_ADMIN only buys SO_RCVBUFFORCE, and without
// it Listen falls back to SO_RCVBUF, which the kernel caps at
// net.core.rmem_max (Conn.ReceiveBuffer reports the result).
// On every kernel the process must live in the initial user and PID
// namespaces: the kernel silently ignores listen requests from anywhere else,
// so from a container Listen fails with ErrNoAck after waiting for the
// acknowledgement that never comes. PIDs in events are global (init PID
// namespace) and ids are mapped into the init user namespace.
//
// # Event filtering
//
// Kernels 6.6 and later accept an 8-byte listen request (struct proc_input)
// that carries an event-type mask, and then only deliver the requested types
// to this socket. Older kernels silently drop a request of that size. Listen
// therefore probes: it subscribes with the 8-byte form and, if no
// acknowledgement arrives within Config.AckTimeout, falls back to the classic
// 4-byte PROC_CN_MCAST_LISTEN. The outcome is cached for the process, so only
// the first Listen on an old kernel pays the timeout. Whatever the kernel
// does, Read only returns the requested types: events outside the mask are
// dropped in user space too (which also covers the short window between
// subscribing and installing the filter).
//
// The kernel does not deliver acknowledgements through a filter whose mask is
// not "all events" (an ack has event type 0). Listen therefore first
// subscribes for all events, waits for that ack, and only then narrows the
// mask; the kernel applies that second request synchronously within
// sendmsg(2), so it needs no acknowledgement of its own.
//
// # Loss
//
// Netlink delivery is unreliable by design: when the socket's receive buffer
// is full the kernel drops events and the next receive fails once with
// ENOBUFS; from then on it drops every event for the socket until the queue
// has been read empty. Read keeps reading the backlog and, at the receive
// that drains it, returns an Event with What == EventOverflow (counted in
// Stats.Overflows): events before the marker were queued before the loss,
// events after it are delivered again. The consumer must resynchronise
// (rescan /proc), starting no earlier than the marker: a scan that starts at
// ENOBUFS, with the backlog still queued, misses whatever changes while the
// backlog is read. Events received while Listen waits for the acknowledgement are
// kept and returned by the first Read, so subscribing before scanning /proc
// leaves no gap.
//
// Only datagrams sent by the kernel (sender port id 0) are decoded: any
// local process may unicast to a netlink socket, and forged exec or setuid
// events would otherwise steer classification.
//
// # Concurrency
//
// Read must be called from one goroutine at a time (the daemon's reader).
// Stats and Close may be called from any goroutine at any time; Close
// unblocks a Read blocked in the kernel at once (within 50 ms for an
// unprivileged listener), which then returns ErrClosed. Close is
// idempotent. Decode is safe for concurrent use.
package kernel
