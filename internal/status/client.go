package status

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"
)

// ErrNoDaemon is matched by Query's error when no daemon serves the socket.
var ErrNoDaemon = errors.New("no cgrulesengd daemon is running")

// maxReport bounds what Query reads: a report with 10,000 rules is ~1 MB.
const maxReport = 16 << 20

// Query asks the daemon at path for its Report.
func Query(path string, timeout time.Duration) (*Report, error) {
	var r Report
	if err := ask(path, requestStatus, timeout, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Reclassified is the answer to a reclassify request.
type Reclassified struct {
	Request string        `json:"request"` // "reclassify": what the daemon answered
	Tasks   int           `json:"tasks"`   // running tasks looked at
	Moved   int           `json:"moved"`   // of which moved
	Took    time.Duration `json:"took"`
	Error   string        `json:"error,omitempty"`
}

// Reclassify asks the daemon at path to classify every running task again
// by the rules in force, and waits for it to be done.
func Reclassify(path string, timeout time.Duration) (*Reclassified, error) {
	var r Reclassified
	if err := ask(path, requestReclassify, timeout, &r); err != nil {
		return nil, err
	}
	switch {
	case r.Error != "":
		return &r, fmt.Errorf("status: %s: %s", path, r.Error)
	case r.Request != requestReclassify:
		// A daemon from before requests answers every client with its
		// report.
		return &r, fmt.Errorf("status: the daemon serving %s does not know the reclassify request (an older version still running? restart it)", path)
	}
	return &r, nil
}

// ask sends request to the daemon at path and decodes its answer into v.
func ask(path, request string, timeout time.Duration, v any) error {
	c, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("%w (nothing serves %s)", ErrNoDaemon, path)
		}
		return fmt.Errorf("status: connecting to %s: %w", path, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	// A daemon that refuses the peer may have closed already: the answer
	// (none) says so below.
	if _, err := c.Write([]byte(request + "\n")); err == nil {
		_ = c.(*net.UnixConn).CloseWrite()
	}
	data, err := io.ReadAll(io.LimitReader(c, maxReport+1))
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		// (A daemon that closes with the request unread, as one that
		// refuses the peer or one from before requests does, resets the
		// connection once what it wrote has been read.)
		return fmt.Errorf("status: reading from %s: %w", path, err)
	}
	if len(data) == 0 {
		// The daemon closes without a word on a peer it refuses.
		return fmt.Errorf("status: %s closed without an answer (the daemon answers root only)", path)
	}
	if len(data) > maxReport {
		return fmt.Errorf("status: the answer from %s is larger than %d bytes", path, maxReport)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("status: the answer from %s: %w", path, err)
	}
	return nil
}
