// Package status lets `cgrulesengd --status` ask the running daemon what it
// is doing: the daemon serves a Report as JSON on a Unix socket (by default
// DefaultPath, which every daemon creates, so a plain --status finds it
// however it was started), and Query reads it and Format prints it.
//
// The socket has mode 0600 and the server refuses every peer that is not
// root (unixsock.PeerCheck, SO_PEERCRED): the report names rules and counts
// other users' tasks. A client connects and reads; it sends nothing. Each
// client is served on a goroutine of its own, a few at a time: its report
// is built and encoded first, then the client has a deadline to read it,
// so a client that connects and never reads costs nothing to the daemon's
// event path, and a slow report (thousands of rules on a busy machine) is
// not cut short. A descriptor held in reserve lets the server answer even
// when the daemon has run out of descriptors.
//
// Privileges: creating the socket in /run needs root, and so does reading
// it. Concurrency: Serve's server is safe for concurrent use; Query and
// Format are pure functions of their arguments and the socket.
package status
