package sticky

import (
	"errors"
	"io"
	"net"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/cgrulesengd/cgrulesengd/internal/proc"
	"github.com/cgrulesengd/cgrulesengd/internal/ratelimit"
	"github.com/cgrulesengd/cgrulesengd/internal/unixsock"
)

// Marks is where the server carries requests out: *classify.Marks in the
// daemon, a fake in tests. Its methods must not block.
type Marks interface {
	// Mark marks process pid, which started at start (proc.Ident's
	// StartTime); children: its future children too; by: the client's uid
	// (a mark made by a user other than root must not outlive the
	// process's uids being all that user's). added is false when the
	// process was marked already (its first flags stay).
	Mark(pid int32, start uint64, children bool, by uint32) (added bool, err error)
	// Unmark cancels pid's mark.
	Unmark(pid int32) bool
	// Forget drops pid's mark if it was made for the process that started
	// at start.
	Forget(pid int32, start uint64)
	// Refused counts a request that was not carried out.
	Refused()
}

// Procs reads who a process is: proc.FS in the daemon.
type Procs interface {
	Ident(pid int) (proc.Ident, error)
}

// Config configures a Server. Path, Marks, Procs and Log are required.
type Config struct {
	Path     string // socket path; DefaultPath is what libcgroup's clients use
	UID, GID int    // owner and group of the socket file; -1 keeps the daemon's
	Marks    Marks
	Procs    Procs
	Log      *logrus.Logger

	// MaxClients is how many clients are served at once (default 64: a
	// goroutine and a descriptor each); more wait in the listen backlog
	// until one is done, so N clients that send nothing delay the next
	// one by about N/MaxClients times Timeout.
	MaxClients int
	// Timeout is how long one client may take from its connect to the
	// reply (default 1 s); libcgroup's client sends its 8 bytes at once.
	Timeout time.Duration
}

// Server serves the sticky socket. Listen creates it and starts serving;
// Close stops it. Its goroutines are its own: the netlink reader never
// waits for a client.
type Server struct {
	cfg Config
	srv *unixsock.Server
	log *logrus.Logger

	refusals ratelimit.Limiter
}

// Listen creates the socket at cfg.Path (see listen for the handling of an
// existing file) and serves it until Close.
func Listen(cfg Config) (*Server, error) {
	if cfg.MaxClients <= 0 {
		cfg.MaxClients = 64
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Second
	}
	ln, err := listen(cfg.Path, cfg.UID, cfg.GID)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Log, refusals: ratelimit.Limiter{Burst: 5, Window: time.Second}}
	s.srv = unixsock.Serve(ln, cfg.MaxClients, s.serve, func(err error) {
		// Out of descriptors, say: the waiting clients keep.
		s.log.Errorf("sticky socket %s: accept: %v", cfg.Path, err)
	})
	return s, nil
}

// Path is the socket's path.
func (s *Server) Path() string { return s.cfg.Path }

// Close stops accepting, ends the connections being served, waits for
// their goroutines and removes the socket file (if it is still the one
// Listen created).
func (s *Server) Close() error { return s.srv.Close() }

// serve answers one client, within cfg.Timeout.
func (s *Server) serve(c *net.UnixConn) {
	_ = c.SetDeadline(time.Now().Add(s.cfg.Timeout))
	peer, err := unixsock.PeerCred(c)
	if err != nil {
		s.refuse(nil, 0, "no peer credentials: %v", err)
		return
	}
	// One byte of room past a request: a client that sends more in one go
	// is not libcgroup's.
	var buf [RequestSize + 1]byte
	n, err := io.ReadAtLeast(c, buf[:], RequestSize)
	if err != nil {
		var ne net.Error
		switch {
		case n == 0 && errors.Is(err, io.EOF):
			// Connected and closed: a probe (another daemon's start-up
			// check), nothing to count.
			s.log.WithFields(peerFields(peer)).Debug("sticky socket: a client closed without a request")
		case errors.As(err, &ne) && ne.Timeout():
			s.refuse(peer, 0, "no complete request within %v (%d of %d bytes)", s.cfg.Timeout, n, RequestSize)
		default:
			s.refuse(peer, 0, "incomplete request (%d of %d bytes): %v", n, RequestSize, err)
		}
		return
	}
	req, err := DecodeRequest(buf[:n])
	if err != nil {
		s.refuse(peer, 0, "%v", err)
		return
	}
	if !s.carryOut(peer, req) {
		return
	}
	if _, err := c.Write([]byte(Reply)); err != nil {
		// The request was carried out; the client left early.
		s.log.WithFields(peerFields(peer)).WithField("pid", req.PID).Debugf("sticky socket: reply not delivered: %v", err)
	}
}

