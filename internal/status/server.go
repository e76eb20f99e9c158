package status

import (
	"bytes"
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

// clientTimeout is how long one client may take to read its report, from
// the moment the report is ready to be written: building and encoding it
// (which takes a while for thousands of rules on a busy machine) is not
// the client's time.
const clientTimeout = 2 * time.Second

// Server serves Reports. Create it with Listen; Close stops it.
type Server struct {
	srv     *unixsock.Server
	report  func() *Report
	check   unixsock.PeerCheck
	timeout time.Duration // clientTimeout (tests shorten it)
}

// Listen creates the socket at path (mode 0600, the daemon's owner; see
// unixsock for an existing file) and serves report() to every root peer
// until Close. refused (may be nil) is told of every other peer; it should
// log, rate-limited.
func Listen(path string, report func() *Report, refused func(uid uint32, pid int32)) (*Server, error) {
	return listen(path, report, unixsock.PeerCheck{Refused: refused}, clientTimeout)
}

func listen(path string, report func() *Report, check unixsock.PeerCheck, timeout time.Duration) (*Server, error) {
	ln, err := unixsock.Listen(path, Mode, -1, -1)
	if err != nil {
		return nil, fmt.Errorf("status %w", err)
	}
	s := &Server{report: report, check: check, timeout: timeout}
	s.srv = unixsock.Serve(ln, maxClients, s.serve, nil)
	return s, nil
}

// Path is the socket's path.
func (s *Server) Path() string { return s.srv.Path() }

// Close stops serving, ends the clients being served and removes the
// socket file if it is still ours.
func (s *Server) Close() error { return s.srv.Close() }

func (s *Server) serve(c *net.UnixConn) {
	if !s.check.Admit(c) {
		return
	}
	var b bytes.Buffer
	if err := json.NewEncoder(&b).Encode(s.report()); err != nil {
		return
	}
	// The deadline starts once the report is ready: a client that does
	// not read holds its slot for s.timeout, and one that reads gets all
	// of it however long the report took to make.
	_ = c.SetWriteDeadline(time.Now().Add(s.timeout))
	_, _ = c.Write(b.Bytes())
}
