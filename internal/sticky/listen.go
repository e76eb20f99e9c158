package sticky

import (
	"fmt"

	"github.com/cgrulesengd/cgrulesengd/internal/unixsock"
)

// DefaultPath is where libcgroup's clients connect (CGRULE_CGRED_SOCKET_PATH,
// compiled into libcgroup).
const DefaultPath = "/var/run/cgred.socket"

// Mode is the socket file's permission: the owner and the group may
// connect (libcgroup's 0660).
const Mode = 0o660

// ErrInUse is wrapped by Listen's error when another process (another
// daemon) accepts connections on the path.
var ErrInUse = unixsock.ErrInUse

// listen creates the listening socket at path, mode Mode, owned by uid:gid
// (-1 leaves the daemon's own id), with unixsock's atomic creation and
// handling of an existing file.
func listen(path string, uid, gid int) (*unixsock.Listener, error) {
	ln, err := unixsock.Listen(path, Mode, uid, gid)
	if err != nil {
		return nil, fmt.Errorf("sticky %w (or give this daemon another --socket)", err)
	}
	return ln, nil
}
