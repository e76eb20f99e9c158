// Package status lets `cgrulesengd --status` ask the running daemon what it
// is doing: the daemon serves a Report as JSON on a Unix socket (by default
// DefaultPath, which every daemon creates, so a plain --status finds it
// however it was started), and Query reads it and Format prints it.
//
// The socket has mode 0600 and the server refuses every peer that is not
// root (SO_PEERCRED): the report names rules and counts other users' tasks.
// A client connects and reads; it sends nothing. Each client is served on
// a goroutine of its own with a deadline, a few at a time, so a client
// that connects and never reads costs nothing to the daemon's event path.
//
// Privileges: creating the socket in /run needs root, and so does reading
// it. Concurrency: Serve's server is safe for concurrent use; Query and
// Format are pure functions of their arguments and the socket.
package status
