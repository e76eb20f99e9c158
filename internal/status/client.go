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
	c, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w (nothing serves %s)", ErrNoDaemon, path)
		}
		return nil, fmt.Errorf("status: connecting to %s: %w", path, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	data, err := io.ReadAll(io.LimitReader(c, maxReport+1))
	if err != nil {
		return nil, fmt.Errorf("status: reading from %s: %w", path, err)
	}
	if len(data) == 0 {
		// The daemon closes without a word on a peer it refuses.
		return nil, fmt.Errorf("status: %s closed without a report (the daemon answers root only)", path)
	}
	if len(data) > maxReport {
		return nil, fmt.Errorf("status: the report from %s is larger than %d bytes", path, maxReport)
	}
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("status: the report from %s: %w", path, err)
	}
	return &r, nil
}