// carryOut checks and carries out a request; false means no reply.
func (s *Server) carryOut(peer *unix.Ucred, req Request) bool {
	id, ok := s.live(peer, req, int(req.PID))
	if !ok {
		return false
	}
	if id.TGID != id.PID {
		// A thread id: the daemon moves whole processes, so the mark is
		// the process's.
		if id, ok = s.live(peer, req, id.TGID); !ok {
			return false
		}
	}
	pid := int32(id.TGID)
	if !allowed(peer, id) {
		s.refuse(peer, pid, "uid %d may mark only processes running as uid %d (real, effective and saved); pid %d runs as %d/%d/%d",
			peer.Uid, peer.Uid, pid, id.UID[0], id.UID[1], id.UID[2])
		return false
	}
	if req.Flags == FlagsCancel {
		had := s.cfg.Marks.Unmark(pid)
		s.log.WithFields(peerFields(peer)).WithFields(logrus.Fields{"pid": pid, "flags": req.Flags, "was_marked": had}).Debug("sticky socket: request carried out")
		return true
	}
	added, err := s.cfg.Marks.Mark(pid, id.StartTime, req.Flags == FlagsChildren, peer.Uid)
	if err != nil {
		s.refuse(peer, pid, "%v", err)
		return false
	}
	// If the process exited between the read above and the mark, its EXIT
	// may have been handled before the mark existed: the mark would wait
	// for the next process given this pid. Look again.
	if again, err := s.cfg.Procs.Ident(int(pid)); err != nil || again.Zombie || again.StartTime != id.StartTime {
		s.cfg.Marks.Forget(pid, id.StartTime)
		s.refuse(peer, pid, "pid %d exited while it was being marked", pid)
		return false
	}
	s.log.WithFields(peerFields(peer)).WithFields(logrus.Fields{"pid": pid, "flags": req.Flags, "added": added}).Debug("sticky socket: request carried out")
	return true
}

// live reads pid; a pid with no live process (absent, or a zombie) is
// refused, as libcgroup does, with no reply.
func (s *Server) live(peer *unix.Ucred, req Request, pid int) (proc.Ident, bool) {
	id, err := s.cfg.Procs.Ident(pid)
	switch {
	case err != nil && errors.Is(err, unix.ESRCH):
		s.refuse(peer, int32(pid), "no such process: pid %d (flags %v)", pid, req.Flags)
		return id, false
	case err != nil:
		s.refuse(peer, int32(pid), "reading pid %d: %v", pid, err)
		return id, false
	case id.Zombie:
		s.refuse(peer, int32(pid), "pid %d has exited (a zombie)", pid)
		return id, false
	}
	return id, true
}

// allowed is the access rule: root may mark any process; any other user
// (let in by the socket file's group) only processes whose real,
// effective and saved uids are all its own, so that it cannot pin another
// user's process; and since the mark remembers who made it (Mark's by), it
// cannot pin a set-uid program it starts later either: the engine drops
// the mark when the process's uids change.
func allowed(peer *unix.Ucred, id proc.Ident) bool {
	if peer.Uid == 0 {
		return true
	}
	return id.UID[0] == peer.Uid && id.UID[1] == peer.Uid && id.UID[2] == peer.Uid
}

// refuse counts a request that is not carried out and logs why, at warning
// level, a few lines a second at most (a hostile client must not flood the
// log); the next line that gets through says how many were left out.
func (s *Server) refuse(peer *unix.Ucred, pid int32, format string, args ...any) {
	s.cfg.Marks.Refused()
	n, ok := s.refusals.Allow(time.Now())
	if !ok {
		return
	}
	f := peerFields(peer)
	if pid != 0 {
		f["pid"] = pid
	}
	if n > 0 {
		f[ratelimit.NotLogged] = n
	}
	s.log.WithFields(f).Warnf("sticky socket: refused: "+format, args...)
}

func peerFields(peer *unix.Ucred) logrus.Fields {
	if peer == nil {
		return logrus.Fields{}
	}
	return logrus.Fields{"peer_uid": peer.Uid, "peer_pid": peer.Pid}
}
