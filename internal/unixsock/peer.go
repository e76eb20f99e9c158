package unixsock

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// PeerCred returns the credentials of the process at the other end of c
// (SO_PEERCRED: the connecting process, as of its connect; for a client,
// the process that called listen).
func PeerCred(c *net.UnixConn) (*unix.Ucred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	if cerr != nil {
		return nil, fmt.Errorf("SO_PEERCRED: %w", cerr)
	}
	return cred, nil
}

// PeerCheck is the check of the root-only sockets (the status socket, and
// --metrics unix:PATH): what they say names rules and counts other users'
// tasks, so a peer that is not root is turned away before a byte is
// exchanged, even if it got through the socket file's mode (0600) with
// CAP_DAC_OVERRIDE. A peer whose credentials cannot be read is turned away
// too, unreported.
type PeerCheck struct {
	// Allowed decides by the peer's uid; nil lets root (uid 0) only.
	Allowed func(uid uint32) bool
	// Refused, if not nil, is told of every peer turned away, before the
	// caller closes its connection (so that a client that sees its
	// connection end finds the refusal logged). It should log,
	// rate-limited, and must not block.
	Refused func(uid uint32, pid int32)
}

// Admit reports whether c's peer may be served.
func (p PeerCheck) Admit(c *net.UnixConn) bool {
	cred, err := PeerCred(c)
	if err != nil {
		return false
	}
	if p.Allowed == nil && cred.Uid == 0 || p.Allowed != nil && p.Allowed(cred.Uid) {
		return true
	}
	if p.Refused != nil {
		p.Refused(cred.Uid, cred.Pid)
	}
	return false
}
