// Package status lets `cgrulesengd --status` ask the running daemon what it
// is doing: the daemon serves a Report as JSON on a Unix socket (by default
// DefaultPath, which every daemon creates, so a plain --status finds it
// however it was started), and Query reads it and Format prints it.
//
// The socket has mode 0600 and the server refuses every peer that is not
// root (unixsock.PeerCheck, SO_PEERCRED): the report names rules and counts
// other users' tasks, and a request changes what the daemon does. A client
// connects, sends one request line and shuts its sending side, then reads
// the JSON answer: "status" (Query) gets the Report, "reclassify"
// (Reclassify, `cgrulesengd --reclassify`) has every running task
// classified again and gets a Reclassified once that is done. A client
// that sends nothing within 100 ms (the protocol before requests, or
// socat) gets the Report. Each client is served on a goroutine of its
// own, a few at a time: its answer is made and encoded first, then the
// client has a deadline to read it, so a client that connects and never
// reads costs nothing to the daemon's event path, and a slow answer
// (thousands of rules on a busy machine, a reclassification) is not cut
// short. A descriptor held in reserve lets the server answer even
// when the daemon has run out of descriptors.
//
// Privileges: creating the socket in /run needs root, and so does reading
// it. Concurrency: Serve's server is safe for concurrent use; Query and
// Format are pure functions of their arguments and the socket; Reclassify
// too, but for what it asks the daemon to do.
package status
