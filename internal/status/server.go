package status

import (
	"encoding/json"
	"fmt"
	"net"
	"time"

	"github.com/cgrulesengd/cgrulesengd/internal/unixsock"
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
	srv     *unixsock.Server
	report  func() *Report
	refused func(uid uint32, pid int32)
	allowed func(uid uint32) bool // root only (tests decide themselves)
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
	s := &Server{report: report, refused: refused, allowed: allowed}
	s.srv = unixsock.Serve(ln, maxClients, s.serve, nil)
	return s, nil
}

// Path is the socket's path.
func (s *Server) Path() string { return s.srv.Path() }

// Close stops serving, ends the clients being served and removes the
// socket file if it is still ours.
func (s *Server) Close() error { return s.srv.Close() }

func (s *Server) serve(c *net.UnixConn) {
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
