package status

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/cgrulesengd/cgrulesengd/unixsock"
)

// DefaultPath is the socket every daemon creates unless told otherwise.
const DefaultPath = "/run/cgrulesengd.sock"

// Mode is the socket file's permission: root only.
const Mode = 0o600

const maxClients = 4 // served at once; more wait in the backlog

// clientTimeout is how long one client may take to read its report (a
// variable for tests).
var clientTimeout = 2 * time.Second

// Server serves Reports. Create it with Listen; Close stops it.
type Server struct {
	ln      *unixsock.Listener
	report  func() *Report
	refused func(uid uint32, pid int32)
	allowed func(uid uint32) bool // root only (tests decide themselves)

	slots   chan struct{}
	closing chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
}

// Listen creates the socket at path (mode 0600, the daemon's owner; see
// unixsock for an existing file) and serves report() to every root peer
// until Close. refused (may be nil) is told of every other peer; it should
// log, rate-limited.
func Listen(path string, report func() *Report, refused func(uid uint32, pid int32)) (*Server, error) {
	return listen(path, report, refused, func(uid uint32) bool { return uid == 0 })
}

func listen(path string, report func() *Report, refused func(uid uint32, pid int32), allowed func(uint32) bool) (*Server, error) {
	ln, err := unixsock.Listen(path, Mode, -1, -1)
	if err != nil {
		return nil, fmt.Errorf("status %w", err)
	}
	s := &Server{
		ln: ln, report: report, refused: refused,
		allowed: allowed,
		slots:   make(chan struct{}, maxClients),
		closing: make(chan struct{}),
	}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Path is the socket's path.
func (s *Server) Path() string { return s.ln.Path() }

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		select {
		case s.slots <- struct{}{}:
		case <-s.closing:
			return
		}
		c, err := s.ln.AcceptUnix()
		if err != nil {
			<-s.slots
			select {
			case <-s.closing:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // EMFILE and the like: do not spin
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { <-s.slots }()
			s.serve(c)
		}()
	}
}

func (s *Server) serve(c *net.UnixConn) {
	defer c.Close()
	cred, err := unixsock.PeerCred(c)
	if err != nil {
		return
	}
	if !s.allowed(cred.Uid) {
		if s.refused != nil {
			s.refused(cred.Uid, cred.Pid)
		}
		return
	}
	_ = c.SetWriteDeadline(time.Now().Add(clientTimeout))
	_ = json.NewEncoder(c).Encode(s.report())
}

// Close stops serving, waits for the clients being served (at most their
// deadline) and removes the socket file if it is still ours.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		close(s.closing)
		err = s.ln.Close()
		s.wg.Wait()
	})
	return err
}
