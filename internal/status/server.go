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

// requestWait is how long the server waits for a request before it takes
// the client for one that sends nothing (the protocol before requests
// existed, and `socat - UNIX-CONNECT:...`): it then gets the report.
const requestWait = 100 * time.Millisecond

// maxRequest bounds a request line.
const maxRequest = 64

// The requests a client may send, one line, before it reads the answer.
const (
	requestStatus     = "status"     // the Report
	requestReclassify = "reclassify" // classify every running task again
)

// Server serves Reports. Create it with Listen; Close stops it.
type Server struct {
	srv        *unixsock.Server
	report     func() *Report
	reclassify func() Reclassified // nil: not offered
	check      unixsock.PeerCheck
	timeout    time.Duration // clientTimeout (tests shorten it)
}

// Option configures a Server.
type Option func(*Server)

// WithReclassify offers the reclassify request (cgrulesengd --reclassify):
// f classifies every running task again by the rules in force and returns
// when that is done. Requests may come from several clients at once.
func WithReclassify(f func() Reclassified) Option {
	return func(s *Server) { s.reclassify = f }
}

// Listen creates the socket at path (mode 0600, the daemon's owner; see
// unixsock for an existing file) and serves report() to every root peer
// until Close. refused (may be nil) is told of every other peer; it should
// log, rate-limited.
func Listen(path string, report func() *Report, refused func(uid uint32, pid int32), opts ...Option) (*Server, error) {
	return listen(path, report, unixsock.PeerCheck{Refused: refused}, clientTimeout, opts...)
}

func listen(path string, report func() *Report, check unixsock.PeerCheck, timeout time.Duration, opts ...Option) (*Server, error) {
	ln, err := unixsock.Listen(path, Mode, -1, -1)
	if err != nil {
		return nil, fmt.Errorf("status %w", err)
	}
	s := &Server{report: report, check: check, timeout: timeout}
	for _, o := range opts {
		o(s)
	}
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
	var answer any
	switch req := readRequest(c); req {
	case "", requestStatus:
		answer = s.report()
	case requestReclassify:
		r := Reclassified{Error: "this daemon does not offer reclassify"}
		if s.reclassify != nil {
			r = s.reclassify()
		}
		r.Request = req
		answer = r
	default:
		answer = Reclassified{Request: req, Error: fmt.Sprintf("unknown request %q", req)}
	}
	var b bytes.Buffer
	if err := json.NewEncoder(&b).Encode(answer); err != nil {
		return
	}
	// The deadline starts once the report is ready: a client that does
	// not read holds its slot for s.timeout, and one that reads gets all
	// of it however long the report took to make.
	_ = c.SetWriteDeadline(time.Now().Add(s.timeout))
	_, _ = c.Write(b.Bytes())
}

// readRequest reads the client's request line: up to a newline or the end
// of what it sends (it shuts its sending side), "" when it sends nothing
// within requestWait.
func readRequest(c *net.UnixConn) string {
	_ = c.SetReadDeadline(time.Now().Add(requestWait))
	buf := make([]byte, 0, maxRequest)
	for len(buf) < maxRequest {
		n, err := c.Read(buf[len(buf):maxRequest])
		buf = buf[:len(buf)+n]
		if bytes.IndexByte(buf, '\n') >= 0 || err != nil {
			break
		}
	}
	line, _, _ := bytes.Cut(buf, []byte("\n"))
	return string(bytes.TrimSpace(line))
}
